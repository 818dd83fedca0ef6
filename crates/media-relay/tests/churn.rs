//! Ports are released when calls end: 100,000 bridged calls set up and torn
//! down leave the process with the descriptors it had, no port of the range
//! in use, and resident memory where it was after the first thousand calls (so
//! nothing per call stays behind: 100 bytes kept per call would be 10 MB).
//! One test in its own process, so the descriptor count is this test's alone.

use std::net::SocketAddr;
use std::time::Duration;

use media_relay::{BridgeParams, Codec, LegParams, MediaRelay, PayloadMap, RelayConfig};

const PORT_MIN: u16 = 36000;
const PORT_MAX: u16 = 36999;
const CALLS: usize = 100_000;
const WARM_UP: usize = 1_000;
/// Calls up at once, as a switch has many: the churn runs in waves of this many.
const WAVE: usize = 100;
/// What the allocator may keep of freed memory for reuse, not a leak.
const RSS_SLACK_KIB: u64 = 1024;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
}

fn pcmu(remote: SocketAddr) -> LegParams {
    let payloads = PayloadMap::new(&[(0, Codec::Pcmu)]).unwrap();
    LegParams { remote_rtp: Some(remote), payloads, ..LegParams::default() }
}

async fn churn(relay: &MediaRelay, calls: usize) {
    let phone: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for _ in 0..calls / WAVE {
        let mut wave = Vec::with_capacity(WAVE);
        for _ in 0..WAVE {
            let a = relay.allocate_leg(false).expect("a leg");
            let b = relay.allocate_leg(true).expect("a leg");
            wave.push(relay.bridge(a, b, BridgeParams { a: pcmu(phone), b: pcmu(phone) }));
        }
        for call in wave {
            call.stop().await.expect("the call stops");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_calls_leave_no_socket_or_memory_behind() {
    let descriptors_before = open_descriptors();
    let relay = MediaRelay::new(RelayConfig {
        port_min: PORT_MIN,
        port_max: PORT_MAX,
        workers: 2,
        rtp_timeout: Duration::from_secs(30),
        ..RelayConfig::default()
    })
    .unwrap();
    // The workers' epoll and eventfd descriptors are the relay's, not the calls'.
    let descriptors_idle = open_descriptors();
    assert!(descriptors_idle <= descriptors_before + 4, "{descriptors_before} -> {descriptors_idle}");
    churn(&relay, WARM_UP).await;
    let rss_warm = rss_kib();
    churn(&relay, CALLS - WARM_UP).await;

    assert_eq!(relay.port_usage().legs_in_use, 0);
    assert_eq!(open_descriptors(), descriptors_idle, "descriptors after {CALLS} calls");
    let rss_after = rss_kib();
    assert!(
        rss_after <= rss_warm + RSS_SLACK_KIB,
        "resident memory grew from {rss_warm} KiB after {WARM_UP} calls to {rss_after} KiB after {CALLS}"
    );
    println!("{CALLS} calls: descriptors {descriptors_idle} before and after; RSS {rss_warm} KiB -> {rss_after} KiB");
}
