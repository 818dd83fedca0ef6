//! Digit IVRs through the real binary: a SIPp caller on the trunk side dials
//! 7000 (PIN) or 7100 (reference), the test's socket is its media and sends
//! the keys as RFC 4733 events (SIPp's own capture has single digits only),
//! and SIPp phones registered as 1001 (a queue agent) or 1004 take the call.
//! Everything runs on loopback; every wait is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{Bench, Sipp, free_port};
use serde_json::Value;

/// The relay's ports for these tests.
const MEDIA: &str = "[media]\nport_min = 39000\nport_max = 39999\n";

/// Endpoints 1001-1005, callers from loopback on the trunk side, the default
/// IVRs at 7000 (PIN) and 7100 (reference, then queue `support` with 1001),
/// the default PIN rules, and `extra` TOML.
fn config(extra: &str) -> String {
    let endpoints: String = (1001..=1005).map(|n| format!("{n} = {{ password = \"demo{n}\" }}\n")).collect();
    format!(
        "[endpoints]\n{endpoints}[trunks.callers]\nnetworks = [\"127.0.0.0/8\"]\n{MEDIA}\
         [queues.support]\nmembers = [\"1001\"]\n\
         [ivrs.pin]\nmode = \"pin\"\n\
         [ivrs.reference]\nmode = \"reference\"\nthen = \"queue:support\"\n\
         [[dispatch]]\npin = \"2468013579\"\nto = \"queue:support\"\n\
         [[dispatch]]\npin = \"1357924680\"\nto = \"endpoint:1004\"\nheaders = {{ X-Room = \"42\" }}\n\
         [[dialplan.external]]\nexact = \"7000\"\nivr = \"pin\"\n\
         [[dialplan.external]]\nexact = \"7100\"\nivr = \"reference\"\n{extra}"
    )
}

/// A caller dialling `number` from the trunk side, its media at `media`,
/// staying until the switch or the other side hangs up.
fn caller(bench: &Bench, number: &str, media: &UdpSocket) -> Sipp {
    let rtp = media.local_addr().unwrap().port().to_string();
    let target = bench.switch.addr("external", "udp", false);
    Sipp::spawn(&bench.dir, "caller", "queue_caller_served.xml", target, free_port(), &["-s", number, "-key", "rtp_port", &rtp])
}

/// A caller dialling `number` who hangs up after `hold_ms` (IVR included).
fn caller_hanging_up(bench: &Bench, number: &str, media: &UdpSocket, hold_ms: u32) -> Sipp {
    let (rtp, hold) = (media.local_addr().unwrap().port().to_string(), hold_ms.to_string());
    let target = bench.switch.addr("external", "udp", false);
    let args = ["-s", number, "-d", &hold, "-key", "rtp_port", &rtp];
    Sipp::spawn(&bench.dir, "caller", "queue_caller.xml", target, free_port(), &args)
}

/// Waits for the first prompt packet from the relay at `media`: the IVR speaks.
fn hear_prompt(media: &UdpSocket, relay: SocketAddr) -> usize {
    media.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (mut packets, end, mut buf) = (0, Instant::now() + Duration::from_secs(1), [0u8; 2048]);
    while Instant::now() < end {
        if let Ok((n, from)) = media.recv_from(&mut buf)
            && from == relay
            && n == 12 + 160
        {
            packets += 1;
        }
    }
    packets
}

/// Sends `keys` as RFC 4733 events (payload type 101) to `relay`: per key
/// three packets while it is held and the three end packets, 20 ms apart, then
/// a 60 ms pause, as a phone does.
fn press(media: &UdpSocket, relay: SocketAddr, keys: &str) {
    static SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    for key in keys.chars() {
        let event = "0123456789*#".find(key).expect("a key") as u8;
        // An event's packets share its start; starts only grow, as a phone's clock does.
        let timestamp = u32::from(SEQ.load(std::sync::atomic::Ordering::Relaxed)) * 160;
        for step in 0..6u16 {
            let end = step >= 3;
            let duration = 160 * (step.min(3) + 1);
            let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut p = vec![0x80, 101 | if step == 0 { 0x80 } else { 0 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&timestamp.to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend_from_slice(&[event, if end { 0x8a } else { 0x0a }]);
            p.extend_from_slice(&duration.to_be_bytes());
            media.send_to(&p, relay).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(60));
    }
}

/// The first `count` CDRs, waiting up to 5 s.
fn cdrs(bench: &Bench, count: usize) -> Vec<Value> {
    bench.cdrs(count)
}

#[test]
fn the_right_pin_puts_the_caller_through_to_its_endpoint_with_the_rules_headers() {
    let bench = Bench::start("ivr-pin", &config(""));
    let rtp = free_port().to_string();
    let mut desk = bench.phone("1004", "desk1004", "ivr_callee.xml", &["-key", "rtp_port", &rtp]);
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut caller = caller_hanging_up(&bench, "7000", &media, 6000);
    let relay = caller.relay_port();
    let prompt = hear_prompt(&media, relay);
    assert!(prompt >= 30, "the welcome prompt plays: {prompt} packets in 1 s");
    // Typed during the prompt (barge-in): the PIN of 1004's rule. The caller
    // talks to 1004, then hangs up; 1004 gets the BYE.
    press(&media, relay, "1357924680");
    caller.succeeds();
    desk.succeeds();
    assert!(desk.log_lines().iter().any(|l| l == "room=42"), "the rule's header reached 1004: {:?}", desk.log_lines());
    let cdr = &cdrs(&bench, 1)[0];
    assert_eq!(cdr["destination"], "ivr:pin", "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert!(bench.switch.wait_for_log(&["pin_accepted"], Duration::from_secs(2)));
    let lines = bench.switch.log_lines().join("\n");
    assert!(!lines.contains("1357924680"), "a PIN is never logged");
}

#[test]
fn five_wrong_pins_end_with_goodbye_and_a_bye() {
    let bench = Bench::start("ivr-wrong", &config(""));
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut caller = caller(&bench, "7000", &media);
    let relay = caller.relay_port();
    assert!(hear_prompt(&media, relay) > 0);
    for _ in 0..5 {
        press(&media, relay, "0000000000");
    }
    // Too many attempts, goodbye, then the switch's BYE: the caller's scenario ends well.
    caller.succeeds();
    let log = bench.switch.log_lines().join("\n");
    assert_eq!(log.matches("pin_rejected").count(), 5, "{log}");
    assert!(log.contains("too_many_attempts"), "{log}");
    assert_eq!(cdrs(&bench, 1)[0]["hangup_by"], "switch");
}

#[test]
fn a_reference_travels_to_the_agent_and_into_the_cdr() {
    let bench = Bench::start("ivr-reference", &config(""));
    let rtp = free_port().to_string();
    let mut agent = bench.phone("1001", "agent1001", "queue_agent.xml", &["-m", "1", "-d", "500", "-key", "rtp_port", &rtp]);
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut caller = caller(&bench, "7100", &media);
    let relay = caller.relay_port();
    assert!(hear_prompt(&media, relay) > 0);
    press(&media, relay, "4711#");
    agent.succeeds();
    caller.succeeds();
    let offered = agent.log_lines().into_iter().find(|l| l.starts_with("offered")).unwrap();
    assert!(offered.contains("queue=support"), "{offered}");
    let messages = std::fs::read_to_string(bench.dir.join("agent1001_messages.log")).unwrap();
    assert!(messages.contains("X-Tandem-Contact-Ref: 4711"), "the agent's INVITE carries the reference");
    assert_eq!(cdrs(&bench, 1)[0]["contact_ref"], "4711");
}

#[test]
fn the_right_pin_by_sip_info_puts_the_caller_through() {
    let bench = Bench::start("ivr-info", &config(""));
    let rtp = free_port().to_string();
    let mut desk = bench.phone("1004", "desk1004", "ivr_callee.xml", &["-key", "rtp_port", &rtp]);
    let media = free_port().to_string();
    let mut args = vec!["-s".to_string(), "7000".into(), "-d".into(), "5000".into(), "-key".into(), "rtp_port".into(), media];
    for (i, key) in "1357924680".chars().enumerate() {
        args.extend(["-key".to_string(), format!("k{}", i + 1), key.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let target = bench.switch.addr("external", "udp", false);
    let mut caller = Sipp::spawn(&bench.dir, "caller", "ivr_caller_info.xml", target, free_port(), &args);
    caller.succeeds();
    desk.succeeds();
    assert!(desk.log_lines().iter().any(|l| l == "room=42"), "{:?}", desk.log_lines());
    assert_eq!(cdrs(&bench, 1)[0]["destination"], "ivr:pin");
}

/// Sends `keys` as DTMF tones in PCMU audio to `relay` (100 ms each, 60 ms of
/// silence between, -10 dBm0-ish per tone), as a phone without telephone-event does.
fn play_tones(media: &UdpSocket, relay: SocketAddr, keys: &str) {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (mut seq, mut sample) = (1u16, 0u32);
    let frame = |tone: Option<(f64, f64)>, seq: &mut u16, sample: &mut u32| {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&sample.to_be_bytes());
        p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
        for n in 0..160u32 {
            let t = f64::from(*sample + n) / 8000.0;
            let level = tone.map_or(0.0, |(low, high)| {
                4000.0 * (2.0 * std::f64::consts::PI * low * t).sin() + 4000.0 * (2.0 * std::f64::consts::PI * high * t).sin()
            });
            p.push(media_relay::g711::linear_to_ulaw(level as i16));
        }
        media.send_to(&p, relay).unwrap();
        *seq = seq.wrapping_add(1);
        *sample += 160;
        std::thread::sleep(Duration::from_millis(20));
    };
    for key in keys.chars() {
        let index = "123A456B789C*0#D".find(key).expect("a key");
        let tone = (ROWS[index / 4], COLS[index % 4]);
        for _ in 0..5 {
            frame(Some(tone), &mut seq, &mut sample);
        }
        for _ in 0..3 {
            frame(None, &mut seq, &mut sample);
        }
    }
}

#[test]
fn the_right_pin_as_in_band_tones_puts_the_caller_through() {
    let bench = Bench::start("ivr-inband", &config(""));
    let rtp = free_port().to_string();
    let mut desk = bench.phone("1004", "desk1004", "ivr_callee.xml", &["-key", "rtp_port", &rtp]);
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (port, target) = (media.local_addr().unwrap().port().to_string(), bench.switch.addr("external", "udp", false));
    let args = ["-s", "7000", "-d", "6000", "-key", "rtp_port", &port];
    let mut caller = Sipp::spawn(&bench.dir, "caller", "caller_inband.xml", target, free_port(), &args);
    let relay = caller.relay_port();
    assert!(hear_prompt(&media, relay) > 0);
    play_tones(&media, relay, "1357924680");
    caller.succeeds();
    desk.succeeds();
    assert!(desk.log_lines().iter().any(|l| l == "room=42"), "{:?}", desk.log_lines());
}

#[test]
fn a_reload_changes_an_ivr_for_the_next_caller() {
    let bench = Bench::start("ivr-reload", &config(""));
    let path = bench.switch.dir.join("tandem.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replace("[ivrs.pin]\nmode = \"pin\"\n", "[ivrs.pin]\nmode = \"pin\"\nmax_attempts = 1\n")).unwrap();
    let status = std::process::Command::new("kill").args(["-HUP", &bench.switch.pid().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(bench.switch.wait_for_log(&["configuration reloaded"], Duration::from_secs(5)));
    // One wrong PIN is now all a caller gets: too many attempts, goodbye, BYE.
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut caller = caller(&bench, "7000", &media);
    let relay = caller.relay_port();
    assert!(hear_prompt(&media, relay) > 0);
    press(&media, relay, "0000000000");
    caller.succeeds();
    let log = bench.switch.log_lines().join("\n");
    assert_eq!(log.matches("pin_rejected").count(), 1, "{log}");
    assert!(log.contains("too_many_attempts"), "{log}");
}
