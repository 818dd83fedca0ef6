//! Calls: the back-to-back user agent. A caller's INVITE becomes one [`Call`]
//! with two independent dialogs, the caller's (we are its UAS) and the callee's
//! (we are its UAC), and media anchored through the relay between them. While
//! it rings, the callee side is a set of forks: one INVITE per registered
//! contact (or one to a trunk's gateway); the first 2xx wins and the others are
//! cancelled. The `echo` destination is a call without a callee.
//!
//! Everything here is sans-IO like the rest of the core: the time comes in,
//! messages to send go out, and each call's deadline (ring timeout, clean-up)
//! sits in one ordered set so the core never scans all calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use dialog_layer::auth::answer_challenge;
use dialog_layer::dialog::{Dialog, DialogId, PendingAnswer, new_call_id, new_tag};
use dialog_layer::registrar::LocationService;
use dialog_layer::session_timer::{Refresher, SessionTimer, UasTimer, agreed_as_uac, negotiate_as_uas};
use dialog_layer::transaction::{ClientTxId, ServerTxId, Transmit, cancel_request, new_branch};
use media_relay::{
    BridgeParams, Codec as MediaCodec, Leg, LegHandle, LegParams, MediaEvent, Mode, PayloadMap, Prompt,
};
use sip_transport::writer::response_to;
use sip_transport::{HeaderName, MessageWriter, Method, SipMessage, Target, Transport};
use tracing::{debug, info, warn};

use super::{ALLOW, Req, SUPPORTED, SipCore, caller_of, dialled_number, to_tag};
use crate::cdr::{Cdr, Disposition, HangupBy};
use crate::dialplan::Route;
use crate::media::{CallKey, MediaCommand, MediaControl, spawn_media_task};
use crate::sdp::{
    AudioAgreement, AudioParams, Direction, LocalSession, SdpSession, answer_direction, negotiate, read_answer,
};
use crate::settings::{Credentials, Profile};
use crate::stats::CoreStats;

mod ivr;
mod queue;
pub use queue::RouterRequest;

/// What the switch does with a call it answers itself.
enum Answered {
    Echo,
    Prompt(Option<Arc<Prompt>>),
}

/// Silence after a prompt before the switch hangs up.
const PROMPT_TAIL: Duration = Duration::from_millis(500);

/// How long to wait before trying our session refresh again after a 491.
const RETRY_AFTER_GLARE: std::time::Duration = std::time::Duration::from_secs(2);

/// The two sides of a call, and the relay leg of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Caller,
    Callee,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }

    fn leg(self) -> Leg {
        match self {
            Side::Caller => Leg::A,
            Side::Callee => Leg::B,
        }
    }

    fn of_leg(leg: Leg) -> Side {
        match leg {
            Leg::A => Side::Caller,
            Leg::B => Side::Callee,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Caller => 0,
            Side::Callee => 1,
        }
    }

    /// For the log.
    fn name(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Callee => "callee",
        }
    }
}

/// What a client transaction of ours belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ClientRole {
    /// An INVITE to one callee contact (index into the call's forks).
    Fork(CallKey, usize),
    /// A re-INVITE or UPDATE relayed to this side.
    Offer(CallKey, Side),
    /// Our session refresh (RFC 4028) to this side.
    Refresh(CallKey, Side),
    /// An attended transfer: the re-INVITE moving the party on side `target.1`
    /// of call `target.0` onto the transferor's place in `into`.
    Replace { into: (CallKey, Side), target: (CallKey, Side) },
}

/// One side of an established call.
pub(crate) struct Party {
    dialog: Dialog,
    /// Where in-dialog requests to this side go, and our Via for them.
    target: Target,
    via: String,
    /// Our SDP on this side (o= version), and the relay's address for it.
    sdp: LocalSession,
    local_rtp: SocketAddr,
    /// What was last agreed on this side, with its payload types.
    agreed: AudioAgreement,
    /// The last offer this side made (a re-INVITE repeating it is a refresh).
    remote_offer: Option<SdpSession>,
    /// Our offer in a 2xx to an INVITE without SDP, answered in the ACK.
    awaiting_answer: Option<SdpSession>,
    /// Our last ACK for a 2xx on this side (CSeq, message), sent again when the
    /// 2xx is retransmitted.
    ack: Option<(u32, Bytes)>,
    /// RFC 4028 on this side: the agreed interval, who refreshes, and when our
    /// refresh is due (we refresh) or by when the peer's must have come.
    timer: Option<SessionTimer>,
    we_refresh: bool,
    timer_due: Option<Instant>,
    /// Whose dial plan this side's transfers follow.
    profile: Profile,
}

impl Party {
    /// Our SDP for this side's INVITE: the answer to its offer, or (an INVITE
    /// without one) our offer, whose answer comes in the ACK.
    fn answer_invite(&mut self, offer: Option<SdpSession>) -> String {
        let answer = match &offer {
            Some(offer) => self.sdp.answer(offer, &self.agreed, self.local_rtp),
            None => {
                let ours = self.sdp.offer(self.local_rtp, &self.agreed.audio);
                self.awaiting_answer = Some(ours.clone());
                ours
            }
        };
        self.remote_offer = offer;
        answer.to_string()
    }

    /// A refresh happened (either way): the session runs for another interval.
    fn touch_timer(&mut self, now: Instant) {
        if let Some(t) = &self.timer {
            self.timer_due = Some(now + if self.we_refresh { t.refresh_after() } else { t.expire_after() });
        }
    }
}

/// The caller's INVITE until it has its final response.
struct CallerInvite {
    msg: SipMessage,
    tx: ServerTxId,
    remote: SocketAddr,
}

/// An INVITE we send for a call: what is needed to write it again with
/// credentials after a challenge.
struct OutboundInvite {
    uri: String,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    contact: String,
    via: String,
    max_forwards: u8,
    body: Bytes,
    /// RFC 4028: what we ask for (raised by a 422).
    session_expires: u32,
    min_se: u32,
    /// Our answer to a trunk's challenge (header name, value).
    authorization: Option<(&'static str, String)>,
    /// Extra headers (a queue's for the agent, an IVR rule's).
    headers: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ForkState {
    /// No response yet: a CANCEL must wait (RFC 3261 §9.1).
    Calling,
    /// A provisional response came.
    Proceeding,
    /// A final response came (or the transaction timed out).
    Done,
}

struct Fork {
    tx: ClientTxId,
    invite: OutboundInvite,
    /// The INVITE as last sent (the CANCEL copies it).
    sent: Bytes,
    target: Target,
    state: ForkState,
    /// Cancel as soon as it may be sent.
    cancel: bool,
    /// For a trunk: our answer to its challenge, given once.
    credentials: Option<Credentials>,
    challenged: bool,
    /// A 422 (session interval too small) is followed once.
    raised_interval: bool,
    /// The early dialog of the last reliable provisional response (for PRACK).
    early: Option<Dialog>,
    /// Final status, for choosing what the caller gets.
    status: Option<u16>,
    /// The queue's offer this fork rings for: the agent, and the offer's
    /// attempt (an agent's contacts share one offer; a later offer to the
    /// same agent is another).
    offer: Option<(String, u32)>,
}

/// The caller's re-INVITE or UPDATE being relayed to the other side.
struct RelayedOffer {
    from: Side,
    method: Method,
    msg: SipMessage,
    tx: ServerTxId,
    remote: SocketAddr,
    offer: SdpSession,
    agreed: AudioAgreement,
    /// Our offer to the other side.
    sent: SdpSession,
}

enum Media {
    /// Ports allocated, waiting for the callee's SDP.
    Allocated(Box<(LegHandle, LegHandle)>),
    Running(MediaControl),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    Ringing,
    Answered,
    /// Answered, and one side asked to be replaced by a new callee (REFER):
    /// the transfer target's forks ring.
    Transferring,
    /// The caller has its final response or was hung up on; waiting for forks
    /// to finish (a late 2xx is acknowledged and hung up) or the clean-up deadline.
    Ending,
    /// Answered by the switch, waiting in a queue (forks ring agents) or for
    /// the queue's exit destination to answer.
    Queued,
}

pub(crate) struct Call {
    state: CallState,
    caller: Party,
    callee: Option<Party>,
    invite: Option<CallerInvite>,
    forks: Vec<Fork>,
    /// Our offer to the callee side (the same to every fork), and its session.
    callee_sdp: Option<(LocalSession, SdpSession, SocketAddr)>,
    /// The answer the caller got in a 183: later responses repeat it (RFC 3261 §13.2.1).
    early_answer: Option<String>,
    /// The callee's answer as read, with our relay address on its side.
    callee_agreed: Option<(AudioAgreement, SocketAddr)>,
    media: Option<Media>,
    relayed: Option<RelayedOffer>,
    /// The ring timeout, or the end of the clean-up wait.
    deadline: Option<Instant>,
    /// The time this call is in `call_deadlines` for: the earliest of
    /// `deadline`, the parties' session timers and a reliable provisional's
    /// retransmission.
    armed: Option<Instant>,
    /// The caller requires reliable provisional responses (RFC 3262).
    caller_requires_100rel: bool,
    last_rseq: u32,
    /// Our reliable provisional response waiting for its PRACK.
    unacked_provisional: Option<ReliableProvisional>,
    /// A blind transfer in progress, and where its forks start in `forks`.
    transfer: Option<Transfer>,
    fork_base: usize,
    /// Per side (indexed by [`Side::index`]): silent since then while the other
    /// side sends, as the relay reported (one-way audio).
    one_way: [Option<Instant>; 2],
    /// Counted in [`CoreStats::one_way_calls`] already.
    had_one_way: bool,
    record: Record,
    queue: Option<Box<queue::QueueCall>>,
    /// In an IVR: its session.
    ivr: Option<Box<ivr::IvrCall>>,
    /// The endpoints on this call (its caller, the callee who answered), as
    /// agents' device state counts them.
    busy_endpoints: Vec<String>,
    /// Hung up at `deadline` (a feature code's confirmation has played).
    ends_at_deadline: bool,
}

/// A blind transfer (RFC 3515): `from` sent REFER and is replaced by whoever
/// answers the forks; the other side keeps its dialog and media leg.
struct Transfer {
    from: Side,
    /// The transferor hung up before the target answered.
    transferor_gone: bool,
    /// Our offer to the target, on the transferor's relay leg.
    sdp: LocalSession,
    offer: SdpSession,
}

/// A provisional response sent reliably (RFC 3262 §3): resent at T1, 2×T1,
/// 4×T1… until its PRACK, given up after 64×T1.
struct ReliableProvisional {
    rseq: u32,
    transmit: Transmit,
    next: Instant,
    interval: std::time::Duration,
    give_up: Instant,
}

/// What the CDR says.
struct Record {
    /// The caller's Call-ID: the call's name in CDRs and logs, whoever its
    /// parties become after a transfer.
    call_id: String,
    caller: String,
    callee: String,
    destination: String,
    /// The reference the caller typed in an IVR.
    contact_ref: Option<String>,
    start: SystemTime,
    answer: Option<SystemTime>,
    written: bool,
}

/// One INVITE to send for a call: Request-URI, To, where to, and the
/// credentials for a trunk's challenge.
type CalleeTarget = (String, String, Target, Option<Credentials>);

/// Who the callee sees calling.
struct CallerId {
    display: Option<String>,
    user: String,
}

/// Where a routed call rings.
enum Callees {
    Endpoint(String),
    Trunk { name: String, number: String },
    /// A SIP URI whose host is an IP address (UDP).
    Uri(String),
}

impl Callees {
    /// As the CDR names the destination.
    fn label(&self) -> String {
        match self {
            Callees::Endpoint(id) => format!("endpoint:{id}"),
            Callees::Trunk { name, .. } => format!("trunk:{name}"),
            Callees::Uri(uri) => format!("uri:{uri}"),
        }
    }
}

/// Why a routed call is refused before it rings: the status for the caller
/// and one extra header (Min-SE, Retry-After).
struct Refusal {
    code: u16,
    reason: String,
    header: Option<(&'static str, String)>,
}

impl Refusal {
    fn new(code: u16, reason: &str) -> Refusal {
        Refusal { code, reason: reason.to_string(), header: None }
    }
}

impl SipCore {
    /// Routes an INVITE through the dial plan.
    pub(super) fn invite(&mut self, req: &Req<'_>, tx: ServerTxId, now: Instant) -> Vec<Transmit> {
        let number = dialled_number(req.msg).unwrap_or_default();
        if req.profile == Profile::Internal
            && let Some(status) = self.feature_code(&number)
        {
            return self.agent_feature(req, tx, &number, status, now);
        }
        let (callees, ring_timeout) = match self.settings.dialplan.route(req.profile, &number) {
            None => return self.reply(req, tx, 404, "Not Found", &[], now),
            Some(Route::Hangup { status }) => {
                return self.reply(req, tx, status, sip_transport::writer::reason_phrase(status), &[], now);
            }
            Some(Route::Echo) => return self.answer_echo(req, tx, &number, now),
            Some(Route::Queue(target)) => return self.join_queue(req, tx, &number, &target, now),
            Some(Route::Ivr { name }) => return self.start_ivr(req, tx, &number, &name, now),
            Some(Route::Endpoint { id, ring_timeout }) => (Callees::Endpoint(id), ring_timeout),
            Some(Route::Trunk { trunk, number, ring_timeout }) => {
                (Callees::Trunk { name: trunk, number }, ring_timeout)
            }
        };
        self.start_call(req, tx, &number, callees, now + ring_timeout, now)
    }

    /// The checks an offer must pass before anything is allocated: the caller's
    /// SDP negotiated, its session timer (RFC 4028) agreed, and a relay present.
    fn caller_offer(&self, req: &Req<'_>) -> Result<(Option<SdpSession>, AudioAgreement, SessionTimer), Refusal> {
        if self.media.is_none() {
            return Err(Refusal::new(503, "Service Unavailable (no media relay)"));
        }
        let (offer, agreed) = if req.msg.body().is_empty() {
            // A delayed offer: ours goes in the 2xx, the answer comes in the ACK.
            let ours = AudioAgreement {
                media_index: 0,
                audio: AudioParams::tandem_default(),
                remote_rtp: None,
                remote_rtcp: None,
            };
            (None, ours)
        } else {
            let offer = match SdpSession::parse(req.msg.body()) {
                Ok(o) => o,
                Err(e) => return Err(Refusal::new(e.sip_status(), &e.to_string())),
            };
            match negotiate(&offer, Direction::SendRecv) {
                Ok(agreed) => (Some(offer), agreed),
                Err(e) => return Err(Refusal::new(488, &format!("Not Acceptable Here ({})", e.0))),
            }
        };
        match negotiate_as_uas(req.msg, &self.settings.session_timer) {
            Ok(UasTimer::Use(timer)) => Ok((offer, agreed, timer)),
            Ok(UasTimer::TooSmall { min_se }) => {
                Err(Refusal { header: Some(("Min-SE", min_se.to_string())), ..Refusal::new(422, "Session Interval Too Small") })
            }
            Err(why) => Err(Refusal::new(400, &format!("Bad Request ({why})"))),
        }
    }

    fn allocate_leg(&self, rtcp_mux: bool) -> Result<LegHandle, Refusal> {
        let relay = self.media.as_ref().expect("checked by caller_offer");
        relay.allocate_leg(rtcp_mux).map_err(|e| {
            warn!(error = %e, "no media port for a call");
            Refusal { header: Some(("Retry-After", "5".into())), ..Refusal::new(503, "Service Unavailable (no media port)") }
        })
    }

    /// A routed call that cannot go on: the caller's answer and a CDR, so every
    /// attempt the dial plan sent somewhere is on record.
    fn refuse(&mut self, req: &Req<'_>, tx: ServerTxId, number: &str, destination: &str, refusal: Refusal, now: Instant) -> Vec<Transmit> {
        if let Some(sink) = &self.cdr {
            let at = SystemTime::now();
            let disposition = match refusal.code {
                486 | 600 => Disposition::Busy,
                603 => Disposition::Rejected,
                _ => Disposition::Failed,
            };
            sink.send(Cdr::new(
                req.msg.call_id().unwrap_or_default().to_string(),
                caller_of(req.msg),
                number.to_string(),
                destination.to_string(),
                (at, None, at),
                disposition,
                (refusal.code, refusal.reason.clone()),
                HangupBy::Switch,
            ));
        }
        let extra: Vec<(&str, &str)> = refusal.header.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.reply(req, tx, refusal.code, &refusal.reason, &extra, now)
    }

    /// The caller's side of a new call (an early dialog until answered).
    fn caller_party(
        &self,
        req: &Req<'_>,
        agreed: AudioAgreement,
        timer: SessionTimer,
        local_rtp: SocketAddr,
    ) -> Result<Party, &'static str> {
        let relay_ip = self.media.as_ref().map(|m| m.config().advertise_ip).unwrap_or(local_rtp.ip());
        let dialog =
            Dialog::as_uas(req.msg, &to_tag(req.msg), &our_contact(req.source.transport, req.source.local), false)?;
        Ok(Party {
            dialog,
            target: Target::reply_to(&req.source),
            via: our_via(req.source.transport, req.source.local),
            sdp: LocalSession::new(rand::random(), relay_ip),
            local_rtp,
            agreed,
            remote_offer: None,
            awaiting_answer: None,
            ack: None,
            timer: Some(timer),
            we_refresh: timer.refresher == Refresher::Uas,
            timer_due: None,
            profile: req.profile,
        })
    }

    fn new_call_key(&mut self) -> CallKey {
        self.next_call += 1;
        self.next_call
    }

    /// The `echo` destination: negotiate the caller's offer, anchor one media leg
    /// in echo mode, answer 200 with our SDP and keep the call until BYE.
    fn answer_echo(&mut self, req: &Req<'_>, tx: ServerTxId, number: &str, now: Instant) -> Vec<Transmit> {
        self.answer_here(req, tx, number, Answered::Echo, now)
    }

    /// A call the switch answers to play `prompt` (or nothing), then hang up.
    fn answer_with_prompt(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        number: &str,
        prompt: Option<Arc<Prompt>>,
        now: Instant,
    ) -> Vec<Transmit> {
        self.answer_here(req, tx, number, Answered::Prompt(prompt), now)
    }

    /// Answers a call with nobody else on it: negotiate the caller's offer,
    /// anchor one media leg, answer 200 with our SDP.
    fn answer_here(&mut self, req: &Req<'_>, tx: ServerTxId, number: &str, what: Answered, now: Instant) -> Vec<Transmit> {
        let label = match what {
            Answered::Echo => "echo",
            Answered::Prompt(_) => "prompt",
        };
        let prepared = self.caller_offer(req).and_then(|(offer, agreed, timer)| {
            let params = leg_params(&agreed).map_err(|why| Refusal::new(488, &format!("Not Acceptable Here ({why})")))?;
            let leg = self.allocate_leg(agreed.audio.rtcp_mux)?;
            let caller = self
                .caller_party(req, agreed, timer, leg.local_rtp())
                .map_err(|why| Refusal::new(400, &format!("Bad Request ({why})")))?;
            Ok((offer, params, leg, caller))
        });
        let (offer, params, leg, mut caller) = match prepared {
            Ok(p) => p,
            Err(refusal) => return self.refuse(req, tx, number, label, refusal, now),
        };
        let answer = caller.answer_invite(offer);
        caller.dialog.confirm();
        let key = self.new_call_key();
        let media = self.media.as_ref().expect("checked").echo(leg, params);
        let control = spawn_media_task(key, caller.dialog.id.call_id.clone(), media, self.media_reports.clone());
        info!(call_id = %caller.dialog.id.call_id, caller = %caller_of(req.msg), number, label, "call answered by the switch");
        let mut hang_up_at = None;
        if let Answered::Prompt(prompt) = what {
            // The prompt plays once (it loops until we hang up), then a breath.
            hang_up_at = Some(now + prompt.as_ref().map_or(Duration::ZERO, |p| p.duration()) + PROMPT_TAIL);
            control.send(MediaCommand::SetMode(Mode::Hold { held: Leg::A }));
            control.send(MediaCommand::Play(Leg::A, prompt));
        }
        let mut call = Call::new(req, caller, number, label.into(), CallState::Answered, Media::Running(control));
        call.record.answer = Some(SystemTime::now());
        call.ends_at_deadline = hang_up_at.is_some();
        call.deadline = hang_up_at;
        self.call_dialogs.insert(call.caller.dialog.id.clone(), (key, Side::Caller));
        self.calls.insert(key, call);
        self.caller_endpoint_busy(key, req, now);
        self.answer_in_dialog(req.msg, tx, req.source.remote, key, Side::Caller, Some(&answer), now)
    }

    /// Our 200 to an INVITE, re-INVITE or UPDATE from `side` (with our SDP, if
    /// any): with the session timer of that side, which it renews. An INVITE's
    /// 2xx is then resent until its ACK.
    #[allow(clippy::too_many_arguments)]
    fn answer_in_dialog(
        &mut self,
        msg: &SipMessage,
        tx: ServerTxId,
        remote: SocketAddr,
        key: CallKey,
        side: Side,
        sdp: Option<&str>,
        now: Instant,
    ) -> Vec<Transmit> {
        let Some(party) = self.calls.get_mut(&key).and_then(|c| c.party_mut(side)) else {
            return Vec::new();
        };
        party.touch_timer(now);
        let mut w = response_to(msg, remote, 200, "OK", Some(&party.dialog.id.local_tag));
        w.header("Contact", &party.dialog.local_contact);
        w.header("Allow", ALLOW);
        w.header("Supported", SUPPORTED.join(", "));
        for (name, value) in party.timer.iter().flat_map(SessionTimer::response_headers) {
            w.header(name, value);
        }
        w.header("Server", &self.settings.user_agent);
        self.stats.count_response(200);
        let data = match sdp {
            Some(body) => w.finish(Some("application/sdp"), body.as_bytes()),
            None => w.finish_empty(),
        };
        let dialog = party.dialog.id.clone();
        self.rearm(key);
        let Some(sent) = self.transactions.respond(tx, data, now) else {
            return Vec::new();
        };
        if msg.method() == Some(&Method::Invite) {
            self.pending_answers.insert(dialog, PendingAnswer::new(sent.clone(), &self.settings.timers, now));
        }
        vec![sent]
    }

    /// An endpoint or trunk destination: 100 Trying, media ports for both sides,
    /// and an INVITE to every callee contact.
    fn start_call(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        number: &str,
        callees: Callees,
        ring_until: Instant,
        now: Instant,
    ) -> Vec<Transmit> {
        // Where the INVITEs go, before anything is allocated.
        let destination = callees.label();
        let prepared = self.callee_targets(&callees, now).map_err(|(code, reason)| Refusal::new(code, reason)).and_then(
            |targets| {
                let (offer, agreed, timer) = self.caller_offer(req)?;
                let caller_leg = self.allocate_leg(agreed.audio.rtcp_mux)?;
                // An offerer cannot know the callee takes rtcp-mux: it gets the RTCP port too.
                let callee_leg = self.allocate_leg(false)?;
                let caller = self
                    .caller_party(req, agreed, timer, caller_leg.local_rtp())
                    .map_err(|why| Refusal::new(400, &format!("Bad Request ({why})")))?;
                Ok((targets, offer, caller_leg, callee_leg, caller))
            },
        );
        let (targets, offer, caller_leg, callee_leg, mut caller) = match prepared {
            Ok(p) => p,
            Err(refusal) => return self.refuse(req, tx, number, &destination, refusal, now),
        };
        // The callee is offered what the caller offered and we can relay, in the
        // caller's direction and payload types (so the common case needs no rewriting).
        let offered_direction = offer.as_ref().and_then(|o| o.audio()).map(offered_direction).unwrap_or(Direction::SendRecv);
        let callee_params =
            AudioParams { direction: offered_direction, rtcp_mux: false, ..caller.agreed.audio.clone() };
        let mut callee_sdp = LocalSession::new(rand::random(), callee_leg.local_rtp().ip());
        let callee_offer = callee_sdp.offer(callee_leg.local_rtp(), &callee_params);
        let body = Bytes::from(callee_offer.to_string());
        caller.remote_offer = offer;

        let key = self.new_call_key();
        let from_user = match &callees {
            Callees::Trunk { name, .. } => self.settings.trunk(name).and_then(|t| t.from_user.clone()),
            Callees::Endpoint(_) | Callees::Uri(_) => None,
        }
        .unwrap_or_else(|| caller_of(req.msg));
        let display = req.msg.from().ok().and_then(|f| f.display.map(str::to_string));
        let max_forwards = req.msg.max_forwards().ok().flatten().unwrap_or(70).saturating_sub(1);
        let mut out = Vec::new();
        // 100 Trying at once: the caller stops retransmitting while it rings.
        let trying = {
            let mut w = response_to(req.msg, req.source.remote, 100, "Trying", None);
            w.header("Server", &self.settings.user_agent);
            w.finish_empty()
        };
        self.stats.count_response(100);
        out.extend(self.transactions.respond(tx, trying, now));

        let caller_id = CallerId { display, user: from_user };
        let (forks, sent) = self.send_forks(key, 0, targets, &caller_id, max_forwards, &body, &[], now);
        out.extend(sent);
        if forks.is_empty() {
            let refusal = Refusal { header: Some(("Retry-After", "5".into())), ..Refusal::new(503, "Service Unavailable") };
            out.extend(self.refuse(req, tx, number, &destination, refusal, now));
            return out;
        }
        info!(call_id = %caller.dialog.id.call_id, caller = %caller_of(req.msg), number, destination, forks = forks.len(), "call ringing");
        let callee_rtp = callee_leg.local_rtp();
        let media = Media::Allocated(Box::new((caller_leg, callee_leg)));
        let mut call = Call::new(req, caller, number, destination, CallState::Ringing, media);
        call.invite = Some(CallerInvite { msg: req.msg.clone(), tx, remote: req.source.remote });
        call.forks = forks;
        call.callee_sdp = Some((callee_sdp, callee_offer, callee_rtp));
        self.call_dialogs.insert(call.caller.dialog.id.clone(), (key, Side::Caller));
        self.call_invites.insert(tx, key);
        self.calls.insert(key, call);
        self.caller_endpoint_busy(key, req, now);
        self.set_deadline(key, Some(ring_until));
        out
    }

    /// One INVITE per target, each its own dialog-to-be, all with the same SDP offer.
    #[allow(clippy::too_many_arguments)]
    fn send_forks(
        &mut self,
        key: CallKey,
        first_index: usize,
        targets: Vec<CalleeTarget>,
        caller_id: &CallerId,
        max_forwards: u8,
        body: &Bytes,
        headers: &[(String, String)],
        now: Instant,
    ) -> (Vec<Fork>, Vec<Transmit>) {
        let mut forks = Vec::new();
        let mut out = Vec::new();
        for (uri, to, target, credentials) in targets {
            let Some(listener) = target.listener.and_then(|i| self.settings.listeners.get(i)) else {
                continue;
            };
            let (transport, local) = (listener.transport, listener.addr);
            let from = match &caller_id.display {
                Some(d) => format!("{d} <sip:{}@{local}>;tag={}", caller_id.user, new_tag()),
                None => format!("<sip:{}@{local}>;tag={}", caller_id.user, new_tag()),
            };
            let invite = OutboundInvite {
                uri,
                from,
                to,
                call_id: new_call_id(&local.ip().to_string()),
                cseq: 1,
                contact: our_contact(transport, local),
                via: our_via(transport, local),
                max_forwards,
                body: body.clone(),
                session_expires: self.settings.session_timer.session_expires,
                min_se: self.settings.session_timer.min_se,
                authorization: None,
                headers: headers.to_vec(),
            };
            let sent = invite.write(&self.settings.user_agent);
            match self.transactions.send_request(sent.clone(), target, now) {
                Ok((cid, t)) => {
                    self.client_txs.insert(cid, ClientRole::Fork(key, first_index + forks.len()));
                    out.push(t);
                    forks.push(Fork {
                        tx: cid,
                        invite,
                        sent,
                        target,
                        state: ForkState::Calling,
                        cancel: false,
                        credentials,
                        challenged: false,
                        raised_interval: false,
                        early: None,
                        status: None,
                        offer: None,
                    });
                }
                Err(why) => warn!(why, "could not send an INVITE to a callee"),
            }
        }
        (forks, out)
    }

    /// Where a call to `callees` rings: (Request-URI, To, target, credentials)
    /// per INVITE, and the destination as the CDR names it; or the status for
    /// the caller when it cannot ring.
    fn callee_targets(&self, callees: &Callees, now: Instant) -> Result<Vec<CalleeTarget>, (u16, &'static str)> {
        Ok(match callees {
            Callees::Endpoint(id) => {
                if !self.settings.endpoints.contains_key(id) {
                    return Err((404, "Not Found"));
                }
                let bindings = self.registrar.location().bindings(id, now);
                if bindings.is_empty() {
                    return Err((480, "Temporarily Unavailable (not registered)"));
                }
                let targets: Vec<CalleeTarget> = bindings
                    .iter()
                    .map(|b| (b.contact.clone(), format!("<sip:{id}@{}>", b.source.local), b.target(), None))
                    .collect();
                targets
            }
            Callees::Uri(uri) => {
                let parsed = sip_transport::header::Uri::parse(uri).map_err(|_| (404, "Not Found (bad URI)"))?;
                let host = parsed.host.trim_matches(['[', ']']);
                let Ok(ip) = host.parse::<std::net::IpAddr>() else {
                    return Err((404, "Not Found (only an IP address is supported in a URI destination)"));
                };
                let addr = SocketAddr::new(ip, parsed.port.unwrap_or(5060));
                let Some(listener) = self.settings.listener_for(Profile::External, Transport::Udp, addr) else {
                    return Err((503, "Service Unavailable (no listener can reach the URI)"));
                };
                let target = Target { transport: Transport::Udp, remote: addr, flow: None, listener: Some(listener) };
                vec![(uri.clone(), format!("<{uri}>"), target, None)]
            }
            Callees::Trunk { name, number } => {
                let Some(trunk) = self.settings.trunk(name) else {
                    return Err((404, "Not Found"));
                };
                let Some(gateway) = &trunk.gateway else {
                    warn!(trunk = %name, "a call to a trunk without gateway");
                    return Err((503, "Service Unavailable (trunk has no gateway)"));
                };
                let Some(listener) = self.settings.listener_for(Profile::External, gateway.transport, gateway.addr)
                else {
                    warn!(trunk = %name, transport = %gateway.transport, "no listener can reach the trunk's gateway");
                    return Err((503, "Service Unavailable (no route to the trunk)"));
                };
                let uri = format!("sip:{number}@{}", gateway.domain);
                let target =
                    Target { transport: gateway.transport, remote: gateway.addr, flow: None, listener: Some(listener) };
                vec![(uri.clone(), format!("<{uri}>"), target, trunk.credentials.clone())]
            }
        })
    }

    fn set_deadline(&mut self, key: CallKey, at: Option<Instant>) {
        if let Some(call) = self.calls.get_mut(&key) {
            call.deadline = at;
        }
        self.rearm(key);
    }

    /// Puts the call in `call_deadlines` at its earliest deadline.
    fn rearm(&mut self, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(old) = call.armed.take() {
            self.call_deadlines.remove(&(old, key));
        }
        let timers = [Some(&call.caller), call.callee.as_ref()].into_iter().flatten().filter_map(|p| p.timer_due);
        let provisional = call.unacked_provisional.as_ref().map(|r| r.next);
        let music = call.queue.as_ref().and_then(|q| q.music_resumes);
        let ivr = call.ivr.as_ref().and_then(|i| i.deadline());
        call.armed = call.deadline.into_iter().chain(timers).chain(provisional).chain(music).chain(ivr).min();
        if let Some(at) = call.armed {
            self.call_deadlines.insert((at, key));
        }
    }

    /// A call's deadline passed (the core took it out of `call_deadlines`): the
    /// ring timeout, the end of the clean-up wait, or a session timer.
    pub(super) fn call_deadline(&mut self, key: CallKey, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        call.armed = None;
        if call.deadline.is_some_and(|d| d <= now) {
            call.deadline = None;
            match call.state {
                CallState::Ringing => {
                    info!(call_id = %call.record.call_id, "no answer before the ring timeout");
                    return self.fail_caller(
                        key,
                        480,
                        "Temporarily Unavailable (no answer)",
                        Disposition::NoAnswer,
                        HangupBy::Switch,
                        now,
                    );
                }
                CallState::Ending => {
                    self.remove_call(key, now);
                    return Vec::new();
                }
                CallState::Transferring => {
                    let mut out = self.cancel_transfer_forks(key, now);
                    out.extend(self.transfer_failed(key, 480, "Temporarily Unavailable (no answer)", now));
                    return out;
                }
                CallState::Queued => {
                    // The exit destination did not answer, or "goodbye" has played.
                    return self.end_call(key, HangupBy::Switch, "queue exit", now);
                }
                CallState::Answered if call.ends_at_deadline => {
                    return self.end_call(key, HangupBy::Switch, "feature code done", now);
                }
                CallState::Answered => {}
            }
        }
        self.resume_music(key, now);
        let mut out = self.ivr_deadline(key, now);
        let Some(call) = self.calls.get_mut(&key) else {
            return out;
        };
        if let Some(r) = call.unacked_provisional.as_mut().filter(|r| r.next <= now) {
            if now >= r.give_up {
                call.unacked_provisional = None;
                warn!(call_id = %call.record.call_id, "no PRACK for a reliable provisional response");
                return self.fail_caller(key, 500, "Server Internal Error (no PRACK)", Disposition::Failed, HangupBy::Switch, now);
            }
            out.push(r.transmit.clone());
            r.interval *= 2;
            r.next = now + r.interval;
        }
        for side in [Side::Caller, Side::Callee] {
            let Some(party) = self.calls.get_mut(&key).and_then(|c| c.party_mut(side)) else { continue };
            if party.timer_due.is_none_or(|d| d > now) {
                continue;
            }
            party.timer_due = None;
            if !party.we_refresh {
                info!(call_id = %party.dialog.id.call_id, side = ?side, "no session refresh before the session expired");
                out.extend(self.end_call(key, HangupBy::Switch, "session timer expired", now));
                return out;
            }
            out.extend(self.send_refresh(key, side, now));
        }
        self.rearm(key);
        out
    }

    /// Our session refresh (RFC 4028 §10): a re-INVITE with the SDP we last
    /// sent on that side, unchanged, so nothing but the timer moves.
    fn send_refresh(&mut self, key: CallKey, side: Side, now: Instant) -> Vec<Transmit> {
        let Some(party) = self.calls.get_mut(&key).and_then(|c| c.party_mut(side)) else {
            return Vec::new();
        };
        let interval = party.timer.map_or(self.settings.session_timer.session_expires, |t| t.interval);
        let sdp = party.sdp.last_sent().map(|s| s.to_string());
        let session_expires = format!("{interval};refresher=uac");
        let headers = [("Session-Expires", session_expires.as_str()), ("Supported", "timer"), ("Allow", ALLOW)];
        let body = sdp.as_deref().map(|b| ("application/sdp", b.as_bytes()));
        let (request, _) = party.dialog.request(&Method::Invite, &party.via, &headers, body);
        match self.transactions.send_request(request, party.target, now) {
            Ok((cid, t)) => {
                self.client_txs.insert(cid, ClientRole::Refresh(key, side));
                vec![t]
            }
            Err(why) => {
                warn!(why, "could not send a session refresh");
                self.end_call(key, HangupBy::Switch, "session refresh failed", now)
            }
        }
    }

    /// The answer to our session refresh: a 2xx renews the session, a 491
    /// (glare) is retried shortly, anything else ends the call (RFC 4028 §10).
    fn refresh_response(&mut self, key: CallKey, side: Side, msg: &SipMessage, status: u16, now: Instant) -> Vec<Transmit> {
        let Some(party) = self.calls.get_mut(&key).and_then(|c| c.party_mut(side)) else {
            return Vec::new();
        };
        match status {
            100..=199 => Vec::new(),
            200..=299 => {
                party.dialog.on_response(msg);
                let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
                let ack = party.dialog.ack(seq, &party.via, None);
                party.ack = Some((seq, ack.clone()));
                party.touch_timer(now);
                let target = party.target;
                self.rearm(key);
                vec![Transmit { target, data: ack }]
            }
            491 => {
                party.timer_due = Some(now + RETRY_AFTER_GLARE);
                self.rearm(key);
                Vec::new()
            }
            _ => self.end_call(key, HangupBy::Switch, &format!("session refresh failed ({status})"), now),
        }
    }

    /// The caller cancelled its INVITE.
    pub(super) fn caller_cancelled(&mut self, invite: ServerTxId, now: Instant) -> Vec<Transmit> {
        let Some(&key) = self.call_invites.get(&invite) else {
            return Vec::new();
        };
        info!(call_id = %self.calls[&key].record.call_id, "caller cancelled");
        self.fail_caller(key, 487, "Request Terminated", Disposition::Cancelled, HangupBy::Caller, now)
    }

    /// Ends a call that was not answered: the caller gets `code`, every fork
    /// still ringing is cancelled, the CDR is written.
    fn fail_caller(
        &mut self,
        key: CallKey,
        code: u16,
        reason: &str,
        disposition: Disposition,
        by: HangupBy,
        now: Instant,
    ) -> Vec<Transmit> {
        let mut out = self.respond_caller(key, code, reason, None, now);
        out.extend(self.queue_call_ends(key, by, now));
        self.write_cdr(key, disposition, code, reason, by);
        let Some(call) = self.calls.get_mut(&key) else {
            return out;
        };
        call.state = CallState::Ending;
        call.media = None;
        for i in 0..call.forks.len() {
            out.extend(self.cancel_fork(key, i, now));
        }
        self.finish_if_forks_done(key, now);
        out
    }

    /// Sends CANCEL to a fork now, or marks it to be cancelled at its first provisional response.
    fn cancel_fork(&mut self, key: CallKey, i: usize, now: Instant) -> Vec<Transmit> {
        let Some(fork) = self.calls.get_mut(&key).and_then(|c| c.forks.get_mut(i)) else {
            return Vec::new();
        };
        if fork.state == ForkState::Done || fork.cancel && fork.state == ForkState::Calling {
            return Vec::new();
        }
        let send_now = fork.state == ForkState::Proceeding && !fork.cancel;
        fork.cancel = true;
        if !send_now {
            return Vec::new();
        }
        let (sent, target) = (fork.sent.clone(), fork.target);
        let Some(cancel) = cancel_request(&sent) else {
            return Vec::new();
        };
        match self.transactions.send_request(cancel, target, now) {
            Ok((_, t)) => vec![t],
            Err(why) => {
                warn!(why, "could not send CANCEL");
                Vec::new()
            }
        }
    }

    /// Once the caller is answered or failed and every fork has its final
    /// response, the call (if not answered) is gone; else wait for them, but
    /// not forever (§9.1: 64×T1 after CANCEL).
    fn finish_if_forks_done(&mut self, key: CallKey, now: Instant) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.state != CallState::Ending {
            return;
        }
        if call.forks.iter().all(|f| f.state == ForkState::Done) {
            self.remove_call(key, now);
        } else if call.deadline.is_none() {
            self.set_deadline(key, Some(now + self.settings.timers.t1 * 64));
        }
    }

    /// A response to the caller's INVITE (provisional or final, with an optional SDP).
    fn respond_caller(
        &mut self,
        key: CallKey,
        code: u16,
        reason: &str,
        sdp: Option<&str>,
        now: Instant,
    ) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        let Some(invite) = &call.invite else {
            return Vec::new();
        };
        let (tx, remote) = (invite.tx, invite.remote);
        if code >= 200 {
            self.call_invites.remove(&tx);
            call.unacked_provisional = None;
        }
        let reliable = code > 100 && code < 200 && call.caller_requires_100rel;
        if reliable && call.unacked_provisional.is_some() {
            // One reliable provisional at a time (RFC 3262 §3); the final
            // response repeats any SDP this one would have carried.
            debug!(code, "provisional response held back: the previous one is not PRACKed yet");
            return Vec::new();
        }
        let invite = if code >= 200 { call.invite.take() } else { None };
        let msg = invite.as_ref().map(|i| &i.msg).or(call.invite.as_ref().map(|i| &i.msg)).expect("present");
        let party = &call.caller;
        // A 100 has no To tag; everything else creates or confirms the early dialog.
        let tag = (code > 100).then_some(party.dialog.id.local_tag.as_str());
        let mut w = response_to(msg, remote, code, reason, tag);
        if code > 100 && code < 300 {
            w.header("Contact", &party.dialog.local_contact);
            w.header("Allow", ALLOW);
        }
        if (200..300).contains(&code) {
            w.header("Supported", SUPPORTED.join(", "));
            for (name, value) in party.timer.iter().flat_map(SessionTimer::response_headers) {
                w.header(name, value);
            }
        }
        if reliable {
            call.last_rseq += 1;
            w.header("Require", "100rel");
            w.header("RSeq", call.last_rseq);
        }
        w.header("Server", &self.settings.user_agent);
        let data = match sdp {
            Some(body) => w.finish(Some("application/sdp"), body.as_bytes()),
            None => w.finish_empty(),
        };
        self.stats.count_response(code);
        let Some(sent) = self.transactions.respond(tx, data, now) else {
            return Vec::new();
        };
        if reliable {
            let t1 = self.settings.timers.t1;
            call.unacked_provisional = Some(ReliableProvisional {
                rseq: call.last_rseq,
                transmit: sent.clone(),
                next: now + t1,
                interval: t1,
                give_up: now + t1 * 64,
            });
        }
        if (200..300).contains(&code) {
            self.pending_answers
                .insert(party.dialog.id.clone(), PendingAnswer::new(sent.clone(), &self.settings.timers, now));
            call.caller.touch_timer(now);
        }
        self.rearm(key);
        vec![sent]
    }

    /// A response for one of our client transactions that belongs to a call.
    pub(super) fn call_response(&mut self, cid: ClientTxId, msg: &SipMessage, now: Instant) -> Vec<Transmit> {
        let Some(status) = msg.status() else {
            return Vec::new();
        };
        let Some(&role) = self.client_txs.get(&cid) else {
            return self.retransmitted_2xx(msg);
        };
        if status >= 200 {
            self.client_txs.remove(&cid);
        }
        match role {
            ClientRole::Fork(key, i) => self.fork_response(key, i, msg, status, now),
            ClientRole::Offer(key, side) => self.offer_response(key, side, msg, status, now),
            ClientRole::Refresh(key, side) => self.refresh_response(key, side, msg, status, now),
            ClientRole::Replace { into, target } => self.replace_response(into, target, msg, status, now),
        }
    }

    /// A client transaction of a call timed out: as a 408 (RFC 3261 §8.1.3.1).
    pub(super) fn call_timeout(&mut self, cid: ClientTxId, now: Instant) -> Vec<Transmit> {
        let Some(role) = self.client_txs.remove(&cid) else {
            return Vec::new();
        };
        match role {
            ClientRole::Fork(key, i) => self.fork_failed(key, i, 408, now),
            ClientRole::Offer(key, _) => {
                let mut out = self.answer_relayed_offer_failed(key, 408, "Request Timeout", now);
                out.extend(self.end_call(key, HangupBy::Switch, "re-INVITE timed out", now));
                out
            }
            ClientRole::Refresh(key, _) => self.end_call(key, HangupBy::Switch, "session refresh timed out", now),
            ClientRole::Replace { into: (key, side), .. } => self.notify_transferor(key, side, 408, "Request Timeout", true, now),
        }
    }

    /// A 2xx to an INVITE of ours whose transaction we already saw answered:
    /// our ACK got lost, send it again.
    fn retransmitted_2xx(&mut self, msg: &SipMessage) -> Vec<Transmit> {
        let (Some(id), Ok(cseq)) = (DialogId::of_response(msg), msg.cseq()) else {
            return Vec::new();
        };
        if cseq.method != Method::Invite || !msg.status().is_some_and(|s| (200..300).contains(&s)) {
            return Vec::new();
        }
        let Some(&(key, side)) = self.call_dialogs.get(&id) else {
            return Vec::new();
        };
        let Some(party) = self.calls.get(&key).and_then(|c| c.party(side)) else {
            return Vec::new();
        };
        match &party.ack {
            Some((seq, ack)) if *seq == cseq.seq => vec![Transmit { target: party.target, data: ack.clone() }],
            _ => Vec::new(),
        }
    }

    fn fork_response(&mut self, key: CallKey, i: usize, msg: &SipMessage, status: u16, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        let Some(fork) = call.forks.get_mut(i) else {
            return Vec::new();
        };
        if status < 200 {
            let mut out = Vec::new();
            if status > 100 && requires_100rel(msg) {
                out.extend(self.prack_callee(key, i, msg, now));
            }
            let Some(call) = self.calls.get_mut(&key) else { return out };
            let fork = &mut call.forks[i];
            if fork.state == ForkState::Calling {
                fork.state = ForkState::Proceeding;
                if fork.cancel {
                    // A CANCEL was waiting for this provisional response.
                    fork.cancel = false;
                    out.extend(self.cancel_fork(key, i, now));
                    return out;
                }
            }
            if status == 100 || call.state != CallState::Ringing {
                return out;
            }
            out.extend(self.relay_provisional(key, msg, status, now));
            return out;
        }
        if (200..300).contains(&status) {
            if call.state == CallState::Ringing && !fork.cancel {
                return self.callee_answered(key, i, msg, now);
            }
            if call.state == CallState::Transferring && i >= call.fork_base && !fork.cancel {
                return self.transfer_answered(key, i, msg, now);
            }
            if call.state == CallState::Queued && !fork.cancel {
                return self.agent_answered(key, i, msg, now);
            }
            // Another fork won, or the caller has gone: acknowledge and hang up.
            fork.state = ForkState::Done;
            let out = self.ack_and_hang_up(key, i, msg, now);
            self.finish_if_forks_done(key, now);
            return out;
        }
        let can_answer_challenge = matches!(status, 401 | 407) && fork.credentials.is_some() && !fork.challenged;
        let can_raise_interval = status == 422 && !fork.raised_interval;
        if can_answer_challenge && let Some(out) = self.answer_trunk_challenge(key, i, msg, status, now) {
            return out;
        }
        if can_raise_interval && let Some(out) = self.raise_session_interval(key, i, msg, now) {
            return out;
        }
        self.fork_failed(key, i, status, now)
    }

    /// A callee sent a reliable provisional response (RFC 3262 §4): PRACK it in
    /// the early dialog it creates. We do not ask for reliability, but honour it.
    fn prack_callee(&mut self, key: CallKey, i: usize, msg: &SipMessage, now: Instant) -> Vec<Transmit> {
        let Some(fork) = self.calls.get_mut(&key).and_then(|c| c.forks.get_mut(i)) else {
            return Vec::new();
        };
        let Some(rseq) = msg.other_header_values("RSeq").next().and_then(|v| v.trim().parse::<u32>().ok()) else {
            return Vec::new();
        };
        let remote_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_string));
        if fork.early.as_ref().map(|d| Some(&d.id.remote_tag)) != Some(remote_tag.as_ref()) {
            let Ok(invite) = SipMessage::parse(fork.sent.clone()) else { return Vec::new() };
            fork.early = Dialog::as_uac(&invite, msg, &fork.invite.contact).ok();
        }
        let Some(early) = fork.early.as_mut() else {
            return Vec::new();
        };
        let rack = format!("{rseq} {} INVITE", fork.invite.cseq);
        let (prack, _) = early.request(&Method::Prack, &fork.invite.via, &[("RAck", &rack)], None);
        match self.transactions.send_request(prack, fork.target, now) {
            Ok((_, t)) => vec![t],
            Err(why) => {
                warn!(why, "could not send PRACK");
                Vec::new()
            }
        }
    }

    /// A trunk challenged our INVITE: send it again with credentials.
    fn answer_trunk_challenge(
        &mut self,
        key: CallKey,
        i: usize,
        msg: &SipMessage,
        status: u16,
        now: Instant,
    ) -> Option<Vec<Transmit>> {
        let fork = self.calls.get_mut(&key)?.forks.get_mut(i)?;
        let creds = fork.credentials.as_ref()?;
        let (challenge_header, answer_header) = if status == 401 {
            (HeaderName::WwwAuthenticate, "Authorization")
        } else {
            (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
        };
        let challenges: Vec<&str> = msg.header_values(challenge_header).collect();
        let answer =
            match answer_challenge(&challenges, "INVITE", &fork.invite.uri, &creds.username, &creds.password, 1) {
                Ok(a) => a,
                Err(why) => {
                    warn!(why, "cannot answer the trunk's challenge");
                    return None;
                }
            };
        fork.challenged = true;
        fork.invite.authorization = Some((answer_header, answer));
        self.resend_fork(key, i, now)
    }

    /// A 422: the callee wants a longer session interval (RFC 4028 §7.4).
    fn raise_session_interval(&mut self, key: CallKey, i: usize, msg: &SipMessage, now: Instant) -> Option<Vec<Transmit>> {
        let fork = self.calls.get_mut(&key)?.forks.get_mut(i)?;
        let min_se: u32 = msg.other_header_values("Min-SE").next()?.split(';').next()?.trim().parse().ok()?;
        fork.raised_interval = true;
        fork.invite.min_se = min_se;
        fork.invite.session_expires = fork.invite.session_expires.max(min_se);
        self.resend_fork(key, i, now)
    }

    /// Sends a fork's INVITE again (new CSeq and branch) after it was refused
    /// for something we can fix.
    fn resend_fork(&mut self, key: CallKey, i: usize, now: Instant) -> Option<Vec<Transmit>> {
        let fork = self.calls.get_mut(&key)?.forks.get_mut(i)?;
        fork.invite.cseq += 1;
        fork.sent = fork.invite.write(&self.settings.user_agent);
        fork.state = ForkState::Calling;
        let (sent, target) = (fork.sent.clone(), fork.target);
        match self.transactions.send_request(sent, target, now) {
            Ok((cid, t)) => {
                fork.tx = cid;
                self.client_txs.insert(cid, ClientRole::Fork(key, i));
                Some(vec![t])
            }
            Err(why) => {
                warn!(why, "could not send the INVITE again");
                None
            }
        }
    }

    /// A fork ended without answering. When it was the last one ringing, the
    /// caller gets the most telling of the forks' statuses.
    fn fork_failed(&mut self, key: CallKey, i: usize, status: u16, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        if let Some(fork) = call.forks.get_mut(i) {
            fork.state = ForkState::Done;
            fork.status = Some(status);
        }
        if call.state == CallState::Ringing && call.forks.iter().all(|f| f.state == ForkState::Done) {
            let (code, reason, disposition) = caller_status(call.forks.iter().filter_map(|f| f.status));
            debug!(call_id = %call.record.call_id, code, "every callee refused");
            return self.fail_caller(key, code, reason, disposition, HangupBy::Callee, now);
        }
        if call.state == CallState::Transferring && call.forks[call.fork_base..].iter().all(|f| f.state == ForkState::Done) {
            let (code, reason, _) = caller_status(call.forks[call.fork_base..].iter().filter_map(|f| f.status));
            return self.transfer_failed(key, code, reason, now);
        }
        if call.state == CallState::Queued {
            return self.agent_fork_failed(key, i, now);
        }
        self.finish_if_forks_done(key, now);
        Vec::new()
    }

    /// 180/183 from a fork, relayed to the caller; a 183 with SDP brings early media.
    fn relay_provisional(&mut self, key: CallKey, msg: &SipMessage, status: u16, now: Instant) -> Vec<Transmit> {
        let mut sdp = None;
        if !msg.body().is_empty() {
            match self.apply_callee_answer(key, msg) {
                Ok(answer) => sdp = Some(answer),
                Err(why) => debug!(why, "early media answer not usable; relayed without it"),
            }
        }
        let early = self.calls.get(&key).and_then(|c| c.early_answer.clone());
        let sdp = sdp.or(early);
        let (code, reason) = if sdp.is_some() {
            (183, "Session Progress")
        } else {
            (status, msg.reason().unwrap_or("Ringing"))
        };
        let reason = reason.to_string();
        self.respond_caller(key, code, &reason, sdp.as_deref(), now)
    }

    /// The callee's SDP answer (in a 183 or 2xx from a fork): read it, start
    /// or update the media, and work out the caller's answer.
    fn apply_callee_answer(&mut self, key: CallKey, msg: &SipMessage) -> Result<String, String> {
        let call = self.calls.get_mut(&key).ok_or("no call")?;
        let (_, our_offer, callee_rtp) = call.callee_sdp.as_ref().ok_or("no offer")?;
        let answer = SdpSession::parse(msg.body()).map_err(|e| e.to_string())?;
        let callee = read_answer(our_offer, &answer).map_err(|e| e.0)?;
        let callee_direction = answer.audio().map(|a| a.direction).unwrap_or(Direction::SendRecv);
        let Some(caller_offer) = call.caller.remote_offer.as_ref() else {
            // The caller sent no offer: ours goes in the 2xx (never in an
            // unreliable 183), with what the callee took, in its payload types.
            if msg.status().is_some_and(|s| s < 200) {
                return Err("no early media without the caller's offer".into());
            }
            let caller_agreed = AudioAgreement { audio: callee.audio.clone(), remote_rtp: None, remote_rtcp: None, media_index: 0 };
            let ours = call.caller.sdp.offer(call.caller.local_rtp, &caller_agreed.audio);
            call.caller.awaiting_answer = Some(ours.clone());
            let params = (leg_params(&caller_agreed)?, leg_params(&callee)?);
            call.caller.agreed = caller_agreed;
            call.callee_agreed = Some((callee, *callee_rtp));
            self.start_or_update_media(key, params);
            return Ok(ours.to_string());
        };
        let offered = caller_offer.audio().map(offered_direction).unwrap_or(Direction::SendRecv);
        let mut caller_audio = call.caller.agreed.audio.restricted_to(&callee.audio).map_err(|e| e.0)?;
        caller_audio.direction = answer_direction(offered, callee_direction);
        let caller_agreed = AudioAgreement { audio: caller_audio, ..call.caller.agreed.clone() };
        let caller_params = leg_params(&caller_agreed)?;
        let callee_params = leg_params(&callee)?;
        let caller_sdp = match &call.early_answer {
            Some(early) => early.clone(),
            None => call.caller.sdp.answer(caller_offer, &caller_agreed, call.caller.local_rtp).to_string(),
        };
        call.callee_agreed = Some((callee, *callee_rtp));
        call.caller.agreed = caller_agreed;
        call.early_answer.get_or_insert_with(|| caller_sdp.clone());
        self.start_or_update_media(key, (caller_params, callee_params));
        Ok(caller_sdp)
    }

    /// Bridges the two legs at the callee's first SDP; later SDPs (another
    /// fork's, or the 2xx after a 183) update the callee's leg.
    fn start_or_update_media(&mut self, key: CallKey, (caller_params, callee_params): (LegParams, LegParams)) {
        let Some(call) = self.calls.get_mut(&key) else { return };
        match call.media.take() {
            Some(Media::Allocated(legs)) => {
                let (caller, callee_leg) = *legs;
                if let Some(relay) = &self.media {
                    let media = relay.bridge(caller, callee_leg, BridgeParams { a: caller_params, b: callee_params });
                    let control = spawn_media_task(key, call.record.call_id.clone(), media, self.media_reports.clone());
                    call.media = Some(Media::Running(control));
                }
            }
            Some(Media::Running(control)) => {
                control.send(MediaCommand::UpdateLeg(Leg::B, callee_params));
                call.media = Some(Media::Running(control));
            }
            None => {}
        }
    }

    /// The ACK of our 2xx: it ends the retransmissions (§13.3.1.4) and, after
    /// an INVITE without SDP, carries the answer to our offer. An unusable
    /// answer ends the call (§13.3.1.4: the UAS then sends BYE).
    pub(super) fn ack_received(&mut self, msg: &SipMessage, now: Instant) -> Vec<Transmit> {
        let Some(id) = DialogId::of_request(msg) else { return Vec::new() };
        self.pending_answers.remove(&id);
        let Some(&(key, side)) = self.call_dialogs.get(&id) else { return Vec::new() };
        let Some(call) = self.calls.get_mut(&key) else { return Vec::new() };
        let Some(party) = call.party_mut(side) else { return Vec::new() };
        let Some(ours) = party.awaiting_answer.take() else { return Vec::new() };
        let answer = SdpSession::parse(msg.body()).map_err(|e| e.to_string()).and_then(|a| read_answer(&ours, &a).map_err(|e| e.0));
        match answer.and_then(|agreed| Ok((leg_params(&agreed)?, agreed))) {
            Ok((params, agreed)) => {
                party.agreed = agreed;
                if let Some(Media::Running(control)) = &call.media {
                    control.send(MediaCommand::UpdateLeg(side.leg(), params));
                }
                Vec::new()
            }
            Err(why) => {
                warn!(why, "the answer in the ACK is not usable");
                self.end_call(key, HangupBy::Switch, "no usable answer in the ACK", now)
            }
        }
    }
}

impl SipCore {
    /// The first 2xx from a fork: the call is answered. The callee gets its ACK,
    /// the other forks a CANCEL, the caller our 200 with the SDP answer.
    fn callee_answered(&mut self, key: CallKey, i: usize, msg: &SipMessage, now: Instant) -> Vec<Transmit> {
        let caller_sdp = match self.apply_callee_answer(key, msg) {
            Ok(sdp) => sdp,
            Err(why) => {
                warn!(why, "the callee's answer is not usable");
                let mut out = self.ack_and_hang_up(key, i, msg, now);
                if let Some(fork) = self.calls.get_mut(&key).and_then(|c| c.forks.get_mut(i)) {
                    fork.state = ForkState::Done;
                }
                out.extend(self.fail_caller(
                    key,
                    488,
                    "Not Acceptable Here (callee answer unusable)",
                    Disposition::Failed,
                    HangupBy::Switch,
                    now,
                ));
                return out;
            }
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        let fork = &mut call.forks[i];
        fork.state = ForkState::Done;
        let invite = SipMessage::parse(fork.sent.clone()).ok();
        let dialog = invite.as_ref().map(|inv| Dialog::as_uac(inv, msg, &fork.invite.contact));
        let Some(Ok(dialog)) = dialog else {
            warn!("a 2xx that makes no dialog (no tags or no Contact)");
            let out = self.fail_caller(
                key,
                502,
                "Bad Gateway (callee answer has no dialog)",
                Disposition::Failed,
                HangupBy::Switch,
                now,
            );
            return out;
        };
        let (Some((agreed, local_rtp)), Some((sdp, _, _))) = (call.callee_agreed.take(), call.callee_sdp.take()) else {
            return Vec::new();
        };
        // Trunks transfer through the trunk side's dial plan, phones through theirs.
        let profile = if call.record.destination.starts_with("trunk:") { Profile::External } else { Profile::Internal };
        let (callee, ack) = fork.answered(dialog, msg, (sdp, local_rtp, agreed), profile);
        let mut out = vec![ack];
        info!(call_id = %call.record.call_id, callee_call_id = %callee.dialog.id.call_id, "call answered");
        self.call_dialogs.insert(callee.dialog.id.clone(), (key, Side::Callee));
        call.callee = Some(callee);
        if let Some(callee) = call.callee.as_mut() {
            callee.touch_timer(now);
        }
        call.state = CallState::Answered;
        call.record.answer = Some(SystemTime::now());
        call.caller.dialog.confirm();
        let callee_endpoint = call.record.destination.strip_prefix("endpoint:").map(str::to_string);
        // One-way audio during early media is only said once the call is answered.
        for side in [Side::Caller, Side::Callee] {
            if call.one_way[side.index()].is_some() {
                call.warn_one_way(side, &mut self.stats, now);
            }
        }
        let others: Vec<usize> = (0..call.forks.len()).filter(|&j| j != i).collect();
        self.set_deadline(key, None);
        for j in others {
            out.extend(self.cancel_fork(key, j, now));
        }
        if let Some(endpoint) = callee_endpoint {
            self.endpoint_call_began(key, &endpoint, now);
        }
        out.extend(self.respond_caller(key, 200, "OK", Some(&caller_sdp), now));
        out.extend(self.run_acd(now));
        out
    }

    /// A 2xx we do not want (a losing fork, or the caller has gone): ACK it and
    /// send BYE in its dialog (RFC 3261 §13.2.2.4).
    fn ack_and_hang_up(&mut self, key: CallKey, i: usize, msg: &SipMessage, now: Instant) -> Vec<Transmit> {
        let Some(fork) = self.calls.get(&key).and_then(|c| c.forks.get(i)) else {
            return Vec::new();
        };
        let Some(Ok(mut dialog)) =
            SipMessage::parse(fork.sent.clone()).ok().map(|inv| Dialog::as_uac(&inv, msg, &fork.invite.contact))
        else {
            return Vec::new();
        };
        let (target, via, cseq) = (fork.target, fork.invite.via.clone(), fork.invite.cseq);
        let mut out = vec![Transmit { target, data: dialog.ack(cseq, &via, None) }];
        let (bye, _) =
            dialog.request(&Method::Bye, &via, &[("Reason", "SIP;cause=200;text=\"Call completed elsewhere\"")], None);
        match self.transactions.send_request(bye, target, now) {
            Ok((_, t)) => out.push(t),
            Err(why) => warn!(why, "could not send BYE"),
        }
        out
    }

    /// A request inside a call's dialog (its tags are its authentication, RFC
    /// 3261 §12.2.2): BYE ends the call, a re-INVITE or UPDATE is passed to the
    /// other side (or answered here when it changes nothing).
    pub(super) fn in_dialog(&mut self, req: &Req<'_>, tx: ServerTxId, id: &DialogId, now: Instant) -> Vec<Transmit> {
        let Some(&(key, side)) = self.call_dialogs.get(id) else {
            return self.reply(req, tx, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        let Some(party) = self.calls.get_mut(&key).and_then(|c| c.party_mut(side)) else {
            return self.reply(req, tx, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        if let Err(e) = party.dialog.on_request(req.msg) {
            return self.reply(req, tx, 500, &format!("Server Internal Error ({e})"), &[], now);
        }
        match req.method {
            Method::Prack => self.prack(req, tx, key, now),
            Method::Info => self.info(req, tx, key, side, now),
            Method::Refer => self.refer(req, tx, key, side, now),
            Method::Bye if self.calls[&key].transfer.as_ref().is_some_and(|t| t.from == side) => {
                // The transferor leaves; the transfer goes on without it.
                let out = self.reply(req, tx, 200, "OK", &[], now);
                let call = self.calls.get_mut(&key).expect("looked up");
                if let Some(t) = call.transfer.as_mut() {
                    t.transferor_gone = true;
                }
                let id = call.party(side).expect("looked up").dialog.id.clone();
                self.call_dialogs.remove(&id);
                self.pending_answers.remove(&id);
                out
            }
            Method::Bye if side == Side::Caller && self.calls[&key].state == CallState::Ringing => {
                // A BYE in the early dialog gives up the call like a CANCEL.
                let mut out = self.reply(req, tx, 200, "OK", &[], now);
                out.extend(self.fail_caller(key, 487, "Request Terminated", Disposition::Cancelled, HangupBy::Caller, now));
                out
            }
            Method::Bye => {
                let mut out = self.reply(req, tx, 200, "OK", &[], now);
                let by = if side == Side::Caller { HangupBy::Caller } else { HangupBy::Callee };
                out.extend(self.hang_up(key, side, by, "the other side hung up", now));
                out
            }
            _ => self.offer_in_dialog(req, tx, key, side, now),
        }
    }

    /// REFER from `side` (RFC 3515): a blind transfer. The other side stays;
    /// `side` is replaced by the Refer-To target once it answers. Progress goes
    /// back to the transferor in NOTIFYs with a sipfrag body.
    fn refer(&mut self, req: &Req<'_>, tx: ServerTxId, key: CallKey, side: Side, now: Instant) -> Vec<Transmit> {
        let call = self.calls.get(&key).expect("looked up");
        if call.state != CallState::Answered || call.callee.is_none() {
            return self.reply(req, tx, 403, "Forbidden (nothing to transfer)", &[], now);
        }
        let refer_to = req.msg.other_header_values("Refer-To").chain(req.msg.other_header_values("r")).next();
        let Some(target) = refer_to.and_then(|v| sip_transport::header::NameAddr::parse(v).ok()) else {
            return self.reply(req, tx, 400, "Bad Request (Refer-To missing or malformed)", &[], now);
        };
        let uri = target.uri.to_string();
        if let Some(replaces) = replaces_param(&uri) {
            return self.attended_transfer(req, tx, key, side, &replaces, now);
        }
        let number = sip_transport::header::Uri::parse(&uri).ok().and_then(|u| u.user_unescaped()).unwrap_or_default();
        let party = call.party(side).expect("looked up");
        let callees = match self.settings.dialplan.route(party.profile, &number) {
            Some(Route::Endpoint { id, ring_timeout }) => Ok((Callees::Endpoint(id), ring_timeout)),
            Some(Route::Trunk { trunk, number, ring_timeout }) => Ok((Callees::Trunk { name: trunk, number }, ring_timeout)),
            Some(_) => Err((403, "Forbidden")),
            None => Err((404, "Not Found")),
        };
        let mut out = self.reply(req, tx, 202, "Accepted", &[], now);
        let routed = callees.and_then(|(callees, ring)| Ok((self.callee_targets(&callees, now)?, callees.label(), ring)));
        let (targets, destination, ring_timeout) = match routed {
            Ok(r) => r,
            Err((code, reason)) => {
                out.extend(self.notify_transferor(key, side, code, reason, true, now));
                return out;
            }
        };
        let call = self.calls.get(&key).expect("looked up");
        let (transferor, transferee) = (call.party(side).expect("looked up"), call.party(side.other()).expect("answered"));
        // The target is offered the codec the transferee uses now, on the
        // transferor's leg, which the target takes over.
        let audio = same_codec_offer(&transferee.agreed.audio);
        let mut sdp = LocalSession::new(rand::random(), transferor.local_rtp.ip());
        let offer = sdp.offer(transferor.local_rtp, &audio);
        let body = Bytes::from(offer.to_string());
        // The target sees the transferee calling.
        let identity = sip_transport::header::NameAddr::parse(&transferee.dialog.remote_party).ok();
        let caller_id = CallerId {
            display: identity.as_ref().and_then(|n| n.display.map(str::to_string)),
            user: identity
                .and_then(|n| sip_transport::header::Uri::parse(n.uri).ok()?.user_unescaped())
                .unwrap_or_else(|| "anonymous".into()),
        };
        let first = call.forks.len();
        let (forks, sent) = self.send_forks(key, first, targets, &caller_id, 70, &body, &[], now);
        out.extend(sent);
        if forks.is_empty() {
            out.extend(self.notify_transferor(key, side, 503, "Service Unavailable", true, now));
            return out;
        }
        let call = self.calls.get_mut(&key).expect("looked up");
        info!(call_id = %call.record.call_id, from = ?side, number, destination, "blind transfer");
        call.forks.extend(forks);
        call.fork_base = first;
        call.state = CallState::Transferring;
        call.transfer = Some(Transfer { from: side, transferor_gone: false, sdp, offer });
        // The transferee hears music while the target rings.
        if let Some(Media::Running(control)) = &call.media {
            let held = side.other().leg();
            control.send(MediaCommand::SetMode(Mode::Hold { held }));
            control.send(MediaCommand::Play(held, self.music_on_hold.clone()));
        }
        self.set_deadline(key, Some(now + ring_timeout));
        out.extend(self.notify_transferor(key, side, 100, "Trying", false, now));
        out
    }

    /// REFER with Replaces (RFC 3891), as phones do an attended transfer: the
    /// transferor talks to the transferee in this call and to the target in
    /// another call through us, and asks them to be joined. The target is moved
    /// (re-INVITE onto this call's relay leg) into the transferor's place; the
    /// transferor is released from both calls.
    fn attended_transfer(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        key: CallKey,
        side: Side,
        replaces: &DialogId,
        now: Instant,
    ) -> Vec<Transmit> {
        let mut out = self.reply(req, tx, 202, "Accepted", &[], now);
        // The dialog as the transferor names it, or seen from the other end.
        let flipped = DialogId {
            call_id: replaces.call_id.clone(),
            local_tag: replaces.remote_tag.clone(),
            remote_tag: replaces.local_tag.clone(),
        };
        let found = self.call_dialogs.get(replaces).or_else(|| self.call_dialogs.get(&flipped)).copied();
        let Some((other_key, other_side)) = found.filter(|&(k, _)| k != key) else {
            out.extend(self.notify_transferor(key, side, 481, "Call/Transaction Does Not Exist", true, now));
            return out;
        };
        let ready = |k: CallKey| self.calls.get(&k).is_some_and(|c| c.state == CallState::Answered && c.relayed.is_none());
        if !ready(key) || !ready(other_key) {
            out.extend(self.notify_transferor(key, side, 491, "Request Pending", true, now));
            return out;
        }
        let call = &self.calls[&key];
        let (transferor, transferee) = (call.party(side).expect("answered"), call.party(side.other()).expect("answered"));
        let (place, mut audio) = (transferor.local_rtp, transferee.agreed.audio.clone());
        audio.codecs.truncate(1);
        audio.direction = Direction::SendRecv;
        let Some(target) = self.calls.get_mut(&other_key).and_then(|c| c.party_mut(other_side.other())) else {
            out.extend(self.notify_transferor(key, side, 481, "Call/Transaction Does Not Exist", true, now));
            return out;
        };
        audio.rtcp_mux = target.agreed.audio.rtcp_mux;
        let body = target.sdp.offer(place, &audio).to_string();
        let (request, _) =
            target.dialog.request(&Method::Invite, &target.via, &[("Allow", ALLOW)], Some(("application/sdp", body.as_bytes())));
        match self.transactions.send_request(request, target.target, now) {
            Ok((cid, t)) => {
                self.client_txs.insert(cid, ClientRole::Replace { into: (key, side), target: (other_key, other_side.other()) });
                out.push(t);
                out.extend(self.notify_transferor(key, side, 100, "Trying", false, now));
            }
            Err(why) => {
                warn!(why, "could not re-INVITE the transfer target");
                out.extend(self.notify_transferor(key, side, 500, "Server Internal Error", true, now));
            }
        }
        out
    }

    /// The target of an attended transfer answered our re-INVITE.
    fn replace_response(
        &mut self,
        (key, side): (CallKey, Side),
        (other_key, target_side): (CallKey, Side),
        msg: &SipMessage,
        status: u16,
        now: Instant,
    ) -> Vec<Transmit> {
        if status < 200 {
            return Vec::new();
        }
        let Some(target) = self.calls.get_mut(&other_key).and_then(|c| c.party_mut(target_side)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let agreed = if (200..300).contains(&status) {
            target.dialog.on_response(msg);
            let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
            let ack = target.dialog.ack(seq, &target.via, None);
            out.push(Transmit { target: target.target, data: ack.clone() });
            target.ack = Some((seq, ack));
            let offer = target.sdp.last_sent().cloned();
            SdpSession::parse(msg.body())
                .map_err(|e| e.to_string())
                .and_then(|a| read_answer(offer.as_ref().ok_or("no offer")?, &a).map_err(|e| e.0))
        } else {
            Err(format!("the target answered {status}"))
        };
        let agreed = match agreed {
            Ok(a) => a,
            Err(why) => {
                info!(why, "attended transfer failed");
                let code = if status >= 300 { status } else { 488 };
                out.extend(self.notify_transferor(key, side, code, sip_transport::writer::reason_phrase(code), true, now));
                return out;
            }
        };
        // The target's old call ends: the transferor is released from it, the
        // target's party moves out.
        self.write_cdr(other_key, Disposition::Answered, 200, "OK", HangupBy::Caller);
        let Some(mut old) = self.calls.remove(&other_key) else { return out };
        if let Some(at) = old.armed.take() {
            self.call_deadlines.remove(&(at, other_key));
        }
        let caller = old.caller;
        let pair = match target_side {
            Side::Callee => old.callee.take().map(|callee| (caller, callee)),
            Side::Caller => old.callee.take().map(|callee| (callee, caller)),
        };
        let Some((mut released, mut target)) = pair else { return out };
        drop(old.media.take());
        self.call_dialogs.remove(&released.dialog.id);
        self.pending_answers.remove(&released.dialog.id);
        out.extend(send_bye(&mut self.transactions, &mut released, (NORMAL_CLEARING, "transferred"), now));
        // ...and takes the transferor's place in this call.
        let Some(call) = self.calls.get_mut(&key) else { return out };
        let Some(place) = call.party(side) else { return out };
        target.local_rtp = place.local_rtp;
        target.profile = place.profile;
        target.agreed = agreed;
        target.touch_timer(now);
        info!(call_id = %call.record.call_id, "attended transfer done");
        if let Some(mut transferor) = self.swap_in(key, side, target) {
            out.extend(self.release_transferor(&mut transferor, now));
        }
        out
    }

    /// The NOTIFY of a REFER's implicit subscription (RFC 3515 §2.4.5).
    fn notify_transferor(&mut self, key: CallKey, side: Side, code: u16, reason: &str, last: bool, now: Instant) -> Vec<Transmit> {
        match self.calls.get_mut(&key).and_then(|c| c.party_mut(side)) {
            Some(party) => send_refer_notify(&mut self.transactions, party, (code, reason), last, now),
            None => Vec::new(),
        }
    }

    /// A transfer target takes the transferor's place on `side`: its dialog
    /// and the transferor's relay leg; the other side hears it instead of music.
    /// Returns the transferor, no longer in the call.
    fn swap_in(&mut self, key: CallKey, side: Side, target: Party) -> Option<Party> {
        let call = self.calls.get_mut(&key)?;
        let params = leg_params(&target.agreed);
        let target_id = target.dialog.id.clone();
        let transferor = match side {
            Side::Caller => std::mem::replace(&mut call.caller, target),
            Side::Callee => call.callee.replace(target)?,
        };
        call.state = CallState::Answered;
        if let Some(Media::Running(control)) = &call.media {
            if let Ok(p) = params {
                control.send(MediaCommand::UpdateLeg(side.leg(), p));
            }
            control.send(MediaCommand::SetMode(Mode::Bridge));
            control.send(MediaCommand::Play(side.other().leg(), None));
        }
        self.call_dialogs.remove(&transferor.dialog.id);
        self.pending_answers.remove(&transferor.dialog.id);
        self.call_dialogs.insert(target_id, (key, side));
        self.rearm(key);
        Some(transferor)
    }

    /// The transfer is done: the transferor hears "200 OK" and is hung up on.
    fn release_transferor(&mut self, transferor: &mut Party, now: Instant) -> Vec<Transmit> {
        let mut out = send_refer_notify(&mut self.transactions, transferor, (200, "OK"), true, now);
        out.extend(send_bye(&mut self.transactions, transferor, (NORMAL_CLEARING, "transferred"), now));
        out
    }

    fn cancel_transfer_forks(&mut self, key: CallKey, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get(&key) else {
            return Vec::new();
        };
        if call.transfer.is_none() {
            return Vec::new();
        }
        (call.fork_base..call.forks.len()).collect::<Vec<_>>().into_iter().flat_map(|i| self.cancel_fork(key, i, now)).collect()
    }

    /// The transfer target answered: it takes the transferor's place (dialog
    /// and relay leg); the transferor hears "200 OK" in a NOTIFY and a BYE.
    fn transfer_answered(&mut self, key: CallKey, i: usize, msg: &SipMessage, now: Instant) -> Vec<Transmit> {
        let call = self.calls.get_mut(&key).expect("a fork's call");
        let Some(transfer) = call.transfer.take() else {
            return Vec::new();
        };
        let side = transfer.from;
        let (old_rtp, old_profile) = call.party(side).map(|p| (p.local_rtp, p.profile)).expect("answered");
        let fork = &mut call.forks[i];
        fork.state = ForkState::Done;
        let agreed = SdpSession::parse(msg.body()).map_err(|e| e.to_string()).and_then(|a| read_answer(&transfer.offer, &a).map_err(|e| e.0));
        let dialog = SipMessage::parse(fork.sent.clone()).ok().and_then(|inv| Dialog::as_uac(&inv, msg, &fork.invite.contact).ok());
        let (Ok(agreed), Some(dialog)) = (agreed, dialog) else {
            call.transfer = Some(transfer);
            let mut out = self.ack_and_hang_up(key, i, msg, now);
            out.extend(self.transfer_failed(key, 488, "Not Acceptable Here", now));
            return out;
        };
        let (mut target, ack) = fork.answered(dialog, msg, (transfer.sdp, old_rtp, agreed), old_profile);
        let mut out = vec![ack];
        target.touch_timer(now);
        info!(call_id = %call.record.call_id, "call transferred");
        let transferor = self.swap_in(key, side, target);
        if side == Side::Callee {
            out.extend(self.agent_transferred_away(key, now));
        }
        self.set_deadline(key, None);
        out.extend(self.cancel_transfer_forks_except(key, i, now));
        if let Some(mut transferor) = transferor.filter(|_| !transfer.transferor_gone) {
            out.extend(self.release_transferor(&mut transferor, now));
        }
        out
    }

    fn cancel_transfer_forks_except(&mut self, key: CallKey, winner: usize, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get(&key) else {
            return Vec::new();
        };
        let others: Vec<usize> = (call.fork_base..call.forks.len()).filter(|&j| j != winner).collect();
        others.into_iter().flat_map(|j| self.cancel_fork(key, j, now)).collect()
    }

    /// The transfer target did not answer: the call goes back to the two
    /// parties (the transferor may resume it), or ends if the transferor left.
    fn transfer_failed(&mut self, key: CallKey, code: u16, reason: &str, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        let Some(transfer) = call.transfer.take() else {
            return Vec::new();
        };
        call.state = CallState::Answered;
        info!(call_id = %call.record.call_id, code, "transfer failed");
        if let Some(Media::Running(control)) = &call.media {
            control.send(MediaCommand::SetMode(Mode::Bridge));
            control.send(MediaCommand::Play(transfer.from.other().leg(), None));
        }
        self.set_deadline(key, None);
        if transfer.transferor_gone {
            return self.hang_up(key, transfer.from, HangupBy::Caller, "transfer failed", now);
        }
        self.notify_transferor(key, transfer.from, code, reason, true, now)
    }

    /// INFO in a call: a key press (`application/dtmf-relay` or
    /// `application/dtmf`, as phones send them) is taken like an RFC 4733 one
    /// (queues' exit key); it is not passed on to the other side. Other
    /// packages are acknowledged and ignored.
    fn info(&mut self, req: &Req<'_>, tx: ServerTxId, key: CallKey, side: Side, now: Instant) -> Vec<Transmit> {
        let content_type = req.msg.content_type().ok().flatten().unwrap_or_default().to_ascii_lowercase();
        let body = std::str::from_utf8(req.msg.body()).unwrap_or_default();
        let digit = match content_type.as_str() {
            "application/dtmf-relay" => info_dtmf_relay(body),
            "application/dtmf" => info_key(body.trim()),
            _ => None,
        };
        let is_dtmf = content_type.starts_with("application/dtmf");
        if is_dtmf && digit.is_none() {
            return self.reply(req, tx, 400, "Bad Request (no key in the DTMF body)", &[], now);
        }
        let mut out = self.reply(req, tx, 200, "OK", &[], now);
        if let Some(digit) = digit {
            out.extend(self.digit_pressed(key, side, digit, now));
        }
        out
    }

    /// The caller acknowledges our reliable provisional response (RFC 3262 §7.2).
    fn prack(&mut self, req: &Req<'_>, tx: ServerTxId, key: CallKey, now: Instant) -> Vec<Transmit> {
        let rseq = req.msg.other_header_values("RAck").next().and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        let call = self.calls.get_mut(&key).expect("looked up");
        match (&call.unacked_provisional, rseq) {
            (Some(r), Some(rseq)) if r.rseq == rseq => {
                call.unacked_provisional = None;
                self.rearm(key);
                self.reply(req, tx, 200, "OK", &[], now)
            }
            _ => self.reply(req, tx, 481, "Call/Transaction Does Not Exist (no such provisional response)", &[], now),
        }
    }

    /// A re-INVITE or UPDATE from `side`.
    fn offer_in_dialog(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        key: CallKey,
        side: Side,
        now: Instant,
    ) -> Vec<Transmit> {
        let call = self.calls.get_mut(&key).expect("looked up");
        if call.state != CallState::Answered {
            return self.reply(req, tx, 491, "Request Pending", &[("Retry-After", "1")], now);
        }
        let party = call.party_mut(side).expect("looked up");
        // No SDP (a session refresh, or an offer solicited from us): our current
        // SDP again. The same offer as before: a refresh, answered the same.
        let unchanged = req.msg.body().is_empty()
            || SdpSession::parse(req.msg.body())
                .is_ok_and(|o| party.remote_offer.as_ref().is_some_and(|prev| o.same_version_as(prev)));
        if unchanged {
            // An UPDATE without SDP (a plain refresh) gets none back.
            let bodyless_update = *req.method == Method::Update && req.msg.body().is_empty();
            let sdp = party.sdp.last_sent().map(|s| s.to_string()).filter(|_| !bodyless_update);
            if req.msg.body().is_empty() && *req.method == Method::Invite {
                // Our SDP is an offer here; the ACK answers it.
                party.awaiting_answer = party.sdp.last_sent().cloned();
            }
            return self.answer_in_dialog(req.msg, tx, req.source.remote, key, side, sdp.as_deref(), now);
        }
        if call.relayed.is_some() {
            return self.reply(req, tx, 491, "Request Pending", &[("Retry-After", "1")], now);
        }
        let offer = match SdpSession::parse(req.msg.body()) {
            Ok(o) => o,
            Err(e) => return self.reply(req, tx, e.sip_status(), &e.to_string(), &[], now),
        };
        let agreed = match negotiate(&offer, Direction::SendRecv) {
            Ok(a) => a,
            Err(e) => {
                return self.reply(req, tx, 488, &format!("Not Acceptable Here ({})", e.0), &[], now);
            }
        };
        let offered = offer.audio().map(offered_direction).unwrap_or(Direction::SendRecv);
        let Some(other) = call.party_mut(side.other()) else {
            // Echo: no other side, answer here.
            return self.answer_locally(req, tx, key, side, offer, agreed, now);
        };
        // The other side is offered what this side offers and it already takes,
        // in its own payload types, in this side's direction.
        let mut audio = match agreed.audio.restricted_to(&other.agreed.audio) {
            Ok(a) => a,
            Err(e) => {
                return self.reply(req, tx, 488, &format!("Not Acceptable Here ({})", e.0), &[], now);
            }
        };
        for codec in audio.codecs.iter_mut().chain(audio.telephone_event.iter_mut()) {
            let known = other
                .agreed
                .audio
                .codecs
                .iter()
                .chain(&other.agreed.audio.telephone_event)
                .find(|c| c.same_codec(codec));
            if let Some(known) = known {
                codec.payload_type = known.payload_type;
            }
        }
        audio.direction = offered;
        audio.rtcp_mux = other.agreed.audio.rtcp_mux;
        let sent = other.sdp.offer(other.local_rtp, &audio);
        let body = sent.to_string();
        let method = req.method.clone();
        let (request, _) =
            other.dialog.request(&method, &other.via, &[("Allow", ALLOW)], Some(("application/sdp", body.as_bytes())));
        let target = other.target;
        let mut out = Vec::new();
        if method == Method::Invite {
            let trying = self.build_response(req, 100, "Trying", &[]);
            out.extend(self.transactions.respond(tx, trying, now));
        }
        match self.transactions.send_request(request, target, now) {
            Ok((cid, t)) => {
                self.client_txs.insert(cid, ClientRole::Offer(key, side.other()));
                out.push(t);
            }
            Err(why) => {
                warn!(why, "could not relay an offer");
                out.extend(self.reply(req, tx, 500, "Server Internal Error", &[("Retry-After", "1")], now));
                return out;
            }
        }
        let call = self.calls.get_mut(&key).expect("looked up");
        call.relayed = Some(RelayedOffer {
            from: side,
            method,
            msg: req.msg.clone(),
            tx,
            remote: req.source.remote,
            offer,
            agreed,
            sent,
        });
        out
    }

    /// An offer answered by us alone (the echo line).
    #[allow(clippy::too_many_arguments)]
    fn answer_locally(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        key: CallKey,
        side: Side,
        offer: SdpSession,
        agreed: AudioAgreement,
        now: Instant,
    ) -> Vec<Transmit> {
        let call = self.calls.get_mut(&key).expect("looked up");
        let party = call.party_mut(side).expect("looked up");
        let params = leg_params(&agreed);
        let sdp = party.sdp.answer(&offer, &agreed, party.local_rtp).to_string();
        party.agreed = agreed;
        party.remote_offer = Some(offer);
        if let (Ok(params), Some(Media::Running(control))) = (params, &call.media) {
            control.send(MediaCommand::UpdateLeg(side.leg(), params));
        }
        self.answer_in_dialog(req.msg, tx, req.source.remote, key, side, Some(&sdp), now)
    }

    /// The other side answered an offer we relayed to it.
    fn offer_response(&mut self, key: CallKey, to: Side, msg: &SipMessage, status: u16, now: Instant) -> Vec<Transmit> {
        if status < 200 {
            return Vec::new();
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        let Some(relayed) = call.relayed.take() else {
            return Vec::new();
        };
        let Some(other) = call.party_mut(to) else {
            return Vec::new();
        };
        other.dialog.on_response(msg);
        let mut out = Vec::new();
        if relayed.method == Method::Invite && (200..300).contains(&status) {
            let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
            let ack = other.dialog.ack(seq, &other.via, None);
            out.push(Transmit { target: other.target, data: ack.clone() });
            other.ack = Some((seq, ack));
        }
        if !(200..300).contains(&status) {
            let reason = msg.reason().unwrap_or("").to_string();
            call.relayed = Some(relayed);
            out.extend(self.answer_relayed_offer_failed(key, status, &reason, now));
            if matches!(status, 408 | 481) {
                // RFC 5057: the dialog on that side is gone.
                out.extend(self.end_call(key, HangupBy::Switch, "re-INVITE failed", now));
            }
            return out;
        }
        let answer = SdpSession::parse(msg.body()).map_err(|e| e.to_string()).and_then(|a| {
            let agreed = read_answer(&relayed.sent, &a).map_err(|e| e.0)?;
            Ok((agreed, a.audio().map(|l| l.direction).unwrap_or(Direction::SendRecv)))
        });
        let (other_agreed, other_direction) = match answer {
            Ok(a) => a,
            Err(why) => {
                warn!(why, "the answer to a relayed offer is not usable");
                call.relayed = Some(relayed);
                out.extend(self.answer_relayed_offer_failed(key, 488, "Not Acceptable Here", now));
                return out;
            }
        };
        let from = relayed.from;
        let offered = relayed.offer.audio().map(offered_direction).unwrap_or(Direction::SendRecv);
        let mut audio = match relayed.agreed.audio.restricted_to(&other_agreed.audio) {
            Ok(a) => a,
            Err(_) => relayed.agreed.audio.clone(),
        };
        audio.direction = answer_direction(offered, other_direction);
        let from_agreed = AudioAgreement { audio, ..relayed.agreed.clone() };
        let other_params = leg_params(&other_agreed);
        other.agreed = other_agreed;
        other.touch_timer(now);
        let party = call.party_mut(from).expect("a relayed offer comes from a party");
        let sdp = party.sdp.answer(&relayed.offer, &from_agreed, party.local_rtp).to_string();
        let from_params = leg_params(&from_agreed);
        party.agreed = from_agreed;
        party.remote_offer = Some(relayed.offer.clone());
        // The holder (a sendonly or inactive offer) stops hearing the held side,
        // which hears music on hold (RFC 3264 §8.4).
        let mode = if offered.receives() { Mode::Bridge } else { Mode::Hold { held: from.other().leg() } };
        if let Some(Media::Running(control)) = &call.media {
            if let Ok(p) = from_params {
                control.send(MediaCommand::UpdateLeg(from.leg(), p));
            }
            if let Ok(p) = other_params {
                control.send(MediaCommand::UpdateLeg(to.leg(), p));
            }
            control.send(MediaCommand::SetMode(mode));
            // Music for the held side; off again for both on resume.
            match mode {
                Mode::Hold { held } => control.send(MediaCommand::Play(held, self.music_on_hold.clone())),
                _ => {
                    control.send(MediaCommand::Play(Leg::A, None));
                    control.send(MediaCommand::Play(Leg::B, None));
                }
            }
        }
        info!(call_id = %call.record.call_id, from = ?from, mode = ?mode, "offer relayed and answered");
        out.extend(self.answer_in_dialog(&relayed.msg, relayed.tx, relayed.remote, key, from, Some(&sdp), now));
        out
    }

    /// The relayed offer failed on the other side: the offerer gets the same status.
    fn answer_relayed_offer_failed(&mut self, key: CallKey, status: u16, reason: &str, now: Instant) -> Vec<Transmit> {
        let Some(relayed) = self.calls.get_mut(&key).and_then(|c| c.relayed.take()) else {
            return Vec::new();
        };
        let Some(party) = self.calls.get(&key).and_then(|c| c.party(relayed.from)) else {
            return Vec::new();
        };
        let reason = if reason.is_empty() { sip_transport::writer::reason_phrase(status) } else { reason };
        let mut w = response_to(&relayed.msg, relayed.remote, status, reason, Some(&party.dialog.id.local_tag));
        if status == 491 {
            w.header("Retry-After", "1");
        }
        w.header("Server", &self.settings.user_agent);
        self.stats.count_response(status);
        self.transactions.respond(relayed.tx, w.finish_empty(), now).into_iter().collect()
    }

    /// `side` hung up (its BYE is answered): BYE to the other side, CDR.
    fn hang_up(&mut self, key: CallKey, side: Side, by: HangupBy, reason: &str, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(other) = call.party_mut(side.other()) {
            out.extend(send_bye(&mut self.transactions, other, (NORMAL_CLEARING, reason), now));
        }
        info!(call_id = %call.record.call_id, by = ?by, reason, "call ended");
        out.extend(self.cancel_transfer_forks(key, now));
        out.extend(self.queue_call_ends(key, by, now));
        self.write_cdr(key, Disposition::Answered, 200, "OK", by);
        self.remove_call(key, now);
        out
    }

    /// Ends an answered call from our side: BYE to both.
    pub(super) fn end_call(&mut self, key: CallKey, by: HangupBy, reason: &str, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key) else {
            return Vec::new();
        };
        // A caller not answered yet (a queue that answers with its agent) gets a final response.
        if !matches!(call.state, CallState::Answered | CallState::Queued) || call.invite.is_some() {
            let (code, reason) = match call.state {
                CallState::Queued => (480, "Temporarily Unavailable"),
                _ => (503, "Service Unavailable"),
            };
            return self.fail_caller(key, code, reason, Disposition::Failed, by, now);
        }
        let mut out = self.queue_call_ends(key, by, now);
        let Some(call) = self.calls.get_mut(&key) else {
            return out;
        };
        for side in [Side::Caller, Side::Callee] {
            if let Some(party) = call.party_mut(side) {
                out.extend(send_bye(&mut self.transactions, party, (TEMPORARY_FAILURE, reason), now));
            }
        }
        warn!(call_id = %call.record.call_id, reason, "call ended by the switch");
        self.write_cdr(key, Disposition::Answered, 200, "OK", by);
        self.remove_call(key, now);
        out
    }

    /// The call for a dialog (the 2xx retransmission of which got no ACK).
    pub(super) fn end_call_of_dialog(&mut self, id: &DialogId, reason: &str, now: Instant) -> Vec<Transmit> {
        match self.call_dialogs.get(id) {
            Some(&(key, _)) => self.end_call(key, HangupBy::Switch, reason, now),
            None => Vec::new(),
        }
    }

    /// Ends every call (at shutdown).
    pub fn end_all_calls(&mut self, now: Instant) -> Vec<Transmit> {
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        keys.into_iter().flat_map(|key| self.end_call(key, HangupBy::Switch, "shutdown", now)).collect()
    }

    /// What a call's media reported: a leg went silent (the call ends), one-way
    /// audio began or ended (logged and counted), or the media ended.
    pub fn handle_media_report(&mut self, report: crate::media::MediaReport, now: Instant) -> Vec<Transmit> {
        let mut out = self.media_report(report, now);
        out.extend(self.run_acd(now));
        out
    }

    fn media_report(&mut self, (key, event): crate::media::MediaReport, now: Instant) -> Vec<Transmit> {
        let reason = match event {
            Some(MediaEvent::Inactive { silent_for, .. }) => {
                format!("RTP timeout ({} s without media)", silent_for.as_secs())
            }
            Some(MediaEvent::OneWay { silent, silent_for }) => {
                self.one_way_began(key, Side::of_leg(silent), now.checked_sub(silent_for).unwrap_or(now), now);
                return Vec::new();
            }
            Some(MediaEvent::OneWayEnded { leg }) => {
                self.one_way_ended(key, Side::of_leg(leg));
                return Vec::new();
            }
            Some(MediaEvent::Digit { leg, digit }) => return self.digit_pressed(key, Side::of_leg(leg), digit, now),
            None => "media failed".to_string(),
        };
        self.end_call(key, HangupBy::Switch, &reason, now)
    }

    /// `side` has been silent since `since` while the other side sends. Said at
    /// once in an answered call; during early media (where many callers send
    /// nothing) only if it lasts until the answer.
    fn one_way_began(&mut self, key: CallKey, side: Side, since: Instant, now: Instant) {
        let Some(call) = self.calls.get_mut(&key) else { return };
        call.one_way[side.index()] = Some(since);
        if call.state == CallState::Ringing {
            debug!(call_id = %call.record.call_id, silent = side.name(), "no RTP from one side during early media");
            return;
        }
        call.warn_one_way(side, &mut self.stats, now);
    }

    fn one_way_ended(&mut self, key: CallKey, side: Side) {
        let Some(call) = self.calls.get_mut(&key) else { return };
        if call.one_way[side.index()].take().is_none() {
            return;
        }
        if call.state == CallState::Ringing {
            debug!(call_id = %call.record.call_id, side = side.name(), "RTP from this side during early media");
        } else {
            info!(call_id = %call.record.call_id, side = side.name(), "one-way audio ended");
        }
    }

    /// Answered calls with one side silent while the other sends, now.
    pub fn one_way_call_count(&self) -> usize {
        let one_way = |c: &&Call| {
            matches!(c.state, CallState::Answered | CallState::Transferring) && c.one_way.iter().any(Option::is_some)
        };
        self.calls.values().filter(one_way).count()
    }

    fn write_cdr(&mut self, key: CallKey, disposition: Disposition, status: u16, reason: &str, by: HangupBy) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.record.written {
            return;
        }
        call.record.written = true;
        let Some(sink) = &self.cdr else { return };
        let r = &call.record;
        let mut cdr = Cdr::new(
            r.call_id.clone(),
            r.caller.clone(),
            r.callee.clone(),
            r.destination.clone(),
            (r.start, r.answer, SystemTime::now()),
            disposition,
            (status, reason.to_string()),
            by,
        );
        cdr.contact_ref.clone_from(&r.contact_ref);
        sink.send(cdr);
    }

    /// Forgets a call and everything that points at it; its media stops.
    fn remove_call(&mut self, key: CallKey, now: Instant) {
        self.set_deadline(key, None);
        let Some(call) = self.calls.remove(&key) else {
            return;
        };
        for endpoint in &call.busy_endpoints {
            self.endpoint_call_ended(endpoint, now);
        }
        for party in [Some(&call.caller), call.callee.as_ref()].into_iter().flatten() {
            self.call_dialogs.remove(&party.dialog.id);
            self.pending_answers.remove(&party.dialog.id);
        }
        if let Some(invite) = &call.invite {
            self.call_invites.remove(&invite.tx);
        }
        for fork in &call.forks {
            self.client_txs.remove(&fork.tx);
        }
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
}

/// A NOTIFY of a REFER's implicit subscription (RFC 3515 §2.4.5): the
/// transfer's progress as a sipfrag status line.
fn send_refer_notify(
    transactions: &mut dialog_layer::transaction::TransactionLayer,
    party: &mut Party,
    (code, reason): (u16, &str),
    last: bool,
    now: Instant,
) -> Vec<Transmit> {
    let state = if last { "terminated;reason=noresource" } else { "active;expires=60" };
    let body = format!("SIP/2.0 {code} {reason}\r\n");
    let headers = [("Event", "refer"), ("Subscription-State", state)];
    let sipfrag = Some(("message/sipfrag;version=2.0", body.as_bytes()));
    let (notify, _) = party.dialog.request(&Method::Notify, &party.via, &headers, sipfrag);
    match transactions.send_request(notify, party.target, now) {
        Ok((_, t)) => vec![t],
        Err(why) => {
            warn!(why, "could not send NOTIFY");
            Vec::new()
        }
    }
}

/// Q.850 causes for the Reason header of our BYEs (RFC 3326): the other
/// side hung up or was transferred, or Tandem ended the call itself.
const NORMAL_CLEARING: u16 = 16;
const TEMPORARY_FAILURE: u16 = 41;

fn send_bye(
    transactions: &mut dialog_layer::transaction::TransactionLayer,
    party: &mut Party,
    (cause, text): (u16, &str),
    now: Instant,
) -> Vec<Transmit> {
    let reason = format!("Q.850;cause={cause};text=\"{text}\"");
    let (bye, _) = party.dialog.request(&Method::Bye, &party.via, &[("Reason", &reason)], None);
    match transactions.send_request(bye, party.target, now) {
        Ok((_, t)) => vec![t],
        Err(why) => {
            warn!(why, "could not send BYE");
            Vec::new()
        }
    }
}

impl Call {
    /// A call from `req`'s caller, before any callee answers.
    fn new(req: &Req<'_>, caller: Party, number: &str, destination: String, state: CallState, media: Media) -> Call {
        Call {
            state,
            caller,
            callee: None,
            invite: None,
            forks: Vec::new(),
            callee_sdp: None,
            early_answer: None,
            callee_agreed: None,
            media: Some(media),
            relayed: None,
            deadline: None,
            armed: None,
            caller_requires_100rel: requires_100rel(req.msg),
            last_rseq: 0,
            unacked_provisional: None,
            transfer: None,
            fork_base: 0,
            one_way: [None; 2],
            had_one_way: false,
            queue: None,
            ivr: None,
            busy_endpoints: Vec::new(),
            ends_at_deadline: false,
            record: Record {
                call_id: req.msg.call_id().unwrap_or_default().to_string(),
                caller: caller_of(req.msg),
                callee: number.to_string(),
                destination,
                contact_ref: None,
                start: SystemTime::now(),
                answer: None,
                written: false,
            },
        }
    }

    /// Logs one-way audio with `side` silent, and counts the call (once).
    fn warn_one_way(&mut self, side: Side, stats: &mut CoreStats, now: Instant) {
        let since = self.one_way[side.index()];
        let silent_for = since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        warn!(
            call_id = %self.record.call_id,
            silent = side.name(),
            silent_for_s = silent_for.as_secs(),
            "one-way audio: no RTP from one side while the other sends"
        );
        if !self.had_one_way {
            self.had_one_way = true;
            stats.one_way_calls += 1;
        }
    }

    fn party(&self, side: Side) -> Option<&Party> {
        match side {
            Side::Caller => Some(&self.caller),
            Side::Callee => self.callee.as_ref(),
        }
    }

    fn party_mut(&mut self, side: Side) -> Option<&mut Party> {
        match side {
            Side::Caller => Some(&mut self.caller),
            Side::Callee => self.callee.as_mut(),
        }
    }
}

/// The dialog a Refer-To URI's `Replaces` header names (RFC 3891 §6.1:
/// `?Replaces=call-id%3Bto-tag%3DX%3Bfrom-tag%3DY`), as the transferor sees it:
/// to-tag the remote tag, from-tag its own.
fn replaces_param(uri: &str) -> Option<DialogId> {
    let (_, headers) = uri.split_once('?')?;
    let value = headers.split('&').find_map(|h| {
        let (name, value) = h.split_once('=')?;
        name.eq_ignore_ascii_case("replaces").then_some(value)
    })?;
    let value = sip_transport::header::percent_decode(value);
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim().to_string();
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        match p.split_once('=') {
            Some((n, v)) if n.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim().to_string()),
            Some((n, v)) if n.trim().eq_ignore_ascii_case("from-tag") => from_tag = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Some(DialogId { call_id, local_tag: to_tag?, remote_tag: from_tag? })
}

/// Whether the caller requires reliable provisional responses.
fn requires_100rel(msg: &SipMessage) -> bool {
    msg.option_tags(HeaderName::Require).is_ok_and(|tags| tags.iter().any(|t| t.eq_ignore_ascii_case("100rel")))
}

/// The direction an offer asks for, with RFC 2543 hold (c=0.0.0.0) read as sendonly.
fn offered_direction(line: &crate::sdp::MediaLine) -> Direction {
    if line.is_hold() && line.direction == Direction::SendRecv { Direction::SendOnly } else { line.direction }
}

/// The relay's view of an agreement: where the peer is and its payload types.
/// The key of an `application/dtmf-relay` body (`Signal=5`, `Duration=160`).
/// Some phones send `*` and `#` as 10 and 11.
fn info_dtmf_relay(body: &str) -> Option<char> {
    let signal = body.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        name.trim().eq_ignore_ascii_case("signal").then(|| value.trim())
    })?;
    info_key(signal)
}

/// One key: `0`-`9`, `*`, `#`, `A`-`D` (either case), or 10/11 for `*`/`#`.
fn info_key(text: &str) -> Option<char> {
    match text {
        "10" => Some('*'),
        "11" => Some('#'),
        _ => {
            let mut chars = text.chars();
            let key = chars.next()?.to_ascii_uppercase();
            (chars.next().is_none() && "0123456789*#ABCD".contains(key)).then_some(key)
        }
    }
}

/// What to offer a new party joining someone already talking: the codec they
/// use now (the relay does not transcode), sendrecv, RTCP on its own port
/// (an offerer cannot know the peer takes rtcp-mux).
fn same_codec_offer(audio: &AudioParams) -> AudioParams {
    let mut offer = audio.clone();
    offer.codecs.truncate(1);
    offer.direction = Direction::SendRecv;
    offer.rtcp_mux = false;
    offer
}

fn leg_params(agreed: &AudioAgreement) -> Result<LegParams, String> {
    let payloads: Vec<(u8, MediaCodec)> = agreed
        .audio
        .codecs
        .iter()
        .chain(agreed.audio.telephone_event.iter())
        .filter_map(|c| MediaCodec::from_rtpmap(&c.name, c.clock_rate).map(|m| (c.payload_type, m)))
        .collect();
    let payloads = PayloadMap::new(&payloads).map_err(|e| e.to_string())?;
    Ok(LegParams { remote_rtp: agreed.remote_rtp, remote_rtcp: agreed.remote_rtcp, payloads, inband_dtmf: false })
}

/// What the caller gets when no callee answered, from the forks' statuses: a
/// global refusal (6xx) first, then busy, then a specific client error, else
/// "temporarily unavailable" (offline, timed out, server errors, challenges we
/// could not answer).
fn caller_status(statuses: impl Iterator<Item = u16>) -> (u16, &'static str, Disposition) {
    let rank = |s: u16| match s {
        600..=699 => 4,
        486 => 3,
        400..=499 if !matches!(s, 401 | 404 | 407 | 408 | 410 | 480 | 487) => 2,
        _ => 1,
    };
    let best = statuses.max_by_key(|&s| rank(s)).unwrap_or(480);
    match (rank(best), best) {
        (4, 600) | (3, _) => (486, "Busy Here", Disposition::Busy),
        (4, 603) => (603, "Decline", Disposition::Rejected),
        (4, s) | (2, s) => (s, sip_transport::writer::reason_phrase(s), Disposition::Failed),
        _ => (480, "Temporarily Unavailable", Disposition::Failed),
    }
}

impl Fork {
    /// The party a fork's 2xx makes (our UAC dialog with `dialog`), with its
    /// ACK to send: our SDP session and relay address on that side, and what
    /// was agreed. The 2xx says who refreshes the session; without a
    /// Session-Expires we do (RFC 4028 §7.2).
    fn answered(
        &self,
        mut dialog: Dialog,
        ok: &SipMessage,
        (sdp, local_rtp, agreed): (LocalSession, SocketAddr, AudioAgreement),
        profile: Profile,
    ) -> (Party, Transmit) {
        // Requests already sent in the early dialog (PRACK) used CSeq numbers.
        if let Some(early) = self.early.as_ref().filter(|e| e.id == dialog.id) {
            dialog.local_seq = early.local_seq;
        }
        let ack = dialog.ack(self.invite.cseq, &self.invite.via, None);
        let timer = agreed_as_uac(ok).ok().flatten().unwrap_or(SessionTimer {
            interval: self.invite.session_expires,
            refresher: Refresher::Uac,
            uac_supports: true,
        });
        let party = Party {
            target: self.target,
            via: self.invite.via.clone(),
            sdp,
            local_rtp,
            agreed,
            remote_offer: None,
            awaiting_answer: None,
            ack: Some((self.invite.cseq, ack.clone())),
            timer: Some(timer),
            we_refresh: timer.refresher == Refresher::Uac,
            timer_due: None,
            profile,
            dialog,
        };
        (party, Transmit { target: self.target, data: ack })
    }
}

impl OutboundInvite {
    fn write(&self, user_agent: &str) -> Bytes {
        let mut w = MessageWriter::request(&Method::Invite, &self.uri);
        w.header("Via", format_args!("{};branch={}", self.via, new_branch()));
        w.header("Max-Forwards", self.max_forwards);
        w.header("From", &self.from);
        w.header("To", &self.to);
        w.header("Call-ID", &self.call_id);
        w.header("CSeq", format_args!("{} INVITE", self.cseq));
        w.header("Contact", &self.contact);
        w.header("Allow", ALLOW);
        w.header("Supported", "timer");
        w.header("Session-Expires", self.session_expires);
        w.header("Min-SE", self.min_se);
        w.header("User-Agent", user_agent);
        if let Some((name, value)) = &self.authorization {
            w.header(name, value);
        }
        for (name, value) in &self.headers {
            w.header(name, value);
        }
        w.finish(Some("application/sdp"), &self.body)
    }
}

/// Our Contact on a listener.
pub(super) fn our_contact(transport: Transport, local: SocketAddr) -> String {
    match transport {
        Transport::Udp => format!("<sip:tandem@{local}>"),
        t => format!("<sip:tandem@{local};transport={}>", t.as_str().to_ascii_lowercase()),
    }
}

/// Our Via (without branch) on a listener.
pub(super) fn our_via(transport: Transport, local: SocketAddr) -> String {
    format!("SIP/2.0/{transport} {local};rport")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies_give_their_key() {
        assert_eq!(info_dtmf_relay("Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(info_dtmf_relay("signal= #\nDuration=100"), Some('#'));
        assert_eq!(info_dtmf_relay("Signal=11\r\nDuration=100"), Some('#'), "11 is # for some phones");
        assert_eq!(info_dtmf_relay("Signal=10"), Some('*'));
        assert_eq!(info_dtmf_relay("Signal=d"), Some('D'));
        assert_eq!(info_dtmf_relay("Duration=160"), None, "no signal");
        assert_eq!(info_dtmf_relay("Signal=12"), None, "not a key");
        assert_eq!(info_dtmf_relay("Signal=55"), None);
        assert_eq!(info_key("7"), Some('7'));
        assert_eq!(info_key(""), None);
        assert_eq!(info_key("x"), None);
    }
}
