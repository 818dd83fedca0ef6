//! Configuration: plain structs with defaults, filled by the switch's TOML layer,
//! and their validation.

use std::time::Duration;

use crate::types::Destination;

/// Digits a PIN has by default.
pub const DEFAULT_PIN_LENGTH: usize = 10;
/// The longest PIN, in an IVR's `length` and in a dispatch rule.
pub const MAX_PIN_LEN: usize = 32;
/// The longest reference a reference-mode IVR may collect (`max_len`).
pub const MAX_REFERENCE_LEN: usize = 64;
/// A reference-mode IVR's default `max_len`.
pub const DEFAULT_REFERENCE_MAX_LEN: usize = 20;
/// Time allowed between two keys.
pub const DEFAULT_INTER_DIGIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed from the end of the "enter" prompt to a complete entry.
pub const DEFAULT_OVERALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts a caller has (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The most attempts an IVR may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 20;
/// The longest inter-digit or overall timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest clip name, in bytes.
pub const MAX_CLIP_NAME_LEN: usize = 128;

/// One IVR: what it collects, what it says, how long it waits, how often it asks again,
/// and what happens after the last failure. Which numbers reach it is the dial plan's
/// business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IvrConfig {
    /// Names the IVR in errors, events and the dial plan.
    pub name: String,
    pub mode: Mode,
    pub prompts: Prompts,
    /// Time allowed between two keys; past it, the attempt fails. Default 5 s.
    pub inter_digit_timeout: Duration,
    /// Time allowed from the end of the "enter" prompt (or the key that stopped it) to a
    /// complete entry; past it, the attempt fails. Default 20 s.
    pub overall_timeout: Duration,
    /// Attempts a caller has, the first included; the last failure applies `on_failure`.
    /// Default 5.
    pub max_attempts: u32,
    /// After the last failed attempt. Default: hang up.
    pub on_failure: Failure,
}

impl IvrConfig {
    /// A PIN IVR with the defaults: 10 digits, `#` ends early, the standard prompts.
    pub fn pin(name: &str) -> IvrConfig {
        IvrConfig {
            name: name.to_owned(),
            mode: Mode::default(),
            prompts: Prompts::pin(),
            inter_digit_timeout: DEFAULT_INTER_DIGIT_TIMEOUT,
            overall_timeout: DEFAULT_OVERALL_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            on_failure: Failure::Hangup,
        }
    }

    /// A reference IVR with the defaults (1 to 20 digits ended by `#`) that sends the
    /// caller to `then` with the reference attached.
    pub fn reference(name: &str, then: Destination) -> IvrConfig {
        IvrConfig { mode: Mode::reference(then), prompts: Prompts::reference(), ..IvrConfig::pin(name) }
    }

    /// Checks every value; a session may only be started from a validated config. The
    /// error names the IVR and the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        let bad = |problem: String| ConfigError::Invalid { ivr: self.name.clone(), problem };
        match &self.mode {
            Mode::Pin { length, terminator } => {
                if !(1..=MAX_PIN_LEN).contains(length) {
                    return Err(bad(format!("pin length must be 1-{MAX_PIN_LEN} (got {length})")));
                }
                if let Some(key) = terminator
                    && !TERMINATORS.contains(key)
                {
                    return Err(bad(format!("pin terminator must be '#' or '*' (got {key:?})")));
                }
            }
            Mode::Reference { min_len, max_len, terminator, then } => {
                if !(1..=MAX_REFERENCE_LEN).contains(max_len) {
                    return Err(bad(format!("reference max_len must be 1-{MAX_REFERENCE_LEN} (got {max_len})")));
                }
                if !(1..=*max_len).contains(min_len) {
                    return Err(bad(format!("reference min_len must be 1-{max_len}, the max_len (got {min_len})")));
                }
                if !TERMINATORS.contains(terminator) {
                    return Err(bad(format!("reference terminator must be '#' or '*' (got {terminator:?})")));
                }
                then.check().map_err(|problem| bad(format!("reference then: destination {problem}")))?;
            }
        }
        for (field, timeout) in
            [("inter_digit_timeout", self.inter_digit_timeout), ("overall_timeout", self.overall_timeout)]
        {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(bad(format!("{field} must be more than 0 and at most {MAX_TIMEOUT:?} (got {timeout:?})")));
            }
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(bad(format!("max_attempts must be 1-{MAX_ATTEMPTS_LIMIT} (got {})", self.max_attempts)));
        }
        if let Failure::Route(destination) = &self.on_failure {
            destination.check().map_err(|problem| bad(format!("on_failure: destination {problem}")))?;
        }
        for (field, clip) in self.prompts.fields() {
            if let Some(clip) = clip {
                check_clip(clip).map_err(|problem| bad(format!("prompt {field}: {problem}")))?;
            }
        }
        Ok(())
    }

    /// The key that ends an entry early, if any.
    pub(crate) fn terminator(&self) -> Option<char> {
        match &self.mode {
            Mode::Pin { terminator, .. } => *terminator,
            Mode::Reference { terminator, .. } => Some(*terminator),
        }
    }
}

/// The keys that may end an entry.
const TERMINATORS: [char; 2] = ['#', '*'];

/// What the IVR collects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A PIN, looked up in the [`DispatchRules`](crate::DispatchRules). The entry is
    /// complete at `length` digits, or earlier at the terminator, whichever comes first;
    /// without a terminator only `length` digits complete it.
    Pin { length: usize, terminator: Option<char> },
    /// An account or reference number of `min_len` to `max_len` digits, ended by the
    /// terminator (or complete at `max_len` digits), attached to the call as
    /// `contact_ref`; the caller then goes to `then` (typically a queue).
    Reference { min_len: usize, max_len: usize, terminator: char, then: Destination },
}

impl Default for Mode {
    /// A 10-digit PIN; `#` ends it early.
    fn default() -> Mode {
        Mode::Pin { length: DEFAULT_PIN_LENGTH, terminator: Some('#') }
    }
}

impl Mode {
    /// Reference mode with the defaults: 1 to 20 digits, ended by `#`.
    pub fn reference(then: Destination) -> Mode {
        Mode::Reference { min_len: 1, max_len: DEFAULT_REFERENCE_MAX_LEN, terminator: '#', then }
    }
}

/// The clips the IVR plays (names in `sounds/<language>/`, without the extension).
/// None leaves a prompt out; an IVR with no "enter" prompt starts its timers at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompts {
    /// Played once, before the first "enter" prompt.
    pub welcome: Option<String>,
    /// Asks for the entry, at the start of every attempt.
    pub enter: Option<String>,
    /// After a failed attempt that is not the last (before `enter` again).
    pub wrong: Option<String>,
    /// After the last failed attempt, and to a rate-limited caller.
    pub too_many: Option<String>,
    /// Before the IVR hangs up.
    pub goodbye: Option<String>,
    /// After a good entry, before the caller is routed.
    pub connecting: Option<String>,
}

impl Prompts {
    /// `ivr-welcome`, `ivr-enter-pin`, `ivr-wrong-pin`, `ivr-too-many`, `goodbye`,
    /// `ivr-connecting`.
    pub fn pin() -> Prompts {
        Prompts {
            welcome: Some("ivr-welcome".to_owned()),
            enter: Some("ivr-enter-pin".to_owned()),
            wrong: Some("ivr-wrong-pin".to_owned()),
            too_many: Some("ivr-too-many".to_owned()),
            goodbye: Some("goodbye".to_owned()),
            connecting: Some("ivr-connecting".to_owned()),
        }
    }

    /// As [`Prompts::pin`], but `ivr-enter-reference` asks for the entry.
    pub fn reference() -> Prompts {
        Prompts { enter: Some("ivr-enter-reference".to_owned()), ..Prompts::pin() }
    }

    /// No prompt at all.
    pub fn none() -> Prompts {
        Prompts { welcome: None, enter: None, wrong: None, too_many: None, goodbye: None, connecting: None }
    }

    fn fields(&self) -> [(&'static str, Option<&String>); 6] {
        [
            ("welcome", self.welcome.as_ref()),
            ("enter", self.enter.as_ref()),
            ("wrong", self.wrong.as_ref()),
            ("too_many", self.too_many.as_ref()),
            ("goodbye", self.goodbye.as_ref()),
            ("connecting", self.connecting.as_ref()),
        ]
    }
}

impl Default for Prompts {
    fn default() -> Prompts {
        Prompts::pin()
    }
}

/// What happens after the last failed attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Failure {
    /// Play "too many attempts" and "goodbye", then hang up.
    #[default]
    Hangup,
    /// Play "too many attempts", then send the caller here (an operator, a queue).
    Route(Destination),
}

/// A clip name: letters, digits, `-`, `_`, `.` and `/` (for a subfolder such as
/// `digits/1`), relative, with no `..` step.
fn check_clip(clip: &str) -> Result<(), String> {
    if clip.is_empty() {
        return Err("clip name is empty".to_owned());
    }
    if clip.len() > MAX_CLIP_NAME_LEN {
        return Err(format!("clip name is longer than {MAX_CLIP_NAME_LEN} bytes"));
    }
    if !clip.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')) {
        return Err(format!("clip name {clip:?} may hold only letters, digits, '-', '_', '.' and '/'"));
    }
    if clip.starts_with('/') || clip.split('/').any(|step| step.is_empty() || step == "..") {
        return Err(format!("clip name {clip:?} must be a relative path with no empty or '..' step"));
    }
    Ok(())
}

/// A configuration a session cannot run; the message names the IVR and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("an ivr has an empty name")]
    EmptyName,
    #[error("ivr {ivr:?}: {problem}")]
    Invalid { ivr: String, problem: String },
    #[error("ivr attempt limiter: {0}")]
    Limiter(String),
}
