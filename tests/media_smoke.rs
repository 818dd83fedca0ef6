//! CI's smoke run of the media load generator (tests/common/media_load.rs,
//! the same code as `cargo bench --bench media_load`): 50 calls bridged
//! through a relay in this process for 20 s, a phone on each leg sending a
//! 20 ms PCMU packet every 20 ms. Every packet must come through, once and in
//! order, to the phone of the same call that should hear it.

#[path = "common/media_load.rs"]
mod media_load;

use std::time::Duration;

use media_load::{FRAME, Plan, RelayOptions};

const CALLS: usize = 50;

#[test]
fn fifty_bridged_calls_relay_every_packet_in_order() {
    let plan = Plan {
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(19),
        drain: Duration::from_millis(500),
        threads: 1,
        tick: Duration::from_micros(100),
        cpus: Vec::new(),
    };
    // Ports of their own: the other tests' relays use 32000-32999.
    let options =
        RelayOptions { calls: CALLS, workers: 2, rtcp_mux: false, port_min: 34000, port_max: 34999, cpus: Vec::new() };
    let report = media_load::relay_mode(&options, &plan);
    let text = report.text();
    println!("{text}");
    let t = report.totals();
    // Each phone is due one packet per frame of the 20 s. A generator starved
    // of CPU (a build beside the run) gives up on the packets still due after
    // the drain: those were never sent, so they are not the relay's loss.
    let per_phone = ((plan.warmup + plan.measure).as_micros() / FRAME.as_micros()) as u64;
    assert_eq!(report.outcome.planned, 2 * CALLS as u64 * per_phone, "packets planned\n{text}");
    assert!(t.sent * 10 >= report.outcome.planned * 9, "the generator sent under 90% of its plan\n{text}");
    assert_eq!((t.send_errors, t.recv_errors), (0, 0), "the phones' socket errors\n{text}");
    assert_eq!(t.lost, 0, "lost packets\n{text}");
    assert_eq!((t.reordered, t.duplicates, t.foreign), (0, 0, 0), "reordered, duplicated, misrouted\n{text}");
    assert_eq!(t.received, t.sent, "{text}");
    assert_eq!(report.outcome.garbage, 0, "datagrams that were not the phones' packets\n{text}");
    let relay = report.relay.expect("relay mode has the relay's counters");
    assert_eq!((relay.rtp_packets_in, relay.rtp_packets_out), (t.sent, t.sent), "the relay's own counts\n{text}");
    assert_eq!((relay.send_errors, relay.dropped()), (0, 0), "the relay's send errors and drops\n{text}");
    // Latency is reported, not asserted: CI machines are shared and slow.
    assert_eq!(report.outcome.latency.count, t.received);
}
