//! The media load generator (tests/common/media_load.rs says how it measures).
//!
//! Relay mode (the default): `CALLS` bridged calls through a `MediaRelay` in
//! this process, set up through its API (two legs, RTP and RTCP ports each,
//! ports 40000-59999), two phones per call sending 20 ms PCMU packets both ways
//! for `SECONDS` (after a 2 s warm-up). Reports loss, reordering, extra latency
//! through the relay, jitter, the relay threads' CPU per call and per core,
//! and resident memory per call. The generator shares the machine's cores
//! with the relay: its own CPU is reported beside.
//!
//! cargo bench --bench media_load                       (500 calls, 20 s)
//! CALLS=2000 SECONDS=20 cargo bench --bench media_load
//!
//! Settings (environment; bounded): CALLS (1-3000, default 500), SECONDS
//! (1-600, default 20), WORKERS (the relay's runtime threads, default one per
//! core), GEN_THREADS (generator threads, default 2), TICK_US (0-10000, default
//! 100; 0: each packet at its time; see `Plan::tick`), RTCP_MUX=1 (one port per
//! leg), MEDIA_LOAD_CSV=<file> (one line per call direction).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/media_load.rs"]
mod media_load;

use std::time::Duration;

use media_load::{Plan, RelayOptions};

fn main() {
    if !common::is_bench_run() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let calls = common::env_or("CALLS", 500).clamp(1, 3000) as usize;
    let seconds = common::env_or("SECONDS", 20).clamp(1, 600);
    let plan = Plan {
        warmup: Duration::from_secs(2),
        measure: Duration::from_secs(seconds),
        drain: Duration::from_millis(500),
        threads: common::env_or("GEN_THREADS", 2).clamp(1, 16) as usize,
        tick: Duration::from_micros(common::env_or("TICK_US", 100).min(10_000)),
    };
    let options = RelayOptions {
        calls,
        workers: common::env_or("WORKERS", cores as u64).clamp(1, 64) as usize,
        rtcp_mux: common::env_or("RTCP_MUX", 0) == 1,
        port_min: 40000,
        port_max: 59999,
    };
    let report = media_load::relay_mode(&options, &plan);
    println!("{}", report.text());
    if let Ok(path) = std::env::var("MEDIA_LOAD_CSV") {
        std::fs::write(&path, report.outcome.csv()).unwrap_or_else(|e| panic!("{path}: {e}"));
        println!("  per direction: {path}");
    }
}
