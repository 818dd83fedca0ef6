//! Every RFC 4475 torture message, sent as a UDP datagram to the running binary:
//! each gets the answer `tests/rfc4475-expected.txt` names (or none), and the
//! switch is still alive and answering OPTIONS afterwards.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{ENDPOINTS, Switch};

/// The status of the first response that arrives on any of `sockets` within `wait`.
fn receive_status(sockets: &[UdpSocket], wait: Duration) -> Option<(u16, String)> {
    let end = Instant::now() + wait;
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        for s in sockets {
            if let Ok(n) = s.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = text.lines().next().unwrap_or("").to_string();
                let code = line.split(' ').nth(1).and_then(|c| c.parse().ok())?;
                return Some((code, line));
            }
        }
    }
    None
}

#[test]
fn every_torture_message_gets_its_answer_and_the_switch_survives() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rfc4475");
    if !dir.is_dir() {
        println!("RFC 4475 messages not found at {}: skipping", dir.display());
        return;
    }
    let table = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475-expected.txt")).unwrap();
    let expected: Vec<(&str, Option<u16>)> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(name, code)| (name, code.trim().parse().ok()))
        .collect();
    assert_eq!(expected.len(), 49);

    let switch = Switch::start("rfc4475", ENDPOINTS);
    let target = switch.addr("internal", "udp", false);
    // Responses go where each message's Via says: its sent-by port (5050, 5060,
    // 5070 in the corpus) at the source address, or the source port with rport.
    // A loopback address of our own makes those ports ours.
    let sockets: Vec<UdpSocket> = [5060, 5050, 5070]
        .iter()
        .map(|p| {
            let s = UdpSocket::bind(("127.0.0.44", *p)).expect("bind 127.0.0.44 (loopback)");
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            s
        })
        .collect();
    let mut failures = Vec::new();
    for (name, want) in &expected {
        let data = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        sockets[0].send_to(&data, target).unwrap();
        let wait = if want.is_some() { Duration::from_secs(3) } else { Duration::from_millis(300) };
        let got = receive_status(&sockets, wait);
        if got.as_ref().map(|g| g.0) != *want {
            failures.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let options = format!(
        "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.44:5060;branch=z9hG4bKalive;rport\r\nMax-Forwards: 70\r\n\
From: <sip:probe@127.0.0.44>;tag=1\r\nTo: <sip:{target}>\r\nCall-ID: alive-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sockets[0].send_to(options.as_bytes(), target).unwrap();
    assert_eq!(receive_status(&sockets, Duration::from_secs(3)).map(|g| g.0), Some(200), "alive and answering");
    assert!(switch.stop().success(), "a clean exit on SIGTERM");
}
