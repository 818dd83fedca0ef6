//! Every timer path, driven with a fake clock (`t0 + n ms`); nothing sleeps.

use super::*;
use sip_transport::{FlowId, Transport, writer::response_to};

const MS: Duration = Duration::from_millis(1);

fn source(transport: Transport) -> Source {
    Source {
        transport,
        remote: "192.0.2.5:5062".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
        listener: 0,
        flow: transport.is_reliable().then_some(FlowId(1)),
    }
}

fn request(method: &str, branch: &str, extra: &str) -> SipMessage {
    SipMessage::parse(Bytes::from(format!(
        "{method} sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5062;branch={branch}\r\n\
From: <sip:a@example.com>;tag=f1\r\nTo: <sip:1001@127.0.0.1>{extra}\r\nCall-ID: c1\r\nCSeq: 7 {method}\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )))
    .unwrap()
}

fn response(req: &SipMessage, code: u16) -> Bytes {
    response_to(req, "192.0.2.5:5062".parse().unwrap(), code, "X", Some("totag")).finish_empty()
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(TimerConfig::default(), 100)
}

/// Runs every timer up to `until`, returning (ms after t0, event) pairs.
fn run_until(l: &mut TransactionLayer, t0: Instant, until: Duration) -> Vec<(u128, TxEvent)> {
    let mut out = Vec::new();
    while let Some(at) = l.poll_timeout() {
        if at > t0 + until {
            break;
        }
        for ev in l.handle_timeout(at) {
            out.push(((at - t0).as_millis(), ev));
        }
    }
    out
}

fn new_tx(o: RequestOutcome) -> ServerTxId {
    match o {
        RequestOutcome::New(id) => id,
        other => panic!("expected a new transaction, got {other:?}"),
    }
}

fn transmit_times(events: &[(u128, TxEvent)]) -> Vec<u128> {
    events.iter().filter(|(_, e)| matches!(e, TxEvent::Transmit(_))).map(|(t, _)| *t).collect()
}

#[test]
fn non_invite_server_absorbs_retransmissions_until_timer_j() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = request("OPTIONS", "z9hG4bKo1", "");
    let id = new_tx(l.on_request(&req, &source(Transport::Udp), t0));
    // Trying: a retransmission before any response has nothing to resend.
    assert!(matches!(l.on_request(&req, &source(Transport::Udp), t0), RequestOutcome::Retransmission(None)));
    let sent = l.respond(id, response(&req, 200), t0).unwrap();
    assert_eq!(sent.target.remote, "192.0.2.5:5062".parse().unwrap());
    match l.on_request(&req, &source(Transport::Udp), t0 + 10 * MS) {
        RequestOutcome::Retransmission(Some(t)) => assert_eq!(t.data, sent.data),
        other => panic!("{other:?}"),
    }
    // A second final response does not fit Completed.
    assert!(l.respond(id, response(&req, 500), t0).is_none());
    // Timer J = 64*T1 = 32 s on UDP; no retransmissions of responses for non-INVITE.
    assert!(run_until(&mut l, t0, 31_999 * MS).is_empty());
    assert_eq!(l.server_len(), 1);
    run_until(&mut l, t0, 32_000 * MS);
    assert_eq!(l.server_len(), 0);
    // The same request now is new again.
    new_tx(l.on_request(&req, &source(Transport::Udp), t0 + 32_001 * MS));
}

#[test]
fn non_invite_server_on_a_stream_ends_at_once() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = request("REGISTER", "z9hG4bKr1", "");
    let id = new_tx(l.on_request(&req, &source(Transport::Tcp), t0));
    let t = l.respond(id, response(&req, 200), t0).unwrap();
    assert_eq!(t.target.flow, Some(FlowId(1)), "answered on the connection it came on");
    run_until(&mut l, t0, Duration::ZERO);
    assert_eq!(l.server_len(), 0, "timer J is zero on reliable transports");
}

#[test]
fn invite_server_retransmits_final_with_timer_g_until_timer_h() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi1", "");
    let id = new_tx(l.on_request(&req, &source(Transport::Udp), t0));
    l.respond(id, response(&req, 486), t0).unwrap();
    let events = run_until(&mut l, t0, 40_000 * MS);
    // G: T1, then doubling, capped at T2 = 4 s.
    assert_eq!(
        transmit_times(&events),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    let timeouts: Vec<_> = events.iter().filter(|(_, e)| matches!(e, TxEvent::ServerAckTimeout(i) if *i == id)).collect();
    assert_eq!(timeouts.len(), 1);
    assert_eq!(timeouts[0].0, 32_000, "timer H = 64*T1");
    assert_eq!(l.server_len(), 0);
}

#[test]
fn invite_server_ack_confirms_and_timer_i_ends_it() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi2", "");
    let id = new_tx(l.on_request(&req, &source(Transport::Udp), t0));
    l.respond(id, response(&req, 404), t0).unwrap();
    assert_eq!(transmit_times(&run_until(&mut l, t0, 600 * MS)), [500]);
    let ack = request("ACK", "z9hG4bKi2", ";tag=totag");
    assert!(matches!(l.on_request(&ack, &source(Transport::Udp), t0 + 700 * MS), RequestOutcome::AckAbsorbed));
    // Confirmed: no more retransmissions, ACK retransmissions absorbed, gone after T4.
    assert!(matches!(l.on_request(&ack, &source(Transport::Udp), t0 + 800 * MS), RequestOutcome::AckAbsorbed));
    let events = run_until(&mut l, t0, 5_699 * MS);
    assert!(transmit_times(&events).is_empty(), "{events:?}");
    assert_eq!(l.server_len(), 1);
    run_until(&mut l, t0, 5_700 * MS);
    assert_eq!(l.server_len(), 0);
}

#[test]
fn invite_server_accepted_absorbs_invite_and_passes_ack_of_2xx() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi3", "");
    let id = new_tx(l.on_request(&req, &source(Transport::Udp), t0));
    let ringing = l.respond(id, response(&req, 180), t0).unwrap();
    match l.on_request(&req, &source(Transport::Udp), t0 + 10 * MS) {
        RequestOutcome::Retransmission(Some(t)) => assert_eq!(t.data, ringing.data, "Proceeding resends the provisional"),
        other => panic!("{other:?}"),
    }
    l.respond(id, response(&req, 200), t0 + 20 * MS).unwrap();
    assert!(matches!(l.on_request(&req, &source(Transport::Udp), t0 + 30 * MS), RequestOutcome::Retransmission(None)));
    // The TU's own 2xx retransmissions pass; a late error does not.
    assert!(l.respond(id, response(&req, 200), t0 + 520 * MS).is_some());
    assert!(l.respond(id, response(&req, 500), t0 + 530 * MS).is_none());
    let ack = request("ACK", "z9hG4bKother", ";tag=totag");
    assert!(matches!(l.on_request(&ack, &source(Transport::Udp), t0 + 40 * MS), RequestOutcome::Ack2xx));
    assert!(transmit_times(&run_until(&mut l, t0, 32_019 * MS)).is_empty(), "no timer G after 2xx");
    assert_eq!(l.server_len(), 1);
    run_until(&mut l, t0, 32_020 * MS);
    assert_eq!(l.server_len(), 0, "timer L = 64*T1 after the 2xx");
}

#[test]
fn cancel_finds_its_invite() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request("INVITE", "z9hG4bKc1", "");
    let inv = new_tx(l.on_request(&invite, &source(Transport::Udp), t0));
    let cancel = request("CANCEL", "z9hG4bKc1", "");
    match l.on_request(&cancel, &source(Transport::Udp), t0) {
        RequestOutcome::Cancel { invite: Some(i), cancel } => {
            assert_eq!(i, inv);
            assert_ne!(cancel, inv);
        }
        other => panic!("{other:?}"),
    }
    let stray = request("CANCEL", "z9hG4bKnone", "");
    assert!(matches!(l.on_request(&stray, &source(Transport::Udp), t0), RequestOutcome::Cancel { invite: None, .. }));
}

#[test]
fn merged_request_is_detected() {
    let t0 = Instant::now();
    let mut l = layer();
    let a = request("INVITE", "z9hG4bKm1", "");
    new_tx(l.on_request(&a, &source(Transport::Udp), t0));
    // Same From tag, Call-ID and CSeq, no To tag, another branch: a forked copy.
    let b = request("INVITE", "z9hG4bKm2", "");
    let merged = match l.on_request(&b, &source(Transport::Udp), t0) {
        RequestOutcome::Merged(id) => id,
        other => panic!("{other:?}"),
    };
    l.respond(merged, response(&b, 482), t0).unwrap();
    // Its retransmission is answered from its own transaction.
    assert!(matches!(l.on_request(&b, &source(Transport::Udp), t0), RequestOutcome::Retransmission(Some(_))));
}

#[test]
fn rfc2543_requests_match_on_their_fields() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = request("INVITE", "old-branch-1", "");
    let id = new_tx(l.on_request(&req, &source(Transport::Udp), t0));
    l.respond(id, response(&req, 486), t0).unwrap();
    assert!(matches!(l.on_request(&req, &source(Transport::Udp), t0), RequestOutcome::Retransmission(Some(_))));
    // The ACK matches only with the To tag of our response.
    let wrong = request("ACK", "old-branch-1", ";tag=other");
    assert!(matches!(l.on_request(&wrong, &source(Transport::Udp), t0), RequestOutcome::Ack2xx));
    let ack = request("ACK", "old-branch-1", ";tag=totag");
    assert!(matches!(l.on_request(&ack, &source(Transport::Udp), t0), RequestOutcome::AckAbsorbed));
}

#[test]
fn full_table_overloads() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default(), 2);
    // In-dialog requests (To tag), so that none of them counts as merged.
    new_tx(l.on_request(&request("OPTIONS", "z9hG4bKf1", ";tag=x"), &source(Transport::Udp), t0));
    new_tx(l.on_request(&request("OPTIONS", "z9hG4bKf2", ";tag=x"), &source(Transport::Udp), t0));
    assert!(matches!(
        l.on_request(&request("OPTIONS", "z9hG4bKf3", ";tag=x"), &source(Transport::Udp), t0),
        RequestOutcome::Overloaded
    ));
    // A retransmission of a known one is still answered.
    assert!(matches!(
        l.on_request(&request("OPTIONS", "z9hG4bKf1", ";tag=x"), &source(Transport::Udp), t0),
        RequestOutcome::Retransmission(None)
    ));
}

fn outgoing(method: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:bob@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={BRANCH_PREFIX}abc\r\n\
Route: <sip:proxy.example;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@192.0.2.9>\r\n\
Call-ID: out1\r\nCSeq: 3 {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn target(transport: Transport) -> Target {
    Target { transport, remote: "192.0.2.9:5060".parse().unwrap(), flow: None, listener: Some(0) }
}

fn incoming_response(req: &Bytes, code: u16) -> SipMessage {
    let req = SipMessage::parse(req.clone()).unwrap();
    SipMessage::parse(response(&req, code)).unwrap()
}

#[test]
fn invite_client_timer_a_and_b() {
    let t0 = Instant::now();
    let mut l = layer();
    let (id, first) = l.send_request(outgoing("INVITE"), target(Transport::Udp), t0).unwrap();
    assert!(first.data.starts_with(b"INVITE "));
    let events = run_until(&mut l, t0, 40_000 * MS);
    // A: T1 doubling with no cap, while B (64*T1) has not fired.
    assert_eq!(transmit_times(&events), [500, 1500, 3500, 7500, 15500, 31500]);
    let timeouts: Vec<_> = events.iter().filter(|(_, e)| matches!(e, TxEvent::ClientTimeout(i) if *i == id)).map(|(t, _)| *t).collect();
    assert_eq!(timeouts, [32_000]);
    assert_eq!(l.client_len(), 0);
}

#[test]
fn invite_client_non_2xx_is_acked_and_timer_d_absorbs_retransmissions() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = outgoing("INVITE");
    let (id, _) = l.send_request(req.clone(), target(Transport::Udp), t0).unwrap();
    let src = source(Transport::Udp);
    assert_eq!(l.on_response(&incoming_response(&req, 180), &src, t0 + 100 * MS), (ResponseOutcome::Provisional(id), None));
    // Proceeding: no retransmission, and no timer B.
    assert!(run_until(&mut l, t0, 60_000 * MS).is_empty());
    let (outcome, ack) = l.on_response(&incoming_response(&req, 486), &src, t0 + 60_000 * MS);
    assert_eq!(outcome, ResponseOutcome::Final(id));
    let ack = SipMessage::parse(ack.unwrap().data).unwrap();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().unwrap().seq, 3);
    assert_eq!(ack.to().unwrap().tag(), Some("totag"), "the ACK carries the response's To");
    assert_eq!(ack.top_via().unwrap().branch(), Some(&format!("{BRANCH_PREFIX}abc")[..]), "same branch as the INVITE");
    assert_eq!(ack.first(HeaderName::Route), Some("<sip:proxy.example;lr>"));
    // A retransmitted 486 is absorbed and ACKed again.
    let (outcome, again) = l.on_response(&incoming_response(&req, 486), &src, t0 + 61_000 * MS);
    assert_eq!(outcome, ResponseOutcome::Absorbed(id));
    assert!(again.is_some());
    run_until(&mut l, t0, 91_999 * MS);
    assert_eq!(l.client_len(), 1);
    run_until(&mut l, t0, 92_000 * MS);
    assert_eq!(l.client_len(), 0, "timer D: 32 s after the final response");
}

#[test]
fn invite_client_2xx_goes_to_accepted_until_timer_m() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = outgoing("INVITE");
    let (id, _) = l.send_request(req.clone(), target(Transport::Udp), t0).unwrap();
    let src = source(Transport::Udp);
    assert_eq!(l.on_response(&incoming_response(&req, 200), &src, t0), (ResponseOutcome::Final(id), None));
    // Every further 2xx goes to the TU (it ACKs them), none is ACKed here.
    assert_eq!(l.on_response(&incoming_response(&req, 200), &src, t0 + 500 * MS), (ResponseOutcome::Final(id), None));
    assert!(transmit_times(&run_until(&mut l, t0, 31_999 * MS)).is_empty());
    assert_eq!(l.client_len(), 1);
    run_until(&mut l, t0, 32_000 * MS);
    assert_eq!(l.client_len(), 0);
}

#[test]
fn non_invite_client_timer_e_f_and_k() {
    let t0 = Instant::now();
    let mut l = layer();
    let (id, _) = l.send_request(outgoing("OPTIONS"), target(Transport::Udp), t0).unwrap();
    let events = run_until(&mut l, t0, 40_000 * MS);
    // E: T1 doubling, capped at T2.
    assert_eq!(
        transmit_times(&events),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(events.iter().any(|(t, e)| *t == 32_000 && matches!(e, TxEvent::ClientTimeout(i) if *i == id)));

    // With a provisional response, E goes on at T2; the final starts timer K (T4).
    let req = outgoing("BYE");
    let (id, _) = l.send_request(req.clone(), target(Transport::Udp), t0).unwrap();
    let src = source(Transport::Udp);
    assert_eq!(transmit_times(&run_until(&mut l, t0, 600 * MS)), [500]);
    assert_eq!(l.on_response(&incoming_response(&req, 100), &src, t0 + 600 * MS).0, ResponseOutcome::Provisional(id));
    assert_eq!(transmit_times(&run_until(&mut l, t0, 10_000 * MS)), [1500, 5500, 9500]);
    assert_eq!(l.on_response(&incoming_response(&req, 200), &src, t0 + 10_000 * MS).0, ResponseOutcome::Final(id));
    assert_eq!(l.on_response(&incoming_response(&req, 200), &src, t0 + 11_000 * MS).0, ResponseOutcome::Absorbed(id));
    assert!(transmit_times(&run_until(&mut l, t0, 14_999 * MS)).is_empty());
    assert_eq!(l.client_len(), 1);
    run_until(&mut l, t0, 15_000 * MS);
    assert_eq!(l.client_len(), 0);
}

#[test]
fn reliable_client_does_not_retransmit() {
    let t0 = Instant::now();
    let mut l = layer();
    let (id, _) = l.send_request(outgoing("OPTIONS"), target(Transport::Tcp), t0).unwrap();
    let events = run_until(&mut l, t0, 40_000 * MS);
    assert!(transmit_times(&events).is_empty());
    assert!(events.iter().any(|(t, e)| *t == 32_000 && matches!(e, TxEvent::ClientTimeout(i) if *i == id)), "timer F still applies");
}

#[test]
fn responses_match_on_branch_and_method() {
    let t0 = Instant::now();
    let mut l = layer();
    let req = outgoing("INVITE");
    l.send_request(req.clone(), target(Transport::Udp), t0).unwrap();
    // Same branch, CSeq method CANCEL: the response of another transaction.
    let cancel_resp = incoming_response(&outgoing("CANCEL"), 200);
    assert_eq!(l.on_response(&cancel_resp, &source(Transport::Udp), t0).0, ResponseOutcome::Stray);
    assert!(l.send_request(req, target(Transport::Udp), t0).is_err(), "a branch is used once");
    assert!(l.send_request(outgoing("ACK"), target(Transport::Udp), t0).is_err());
}

/// After a burst, the tables give their memory back once the transactions end.
#[test]
fn tables_shrink_once_a_burst_has_ended() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default(), 10_000);
    for n in 0..5_000 {
        // Each its own Call-ID, or they would be merged requests (RFC 3261 §8.2.2.2).
        let text = String::from_utf8_lossy(request("OPTIONS", &format!("z9hG4bKburst{n}"), "").raw())
            .replace("Call-ID: c1", &format!("Call-ID: burst{n}"));
        let req = SipMessage::parse(Bytes::from(text)).unwrap();
        let id = new_tx(l.on_request(&req, &source(Transport::Udp), t0));
        l.respond(id, response(&req, 200), t0).unwrap();
    }
    let grown = l.servers.capacity() + l.server_index.capacity() + l.deadlines.capacity();
    assert!(grown >= 15_000, "{grown}");
    run_until(&mut l, t0, 32_000 * MS);
    assert_eq!(l.server_len(), 0);
    let shrunk = l.servers.capacity() + l.server_index.capacity() + l.deadlines.capacity();
    assert!(shrunk <= 3 * 1024, "the tables kept {shrunk} slots");
}
