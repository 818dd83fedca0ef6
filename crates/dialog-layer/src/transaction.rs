//! RFC 3261 §17 transactions as sans-IO state machines, with the RFC 6026
//! "Accepted" states for 2xx to INVITE. Nothing here does I/O or reads a clock:
//! requests, responses and the time go in; what to send and what happened come
//! out; [`TransactionLayer::poll_timeout`] tells the driver when to call
//! [`TransactionLayer::handle_timeout`]. Tests drive it with a fake clock.
//!
//! Matching follows §17.1.3 (client: branch + CSeq method) and §17.2.3 (server:
//! branch + sent-by + method with ACK folded into INVITE; for requests without
//! the `z9hG4bK` cookie the RFC 2543 fallback on Request-URI, tags, Call-ID,
//! CSeq and top Via). Merged requests (§8.2.2.2) are found by From tag, Call-ID
//! and CSeq of requests that have no To tag yet.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_transport::header::split_first_comma;
use sip_transport::transport::response_target;
use sip_transport::{HeaderName, Method, SipMessage, Source, Target, Via};

/// Branches we generate: the RFC 3261 magic cookie plus our mark, so a request
/// that comes back to us carrying one of our branches is recognised as a loop.
pub const BRANCH_PREFIX: &str = "z9hG4bK-tdm-";

/// A fresh branch for a request we send (RFC 3261 §8.1.1.7).
pub fn new_branch() -> String {
    format!("{BRANCH_PREFIX}{:016x}", rand::random::<u64>())
}

/// T1, T2 and T4 (RFC 3261 §17.1.1.1, table 4); every other timer derives from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl TimerConfig {
    /// Timers B, F, H, J, L and M.
    fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// A message to put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub target: Target,
    pub data: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(u64);

/// What a timer caused.
#[derive(Clone, Debug)]
pub enum TxEvent {
    /// A retransmission (timers A, E, G).
    Transmit(Transmit),
    /// Timer B or F: the request got no final response; the TU treats it as 408.
    ClientTimeout(ClientTxId),
    /// Timer H: no ACK came for a final non-2xx response to INVITE.
    ServerAckTimeout(ServerTxId),
}

/// What an incoming request is to the transaction layer.
#[derive(Debug)]
pub enum RequestOutcome {
    /// A new server transaction; the TU must answer it through [`TransactionLayer::respond`].
    New(ServerTxId),
    /// A new transaction for a request merged with another one in progress
    /// (same From tag, Call-ID and CSeq, no To tag, different branch): answer 482.
    Merged(ServerTxId),
    /// A retransmission, with the last response to send again (if any yet).
    Retransmission(Option<Transmit>),
    /// An ACK for a non-2xx final response: absorbed by its INVITE transaction.
    AckAbsorbed,
    /// An ACK that belongs to no transaction (the ACK for a 2xx): for the dialog.
    Ack2xx,
    /// A CANCEL (with its own new server transaction) and the INVITE it cancels, if found.
    Cancel { cancel: ServerTxId, invite: Option<ServerTxId> },
    /// The transaction table is full: answer 503 statelessly.
    Overloaded,
    /// The request lacks what a transaction needs (the text says what).
    Invalid(&'static str),
}

/// What an incoming response is to the transaction layer.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseOutcome {
    Provisional(ClientTxId),
    /// A final response for the TU (for INVITE, every 2xx while Accepted too).
    Final(ClientTxId),
    /// A retransmitted final response, absorbed (the ACK is sent again for INVITE).
    Absorbed(ClientTxId),
    /// Matches no client transaction.
    Stray,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ServerKey {
    /// §17.2.3 with the magic cookie: branch, sent-by, method (ACK counts as INVITE).
    Rfc3261 { branch: Box<str>, sent_by: Box<str>, method: Method },
    /// RFC 2543 fallback; the To tag is checked separately.
    Rfc2543 { uri: Box<str>, from_tag: Box<str>, call_id: Box<str>, cseq: u32, top_via: Box<str>, method: Method },
}

impl ServerKey {
    fn with_method(&self, method: Method) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Rfc3261 { method: m, .. } | ServerKey::Rfc2543 { method: m, .. } => *m = method,
        }
        k
    }
}

/// §8.2.2.2: From tag, Call-ID, CSeq number and method of a request without To tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MergeKey {
    from_tag: Box<str>,
    call_id: Box<str>,
    cseq: u32,
    method: Method,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    /// Non-INVITE before any response.
    Trying,
    Proceeding,
    Completed,
    /// INVITE: the ACK for a non-2xx final response has arrived.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026); retransmitted INVITEs are absorbed.
    Accepted,
}

struct ServerTx {
    invite: bool,
    state: ServerState,
    key: ServerKey,
    merge_key: Option<MergeKey>,
    /// To tag of the request (RFC 2543 INVITE matching).
    request_to_tag: Option<Box<str>>,
    /// To tag of the last response (RFC 2543 ACK matching).
    response_to_tag: Option<Box<str>>,
    target: Target,
    reliable: bool,
    last_response: Option<Bytes>,
    /// Next retransmission (timer G) and the interval that led to it (doubled for the one after).
    retransmit: Option<(Instant, Duration)>,
    /// When the state ends (timers H, I, J, L).
    expire: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    /// Calling (INVITE) or Trying (non-INVITE).
    Calling,
    Proceeding,
    Completed,
    /// INVITE: a 2xx arrived (RFC 6026); further 2xx go to the TU.
    Accepted,
}

struct ClientTx {
    invite: bool,
    state: ClientState,
    key: (Box<str>, Method),
    target: Target,
    request: Bytes,
    /// The ACK for a non-2xx final response, sent again on every retransmission of it.
    ack: Option<Bytes>,
    /// Next retransmission (timers A, E) and the interval that led to it (doubled for the one after).
    retransmit: Option<(Instant, Duration)>,
    /// Timers B, F (timeout) or D, K, M (end of state).
    expire: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TxRef {
    Server(u64),
    Client(u64),
}

/// The transaction tables and their timers.
pub struct TransactionLayer {
    timers: TimerConfig,
    max_transactions: usize,
    next_id: u64,
    servers: HashMap<u64, ServerTx>,
    server_index: HashMap<ServerKey, u64>,
    merge_index: HashMap<MergeKey, u64>,
    clients: HashMap<u64, ClientTx>,
    client_index: HashMap<(Box<str>, Method), u64>,
    /// Deadlines; entries are checked against the transaction when they fire, so a
    /// deadline that was moved or cancelled is simply skipped.
    deadlines: BinaryHeap<Reverse<(Instant, TxRef)>>,
}

/// The method a transaction is keyed by: ACK belongs to the INVITE's transaction.
fn key_method(m: &Method) -> Method {
    if *m == Method::Ack { Method::Invite } else { m.clone() }
}

fn tag_of(name_addr: Option<sip_transport::NameAddr<'_>>) -> Option<Box<str>> {
    name_addr.and_then(|n| n.tag().map(Into::into))
}

/// The status code of a response we are about to send.
fn status_of(data: &[u8]) -> Option<u16> {
    let code = data.get(8..11)?;
    if !data.starts_with(b"SIP/2.0 ") || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

impl TransactionLayer {
    pub fn new(timers: TimerConfig, max_transactions: usize) -> Self {
        TransactionLayer {
            timers,
            max_transactions,
            next_id: 0,
            servers: HashMap::new(),
            server_index: HashMap::new(),
            merge_index: HashMap::new(),
            clients: HashMap::new(),
            client_index: HashMap::new(),
            deadlines: BinaryHeap::new(),
        }
    }

    pub fn server_len(&self) -> usize {
        self.servers.len()
    }

    pub fn client_len(&self) -> usize {
        self.clients.len()
    }

    fn is_full(&self) -> bool {
        self.servers.len() + self.clients.len() >= self.max_transactions
    }

    /// The earliest deadline; it may belong to a timer that was since cancelled,
    /// in which case `handle_timeout` finds nothing to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    fn arm(&mut self, at: Instant, tx: TxRef) {
        self.deadlines.push(Reverse((at, tx)));
    }

    fn server_key(msg: &SipMessage, via: &Via<'_>, method: &Method) -> Result<ServerKey, &'static str> {
        if let Some(branch) = via.rfc3261_branch() {
            let sent_by = match via.port {
                Some(p) => format!("{}:{p}", via.host.to_ascii_lowercase()),
                None => via.host.to_ascii_lowercase(),
            };
            return Ok(ServerKey::Rfc3261 { branch: branch.into(), sent_by: sent_by.into(), method: key_method(method) });
        }
        let top_via = msg
            .first(HeaderName::Via)
            .and_then(|v| split_first_comma(v).ok())
            .map(|(top, _)| Box::<str>::from(top))
            .ok_or("no usable Via")?;
        Ok(ServerKey::Rfc2543 {
            uri: msg.request_uri().unwrap_or("").into(),
            from_tag: tag_of(msg.from().ok()).unwrap_or_default(),
            call_id: msg.call_id().map_err(|_| "no usable Call-ID")?.into(),
            cseq: msg.cseq().map_err(|_| "no usable CSeq")?.seq,
            top_via,
            method: key_method(method),
        })
    }

    /// An incoming request (the caller has checked it is well formed).
    pub fn on_request(&mut self, msg: &SipMessage, source: &Source, now: Instant) -> RequestOutcome {
        let Some(method) = msg.method() else { return RequestOutcome::Invalid("not a request") };
        let Ok(via) = msg.top_via() else { return RequestOutcome::Invalid("no usable Via") };
        let key = match Self::server_key(msg, &via, method) {
            Ok(k) => k,
            Err(e) => return RequestOutcome::Invalid(e),
        };
        let to_tag = tag_of(msg.to().ok());

        if let Some(&id) = self.server_index.get(&key) {
            let rfc2543 = matches!(key, ServerKey::Rfc2543 { .. });
            if *method == Method::Ack {
                return self.ack_for(id, rfc2543, to_tag.as_deref(), now);
            }
            // RFC 2543: a retransmission also repeats the To tag of the request.
            let same = self.servers.get(&id).is_some_and(|tx| !rfc2543 || tx.request_to_tag == to_tag);
            if same {
                return RequestOutcome::Retransmission(self.retransmission(id));
            }
        } else if *method == Method::Ack {
            return RequestOutcome::Ack2xx;
        }

        if self.is_full() {
            return RequestOutcome::Overloaded;
        }
        let Some(target) = response_target(&via, source) else {
            return RequestOutcome::Invalid("no usable Via");
        };
        let merge_key = match (&to_tag, msg.from().ok().and_then(|f| f.tag()), msg.call_id(), msg.cseq()) {
            (None, Some(from_tag), Ok(call_id), Ok(cseq)) => Some(MergeKey {
                from_tag: from_tag.into(),
                call_id: call_id.into(),
                cseq: cseq.seq,
                method: cseq.method,
            }),
            _ => None,
        };
        let merged = merge_key.as_ref().is_some_and(|k| self.merge_index.contains_key(k));
        let invite_of_cancel =
            (*method == Method::Cancel).then(|| self.server_index.get(&key.with_method(Method::Invite)).copied()).flatten();

        let id = self.next_id;
        self.next_id += 1;
        if let (Some(k), false) = (&merge_key, merged) {
            self.merge_index.insert(k.clone(), id);
        }
        self.server_index.insert(key.clone(), id);
        let invite = *method == Method::Invite;
        self.servers.insert(
            id,
            ServerTx {
                invite,
                state: if invite { ServerState::Proceeding } else { ServerState::Trying },
                key,
                merge_key: merge_key.filter(|_| !merged),
                request_to_tag: to_tag,
                response_to_tag: None,
                target,
                reliable: source.transport.is_reliable(),
                last_response: None,
                retransmit: None,
                expire: None,
            },
        );
        let tx = ServerTxId(id);
        if *method == Method::Cancel {
            return RequestOutcome::Cancel { cancel: tx, invite: invite_of_cancel.map(ServerTxId) };
        }
        if merged { RequestOutcome::Merged(tx) } else { RequestOutcome::New(tx) }
    }

    fn retransmission(&self, id: u64) -> Option<Transmit> {
        let tx = self.servers.get(&id)?;
        // In Accepted the TU retransmits its 2xx itself (RFC 6026 §8.5).
        if tx.state == ServerState::Accepted {
            return None;
        }
        tx.last_response.clone().map(|data| Transmit { target: tx.target, data })
    }

    fn ack_for(&mut self, id: u64, rfc2543: bool, to_tag: Option<&str>, now: Instant) -> RequestOutcome {
        let t4 = self.timers.t4;
        let Some(tx) = self.servers.get_mut(&id) else { return RequestOutcome::Ack2xx };
        if rfc2543 && tx.response_to_tag.as_deref() != to_tag {
            return RequestOutcome::Ack2xx;
        }
        match tx.state {
            ServerState::Completed => {
                tx.state = ServerState::Confirmed;
                tx.retransmit = None;
                // Timer I absorbs ACK retransmissions; nothing to absorb on streams.
                let at = now + if tx.reliable { Duration::ZERO } else { t4 };
                tx.expire = Some(at);
                self.arm(at, TxRef::Server(id));
                RequestOutcome::AckAbsorbed
            }
            ServerState::Confirmed => RequestOutcome::AckAbsorbed,
            // The ACK of a 2xx (2543 peers reuse the INVITE's Via) goes to the dialog.
            _ => RequestOutcome::Ack2xx,
        }
    }

    /// Sends a response from the TU through its server transaction. `None` when
    /// the transaction is gone or the response does not fit its state.
    pub fn respond(&mut self, id: ServerTxId, data: Bytes, now: Instant) -> Option<Transmit> {
        let status = status_of(&data)?;
        let timers = self.timers.clone();
        let tx = self.servers.get_mut(&id.0)?;
        let provisional = status < 200;
        match (tx.invite, tx.state) {
            (_, ServerState::Completed | ServerState::Confirmed) => return None,
            // Only further 2xx (from the TU's own retransmissions) pass in Accepted.
            (true, ServerState::Accepted) if !(200..300).contains(&status) => return None,
            (true, ServerState::Accepted) => return Some(Transmit { target: tx.target, data }),
            _ => {}
        }
        if tx.invite && matches!(tx.key, ServerKey::Rfc2543 { .. }) {
            tx.response_to_tag = SipMessage::parse(data.clone()).ok().and_then(|m| tag_of(m.to().ok()));
        }
        tx.last_response = Some(data.clone());
        let target = tx.target;
        if provisional {
            tx.state = ServerState::Proceeding;
            return Some(Transmit { target, data });
        }
        let (retransmit, expire) = match (tx.invite, (200..300).contains(&status)) {
            // RFC 6026: Accepted, for timer L.
            (true, true) => {
                tx.state = ServerState::Accepted;
                (None, timers.t1x64())
            }
            // Timer G (unreliable only) and timer H.
            (true, false) => {
                tx.state = ServerState::Completed;
                ((!tx.reliable).then_some(timers.t1), timers.t1x64())
            }
            // Timer J.
            (false, _) => {
                tx.state = ServerState::Completed;
                (None, if tx.reliable { Duration::ZERO } else { timers.t1x64() })
            }
        };
        tx.retransmit = retransmit.map(|iv| (now + iv, iv));
        tx.expire = Some(now + expire);
        let id = TxRef::Server(id.0);
        if let Some(iv) = retransmit {
            self.arm(now + iv, id);
        }
        self.arm(now + expire, id);
        Some(Transmit { target, data })
    }

    /// Starts a client transaction for `request`, which must carry a top Via with a
    /// fresh RFC 3261 branch (see [`new_branch`]). Returns the first transmission.
    pub fn send_request(&mut self, request: Bytes, target: Target, now: Instant) -> Result<(ClientTxId, Transmit), &'static str> {
        let msg = SipMessage::parse(request.clone()).map_err(|_| "request does not parse")?;
        let method = msg.method().ok_or("not a request")?.clone();
        if method == Method::Ack {
            return Err("an ACK has no client transaction");
        }
        let branch: Box<str> = msg.top_via().ok().and_then(|v| v.rfc3261_branch().map(Into::into)).ok_or("no RFC 3261 branch")?;
        if self.is_full() {
            return Err("transaction table full");
        }
        let key = (branch, method.clone());
        if self.client_index.contains_key(&key) {
            return Err("branch already in use");
        }
        let id = self.next_id;
        self.next_id += 1;
        let reliable = target.transport.is_reliable();
        let t1 = self.timers.t1;
        let retransmit = (!reliable).then_some((now + t1, t1));
        let expire = now + self.timers.t1x64();
        self.client_index.insert(key.clone(), id);
        self.clients.insert(
            id,
            ClientTx {
                invite: method == Method::Invite,
                state: ClientState::Calling,
                key,
                target,
                request: request.clone(),
                ack: None,
                retransmit,
                expire: Some(expire),
            },
        );
        if let Some((at, _)) = retransmit {
            self.arm(at, TxRef::Client(id));
        }
        self.arm(expire, TxRef::Client(id));
        Ok((ClientTxId(id), Transmit { target, data: request }))
    }

    /// An incoming response. The second value is an ACK to send (for a non-2xx
    /// final response to INVITE).
    pub fn on_response(&mut self, msg: &SipMessage, _source: &Source, now: Instant) -> (ResponseOutcome, Option<Transmit>) {
        let (Some(status), Ok(via), Ok(cseq)) = (msg.status(), msg.top_via(), msg.cseq()) else {
            return (ResponseOutcome::Stray, None);
        };
        let Some(branch) = via.branch() else { return (ResponseOutcome::Stray, None) };
        // Look up with a borrowed key would need a custom Borrow; responses are rare enough.
        let Some(&id) = self.client_index.get(&(Box::<str>::from(branch), cseq.method)) else {
            return (ResponseOutcome::Stray, None);
        };
        let timers = self.timers.clone();
        let Some(tx) = self.clients.get_mut(&id) else { return (ResponseOutcome::Stray, None) };
        let cid = ClientTxId(id);
        let reliable = tx.target.transport.is_reliable();
        let success = (200..300).contains(&status);
        match tx.state {
            ClientState::Calling | ClientState::Proceeding if status < 200 => {
                tx.state = ClientState::Proceeding;
                if tx.invite {
                    // RFC 6026: timer B stops once a provisional response arrives.
                    tx.retransmit = None;
                    tx.expire = None;
                } else if let Some((at, _)) = tx.retransmit {
                    // Timer E continues at T2 in Proceeding.
                    tx.retransmit = Some((at, timers.t2));
                }
                (ResponseOutcome::Provisional(cid), None)
            }
            ClientState::Calling | ClientState::Proceeding => {
                tx.retransmit = None;
                let end = match (tx.invite, success) {
                    (true, true) => {
                        tx.state = ClientState::Accepted;
                        timers.t1x64() // timer M
                    }
                    (true, false) => {
                        tx.state = ClientState::Completed;
                        tx.ack = build_ack(&tx.request, msg);
                        if reliable { Duration::ZERO } else { timers.t1x64().max(Duration::from_secs(32)) } // timer D
                    }
                    (false, _) => {
                        tx.state = ClientState::Completed;
                        if reliable { Duration::ZERO } else { timers.t4 } // timer K
                    }
                };
                tx.expire = Some(now + end);
                let ack = tx.ack.clone().map(|data| Transmit { target: tx.target, data });
                self.arm(now + end, TxRef::Client(id));
                (ResponseOutcome::Final(cid), ack)
            }
            ClientState::Accepted if success => (ResponseOutcome::Final(cid), None),
            ClientState::Completed => {
                let ack = tx.ack.clone().map(|data| Transmit { target: tx.target, data });
                (ResponseOutcome::Absorbed(cid), ack)
            }
            _ => (ResponseOutcome::Absorbed(cid), None),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxEvent> {
        let mut out = Vec::new();
        while let Some(&Reverse((at, tx))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            match tx {
                TxRef::Server(id) => self.fire_server(id, at, &mut out),
                TxRef::Client(id) => self.fire_client(id, at, &mut out),
            }
        }
        self.shrink_sparse_tables();
        out
    }

    /// Tables keep their largest size once emptied: after a burst of calls,
    /// hundreds of MiB held for nothing. A table a quarter full (and not
    /// small) is shrunk to twice what it holds, so shrinking is rare and
    /// a table that grows again does not shrink at once.
    fn shrink_sparse_tables(&mut self) {
        fn sparse(len: usize, capacity: usize) -> Option<usize> {
            (capacity > 1024 && len * 4 < capacity).then_some(len * 2)
        }
        macro_rules! shrink {
            ($($table:ident),*) => {$(
                if let Some(to) = sparse(self.$table.len(), self.$table.capacity()) {
                    self.$table.shrink_to(to);
                }
            )*};
        }
        shrink!(servers, server_index, merge_index, clients, client_index, deadlines);
    }

    /// Timers are fired at their own deadline `at`, not at `now`, so that the
    /// schedule does not drift when the driver wakes late.
    fn fire_server(&mut self, id: u64, at: Instant, out: &mut Vec<TxEvent>) {
        let t2 = self.timers.t2;
        let Some(tx) = self.servers.get_mut(&id) else { return };
        if let Some((due, iv)) = tx.retransmit.filter(|(due, _)| *due == at) {
            // Timer G: resend the final response, doubling up to T2.
            if let Some(data) = tx.last_response.clone() {
                out.push(TxEvent::Transmit(Transmit { target: tx.target, data }));
            }
            let next = (iv * 2).min(t2);
            tx.retransmit = Some((due + next, next));
            self.arm(due + next, TxRef::Server(id));
        }
        let Some(tx) = self.servers.get(&id) else { return };
        if tx.expire == Some(at) {
            if tx.invite && tx.state == ServerState::Completed {
                out.push(TxEvent::ServerAckTimeout(ServerTxId(id)));
            }
            self.remove_server(id);
        }
    }

    fn fire_client(&mut self, id: u64, at: Instant, out: &mut Vec<TxEvent>) {
        let t2 = self.timers.t2;
        let Some(tx) = self.clients.get_mut(&id) else { return };
        if let Some((due, iv)) = tx.retransmit.filter(|(due, _)| *due == at) {
            out.push(TxEvent::Transmit(Transmit { target: tx.target, data: tx.request.clone() }));
            // Timer A doubles with no cap of its own (timer B ends it at 64×T1: six doublings);
            // timer E is capped at T2.
            let next = if tx.invite { iv * 2 } else { (iv * 2).min(t2) };
            tx.retransmit = Some((due + next, next));
            self.arm(due + next, TxRef::Client(id));
        }
        let Some(tx) = self.clients.get(&id) else { return };
        if tx.expire == Some(at) {
            // Timers B and F end a transaction still waiting for a final response.
            if matches!(tx.state, ClientState::Calling | ClientState::Proceeding) {
                out.push(TxEvent::ClientTimeout(ClientTxId(id)));
            }
            self.remove_client(id);
        }
    }

    fn remove_server(&mut self, id: u64) {
        if let Some(tx) = self.servers.remove(&id) {
            if self.server_index.get(&tx.key) == Some(&id) {
                self.server_index.remove(&tx.key);
            }
            if let Some(k) = tx.merge_key.filter(|k| self.merge_index.get(k) == Some(&id)) {
                self.merge_index.remove(&k);
            }
        }
    }

    fn remove_client(&mut self, id: u64) {
        if let Some(tx) = self.clients.remove(&id) {
            self.client_index.remove(&tx.key);
        }
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the request's
/// Request-URI, top Via, Route, From, Call-ID and CSeq number, the response's To.
fn build_ack(request: &Bytes, response: &SipMessage) -> Option<Bytes> {
    let req = SipMessage::parse(request.clone()).ok()?;
    same_transaction_request(&req, Method::Ack, response.first(HeaderName::To)?)
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1). Send it through its own
/// client transaction, and only once the INVITE has had a provisional response.
pub fn cancel_request(invite: &Bytes) -> Option<Bytes> {
    let req = SipMessage::parse(invite.clone()).ok()?;
    same_transaction_request(&req, Method::Cancel, req.first(HeaderName::To)?)
}

/// ACK for a non-2xx and CANCEL: the request's Request-URI, top Via (so the
/// branch matches), Route, From, Call-ID and CSeq number, with `to` as To.
fn same_transaction_request(req: &SipMessage, method: Method, to: &str) -> Option<Bytes> {
    let mut w = sip_transport::MessageWriter::request(&method, req.request_uri()?);
    let (top_via, _) = req.first(HeaderName::Via).and_then(|v| split_first_comma(v).ok())?;
    w.header("Via", top_via);
    for route in req.header_values(HeaderName::Route) {
        w.header("Route", route);
    }
    w.header("Max-Forwards", 70);
    w.header("From", req.first(HeaderName::From)?);
    w.header("To", to);
    w.header("Call-ID", req.first(HeaderName::CallId)?);
    w.header("CSeq", format_args!("{} {method}", req.cseq().ok()?.seq));
    Some(w.finish_empty())
}

#[cfg(test)]
mod tests;
