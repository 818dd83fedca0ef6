//! Queue calls: the switch's side of the ACD. The engine (`acd-engine`) decides
//! whom to offer a caller to and when; this module carries its decisions out
//! in SIP and media and tells it what happened.
//!
//! A queued caller is answered by the switch (its relay leg A hears music on
//! hold), and its call keeps a second relay leg B for the agent. Each offer is
//! a fork: one INVITE per registered contact of the agent, on leg B, with the
//! caller's codec and headers that name the queue, the caller and the wait.
//! The first agent to answer becomes the call's callee and the legs are
//! bridged; from then on it is an ordinary answered call (hold, transfer,
//! session timers), and when it ends the engine starts the agent's wrap-up.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use acd_engine::{
    Action, AgentStatus, CallId, CallerInfo, DeviceState, EndedBy, ExitReason, JoinRefused, LeaveReason, OfferResult,
};
use bytes::Bytes;
use dialog_layer::dialog::Dialog;
use dialog_layer::registrar::LocationService;
use dialog_layer::transaction::{ServerTxId, Transmit};
use media_relay::{BridgeParams, Leg, LegParams, Mode};
use sip_transport::SipMessage;
use tracing::{debug, info, warn};

use super::{
    Call, CallState, CallerId, CallerInvite, Callees, ForkState, Media, Refusal, Side, caller_of, leg_params,
    same_codec_offer,
};
use crate::cdr::HangupBy;
use crate::core::{Req, SipCore};
use crate::dialplan::QueueTarget;
use crate::media::{CallKey, MediaCommand, spawn_media_task};
use crate::sdp::{LocalSession, SdpSession, read_answer};
use crate::settings::{Profile, QueueExit};

/// Headers on an agent's INVITE, for a softphone or CRM to show the caller.
const HEADER_QUEUE: &str = "X-Tandem-Queue";
const HEADER_CALLER: &str = "X-Tandem-Caller";
const HEADER_WAIT: &str = "X-Tandem-Wait";
const HEADER_CALL_REF: &str = "X-Tandem-Call-Ref";
const HEADER_CONTACT_REF: &str = "X-Tandem-Contact-Ref";

/// The switch's side of a call it holds (in an IVR, waiting in a queue, or
/// ringing the destination it was sent on to), and once someone has it.
pub(super) struct QueueCall {
    pub(super) name: String,
    /// As agents see it.
    caller_number: String,
    /// Our SDP towards agents, on relay leg B, and the offer each agent gets.
    agent_sdp: LocalSession,
    agent_offer: SdpSession,
    agent_rtp: SocketAddr,
    /// The agent who answered.
    pub(super) agent: Option<String>,
    /// The caller is waiting in the engine (not yet connected, not sent on).
    pub(super) waiting: bool,
    /// An announcement plays; music on hold comes back then.
    pub(super) music_resumes: Option<Instant>,
    /// The endpoint the caller was sent on to (an exit destination), busy once it answers.
    sent_to: Option<String>,
    /// Headers for the INVITEs that put the caller through (an IVR rule's),
    /// and the reference the caller typed (`X-Tandem-Contact-Ref`, the CDR).
    pub(super) headers: Vec<(String, String)>,
    pub(super) contact_ref: Option<String>,
}

impl QueueCall {
    /// What the INVITEs that put the caller through carry besides a queue's
    /// own headers: the IVR rule's headers and the caller's reference.
    fn put_through_headers(&self) -> Vec<(String, String)> {
        let reference = self.contact_ref.iter().map(|r| (HEADER_CONTACT_REF.to_string(), r.clone()));
        self.headers.iter().cloned().chain(reference).collect()
    }
}

/// A caller the switch is about to hold: see [`SipCore::prepare_held`].
pub(super) struct Held {
    offer: Option<SdpSession>,
    params: LegParams,
    caller_leg: media_relay::LegHandle,
    agent_leg: media_relay::LegHandle,
    caller: super::Party,
}

impl SipCore {
    /// A call for a queue: the caller is answered, hears music, and waits for
    /// the engine to offer it to an agent.
    pub(in crate::core) fn join_queue(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        number: &str,
        target: &QueueTarget,
        now: Instant,
    ) -> Vec<Transmit> {
        let name = target.name.as_str();
        let destination = format!("queue:{name}");
        let held = match self.prepare_held(req) {
            Ok(held) => held,
            Err(refusal) => return self.refuse(req, tx, number, &destination, refusal, now),
        };
        let key = self.new_call_key();
        let info = CallerInfo { priority: target.priority, skills: target.skills.clone() };
        if let Err(refused) = self.acd.caller_join(CallId(key), name, info, now) {
            let settings = self.settings.acd.queues.get(name);
            let exit = match refused {
                JoinRefused::Full(_) => settings.map(|s| s.overflow.clone()),
                JoinRefused::Empty(_) => settings.map(|s| s.when_empty.clone()),
                JoinRefused::UnknownQueue(_) | JoinRefused::AlreadyQueued(_) => None,
            };
            info!(queue = name, %refused, ?exit, "a caller could not join the queue");
            let refusal = match refused {
                JoinRefused::Full(_) => Refusal::new(486, "Busy Here (queue full)"),
                JoinRefused::Empty(_) => Refusal::new(480, "Temporarily Unavailable (no agents)"),
                JoinRefused::UnknownQueue(_) | JoinRefused::AlreadyQueued(_) => Refusal::new(404, "Not Found (no such queue)"),
            };
            // Not answered yet: a destination other than hang-up takes the call as it is.
            drop(held);
            let mut out = Vec::new();
            match exit {
                Some(QueueExit::Queue(other)) if other != name => {
                    let other = QueueTarget { name: other, ..target.clone() };
                    return self.join_queue(req, tx, number, &other, now);
                }
                Some(QueueExit::Endpoint(id)) => {
                    out.extend(self.start_call(req, tx, number, Callees::Endpoint(id), now + EXIT_RING, now));
                }
                Some(QueueExit::Trunk { trunk, number: dial }) => {
                    let callees = Callees::Trunk { name: trunk, number: dial };
                    out.extend(self.start_call(req, tx, number, callees, now + EXIT_RING, now));
                }
                _ => out.extend(self.refuse(req, tx, number, &destination, refusal, now)),
            }
            out.extend(self.run_acd(now));
            return out;
        }
        info!(call_id = %held.caller.dialog.id.call_id, caller = %caller_of(req.msg), number, queue = name, "caller queued");
        let answer_now = self.settings.acd.queues.get(name).is_none_or(|s| s.answer);
        let music = self.music_on_hold.clone();
        let mut out = self.hold_caller(req, tx, number, key, held, (name, destination), answer_now, music, now);
        if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queue.as_mut()) {
            q.waiting = true;
        }
        out.extend(self.run_acd(now));
        out
    }

    /// What a caller the switch holds needs, checked and allocated before
    /// anything is sent: its offer, its relay leg and one for the party it is
    /// put through to later.
    pub(super) fn prepare_held(&self, req: &Req<'_>) -> Result<Held, Refusal> {
        let (offer, agreed, timer) = self.caller_offer(req)?;
        let mut params = leg_params(&agreed).map_err(|why| Refusal::new(488, &format!("Not Acceptable Here ({why})")))?;
        // Its keys matter here (a PIN, the exit key): without telephone-event they are tones in its audio.
        params.inband_dtmf = agreed.audio.telephone_event.is_none();
        let caller_leg = self.allocate_leg(agreed.audio.rtcp_mux)?;
        let agent_leg = self.allocate_leg(false)?;
        let caller = self
            .caller_party(req, agreed, timer, caller_leg.local_rtp())
            .map_err(|why| Refusal::new(400, &format!("Bad Request ({why})")))?;
        Ok(Held { offer, params, caller_leg, agent_leg, caller })
    }

    /// Answers a caller the switch holds (a queue, an IVR): its leg hears
    /// `sound` (music, or nothing until a prompt), and the call waits in state
    /// `Queued` for whoever it is put through to. Without `answer_now`, the
    /// sound is early media (183) and the caller is answered when that party is.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hold_caller(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        number: &str,
        key: CallKey,
        held: Held,
        (name, destination): (&str, String),
        answer_now: bool,
        sound: Option<std::sync::Arc<media_relay::Prompt>>,
        now: Instant,
    ) -> Vec<Transmit> {
        let Held { offer, params, caller_leg, agent_leg, mut caller } = held;
        let answer = caller.answer_invite(offer);
        let audio = same_codec_offer(&caller.agreed.audio);
        let agent_rtp = agent_leg.local_rtp();
        let mut agent_sdp = LocalSession::new(rand::random(), agent_rtp.ip());
        let agent_offer = agent_sdp.offer(agent_rtp, &audio);

        let relay = self.media.as_ref().expect("checked by caller_offer");
        let media = relay.bridge(caller_leg, agent_leg, BridgeParams { a: params, b: LegParams::default() });
        let control = spawn_media_task(key, caller.dialog.id.call_id.clone(), media, self.media_reports.clone());
        control.send(MediaCommand::SetMode(Mode::Hold { held: Leg::A }));
        control.send(MediaCommand::Play(Leg::A, sound));
        if answer_now {
            caller.dialog.confirm();
        }
        let mut call = Call::new(req, caller, number, destination, CallState::Queued, Media::Running(control));
        call.queue = Some(Box::new(QueueCall {
            name: name.to_string(),
            caller_number: caller_of(req.msg),
            agent_sdp,
            agent_offer,
            agent_rtp,
            agent: None,
            waiting: false,
            music_resumes: None,
            sent_to: None,
            headers: Vec::new(),
            contact_ref: None,
        }));
        self.call_dialogs.insert(call.caller.dialog.id.clone(), (key, Side::Caller));
        let mut out = Vec::new();
        if answer_now {
            call.record.answer = Some(SystemTime::now());
            self.calls.insert(key, call);
            out.extend(self.answer_in_dialog(req.msg, tx, req.source.remote, key, Side::Caller, Some(&answer), now));
        } else {
            call.invite = Some(CallerInvite { msg: req.msg.clone(), tx, remote: req.source.remote });
            call.early_answer = Some(answer.clone());
            self.call_invites.insert(tx, key);
            self.calls.insert(key, call);
            out.extend(self.respond_caller(key, 183, "Session Progress", Some(&answer), now));
        }
        self.caller_endpoint_busy(key, req, now);
        out
    }

    /// Carries out what the engine decided, until it has nothing more to say.
    pub(in crate::core) fn run_acd(&mut self, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(action) = self.acd.poll_action() {
            match action {
                Action::Offer { call, agent, queue, waited, attempt } => {
                    out.extend(self.offer_to_agent(call.0, (&agent, attempt), &queue, waited, now));
                }
                Action::CancelOffer { call, agent } => out.extend(self.withdraw_offer(call.0, &agent, now)),
                Action::Exit { call, queue, reason } => out.extend(self.exit_queue(call.0, &queue, reason, now)),
                Action::Announce { call, position, estimated_wait, .. } => {
                    self.announce(call.0, position, estimated_wait, now);
                }
                Action::AskRouter { call, queue, candidates } => self.ask_router(call, &queue, candidates, now),
                Action::Event(event) => self.queue_log(&event, now),
            }
        }
        out
    }

    /// Rings an agent for a queued caller: one INVITE per registered contact.
    fn offer_to_agent(
        &mut self,
        key: CallKey,
        (agent, attempt): (&str, u32),
        queue: &str,
        waited: Duration,
        now: Instant,
    ) -> Vec<Transmit> {
        let Some(call) = self.calls.get(&key).filter(|c| c.state == CallState::Queued) else {
            // The call is gone or connected; the engine hears of it on its own.
            return Vec::new();
        };
        let targets = match self.callee_targets(&Callees::Endpoint(agent.to_string()), now) {
            Ok(t) => t,
            Err((code, reason)) => {
                debug!(agent, code, reason, "an agent cannot be offered a call");
                self.acd.offer_result(CallId(key), agent, OfferResult::Failed, now);
                return Vec::new();
            }
        };
        let q = call.queue.as_ref().expect("a queued call");
        let body = Bytes::from(q.agent_offer.to_string());
        let mut headers = vec![
            (HEADER_QUEUE.to_string(), queue.to_string()),
            (HEADER_CALLER.to_string(), q.caller_number.clone()),
            (HEADER_WAIT.to_string(), waited.as_secs().to_string()),
            (HEADER_CALL_REF.to_string(), call.record.call_id.clone()),
        ];
        headers.extend(q.put_through_headers());
        let identity = sip_transport::header::NameAddr::parse(&call.caller.dialog.remote_party).ok();
        let caller_id = CallerId {
            display: identity.as_ref().and_then(|n| n.display.map(str::to_string)),
            user: q.caller_number.clone(),
        };
        let first = call.forks.len();
        let call_id = call.record.call_id.clone();
        let (mut forks, sent) = self.send_forks(key, first, targets, &caller_id, 70, &body, &headers, now);
        if forks.is_empty() {
            self.acd.offer_result(CallId(key), agent, OfferResult::Failed, now);
            return sent;
        }
        for fork in &mut forks {
            fork.offer = Some((agent.to_string(), attempt));
        }
        info!(call_id, queue, agent, contacts = forks.len(), "offering the caller to an agent");
        self.calls.get_mut(&key).expect("looked up").forks.extend(forks);
        sent
    }

    /// Stops ringing an agent (ring timeout, or another agent answered).
    fn withdraw_offer(&mut self, key: CallKey, agent: &str, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get(&key) else { return Vec::new() };
        let ringing: Vec<usize> = (0..call.forks.len())
            .filter(|&i| call.forks[i].offer.as_ref().is_some_and(|(a, _)| a == agent))
            .filter(|&i| call.forks[i].state != ForkState::Done)
            .collect();
        ringing.into_iter().flat_map(|i| self.cancel_fork(key, i, now)).collect()
    }

    /// An agent's 2xx: the agent takes the callee's place and the legs are bridged.
    pub(super) fn agent_answered(&mut self, key: CallKey, i: usize, msg: &SipMessage, now: Instant) -> Vec<Transmit> {
        let call = self.calls.get_mut(&key).expect("a fork's call");
        let q = call.queue.as_mut().expect("a queued call");
        let fork = &mut call.forks[i];
        fork.state = ForkState::Done;
        // An exit destination's fork has no agent: the engine is not told.
        let agent = fork.offer.as_ref().map(|(agent, _)| agent.clone());
        let agreed = SdpSession::parse(msg.body())
            .map_err(|e| e.to_string())
            .and_then(|answer| read_answer(&q.agent_offer, &answer).map_err(|e| e.0));
        let dialog = SipMessage::parse(fork.sent.clone())
            .ok()
            .and_then(|invite| Dialog::as_uac(&invite, msg, &fork.invite.contact).ok());
        let (Ok(agreed), Some(dialog)) = (agreed, dialog) else {
            warn!(?agent, "an agent's answer is not usable");
            let mut out = self.ack_and_hang_up(key, i, msg, now);
            if let Some(agent) = &agent {
                self.acd.offer_result(CallId(key), agent, OfferResult::Failed, now);
            }
            out.extend(self.run_acd(now));
            out.extend(self.exit_fork_failed(key, now));
            return out;
        };
        let params = leg_params(&agreed);
        let (mut party, ack) = fork.answered(dialog, msg, (q.agent_sdp.clone(), q.agent_rtp, agreed), Profile::Internal);
        party.touch_timer(now);
        q.agent = agent.clone();
        q.waiting = false;
        q.music_resumes = None;
        info!(call_id = %call.record.call_id, queue = %q.name, ?agent, "agent answered");
        self.call_dialogs.insert(party.dialog.id.clone(), (key, Side::Callee));
        call.callee = Some(party);
        call.state = CallState::Answered;
        if let Some(Media::Running(control)) = &call.media {
            if let Ok(params) = params {
                control.send(MediaCommand::UpdateLeg(Leg::B, params));
            }
            control.send(MediaCommand::SetMode(Mode::Bridge));
            control.send(MediaCommand::Play(Leg::A, None));
        }
        let others: Vec<usize> = (0..call.forks.len()).filter(|&j| j != i).collect();
        // A caller not answered yet (the queue answers with the agent) gets its 200 now.
        let answer_caller = call.early_answer.clone().filter(|_| call.invite.is_some());
        if answer_caller.is_some() {
            call.caller.dialog.confirm();
            call.record.answer = Some(SystemTime::now());
        }
        let mut out = vec![ack];
        for j in others {
            out.extend(self.cancel_fork(key, j, now));
        }
        if let Some(sdp) = answer_caller {
            out.extend(self.respond_caller(key, 200, "OK", Some(&sdp), now));
        }
        self.set_deadline(key, None);
        match &agent {
            Some(agent) => self.acd.offer_result(CallId(key), agent, OfferResult::Answered, now),
            // An exit destination: an endpoint on a call like any other (the engine did not connect it).
            None => {
                let sent_to = self.calls.get(&key).and_then(|c| c.queue.as_ref()?.sent_to.clone());
                if let Some(endpoint) = sent_to {
                    self.endpoint_call_began(key, &endpoint, now);
                }
            }
        }
        out.extend(self.run_acd(now));
        out
    }

    /// A fork to an agent ended without an answer. Once every contact of that
    /// agent has, the engine hears why (unless we withdrew the offer ourselves).
    pub(super) fn agent_fork_failed(&mut self, key: CallKey, i: usize, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get(&key) else { return Vec::new() };
        let Some(offer) = call.forks.get(i).and_then(|f| f.offer.clone()) else {
            return self.exit_fork_failed(key, now);
        };
        let current: Vec<_> = call.forks.iter().filter(|f| f.offer.as_ref() == Some(&offer)).collect();
        // Wait for every contact; an offer we withdrew is the engine's own doing.
        if current.iter().any(|f| f.state != ForkState::Done) || current.iter().all(|f| f.cancel) {
            return Vec::new();
        }
        let agent = offer.0;
        let statuses: Vec<u16> = current.iter().filter_map(|f| f.status).collect();
        let result = if statuses.iter().any(|s| matches!(s, 486 | 600)) {
            OfferResult::Busy
        } else if statuses.iter().any(|s| matches!(s, 603)) {
            OfferResult::Rejected
        } else if statuses.iter().any(|s| matches!(s, 408 | 480 | 487)) {
            OfferResult::NoAnswer
        } else {
            OfferResult::Failed
        };
        debug!(call_id = %call.record.call_id, agent, ?statuses, ?result, "an agent did not take the call");
        self.acd.offer_result(CallId(key), &agent, result, now);
        self.run_acd(now)
    }

    /// The engine sends a caller away: after the maximum wait, or because the
    /// queue has no agents left, or was removed from the configuration.
    fn exit_queue(&mut self, key: CallKey, queue: &str, reason: ExitReason, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get_mut(&key).filter(|c| c.state == CallState::Queued) else {
            return Vec::new();
        };
        if let Some(q) = call.queue.as_mut() {
            q.waiting = false;
        }
        let settings = self.settings.acd.queues.get(queue);
        let exit = match reason {
            ExitReason::MaxWait => settings.map(|s| s.overflow.clone()),
            ExitReason::Empty => settings.map(|s| s.when_empty.clone()),
            _ => None,
        }
        .unwrap_or(QueueExit::Hangup);
        info!(call_id = %call.record.call_id, queue, ?reason, ?exit, "caller leaves the queue");
        self.send_on(key, exit, now)
    }

    /// A key the caller pressed: the queue's exit key sends it on.
    pub(super) fn digit_pressed(&mut self, key: CallKey, side: Side, digit: char, now: Instant) -> Vec<Transmit> {
        if side == Side::Caller
            && let Some(out) = self.ivr_digit(key, digit, now)
        {
            return out;
        }
        let Some(call) = self.calls.get_mut(&key) else { return Vec::new() };
        debug!(call_id = %call.record.call_id, side = side.name(), "key pressed");
        let Some(q) = call.queue.as_mut().filter(|q| q.waiting && side == Side::Caller) else { return Vec::new() };
        let exit_key = self.settings.acd.queues.get(&q.name).and_then(|s| s.exit_key.clone());
        let Some((_, exit)) = exit_key.filter(|(key, _)| *key == digit) else { return Vec::new() };
        q.waiting = false;
        info!(call_id = %call.record.call_id, queue = %q.name, ?exit, "caller pressed the exit key");
        self.acd.caller_leave(CallId(key), LeaveReason::Key, now);
        let mut out = self.run_acd(now);
        out.extend(self.send_on(key, exit, now));
        out
    }

    /// Sends a caller who left its queue (or an IVR) where it says.
    pub(super) fn send_on(&mut self, key: CallKey, exit: QueueExit, now: Instant) -> Vec<Transmit> {
        let mut out = self.withdraw_all_offers(key, now);
        let callees = match exit {
            QueueExit::Hangup => {
                // An answered caller hears "goodbye" first; the call's deadline then ends it.
                let goodbye = self.sounds.as_ref().and_then(|s| s.get("goodbye"));
                let call = self.calls.get_mut(&key).expect("looked up");
                match (goodbye, &call.media) {
                    (Some(goodbye), Some(Media::Running(control))) if call.invite.is_none() => {
                        let until = now + goodbye.duration() + super::PROMPT_TAIL;
                        control.send(MediaCommand::Play(Leg::A, Some(goodbye)));
                        self.set_deadline(key, Some(until));
                    }
                    _ => out.extend(self.end_call(key, HangupBy::Switch, "queue exit", now)),
                }
                return out;
            }
            QueueExit::Queue(other) => {
                if self.acd.caller_join(CallId(key), &other, CallerInfo::default(), now).is_ok() {
                    if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queue.as_mut()) {
                        q.name = other;
                        q.waiting = true;
                    }
                    out.extend(self.run_acd(now));
                } else {
                    out.extend(self.end_call(key, HangupBy::Switch, "overflow queue refused the caller", now));
                }
                return out;
            }
            QueueExit::Endpoint(id) => Callees::Endpoint(id),
            QueueExit::Trunk { trunk, number } => Callees::Trunk { name: trunk, number },
            QueueExit::Uri(uri) => Callees::Uri(uri),
        };
        out.extend(self.ring_exit(key, callees, now));
        out
    }

    /// Sends a queued caller on to an endpoint or trunk: they ring like an
    /// agent would (the caller keeps hearing music), without the engine.
    fn ring_exit(&mut self, key: CallKey, callees: Callees, now: Instant) -> Vec<Transmit> {
        let targets = match self.callee_targets(&callees, now) {
            Ok(t) => t,
            Err((code, reason)) => {
                info!(code, reason, "the queue's exit destination cannot ring");
                return self.end_call(key, HangupBy::Switch, "queue exit destination unavailable", now);
            }
        };
        let call = self.calls.get_mut(&key).expect("a queued call");
        let q = call.queue.as_mut().expect("a queued call");
        if let Callees::Endpoint(id) = &callees {
            q.sent_to = Some(id.clone());
        }
        let body = Bytes::from(q.agent_offer.to_string());
        let caller_id = CallerId { display: None, user: q.caller_number.clone() };
        let first = call.forks.len();
        let headers = q.put_through_headers();
        let (forks, sent) = self.send_forks(key, first, targets, &caller_id, 70, &body, &headers, now);
        if forks.is_empty() {
            let mut out = sent;
            out.extend(self.end_call(key, HangupBy::Switch, "queue exit destination unavailable", now));
            return out;
        }
        self.calls.get_mut(&key).expect("looked up").forks.extend(forks);
        self.set_deadline(key, Some(now + EXIT_RING));
        sent
    }

    /// The exit destination did not answer: the call ends.
    fn exit_fork_failed(&mut self, key: CallKey, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get(&key) else { return Vec::new() };
        let sent_on = call.queue.as_ref().is_some_and(|q| !q.waiting && q.agent.is_none());
        if call.state != CallState::Queued || !sent_on || call.forks.iter().any(|f| f.state != ForkState::Done) {
            return Vec::new();
        }
        self.end_call(key, HangupBy::Switch, "queue exit destination did not answer", now)
    }

    fn withdraw_all_offers(&mut self, key: CallKey, now: Instant) -> Vec<Transmit> {
        let Some(call) = self.calls.get(&key) else { return Vec::new() };
        (0..call.forks.len()).collect::<Vec<_>>().into_iter().flat_map(|i| self.cancel_fork(key, i, now)).collect()
    }

    /// A queue call is ending (`by` hung up): the engine forgets the caller, or
    /// starts the agent's wrap-up; offers still ringing are withdrawn.
    pub(super) fn queue_call_ends(&mut self, key: CallKey, by: HangupBy, now: Instant) -> Vec<Transmit> {
        let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queue.as_mut()) else { return Vec::new() };
        let (waiting, connected) = (q.waiting, q.agent.is_some());
        q.waiting = false;
        let mut out = self.withdraw_all_offers(key, now);
        if waiting {
            self.acd.caller_leave(CallId(key), LeaveReason::Abandon, now);
        } else if connected {
            let by = if by == HangupBy::Callee { EndedBy::Agent } else { EndedBy::Caller };
            self.acd.call_ended(CallId(key), by, now);
        }
        out.extend(self.run_acd(now));
        out
    }

    /// The agent left the call by transferring the caller on: for the queue,
    /// the agent's call is over.
    pub(super) fn agent_transferred_away(&mut self, key: CallKey, now: Instant) -> Vec<Transmit> {
        let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queue.as_mut()) else { return Vec::new() };
        if q.agent.take().is_none() {
            return Vec::new();
        }
        self.acd.call_ended(CallId(key), EndedBy::Agent, now);
        self.run_acd(now)
    }

    /// Plays the engine's announcement to a waiting caller; music comes back after it.
    fn announce(&mut self, key: CallKey, position: usize, wait: Option<Duration>, now: Instant) {
        let Some(call) = self.calls.get_mut(&key).filter(|c| c.state == CallState::Queued) else { return };
        let Some(q) = call.queue.as_mut() else { return };
        let Some(sounds) = &self.sounds else { return };
        let settings = self.settings.acd.queues.get(&q.name).cloned().unwrap_or_default();
        let mut parts = crate::prompts::queue_announcement(
            settings.announce_position.then_some(position),
            wait.filter(|_| settings.announce_wait),
        );
        if parts.is_empty() {
            // Neither position nor wait to say (switched off, or no estimate yet): a plain reminder.
            parts.push(crate::prompts::Part::clip("queue-thank-you"));
        }
        let prompt = match sounds.say(&parts) {
            Ok(p) => p,
            Err(error) => {
                warn!(%error, "cannot compose a queue announcement");
                return;
            }
        };
        q.music_resumes = Some(now + prompt.duration());
        if let Some(Media::Running(control)) = &call.media {
            control.send(MediaCommand::Play(Leg::A, Some(prompt)));
        }
        self.rearm(key);
    }

    /// An announcement is over: back to music.
    pub(super) fn resume_music(&mut self, key: CallKey, now: Instant) {
        let Some(call) = self.calls.get_mut(&key) else { return };
        let Some(q) = call.queue.as_mut() else { return };
        if q.music_resumes.is_none_or(|at| at > now) {
            return;
        }
        q.music_resumes = None;
        if call.state == CallState::Queued
            && let Some(Media::Running(control)) = &call.media
        {
            control.send(MediaCommand::Play(Leg::A, self.music_on_hold.clone()));
        }
    }

    /// The `external` strategy asks the queue's routing service (the driver
    /// does the HTTP; [`SipCore::router_answer`] brings the answer back).
    fn ask_router(&mut self, call: CallId, queue: &str, candidates: Vec<String>, now: Instant) {
        let url = self.settings.acd.queues.get(queue).and_then(|s| s.router_url.clone());
        let (Some(url), Some(c)) = (url, self.calls.get(&call.0)) else {
            self.acd.router_answer(call, None, now);
            return;
        };
        let q = c.queue.as_ref().expect("a queued call");
        let body = serde_json::json!({
            "queue": queue,
            "call_ref": c.record.call_id,
            "caller": q.caller_number,
            "candidates": candidates,
        });
        let timeout = self.settings.acd.engine.queues.iter().find(|q| q.name == queue).map(|q| q.router_timeout);
        self.router_requests.push(RouterRequest {
            call: call.0,
            url,
            timeout: timeout.unwrap_or(Duration::from_secs(2)),
            body,
        });
    }

    /// Routing services' questions to send (HTTP POST of `body` as JSON to `url`).
    pub fn take_router_requests(&mut self) -> Vec<RouterRequest> {
        std::mem::take(&mut self.router_requests)
    }

    /// A routing service's answer: the agent it chose, or `None` when it failed
    /// or answered nothing usable (the queue's fallback strategy then decides).
    pub fn router_answer(&mut self, call: CallKey, agent: Option<&str>, now: Instant) -> Vec<Transmit> {
        self.acd.router_answer(CallId(call), agent, now);
        self.run_acd(now)
    }

    fn queue_log(&mut self, event: &acd_engine::QueueEvent, now: Instant) {
        debug!(?event, "queue event");
        if let Some(sink) = &self.queue_log {
            let call_id = event.call.and_then(|c| self.calls.get(&c.0)).map(|c| c.record.call_id.clone());
            sink.send(crate::queue_log::QueueLogLine::new(event, call_id, now));
        }
    }
}

/// A question for a queue's routing service (the `external` strategy): the
/// switch's driver POSTs `body` to `url` and hands the answer to
/// [`SipCore::router_answer`]. The body: `{"queue", "call_ref", "caller",
/// "candidates": ["1001", ...]}`; the answer: `{"agent": "1002"}`.
#[derive(Clone, Debug)]
pub struct RouterRequest {
    pub call: CallKey,
    pub url: String,
    pub timeout: Duration,
    pub body: serde_json::Value,
}

/// How long a queue's exit destination (an endpoint or a trunk) may ring.
const EXIT_RING: Duration = Duration::from_secs(30);

/// Agents' phones: the engine offers only agents whose phone is registered and
/// not on another call (unless the queue rings agents in use).
impl SipCore {
    /// Tells the engine if what it knows of `endpoint`'s phone changed.
    pub(in crate::core) fn update_device(&mut self, endpoint: &str, now: Instant) {
        if self.acd.agent_view(endpoint).is_none() {
            return;
        }
        let device = DeviceState {
            registered: !self.registrar.location().bindings(endpoint, now).is_empty(),
            busy: self.endpoint_calls.get(endpoint).is_some_and(|&n| n > 0),
        };
        if self.devices.get(endpoint) != Some(&device) {
            self.devices.insert(endpoint.to_string(), device);
            self.acd.device_state(endpoint, device, now);
        }
    }

    /// The caller of a new call is one of our endpoints: it is busy.
    pub(super) fn caller_endpoint_busy(&mut self, key: CallKey, req: &Req<'_>, now: Instant) {
        let caller = caller_of(req.msg);
        if req.profile == Profile::Internal && self.settings.endpoints.contains_key(&caller) {
            self.endpoint_call_began(key, &caller, now);
        }
    }

    pub(super) fn endpoint_call_began(&mut self, key: CallKey, endpoint: &str, now: Instant) {
        let Some(call) = self.calls.get_mut(&key) else { return };
        call.busy_endpoints.push(endpoint.to_string());
        *self.endpoint_calls.entry(endpoint.to_string()).or_default() += 1;
        self.update_device(endpoint, now);
    }

    pub(super) fn endpoint_call_ended(&mut self, endpoint: &str, now: Instant) {
        if let Some(n) = self.endpoint_calls.get_mut(endpoint) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.endpoint_calls.remove(endpoint);
            }
        }
        self.update_device(endpoint, now);
    }

    /// The feature code an agent dialled, if `number` is one.
    pub(in crate::core) fn feature_code(&self, number: &str) -> Option<AgentStatus> {
        let codes = &self.settings.acd.feature_codes;
        match number {
            n if n == codes.login || n == codes.unpause => Some(AgentStatus::Available),
            n if n == codes.logout => Some(AgentStatus::LoggedOut),
            n if n == codes.pause => Some(AgentStatus::OnBreak("paused by phone".into())),
            _ => None,
        }
    }

    /// An agent dialled a feature code: their status changes, and they hear it
    /// confirmed before the switch hangs up.
    pub(in crate::core) fn agent_feature(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        number: &str,
        status: AgentStatus,
        now: Instant,
    ) -> Vec<Transmit> {
        let agent = caller_of(req.msg);
        let codes = &self.settings.acd.feature_codes;
        let confirmation = match &status {
            AgentStatus::LoggedOut => "agent-logged-out",
            AgentStatus::OnBreak(_) => "agent-paused",
            AgentStatus::Available if number == codes.unpause => "agent-unpaused",
            AgentStatus::Available => "agent-logged-in",
        };
        if self.acd.set_status(&agent, status.clone(), now).is_err() {
            return self.reply(req, tx, 404, "Not Found (not an agent of any queue)", &[], now);
        }
        info!(agent, ?status, "agent status set by feature code");
        let prompt = self.sounds.as_ref().and_then(|s| s.get(confirmation));
        let mut out = self.answer_with_prompt(req, tx, number, prompt, now);
        out.extend(self.run_acd(now));
        out
    }
}
