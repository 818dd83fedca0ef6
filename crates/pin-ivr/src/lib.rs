//! `pin-ivr`: the digit-collection IVR and its dispatch rules as pure logic: no sockets,
//! no clock, no async, no threads.
//!
//! Callers dial a number, hear a prompt, type a PIN (or an account number) on their
//! keypad, and are routed, in the same call, to the destination that PIN belongs to.
//!
//! The switch makes one [`IvrSession`] per call that its dial plan sends to an IVR
//! ([`IvrSession::new`] answers with the welcome and "enter" prompts), reports what
//! happens, each time with the `now` it happened at ([`IvrSession::digit`],
//! [`IvrSession::prompt_finished`]), calls [`IvrSession::handle_timeout`] when
//! [`IvrSession::poll_timeout`] passes, and carries out the [`Action`]s returned, in
//! order: play clips, stop the prompt, route, hang up, plus [`IvrEvent`]s for the event
//! stream and the CDR. One [`DispatchRules`] table and one [`AttemptLimiter`] serve all
//! sessions; the switch lends them to [`IvrSession::digit`].
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use pin_ivr::*;
//!
//! let mut rules = DispatchRules::default();
//! let room = Rule::new("4711", Destination::Queue("support".into())).with_header("X-Room", "42");
//! let id = rules.add(room).unwrap();
//! let mut limiter = AttemptLimiter::default();
//! let config = Arc::new(IvrConfig::pin("main"));
//! config.validate().unwrap();
//!
//! let t0 = Instant::now();
//! let call = CallContext::new("+15550100", "+15550199").on_trunk("carrier");
//! let (mut session, actions) = IvrSession::new(config, call, t0);
//! assert_eq!(actions, [Action::Play(vec!["ivr-welcome".into(), "ivr-enter-pin".into()])]);
//! let t1 = t0 + Duration::from_secs(4);
//! assert_eq!(session.prompt_finished(t1), []);
//! assert_eq!(session.poll_timeout(), Some(t1 + Duration::from_secs(20)));
//! for key in "4711#".chars() {
//!     let _ = session.digit(key, &rules, &mut limiter, t1);
//! }
//! let actions = session.prompt_finished(t1 + Duration::from_secs(1)); // "connecting" played
//! assert_eq!(
//!     actions,
//!     [Action::Route {
//!         destination: Destination::Queue("support".into()),
//!         headers: vec![("X-Room".into(), "42".into())],
//!         contact_ref: None,
//!         rule: Some(id),
//!     }]
//! );
//! ```
//!
//! # A session
//!
//! 1. **Start**: `Play([welcome, enter])`. Timers start when the prompt ends
//!    (`prompt_finished`), not when it starts.
//! 2. **Keys**: a key during a prompt stops it (`StopPrompt`, barge-in) and counts as
//!    typed. Digits fill the entry. The entry is complete:
//!    - PIN mode: at `length` digits, or earlier at the terminator (`#` by default),
//!      whichever comes first; with no terminator, only at `length` digits;
//!    - reference mode: at the terminator with at least `min_len` digits, or at
//!      `max_len` digits.
//!
//!    `*` (unless it is the terminator) clears the digits typed so far and the caller
//!    starts over within the same attempt: the attempt's overall timer keeps running, so
//!    no caller can hold a session forever. A terminator with nothing typed is ignored,
//!    and does not stop a prompt (a habitual `#` after a full-length PIN must not cut
//!    the next prompt short). `A`-`D` only stop a prompt.
//! 3. **Timers** (each fires at its deadline exactly, `now >= deadline`):
//!    - *inter-digit*: `inter_digit_timeout` after each digit, no next key → the
//!      attempt fails (`Timeout { kind: InterDigit }`);
//!    - *overall*: `overall_timeout` after the end of the "enter" prompt (or the key
//!      that stopped it), no complete entry → the attempt fails (`Timeout { kind:
//!      Overall }`).
//!
//!    A timeout does not submit what was typed: an unfinished entry is a failed attempt.
//! 4. **A complete PIN**: if the caller is blocked by the [`AttemptLimiter`], the entry
//!    is not looked up: `rate_limited`, `Play([too_many, goodbye])`, then `Hangup`.
//!    Otherwise it is looked up in the [`DispatchRules`] for this call: found →
//!    `pin_accepted`, `Play([connecting])`, then `Route { destination, headers, rule }`;
//!    not found → `pin_rejected`, and the failure counts against the caller.
//!    **A complete reference**: `reference_collected`, `Play([connecting])`, then
//!    `Route { then, contact_ref }`; one shorter than `min_len` is a failed attempt.
//! 5. **A failed attempt**: `Play([wrong, enter])` and a new attempt, until
//!    `max_attempts` have failed: then `too_many_attempts` and `on_failure`:
//!    `Play([too_many, goodbye])` then `Hangup`, or `Play([too_many])` then `Route` to the
//!    fallback destination.
//!
//! The closing `Route` or `Hangup` comes on the `prompt_finished` of the last prompt;
//! keys during that prompt are ignored. A prompt left out of [`Prompts`] (None) is
//! skipped; with nothing to play, what would follow its end happens at once. A session
//! lasts at most the prompts plus `max_attempts` × `overall_timeout`, provided the
//! switch reports the end of every prompt (a clip that fails to play has ended).
//!
//! # Defaults
//!
//! | option | default |
//! | --- | --- |
//! | mode | PIN of 10 digits (1-32), terminator `#` (or `*`, or none) |
//! | reference mode | 1 to 20 digits (at most 64), terminator `#` |
//! | inter-digit timeout | 5 s |
//! | overall timeout | 20 s per attempt, from the end of the "enter" prompt |
//! | max attempts | 5 (1-20), the first included |
//! | on failure | play "too many", "goodbye", hang up |
//! | prompts | `ivr-welcome`, `ivr-enter-pin` (`ivr-enter-reference`), `ivr-wrong-pin`, `ivr-too-many`, `goodbye`, `ivr-connecting` |
//! | dispatch rules | at most 100,000 |
//! | attempt limiter | 10 failed PINs per caller number per 10 minutes (sliding), 100,000 callers tracked |
//!
//! # Dispatch rules
//!
//! A [`Rule`] maps a PIN (1-32 digits) to a [`Destination`] (a queue, an endpoint, a
//! number on a trunk, a SIP URI), optionally restricted to calls that arrived on a trunk
//! and/or dialled a DID ([`Scope`]), optionally with headers to add on the outgoing
//! INVITE. Rules come from the configuration and are added and removed at runtime
//! ([`DispatchRules::add`], [`DispatchRules::remove`], [`DispatchRules::remove_by_pin`]).
//! A PIN is unique within its scope ([`RuleError::DuplicatePin`] names the scope, never
//! the PIN); the most specific matching scope wins: trunk and DID, then DID, then trunk,
//! then any call. A rule's PIN longer than a PIN IVR's `length` cannot be entered there.
//!
//! PINs are secrets: lookups go through a salted SHA-256 index and a constant-time
//! comparison ([`constant_time_eq`]), never a scan; events and `Debug` output never show
//! a PIN or a PIN entry (only [`DispatchRules::list`] and [`DispatchRules::get`] do, for
//! the operator). The [`AttemptLimiter`] bounds how fast PINs can be guessed across
//! calls (see its docs for the numbers).
//!
//! # Bounds
//!
//! Rules: `max_rules`. Limiter: `max_callers` callers × `max_failures` instants. A
//! session: one entry of at most 64 digits and two deadlines.

mod config;
mod limiter;
mod rules;
mod session;
mod types;

pub use config::{
    ConfigError, DEFAULT_INTER_DIGIT_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_OVERALL_TIMEOUT, DEFAULT_PIN_LENGTH,
    DEFAULT_REFERENCE_MAX_LEN, Failure, IvrConfig, MAX_ATTEMPTS_LIMIT, MAX_CLIP_NAME_LEN, MAX_PIN_LEN,
    MAX_REFERENCE_LEN, MAX_TIMEOUT, Mode, Prompts,
};
pub use limiter::{
    AttemptLimiter, DEFAULT_MAX_CALLERS, DEFAULT_MAX_FAILURES, DEFAULT_WINDOW, LimiterConfig, MAX_CALLER_KEY_LEN,
    MAX_FAILURES_LIMIT,
};
pub use rules::{
    DEFAULT_MAX_RULES, DispatchRules, MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN, MAX_HEADERS_PER_RULE, Rule, RuleError,
    Scope, constant_time_eq,
};
pub use session::IvrSession;
pub use types::{Action, CallContext, Destination, IvrEvent, MAX_DESTINATION_LEN, RuleId, TimeoutKind};
