//! The B2BUA driven through the SIP core with bytes and a fake clock: the
//! caller and the callee's phones are played by the test, the time only moves
//! when the test says so.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialog_layer::registrar::{Binding, LocationService};
use dialog_layer::transaction::Transmit;
use media_relay::{MediaRelay, RelayConfig};
use sip_transport::writer::response_to;
use sip_transport::{HeaderName, Method, SipMessage, Source, Transport};
use switch::dialplan::{Destination, NumberMatch, Rule, Template};
use switch::{Credentials, Gateway, SipCore};

use common::*;

const CALLER: &str = "10.0.0.5:5062";
const PHONE_A: &str = "10.0.0.7:5062";
const PHONE_B: &str = "10.0.0.8:5062";
const CARRIER: &str = "192.0.2.10:5060";

const CALLER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn callee_sdp(version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=- 7 {version} IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )
}

/// A core with a relay (ports 33100-33199) whose dial plan sends 9… to the trunk.
fn core(now: Instant) -> (SipCore, MediaRelay) {
    let mut s = settings();
    s.trunks[0].gateway = Some(Gateway { domain: "carrier.example".into(), addr: CARRIER.parse().unwrap(), transport: Transport::Udp });
    s.trunks[0].credentials = Some(Credentials { username: "acct77".into(), password: "s3cret".into() });
    let trunk = Destination::Trunk { trunk: "carrier".into(), number: Template::parse("+${rest}").unwrap() };
    s.dialplan.internal.push(Rule::new(NumberMatch::Prefix("9".into()), trunk, Duration::from_secs(60)).unwrap());
    let relay = MediaRelay::new(RelayConfig { port_min: 33100, port_max: 33199, ..Default::default() }).unwrap();
    (SipCore::new(s, now).with_media(relay.clone()), relay)
}

/// Binds `phones` to endpoint 1002 as if they had registered over UDP.
fn register_phones(core: &SipCore, phones: &[&str], now: Instant) {
    register_as(core, "1002", phones, now);
}

fn register_as(core: &SipCore, aor: &str, phones: &[&str], now: Instant) {
    let bindings = phones
        .iter()
        .map(|p| Binding {
            contact: format!("sip:{aor}@{p}"),
            q: None,
            expires_at: now + Duration::from_secs(3600),
            call_id: format!("reg-{p}"),
            cseq: 1,
            source: source(0, p),
        })
        .collect();
    core.location().replace(aor, bindings);
}

fn parse(t: &Transmit) -> SipMessage {
    SipMessage::parse(t.data.clone()).unwrap()
}

/// The messages in `out` sent to `to`.
fn sent_to(out: &[Transmit], to: &str) -> Vec<SipMessage> {
    out.iter().filter(|t| t.target.remote == to.parse::<SocketAddr>().unwrap()).map(parse).collect()
}

fn status_to(out: &[Transmit], to: &str) -> Vec<u16> {
    sent_to(out, to).iter().filter_map(SipMessage::status).collect()
}

fn request_to(out: &[Transmit], to: &str, method: Method) -> Option<SipMessage> {
    sent_to(out, to).into_iter().find(|m| m.method() == Some(&method))
}

/// The caller's authenticated INVITE to `number`; returns what the core sent.
fn dial(core: &mut SipCore, number: &str, call_id: &str, now: Instant) -> Vec<Transmit> {
    dial_with(core, number, call_id, "", now)
}

/// As [`dial`], with `extra` header lines in the INVITE.
fn dial_with(core: &mut SipCore, number: &str, call_id: &str, extra: &str, now: Instant) -> Vec<Transmit> {
    // An INVITE without SDP when `extra` says so (a delayed offer).
    let (content_type, sdp) = if extra.contains("X-No-Offer") { ("", "") } else { ("Content-Type: application/sdp\r\n", CALLER_SDP) };
    let invite = |branch: &str, cseq: u32, auth: &str| {
        Bytes::from(format!(
            "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\nMax-Forwards: 70\r\n\
From: \"Alice\" <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
Contact: <sip:1001@{CALLER}>\r\n{extra}{auth}{content_type}Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ))
    };
    let out = core.handle_message(invite(&format!("z9hG4bK{call_id}1"), 1, ""), source(0, CALLER), now);
    let (challenge, _) = one(out.clone());
    if challenge.status() != Some(407) {
        return out;
    }
    let ack = format!(
        "ACK sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{call_id}1\r\nMax-Forwards: 70\r\n\
From: \"Alice\" <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:{number}@127.0.0.1>;tag={}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
        challenge.to().unwrap().tag().unwrap()
    );
    assert!(core.handle_message(Bytes::from(ack), source(0, CALLER), now).is_empty());
    let challenge = challenge.first(HeaderName::ProxyAuthenticate).unwrap().to_string();
    let auth = credentials_for("INVITE", &challenge, "1001", "demo1001", &format!("sip:{number}@127.0.0.1"), 1);
    let auth = format!("Proxy-Authorization: {auth}\r\n");
    core.handle_message(invite(&format!("z9hG4bK{call_id}2"), 2, &auth), source(0, CALLER), now)
}

/// A phone's response to a request the core sent it.
fn answer(req: &SipMessage, from: &str, code: u16, to_tag: &str, sdp: Option<&str>) -> Bytes {
    let mut w = response_to(req, from.parse().unwrap(), code, "Phone", Some(to_tag));
    w.header("Contact", format_args!("<sip:1002@{from}>"));
    match sdp {
        Some(body) => w.finish(Some("application/sdp"), body.as_bytes()),
        None => w.finish_empty(),
    }
}

/// A request from a phone inside the dialog the core's request `created` made
/// (the phone answered it with `phone_tag`).
fn phone_request(created: &SipMessage, phone: &str, phone_tag: &str, method: &str, cseq: u32, sdp: Option<&str>) -> Bytes {
    let from = created.to().unwrap();
    let to = created.from().unwrap();
    let body = sdp.unwrap_or("");
    let ct = if sdp.is_some() { "Content-Type: application/sdp\r\n" } else { "" };
    Bytes::from(format!(
        "{method} sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK{method}{cseq}{phone_tag}\r\n\
Max-Forwards: 70\r\nFrom: <{}>;tag={phone_tag}\r\nTo: <{}>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:x@{phone}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        from.uri,
        to.uri,
        to.tag().unwrap(),
        created.call_id().unwrap(),
        body.len()
    ))
}

/// A request from the caller inside its dialog with the core (`ok` is our 2xx).
fn caller_request(ok: &SipMessage, method: &str, cseq: u32, sdp: Option<&str>) -> Bytes {
    let body = sdp.unwrap_or("");
    let ct = if sdp.is_some() { "Content-Type: application/sdp\r\n" } else { "" };
    Bytes::from(format!(
        "{method} sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKc{method}{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:1002@127.0.0.1>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:1001@{CALLER}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        ok.to().unwrap().tag().unwrap(),
        ok.call_id().unwrap(),
        body.len()
    ))
}

fn body(m: &SipMessage) -> String {
    String::from_utf8_lossy(m.body()).into_owned()
}

fn src(addr: &str) -> Source {
    source(0, addr)
}

#[tokio::test]
async fn every_contact_rings_the_first_answer_wins_and_the_other_is_cancelled() {
    let t0 = Instant::now();
    let (mut core, relay) = core(t0);
    register_phones(&core, &[PHONE_A, PHONE_B], t0);
    let out = dial(&mut core, "1002", "fork", t0);
    assert_eq!(status_to(&out, CALLER), vec![100], "100 Trying at once");
    let invite_a = request_to(&out, PHONE_A, Method::Invite).expect("phone A rings");
    let invite_b = request_to(&out, PHONE_B, Method::Invite).expect("phone B rings");
    assert_ne!(invite_a.call_id().unwrap(), "fork", "the callee side is a dialog of its own");
    assert!(invite_a.first(HeaderName::From).unwrap().starts_with("\"Alice\" <sip:1001@"), "caller ID kept");
    assert_eq!(invite_a.max_forwards().unwrap(), Some(69));
    let offer = body(&invite_a);
    assert!(offer.contains("c=IN IP4 127.0.0.1") && offer.contains("m=audio 331") && offer.contains("RTP/AVP 0 8 101"), "{offer}");
    assert_eq!(relay.port_usage().legs_in_use, 2, "one leg per side");

    // A rings: the caller hears 180 in its early dialog.
    let out = core.handle_message(answer(&invite_a, PHONE_A, 180, "ta", None), src(PHONE_A), t0);
    let ringing = sent_to(&out, CALLER);
    assert_eq!(ringing.len(), 1);
    assert_eq!(ringing[0].status(), Some(180));
    let caller_tag = ringing[0].to().unwrap().tag().unwrap().to_string();

    // B answers: ACK to B, CANCEL to A (which rang), 200 to the caller with PCMA only.
    let t1 = t0 + Duration::from_secs(3);
    let out = core.handle_message(answer(&invite_b, PHONE_B, 200, "tb", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_B), t1);
    let ack = request_to(&out, PHONE_B, Method::Ack).expect("the 2xx is acknowledged");
    assert_eq!(ack.cseq().unwrap().seq, 1);
    assert_eq!(ack.request_uri(), Some(format!("sip:1002@{PHONE_B}").as_str()), "to the callee's Contact");
    let cancel = request_to(&out, PHONE_A, Method::Cancel).expect("the other fork is cancelled");
    assert_eq!(cancel.top_via().unwrap().branch(), invite_a.top_via().unwrap().branch());
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).expect("the caller is answered");
    assert_eq!(ok.to().unwrap().tag(), Some(caller_tag.as_str()), "in the same dialog as the 180");
    let sdp = body(&ok);
    assert!(sdp.contains("RTP/AVP 8 101") && !sdp.contains("a=rtpmap:0 "), "only what the callee took: {sdp}");

    // A: 200 to the CANCEL and 487 to its INVITE (acknowledged by the transaction layer).
    assert!(core.handle_message(answer(&cancel, PHONE_A, 200, "ta", None), src(PHONE_A), t1).is_empty());
    let out = core.handle_message(answer(&invite_a, PHONE_A, 487, "ta", None), src(PHONE_A), t1);
    assert!(request_to(&out, PHONE_A, Method::Ack).is_some());
    assert!(sent_to(&out, CALLER).is_empty());

    // The caller's ACK, then B hangs up: the caller gets a BYE.
    assert!(core.handle_message(caller_request(&ok, "ACK", 2, None), src(CALLER), t1).is_empty());
    let out = core.handle_message(phone_request(&invite_b, PHONE_B, "tb", "BYE", 1, None), src(PHONE_B), t1);
    assert_eq!(status_to(&out, PHONE_B), vec![200]);
    let bye = request_to(&out, CALLER, Method::Bye).expect("BYE to the caller");
    assert_eq!(bye.request_uri(), Some(format!("sip:1001@{CALLER}").as_str()));
    assert_eq!(bye.to().unwrap().tag(), Some("caller"));
    assert_eq!(core.call_count(), 0);
    for _ in 0..100 {
        if relay.port_usage().legs_in_use == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(relay.port_usage().legs_in_use, 0, "ports back once the call ended");
}

#[tokio::test]
async fn the_ring_timeout_cancels_the_fork_and_the_caller_gets_480() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    register_phones(&core, &[PHONE_A], t0);
    let out = dial(&mut core, "1002", "ring", t0);
    let invite = request_to(&out, PHONE_A, Method::Invite).unwrap();
    core.handle_message(answer(&invite, PHONE_A, 180, "ta", None), src(PHONE_A), t0);
    // Nothing happens before the 30 s of the rule.
    let mut now = t0;
    while let Some(t) = core.poll_timeout().filter(|&t| t < t0 + Duration::from_secs(30)) {
        now = t;
        let out = core.handle_timeout(t);
        assert!(sent_to(&out, CALLER).is_empty() && request_to(&out, PHONE_A, Method::Cancel).is_none(), "at {:?}", t - t0);
    }
    assert!(now < t0 + Duration::from_secs(30));
    let out = core.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(status_to(&out, CALLER), vec![480]);
    let cancel = request_to(&out, PHONE_A, Method::Cancel).expect("the phone stops ringing");
    core.handle_message(answer(&cancel, PHONE_A, 200, "ta", None), src(PHONE_A), t0 + Duration::from_secs(30));
    core.handle_message(answer(&invite, PHONE_A, 487, "ta", None), src(PHONE_A), t0 + Duration::from_secs(30));
    assert_eq!(core.call_count(), 0);
}

#[tokio::test]
async fn a_fork_that_never_answers_is_not_cancelled_but_the_call_is_cleaned_up() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    register_phones(&core, &[PHONE_A], t0);
    let out = dial(&mut core, "1002", "silent", t0);
    assert!(request_to(&out, PHONE_A, Method::Invite).is_some());
    // The INVITE is retransmitted (timer A) and times out at 64×T1 (timer B):
    // the caller hears 480, no CANCEL ever goes to a phone that never answered.
    let mut statuses = Vec::new();
    while let Some(t) = core.poll_timeout().filter(|&t| t <= t0 + Duration::from_secs(40)) {
        let out = core.handle_timeout(t);
        assert!(request_to(&out, PHONE_A, Method::Cancel).is_none());
        statuses.extend(status_to(&out, CALLER));
    }
    // (resent by timer G while the caller sends no ACK)
    assert!(!statuses.is_empty() && statuses.iter().all(|&s| s == 480), "{statuses:?}");
    assert_eq!(core.call_count(), 0);
}

#[tokio::test]
async fn a_cancelled_call_gives_487_and_cancels_every_fork() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    register_phones(&core, &[PHONE_A, PHONE_B], t0);
    let out = dial(&mut core, "1002", "cancel", t0);
    let invite_a = request_to(&out, PHONE_A, Method::Invite).unwrap();
    let invite_b = request_to(&out, PHONE_B, Method::Invite).unwrap();
    core.handle_message(answer(&invite_a, PHONE_A, 180, "ta", None), src(PHONE_A), t0);
    let cancel = Bytes::from(format!(
        "CANCEL sip:1002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKcancel2\r\nMax-Forwards: 70\r\n\
From: \"Alice\" <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:1002@127.0.0.1>\r\nCall-ID: cancel\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
    ));
    let out = core.handle_message(cancel, src(CALLER), t0);
    assert_eq!(status_to(&out, CALLER), vec![200, 487], "the CANCEL answered, then the INVITE");
    assert!(request_to(&out, PHONE_A, Method::Cancel).is_some(), "A rang: cancelled at once");
    assert!(request_to(&out, PHONE_B, Method::Cancel).is_none(), "B has not answered anything yet");
    // B's first provisional response releases its CANCEL.
    let out = core.handle_message(answer(&invite_b, PHONE_B, 180, "tb", None), src(PHONE_B), t0);
    assert!(request_to(&out, PHONE_B, Method::Cancel).is_some());
    assert!(sent_to(&out, CALLER).is_empty(), "nothing more for the caller");
    // A answers anyway (the CANCEL crossed its 200): it is acknowledged and hung up.
    let out = core.handle_message(answer(&invite_a, PHONE_A, 200, "ta", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_A), t0);
    assert!(request_to(&out, PHONE_A, Method::Ack).is_some());
    assert!(request_to(&out, PHONE_A, Method::Bye).is_some());
    core.handle_message(answer(&invite_b, PHONE_B, 487, "tb", None), src(PHONE_B), t0);
    assert_eq!(core.call_count(), 0);
}

#[tokio::test]
async fn the_callers_status_says_what_the_callees_said() {
    // (what each fork answers) -> what the caller gets
    let cases: [(&[u16], u16); 5] = [(&[486], 486), (&[404, 486], 486), (&[603, 486], 603), (&[500, 408], 480), (&[488], 488)];
    for (n, (answers, expected)) in cases.iter().enumerate() {
        let t0 = Instant::now();
        let (mut core, _relay) = core(t0);
        let phones = [PHONE_A, PHONE_B];
        register_phones(&core, &phones[..answers.len()], t0);
        let out = dial(&mut core, "1002", &format!("status{n}"), t0);
        let mut got = Vec::new();
        for (phone, code) in phones.iter().zip(answers.iter()) {
            let invite = request_to(&out, phone, Method::Invite).unwrap();
            got.extend(status_to(&core.handle_message(answer(&invite, phone, *code, "t", None), src(phone), t0), CALLER));
        }
        assert_eq!(got, vec![*expected], "{answers:?}");
        assert_eq!(core.call_count(), 0);
    }
}

#[tokio::test]
async fn an_unregistered_endpoint_is_480_and_an_unknown_one_404() {
    let t0 = Instant::now();
    let (mut core, relay) = core(t0);
    assert_eq!(status_to(&dial(&mut core, "1002", "offline", t0), CALLER), vec![480]);
    assert_eq!(status_to(&dial(&mut core, "1099", "nobody", t0), CALLER), vec![404]);
    assert_eq!(relay.port_usage().legs_in_use, 0, "nothing allocated for a call that cannot ring");
}

/// Sets up an answered call caller -> phone A; returns the caller's 200 and A's INVITE.
fn answered_call(core: &mut SipCore, call_id: &str, t0: Instant) -> (SipMessage, SipMessage) {
    answered_call_to(core, "1002", PHONE_A, "ta", call_id, t0)
}

/// As [`answered_call`], to endpoint `number` registered at `phone`, which answers with `tag`.
fn answered_call_to(core: &mut SipCore, number: &str, phone: &str, tag: &str, call_id: &str, t0: Instant) -> (SipMessage, SipMessage) {
    register_as(core, number, &[phone], t0);
    let out = dial(core, number, call_id, t0);
    let invite = request_to(&out, phone, Method::Invite).unwrap();
    let out = core.handle_message(answer(&invite, phone, 200, tag, Some(&callee_sdp(1, "sendrecv"))), src(phone), t0);
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    core.handle_message(caller_request(&ok, "ACK", 2, None), src(CALLER), t0);
    (ok, invite)
}

#[tokio::test]
async fn hold_and_resume_pass_through_with_the_direction_answered_per_rfc3264() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    let (ok, _) = answered_call(&mut core, "hold", t0);
    let hold = CALLER_SDP.replace("o=- 1 1", "o=- 1 2") + "a=sendonly\r\n";
    let out = core.handle_message(caller_request(&ok, "INVITE", 3, Some(&hold)), src(CALLER), t0);
    assert_eq!(status_to(&out, CALLER), vec![100]);
    let reinvite = request_to(&out, PHONE_A, Method::Invite).expect("the hold goes to the callee");
    let offer = body(&reinvite);
    assert!(offer.contains("a=sendonly") && offer.contains("RTP/AVP 8 101"), "in the callee's codecs: {offer}");
    assert_eq!(reinvite.to().unwrap().tag(), Some("ta"));
    assert_eq!(reinvite.cseq().unwrap().seq, 2, "the next CSeq in the callee's dialog");
    // The callee answers recvonly; the holder gets recvonly too, never sendrecv.
    let out = core.handle_message(answer(&reinvite, PHONE_A, 200, "ta", Some(&callee_sdp(2, "recvonly"))), src(PHONE_A), t0);
    let ack = request_to(&out, PHONE_A, Method::Ack).expect("ACK for the re-INVITE's 2xx");
    assert_eq!(ack.cseq().unwrap().seq, 2);
    let held = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).expect("the holder is answered");
    let answer_sdp = body(&held);
    assert!(answer_sdp.contains("a=recvonly") && answer_sdp.contains("o=tandem"), "{answer_sdp}");
    core.handle_message(caller_request(&ok, "ACK", 3, None), src(CALLER), t0);

    // Even if the callee (wrongly) answered sendrecv, the holder gets recvonly.
    let hold_again = CALLER_SDP.replace("o=- 1 1", "o=- 1 3") + "a=sendonly\r\n";
    let out = core.handle_message(caller_request(&ok, "INVITE", 4, Some(&hold_again)), src(CALLER), t0);
    let reinvite = request_to(&out, PHONE_A, Method::Invite).unwrap();
    let out = core.handle_message(answer(&reinvite, PHONE_A, 200, "ta", Some(&callee_sdp(3, "sendrecv"))), src(PHONE_A), t0);
    let held = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    assert!(body(&held).contains("a=recvonly"), "{}", body(&held));
    core.handle_message(caller_request(&ok, "ACK", 4, None), src(CALLER), t0);

    // Resume.
    let resume = CALLER_SDP.replace("o=- 1 1", "o=- 1 4");
    let out = core.handle_message(caller_request(&ok, "INVITE", 5, Some(&resume)), src(CALLER), t0);
    let reinvite = request_to(&out, PHONE_A, Method::Invite).unwrap();
    assert!(body(&reinvite).contains("a=sendrecv"));
    let out = core.handle_message(answer(&reinvite, PHONE_A, 200, "ta", Some(&callee_sdp(4, "sendrecv"))), src(PHONE_A), t0);
    let resumed = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    assert!(body(&resumed).contains("a=sendrecv"));

    // The same offer again (a session refresh) is answered here, not relayed.
    core.handle_message(caller_request(&ok, "ACK", 5, None), src(CALLER), t0);
    let out = core.handle_message(caller_request(&ok, "INVITE", 6, Some(&resume)), src(CALLER), t0);
    assert!(sent_to(&out, PHONE_A).is_empty(), "nothing for the callee");
    assert_eq!(status_to(&out, CALLER), vec![200]);
}

#[tokio::test]
async fn a_second_offer_while_one_is_relayed_gets_491() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    let (ok, invite) = answered_call(&mut core, "glare", t0);
    let hold = CALLER_SDP.replace("o=- 1 1", "o=- 1 2") + "a=sendonly\r\n";
    core.handle_message(caller_request(&ok, "INVITE", 3, Some(&hold)), src(CALLER), t0);
    let callee_offer = callee_sdp(2, "sendonly");
    let out = core.handle_message(phone_request(&invite, PHONE_A, "ta", "INVITE", 1, Some(&callee_offer)), src(PHONE_A), t0);
    assert_eq!(status_to(&out, PHONE_A), vec![491]);
}

#[tokio::test]
async fn the_switch_hangs_up_both_sides_when_media_stops() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    let (_ok, _invite) = answered_call(&mut core, "rtp", t0);
    // The relay's real timeout is a minute; the report it would send is fed directly.
    let event = media_relay::MediaEvent::Inactive { leg: media_relay::Leg::A, silent_for: Duration::from_secs(60) };
    let out = core.handle_media_report((1, Some(event)), t0);
    let (to_caller, to_callee) = (request_to(&out, CALLER, Method::Bye), request_to(&out, PHONE_A, Method::Bye));
    assert!(to_caller.is_some() && to_callee.is_some(), "BYE to both sides");
    assert!(to_caller.unwrap().other_header_values("Reason").next().is_some_and(|r| r.contains("RTP timeout")));
    assert_eq!(core.call_count(), 0);
}

/// One-way audio is logged and counted, never hung up on; during early media
/// it counts only if it lasts until the answer. The relay's reports are fed directly.
#[tokio::test]
async fn one_way_audio_is_counted_while_it_lasts() {
    use media_relay::{Leg, MediaEvent};
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    let one_way = |silent: Leg| Some(MediaEvent::OneWay { silent, silent_for: Duration::from_secs(5) });
    let counts = |core: &SipCore| (core.one_way_call_count(), core.stats().one_way_calls);
    register_phones(&core, &[PHONE_A], t0);
    let invite = request_to(&dial(&mut core, "1002", "one-way", t0), PHONE_A, Method::Invite).unwrap();
    core.handle_message(answer(&invite, PHONE_A, 183, "ta", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_A), t0);
    // The caller sends nothing while it hears early media: not counted yet.
    assert!(core.handle_media_report((1, one_way(Leg::A)), t0).is_empty());
    assert_eq!(counts(&core), (0, 0));
    // Still so at the answer: now it is.
    let out = core.handle_message(answer(&invite, PHONE_A, 200, "ta", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_A), t0);
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    core.handle_message(caller_request(&ok, "ACK", 2, None), src(CALLER), t0);
    assert_eq!(counts(&core), (1, 1));
    // The caller is heard: over. Then the callee goes silent: the call is counted once.
    assert!(core.handle_media_report((1, Some(MediaEvent::OneWayEnded { leg: Leg::A })), t0).is_empty());
    assert_eq!(counts(&core), (0, 1));
    assert!(core.handle_media_report((1, one_way(Leg::B)), t0).is_empty());
    assert_eq!(counts(&core), (1, 1));
    assert!(core.handle_media_report((99, one_way(Leg::A)), t0).is_empty(), "no such call");
    assert_eq!((core.call_count(), counts(&core)), (1, (1, 1)), "no BYE for one-way audio");
    // The call ends (B's RTP timeout) with B still silent: no longer one-way.
    let silent = MediaEvent::Inactive { leg: Leg::B, silent_for: Duration::from_secs(60) };
    assert!(request_to(&core.handle_media_report((1, Some(silent)), t0), CALLER, Method::Bye).is_some());
    assert_eq!((core.call_count(), counts(&core)), (0, (0, 1)));
}

#[tokio::test]
async fn a_trunk_challenge_is_answered_with_the_trunks_credentials() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    let out = dial(&mut core, "9442071234567", "trunk", t0);
    let invite = request_to(&out, CARRIER, Method::Invite).expect("to the gateway");
    assert_eq!(invite.request_uri(), Some("sip:+442071234567@carrier.example"), "number rewritten by the rule");
    assert!(invite.first(HeaderName::Via).unwrap().contains(EXTERNAL), "sent from the external listener");
    let mut w = response_to(&invite, CARRIER.parse().unwrap(), 407, "Proxy Authentication Required", Some("gw"));
    w.header("Proxy-Authenticate", "Digest realm=\"carrier\", nonce=\"abc\", qop=\"auth\"");
    let out = core.handle_message(w.finish_empty(), source(1, CARRIER), t0);
    assert!(request_to(&out, CARRIER, Method::Ack).is_some(), "the 407 is acknowledged");
    let again = request_to(&out, CARRIER, Method::Invite).expect("sent again");
    assert_eq!(again.cseq().unwrap().seq, 2);
    assert_eq!(again.call_id().unwrap(), invite.call_id().unwrap());
    let auth = again.first(HeaderName::ProxyAuthorization).expect("with credentials");
    assert!(auth.contains("username=\"acct77\"") && auth.contains("realm=\"carrier\""), "{auth}");
    assert!(sent_to(&out, CALLER).is_empty(), "the caller sees none of it");
    // A second challenge means the credentials are wrong: the caller gets 480.
    let mut w = response_to(&again, CARRIER.parse().unwrap(), 407, "Proxy Authentication Required", Some("gw"));
    w.header("Proxy-Authenticate", "Digest realm=\"carrier\", nonce=\"def\"");
    let out = core.handle_message(w.finish_empty(), source(1, CARRIER), t0);
    assert_eq!(status_to(&out, CALLER), vec![480]);
}

/// Runs the core's timers up to `until`, returning everything sent.
fn run_until(core: &mut SipCore, until: Instant) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(t) = core.poll_timeout().filter(|&t| t <= until) {
        out.extend(core.handle_timeout(t));
    }
    out
}

/// As [`run_until`], with the caller answering our session refreshes.
fn run_answering_caller(core: &mut SipCore, until: Instant) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(t) = core.poll_timeout().filter(|&t| t <= until) {
        let sent = core.handle_timeout(t);
        for refresh in sent_to(&sent, CALLER).iter().filter(|m| m.method() == Some(&Method::Invite)) {
            let ok = answer(refresh, CALLER, 200, "caller", Some(CALLER_SDP));
            out.extend(core.handle_message(ok, src(CALLER), t));
        }
        out.extend(sent);
    }
    out
}

#[tokio::test]
async fn session_timers_are_agreed_on_both_sides_and_a_missing_refresh_ends_the_call() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    register_phones(&core, &[PHONE_A], t0);
    // Too short an interval is refused with our minimum.
    let out = dial_with(&mut core, "1002", "short", "Supported: timer\r\nSession-Expires: 30\r\n", t0);
    let refused = sent_to(&out, CALLER);
    assert_eq!(refused[0].status(), Some(422));
    assert_eq!(refused[0].other_header_values("Min-SE").next(), Some("90"));

    let out = dial_with(&mut core, "1002", "timer", "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n", t0);
    let invite = request_to(&out, PHONE_A, Method::Invite).unwrap();
    assert_eq!(invite.other_header_values("Session-Expires").next(), Some("1800"), "we ask the callee for ours");
    assert!(invite.first(HeaderName::Supported).is_some_and(|s| s.contains("timer")));
    // The callee's 2xx names no timer: we refresh that side ourselves.
    let out = core.handle_message(answer(&invite, PHONE_A, 200, "ta", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_A), t0);
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    assert_eq!(ok.other_header_values("Session-Expires").next(), Some("120;refresher=uac"));
    assert_eq!(ok.first(HeaderName::Require), Some("timer"));
    core.handle_message(caller_request(&ok, "ACK", 2, None), src(CALLER), t0);

    // The caller refreshes at 60 s with an UPDATE: answered here, without SDP.
    let t60 = t0 + Duration::from_secs(60);
    assert!(run_until(&mut core, t60).iter().all(|t| !parse(t).is_request()), "no request before the refresh is due");
    let out = core.handle_message(caller_request(&ok, "UPDATE", 3, None), src(CALLER), t60);
    let refreshed = sent_to(&out, CALLER);
    assert_eq!(refreshed[0].status(), Some(200));
    assert!(refreshed[0].body().is_empty());
    assert!(sent_to(&out, PHONE_A).is_empty(), "a refresh is not relayed");
    // Then nothing: the session expires 120 - 32 s after that refresh; both sides get BYE.
    assert!(run_until(&mut core, t60 + Duration::from_secs(87)).iter().all(|t| parse(t).method() != Some(&Method::Bye)));
    let out = run_until(&mut core, t60 + Duration::from_secs(88));
    assert!(request_to(&out, CALLER, Method::Bye).is_some() && request_to(&out, PHONE_A, Method::Bye).is_some());
    assert_eq!(core.call_count(), 0);
}

#[tokio::test]
async fn we_refresh_the_callee_and_end_the_call_when_the_refresh_fails() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    register_phones(&core, &[PHONE_A], t0);
    let out = dial(&mut core, "1002", "refresh", t0);
    let first = request_to(&out, PHONE_A, Method::Invite).unwrap();
    // The phone wants at least an hour (422): the INVITE goes again asking for that.
    let mut w = response_to(&first, PHONE_A.parse().unwrap(), 422, "Session Interval Too Small", Some("ta"));
    w.header("Min-SE", "3600");
    let out = core.handle_message(w.finish_empty(), src(PHONE_A), t0);
    let invite = request_to(&out, PHONE_A, Method::Invite).expect("sent again");
    assert_eq!(invite.other_header_values("Session-Expires").next(), Some("3600"));
    assert_eq!(invite.cseq().unwrap().seq, 2);
    let mut w = response_to(&invite, PHONE_A.parse().unwrap(), 200, "OK", Some("ta"));
    w.header("Contact", format_args!("<sip:1002@{PHONE_A}>"));
    w.header("Session-Expires", "3600;refresher=uac");
    w.header("Require", "timer");
    let callee_answer = callee_sdp(1, "sendrecv");
    let out = core.handle_message(w.finish(Some("application/sdp"), callee_answer.as_bytes()), src(PHONE_A), t0);
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    core.handle_message(caller_request(&ok, "ACK", 2, None), src(CALLER), t0);

    // At half the interval we refresh the callee with the same SDP (same o= version).
    // The caller, which did not offer timers, is refreshed by us every 900 s.
    let out = run_answering_caller(&mut core, t0 + Duration::from_secs(1800));
    let refresh = request_to(&out, PHONE_A, Method::Invite).expect("our refresh");
    assert_eq!(refresh.other_header_values("Session-Expires").next(), Some("3600;refresher=uac"));
    assert!(body(&invite).contains("o=tandem") && body(&refresh).lines().nth(1) == body(&invite).lines().nth(1), "unchanged SDP");
    let caller_refreshes = sent_to(&out, CALLER).iter().filter(|m| m.method() == Some(&Method::Invite)).count();
    assert_eq!(caller_refreshes, 2, "at 900 s and 1800 s");
    let t1 = t0 + Duration::from_secs(1800);
    let out = core.handle_message(answer(&refresh, PHONE_A, 200, "ta", Some(&callee_answer)), src(PHONE_A), t1);
    assert!(request_to(&out, PHONE_A, Method::Ack).is_some());
    // The next refresh is refused (the phone lost the dialog): the call ends.
    let out = run_answering_caller(&mut core, t1 + Duration::from_secs(1800));
    let refresh = request_to(&out, PHONE_A, Method::Invite).expect("the next refresh");
    let out = core.handle_message(answer(&refresh, PHONE_A, 481, "ta", None), src(PHONE_A), t1 + Duration::from_secs(1800));
    assert!(request_to(&out, CALLER, Method::Bye).is_some(), "the caller is hung up");
    assert_eq!(core.call_count(), 0);
}

#[tokio::test]
async fn reliable_provisional_responses_both_ways() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    register_phones(&core, &[PHONE_A], t0);
    let out = dial_with(&mut core, "1002", "100rel", "Supported: 100rel\r\nRequire: 100rel\r\n", t0);
    let invite = request_to(&out, PHONE_A, Method::Invite).expect("Require: 100rel is accepted");

    // The phone's 180 is reliable too: we PRACK it in its early dialog.
    let mut w = response_to(&invite, PHONE_A.parse().unwrap(), 180, "Ringing", Some("ta"));
    w.header("Contact", format_args!("<sip:1002@{PHONE_A}>"));
    w.header("Require", "100rel");
    w.header("RSeq", "7");
    let out = core.handle_message(w.finish_empty(), src(PHONE_A), t0);
    let prack = request_to(&out, PHONE_A, Method::Prack).expect("PRACK to the phone");
    assert_eq!(prack.other_header_values("RAck").next(), Some("7 1 INVITE"));
    assert_eq!(prack.cseq().unwrap().seq, 2);
    assert_eq!(prack.to().unwrap().tag(), Some("ta"));

    // The caller gets its 180 reliably: RSeq, resent until PRACKed.
    let ringing = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(180)).expect("180 to the caller");
    assert_eq!(ringing.first(HeaderName::Require), Some("100rel"));
    assert_eq!(ringing.other_header_values("RSeq").next(), Some("1"));
    let resent = run_until(&mut core, t0 + Duration::from_millis(1500));
    assert_eq!(sent_to(&resent, CALLER).iter().filter(|m| m.status() == Some(180)).count(), 2, "at T1 and 3×T1");
    let prack = caller_request(&ringing, "PRACK", 3, None);
    let prack = Bytes::from(String::from_utf8_lossy(&prack).replace("Contact:", "RAck: 1 2 INVITE\r\nContact:"));
    let out = core.handle_message(prack, src(CALLER), t0 + Duration::from_millis(1600));
    assert_eq!(status_to(&out, CALLER), vec![200]);
    assert!(sent_to(&run_until(&mut core, t0 + Duration::from_secs(10)), CALLER).iter().all(|m| m.status() != Some(180)));

    // Answered; our BYE later continues the callee dialog's CSeq after the PRACK.
    let out = core.handle_message(answer(&invite, PHONE_A, 200, "ta", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_A), t0);
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    let out = core.handle_message(caller_request(&ok, "BYE", 4, None), src(CALLER), t0);
    assert_eq!(request_to(&out, PHONE_A, Method::Bye).unwrap().cseq().unwrap().seq, 3);
}

#[tokio::test]
async fn a_blind_transfer_replaces_the_transferor_with_the_target() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    let (ok, invite) = answered_call(&mut core, "refer", t0);
    register_as(&core, "1003", &[PHONE_B], t0);
    // The callee transfers the caller to 1003.
    let refer = phone_request(&invite, PHONE_A, "ta", "REFER", 1, None);
    let refer = Bytes::from(String::from_utf8_lossy(&refer).replace("Contact:", "Refer-To: <sip:1003@127.0.0.1>\r\nContact:"));
    let out = core.handle_message(refer, src(PHONE_A), t0);
    assert_eq!(status_to(&out, PHONE_A), vec![202]);
    let notify = request_to(&out, PHONE_A, Method::Notify).expect("progress for the transferor");
    assert_eq!(body(&notify), "SIP/2.0 100 Trying\r\n");
    assert_eq!(notify.other_header_values("Event").next(), Some("refer"));
    let target = request_to(&out, PHONE_B, Method::Invite).expect("the target rings");
    assert!(target.first(HeaderName::From).unwrap().starts_with("\"Alice\" <sip:1001@"), "the target sees the transferee");
    let offer = body(&target);
    assert!(offer.contains("RTP/AVP 8 101"), "the codec the transferee uses: {offer}");
    assert!(sent_to(&out, CALLER).is_empty(), "the transferee is not disturbed");

    // The target answers: ACK, NOTIFY 200 and BYE to the transferor.
    let out = core.handle_message(answer(&target, PHONE_B, 200, "tb", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_B), t0);
    assert!(request_to(&out, PHONE_B, Method::Ack).is_some());
    let done = request_to(&out, PHONE_A, Method::Notify).expect("final NOTIFY");
    assert_eq!(body(&done), "SIP/2.0 200 OK\r\n");
    assert!(done.other_header_values("Subscription-State").next().unwrap().starts_with("terminated"));
    assert!(request_to(&out, PHONE_A, Method::Bye).is_some(), "the transferor is released");

    // The transferee and the target are now the call: a BYE from one reaches the other.
    let out = core.handle_message(caller_request(&ok, "BYE", 3, None), src(CALLER), t0);
    assert!(request_to(&out, PHONE_B, Method::Bye).is_some());
    assert!(request_to(&out, PHONE_A, Method::Bye).is_none());
    assert_eq!(core.call_count(), 0);
}

#[tokio::test]
async fn a_failed_blind_transfer_is_reported_and_the_call_goes_on() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    let (ok, invite) = answered_call(&mut core, "refer-busy", t0);
    register_as(&core, "1003", &[PHONE_B], t0);
    let refer = phone_request(&invite, PHONE_A, "ta", "REFER", 1, None);
    let refer = Bytes::from(String::from_utf8_lossy(&refer).replace("Contact:", "Refer-To: <sip:1003@127.0.0.1>\r\nContact:"));
    let out = core.handle_message(refer, src(PHONE_A), t0);
    let target = request_to(&out, PHONE_B, Method::Invite).unwrap();
    let out = core.handle_message(answer(&target, PHONE_B, 486, "tb", None), src(PHONE_B), t0);
    let failed = request_to(&out, PHONE_A, Method::Notify).expect("the failure is reported");
    assert_eq!(body(&failed), "SIP/2.0 486 Busy Here\r\n");
    assert!(request_to(&out, PHONE_A, Method::Bye).is_none() && sent_to(&out, CALLER).is_empty());
    // Still one call between the caller and A.
    let out = core.handle_message(caller_request(&ok, "BYE", 3, None), src(CALLER), t0);
    assert!(request_to(&out, PHONE_A, Method::Bye).is_some());

    // A transfer to a number the dial plan does not know: 202, then NOTIFY 404.
    let (_ok, invite) = answered_call(&mut core, "refer-404", t0);
    let refer = phone_request(&invite, PHONE_A, "ta", "REFER", 2, None);
    let refer = Bytes::from(String::from_utf8_lossy(&refer).replace("Contact:", "Refer-To: <sip:777@127.0.0.1>\r\nContact:"));
    let out = core.handle_message(refer, src(PHONE_A), t0);
    assert_eq!(status_to(&out, PHONE_A), vec![202]);
    assert_eq!(body(&request_to(&out, PHONE_A, Method::Notify).unwrap()), "SIP/2.0 404 Not Found\r\n");
}

#[tokio::test]
async fn an_attended_transfer_joins_the_transferee_and_the_target() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    // The caller talks to 1002 (A), puts it on hold, calls 1003 (B), then joins them.
    let (ok1, invite_a) = answered_call(&mut core, "consult-1", t0);
    let (ok2, invite_b) = answered_call_to(&mut core, "1003", PHONE_B, "tb", "consult-2", t0);
    let replaces = format!("consult-2%3Bto-tag%3D{}%3Bfrom-tag%3Dcaller", ok2.to().unwrap().tag().unwrap());
    let refer = caller_request(&ok1, "REFER", 3, None);
    let refer = String::from_utf8_lossy(&refer).replace("Contact:", &format!("Refer-To: <sip:1003@127.0.0.1?Replaces={replaces}>\r\nContact:"));
    let out = core.handle_message(Bytes::from(refer), src(CALLER), t0);
    assert_eq!(status_to(&out, CALLER), vec![202]);
    assert_eq!(body(&request_to(&out, CALLER, Method::Notify).unwrap()), "SIP/2.0 100 Trying\r\n");
    // B is moved onto the first call's relay port (the one the caller used there).
    let reinvite = request_to(&out, PHONE_B, Method::Invite).expect("the target is re-INVITEd");
    assert_eq!(reinvite.call_id(), invite_b.call_id(), "in its own dialog");
    let caller_port = body(&ok1).lines().find(|l| l.starts_with("m=audio")).unwrap().split(' ').nth(1).unwrap().to_string();
    assert!(body(&reinvite).contains(&format!("m=audio {caller_port} ")), "{}", body(&reinvite));
    let out = core.handle_message(answer(&reinvite, PHONE_B, 200, "tb", Some(&callee_sdp(2, "sendrecv"))), src(PHONE_B), t0);
    assert!(request_to(&out, PHONE_B, Method::Ack).is_some());
    let to_caller = sent_to(&out, CALLER);
    assert_eq!(to_caller.iter().filter(|m| m.method() == Some(&Method::Bye)).count(), 2, "released from both calls");
    assert!(to_caller.iter().any(|m| m.method() == Some(&Method::Notify) && body(m) == "SIP/2.0 200 OK\r\n"));
    assert!(sent_to(&out, PHONE_A).is_empty(), "the transferee is not disturbed");
    assert_eq!(core.call_count(), 1, "one call left: A with B");
    // A hangs up: B gets the BYE.
    let out = core.handle_message(phone_request(&invite_a, PHONE_A, "ta", "BYE", 1, None), src(PHONE_A), t0);
    assert!(request_to(&out, PHONE_B, Method::Bye).is_some());
    assert_eq!(core.call_count(), 0);
}

#[tokio::test]
async fn a_delayed_offer_is_answered_with_ours_and_the_ack_carries_the_answer() {
    let t0 = Instant::now();
    let (mut core, _relay) = core(t0);
    register_phones(&core, &[PHONE_A], t0);
    let out = dial_with(&mut core, "1002", "late", "X-No-Offer: 1\r\n", t0);
    let invite = request_to(&out, PHONE_A, Method::Invite).expect("the callee gets our offer");
    assert!(body(&invite).contains("RTP/AVP 0 8 101"), "PCMU, PCMA, events: {}", body(&invite));
    // A 183 with SDP cannot carry our offer to the caller unreliably: relayed without it.
    let out = core.handle_message(answer(&invite, PHONE_A, 183, "ta", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_A), t0);
    let progress = sent_to(&out, CALLER);
    assert_eq!(progress[0].status(), Some(183));
    assert!(progress[0].body().is_empty());
    let out = core.handle_message(answer(&invite, PHONE_A, 200, "ta", Some(&callee_sdp(1, "sendrecv"))), src(PHONE_A), t0);
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    let offer = body(&ok);
    assert!(offer.contains("RTP/AVP 8 101"), "our offer: what the callee took: {offer}");
    // The ACK answers it; an ACK with an unusable answer would end the call.
    let answer_sdp = CALLER_SDP.replace("RTP/AVP 0 8 101", "RTP/AVP 8 101");
    assert!(core.handle_message(caller_request(&ok, "ACK", 2, Some(&answer_sdp)), src(CALLER), t0).is_empty());
    assert_eq!(core.call_count(), 1);

    // The echo line too; there an answer without a common codec ends the call.
    let out = dial_with(&mut core, "6000", "late-echo", "X-No-Offer: 1\r\n", t0);
    let ok = sent_to(&out, CALLER).into_iter().find(|m| m.status() == Some(200)).unwrap();
    assert!(body(&ok).contains("RTP/AVP 0 8 101"));
    let bad = CALLER_SDP.replace("RTP/AVP 0 8 101", "RTP/AVP 18").replace("a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n", "a=rtpmap:18 G729/8000\r\n");
    let out = core.handle_message(caller_request(&ok, "ACK", 2, Some(&bad)), src(CALLER), t0);
    assert!(request_to(&out, CALLER, Method::Bye).is_some(), "BYE after an unusable answer");
    assert_eq!(core.call_count(), 1);
}
