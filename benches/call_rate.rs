//! Calls through the real binary, driven by SIPp over UDP loopback: short calls
//! to the echo line (digest challenge, SDP negotiation, a media port allocated
//! and released, 2xx/ACK, BYE). Reports calls per second with the failure
//! ratio, and the setup time of the authenticated INVITE to its 200 OK (p50,
//! p99 from SIPp's per-call response times). Bounded: `CALLS` calls (default
//! 20,000) at `CALL_RATE` per second (default 1,000), 120 s at most.
//!
//! cargo bench --bench call_rate
//! CALL_RATE=200 CALLS=2000 cargo bench --bench call_rate    (unloaded setup time)

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    if !common::is_bench_run() {
        return;
    }
    let rate = common::env_or("CALL_RATE", 1000);
    let total = common::env_or("CALLS", 20_000);
    let extra = "[endpoints]\n1001 = { password = \"demo1001\" }\n[media]\nport_min = 40000\nport_max = 59999\n\
[[dialplan.internal]]\nexact = \"6000\"\necho = true\n";
    let switch = common::Switch::start_logging("call-rate", "warn,tandem=info", extra);
    let args = ["-s", "6000", "-au", "1001", "-ap", "demo1001", "-mi", "127.0.0.1", "-trace_rtt", "-rtt_freq", "1"];
    let run = common::sipp_load(&switch, "call_echo_short.xml", rate, total, &args);
    let (ok, failed, elapsed, cpu) = (run.ok, run.failed, run.elapsed, run.cpu);

    // -trace_rtt: "Date_ms;response_time_ms;rtd_no" lines; SIPp counts whole milliseconds.
    let mut rtts: Vec<f64> = std::fs::read_dir(&switch.dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_rtt.csv"))
        .flat_map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| l.split(';').nth(1).and_then(|v| v.trim().parse().ok()))
        .collect();
    rtts.sort_by(f64::total_cmp);
    let pct = |p: f64| match rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize) {
        Some(0.0) => "< 1".to_string(),
        Some(v) => format!("{v:.0}"),
        None => "n/a".to_string(),
    };
    println!(
        "call_rate: {ok} calls ({failed} failed, {:.3}%) in {:.2} s = {:.0} calls/s (offered {rate}/s); \
INVITE->200 p50 {} ms, p99 {} ms over {} calls (SIPp's step: the kernel tick, 4 ms here); tandem used {:.2} s of CPU = {:.0} us per call",
        100.0 * failed as f64 / (ok + failed).max(1) as f64,
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        rtts.len(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / ok.max(1) as f64
    );
    switch.stop();
}
