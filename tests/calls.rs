//! Calls through the real binary with SIPp: the echo line at 6000 answers with
//! anchored media and sends the caller's RTP back; every call leaves a CDR.

mod common;

use std::time::Duration;

use common::{ENDPOINTS, Switch, sipp, sipp_ok};

fn echo_config() -> String {
    format!(
        "{ENDPOINTS}[media]\nport_min = 32000\nport_max = 32999\n\
[[dialplan.internal]]\nexact = \"6000\"\necho = true\n\
[[dialplan.internal]]\nexact = \"6486\"\nhangup = 486\n"
    )
}

/// The numbers of a JSON log line's field.
fn field(line: &str, name: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["fields"][name].as_u64()
}

#[test]
fn the_echo_line_returns_the_callers_media_and_writes_a_cdr() {
    let switch = Switch::start("echo", &echo_config());
    let udp = switch.addr("internal", "udp", false);
    sipp_ok("call_echo.xml", udp, "u1", &["-s", "6000", "-au", "1001", "-ap", "demo1001", "-mi", "127.0.0.1"]);
    assert!(switch.wait_for_log(&["call media stopped"], Duration::from_secs(5)), "the media task ended");
    let line = switch.log_lines().into_iter().find(|l| l.contains("call media stopped")).unwrap();
    let (rtp_in, rtp_out) = (field(&line, "a_rtp_in").unwrap(), field(&line, "a_rtp_out").unwrap());
    // SIPp plays g711a.pcap for the 4 s the call lasts: about 50 packets a second.
    assert!(rtp_in > 100, "Tandem received the caller's RTP: {line}");
    assert_eq!(rtp_out, rtp_in, "and sent every packet back: {line}");

    let cdr_path = switch.dir.join("data/cdr.jsonl");
    let mut cdr = String::new();
    for _ in 0..100 {
        cdr = std::fs::read_to_string(&cdr_path).unwrap_or_default();
        if !cdr.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let record: serde_json::Value = serde_json::from_str(cdr.lines().next().expect("one CDR")).unwrap();
    assert_eq!(record["destination"], "echo");
    assert_eq!(record["disposition"], "answered");
    assert_eq!(record["hangup_by"], "caller");
    assert!(record["billable_s"].as_f64().unwrap() >= 3.5, "{record}");
}

#[test]
fn the_dial_plan_refuses_what_it_does_not_route() {
    let switch = Switch::start("dialplan", &echo_config());
    let udp = switch.addr("internal", "udp", false);
    // SIPp expects a 200, so these calls fail; what it got instead is in its error log.
    for (number, answer) in [("6486", "SIP/2.0 486 Busy Here"), ("5555", "SIP/2.0 404 Not Found")] {
        let (ok, text) = sipp("call_echo.xml", udp, "u1", &["-s", number, "-au", "1001", "-ap", "demo1001", "-timeout", "5s"]);
        assert!(!ok && text.contains(answer), "{number} gets {answer}:\n{text}");
    }
    assert!(!switch.wait_for_log(&["echo call answered"], Duration::from_millis(200)));
}

#[test]
fn a_call_whose_media_stops_is_hung_up_by_the_switch() {
    // rtp_timeout_s = 5, after the relay's 5 s start grace: the BYE comes at about 10 s.
    let switch = Switch::start("silent", &echo_config().replace("port_max = 32999\n", "port_max = 32999\nrtp_timeout_s = 5\n"));
    let udp = switch.addr("internal", "udp", false);
    sipp_ok("call_echo_silent.xml", udp, "u1", &["-s", "6000", "-au", "1001", "-ap", "demo1001", "-mi", "127.0.0.1"]);
    assert!(switch.wait_for_log(&["call ended by the switch", "RTP timeout"], Duration::from_secs(2)));
    assert!(switch.wait_for_log(&["call media stopped"], Duration::from_secs(2)));
}
