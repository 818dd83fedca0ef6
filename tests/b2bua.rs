//! Two-party calls through the real binary (the B2BUA), with real peers on both
//! sides: SIPp as the caller (1001, answering the 407) and as the called phone
//! (1002, registered from the port it then listens on), and baresip as a phone
//! stack we did not write. Each test checks what both peers saw and the CDR;
//! the media tests check that each side receives the other side's RTP through
//! the relay. Everything runs on loopback; every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::{
    Bench, ENDPOINTS, PACKETS, assert_both_ways, exchange_rtp, free_media_port, free_port, media_sockets,
    sipp_ok,
};
use serde_json::Value;

/// The relay's ports for these tests (calls.rs uses 32000-32999, the core tests 33000-33099).
const MEDIA: &str = "[media]\nport_min = 34000\nport_max = 34999\n";

/// Endpoints 1001-1003, the relay, and 1001-1010 routed to the endpoint of that
/// number, ringing at most `ring_timeout_s` when given.
fn config(ring_timeout_s: Option<u64>) -> String {
    let ring = ring_timeout_s.map(|s| format!("ring_timeout_s = {s}\n")).unwrap_or_default();
    format!("{ENDPOINTS}{MEDIA}[[dialplan.internal]]\npattern = '10(0[1-9]|10)'\nendpoint = \"$0\"\n{ring}")
}

/// The fields every CDR of a call from 1001 to 1002 carries.
fn assert_cdr(cdr: &Value, disposition: &str, status: u64, hangup_by: &str) {
    assert_eq!(cdr["caller"], "1001", "{cdr}");
    assert_eq!(cdr["callee"], "1002", "{cdr}");
    assert_eq!(cdr["destination"], "endpoint:1002", "{cdr}");
    assert_eq!(cdr["disposition"], disposition, "{cdr}");
    assert_eq!(cdr["status"], status, "{cdr}");
    assert_eq!(cdr["hangup_by"], hangup_by, "{cdr}");
    if disposition == "answered" {
        assert!(cdr["answer"].is_string(), "an answered call has its answer time: {cdr}");
    } else {
        assert!(cdr["answer"].is_null(), "{cdr}");
        assert_eq!(cdr["billable_s"], 0.0, "{cdr}");
    }
}

// ---- tests ----

#[test]
fn a_call_is_connected_with_media_both_ways_and_the_caller_hangs_up() {
    let bench = Bench::start("b2bua-basic", &config(None));
    // The phones' media sockets are the test's.
    let (a, b, a_port, b_port) = media_sockets();
    let mut callee = bench.callee("callee", "b2bua_callee.xml", &["-key", "rtp_port", &b_port]);
    let mut caller = bench.caller("caller", "b2bua_caller.xml", "1002", &["-key", "rtp_port", &a_port]);

    // The callee's INVITE offered the relay's port for leg B; the caller's 200 its port for leg A.
    let relay_b = callee.relay_port();
    let relay_a = caller.relay_port();
    assert_ne!(relay_a, relay_b, "each side has its own relay port");
    // While the caller waits 4 s before its BYE:
    assert_both_ways(&exchange_rtp(&a, relay_a, &b, relay_b, PACKETS), PACKETS);

    caller.succeeds();
    callee.succeeds();
    assert_eq!(bench.count_log("call answered"), 1);
    let [a_in, a_out, b_in, b_out] = bench.media_counters();
    assert!(a_in >= u64::from(PACKETS) && b_out >= u64::from(PACKETS), "caller -> callee: {a_in} in, {b_out} out");
    assert!(b_in >= u64::from(PACKETS) && a_out >= u64::from(PACKETS), "callee -> caller: {b_in} in, {a_out} out");
    let cdr = bench.cdr();
    assert_cdr(&cdr, "answered", 200, "caller");
    assert!(cdr["billable_s"].as_f64().unwrap() >= 3.5, "the call lasted the caller's 4 s: {cdr}");
}

#[test]
fn sipp_plays_audio_both_ways_through_the_relay() {
    let bench = Bench::start("b2bua-pcap", &config(None));
    let (caller_mp, callee_mp) = (free_media_port().to_string(), free_media_port().to_string());
    let mut callee =
        bench.callee("callee", "b2bua_callee_pcap.xml", &["-mp", &callee_mp, "-key", "rtp_port", &callee_mp]);
    let mut caller =
        bench.caller("caller", "b2bua_caller_pcap.xml", "1002", &["-mp", &caller_mp, "-key", "rtp_port", &caller_mp]);
    caller.succeeds();
    callee.succeeds();
    let [a_in, a_out, b_in, b_out] = bench.media_counters();
    // Both play SIPp's sample for the 4 s the call lasts: 50 packets a second each way.
    assert!(a_in > 100, "the relay received the caller's audio: {a_in}");
    assert!(b_in > 100, "the relay received the callee's audio: {b_in}");
    assert_eq!(b_out, a_in, "and sent every packet of the caller's to the callee");
    assert_eq!(a_out, b_in, "and every packet of the callee's to the caller");
    assert_cdr(&bench.cdr(), "answered", 200, "caller");
}

#[test]
fn the_call_rings_every_contact_and_the_others_are_cancelled_when_one_answers() {
    let bench = Bench::start("b2bua-fork", &config(None));
    let (_a, _b, a_port, b_port) = media_sockets();
    // Two phones registered as 1002 with different contacts: one answers after
    // ringing 500 ms, the other rings until it is cancelled.
    let mut loser = bench.callee("loser", "b2bua_callee_cancelled.xml", &["-key", "rtp_port", &b_port]);
    let mut winner = bench.callee("winner", "b2bua_callee.xml", &["-key", "rtp_port", &b_port]);
    let mut caller = bench.caller("caller", "b2bua_caller.xml", "1002", &["-key", "rtp_port", &a_port]);
    // Both phones got an INVITE offering the relay.
    loser.relay_port();
    winner.relay_port();
    // The loser: INVITE, 180, CANCEL (200), 487, ACK.
    loser.succeeds();
    // The caller got one 200 (a second would be a message its scenario does not expect).
    caller.succeeds();
    winner.succeeds();
    assert!(bench.switch.wait_for_log(&["call ringing", "\"forks\":2"], Duration::from_secs(1)), "two forks");
    assert_eq!(bench.count_log("call answered"), 1);
    assert_cdr(&bench.cdr(), "answered", 200, "caller");
}

#[test]
fn a_second_phone_answering_after_the_first_is_acknowledged_and_hung_up() {
    let bench = Bench::start("b2bua-late", &config(None));
    let (_a, _b, a_port, b_port) = media_sockets();
    // The late phone sends nothing until its 200 at 1 s, so it cannot be
    // cancelled before; the other rings and answers at 500 ms.
    let mut late = bench.callee("late", "b2bua_callee_answers_late.xml", &["-key", "rtp_port", &b_port]);
    let mut winner = bench.callee("winner", "b2bua_callee.xml", &["-key", "rtp_port", &b_port]);
    let mut caller = bench.caller("caller", "b2bua_caller.xml", "1002", &["-key", "rtp_port", &a_port]);
    // The late phone: its 200 ACKed, then a BYE, which it answers.
    late.succeeds();
    let bye = late.logged("bye", Duration::ZERO).unwrap_or_default();
    assert!(bye.contains("cause=200"), "the BYE says the call was completed elsewhere: {bye}");
    caller.succeeds();
    winner.succeeds();
    assert_eq!(bench.count_log("call answered"), 1);
    assert_cdr(&bench.cdr(), "answered", 200, "caller");
}

#[test]
fn early_media_flows_before_the_answer() {
    let bench = Bench::start("b2bua-early", &config(None));
    let (a, b, a_port, b_port) = media_sockets();
    let mut callee = bench.callee("callee", "b2bua_callee_early_media.xml", &["-key", "rtp_port", &b_port]);
    let mut caller = bench.caller("caller", "b2bua_caller_early_media.xml", "1002", &["-key", "rtp_port", &a_port]);
    // The caller's 183 carries the relay's SDP; the phone answers 3 s later.
    let (relay_a, relay_b) = (caller.relay_port(), callee.relay_port());
    assert_both_ways(&exchange_rtp(&a, relay_a, &b, relay_b, 20), 20);
    assert!(caller.logged("answered", Duration::ZERO).is_none(), "the media flowed before the 200");
    caller.succeeds();
    callee.succeeds();
    let answered = caller.logged("answered", Duration::ZERO);
    assert_eq!(answered, Some(relay_a.port().to_string()), "the 200 repeats the 183's answer");
    assert_cdr(&bench.cdr(), "answered", 200, "caller");
}

#[test]
fn a_call_whose_media_stops_is_hung_up_on_both_sides() {
    // rtp_timeout_s = 5, after the relay's 5 s start grace: the BYEs come at about 10 s.
    let bench = Bench::start(
        "b2bua-silent",
        &config(None).replace("port_max = 34999\n", "port_max = 34999\nrtp_timeout_s = 5\n"),
    );
    let (_a, _b, a_port, b_port) = media_sockets();
    let mut callee = bench.callee("callee", "b2bua_callee.xml", &["-key", "rtp_port", &b_port]);
    let mut caller = bench.caller("caller", "b2bua_caller_hung_up.xml", "1002", &["-key", "rtp_port", &a_port]);
    // Nobody sends RTP. Both get a BYE and answer it.
    caller.succeeds();
    callee.succeeds();
    assert!(bench.switch.wait_for_log(&["call ended by the switch", "RTP timeout"], Duration::from_secs(1)));
    let cdr = bench.cdr();
    assert_cdr(&cdr, "answered", 200, "switch");
    assert!(cdr["billable_s"].as_f64().unwrap() >= 9.0, "hung up after the timeout: {cdr}");
}

#[test]
fn a_caller_that_cancels_gets_487_and_the_ringing_phone_a_cancel() {
    let bench = Bench::start("b2bua-cancel", &config(None));
    let port = free_port().to_string();
    let mut callee = bench.callee("callee", "b2bua_callee_cancelled.xml", &["-key", "rtp_port", &port]);
    let mut caller = bench.caller("caller", "b2bua_caller_cancel.xml", "1002", &["-key", "rtp_port", &port]);
    // The caller: 180, CANCEL, 200 for the CANCEL, 487 for the INVITE, ACK.
    caller.succeeds();
    // The phone: INVITE, 180, CANCEL, 200, 487, ACK.
    callee.succeeds();
    let cdr = bench.cdr();
    assert_cdr(&cdr, "cancelled", 487, "caller");
}

#[test]
fn a_busy_phone_makes_the_caller_busy_and_a_decline_is_passed_on() {
    let bench = Bench::start("b2bua-busy", &config(None));
    let port = free_port().to_string();
    for (status, scenario, disposition) in
        [("486", "b2bua_callee_busy.xml", "busy"), ("603", "b2bua_callee_declines.xml", "rejected")]
    {
        let mut callee = bench.callee(&format!("callee-{status}"), scenario, &["-key", "rtp_port", &port]);
        let mut caller =
            bench.caller(&format!("caller-{status}"), "b2bua_caller_refused.xml", "1002", &["-key", "rtp_port", &port]);
        caller.succeeds();
        callee.succeeds();
        assert_eq!(caller.log_lines(), [format!("status={status}")], "the caller got {status}");
        let cdrs = bench.cdrs(if status == "486" { 1 } else { 2 });
        assert_cdr(cdrs.last().unwrap(), disposition, status.parse().unwrap(), "callee");
        // The phone is gone: its binding too, so that the next call rings only the next phone.
        sipp_ok("register_unregister.xml", bench.udp(), "u1", &["-s", "1002", "-au", "1002", "-ap", "demo1002"]);
    }
}

#[test]
fn a_call_nobody_answers_ends_at_the_ring_timeout() {
    let bench = Bench::start("b2bua-noanswer", &config(Some(2)));
    let port = free_port().to_string();
    let mut callee = bench.callee("callee", "b2bua_callee_cancelled.xml", &["-key", "rtp_port", &port]);
    let started = Instant::now();
    let mut caller = bench.caller("caller", "b2bua_caller_refused.xml", "1002", &["-key", "rtp_port", &port]);
    caller.succeeds();
    let rang = started.elapsed();
    assert_eq!(caller.log_lines(), ["status=480"], "the caller got 480");
    assert!(rang >= Duration::from_secs(2) && rang < Duration::from_secs(8), "it rang for the 2 s timeout: {rang:?}");
    // The phone: INVITE, 180, CANCEL, 200, 487, ACK.
    callee.succeeds();
    assert_cdr(&bench.cdr(), "no-answer", 480, "switch");
}

#[test]
fn the_callee_hangs_up_and_the_caller_gets_the_bye() {
    let bench = Bench::start("b2bua-callee-bye", &config(None));
    let port = free_port().to_string();
    let mut callee = bench.callee("callee", "b2bua_callee_hangs_up.xml", &["-key", "rtp_port", &port]);
    let mut caller = bench.caller("caller", "b2bua_caller_hung_up.xml", "1002", &["-key", "rtp_port", &port]);
    // The phone: its BYE answered 200. The caller: a BYE, answered 200.
    callee.succeeds();
    caller.succeeds();
    let cdr = bench.cdr();
    assert_cdr(&cdr, "answered", 200, "callee");
    assert!(cdr["billable_s"].as_f64().unwrap() >= 0.9, "answered for the phone's 1 s: {cdr}");
}

#[test]
fn hold_and_resume_by_reinvite_are_relayed_with_the_directions_answered() {
    let bench = Bench::start("b2bua-hold", &config(None));
    let (a, b, a_port, b_port) = media_sockets();
    let mut callee = bench.callee("callee", "b2bua_callee_held.xml", &["-key", "rtp_port", &b_port]);
    let mut caller = bench.caller("caller", "b2bua_caller_hold.xml", "1002", &["-key", "rtp_port", &a_port]);
    let (relay_a, relay_b) = (caller.relay_port(), callee.relay_port());
    // The caller's 200s: recvonly to its sendonly offer, then sendrecv (checked in
    // its scenario). The phone's re-INVITEs: sendonly, then sendrecv.
    assert!(
        caller.wait_line("held", Duration::from_secs(10)),
        "the caller's hold was answered recvonly\n{}",
        caller.report()
    );
    // On hold (1.5 s) the caller, recvonly, must not be sent the phone's audio;
    // the phone hears music on hold instead of the caller.
    let (at_a, at_b) = exchange_rtp(&a, relay_a, &b, relay_b, 20);
    assert_eq!(at_a.from(b'B'), 0, "the holding caller was sent the held phone's RTP");
    assert_eq!(at_b.from(b'A'), 0, "the held phone was sent the caller's RTP");
    assert!(at_b.payloads.len() >= 10, "the held phone hears music on hold: {} packets", at_b.payloads.len());
    assert!(
        caller.wait_line("resumed", Duration::from_secs(5)),
        "the caller's resume was answered sendrecv\n{}",
        caller.report()
    );
    // Resumed (1.5 s): both hear each other again, and the music has stopped.
    let heard = exchange_rtp(&a, relay_a, &b, relay_b, 20);
    assert_both_ways(&heard, 20);
    let music = heard.1.payloads.len() - heard.1.from(b'A');
    assert_eq!(music, 0, "the resumed phone still got {music} packets of music on hold");
    caller.succeeds();
    callee.succeeds();
    assert_eq!(callee.log_lines()[1..], ["held", "resumed"], "the phone was offered sendonly, then sendrecv");
    assert_eq!(bench.count_log("offer relayed and answered"), 2, "both re-INVITEs went through to the phone");
    assert_cdr(&bench.cdr(), "answered", 200, "caller");
}

#[test]
fn an_unregistered_endpoint_is_unavailable_and_an_unknown_number_not_found() {
    let bench = Bench::start("b2bua-unreachable", &config(None));
    let port = free_port().to_string();
    // 1003 exists but has no registration; 2000 matches no rule.
    let mut caller = bench.caller("caller-1003", "b2bua_caller_refused.xml", "1003", &["-key", "rtp_port", &port]);
    caller.succeeds();
    assert_eq!(caller.log_lines(), ["status=480"], "1003 is not registered");
    let mut caller = bench.caller("caller-2000", "b2bua_caller_refused.xml", "2000", &["-key", "rtp_port", &port]);
    caller.succeeds();
    assert_eq!(caller.log_lines(), ["status=404"], "2000 is no number");
    // The call to 1003 reached a destination: it has a CDR; the one to 2000 did not.
    let cdr = bench.cdr();
    assert_eq!(cdr["callee"], "1003", "{cdr}");
    assert_eq!(cdr["destination"], "endpoint:1003", "{cdr}");
    assert_eq!(cdr["disposition"], "failed", "{cdr}");
    assert_eq!(cdr["status"], 480, "{cdr}");
}


#[test]
fn baresip_answers_a_call_through_the_switch() {
    let bench = Bench::start("b2bua-baresip", &config(None));
    let account = format!("<sip:1002@{}>;auth_pass=demo1002;regint=60;answermode=auto", bench.udp());
    let (mut phone, rx) = common::baresip(&bench.dir.join("baresip"), &account);
    let mut seen = Vec::new();
    let registered = common::baresip_says(&rx, "[1 binding]", Duration::from_secs(15), &mut seen);
    assert!(registered, "baresip did not register as 1002:\n{}", seen.join("\n"));

    let mp = free_media_port().to_string();
    let mut caller = bench.caller("caller", "b2bua_caller_pcap.xml", "1002", &["-mp", &mp, "-key", "rtp_port", &mp]);
    let established = common::baresip_says(&rx, "Call established", Duration::from_secs(10), &mut seen);
    // The caller: 180, 200 (PCMA, which baresip took), 4 s of audio, BYE.
    caller.succeeds();
    let ended = common::baresip_says(&rx, "terminated", Duration::from_secs(5), &mut seen);
    let _ = phone.kill();
    let _ = phone.wait();
    assert!(established && ended, "baresip answered and got the BYE:\n{}", seen.join("\n"));
    let [a_in, a_out, b_in, b_out] = bench.media_counters();
    // baresip sends 50 packets a second from the moment it answers.
    assert!(b_in > 100, "the relay received baresip's audio: {b_in}");
    assert_eq!(a_out, b_in, "and sent all of it to the caller");
    assert!(a_in > 50, "the relay received the caller's audio: {a_in}");
    assert_eq!(b_out, a_in, "and sent all of it to baresip");
    assert_cdr(&bench.cdr(), "answered", 200, "caller");
}
