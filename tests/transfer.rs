//! Call transfer (REFER, RFC 3515; Replaces, RFC 3891) through the real binary,
//! with SIPp as every phone: the caller 1001, the called phone 1002 and the
//! transfer target 1003, each registered from the port it then listens on.
//! Each test checks what every phone saw (the REFER's 202, the NOTIFYs'
//! message/sipfrag bodies, who got a BYE), that the media of the parties who
//! end up together flows both ways through the relay (test-owned sockets, as in
//! b2bua.rs), and the CDRs. Everything runs on loopback; every wait is bounded.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Bench, ENDPOINTS, PACKETS, Sipp, assert_both_ways, drain, exchange_rtp, free_port, media_sockets};
use serde_json::Value;

/// The relay's ports for these tests (calls.rs uses 32000-32999, b2bua.rs
/// 34000-34999, trunk_calls.rs 35000-35999).
const MEDIA: &str = "[media]\nport_min = 36000\nport_max = 36999\n";

/// Endpoints 1001-1003, the relay, and 1001-1010 routed to the endpoint of that number.
fn config() -> String {
    format!("{ENDPOINTS}{MEDIA}[[dialplan.internal]]\npattern = '10(0[1-9]|10)'\nendpoint = \"$0\"\n")
}

/// One more loopback socket standing for a phone's media, and its port.
fn media_socket() -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    (socket, port)
}

/// How many datagrams are waiting on `socket` now.
fn waiting(socket: &UdpSocket) -> usize {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while socket.recv(&mut buf).is_ok() {
        n += 1;
    }
    socket.set_nonblocking(false).unwrap();
    n
}

/// The CDR of the call 1001 placed to `callee`, among `records`.
fn cdr_to<'a>(records: &'a [Value], callee: &str) -> &'a Value {
    let found = records.iter().find(|r| r["callee"] == callee);
    found.unwrap_or_else(|| panic!("no CDR of a call to {callee}: {records:?}"))
}

#[test]
fn a_blind_transfer_connects_the_caller_to_the_target_and_releases_the_transferor() {
    let bench = Bench::start("transfer-blind", &config());
    let (a, b, a_port, b_port) = media_sockets();
    let (c, c_port) = media_socket();
    // 1003 rings 2.5 s before it answers; the caller stays 8 s, then hangs up.
    let mut target = bench.phone("1003", "target", "transfer_target.xml", &["-d", "2500", "-key", "rtp_port", &c_port]);
    let mut transferor = bench.callee(
        "transferor",
        "transfer_blind_transferor.xml",
        &["-key", "rtp_port", &b_port, "-key", "target", "1003"],
    );
    let mut caller =
        bench.caller("caller", "transfer_caller.xml", "1002", &["-d", "8000", "-key", "rtp_port", &a_port]);
    let (relay_a, relay_b) = (caller.relay_port(), transferor.relay_port());

    // 1002 sent REFER 1 s after the answer: 202, NOTIFY "100 Trying", and 1003
    // rings with an offer on the relay leg 1002 had, showing the caller as the caller.
    let relay_c = target.relay_port();
    assert_eq!(relay_c, relay_b, "the target is offered the transferor's relay leg");
    let from = target.logged("from", Duration::ZERO).unwrap_or_default();
    assert!(from.starts_with("\"Alice\" <sip:1001@"), "the target sees the transferee calling: {from}");
    assert!(
        transferor.wait_line("notify=100", Duration::from_secs(5)),
        "the transferor got 202 and NOTIFY 100 Trying\n{}",
        transferor.report()
    );
    // While the target rings, the caller hears music on hold and the transferor no longer hears the caller.
    let (at_a, at_b) = exchange_rtp(&a, relay_a, &b, relay_b, 20);
    let music = at_a.payloads.len() - at_a.from(b'B');
    assert!(music >= 10, "the transferee hears music on hold while the target rings: {music} packets");
    assert_eq!(at_b.from(b'A'), 0, "the transferor was sent the transferee's RTP during the transfer");

    // 1003 answers: it takes 1002's place; 1002 gets NOTIFY "200 OK" and a BYE.
    assert!(
        target.wait_line("answered", Duration::from_secs(10)),
        "the target's 200 was acknowledged\n{}",
        target.report()
    );
    assert!(
        transferor.wait_line("bye", Duration::from_secs(5)),
        "the transferor got NOTIFY 200 and a BYE\n{}",
        transferor.report()
    );
    drain(&b);
    let heard = exchange_rtp(&a, relay_a, &c, relay_c, PACKETS);
    assert_both_ways(&heard, PACKETS);
    let music = heard.0.payloads.len() - heard.0.from(b'B');
    assert_eq!(music, 0, "the transferee still got {music} packets of music on hold after the transfer");
    assert_eq!(waiting(&b), 0, "the released transferor was still sent media");

    // The caller hangs up 8 s after its answer: the BYE reaches 1003.
    caller.succeeds();
    target.succeeds();
    transferor.succeeds();
    assert_eq!(transferor.log_lines()[1..], ["notify=100", "notify=200", "bye"], "what the transferor got, in order");
    assert_eq!(target.log_lines()[2..], ["answered", "bye"], "the target got the caller's BYE");
    assert_eq!(bench.count_log("call transferred"), 1);
    // One call, one CDR, from the caller's answer to its BYE.
    let cdr = bench.cdr();
    assert_eq!(cdr["caller"], "1001", "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["status"], 200, "{cdr}");
    assert_eq!(cdr["hangup_by"], "caller", "{cdr}");
    assert!(cdr["billable_s"].as_f64().unwrap() >= 7.5, "the CDR covers the call after the transfer too: {cdr}");
}

#[test]
fn a_blind_transfer_to_a_busy_target_is_reported_and_the_call_goes_on() {
    let bench = Bench::start("transfer-busy", &config());
    let (a, b, a_port, b_port) = media_sockets();
    let (_c, c_port) = media_socket();
    // 1003 answers 486 Busy Here.
    let mut target = bench.phone("1003", "target", "b2bua_callee_busy.xml", &["-key", "rtp_port", &c_port]);
    let mut transferor = bench.callee(
        "transferor",
        "transfer_blind_transferor_busy_target.xml",
        &["-key", "rtp_port", &b_port, "-key", "target", "1003"],
    );
    let mut caller =
        bench.caller("caller", "transfer_caller.xml", "1002", &["-d", "5000", "-key", "rtp_port", &a_port]);
    let (relay_a, relay_b) = (caller.relay_port(), transferor.relay_port());

    // The target: INVITE, 486, ACK. The transferor: 202, NOTIFY 100, NOTIFY 486.
    target.succeeds();
    assert!(
        transferor.wait_line("notify=486", Duration::from_secs(5)),
        "the transferor was told the target is busy\n{}",
        transferor.report()
    );
    // The call between the caller and 1002 is still up: both hear each other, no more music.
    let heard = exchange_rtp(&a, relay_a, &b, relay_b, PACKETS);
    assert_both_ways(&heard, PACKETS);
    let music = heard.0.payloads.len() - heard.0.from(b'B');
    assert_eq!(music, 0, "the transferee still got {music} packets of music on hold after the failure");
    assert!(
        !transferor.log_lines().iter().any(|l| l == "bye"),
        "the transferor was hung up on\n{}",
        transferor.report()
    );

    // The caller hangs up: its BYE reaches 1002.
    caller.succeeds();
    transferor.succeeds();
    assert_eq!(transferor.log_lines()[1..], ["notify=100", "notify=486", "bye"], "what the transferor got, in order");
    assert!(bench.switch.wait_for_log(&["transfer failed", "\"code\":486"], Duration::from_secs(1)));
    let cdr = bench.cdr();
    assert_eq!(cdr["caller"], "1001", "{cdr}");
    assert_eq!(cdr["callee"], "1002", "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["hangup_by"], "caller", "{cdr}");
}

#[test]
fn an_attended_transfer_joins_the_transferee_and_the_consulted_target() {
    let bench = Bench::start("transfer-attended", &config());
    let (b, c, b_port, c_port) = media_sockets();
    // 1002, the transferee, answers and waits for a BYE. 1003, the target,
    // answers the consultation call, takes the re-INVITE, and hangs up 4 s later.
    let mut transferee = bench.callee("transferee", "b2bua_callee.xml", &["-key", "rtp_port", &b_port]);
    let mut target =
        bench.phone("1003", "target", "transfer_consulted_target.xml", &["-d", "4000", "-key", "rtp_port", &c_port]);
    // 1001, one SIPp with two calls: to 1002, then to 1003; then REFER in the
    // first with Replaces naming the second (Call-IDs without '@', as they go in a URI).
    let calls = bench.dir.join("transferor-calls.csv");
    std::fs::create_dir_all(&bench.dir).unwrap();
    std::fs::write(&calls, "SEQUENTIAL\n1002;transfer;\n1003;consult;\n").unwrap();
    let calls = calls.to_string_lossy().into_owned();
    let args = ["-au", "1001", "-ap", "demo1001", "-inf", &calls, "-m", "2", "-l", "2", "-r", "2"];
    let mut transferor = Sipp::spawn(
        &bench.dir,
        "transferor",
        "transfer_attended_transferor.xml",
        bench.udp(),
        free_port(),
        &[&args[..], &["-cid_str", "transfer-%u-%p"]].concat(),
    );
    let relay_b = transferee.relay_port();
    let port = |key: &str| {
        let logged = transferor.logged(key, Duration::from_secs(10));
        logged.unwrap_or_else(|| panic!("the transferor logged no {key}\n{}", transferor.report()))
    };
    let (first_leg, consult_leg) = (port("relay_port_transfer"), port("relay_port_consult"));

    // Tandem re-INVITEs 1003 onto the relay leg the transferor had in the first call.
    let moved = target.logged("moved_port", Duration::from_secs(10));
    let moved = moved.unwrap_or_else(|| panic!("the target got no re-INVITE\n{}", target.report()));
    assert_eq!(moved, first_leg, "the target is moved onto the transferor's leg of the first call");
    assert_ne!(moved, consult_leg);
    assert!(
        target.wait_line("moved", Duration::from_secs(5)),
        "the re-INVITE's 200 was acknowledged\n{}",
        target.report()
    );
    let relay_c = std::net::SocketAddr::from(([127, 0, 0, 1], moved.parse::<u16>().unwrap()));
    // The transferee and the target hear each other.
    assert_both_ways(&exchange_rtp(&b, relay_b, &c, relay_c, PACKETS), PACKETS);

    // The transferor: 202, NOTIFY 100, NOTIFY 200 and a BYE in the first call, a BYE in the second.
    transferor.succeeds();
    let lines = transferor.log_lines();
    let first_call: Vec<&str> =
        lines.iter().map(String::as_str).filter(|l| l.starts_with("notify=") || *l == "bye_transfer").collect();
    assert_eq!(first_call, ["notify=100", "notify=200", "bye_transfer"], "what the transferor got in the first call");
    assert!(
        lines.iter().any(|l| l == "bye_consult"),
        "the transferor was not released from the second call: {lines:?}"
    );
    // 1003 hangs up: the BYE reaches 1002.
    target.succeeds();
    transferee.succeeds();
    assert_eq!(bench.count_log("attended transfer done"), 1);

    // Two CDRs: the consultation call's, ended by the transfer, and the first
    // call's, which 1003 ended; each names its own call.
    let records = bench.cdrs(2);
    assert_eq!(records.len(), 2, "{records:?}");
    let (first, consult) = (cdr_to(&records, "1002"), cdr_to(&records, "1003"));
    for cdr in [first, consult] {
        assert_eq!(cdr["caller"], "1001", "{cdr}");
        assert_eq!(cdr["disposition"], "answered", "{cdr}");
    }
    let call_id = |role: &str| transferor.logged(&format!("call_id_{role}"), Duration::ZERO).unwrap_or_default();
    assert_eq!(consult["call_id"], call_id("consult"), "{consult}");
    assert_eq!(first["call_id"], call_id("transfer"), "the first call's CDR keeps its Call-ID: {first}");
    assert!(first["billable_s"].as_f64().unwrap() > consult["billable_s"].as_f64().unwrap() + 3.0, "{records:?}");
}
