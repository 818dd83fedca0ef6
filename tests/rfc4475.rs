//! Every RFC 4475 torture message, sent as a UDP datagram to the running binary:
//! each gets the answer `tests/rfc4475-expected.txt` names (or none), and the
//! switch is still alive and answering OPTIONS afterwards.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ENDPOINTS, Switch};
use sip_transport::{HeaderName, SipMessage};

struct Case {
    name: String,
    want: Option<u16>,
    data: Vec<u8>,
    call_id: Option<String>,
    /// Branch, sent-by and method: what a server transaction is matched by.
    tx_key: Option<String>,
}

impl Case {
    fn load(dir: &Path, name: &str, want: Option<u16>) -> Case {
        let data = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let msg = SipMessage::parse(Bytes::from(data.clone())).ok();
        let call_id = msg.as_ref().and_then(|m| m.first(HeaderName::CallId).map(str::to_string));
        let tx_key = msg.as_ref().and_then(|m| {
            let via = m.top_via().ok()?;
            let method = m.method()?.as_str().replace("ACK", "INVITE");
            Some(format!("{:?} {} {:?} {method}", via.branch(), via.host.to_ascii_lowercase(), via.port))
        });
        Case { name: name.to_string(), want, data, call_id, tx_key }
    }
}

/// The status of the first response to `call_id` that arrives on any of
/// `sockets` within `wait`. Other datagrams are retransmissions of earlier
/// answers (timer G resends a final response to an INVITE until it is ACKed).
fn receive_status(sockets: &[UdpSocket], call_id: Option<&str>, wait: Duration) -> Option<(u16, String)> {
    let end = Instant::now() + wait;
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        for s in sockets {
            let Ok(n) = s.recv(&mut buf) else { continue };
            let Ok(resp) = SipMessage::parse(Bytes::copy_from_slice(&buf[..n])) else { continue };
            if resp.first(HeaderName::CallId) == call_id {
                let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
                return resp.status().map(|code| (code, line));
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
    let cases: Vec<Case> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(name, code)| Case::load(&dir, name, code.trim().parse().ok()))
        .collect();
    assert_eq!(cases.len(), 49);

    // Several messages of the corpus share a branch, sent-by and method: to one
    // switch the later ones are retransmissions (RFC 3261 §17.2.3). So the corpus
    // is split into rounds without such collisions, each against a fresh switch.
    let mut rounds: Vec<Vec<&Case>> = Vec::new();
    for case in &cases {
        let collides = |round: &Vec<&Case>| case.tx_key.is_some() && round.iter().any(|c| c.tx_key == case.tx_key);
        match rounds.iter_mut().find(|r| !collides(r)) {
            Some(round) => round.push(case),
            None => rounds.push(vec![case]),
        }
    }

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
    for round in &rounds {
        let switch = Switch::start("rfc4475", ENDPOINTS);
        let target = switch.addr("internal", "udp", false);
        for case in round {
            sockets[0].send_to(&case.data, target).unwrap();
            let wait = if case.want.is_some() { Duration::from_secs(3) } else { Duration::from_millis(300) };
            let got = receive_status(&sockets, case.call_id.as_deref(), wait);
            if got.as_ref().map(|g| g.0) != case.want {
                failures.push(format!("{}: expected {:?}, got {got:?}", case.name, case.want));
            }
        }
        // After all of it: alive and answering.
        let options = format!(
            "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.44:5060;branch=z9hG4bKalive;rport\r\nMax-Forwards: 70\r\n\
From: <sip:probe@127.0.0.44>;tag=1\r\nTo: <sip:{target}>\r\nCall-ID: alive-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        sockets[0].send_to(options.as_bytes(), target).unwrap();
        let alive = receive_status(&sockets, Some("alive-1"), Duration::from_secs(3));
        assert_eq!(alive.map(|g| g.0), Some(200), "alive and answering OPTIONS");
        assert!(switch.stop().success(), "a clean exit on SIGTERM");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
