//! A trunk registering with its carrier, through the real binary: SIPp plays the
//! carrier's registrar (a UAS scenario on a fixed loopback port), challenges with
//! an MD5 digest and checks our credentials with `verifyauth`.

mod common;

use std::time::Duration;

use common::{Switch, sipp_server};

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
    let registrar = sipp_server("trunk_registrar.xml", port, sipp_transport);
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
    let registrar = sipp_server("trunk_registrar_refuse_first.xml", CARRIER_REFUSING, "u1");
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
