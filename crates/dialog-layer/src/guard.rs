//! Makes password guessing slow: after a few failed authentications from one
//! source, its next challenges are held back by a growing delay; after more, the
//! source is refused outright for a while. IPv6 sources count per /64, since
//! one host can use any address of its prefix. A success forgives nothing: one
//! valid account must not let an attacker reset the count for guessing others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// Failures within `window` that cost nothing.
    pub free_failures: u32,
    /// Each failure beyond the free ones delays the next challenge by one more step...
    pub delay_step: Duration,
    /// ...up to this.
    pub max_delay: Duration,
    /// Failures within `window` after which the source is refused.
    pub ban_after: u32,
    pub window: Duration,
    pub ban_for: Duration,
    /// Sources tracked at most; when full, the quietest unbanned one is forgotten.
    pub max_tracked: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardDecision {
    Allow,
    /// Answer, but only after this long.
    Delay(Duration),
    /// Refuse (403) until then.
    Refuse { until: Instant },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    last_failure: Instant,
    banned_until: Option<Instant>,
}

pub struct AuthGuard {
    config: GuardConfig,
    entries: HashMap<IpAddr, Entry>,
}

/// The address a source is counted under.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl AuthGuard {
    pub fn new(config: GuardConfig) -> Self {
        AuthGuard { config, entries: HashMap::new() }
    }

    /// Entries whose window has passed count no more.
    fn live(&self, e: &Entry, now: Instant) -> bool {
        e.banned_until.is_some_and(|u| u > now) || now.saturating_duration_since(e.window_start) < self.config.window
    }

    pub fn check(&self, ip: IpAddr, now: Instant) -> GuardDecision {
        let Some(e) = self.entries.get(&bucket(ip)).filter(|e| self.live(e, now)) else {
            return GuardDecision::Allow;
        };
        if let Some(until) = e.banned_until.filter(|u| *u > now) {
            return GuardDecision::Refuse { until };
        }
        match e.failures.checked_sub(self.config.free_failures) {
            Some(extra) if extra > 0 => {
                GuardDecision::Delay(self.config.delay_step.saturating_mul(extra).min(self.config.max_delay))
            }
            _ => GuardDecision::Allow,
        }
    }

    /// Counts a failure; returns the end of the ban when this one starts it.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> Option<Instant> {
        let key = bucket(ip);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.config.max_tracked {
            self.make_room(now);
        }
        let fresh = Entry { failures: 0, window_start: now, last_failure: now, banned_until: None };
        let live = self.entries.get(&key).is_some_and(|e| self.live(e, now));
        let e = self.entries.entry(key).or_insert(fresh);
        if !live {
            *e = fresh;
        }
        // Saturates: a caller that keeps counting a banned source must not wrap it to zero.
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures >= self.config.ban_after && e.banned_until.is_none_or(|u| u <= now) {
            let until = now + self.config.ban_for;
            e.banned_until = Some(until);
            return Some(until);
        }
        None
    }

    fn make_room(&mut self, now: Instant) {
        let config = &self.config;
        self.entries.retain(|_, e| {
            e.banned_until.is_some_and(|u| u > now) || now.saturating_duration_since(e.window_start) < config.window
        });
        if self.entries.len() < self.config.max_tracked {
            return;
        }
        let quietest = self
            .entries
            .iter()
            .filter(|(_, e)| e.banned_until.is_none_or(|u| u <= now))
            .min_by_key(|(_, e)| e.last_failure)
            .map(|(k, _)| *k);
        if let Some(k) = quietest {
            self.entries.remove(&k);
        }
    }

    pub fn banned_count(&self, now: Instant) -> usize {
        self.entries.values().filter(|e| e.banned_until.is_some_and(|u| u > now)).count()
    }

    pub fn tracked(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GuardConfig {
        GuardConfig {
            free_failures: 3,
            delay_step: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
            ban_after: 10,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(300),
            max_tracked: 4,
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn delays_grow_then_the_source_is_banned_until_the_ban_ends() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(config());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut decisions = Vec::new();
        for i in 0..9 {
            assert_eq!(g.record_failure(ip, t0 + i * SEC), None);
            decisions.push(g.check(ip, t0 + i * SEC));
        }
        let ms = |n| GuardDecision::Delay(Duration::from_millis(n));
        assert_eq!(
            decisions,
            [GuardDecision::Allow, GuardDecision::Allow, GuardDecision::Allow, ms(500), ms(1000), ms(1500), ms(2000), ms(2000), ms(2000)]
        );
        let until = g.record_failure(ip, t0 + 9 * SEC).expect("the 10th failure bans");
        assert_eq!(until, t0 + 309 * SEC);
        assert_eq!(g.check(ip, t0 + 100 * SEC), GuardDecision::Refuse { until });
        assert_eq!(g.banned_count(t0 + 100 * SEC), 1);
        // Other sources are not affected; the ban ends on time and the count starts over.
        assert_eq!(g.check("192.0.2.2".parse().unwrap(), t0 + 100 * SEC), GuardDecision::Allow);
        assert_eq!(g.check(ip, t0 + 309 * SEC), GuardDecision::Allow);
        assert_eq!(g.banned_count(t0 + 309 * SEC), 0);
    }

    #[test]
    fn failures_age_out_with_the_window() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(config());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            g.record_failure(ip, t0);
        }
        assert!(matches!(g.check(ip, t0), GuardDecision::Delay(_)));
        assert_eq!(g.check(ip, t0 + 60 * SEC), GuardDecision::Allow);
        g.record_failure(ip, t0 + 61 * SEC);
        assert_eq!(g.check(ip, t0 + 61 * SEC), GuardDecision::Allow, "a new window starts from one failure");
    }

    #[test]
    fn ipv6_counts_per_prefix_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(config());
        for i in 0..10u32 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            g.record_failure(ip, t0);
        }
        assert!(matches!(g.check("2001:db8:1:2::ffff".parse().unwrap(), t0), GuardDecision::Refuse { .. }));
        for i in 0..20u32 {
            g.record_failure(format!("198.51.100.{i}").parse().unwrap(), t0 + SEC);
        }
        assert!(g.tracked() <= 4);
        assert!(
            matches!(g.check("2001:db8:1:2::1".parse().unwrap(), t0 + SEC), GuardDecision::Refuse { .. }),
            "a banned source is never the one forgotten"
        );
    }

    #[test]
    fn the_failure_count_saturates() {
        let t0 = Instant::now();
        let config = GuardConfig { ban_after: u32::MAX, ban_for: SEC, ..config() };
        let mut g = AuthGuard::new(config);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        g.record_failure(ip, t0);
        g.entries.get_mut(&ip).unwrap().failures = u32::MAX - 1;
        assert_eq!(g.record_failure(ip, t0), Some(t0 + SEC), "the last count bans");
        // Counted again while banned, and after the ban within the window: still the most.
        assert_eq!(g.record_failure(ip, t0), None);
        assert_eq!(g.record_failure(ip, t0 + 2 * SEC), Some(t0 + 3 * SEC));
        assert_eq!(g.entries[&ip].failures, u32::MAX);
        assert_eq!(g.check(ip, t0 + 4 * SEC), GuardDecision::Delay(Duration::from_secs(2)));
    }
}
