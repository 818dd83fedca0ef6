//! The relay's totals, for metrics: counters summed over every leg of every
//! call (live and ended), and how long relayed packets spent in the switch.

use std::time::Duration;

use crate::session::LegStats;

/// Upper bounds of the latency buckets, in microseconds; the last bucket holds
/// everything above the last bound.
pub const LATENCY_BOUNDS_US: [u64; 12] = [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];

/// Time in the relay of each relayed RTP packet: from the kernel's arrival stamp
/// on the receiving socket to the return of the send, so the wait in the
/// socket's queue counts too. Fixed buckets: recording allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `counts[i]`: packets of at most `LATENCY_BOUNDS_US[i]` (and more than the
    /// bound before); the last entry: more than the last bound.
    pub counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub total_ns: u64,
    pub max_ns: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, ns: u64) {
        let us = ns.div_ceil(1000);
        let bucket = LATENCY_BOUNDS_US.iter().position(|&bound| us <= bound).unwrap_or(LATENCY_BOUNDS_US.len());
        self.counts[bucket] += 1;
        self.total_ns = self.total_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The bucket bound at or below which `q` (0..=1) of the packets fall:
    /// an upper estimate, as precise as the buckets. `None` if empty or beyond
    /// the last bound.
    pub fn quantile_bound(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let wanted = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return LATENCY_BOUNDS_US.get(bucket).map(|&us| Duration::from_micros(us));
            }
        }
        None
    }
}

/// Declares [`LegTotals`] with the [`LegStats`] counters it sums, named once.
macro_rules! leg_totals {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        /// Counters of all legs together (see [`LegStats`] for what each counts).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct LegTotals {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl LegTotals {
            pub fn add(&mut self, leg: &LegStats) {
                $(self.$field += leg.$field;)*
            }

            pub fn merge(&mut self, other: &LegTotals) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

leg_totals! {
    rtp_packets_in,
    rtp_bytes_in,
    rtp_packets_out,
    rtp_bytes_out,
    rtcp_packets_in,
    rtcp_packets_out,
    rtp_packets_expected,
    rtp_packets_lost,
    rtp_packets_reordered,
    /// From a source other than the latched one: a flood or a hijack attempt shows here.
    dropped_wrong_source,
    dropped_unknown_pt,
    dropped_malformed,
    dropped_by_mode,
    dropped_no_destination,
    send_errors,
    relatches,
    stream_changes,
}

impl LegTotals {
    /// Packets received and not relayed, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_wrong_source
            + self.dropped_unknown_pt
            + self.dropped_malformed
            + self.dropped_by_mode
            + self.dropped_no_destination
    }
}

/// The relay as a whole, from [`crate::MediaRelay::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Calls relaying now.
    pub calls: u64,
    pub calls_ended: u64,
    /// Every leg of every call since the relay started.
    pub legs: LegTotals,
    pub latency: LatencyHistogram,
}

impl RelayStats {
    pub fn merge(&mut self, other: &RelayStats) {
        self.calls += other.calls;
        self.calls_ended += other.calls_ended;
        self.legs.merge(&other.legs);
        self.latency.merge(&other.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket_and_quantiles_read_the_bounds() {
        let mut histogram = LatencyHistogram::default();
        for ns in [5_000, 10_000, 10_001, 150_000, 150_000, 60_000_000] {
            histogram.record(ns);
        }
        assert_eq!(histogram.counts[0], 2, "up to 10 µs");
        assert_eq!(histogram.counts[1], 1, "10.001 µs is above 10");
        assert_eq!(histogram.counts[4], 2, "150 µs: up to 200");
        assert_eq!(histogram.counts[LATENCY_BOUNDS_US.len()], 1, "60 ms: above the last bound");
        assert_eq!(histogram.count(), 6);
        assert_eq!(histogram.max_ns, 60_000_000);
        assert_eq!(histogram.quantile_bound(0.5), Some(Duration::from_micros(20)));
        assert_eq!(histogram.quantile_bound(0.8), Some(Duration::from_micros(200)));
        assert_eq!(histogram.quantile_bound(1.0), None);
        assert_eq!(LatencyHistogram::default().quantile_bound(0.5), None);
    }
}
