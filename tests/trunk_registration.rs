//! A trunk registering with its carrier, through the real binary: SIPp plays the
//! carrier's registrar (a UAS scenario on a fixed loopback port), challenges with
//! an MD5 digest and checks our credentials with `verifyauth`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Switch, require_tool, sipp_dir};

// The carrier's ports: one per test, as the tests run at once.
const CARRIER_UDP: u16 = 5390;
const CARRIER_TCP: u16 = 5391;
const CARRIER_REFUSING: u16 = 5392;

/// A trunk that registers as 4420001 with acct77 / s3cret at 127.0.0.1:`port`.
fn trunk(port: u16, transport: &str, extra: &str) -> String {
    format!(
        "[trunks.carrier]\nnetworks = [\"127.0.0.1/32\"]\ngateway = \"127.0.0.1:{port}\"\ntransport = \"{transport}\"\n\
username = \"acct77\"\npassword = \"s3cret\"\nregister = true\nregister_user = \"4420001\"\nregister_expires_s = 600\n{extra}"
    )
}

/// Whether something listens on loopback `port` (TCP) or has it bound (UDP), from /proc.
fn listening(port: u16, tcp: bool) -> bool {
    let table = std::fs::read_to_string(if tcp { "/proc/net/tcp" } else { "/proc/net/udp" }).unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    // Fields: slot, local address, remote address, state (0A: TCP LISTEN).
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&local.as_str()) && (!tcp || f.get(3) == Some(&"0A"))
    })
}

/// SIPp as the carrier's registrar on 127.0.0.1:`port`, running `scenario` once
/// (30 s at most). Returns once it listens; the handle gives its success and output.
fn carrier(scenario: &str, port: u16, transport: &str) -> JoinHandle<(bool, String)> {
    require_tool("sipp", "sip-tester");
    assert!(!listening(port, transport == "t1"), "port {port} is taken: the carrier cannot listen there");
    let dir: PathBuf = std::env::temp_dir().join(format!("tandem-e2e-{}-carrier-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&dir)
        .arg("-sf")
        .arg(sipp_dir().join(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", transport])
        .args(["-m", "1", "-timeout", "30s", "-timeout_error", "-trace_err", "-nostdin"])
        .stdin(Stdio::null());
    let handle = std::thread::spawn(move || {
        let out = cmd.output().expect("run sipp (Debian package sip-tester)");
        let errors: String = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        let text =
            format!("{}\n{}\n{errors}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    });
    // A REGISTER sent before SIPp listens would be lost (over TCP, not even retransmitted).
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !listening(port, transport == "t1") {
        assert!(!handle.is_finished() && std::time::Instant::now() < end, "SIPp did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    handle
}

/// The `tandem::stats` line logged at shutdown.
fn last_stats(log: &[String]) -> String {
    log.iter().rfind(|l| l.contains("tandem::stats")).cloned().unwrap_or_default()
}

/// Seconds since midnight of a JSON log line's timestamp (`...T13:19:20.123456Z`).
fn logged_at(line: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let time = v["timestamp"].as_str().unwrap().split('T').nth(1).unwrap().trim_end_matches('Z');
    time.split(':').map(|p| p.parse::<f64>().unwrap()).fold(0.0, |acc, p| acc * 60.0 + p)
}

fn registers_through_a_challenge(port: u16, transport: &str, sipp_transport: &str) {
    let registrar = carrier("trunk_registrar.xml", port, sipp_transport);
    let switch = Switch::start(&format!("trunk-{transport}"), &trunk(port, transport, ""));
    let (ok, text) = registrar.join().unwrap();
    assert!(ok, "the carrier's registrar over {transport} failed:\n{text}\n{}", switch.log_lines().join("\n"));
    // The carrier granted 120 of the 600 s asked for.
    assert!(
        switch
            .wait_for_log(&["trunk registered", "\"trunk\":\"carrier\"", "\"expires_s\":120"], Duration::from_secs(2)),
        "{}",
        switch.log_lines().join("\n")
    );
    let (status, log) = switch.stop_and_log();
    assert!(status.success());
    let stats = last_stats(&log);
    assert!(stats.contains("trunks_registered=1 trunks_failed=0"), "{stats}");
}

#[test]
fn a_trunk_registers_through_the_carriers_challenge_over_udp() {
    registers_through_a_challenge(CARRIER_UDP, "udp", "u1");
}

#[test]
fn a_trunk_registers_through_the_carriers_challenge_over_tcp() {
    registers_through_a_challenge(CARRIER_TCP, "tcp", "t1");
}

#[test]
fn a_refused_registration_is_retried_after_the_backoff() {
    let registrar = carrier("trunk_registrar_refuse_first.xml", CARRIER_REFUSING, "u1");
    let switch = Switch::start("trunk-refused", &trunk(CARRIER_REFUSING, "udp", "register_retry_min_s = 1\n"));
    let (ok, text) = registrar.join().unwrap();
    assert!(ok, "the carrier's registrar failed:\n{text}\n{}", switch.log_lines().join("\n"));
    assert!(switch.wait_for_log(&["trunk registered", "\"trunk\":\"carrier\""], Duration::from_secs(2)));
    let log = switch.log_lines();
    let failed = log.iter().find(|l| l.contains("trunk registration failed")).expect("the refusal is logged");
    assert!(failed.contains("\"status\":403") && failed.contains("\"retry_in_s\":1"), "{failed}");
    let registered = log.iter().find(|l| l.contains("trunk registered")).unwrap();
    // The retry waited for the backoff (1 s), not longer than it needs.
    let waited = (logged_at(registered) - logged_at(failed)).rem_euclid(86_400.0);
    assert!((0.9..5.0).contains(&waited), "registered {waited} s after the refusal");
    let (_, log) = switch.stop_and_log();
    let stats = last_stats(&log);
    assert!(stats.contains("trunks_registered=1 trunks_failed=0"), "{stats}");
}
