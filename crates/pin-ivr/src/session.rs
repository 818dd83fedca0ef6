//! One caller in one IVR: prompts, keys, timers, attempts, and the way out.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Failure, IvrConfig, Mode};
use crate::limiter::AttemptLimiter;
use crate::rules::DispatchRules;
use crate::types::{Action, CallContext, IvrEvent, TimeoutKind};

/// One caller in one IVR, from the answer to a route or a hang-up.
///
/// The switch makes one per call that reaches an IVR, feeds it the caller's keys
/// ([`digit`](IvrSession::digit)), the end of each prompt it plays
/// ([`prompt_finished`](IvrSession::prompt_finished)) and its timers
/// ([`handle_timeout`](IvrSession::handle_timeout) once
/// [`poll_timeout`](IvrSession::poll_timeout) has passed), each with `now`, and carries
/// out the [`Action`]s returned, in order. Every input first runs the timers due at its
/// `now`. After [`Action::Route`] or [`Action::Hangup`] the session is finished and
/// ignores everything; the switch drops it then, or when the caller hangs up.
pub struct IvrSession {
    config: Arc<IvrConfig>,
    call: CallContext,
    phase: Phase,
    /// The digits of the current attempt (ASCII); zeroed when cleared and on drop.
    entry: Vec<u8>,
    /// Attempts failed so far.
    failed: u32,
    /// A prompt of ours plays; the attempt's timers wait for its end.
    prompting: bool,
    /// The end of the current attempt (from the end of the "enter" prompt).
    overall_deadline: Option<Instant>,
    /// The end of the wait for the next key (from the last digit).
    inter_digit_deadline: Option<Instant>,
}

enum Phase {
    /// Asking for and collecting the entry.
    Collecting,
    /// Playing the last prompt (connecting, too many, goodbye); this comes at its end.
    Closing(Action),
    /// Routed or hung up.
    Finished,
}

impl IvrSession {
    /// Answers the call: plays the welcome and "enter" prompts. The config should have
    /// passed [`IvrConfig::validate`].
    pub fn new(config: Arc<IvrConfig>, call: CallContext, now: Instant) -> (IvrSession, Vec<Action>) {
        let mut session = IvrSession {
            config,
            call,
            phase: Phase::Collecting,
            entry: Vec::new(),
            failed: 0,
            prompting: false,
            overall_deadline: None,
            inter_digit_deadline: None,
        };
        let mut out = Vec::new();
        let prompts = &session.config.prompts;
        let clips = clips([&prompts.welcome, &prompts.enter]);
        session.ask(clips, now, &mut out);
        (session, out)
    }

    /// A key the caller pressed (`0`-`9`, `*`, `#`, `A`-`D`; anything else is ignored).
    ///
    /// During a prompt a key stops it ([`Action::StopPrompt`], barge-in) and counts as
    /// typed; the attempt's overall timer starts then. A digit adds to the entry; the
    /// entry is complete at the PIN's `length` (a reference's `max_len`) or at the
    /// terminator. A terminator with nothing typed is ignored, and does not stop a
    /// prompt (a `#` pressed out of habit after a full-length PIN must not cut the next
    /// prompt short). `*`, unless it is the terminator, clears what was typed; the
    /// attempt's overall timer keeps running. `A`-`D` only stop a prompt.
    ///
    /// A complete PIN is first checked against the caller's recent failures in
    /// `limiter` (a blocked caller is refused without a lookup), then looked up in
    /// `rules`; a miss counts against the caller in `limiter`. Reference mode uses
    /// neither.
    pub fn digit(
        &mut self,
        key: char,
        rules: &DispatchRules,
        limiter: &mut AttemptLimiter,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.run_timers(now, &mut out);
        if !matches!(self.phase, Phase::Collecting) || !is_dtmf(key) {
            return out;
        }
        let terminator = self.config.terminator();
        if Some(key) == terminator && self.entry.is_empty() {
            return out;
        }
        if self.prompting {
            out.push(Action::StopPrompt);
            self.prompting = false;
            self.overall_deadline = Some(now + self.config.overall_timeout);
        }
        match key {
            '0'..='9' => {
                self.entry.push(key as u8);
                self.inter_digit_deadline = Some(now + self.config.inter_digit_timeout);
                let complete_at = match &self.config.mode {
                    Mode::Pin { length, .. } => *length,
                    Mode::Reference { max_len, .. } => *max_len,
                };
                if self.entry.len() >= complete_at {
                    self.complete(rules, limiter, now, &mut out);
                }
            }
            _ if Some(key) == terminator => self.complete(rules, limiter, now, &mut out),
            '*' => {
                self.clear_entry();
                self.inter_digit_deadline = None;
            }
            _ => {}
        }
        out
    }

    /// The prompt the session asked for has played to its end. The end of a prompt
    /// stopped by [`Action::StopPrompt`] or replaced by another [`Action::Play`] is not
    /// to be reported; a report when nothing plays is ignored.
    pub fn prompt_finished(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.run_timers(now, &mut out);
        if !self.prompting {
            return out;
        }
        self.prompting = false;
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Collecting => {
                self.phase = Phase::Collecting;
                self.overall_deadline = Some(now + self.config.overall_timeout);
            }
            Phase::Closing(last) => out.push(last),
            Phase::Finished => {}
        }
        out
    }

    /// Runs the timers due at `now`: an inter-digit or overall timeout fails the attempt.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.run_timers(now, &mut out);
        out
    }

    /// When [`handle_timeout`](IvrSession::handle_timeout) is next due; None while a
    /// prompt plays (the timers start at its end) and once the session closes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !matches!(self.phase, Phase::Collecting) || self.prompting {
            return None;
        }
        match (self.inter_digit_deadline, self.overall_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the session has routed or hung up the call.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// Attempts failed so far.
    pub fn failed_attempts(&self) -> u32 {
        self.failed
    }

    /// Digits typed in the current attempt (how many, not which).
    pub fn entered_len(&self) -> usize {
        self.entry.len()
    }

    pub fn call(&self) -> &CallContext {
        &self.call
    }

    pub fn config(&self) -> &IvrConfig {
        &self.config
    }

    fn run_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        // One pass per attempt at most: a failed attempt plays a prompt (stopping the
        // timers) or, with no prompts, restarts them from the moment it failed.
        while matches!(self.phase, Phase::Collecting) && !self.prompting {
            let Some(due) = self.poll_timeout().filter(|due| *due <= now) else { return };
            let kind =
                if self.inter_digit_deadline == Some(due) { TimeoutKind::InterDigit } else { TimeoutKind::Overall };
            self.clear_entry();
            self.fail(IvrEvent::Timeout { attempt: self.failed + 1, kind }, due, out);
        }
    }

    fn complete(&mut self, rules: &DispatchRules, limiter: &mut AttemptLimiter, now: Instant, out: &mut Vec<Action>) {
        self.inter_digit_deadline = None;
        self.overall_deadline = None;
        let attempt = self.failed + 1;
        let config = Arc::clone(&self.config);
        match &config.mode {
            Mode::Pin { .. } => {
                if limiter.is_blocked(&self.call.caller, now) {
                    self.clear_entry();
                    out.push(Action::Event(IvrEvent::RateLimited));
                    let prompts = &config.prompts;
                    self.close(Action::Hangup, clips([&prompts.too_many, &prompts.goodbye]), out);
                    return;
                }
                // The entry holds ASCII digits only.
                let pin = std::str::from_utf8(&self.entry).unwrap_or_default();
                let found = rules
                    .lookup(pin, &self.call)
                    .map(|(id, rule)| (id, rule.destination.clone(), rule.headers.clone()));
                self.clear_entry();
                match found {
                    Some((rule, destination, headers)) => {
                        out.push(Action::Event(IvrEvent::PinAccepted { rule, attempt }));
                        let route = Action::Route { destination, headers, contact_ref: None, rule: Some(rule) };
                        self.close(route, clips([&config.prompts.connecting]), out);
                    }
                    None => {
                        limiter.record_failure(&self.call.caller, now);
                        self.fail(IvrEvent::PinRejected { attempt }, now, out);
                    }
                }
            }
            Mode::Reference { min_len, then, .. } => {
                if self.entry.len() < *min_len {
                    let len = self.entry.len();
                    self.clear_entry();
                    self.fail(IvrEvent::ReferenceRejected { attempt, len }, now, out);
                    return;
                }
                let reference = String::from_utf8_lossy(&self.entry).into_owned();
                self.clear_entry();
                out.push(Action::Event(IvrEvent::ReferenceCollected { reference: reference.clone() }));
                let route = Action::Route {
                    destination: then.clone(),
                    headers: Vec::new(),
                    contact_ref: Some(reference),
                    rule: None,
                };
                self.close(route, clips([&config.prompts.connecting]), out);
            }
        }
    }

    /// The current attempt failed (at `at`): ask again, or apply `on_failure` after the last.
    fn fail(&mut self, event: IvrEvent, at: Instant, out: &mut Vec<Action>) {
        self.failed += 1;
        self.inter_digit_deadline = None;
        self.overall_deadline = None;
        out.push(Action::Event(event));
        let config = Arc::clone(&self.config);
        let prompts = &config.prompts;
        if self.failed < self.config.max_attempts {
            let clips = clips([&prompts.wrong, &prompts.enter]);
            self.ask(clips, at, out);
            return;
        }
        out.push(Action::Event(IvrEvent::TooManyAttempts { attempts: self.failed }));
        match &config.on_failure {
            Failure::Hangup => {
                let clips = clips([&prompts.too_many, &prompts.goodbye]);
                self.close(Action::Hangup, clips, out);
            }
            Failure::Route(destination) => {
                let route = Action::Route {
                    destination: destination.clone(),
                    headers: Vec::new(),
                    contact_ref: None,
                    rule: None,
                };
                let clips = clips([&prompts.too_many]);
                self.close(route, clips, out);
            }
        }
    }

    /// Starts an attempt: plays `clips`, or with none starts the overall timer at `at`.
    fn ask(&mut self, clips: Vec<String>, at: Instant, out: &mut Vec<Action>) {
        if clips.is_empty() {
            self.overall_deadline = Some(at + self.config.overall_timeout);
        } else {
            out.push(Action::Play(clips));
            self.prompting = true;
        }
    }

    /// Ends the session with `last` once `clips` have played.
    fn close(&mut self, last: Action, clips: Vec<String>, out: &mut Vec<Action>) {
        self.inter_digit_deadline = None;
        self.overall_deadline = None;
        if clips.is_empty() {
            out.push(last);
            self.prompting = false;
            self.phase = Phase::Finished;
        } else {
            out.push(Action::Play(clips));
            self.prompting = true;
            self.phase = Phase::Closing(last);
        }
    }

    fn clear_entry(&mut self) {
        self.entry.fill(0);
        std::hint::black_box(&self.entry);
        self.entry.clear();
    }
}

impl Drop for IvrSession {
    fn drop(&mut self) {
        self.clear_entry();
    }
}

impl fmt::Debug for IvrSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Collecting => "collecting",
            Phase::Closing(_) => "closing",
            Phase::Finished => "finished",
        };
        f.debug_struct("IvrSession")
            .field("ivr", &self.config.name)
            .field("call", &self.call)
            .field("phase", &phase)
            .field("entered", &self.entry.len())
            .field("failed", &self.failed)
            .field("prompting", &self.prompting)
            .field("overall_deadline", &self.overall_deadline)
            .field("inter_digit_deadline", &self.inter_digit_deadline)
            .finish()
    }
}

fn clips<const N: usize>(prompts: [&Option<String>; N]) -> Vec<String> {
    prompts.into_iter().flatten().cloned().collect()
}

fn is_dtmf(key: char) -> bool {
    matches!(key, '0'..='9' | '*' | '#' | 'A'..='D')
}
