//! The SIP core service: every message from the transport comes in here with the
//! time, and what to send goes out. Sans-IO like the machines it drives, so tests
//! and the fuzzer feed it bytes and a clock.
//!
//! Order of checks for a request (RFC 3261 §8.2, with the profile ACL first so a
//! stranger on the trunk side learns nothing): parse -> key headers -> ACL ->
//! version -> method/CSeq -> transaction -> method inspection -> loop / hops ->
//! URI scheme -> Require -> content -> authentication -> dispatch.

use std::collections::BTreeMap;
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
use sip_transport::writer::response_to;
use sip_transport::{FlowId, HeaderName, Method, SipMessage, Source, Target};
use tracing::{debug, info, warn};

use std::collections::{BTreeSet, HashMap};

use dialog_layer::dialog::{AnswerTimer, DialogId, PendingAnswer};
use media_relay::MediaRelay;
use tokio::sync::mpsc;

use crate::cdr::CdrSink;
use crate::media::{CallKey, MediaReport};
use crate::settings::{CoreSettings, Profile};
use crate::stats::CoreStats;
use crate::trunk_registration::{TrunkIndex, TrunkRegistrations};

mod calls;
use calls::{Call, ClientRole, Side};
pub use calls::RouterRequest;

/// Methods the switch accepts (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, PRACK, REFER, INFO";
/// Option tags the switch supports (the Supported header): session timers (RFC 4028)
/// and reliable provisional responses (RFC 3262).
pub const SUPPORTED: &[&str] = &["timer", "100rel"];
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
    music_on_hold: Option<std::sync::Arc<media_relay::Prompt>>,
    calls: HashMap<CallKey, Call>,
    next_call: CallKey,
    /// Every dialog of every call (caller's and callee's side), for in-dialog requests.
    call_dialogs: HashMap<DialogId, (CallKey, Side)>,
    /// The callers' INVITEs still waiting for their final response (for CANCEL).
    call_invites: HashMap<ServerTxId, CallKey>,
    /// Our client transactions that belong to calls.
    client_txs: HashMap<ClientTxId, ClientRole>,
    /// Each call once, at its next deadline (ring timeout, clean-up, session
    /// timer, a reliable provisional's retransmission), earliest first.
    call_deadlines: BTreeSet<(Instant, CallKey)>,
    /// Our 2xx answers to INVITEs waiting for their ACK, by dialog.
    pending_answers: HashMap<DialogId, PendingAnswer>,
    media_reports: mpsc::UnboundedSender<MediaReport>,
    media_reports_rx: Option<mpsc::UnboundedReceiver<MediaReport>>,
    cdr: Option<CdrSink>,
    /// Our registrations with carriers, and which trunk each REGISTER transaction is for.
    trunk_registrations: TrunkRegistrations,
    trunk_register_txs: HashMap<ClientTxId, TrunkIndex>,
    /// ACD queues: whom to offer waiting callers to.
    acd: acd_engine::Engine,
    /// What the engine last heard of each agent's phone, and the calls each
    /// endpoint is on (not counting those the engine connected).
    devices: HashMap<String, acd_engine::DeviceState>,
    endpoint_calls: HashMap<String, u32>,
    /// Prompts in the switch's language (queue announcements, confirmations).
    sounds: Option<std::sync::Arc<crate::prompts::Sounds>>,
    queue_log: Option<crate::queue_log::QueueLogSink>,
    router_requests: Vec<RouterRequest>,
    /// The IVRs' PIN rules (created and removed at run time by the control
    /// plane), and the count of wrong PINs per caller.
    dispatch_rules: pin_ivr::DispatchRules,
    pin_attempts: pin_ivr::AttemptLimiter,
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
        // The configuration was checked when it was loaded; this cannot fail then.
        let mut acd = acd_engine::Engine::new(settings.acd.engine.clone()).unwrap_or_else(|error| {
            tracing::error!(%error, "ACD configuration refused: no queues");
            acd_engine::Engine::new(acd_engine::AcdConfig::default()).expect("an empty configuration")
        });
        // No phone is registered yet: agents are offered once theirs is.
        let offline = acd_engine::DeviceState { registered: false, busy: false };
        let mut devices = HashMap::new();
        for agent in &settings.acd.engine.agents {
            acd.device_state(&agent.id, offline, now);
            devices.insert(agent.id.clone(), offline);
        }
        // Checked when the configuration was loaded: what fails here is logged, not fatal.
        let mut dispatch_rules = pin_ivr::DispatchRules::default();
        for rule in settings.ivr.rules.iter().cloned() {
            if let Err(error) = dispatch_rules.add(rule) {
                tracing::error!(%error, "a dispatch rule is refused");
            }
        }
        let pin_attempts = pin_ivr::AttemptLimiter::new(settings.ivr.limiter.clone());
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
            music_on_hold: None,
            calls: HashMap::new(),
            next_call: 0,
            call_dialogs: HashMap::new(),
            call_invites: HashMap::new(),
            client_txs: HashMap::new(),
            call_deadlines: BTreeSet::new(),
            pending_answers: HashMap::new(),
            media_reports,
            media_reports_rx: Some(media_reports_rx),
            cdr: None,
            trunk_registrations,
            trunk_register_txs: HashMap::new(),
            acd,
            devices,
            endpoint_calls: HashMap::new(),
            sounds: None,
            queue_log: None,
            router_requests: Vec::new(),
            dispatch_rules,
            pin_attempts,
        }
    }

    /// Prompts for queue announcements and feature-code confirmations.
    pub fn with_sounds(mut self, sounds: std::sync::Arc<crate::prompts::Sounds>) -> Self {
        self.sounds = Some(sounds);
        self
    }

    /// Where queue events are written (one JSON line each).
    pub fn with_queue_log(mut self, sink: crate::queue_log::QueueLogSink) -> Self {
        self.queue_log = Some(sink);
        self
    }

    /// A new configuration (SIGHUP): endpoints, the dial plan, queues, agents
    /// and IVRs change (new IVR calls follow the new IVRs); calls,
    /// registrations, waiting callers, agents' state, queue counters, the PIN
    /// rules (the control plane may have changed them) and the count of wrong
    /// PINs stay. Everything else needs a restart. A queue removed sends its
    /// callers to hang-up. Refused whole if the ACD part is.
    pub fn reload(&mut self, new: CoreSettings, now: Instant) -> Result<Vec<Transmit>, String> {
        self.acd.reconfigure(new.acd.engine.clone(), now).map_err(|e| e.to_string())?;
        self.settings.endpoints = new.endpoints;
        self.settings.dialplan = new.dialplan;
        self.settings.acd = new.acd;
        self.settings.ivr.ivrs = new.ivr.ivrs;
        self.settings.ivr.sounds = new.ivr.sounds;
        // Agents new to the configuration start as their phones are.
        let agents: Vec<String> = self.settings.acd.engine.agents.iter().map(|a| a.id.clone()).collect();
        for agent in agents {
            self.devices.remove(&agent);
            self.update_device(&agent, now);
        }
        Ok(self.run_acd(now))
    }

    /// The IVRs' dispatch rules: the control plane adds and removes them at run time.
    pub fn dispatch_rules(&mut self) -> &mut pin_ivr::DispatchRules {
        &mut self.dispatch_rules
    }

    /// The ACD engine, to read queue statistics and agents.
    pub fn acd(&self) -> &acd_engine::Engine {
        &self.acd
    }

    /// Media through this relay (needs a tokio runtime when calls are answered).
    pub fn with_media(mut self, relay: MediaRelay) -> Self {
        self.media = Some(relay);
        self
    }

    /// Played to a party on hold.
    pub fn with_music_on_hold(mut self, prompt: std::sync::Arc<media_relay::Prompt>) -> Self {
        self.music_on_hold = Some(prompt);
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
        if let Some((due, _)) = self.call_deadlines.first() {
            t = t.min(*due);
        }
        for p in self.pending_answers.values() {
            t = t.min(p.poll_timeout());
        }
        if let Some(r) = self.trunk_registrations.poll_timeout() {
            t = t.min(r);
        }
        if let Some(a) = self.acd.poll_timeout() {
            t = t.min(a);
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
                    None => {
                        debug!(?id, "client transaction timed out");
                        out.extend(self.call_timeout(id, now));
                    }
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
                    out.extend(self.end_call_of_dialog(&id, "no ACK", now));
                }
                None => {}
            }
        }
        while let Some(&(due, key)) = self.call_deadlines.first() {
            if due > now {
                break;
            }
            self.call_deadlines.pop_first();
            out.extend(self.call_deadline(key, now));
        }
        if now >= self.next_sweep {
            self.next_sweep = now + EXPIRY_SWEEP;
            for (aor, b) in self.registrar.location().expire(now) {
                info!(aor = %aor, contact = %b.contact, "registration expired");
                self.stats.registrations_expired += 1;
                self.update_device(&aor, now);
            }
        }
        self.acd.handle_timeout(now);
        out.extend(self.run_acd(now));
        out
    }

    /// A stream connection closed: bindings registered over it are gone (RFC 5626 §5.3 style).
    pub fn handle_flow_closed(&mut self, flow: FlowId, now: Instant) -> Vec<Transmit> {
        for (aor, b) in self.registrar.location().remove_flow(flow) {
            info!(aor = %aor, contact = %b.contact, "binding removed: its connection closed");
            self.update_device(&aor, now);
        }
        self.run_acd(now)
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
        let mut out =
            if msg.is_request() { self.handle_request(&msg, source, now) } else { self.handle_response(&msg, source, now) };
        // Whatever happened may have freed an agent or ended a queue call.
        out.extend(self.run_acd(now));
        out
    }

    fn handle_response(&mut self, msg: &SipMessage, source: Source, now: Instant) -> Vec<Transmit> {
        self.stats.responses_in += 1;
        if msg.fault().is_some() || msg.top_via().is_err() || msg.cseq().is_err() {
            debug!(remote = %source.remote, "dropped malformed response");
            return Vec::new();
        }
        let (outcome, ack) = self.transactions.on_response(msg, &source, now);
        let mut out: Vec<Transmit> = ack.into_iter().collect();
        match outcome {
            ResponseOutcome::Stray => debug!(remote = %source.remote, "dropped stray response"),
            ResponseOutcome::Final(id) if self.trunk_register_txs.contains_key(&id) => {
                let trunk = self.trunk_register_txs.remove(&id).expect("checked");
                if let Some((register, target)) = self.trunk_registrations.on_response(trunk, msg, now) {
                    out.extend(self.send_trunk_register(trunk, register, target, now));
                }
            }
            ResponseOutcome::Provisional(cid) | ResponseOutcome::Final(cid) => out.extend(self.call_response(cid, msg, now)),
            ResponseOutcome::Absorbed(_) => {}
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
            RequestOutcome::Ack2xx => self.ack_received(msg, now),
            RequestOutcome::Cancel { cancel, invite } => {
                // The CANCEL is answered at once; the INVITE, if it is still
                // ringing, gets 487 (RFC 3261 §9.2).
                let Some(invite) = invite else {
                    return self.reply(&req, cancel, 481, "Call/Transaction Does Not Exist", &[], now);
                };
                let mut out = self.reply(&req, cancel, 200, "OK", &[], now);
                out.extend(self.caller_cancelled(invite, now));
                out
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
            Method::Invite
            | Method::Options
            | Method::Register
            | Method::Bye
            | Method::Update
            | Method::Prack
            | Method::Refer
            | Method::Info => {}
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
        if matches!(req.method, Method::Invite | Method::Bye | Method::Update | Method::Prack | Method::Refer | Method::Info) {
            match DialogId::of_request(msg) {
                Some(id) => return self.in_dialog(req, tx, &id, now),
                None if *req.method != Method::Invite => {
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
                let mut out = self.reply(req, tx, 200, "OK", &headers, now);
                self.update_device(&aor_user, now);
                out.extend(self.run_acd(now));
                out
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
