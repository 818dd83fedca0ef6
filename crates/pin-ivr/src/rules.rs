//! Dispatch rules: which destination a PIN leads to, for which calls.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use sha2::{Digest, Sha256};

use crate::config::MAX_PIN_LEN;
use crate::types::{CallContext, Destination, RuleId};

/// Rules a table holds by default.
pub const DEFAULT_MAX_RULES: usize = 100_000;
/// Headers one rule may add to the outgoing INVITE.
pub const MAX_HEADERS_PER_RULE: usize = 16;
/// The longest header name, in bytes.
pub const MAX_HEADER_NAME_LEN: usize = 64;
/// The longest header value, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 512;

/// Headers the switch writes itself on an INVITE; a rule may not add them.
const RESERVED_HEADERS: [&str; 14] = [
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Route",
    "Record-Route",
    "Content-Length",
    "Content-Type",
    "Content-Encoding",
    "Authorization",
    "Proxy-Authorization",
];

/// The calls a rule applies to. A rule with a trunk applies only to calls that arrived on
/// that trunk; with a DID, only to calls to that number; with neither, to every call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scope {
    pub trunk: Option<String>,
    pub did: Option<String>,
}

impl Scope {
    /// Every call.
    pub fn any() -> Scope {
        Scope::default()
    }

    /// Calls that arrived on `trunk`.
    pub fn trunk(trunk: &str) -> Scope {
        Scope { trunk: Some(trunk.to_owned()), did: None }
    }

    /// Calls to `did`.
    pub fn did(did: &str) -> Scope {
        Scope { trunk: None, did: Some(did.to_owned()) }
    }

    /// Calls to `did` that arrived on `trunk`.
    pub fn trunk_and_did(trunk: &str, did: &str) -> Scope {
        Scope { trunk: Some(trunk.to_owned()), did: Some(did.to_owned()) }
    }

    /// Whether a call falls within the scope.
    pub fn matches(&self, call: &CallContext) -> bool {
        self.trunk.as_ref().is_none_or(|trunk| call.trunk.as_ref() == Some(trunk))
            && self.did.as_ref().is_none_or(|did| *did == call.did)
    }

    fn check(&self) -> Result<(), String> {
        for (what, value) in [("trunk", &self.trunk), ("DID", &self.did)] {
            if let Some(value) = value {
                if value.is_empty() {
                    return Err(format!("{what} is empty (leave it out to match every {what})"));
                }
                if value.len() > crate::types::MAX_DESTINATION_LEN || value.chars().any(char::is_control) {
                    return Err(format!("{what} {value:?} is too long or holds control characters"));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.trunk, &self.did) {
            (None, None) => f.write_str("any call"),
            (Some(trunk), None) => write!(f, "trunk {trunk:?}"),
            (None, Some(did)) => write!(f, "DID {did:?}"),
            (Some(trunk), Some(did)) => write!(f, "trunk {trunk:?}, DID {did:?}"),
        }
    }
}

/// A PIN, the calls it applies to, where it leads and what to add to the INVITE.
/// Its `Debug` hides the PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1 to 32 digits.
    pub pin: String,
    pub scope: Scope,
    pub destination: Destination,
    /// Headers to add on the outgoing INVITE, e.g. `("X-Room", "4711")`.
    pub headers: Vec<(String, String)>,
}

impl Rule {
    /// A rule for every call, with no headers.
    pub fn new(pin: &str, destination: Destination) -> Rule {
        Rule { pin: pin.to_owned(), scope: Scope::any(), destination, headers: Vec::new() }
    }

    /// The same rule, restricted to `scope`.
    pub fn in_scope(mut self, scope: Scope) -> Rule {
        self.scope = scope;
        self
    }

    /// The same rule, adding one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Rule {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Checks the PIN, the scope, the destination and the headers (what
    /// [`DispatchRules::add`] checks before it looks for a duplicate).
    pub fn check(&self) -> Result<(), RuleError> {
        check_pin(&self.pin)?;
        self.scope.check().map_err(|problem| RuleError::BadScope { problem })?;
        self.destination.check().map_err(|problem| RuleError::BadDestination { problem })?;
        if self.headers.len() > MAX_HEADERS_PER_RULE {
            return Err(RuleError::TooManyHeaders { count: self.headers.len(), max: MAX_HEADERS_PER_RULE });
        }
        for (name, value) in &self.headers {
            check_header(name, value).map_err(|problem| RuleError::BadHeader { name: name.clone(), problem })?;
        }
        Ok(())
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("pin", &format_args!("<{} digits>", self.pin.len()))
            .field("scope", &self.scope)
            .field("destination", &self.destination)
            .field("headers", &self.headers)
            .finish()
    }
}

fn check_pin(pin: &str) -> Result<(), RuleError> {
    if !(1..=MAX_PIN_LEN).contains(&pin.len()) {
        return Err(RuleError::BadPin { problem: format!("must be 1-{MAX_PIN_LEN} digits (got {})", pin.len()) });
    }
    if !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::BadPin { problem: "must hold only the digits 0-9".to_owned() });
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    // RFC 3261 §25.1 token characters.
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN || !name.chars().all(token) {
        return Err(format!("the name must be 1-{MAX_HEADER_NAME_LEN} token characters (letters, digits, -.!%*_+`'~)"));
    }
    if name.len() == 1 {
        return Err("a one-letter name is a compact header form, which the switch writes itself".to_owned());
    }
    if RESERVED_HEADERS.iter().any(|reserved| reserved.eq_ignore_ascii_case(name)) {
        return Err("the switch writes this header itself".to_owned());
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(format!("the value is longer than {MAX_HEADER_VALUE_LEN} bytes"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("the value holds a line break or another control character".to_owned());
    }
    Ok(())
}

/// Why a rule was refused. No message shows a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Another rule has the same PIN in exactly the same scope.
    #[error("another rule ({existing}) has this PIN for {scope}")]
    DuplicatePin { scope: Scope, existing: RuleId },
    #[error("PIN {problem}")]
    BadPin { problem: String },
    #[error("scope: {problem}")]
    BadScope { problem: String },
    #[error("destination {problem}")]
    BadDestination { problem: String },
    #[error("header {name:?}: {problem}")]
    BadHeader { name: String, problem: String },
    #[error("{count} headers; a rule may add at most {max}")]
    TooManyHeaders { count: usize, max: usize },
    #[error("the dispatch rules are full ({max} rules)")]
    Full { max: usize },
}

/// The dispatch rules: PIN → destination, each PIN unique within its scope.
///
/// Rules are indexed by SHA-256(secret salt ‖ scope ‖ PIN), the salt drawn from the OS
/// when the table is made, so a lookup hashes the entered PIN once per candidate scope
/// (at most four) and reads one map entry each, instead of comparing it with every
/// rule; a hit is then confirmed by comparing the stored PIN in constant time
/// ([`constant_time_eq`]). A lookup's time therefore does not depend on how many leading
/// digits the entry shares with a stored PIN.
///
/// **Specificity**: for a call on trunk T to DID D, the scopes tried are, in order,
/// (T, D), (any trunk, D), (T, any DID), (any, any); the first that holds the PIN wins.
/// The DID outranks the trunk because a number is narrower than the trunk that carries
/// it (and many numbers share one trunk).
///
/// Bounded by `max_rules` (default 100,000): an add past it is refused with
/// [`RuleError::Full`].
pub struct DispatchRules {
    salt: [u8; 32],
    index: HashMap<[u8; 32], RuleId>,
    rules: BTreeMap<RuleId, Rule>,
    next_id: u64,
    max_rules: usize,
}

impl DispatchRules {
    /// An empty table holding at most `max_rules` rules.
    pub fn new(max_rules: usize) -> DispatchRules {
        let mut salt = [0u8; 32];
        rand::fill(&mut salt[..]);
        DispatchRules { salt, index: HashMap::new(), rules: BTreeMap::new(), next_id: 1, max_rules }
    }

    /// Checks the rule ([`Rule::check`]) and adds it. A PIN already used in exactly the
    /// same scope is refused ([`RuleError::DuplicatePin`]); the same PIN in another scope
    /// is allowed (the most specific scope wins at lookup).
    pub fn add(&mut self, rule: Rule) -> Result<RuleId, RuleError> {
        rule.check()?;
        let key = self.key(&rule.scope, &rule.pin);
        if let Some(&existing) = self.index.get(&key) {
            return Err(RuleError::DuplicatePin { scope: rule.scope, existing });
        }
        if self.rules.len() >= self.max_rules {
            return Err(RuleError::Full { max: self.max_rules });
        }
        let id = RuleId(self.next_id);
        self.next_id += 1;
        self.index.insert(key, id);
        self.rules.insert(id, rule);
        Ok(id)
    }

    /// Removes a rule; None if there is no such rule.
    pub fn remove(&mut self, id: RuleId) -> Option<Rule> {
        let rule = self.rules.remove(&id)?;
        let key = self.key(&rule.scope, &rule.pin);
        self.index.remove(&key);
        Some(rule)
    }

    /// Removes the rule with this PIN in exactly this scope.
    pub fn remove_by_pin(&mut self, pin: &str, scope: &Scope) -> Option<(RuleId, Rule)> {
        let key = self.key(scope, pin);
        let id = *self.index.get(&key)?;
        if !constant_time_eq(self.rules.get(&id)?.pin.as_bytes(), pin.as_bytes()) {
            return None;
        }
        self.remove(id).map(|rule| (id, rule))
    }

    pub fn get(&self, id: RuleId) -> Option<&Rule> {
        self.rules.get(&id)
    }

    /// Every rule, oldest first (for the operator: the PINs are shown).
    pub fn list(&self) -> impl Iterator<Item = (RuleId, &Rule)> {
        self.rules.iter().map(|(id, rule)| (*id, rule))
    }

    /// The rule this PIN leads to for this call: the most specific scope that matches
    /// the call and holds the PIN (see the type's docs).
    pub fn lookup(&self, pin: &str, call: &CallContext) -> Option<(RuleId, &Rule)> {
        if check_pin(pin).is_err() {
            return None;
        }
        let trunk = call.trunk.as_deref();
        let did = Some(call.did.as_str());
        let candidates =
            [(trunk.is_some(), trunk, did), (true, None, did), (trunk.is_some(), trunk, None), (true, None, None)];
        // Hash every candidate first, so that the work done does not depend on where
        // (or whether) the PIN is found.
        let keys = candidates.map(|(applies, trunk, did)| applies.then(|| self.key_parts(trunk, did, pin.as_bytes())));
        keys.iter().flatten().find_map(|key| {
            let id = *self.index.get(key)?;
            let rule = self.rules.get(&id)?;
            constant_time_eq(rule.pin.as_bytes(), pin.as_bytes()).then_some((id, rule))
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn max_rules(&self) -> usize {
        self.max_rules
    }

    fn key(&self, scope: &Scope, pin: &str) -> [u8; 32] {
        self.key_parts(scope.trunk.as_deref(), scope.did.as_deref(), pin.as_bytes())
    }

    /// SHA-256(salt ‖ trunk ‖ DID ‖ PIN), each optional part as a presence byte and,
    /// when present, its length (u32, big-endian) and bytes, so no two scopes collide.
    fn key_parts(&self, trunk: Option<&str>, did: Option<&str>, pin: &[u8]) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.salt);
        for part in [trunk, did] {
            match part {
                None => hash.update([0u8]),
                Some(part) => {
                    hash.update([1u8]);
                    hash.update((part.len() as u32).to_be_bytes());
                    hash.update(part.as_bytes());
                }
            }
        }
        hash.update(pin);
        hash.finalize().into()
    }
}

impl Default for DispatchRules {
    /// An empty table of at most 100,000 rules.
    fn default() -> DispatchRules {
        DispatchRules::new(DEFAULT_MAX_RULES)
    }
}

impl fmt::Debug for DispatchRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchRules").field("rules", &self.rules.len()).field("max_rules", &self.max_rules).finish()
    }
}

/// Whether two byte strings are equal, in a time that depends on their length only, not
/// on where they first differ. Strings of different lengths are unequal at once (a
/// length is not a secret here: the caller knows how many digits they typed).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}
