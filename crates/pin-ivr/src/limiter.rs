//! The attempt limiter: failed PINs per caller, across calls, so that PINs cannot be
//! guessed quickly by calling again and again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::ConfigError;

/// Failed PINs a caller may have within the window; the next entry is refused.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// How long a failed PIN counts against its caller.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// Callers tracked at once; past it, the caller whose last failure is oldest is forgotten.
pub const DEFAULT_MAX_CALLERS: usize = 100_000;
/// The most failures per window the limiter may allow (it remembers that many per caller).
pub const MAX_FAILURES_LIMIT: u32 = 1000;
/// Bytes of a caller's number the limiter keys on; a longer one is cut here.
pub const MAX_CALLER_KEY_LEN: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failed PINs a caller may have within `window`; at that many the caller's next
    /// entry is refused unseen. Default 10.
    pub max_failures: u32,
    /// How long a failure counts (a sliding window). Default 10 minutes.
    pub window: Duration,
    /// Callers tracked at once. Default 100,000.
    pub max_callers: usize,
}

impl Default for LimiterConfig {
    fn default() -> LimiterConfig {
        LimiterConfig { max_failures: DEFAULT_MAX_FAILURES, window: DEFAULT_WINDOW, max_callers: DEFAULT_MAX_CALLERS }
    }
}

impl LimiterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_FAILURES_LIMIT).contains(&self.max_failures) {
            return Err(ConfigError::Limiter(format!(
                "max_failures must be 1-{MAX_FAILURES_LIMIT} (got {})",
                self.max_failures
            )));
        }
        if self.window.is_zero() {
            return Err(ConfigError::Limiter("window must be more than 0".to_owned()));
        }
        if self.max_callers == 0 {
            return Err(ConfigError::Limiter("max_callers must be at least 1".to_owned()));
        }
        Ok(())
    }
}

/// Failed PIN attempts per caller number, shared by all sessions of all PIN IVRs.
///
/// A caller with `max_failures` failures in the last `window` (default: 10 in 10
/// minutes) is *blocked*: its next complete entry is answered `rate_limited` without
/// being looked up, and the call ends. Each failure stops counting `window` after it
/// happened (a sliding window), so a blocked caller may try once more as soon as its
/// oldest failure in the window ages out. Timeouts are not failures (no PIN was tried),
/// and a right PIN does not wipe the count (else a caller who knows one PIN could keep
/// guessing others). At 10 per 10 minutes, guessing one 4-digit PIN out of 10,000
/// takes on average about 3.5 days from one number; a 10-digit PIN, millennia.
///
/// At most `max_callers` callers (default 100,000) are tracked; the one whose last
/// failure is oldest is forgotten to make room. Callers with no failure left in the
/// window are dropped as the limiter goes. Memory: at most `max_callers` ×
/// `max_failures` instants plus the numbers (cut to 128 bytes), some 35 MB at the
/// defaults when full.
///
/// The count trusts the caller number the switch gives: a caller who can vary it (an
/// untrusted trunk) escapes the per-number limit, and all anonymous callers share one.
#[derive(Debug)]
pub struct AttemptLimiter {
    config: LimiterConfig,
    callers: HashMap<String, Failures>,
    /// Callers by their last failure (with a tiebreak), oldest first: what eviction and
    /// pruning read.
    by_last: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

#[derive(Debug)]
struct Failures {
    /// The latest failures, at most `max_failures`, oldest first.
    at: VecDeque<Instant>,
    /// This caller's key in `by_last`.
    order: (Instant, u64),
}

impl AttemptLimiter {
    /// A limiter with this config, which should have passed [`LimiterConfig::validate`]
    /// (a `max_failures` of 0 would block everyone; it is taken as 1).
    pub fn new(config: LimiterConfig) -> AttemptLimiter {
        let config = LimiterConfig {
            max_failures: config.max_failures.clamp(1, MAX_FAILURES_LIMIT),
            max_callers: config.max_callers.max(1),
            ..config
        };
        AttemptLimiter { config, callers: HashMap::new(), by_last: BTreeMap::new(), seq: 0 }
    }

    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Whether the caller's next entry is to be refused unseen.
    pub fn is_blocked(&self, caller: &str, now: Instant) -> bool {
        self.failures(caller, now) >= self.config.max_failures as usize
    }

    /// The caller's failures that still count at `now`.
    pub fn failures(&self, caller: &str, now: Instant) -> usize {
        let Some(entry) = self.callers.get(caller_key(caller)) else { return 0 };
        entry.at.iter().filter(|&&at| self.counts(at, now)).count()
    }

    /// Counts a failed PIN against the caller.
    pub fn record_failure(&mut self, caller: &str, now: Instant) {
        self.prune(now);
        let key = caller_key(caller);
        self.seq += 1;
        let order = (now, self.seq);
        if let Some(entry) = self.callers.get_mut(key) {
            if entry.at.len() >= self.config.max_failures as usize {
                entry.at.pop_front();
            }
            entry.at.push_back(now);
            let old = std::mem::replace(&mut entry.order, order);
            self.by_last.remove(&old);
            self.by_last.insert(order, key.to_owned());
            return;
        }
        if self.callers.len() >= self.config.max_callers
            && let Some((_, oldest)) = self.by_last.pop_first()
        {
            self.callers.remove(&oldest);
        }
        self.callers.insert(key.to_owned(), Failures { at: VecDeque::from([now]), order });
        self.by_last.insert(order, key.to_owned());
    }

    /// Forgets a caller's failures (an operator unblocking it). Whether it had any.
    pub fn forget(&mut self, caller: &str) -> bool {
        let Some(entry) = self.callers.remove(caller_key(caller)) else { return false };
        self.by_last.remove(&entry.order);
        true
    }

    /// Drops the callers whose failures have all aged out of the window. Recording a
    /// failure does this too; a switch may call it now and then to free memory sooner.
    pub fn prune(&mut self, now: Instant) {
        while let Some((&(last, _), _)) = self.by_last.first_key_value() {
            if self.counts(last, now) {
                break;
            }
            if let Some((_, caller)) = self.by_last.pop_first() {
                self.callers.remove(&caller);
            }
        }
    }

    /// Callers tracked.
    pub fn tracked(&self) -> usize {
        self.callers.len()
    }

    /// A failure at `at` still counts at `now` until `window` has passed.
    fn counts(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.config.window
    }
}

impl Default for AttemptLimiter {
    fn default() -> AttemptLimiter {
        AttemptLimiter::new(LimiterConfig::default())
    }
}

/// The caller's number, cut to [`MAX_CALLER_KEY_LEN`] bytes at a character boundary.
fn caller_key(caller: &str) -> &str {
    if caller.len() <= MAX_CALLER_KEY_LEN {
        return caller;
    }
    let mut end = MAX_CALLER_KEY_LEN;
    while !caller.is_char_boundary(end) {
        end -= 1;
    }
    &caller[..end]
}
