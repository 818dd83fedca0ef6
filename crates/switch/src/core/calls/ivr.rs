//! IVR calls: the switch's side of `pin-ivr`. The caller is answered and held
//! like a queue's caller (relay leg A for it, leg B kept for the destination);
//! its session (`pin_ivr::IvrSession`) hears the keys (RFC 4733, SIP INFO) and
//! when prompts end, and says what to play and where the caller goes: a queue,
//! an endpoint, a trunk number or a SIP URI, in the same call.

use std::time::Instant;

use dialog_layer::transaction::{ServerTxId, Transmit};
use media_relay::Leg;
use pin_ivr::{Action, CallContext, Destination, IvrSession};
use tracing::{debug, info, warn};

use super::{CallState, Media, caller_of};
use crate::core::{Req, SipCore};
use crate::media::{CallKey, MediaCommand};
use crate::prompts::Part;
use crate::settings::{Profile, QueueExit};

/// A call in an IVR: its session, and when the prompt playing now ends.
pub(super) struct IvrCall {
    session: IvrSession,
    prompt_ends: Option<Instant>,
}

impl IvrCall {
    /// The earliest moment the call's IVR has something to do.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.prompt_ends.into_iter().chain(self.session.poll_timeout()).min()
    }
}

impl SipCore {
    /// A call for an IVR: answered, and its session starts (welcome, "enter your PIN").
    pub(in crate::core) fn start_ivr(
        &mut self,
        req: &Req<'_>,
        tx: ServerTxId,
        number: &str,
        name: &str,
        now: Instant,
    ) -> Vec<Transmit> {
        let destination = format!("ivr:{name}");
        let Some(config) = self.settings.ivr.ivrs.get(name).cloned() else {
            let refusal = super::Refusal::new(404, "Not Found (no such IVR)");
            return self.refuse(req, tx, number, &destination, refusal, now);
        };
        let held = match self.prepare_held(req) {
            Ok(held) => held,
            Err(refusal) => return self.refuse(req, tx, number, &destination, refusal, now),
        };
        let key = self.new_call_key();
        info!(call_id = %held_call_id(req), caller = %caller_of(req.msg), number, ivr = name, "IVR call");
        let mut out = self.hold_caller(req, tx, number, key, held, (name, destination), true, None, now);
        let trunk = match req.profile {
            Profile::External => self.settings.trunk_for(req.source.remote.ip()).map(|t| t.name.clone()),
            Profile::Internal => None,
        };
        let context = CallContext { caller: caller_of(req.msg), trunk, did: number.to_string() };
        let (session, actions) = IvrSession::new(config, context, now);
        if let Some(call) = self.calls.get_mut(&key) {
            call.ivr = Some(Box::new(IvrCall { session, prompt_ends: None }));
        }
        out.extend(self.ivr_actions(key, actions, now));
        out
    }

    /// A key from a caller in an IVR; `false` when the call is in none.
    pub(super) fn ivr_digit(&mut self, key: CallKey, digit: char, now: Instant) -> Option<Vec<Transmit>> {
        let call = self.calls.get_mut(&key)?;
        let ivr = call.ivr.as_mut()?;
        let actions = ivr.session.digit(digit, &self.dispatch_rules, &mut self.pin_attempts, now);
        Some(self.ivr_actions(key, actions, now))
    }

    /// The call's IVR deadline passed: its prompt ended, or one of its timers fired.
    pub(super) fn ivr_deadline(&mut self, key: CallKey, now: Instant) -> Vec<Transmit> {
        let Some(ivr) = self.calls.get_mut(&key).and_then(|c| c.ivr.as_mut()) else { return Vec::new() };
        let mut actions = Vec::new();
        if ivr.prompt_ends.is_some_and(|at| at <= now) {
            ivr.prompt_ends = None;
            actions.extend(ivr.session.prompt_finished(now));
        }
        if ivr.session.poll_timeout().is_some_and(|at| at <= now) {
            actions.extend(ivr.session.handle_timeout(now));
        }
        self.ivr_actions(key, actions, now)
    }

    /// Carries out the session's decisions, in order.
    fn ivr_actions(&mut self, key: CallKey, actions: Vec<Action>, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        let mut pending = std::collections::VecDeque::from(actions);
        while let Some(action) = pending.pop_front() {
            let Some(call) = self.calls.get_mut(&key) else { return out };
            match action {
                Action::Play(clips) => {
                    let parts: Vec<Part> = clips.into_iter().map(Part::clip).collect();
                    // The IVR's own language, else the switch's.
                    let ivr_name = call.queue.as_ref().map(|q| q.name.as_str()).unwrap_or_default();
                    let sounds = self.settings.ivr.sounds.get(ivr_name).or(self.sounds.as_ref());
                    let prompt = sounds.map(|s| s.say(&parts));
                    let Some(ivr) = call.ivr.as_mut() else { continue };
                    match prompt {
                        Some(Ok(prompt)) => {
                            ivr.prompt_ends = Some(now + prompt.duration());
                            if let Some(Media::Running(control)) = &call.media {
                                control.send(MediaCommand::Play(Leg::A, Some(prompt)));
                            }
                        }
                        // Nothing to play: the session must not wait for a prompt that never ends.
                        failed => {
                            if let Some(Err(error)) = failed {
                                warn!(%error, "an IVR prompt cannot be played");
                            }
                            ivr.prompt_ends = None;
                            pending.extend(ivr.session.prompt_finished(now));
                        }
                    }
                }
                Action::StopPrompt => {
                    if let Some(ivr) = call.ivr.as_mut() {
                        ivr.prompt_ends = None;
                    }
                    if let Some(Media::Running(control)) = &call.media {
                        control.send(MediaCommand::Play(Leg::A, None));
                    }
                }
                Action::Route { destination, headers, contact_ref, .. } => {
                    info!(call_id = %call.record.call_id, ?destination, has_reference = contact_ref.is_some(), "IVR routes the caller");
                    call.ivr = None;
                    call.record.contact_ref.clone_from(&contact_ref);
                    if let Some(q) = call.queue.as_mut() {
                        q.headers = headers;
                        q.contact_ref = contact_ref;
                    }
                    if let Some(Media::Running(control)) = &call.media {
                        control.send(MediaCommand::Play(Leg::A, None));
                    }
                    let exit = match destination {
                        Destination::Queue(name) => QueueExit::Queue(name),
                        Destination::Endpoint(id) => QueueExit::Endpoint(id),
                        Destination::Trunk { trunk, number } => QueueExit::Trunk { trunk, number },
                        Destination::Uri(uri) => QueueExit::Uri(uri),
                    };
                    out.extend(self.send_on(key, exit, now));
                }
                Action::Hangup => {
                    call.ivr = None;
                    out.extend(self.end_call(key, crate::cdr::HangupBy::Switch, "IVR done", now));
                }
                Action::Event(event) => {
                    info!(call_id = %call.record.call_id, event = event.name(), "IVR");
                    debug!(?event, "IVR event");
                }
            }
        }
        if self.calls.get(&key).is_some_and(|c| c.state == CallState::Queued) {
            self.rearm(key);
        }
        out
    }
}

/// The Call-ID of a request, for the log.
fn held_call_id<'a>(req: &'a Req<'_>) -> &'a str {
    req.msg.call_id().unwrap_or_default()
}
