//! What goes in (the call's facts) and what comes out (actions and events).

use std::fmt;

/// What the IVR knows of the call it answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The caller's number as the switch trusts it (the identity of a trunk's caller, the
    /// user of a registered endpoint). The [`AttemptLimiter`](crate::AttemptLimiter)
    /// counts failed PINs by it; callers without one share the empty string.
    pub caller: String,
    /// The trunk the call arrived on; None for a call from a registered endpoint.
    pub trunk: Option<String>,
    /// The number dialled (the DID) that reached the IVR.
    pub did: String,
}

impl CallContext {
    /// A call from `caller` to `did`, not from a trunk.
    pub fn new(caller: &str, did: &str) -> CallContext {
        CallContext { caller: caller.to_owned(), trunk: None, did: did.to_owned() }
    }

    /// The same call, arrived on `trunk`.
    pub fn on_trunk(mut self, trunk: &str) -> CallContext {
        self.trunk = Some(trunk.to_owned());
        self
    }
}

/// Where a call goes after the IVR: a matching dispatch rule's target, a reference
/// IVR's `then`, or an IVR's fallback after the last failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// An ACD queue, by name.
    Queue(String),
    /// A configured endpoint (its registered contacts ring), by id.
    Endpoint(String),
    /// A number dialled out through a trunk.
    Trunk { trunk: String, number: String },
    /// A SIP or SIPS URI, called directly.
    Uri(String),
}

/// The longest name, number or URI a destination may hold, in bytes.
pub const MAX_DESTINATION_LEN: usize = 1024;

impl Destination {
    /// Checks the destination's own form (names not empty, no whitespace or control
    /// characters, a URI with the `sip:` or `sips:` scheme); whether a queue, endpoint
    /// or trunk of that name exists is the switch's to check. The error reads after
    /// "destination".
    pub fn check(&self) -> Result<(), String> {
        fn plain(what: &str, value: &str) -> Result<(), String> {
            if value.is_empty() {
                return Err(format!("{what} is empty"));
            }
            if value.len() > MAX_DESTINATION_LEN {
                return Err(format!("{what} is longer than {MAX_DESTINATION_LEN} bytes"));
            }
            if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{what} {value:?} holds whitespace or control characters"));
            }
            Ok(())
        }
        match self {
            Destination::Queue(name) => plain("queue name", name),
            Destination::Endpoint(id) => plain("endpoint id", id),
            Destination::Trunk { trunk, number } => {
                plain("trunk name", trunk)?;
                plain("trunk number", number)
            }
            Destination::Uri(uri) => {
                plain("URI", uri)?;
                match uri.split_once(':') {
                    Some((scheme, rest))
                        if (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"))
                            && !rest.is_empty() =>
                    {
                        Ok(())
                    }
                    _ => Err(format!("URI {uri:?} is not a sip: or sips: URI")),
                }
            }
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Queue(name) => write!(f, "queue {name:?}"),
            Destination::Endpoint(id) => write!(f, "endpoint {id:?}"),
            Destination::Trunk { trunk, number } => write!(f, "number {number:?} on trunk {trunk:?}"),
            Destination::Uri(uri) => write!(f, "URI {uri:?}"),
        }
    }
}

/// A dispatch rule's handle, given by [`DispatchRules::add`](crate::DispatchRules::add);
/// never reused within one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}", self.0)
    }
}

/// A decision for the switch to carry out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Play these clips, in order, to the caller (names of files in `sounds/<language>/`,
    /// without the extension). Replaces whatever plays. The switch reports the end of
    /// the last clip with [`IvrSession::prompt_finished`](crate::IvrSession::prompt_finished).
    Play(Vec<String>),
    /// Barge-in: stop the prompt that plays. Its end is not to be reported.
    StopPrompt,
    /// Send the caller on, in the same call (no hang-up). The session is over.
    Route {
        destination: Destination,
        /// Headers to add on the outgoing INVITE (a rule's, e.g. the room id).
        headers: Vec<(String, String)>,
        /// The reference a reference-mode IVR collected, to attach to the call.
        contact_ref: Option<String>,
        /// The dispatch rule that matched; None for a reference or a fallback.
        rule: Option<RuleId>,
    },
    /// Hang up; the goodbye prompt, if any, has played. The session is over.
    Hangup,
    /// For the event stream and the CDR.
    Event(IvrEvent),
}

/// What happened in a session, for the event stream and the CDR. PINs never appear
/// in events; a collected reference does (it is not a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IvrEvent {
    /// The entered PIN matched this rule, on this attempt (1-based).
    PinAccepted { rule: RuleId, attempt: u32 },
    /// The entered PIN matched no rule for this call.
    PinRejected { attempt: u32 },
    /// A reference shorter than the IVR's `min_len` was ended with the terminator.
    ReferenceRejected { attempt: u32, len: usize },
    /// The caller took too long: the attempt failed.
    Timeout { attempt: u32, kind: TimeoutKind },
    /// The last allowed attempt failed; the IVR's `on_failure` applies.
    TooManyAttempts { attempts: u32 },
    /// A reference-mode IVR collected this reference.
    ReferenceCollected { reference: String },
    /// The caller has failed too many PINs lately (across calls); this entry was not
    /// looked up and the call ends.
    RateLimited,
}

impl IvrEvent {
    /// The event's name on the event stream (`pin_accepted`, `pin_rejected`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            IvrEvent::PinAccepted { .. } => "pin_accepted",
            IvrEvent::PinRejected { .. } => "pin_rejected",
            IvrEvent::ReferenceRejected { .. } => "reference_rejected",
            IvrEvent::Timeout { .. } => "timeout",
            IvrEvent::TooManyAttempts { .. } => "too_many_attempts",
            IvrEvent::ReferenceCollected { .. } => "reference_collected",
            IvrEvent::RateLimited => "rate_limited",
        }
    }
}

/// Which timer ended an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// No key within `inter_digit_timeout` of the last one.
    InterDigit,
    /// No complete entry within `overall_timeout` of the end of the prompt.
    Overall,
}
