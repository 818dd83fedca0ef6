//! Calls out through a trunk, through the real binary: SIPp is the caller on
//! the internal side and the carrier's gateway on the other, which challenges
//! the INVITE and checks Tandem's credentials with `verifyauth`.

mod common;

use std::time::Duration;

use common::{ENDPOINTS, Switch, sipp, sipp_server};

const GATEWAY: u16 = 5393;

#[test]
fn a_call_out_through_a_trunk_answers_the_carriers_challenge() {
    let gateway = sipp_server("trunk_gateway.xml", GATEWAY, "u1");
    let config = format!(
        "{ENDPOINTS}[trunks.carrier]\nnetworks = [\"127.0.0.1/32\"]\ngateway = \"127.0.0.1:{GATEWAY}\"\n\
username = \"acct77\"\npassword = \"s3cret\"\n[media]\nport_min = 35000\nport_max = 35999\n\
[[dialplan.internal]]\nprefix = \"00\"\ntrunk = \"carrier\"\nnumber = \"+${{rest}}\"\n"
    );
    let switch = Switch::start("trunk-call", &config);
    let udp = switch.addr("internal", "udp", false);
    let (ok, text) = sipp("call_echo.xml", udp, "u1", &["-s", "00442071234567", "-au", "1001", "-ap", "demo1001", "-mi", "127.0.0.1"]);
    let (gateway_ok, gateway_text) = gateway.join().unwrap();
    assert!(ok, "the caller:\n{text}\n{}", switch.log_lines().join("\n"));
    assert!(gateway_ok, "the gateway:\n{gateway_text}");
    assert!(switch.wait_for_log(&["call media stopped"], Duration::from_secs(5)));
    let line = switch.log_lines().into_iter().find(|l| l.contains("call media stopped")).unwrap();
    let field = |name: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["fields"][name].as_u64().unwrap_or(0)
    };
    // SIPp's pcap went from the caller through the relay to the gateway's media port.
    assert!(field("a_rtp_in") > 100 && field("b_rtp_out") > 100, "{line}");
    let cdr = std::fs::read_to_string(switch.dir.join("data/cdr.jsonl")).unwrap_or_default();
    let record: serde_json::Value = serde_json::from_str(cdr.lines().next().expect("a CDR")).unwrap();
    assert_eq!(record["destination"], "trunk:carrier");
    assert_eq!(record["disposition"], "answered");
    assert_eq!(record["hangup_by"], "caller");
}
