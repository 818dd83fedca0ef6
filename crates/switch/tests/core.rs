//! The SIP core driven directly with bytes and a fake clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dialog_layer::registrar::LocationService;
use sip_transport::{HeaderName, SipMessage, Transport};
use switch::SipCore;

mod common;
use common::*;

#[test]
fn register_is_challenged_then_accepted() {
    let t0 = Instant::now();
    let mut core = SipCore::new(settings(), t0);
    let src = source(0, "10.0.0.5:40000");
    let (resp, to) = one(core.handle_message(register("1001", "z9hG4bK1", 1, None, ""), src, t0));
    assert_eq!(resp.status(), Some(401));
    assert_eq!(to, "10.0.0.5:40000".parse().unwrap(), "rport: answer to the source port");
    assert_eq!(resp.top_via().unwrap().rport(), Some(Some("40000")));
    let challenge = resp.first(HeaderName::WwwAuthenticate).unwrap().to_string();
    let auth = credentials(&challenge, "1001", "demo1001", "sip:127.0.0.1", 1);
    let (resp, _) = one(core.handle_message(register("1001", "z9hG4bK2", 2, Some(&auth), ""), src, t0));
    assert_eq!(resp.status(), Some(200), "{:?}", resp.reason());
    let contact = resp.first(HeaderName::Contact).unwrap();
    assert!(contact.contains("sip:1001@10.0.0.5:5062") && contact.contains("expires=3600"), "{contact}");
    assert_eq!(core.location().bindings("1001", t0).len(), 1);
    // Gone exactly when it expires.
    assert_eq!(core.location().bindings("1001", t0 + Duration::from_secs(3600)).len(), 0);
}

#[test]
fn wrong_password_is_challenged_again_and_guessing_is_refused() {
    let t0 = Instant::now();
    let mut core = SipCore::new(settings(), t0);
    let src = source(0, "10.0.0.6:40000");
    let mut now = t0;
    let mut refused = false;
    let mut delays = Vec::new();
    for i in 0..40u32 {
        let (resp, _) = one(core.handle_message(register("1001", &format!("z9hG4bKa{i}"), 2 * i + 1, None, ""), src, now));
        if resp.status() == Some(403) {
            refused = true;
            break;
        }
        let challenge = resp.first(HeaderName::WwwAuthenticate).unwrap().to_string();
        let auth = credentials(&challenge, "1001", "wrong", "sip:127.0.0.1", 1);
        let out = core.handle_message(register("1001", &format!("z9hG4bKb{i}"), 2 * i + 2, Some(&auth), ""), src, now);
        // After a few failures the challenge is held back: run the clock until it goes.
        let held_back = out.is_empty();
        let sent_at = now;
        let mut out = out;
        while out.is_empty() && now < sent_at + Duration::from_secs(10) {
            now = core.poll_timeout().unwrap();
            out = core.handle_timeout(now);
        }
        if held_back {
            delays.push(now - sent_at);
        }
        let (resp, _) = one(out);
        assert!(matches!(resp.status(), Some(401 | 403)), "{:?}", resp.status());
        now += Duration::from_millis(10);
    }
    assert!(refused, "repeated failures end in 403");
    // free_failures = 3, then 0.5 s more per failure up to 4 s.
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, [500, 1000, 1500, 2000, 2500, 3000]);
    assert!(core.stats().auth_bans >= 1);
    assert!(core.banned_sources(now) >= 1);
}

#[test]
fn external_profile_only_answers_trunks() {
    let t0 = Instant::now();
    let mut core = SipCore::new(settings(), t0);
    let options = |branch: &str| {
        Bytes::from(format!(
            "OPTIONS sip:127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:carrier@192.0.2.10>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-{branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    let (resp, _) = one(core.handle_message(options("z9hG4bKx1"), source(1, "198.51.100.1:5060"), t0));
    assert_eq!(resp.status(), Some(403));
    let (resp, _) = one(core.handle_message(options("z9hG4bKx2"), source(1, "192.0.2.10:5060"), t0));
    assert_eq!(resp.status(), Some(200));
    for h in [HeaderName::Allow, HeaderName::Accept, HeaderName::Supported] {
        assert!(resp.first(h).is_some(), "OPTIONS 200 carries {}", h.as_str());
    }
}

#[test]
fn unknown_method_and_retransmission() {
    let t0 = Instant::now();
    let mut core = SipCore::new(settings(), t0);
    let msg = Bytes::from_static(b"FOO sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKfoo\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: foo\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n");
    let (resp, _) = one(core.handle_message(msg.clone(), source(0, "10.0.0.5:5060"), t0));
    assert_eq!(resp.status(), Some(501));
    let msg = Bytes::from_static(b"SUBSCRIBE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKsub\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: sub\r\nCSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n");
    let (first, _) = one(core.handle_message(msg.clone(), source(0, "10.0.0.5:5060"), t0));
    assert_eq!(first.status(), Some(405));
    assert!(first.first(HeaderName::Allow).is_some());
    // The retransmission is answered from the transaction, identically.
    let (again, _) = one(core.handle_message(msg, source(0, "10.0.0.5:5060"), t0 + Duration::from_millis(500)));
    assert_eq!(again.raw(), first.raw());
}

#[test]
fn invite_to_unknown_user_after_auth_is_404_and_hops_are_checked() {
    let t0 = Instant::now();
    let mut core = SipCore::new(settings(), t0);
    let invite = |mf: u8, branch: &str| {
        Bytes::from(format!(
            "INVITE sip:9999@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch={branch}\r\nMax-Forwards: {mf}\r\nFrom: <sip:1001@127.0.0.1>;tag=1\r\nTo: <sip:9999@127.0.0.1>\r\nCall-ID: inv-{branch}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    let (resp, _) = one(core.handle_message(invite(70, "z9hG4bKi1"), source(0, "10.0.0.5:5060"), t0));
    assert_eq!(resp.status(), Some(407));
    assert!(resp.first(HeaderName::ProxyAuthenticate).is_some());
    assert!(resp.to().unwrap().tag().is_some(), "a final response carries a To tag");
    let (resp, _) = one(core.handle_message(invite(0, "z9hG4bKi2"), source(0, "10.0.0.5:5060"), t0));
    assert_eq!(resp.status(), Some(483));
}

#[test]
fn rfc4475_through_the_core() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/rfc4475");
    if !dir.is_dir() {
        println!("RFC 4475 messages not found at {}: skipping", dir.display());
        return;
    }
    // What the core answers to each torture message sent to the internal profile.
    let table = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rfc4475-expected.txt")).unwrap();
    let expected: Vec<(&str, Option<u16>)> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(name, code)| (name, code.trim().parse().ok()))
        .collect();
    assert_eq!(expected.len(), 49);
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for (i, (name, want)) in expected.iter().enumerate() {
        let data = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        // A fresh core for each: several messages of the corpus share a branch
        // and sent-by, so one switch would take them for retransmissions.
        let mut core = SipCore::new(settings(), t0);
        let out = core.handle_message(Bytes::from(data), source(0, &format!("192.0.2.1:{}", 6000 + i)), t0);
        let got = out.first().and_then(|t| SipMessage::parse(t.data.clone()).ok()).and_then(|m| m.status());
        if got != *want {
            let reason = out.first().map(|t| String::from_utf8_lossy(&t.data).lines().next().unwrap_or("").to_string());
            failures.push(format!("{name}: expected {want:?}, got {got:?} {reason:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn authenticated_invites_follow_the_dial_plan() {
    let t0 = Instant::now();
    let mut core = SipCore::new(settings(), t0);
    let src = source(0, "10.0.0.5:5062");
    let invite = |number: &str, branch: &str, auth: Option<&str>| {
        let auth = auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
        Bytes::from(format!(
            "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch={branch}\r\nMax-Forwards: 70\r\n\
From: <sip:1001@127.0.0.1>;tag=f{branch}\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: dp-{branch}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:1001@10.0.0.5:5062>\r\n{auth}Content-Length: 0\r\n\r\n"
        ))
    };
    for (number, want) in [("486", 486), ("1002", 480), ("1099", 404), ("5555", 404)] {
        let (challenge, _) = one(core.handle_message(invite(number, &format!("z9hG4bKc{number}"), None), src, t0));
        let challenge = challenge.first(HeaderName::ProxyAuthenticate).unwrap().to_string();
        let auth = credentials_for("INVITE", &challenge, "1001", "demo1001", &format!("sip:{number}@127.0.0.1"), 1);
        let (resp, _) = one(core.handle_message(invite(number, &format!("z9hG4bKa{number}"), Some(&auth)), src, t0));
        assert_eq!(resp.status(), Some(want), "dialling {number}: {:?}", resp.reason());
    }
}

/// An authenticated INVITE to `number` with a PCMU offer; returns the final response.
fn call(core: &mut SipCore, number: &str, call_id: &str, now: Instant) -> SipMessage {
    let src = source(0, "10.0.0.5:5062");
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let invite = |branch: &str, cseq: u32, auth: Option<&str>| {
        let auth = auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
        Bytes::from(format!(
            "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch={branch}\r\nMax-Forwards: 70\r\n\
From: <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
Contact: <sip:1001@10.0.0.5:5062>\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ))
    };
    let (challenge, _) = one(core.handle_message(invite(&format!("z9hG4bK{call_id}1"), 1, None), src, now));
    let challenge = challenge.first(HeaderName::ProxyAuthenticate).unwrap().to_string();
    let auth = credentials_for("INVITE", &challenge, "1001", "demo1001", &format!("sip:{number}@127.0.0.1"), 1);
    one(core.handle_message(invite(&format!("z9hG4bK{call_id}2"), 2, Some(&auth)), src, now)).0
}

fn in_dialog(method: &str, branch: &str, call_id: &str, to_tag: &str, cseq: u32) -> Bytes {
    Bytes::from(format!(
        "{method} sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch={branch}\r\nMax-Forwards: 70\r\n\
From: <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:6000@127.0.0.1>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n"
    ))
}

#[tokio::test]
async fn an_echo_call_resends_its_2xx_until_ack_and_ends_on_bye() {
    let t0 = Instant::now();
    let relay = media_relay::MediaRelay::new(media_relay::RelayConfig { port_min: 33000, port_max: 33099, ..Default::default() }).unwrap();
    let mut core = SipCore::new(settings(), t0).with_media(relay.clone());
    let ok = call(&mut core, "6000", "echo-1", t0);
    assert_eq!(ok.status(), Some(200));
    let body = String::from_utf8_lossy(ok.body()).to_string();
    assert!(body.contains("m=audio 330") && body.contains("RTP/AVP 0 101"), "anchored in our range, PCMU and events: {body}");
    assert_eq!(relay.port_usage().legs_in_use, 1);
    let to_tag = ok.to().unwrap().tag().unwrap().to_string();
    // No ACK yet: the 2xx comes again at T1, then 2×T1 later.
    let again = core.handle_timeout(t0 + Duration::from_millis(500));
    assert!(again.iter().any(|t| t.data == ok.raw()), "resent at 500 ms");
    assert!(core.handle_timeout(t0 + Duration::from_millis(1000)).iter().all(|t| t.data != ok.raw()), "not before 1.5 s");
    assert!(core.handle_timeout(t0 + Duration::from_millis(1500)).iter().any(|t| t.data == ok.raw()));
    // The ACK stops it.
    assert!(core.handle_message(in_dialog("ACK", "z9hG4bKack", "echo-1", &to_tag, 2), source(0, "10.0.0.5:5062"), t0 + Duration::from_millis(1600)).is_empty());
    assert!(core.handle_timeout(t0 + Duration::from_millis(3500)).iter().all(|t| t.data != ok.raw()), "no more after the ACK");
    // BYE with the wrong tag is not this call; with the right one it ends it.
    let (resp, _) = one(core.handle_message(in_dialog("BYE", "z9hG4bKbye0", "echo-1", "other", 3), source(0, "10.0.0.5:5062"), t0));
    assert_eq!(resp.status(), Some(481));
    let (resp, _) = one(core.handle_message(in_dialog("BYE", "z9hG4bKbye1", "echo-1", &to_tag, 3), source(0, "10.0.0.5:5062"), t0));
    assert_eq!(resp.status(), Some(200));
    assert_eq!(core.call_count(), 0);
    // The media task stops and gives the port back.
    for _ in 0..100 {
        if relay.port_usage().legs_in_use == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(relay.port_usage().legs_in_use, 0);
}

#[test]
fn echo_without_a_media_relay_is_503() {
    let t0 = Instant::now();
    let mut core = SipCore::new(settings(), t0);
    assert_eq!(call(&mut core, "6000", "echo-2", t0).status(), Some(503), "no media relay");
}

/// The carrier's answer to one of our REGISTERs, as it arrives.
fn carrier_answer(req: &SipMessage, status: u16, headers: &[(&str, &str)]) -> Bytes {
    let mut w = sip_transport::writer::response_to(req, EXTERNAL.parse().unwrap(), status, "Carrier", Some("c1"));
    for (name, value) in headers {
        w.header(name, value);
    }
    w.finish_empty()
}

#[test]
fn a_registering_trunk_goes_through_client_transactions() {
    use dialog_layer::registration::RegistrationState;
    use switch::{Credentials, Gateway, TrunkRegister};

    let carrier = "192.0.2.10:5060";
    let mut s = settings();
    s.trunks[0].gateway = Some(Gateway { domain: carrier.into(), addr: carrier.parse().unwrap(), transport: Transport::Udp });
    s.trunks[0].credentials = Some(Credentials { username: "acct77".into(), password: "s3cret".into() });
    s.trunks[0].register =
        Some(TrunkRegister { user: "4420001".into(), expires: 600, retry_min: Duration::from_secs(5), retry_max: Duration::from_secs(60) });
    let t0 = Instant::now();
    let mut core = SipCore::new(s, t0);
    assert_eq!(core.poll_timeout(), Some(t0), "the first REGISTER is due at once");
    let (register, to) = one(core.handle_timeout(t0));
    assert_eq!(to, carrier.parse().unwrap());
    assert_eq!(register.first(HeaderName::Contact), Some("<sip:4420001@127.0.0.1:5080>"), "from the external listener");

    // The challenge is answered at once; the 200 makes the trunk registered.
    let challenge = carrier_answer(&register, 401, &[("WWW-Authenticate", "Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5")]);
    let (again, _) = one(core.handle_message(challenge, source(1, carrier), t0));
    assert!(again.first(HeaderName::Authorization).is_some_and(|a| a.contains("username=\"acct77\"")));
    assert!(core.handle_message(carrier_answer(&again, 200, &[("Expires", "120")]), source(1, carrier), t0).is_empty());
    assert_eq!(core.trunk_registrations().state("carrier"), Some(&RegistrationState::Registered { until: t0 + Duration::from_secs(120) }));
    assert_eq!(core.trunk_registrations().counts(), (1, 0));

    // The refresh (at 90 s) goes unanswered: retransmitted over UDP until timer F fails it.
    let refresh_at = t0 + Duration::from_secs(90);
    let mut sent = 0;
    while let Some(t) = core.poll_timeout().filter(|&t| t <= refresh_at + Duration::from_secs(33)) {
        sent += core.handle_timeout(t).iter().filter(|m| m.target.remote == carrier.parse().unwrap()).count();
    }
    assert!(sent > 3, "the refresh and its retransmissions: {sent}");
    assert!(matches!(
        core.trunk_registrations().state("carrier"),
        Some(RegistrationState::Failed { status: 408, retry_at, .. }) if *retry_at == refresh_at + Duration::from_secs(32 + 5)
    ));
    assert_eq!(core.trunk_registrations().counts(), (0, 1));
}
