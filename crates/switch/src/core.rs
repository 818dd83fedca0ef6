//! The SIP core service: every message from the transport comes in here with the
//! time, and what to send goes out. Sans-IO like the machines it drives, so tests
//! and the fuzzer feed it bytes and a clock.
//!
//! Order of checks for a request (RFC 3261 §8.2, with the profile ACL first so a
//! stranger on the trunk side learns nothing): parse -> key headers -> ACL ->
//! version -> method/CSeq -> transaction -> method inspection -> loop / hops ->
//! URI scheme -> Require -> content -> authentication -> dispatch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialog_layer::auth::{AuthOutcome, DigestAuthenticator};
use dialog_layer::guard::{AuthGuard, GuardDecision};
use dialog_layer::registrar::{InMemoryLocation, LocationService, RegisterOutcome, Registrar};
use dialog_layer::transaction::{
    BRANCH_PREFIX, ClientTxId, RequestOutcome, ResponseOutcome, ServerTxId, TransactionLayer, Transmit, TxEvent,
};
use sip_transport::header::{NameAddr, Uri, Via};
use sip_transport::transport::response_target;
use sip_transport::writer::{reason_phrase, response_to};
use sip_transport::{FlowId, HeaderName, Method, SipMessage, Source, Target};
use tracing::{debug, info, warn};

use std::collections::HashMap;
use std::time::SystemTime;

use dialog_layer::dialog::{AnswerTimer, Dialog, DialogId, PendingAnswer};
use media_relay::{Codec as MediaCodec, LegParams, MediaEvent, MediaRelay, PayloadMap};
use tokio::sync::mpsc;

use crate::cdr::{Cdr, CdrSink, Disposition, HangupBy};
use crate::dialplan::Route;
use crate::echo::{EchoCall, MediaReport, spawn_media_task};
use crate::sdp::{Direction, LocalSession, SdpSession, negotiate};
use crate::settings::{CoreSettings, Profile};
use crate::stats::CoreStats;
use crate::trunk_registration::{TrunkIndex, TrunkRegistrations};

/// Methods the switch accepts (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER";
/// Option tags the switch supports (the Supported header); extensions arrive with later features.
pub const SUPPORTED: &[&str] = &[];
/// How often expired registrations are swept (lookups filter them exactly anyway).
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);
/// Retry-After for 503 when the transaction table is full.
const OVERLOAD_RETRY_AFTER_S: u32 = 5;

pub struct SipCore {
    settings: CoreSettings,
    transactions: TransactionLayer,
    registrar: Registrar<InMemoryLocation>,
    auth: DigestAuthenticator,
    guard: AuthGuard,
    /// Challenges held back to slow down password guessing, by due time (and a
    /// serial, to keep equal times apart). Bounded by the transaction table: each
    /// one's transaction stays in Trying until it is sent.
    delayed: BTreeMap<(Instant, u64), (ServerTxId, Bytes)>,
    delayed_seq: u64,
    next_sweep: Instant,
    stats: CoreStats,
    /// The media relay; without one, destinations that need media answer 503.
    media: Option<MediaRelay>,
    echo_calls: HashMap<DialogId, EchoCall>,
    /// Our 2xx answers to INVITEs waiting for their ACK, by dialog.
    pending_answers: HashMap<DialogId, PendingAnswer>,
    media_reports: mpsc::UnboundedSender<MediaReport>,
    media_reports_rx: Option<mpsc::UnboundedReceiver<MediaReport>>,
    cdr: Option<CdrSink>,
    /// Our registrations with carriers, and which trunk each REGISTER transaction is for.
    trunk_registrations: TrunkRegistrations,
    trunk_register_txs: HashMap<ClientTxId, TrunkIndex>,
}

/// The parts of a validated request the checks below need.
struct Req<'a> {
    msg: &'a SipMessage,
    method: &'a Method,
    source: Source,
    profile: Profile,
}

impl SipCore {
    pub fn new(settings: CoreSettings, now: Instant) -> Self {
        let transactions = TransactionLayer::new(settings.timers.clone(), settings.max_transactions);
        let registrar = Registrar::new(InMemoryLocation::default(), settings.registrar.clone());
        let auth = DigestAuthenticator::new(settings.digest.clone(), now);
        let guard = AuthGuard::new(settings.guard.clone());
        let (media_reports, media_reports_rx) = mpsc::unbounded_channel();
        let trunk_registrations = TrunkRegistrations::new(&settings, now);
        SipCore {
            settings,
            transactions,
            registrar,
            auth,
            guard,
            delayed: BTreeMap::new(),
            delayed_seq: 0,
            next_sweep: now + EXPIRY_SWEEP,
            stats: CoreStats::default(),
            media: None,
            echo_calls: HashMap::new(),
            pending_answers: HashMap::new(),
            media_reports,
            media_reports_rx: Some(media_reports_rx),
            cdr: None,
            trunk_registrations,
            trunk_register_txs: HashMap::new(),
        }
    }

    /// Media through this relay (needs a tokio runtime when calls are answered).
    pub fn with_media(mut self, relay: MediaRelay) -> Self {
        self.media = Some(relay);
        self
    }

    pub fn with_cdr(mut self, sink: CdrSink) -> Self {
        self.cdr = Some(sink);
        self
    }

    /// The reports of call media (inactivity), for the driver to feed back
    /// through [`SipCore::handle_media_report`]. Taken once.
    pub fn take_media_reports(&mut self) -> Option<mpsc::UnboundedReceiver<MediaReport>> {
        self.media_reports_rx.take()
    }

    pub fn call_count(&self) -> usize {
        self.echo_calls.len()
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    /// Each registering trunk's state with its carrier.
    pub fn trunk_registrations(&self) -> &TrunkRegistrations {
        &self.trunk_registrations
    }

    pub fn location(&self) -> &InMemoryLocation {
        self.registrar.location()
    }

    /// Addresses of record with bindings, and bindings in all.
    pub fn registrations(&self) -> (usize, usize) {
        self.registrar.location().counts()
    }

    pub fn banned_sources(&self, now: Instant) -> usize {
        self.guard.banned_count(now)
    }

    pub fn transaction_count(&self) -> usize {
        self.transactions.server_len() + self.transactions.client_len()
    }

    /// The earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_sweep;
        if let Some(tx) = self.transactions.poll_timeout() {
            t = t.min(tx);
        }
        if let Some((due, _)) = self.delayed.keys().next() {
            t = t.min(*due);
        }
        for p in self.pending_answers.values() {
            t = t.min(p.poll_timeout());
        }
        if let Some(r) = self.trunk_registrations.poll_timeout() {
            t = t.min(r);
        }
        Some(t)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        for ev in self.transactions.handle_timeout(now) {
            match ev {
                TxEvent::Transmit(t) => out.push(t),
                TxEvent::ClientTimeout(id) => match self.trunk_register_txs.remove(&id) {
                    Some(trunk) => self.trunk_registrations.on_timeout(trunk, now),
                    None => debug!(?id, "client transaction timed out"),
                },
                TxEvent::ServerAckTimeout(id) => debug!(?id, "no ACK for final response"),
            }
        }
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (tx, data) = entry.remove();
            out.extend(self.transactions.respond(tx, data, now));
        }
        for (trunk, register, target) in self.trunk_registrations.handle_timeout(now) {
            out.extend(self.send_trunk_register(trunk, register, target, now));
        }
        let due: Vec<DialogId> =
            self.pending_answers.iter().filter(|(_, p)| p.poll_timeout() <= now).map(|(id, _)| id.clone()).collect();
        for id in due {
            let Some(pending) = self.pending_answers.get_mut(&id) else { continue };
            match pending.handle_timeout(now) {
                Some(AnswerTimer::Retransmit(t)) => out.push(t),
                Some(AnswerTimer::GiveUp) => {
                    warn!(call_id = %id.call_id, "no ACK for our 2xx: ending the call");
                    out.extend(self.end_echo(&id, true, HangupBy::Switch, "no ACK", now));
                }
                None => {}
            }
        }
        if now >= self.next_sweep {
            self.next_sweep = now + EXPIRY_SWEEP;
            for (aor, b) in self.registrar.location().expire(now) {
                info!(aor = %aor, contact = %b.contact, "registration expired");
                self.stats.registrations_expired += 1;
            }
        }
        out
    }

    /// A stream connection closed: bindings registered over it are gone (RFC 5626 §5.3 style).
    pub fn handle_flow_closed(&mut self, flow: FlowId) {
        for (aor, b) in self.registrar.location().remove_flow(flow) {
            info!(aor = %aor, contact = %b.contact, "binding removed: its connection closed");
        }
    }

    /// One message from the network.
    pub fn handle_message(&mut self, data: Bytes, source: Source, now: Instant) -> Vec<Transmit> {
        let msg = match SipMessage::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.dropped_unparseable += 1;
                debug!(remote = %source.remote, error = %e, "dropped unparseable message");
                return Vec::new();
            }
        };
        if msg.is_request() {
            self.handle_request(&msg, source, now)
        } else {
            self.handle_response(&msg, source, now)
        }
    }

    fn handle_response(&mut self, msg: &SipMessage, source: Source, now: Instant) -> Vec<Transmit> {
        self.stats.responses_in += 1;
        if msg.fault().is_some() || msg.top_via().is_err() || msg.cseq().is_err() {
            debug!(remote = %source.remote, "dropped malformed response");
            return Vec::new();
        }
        let (outcome, ack) = self.transactions.on_response(msg, &source, now);
        if let ResponseOutcome::Stray = outcome {
            debug!(remote = %source.remote, "dropped stray response");
        }
        let mut out: Vec<Transmit> = ack.into_iter().collect();
        if let ResponseOutcome::Final(id) = outcome
            && let Some(trunk) = self.trunk_register_txs.remove(&id)
            && let Some((register, target)) = self.trunk_registrations.on_response(trunk, msg, now)
        {
            out.extend(self.send_trunk_register(trunk, register, target, now));
        }
        out
    }

    /// Starts the client transaction of a trunk's REGISTER; a REGISTER that
    /// cannot go out counts as timed out, so the trunk retries after its backoff.
    fn send_trunk_register(&mut self, trunk: TrunkIndex, register: Bytes, target: Target, now: Instant) -> Option<Transmit> {
        match self.transactions.send_request(register, target, now) {
            Ok((id, t)) => {
                self.trunk_register_txs.insert(id, trunk);
                Some(t)
            }
            Err(why) => {
                warn!(why, "could not send a trunk REGISTER");
                self.trunk_registrations.on_timeout(trunk, now);
                None
            }
        }
    }

    fn handle_request(&mut self, msg: &SipMessage, source: Source, now: Instant) -> Vec<Transmit> {
        let Some(method) = msg.method() else { return Vec::new() };
        self.stats.count_request(method);
        let profile = self
            .settings
            .listeners
            .get(source.listener)
            .map(|l| l.profile)
            .unwrap_or(Profile::Internal);
        let req = Req { msg, method, source, profile };

        // Without any Via a response could not be matched by the sender: drop. A
        // malformed one is answered 400 back to where the request came from.
        if msg.first(HeaderName::Via).is_none() {
            debug!(remote = %source.remote, "dropped request without Via");
            return Vec::new();
        }
        let via = msg.top_via().ok();
        let via = via.as_ref();
        if profile == Profile::External && self.settings.trunk_for(source.remote.ip()).is_none() {
            self.stats.acl_rejected += 1;
            debug!(remote = %source.remote, "request on the external profile from no trunk's network");
            return self.stateless(&req, via, 403, "Forbidden", &[]);
        }
        if let Some(fault) = msg.fault() {
            return self.stateless(&req, via, 400, &format!("Bad Request ({fault})"), &[]);
        }
        if let Err(e) = key_headers(msg) {
            return self.stateless(&req, via, 400, &format!("Bad Request ({e})"), &[]);
        }
        if !msg.version().eq_ignore_ascii_case("SIP/2.0") {
            return self.stateless(&req, via, 505, "Version Not Supported", &[]);
        }
        // key_headers() checked that CSeq parses.
        let cseq_method = msg.cseq().map(|c| c.method).ok();
        if matches!(method, Method::Extension(_)) {
            return self.stateless(&req, via, 501, "Not Implemented", &[("Allow", ALLOW)]);
        }
        if cseq_method.as_ref() != Some(method) {
            return self.stateless(&req, via, 400, "Bad Request (CSeq method does not match the request method)", &[]);
        }

        match self.transactions.on_request(msg, &source, now) {
            RequestOutcome::New(tx) => self.process(&req, tx, now),
            RequestOutcome::Merged(tx) => self.reply(&req, tx, 482, "Loop Detected (merged request)", &[], now),
            RequestOutcome::Retransmission(t) => t.into_iter().collect(),
            RequestOutcome::AckAbsorbed => Vec::new(),
            RequestOutcome::Ack2xx => {
                // The ACK of our 2xx ends its retransmission (§13.3.1.4).
                if let Some(id) = DialogId::of_request(msg) {
                    self.pending_answers.remove(&id);
                }
                Vec::new()
            }
            RequestOutcome::Cancel { cancel, invite } => {
                // Every INVITE gets its final response at once for now, so there is
                // never a pending one to cancel.
                let (code, reason) = if invite.is_some() { (200, "OK") } else { (481, "Call/Transaction Does Not Exist") };
                self.reply(&req, cancel, code, reason, &[], now)
            }
            RequestOutcome::Overloaded => {
                self.stats.overloaded += 1;
                let ra = OVERLOAD_RETRY_AFTER_S.to_string();
                self.stateless(&req, via, 503, "Service Unavailable", &[("Retry-After", &ra)])
            }
            RequestOutcome::Invalid(reason) => self.stateless(&req, via, 400, &format!("Bad Request ({reason})"), &[]),
        }
    }

    /// A new request with its server transaction.
    fn process(&mut self, req: &Req<'_>, tx: ServerTxId, now: Instant) -> Vec<Transmit> {
        let msg = req.msg;
        match req.method {
            Method::Ack => return Vec::new(),
            Method::Invite | Method::Options | Method::Register | Method::Bye => {}
            _ => return self.reply(req, tx, 405, "Method Not Allowed", &[("Allow", ALLOW)], now),
        }
        if self.is_loop(msg) {
            return self.reply(req, tx, 482, "Loop Detected", &[], now);
        }
        let max_forwards = match msg.max_forwards() {
            Ok(mf) => mf,
            Err(e) => return self.reply(req, tx, 400, &format!("Bad Request ({e})"), &[], now),
        };
        // OPTIONS and REGISTER are answered here; anything we would forward needs a hop left.
        if *req.method == Method::Invite && max_forwards == Some(0) {
            return self.reply(req, tx, 483, "Too Many Hops", &[], now);
        }
        let ruri = msg.request_uri().unwrap_or("");
        match Uri::parse(ruri) {
            Ok(u) if u.is_sip() || u.scheme.eq_ignore_ascii_case("tel") => {}
            _ => return self.reply(req, tx, 416, "Unsupported URI Scheme", &[], now),
        }
        if let Some(resp) = self.check_require(req, tx, now) {
            return resp;
        }
        if let Some(resp) = self.check_content(req, tx, now) {
            return resp;
        }
        if *req.method == Method::Options {
            let supported = SUPPORTED.join(", ");
            return self.reply(
                req,
                tx,
                200,
                "OK",
                &[("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", &supported)],
                now,
            );
        }
        // Requests inside a dialog belong to its call; the dialog (its unguessable
        // tags) is their authentication (RFC 3261 §12.2.2).
        if matches!(req.method, Method::Invite | Method::Bye) {
            match DialogId::of_request(msg) {
                Some(id) => return self.in_dialog(req, tx, &id, now),
                None if *req.method == Method::Bye => {
                    return self.reply(req, tx, 481, "Call/Transaction Does Not Exist", &[], now);
                }
                None => {}
            }
        }
        let user = match req.profile {
            Profile::Internal => match self.authenticate(req, tx, now) {
                Ok(user) => Some(user),
                Err(out) => return out,
            },
            Profile::External => None,
        };
        match req.method {
            Method::Register => self.register(req, tx, user, now),
            _ => self.invite(req, tx, now),
        }
    }

    /// Our own branch prefix on a Via whose sent-by is one of our listeners: the
    /// request has been here before.
    fn is_loop(&self, msg: &SipMessage) -> bool {
        let Ok(vias) = msg.vias() else { return false };
        vias.iter().skip(1).chain(vias.first()).any(|v: &Via<'_>| {
            v.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
                && self.settings.listeners.iter().any(|l| {
                    let host = v.host.trim_matches(['[', ']']);
                    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == l.addr.ip())
                        && v.port.unwrap_or(5060) == l.addr.port()
                })
        })
    }

    fn check_require(&mut self, req: &Req<'_>, tx: ServerTxId, now: Instant) -> Option<Vec<Transmit>> {
        let mut unsupported = Vec::new();
        for name in [HeaderName::Require, HeaderName::ProxyRequire] {
            match req.msg.option_tags(name) {
                Ok(tags) => unsupported.extend(tags.into_iter().filter(|t| !SUPPORTED.contains(t)).map(str::to_owned)),
                Err(e) => return Some(self.reply(req, tx, 400, &format!("Bad Request ({e})"), &[], now)),
            }
        }
        // CANCEL and ACK cannot be rejected for extensions (RFC 3261 §8.2.2.3).
        if unsupported.is_empty() || matches!(req.method, Method::Cancel | Method::Ack) {
            return None;
        }
        let list = unsupported.join(", ");
        Some(self.reply(req, tx, 420, "Bad Extension", &[("Unsupported", &list)], now))
    }

    /// RFC 3261 §8.2.3: bodies we cannot read, and answers the caller cannot accept.
    fn check_content(&mut self, req: &Req<'_>, tx: ServerTxId, now: Instant) -> Option<Vec<Transmit>> {
        let msg = req.msg;
        let ct = match msg.content_type() {
            Ok(ct) => ct,
            Err(e) => return Some(self.reply(req, tx, 400, &format!("Bad Request ({e})"), &[], now)),
        };
        if !msg.body().is_empty() && *req.method == Method::Invite {
            let ok = ct.is_some_and(|t| t.eq_ignore_ascii_case("application/sdp"));
            if !ok {
                return Some(self.reply(req, tx, 415, "Unsupported Media Type", &[("Accept", "application/sdp")], now));
            }
        }
        if *req.method == Method::Invite {
            match msg.list(HeaderName::Accept) {
                Ok(types) if !types.is_empty() && !types.iter().any(|t| accepts_sdp(t)) => {
                    return Some(self.reply(req, tx, 406, "Not Acceptable", &[("Accept", "application/sdp")], now));
                }
                Ok(_) => {}
                Err(e) => return Some(self.reply(req, tx, 400, &format!("Bad Request ({e})"), &[], now)),
            }
        }
        None
    }

    /// Digest authentication on the internal profile. `Ok(username)` or the response to send.
    fn authenticate(&mut self, req: &Req<'_>, tx: ServerTxId, now: Instant) -> Result<String, Vec<Transmit>> {
        let ip = req.source.remote.ip();
        let is_register = *req.method == Method::Register;
        let (code, reason, cred_header, challenge_header) = if is_register {
            (401, "Unauthorized", HeaderName::Authorization, "WWW-Authenticate")
        } else {
            (407, "Proxy Authentication Required", HeaderName::ProxyAuthorization, "Proxy-Authenticate")
        };
        if let GuardDecision::Refuse { .. } = self.guard.check(ip, now) {
            self.stats.auth_refused += 1;
            return Err(self.reply(req, tx, 403, "Forbidden (too many failed authentications)", &[], now));
        }
        // Of several credentials, the one for our realm counts (RFC 3261 §22.4).
        let mut outcome = None;
        let endpoints = &self.settings.endpoints;
        let lookup = |u: &str| endpoints.get(u).map(|e| e.password.clone());
        for value in req.msg.header_values(cred_header) {
            let o = self.auth.verify(value, req.method.as_str(), &lookup, now);
            let done = !matches!(o, AuthOutcome::WrongRealm | AuthOutcome::NotDigest);
            outcome = Some(o);
            if done {
                break;
            }
        }
        let mut delay = None;
        let stale = match outcome {
            Some(AuthOutcome::Ok { username }) => return Ok(username),
            Some(AuthOutcome::Malformed(why)) => {
                return Err(self.reply(req, tx, 400, &format!("Bad Request (Malformed {} header: {why})", cred_header.as_str()), &[], now));
            }
            Some(AuthOutcome::Failed { username, reason }) => {
                self.stats.auth_failures += 1;
                warn!(remote = %req.source.remote, user = %username, reason, method = %req.method, "authentication failed");
                if let Some(until) = self.guard.record_failure(ip, now) {
                    self.stats.auth_bans += 1;
                    warn!(remote = %req.source.remote, banned_for_s = (until - now).as_secs(), "too many failed authentications: source refused");
                }
                // The answer to a wrong guess is held back: guessing gets slow.
                if let GuardDecision::Delay(d) = self.guard.check(ip, now) {
                    delay = Some(d);
                }
                false
            }
            Some(AuthOutcome::Stale) => true,
            Some(AuthOutcome::WrongRealm | AuthOutcome::NotDigest) | None => false,
        };
        self.stats.challenges += 1;
        let challenges = self.auth.challenge(now, stale);
        let headers: Vec<(&str, &str)> = challenges.iter().map(|c| (challenge_header, c.as_str())).collect();
        match delay {
            Some(d) if !d.is_zero() => {
                let data = self.build_response(req, code, reason, &headers);
                self.delayed_seq += 1;
                self.delayed.insert((now + d, self.delayed_seq), (tx, data));
                Err(Vec::new())
            }
            _ => Err(self.reply(req, tx, code, reason, &headers, now)),
        }
    }

    fn register(&mut self, req: &Req<'_>, tx: ServerTxId, user: Option<String>, now: Instant) -> Vec<Transmit> {
        if req.profile == Profile::External {
            return self.reply(req, tx, 403, "Forbidden (registration is not accepted on the trunk profile)", &[], now);
        }
        let msg = req.msg;
        let to = match msg.to() {
            Ok(t) => t,
            Err(e) => return self.reply(req, tx, 400, &format!("Bad Request ({e})"), &[], now),
        };
        let aor_user = match to.uri() {
            Ok(u) if u.is_sip() => u.user_unescaped(),
            _ => return self.reply(req, tx, 416, "Unsupported URI Scheme (To)", &[], now),
        };
        let Some(aor_user) = aor_user else {
            return self.reply(req, tx, 404, "Not Found", &[], now);
        };
        if !self.settings.endpoints.contains_key(&aor_user) {
            return self.reply(req, tx, 404, "Not Found", &[], now);
        }
        if user.as_deref() != Some(aor_user.as_str()) {
            return self.reply(req, tx, 403, "Forbidden (credentials do not match the address of record)", &[], now);
        }
        match self.registrar.register(msg, &aor_user, &req.source, now) {
            RegisterOutcome::Ok { contacts } => {
                self.stats.registrations_ok += 1;
                debug!(aor = %aor_user, contacts = contacts.len(), transport = %req.source.transport, remote = %req.source.remote, "registered");
                let headers: Vec<(&str, &str)> = contacts.iter().map(|c| ("Contact", c.as_str())).collect();
                self.reply(req, tx, 200, "OK", &headers, now)
            }
            RegisterOutcome::IntervalTooBrief { min_expires } => {
                let me = min_expires.to_string();
                self.reply(req, tx, 423, "Interval Too Brief", &[("Min-Expires", &me)], now)
            }
            RegisterOutcome::BadRequest(why) => self.reply(req, tx, 400, &format!("Bad Request ({why})"), &[], now),
            RegisterOutcome::OutOfOrder => {
                self.reply(req, tx, 500, "Server Internal Error (CSeq out of order for this Call-ID)", &[], now)
            }
            RegisterOutcome::TooManyContacts => self.reply(req, tx, 403, "Forbidden (too many contacts)", &[], now),
        }
    }

    /// Routes an INVITE through the dial plan. Until calls are connected (the
    /// B2BUA), a routable destination is answered 480.
    fn invite(&mut self, req: &Req<'_>, tx: ServerTxId, now: Instant) -> Vec<Transmit> {
        let number = dialled_number(req.msg).unwrap_or_default();
        match self.settings.dialplan.route(req.profile, &number) {
            None => self.reply(req, tx, 404, "Not Found", &[], now),
            Some(Route::Hangup { status }) => self.reply(req, tx, status, reason_phrase(status), &[], now),
            Some(Route::Echo) => self.answer_echo(req, tx, &number, now),
            Some(Route::Endpoint { id, .. }) if !self.settings.endpoints.contains_key(&id) => {
                self.reply(req, tx, 404, "Not Found", &[], now)
            }
            Some(_) => self.reply(req, tx, 480, "Temporarily Unavailable", &[], now),
        }
    }

    /// The `echo` destination: negotiate the caller's offer, anchor one media leg
    /// in echo mode, answer 200 with our SDP and keep the call until BYE.
    fn answer_echo(&mut self, req: &Req<'_>, tx: ServerTxId, number: &str, now: Instant) -> Vec<Transmit> {
        let msg = req.msg;
        let Some(relay) = self.media.clone() else {
            return self.reply(req, tx, 503, "Service Unavailable (no media relay)", &[], now);
        };
        if msg.body().is_empty() {
            // Answering an offerless INVITE needs our offer in the 2xx; not yet.
            return self.reply(req, tx, 488, "Not Acceptable Here (an SDP offer is required)", &[], now);
        }
        let offer = match SdpSession::parse(msg.body()) {
            Ok(o) => o,
            Err(e) => return self.reply(req, tx, e.sip_status(), &e.to_string(), &[], now),
        };
        let agreed = match negotiate(&offer, Direction::SendRecv) {
            Ok(a) => a,
            Err(e) => return self.reply(req, tx, 488, &format!("Not Acceptable Here ({})", e.0), &[], now),
        };
        let payloads: Vec<(u8, MediaCodec)> = agreed
            .audio
            .codecs
            .iter()
            .chain(agreed.audio.telephone_event.iter())
            .filter_map(|c| MediaCodec::from_rtpmap(&c.name, c.clock_rate).map(|m| (c.payload_type, m)))
            .collect();
        let payloads = match PayloadMap::new(&payloads) {
            Ok(p) => p,
            Err(e) => return self.reply(req, tx, 488, &format!("Not Acceptable Here ({e})"), &[], now),
        };
        let leg = match relay.allocate_leg(agreed.audio.rtcp_mux) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "no media port for a call");
                return self.reply(req, tx, 503, "Service Unavailable (no media port)", &[("Retry-After", "5")], now);
            }
        };
        // The media address as phones see it: the relay's advertised address.
        let local_rtp = SocketAddr::new(relay.config().advertise_ip, leg.local_rtp().port());
        let media = relay.echo(leg, LegParams { remote_rtp: agreed.remote_rtp, remote_rtcp: agreed.remote_rtcp, payloads });

        let local_tag = to_tag(msg);
        let contact = our_contact(&req.source);
        let dialog = match Dialog::as_uas(msg, &local_tag, &contact, true) {
            Ok(d) => d,
            Err(why) => return self.reply(req, tx, 400, &format!("Bad Request ({why})"), &[], now),
        };
        let mut sdp = LocalSession::new(rand::random(), relay.config().advertise_ip);
        let answer = sdp.answer(&offer, &agreed, local_rtp).to_string();
        let mut w = response_to(msg, req.source.remote, 200, "OK", Some(&local_tag));
        w.header("Contact", &contact);
        w.header("Allow", ALLOW);
        w.header("Server", &self.settings.user_agent);
        self.stats.count_response(200);
        let data = w.finish(Some("application/sdp"), answer.as_bytes());
        let Some(sent) = self.transactions.respond(tx, data, now) else { return Vec::new() };

        let id = dialog.id.clone();
        info!(call_id = %id.call_id, caller = %caller_of(msg), number, "echo call answered");
        let call = EchoCall {
            media_stop: spawn_media_task(id.clone(), media, self.media_reports.clone()),
            dialog,
            sdp,
            local_rtp,
            target: Target::reply_to(&req.source),
            via: our_via(&req.source),
            caller: caller_of(msg),
            callee: number.to_string(),
            start: SystemTime::now(),
        };
        self.pending_answers.insert(id.clone(), PendingAnswer::new(sent.clone(), &self.settings.timers, now));
        self.echo_calls.insert(id, call);
        vec![sent]
    }

    /// A request inside a dialog: BYE ends the call, a re-INVITE is answered
    /// from the same negotiation rules.
    fn in_dialog(&mut self, req: &Req<'_>, tx: ServerTxId, id: &DialogId, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.echo_calls.get_mut(id) else {
            return self.reply(req, tx, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        if let Err(e) = call.dialog.on_request(req.msg) {
            return self.reply(req, tx, 500, &format!("Server Internal Error ({e})"), &[], now);
        }
        if *req.method == Method::Bye {
            let mut out = self.reply(req, tx, 200, "OK", &[], now);
            out.extend(self.end_echo(id, false, HangupBy::Caller, "BYE", now));
            return out;
        }
        // A re-INVITE (hold, resume, refresh): answer with the same rules. The
        // relay keeps its latch; a new payload-type numbering is not applied yet.
        let answer = SdpSession::parse(req.msg.body()).map_err(|e| e.to_string()).and_then(|offer| {
            let agreed = negotiate(&offer, Direction::SendRecv).map_err(|e| e.0)?;
            Ok(call.sdp.answer(&offer, &agreed, call.local_rtp).to_string())
        });
        match answer {
            Ok(body) => {
                let local_tag = call.dialog.id.local_tag.clone();
                let contact = call.dialog.local_contact.clone();
                let mut w = response_to(req.msg, req.source.remote, 200, "OK", Some(&local_tag));
                w.header("Contact", &contact);
                w.header("Server", &self.settings.user_agent);
                self.stats.count_response(200);
                let data = w.finish(Some("application/sdp"), body.as_bytes());
                let sent = self.transactions.respond(tx, data, now);
                if let Some(sent) = &sent {
                    self.pending_answers.insert(id.clone(), PendingAnswer::new(sent.clone(), &self.settings.timers, now));
                }
                sent.into_iter().collect()
            }
            Err(why) => self.reply(req, tx, 488, &format!("Not Acceptable Here ({why})"), &[], now),
        }
    }

    /// Ends an echo call: stops its media, writes its CDR, and sends BYE when
    /// the caller did not.
    fn end_echo(&mut self, id: &DialogId, send_bye: bool, by: HangupBy, reason: &str, now: Instant) -> Vec<Transmit> {
        self.pending_answers.remove(id);
        let Some(mut call) = self.echo_calls.remove(id) else { return Vec::new() };
        let _ = call.media_stop.send(());
        info!(call_id = %id.call_id, reason, "echo call ended");
        if let Some(cdr) = &self.cdr {
            let end = SystemTime::now();
            cdr.send(Cdr::new(
                id.call_id.clone(),
                call.caller.clone(),
                call.callee.clone(),
                "echo".into(),
                (call.start, Some(call.start), end),
                Disposition::Answered,
                (200, "OK".into()),
                by,
            ));
        }
        if !send_bye {
            return Vec::new();
        }
        let (bye, _) = call.dialog.request(&Method::Bye, &call.via, &[("Reason", &format!("SIP;text=\"{reason}\""))], None);
        match self.transactions.send_request(bye, call.target, now) {
            Ok((_, t)) => vec![t],
            Err(why) => {
                warn!(call_id = %id.call_id, why, "could not send BYE");
                Vec::new()
            }
        }
    }

    /// Ends every call (at shutdown): BYE to each caller, and their CDRs.
    pub fn end_all_calls(&mut self, now: Instant) -> Vec<Transmit> {
        let ids: Vec<DialogId> = self.echo_calls.keys().cloned().collect();
        ids.iter().flat_map(|id| self.end_echo(id, true, HangupBy::Switch, "shutdown", now)).collect()
    }

    /// What a call's media reported: a leg went silent, or the media ended.
    pub fn handle_media_report(&mut self, (id, event): MediaReport, now: Instant) -> Vec<Transmit> {
        let reason = match event {
            Some(MediaEvent::Inactive { silent_for, .. }) => format!("RTP timeout ({} s without media)", silent_for.as_secs()),
            None => "media failed".to_string(),
        };
        warn!(call_id = %id.call_id, %reason, "ending the call");
        self.end_echo(&id, true, HangupBy::Switch, &reason, now)
    }

    /// Answers through the server transaction.
    fn reply(&mut self, req: &Req<'_>, tx: ServerTxId, code: u16, reason: &str, extra: &[(&str, &str)], now: Instant) -> Vec<Transmit> {
        let data = self.build_response(req, code, reason, extra);
        self.transactions.respond(tx, data, now).into_iter().collect()
    }

    /// Answers without a transaction: for requests too broken to have one, and for
    /// overload (RFC 3261 §8.2.6: a UAS may respond statelessly).
    fn stateless(&mut self, req: &Req<'_>, via: Option<&Via<'_>>, code: u16, reason: &str, extra: &[(&str, &str)]) -> Vec<Transmit> {
        if *req.method == Method::Ack {
            return Vec::new();
        }
        let data = self.build_response(req, code, reason, extra);
        let target = via.and_then(|v| response_target(v, &req.source)).unwrap_or_else(|| Target::reply_to(&req.source));
        vec![Transmit { target, data }]
    }

    fn build_response(&mut self, req: &Req<'_>, code: u16, reason: &str, extra: &[(&str, &str)]) -> Bytes {
        self.stats.count_response(code);
        let tag = to_tag(req.msg);
        let mut w = response_to(req.msg, req.source.remote, code, reason, Some(&tag));
        for (name, value) in extra {
            w.header(name, value);
        }
        w.header("Server", &self.settings.user_agent);
        w.finish_empty()
    }
}

/// A To tag that is the same for every response to the same request (so a
/// retransmitted request that was answered statelessly gets the same tag):
/// a hash of the request's identity with a per-process key.
fn to_tag(msg: &SipMessage) -> String {
    use std::hash::{BuildHasher, Hasher};
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    h.write(msg.call_id().unwrap_or("").as_bytes());
    h.write(msg.from().ok().and_then(|f| f.tag()).unwrap_or("").as_bytes());
    h.write_u32(msg.cseq().map(|c| c.seq).unwrap_or(0));
    format!("{:016x}", h.finish())
}

/// Our Contact for a dialog created from a request that came in on `source`.
fn our_contact(source: &Source) -> String {
    match source.transport {
        sip_transport::Transport::Udp => format!("<sip:tandem@{}>", source.local),
        t => format!("<sip:tandem@{};transport={}>", source.local, t.as_str().to_ascii_lowercase()),
    }
}

/// Our Via (without branch) for requests we send back the way `source` came.
fn our_via(source: &Source) -> String {
    format!("SIP/2.0/{} {};rport", source.transport, source.local)
}

/// The user of the From header, for logs and CDRs.
fn caller_of(msg: &SipMessage) -> String {
    msg.from().ok().and_then(|f| f.uri().ok()).and_then(|u| u.user_unescaped()).unwrap_or_default()
}

/// The number a request dials: the user part of a SIP Request-URI (unescaped),
/// or the number of a tel: URI.
fn dialled_number(msg: &SipMessage) -> Option<String> {
    let uri = Uri::parse(msg.request_uri()?).ok()?;
    if uri.is_sip() {
        return uri.user_unescaped();
    }
    uri.scheme.eq_ignore_ascii_case("tel").then(|| uri.rest.split(';').next().unwrap_or("").to_string())
}

fn accepts_sdp(media_range: &str) -> bool {
    let t = media_range.split(';').next().unwrap_or("").trim();
    t.eq_ignore_ascii_case("application/sdp") || t == "*/*" || t.eq_ignore_ascii_case("application/*")
}

/// The headers every request must carry (RFC 3261 §8.1.1), and the ones whose
/// syntax the core relies on, parsed before anything else looks at the request.
fn key_headers(msg: &SipMessage) -> Result<(), sip_transport::HeaderError> {
    msg.vias()?;
    msg.call_id()?;
    msg.cseq()?;
    msg.from()?;
    msg.to()?;
    msg.max_forwards()?;
    msg.expires()?;
    for c in msg.list(HeaderName::Contact)? {
        if c != "*" {
            NameAddr::parse(c).map_err(|e| sip_transport::HeaderError::Malformed("Contact", e))?;
        }
    }
    Ok(())
}
