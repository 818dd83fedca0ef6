//! The SIP core through the real binary, driven by SIPp (Debian `sip-tester`)
//! over UDP, TCP and TLS (through a socat tunnel: Debian's SIPp has no TLS),
//! on IPv4 and IPv6.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ENDPOINTS, Switch, TlsTunnel, sipp, sipp_ok};

fn creds<'a>(user: &'a str, password: &'a str) -> [&'a str; 6] {
    ["-s", user, "-au", user, "-ap", password]
}

#[test]
fn register_is_challenged_then_accepted_on_every_transport() {
    let switch = Switch::start("register", ENDPOINTS);
    sipp_ok("register_auth.xml", switch.addr("internal", "udp", false), "u1", &creds("1001", "demo1001"));
    sipp_ok("register_auth.xml", switch.addr("internal", "udp", true), "u1", &creds("1002", "demo1002"));
    sipp_ok("register_auth.xml", switch.addr("internal", "tcp", false), "t1", &creds("1003", "demo1003"));
    sipp_ok("register_auth.xml", switch.addr("internal", "tcp", true), "t1", &creds("1001", "demo1001"));
    let tunnel = TlsTunnel::start(switch.addr("internal", "tls", false));
    sipp_ok("register_auth.xml", tunnel.addr, "t1", &creds("1002", "demo1002"));
    // The core saw each transport.
    for transport in ["\"UDP\"", "\"TCP\"", "\"TLS\""] {
        assert!(switch.wait_for_log(&["registered", transport], Duration::from_secs(2)), "no registration over {transport}");
    }
    assert!(switch.wait_for_log(&["registered", "::1"], Duration::from_secs(2)), "no registration over IPv6");
}

#[test]
fn sha256_is_offered_first_when_configured() {
    let switch = Switch::start("sha256", &format!("{ENDPOINTS}[auth]\nalgorithms = [\"SHA-256\", \"MD5\"]\n"));
    sipp_ok("register_challenge.xml", switch.addr("internal", "udp", false), "u1", &["-s", "1001"]);
}

#[test]
fn wrong_password_is_refused_and_guessing_gets_the_source_banned() {
    let extra = format!("{ENDPOINTS}[auth]\nfree_failures = 0\ndelay_step_ms = 0\nban_after = 3\n");
    let switch = Switch::start("guess", &extra);
    let udp = switch.addr("internal", "udp", false);
    for _ in 0..3 {
        sipp_ok("register_wrong_password.xml", udp, "u1", &creds("1001", "wrong"));
    }
    // Banned: even the right password gets 403 now, over any transport.
    sipp_ok("register_refused.xml", udp, "u1", &creds("1001", "demo1001"));
    sipp_ok("register_refused.xml", switch.addr("internal", "tcp", false), "t1", &creds("1001", "demo1001"));
    assert!(switch.wait_for_log(&["too many failed authentications: source refused"], Duration::from_secs(2)));
    assert!(switch.wait_for_log(&["authentication failed", "wrong password"], Duration::from_secs(2)));
    // The ban is per source: another loopback address still registers.
    sipp_ok("register_auth.xml", udp, "u1", &[&creds("1002", "demo1002")[..], &["-i", "127.0.0.3"]].concat());
}

#[test]
fn unregister_removes_every_binding() {
    let switch = Switch::start("unregister", ENDPOINTS);
    sipp_ok("register_unregister.xml", switch.addr("internal", "udp", false), "u1", &creds("1001", "demo1001"));
    sipp_ok("register_unregister.xml", switch.addr("internal", "tcp", false), "t1", &creds("1002", "demo1002"));
}

#[test]
fn a_registration_expires_on_time() {
    let extra = format!("{ENDPOINTS}[registrar]\nmin_expires = 1\n");
    let switch = Switch::start("expire", &extra);
    sipp_ok("register_expire.xml", switch.addr("internal", "udp", false), "u1", &creds("1001", "demo1001"));
    assert!(switch.wait_for_log(&["registration expired", "1001"], Duration::from_secs(2)));
}

#[test]
fn options_is_answered_and_the_trunk_side_only_answers_trunks() {
    // Only 127.0.0.2 is a trunk; SIPp from 127.0.0.1 is a stranger there.
    let extra = format!("{ENDPOINTS}[trunks.carrier]\nnetworks = [\"127.0.0.2/32\"]\n");
    let switch = Switch::start("acl", &extra);
    for (transport, sipp_transport) in [("udp", "u1"), ("tcp", "t1")] {
        sipp_ok("options.xml", switch.addr("internal", transport, false), sipp_transport, &[]);
        let external = switch.addr("external", transport, false);
        sipp_ok("options_forbidden.xml", external, sipp_transport, &[]);
        sipp_ok("options.xml", external, sipp_transport, &["-i", "127.0.0.2"]);
    }
    sipp_ok("options.xml", switch.addr("internal", "udp", true), "u1", &[]);
    let tunnel = TlsTunnel::start(switch.addr("internal", "tls", false));
    sipp_ok("options.xml", tunnel.addr, "t1", &[]);
    // And the core counted the refusals.
    assert!(switch.wait_for_log(&["request on the external profile from no trunk's network"], Duration::from_secs(2)));
}

#[test]
fn sipp_reports_failure_when_the_answer_is_wrong() {
    // The harness itself must be able to fail: a 403 where a 200 is expected.
    let extra = format!("{ENDPOINTS}[trunks.carrier]\nnetworks = [\"192.0.2.0/24\"]\n");
    let switch = Switch::start("harness", &extra);
    let (ok, _) = sipp("options.xml", switch.addr("external", "udp", false), "u1", &["-timeout", "3s"]);
    assert!(!ok);
}

#[test]
fn the_default_config_checks_and_a_bad_one_names_the_key() {
    let bin = env!("CARGO_BIN_EXE_tandem");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(bin).args(["--check", "--config"]).arg(format!("{root}/conf/tandem.toml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = std::env::temp_dir().join(format!("tandem-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[sip]\nrealm = \"x\"\n\n[registrar]\nmin_expires = 0\n").unwrap();
    let out = Command::new(bin).arg("--config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5: registrar.min_expires: must be between 1 and 86400 (got 0)"), "{err}");
}
