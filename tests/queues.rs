//! ACD queues through the real binary: SIPp callers dial 5000 (or 5001) from
//! the trunk side, SIPp agents registered as 1001-1003 answer (or not), dial
//! feature codes, and 1004 takes overflow. Each test checks what the peers saw
//! and what the queue log says. Everything runs on loopback; every wait is
//! bounded.

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{Bench, Sipp, assert_both_ways, exchange_rtp, free_port, media_sockets};
use serde_json::Value;

/// The relay's ports for these tests.
const MEDIA: &str = "[media]\nport_min = 38000\nport_max = 38999\n";

/// Agents 1001-1005, callers from loopback on the trunk side, and 5000 on
/// the trunk side dialling the queue `support`, configured by `queue` (TOML
/// keys of `[queues.support]`), plus `extra` TOML.
fn config(queue: &str, extra: &str) -> String {
    let endpoints: String = (1001..=1005).map(|n| format!("{n} = {{ password = \"demo{n}\" }}\n")).collect();
    format!(
        "[endpoints]\n{endpoints}[trunks.callers]\nnetworks = [\"127.0.0.0/8\"]\n{MEDIA}\
         [queues.support]\n{queue}\n{extra}\n\
         [[dialplan.external]]\nexact = \"5000\"\nqueue = \"support\"\n"
    )
}

/// The switch's trunk-side UDP address.
fn trunk_side(bench: &Bench) -> std::net::SocketAddr {
    bench.switch.addr("external", "udp", false)
}

/// `calls` callers dialling 5000 at `rate` per second, each hanging up after
/// `hold_ms` (waiting included).
fn callers(bench: &Bench, name: &str, calls: u32, rate: u32, hold_ms: u32, rtp_port: u16) -> Sipp {
    let (calls, rate, hold, rtp) = (calls.to_string(), rate.to_string(), hold_ms.to_string(), rtp_port.to_string());
    let args = ["-s", "5000", "-m", &calls, "-r", &rate, "-d", &hold, "-key", "rtp_port", &rtp];
    Sipp::spawn(&bench.dir, name, "queue_caller.xml", trunk_side(bench), free_port(), &args)
}

/// `calls` callers dialling 5000 at `rate` per second, each staying until the agent hangs up.
fn served_callers(bench: &Bench, name: &str, calls: u32, rate: u32) -> Sipp {
    let (calls, rate, rtp) = (calls.to_string(), rate.to_string(), free_port().to_string());
    let args = ["-s", "5000", "-m", &calls, "-r", &rate, "-key", "rtp_port", &rtp];
    Sipp::spawn(&bench.dir, name, "queue_caller_served.xml", trunk_side(bench), free_port(), &args)
}

/// One caller dialling `number` from the trunk side, staying until the agent (or
/// whoever the queue sends it to) hangs up.
fn served_caller(bench: &Bench, name: &str, number: &str) -> Sipp {
    let rtp = free_port().to_string();
    let args = ["-s", number, "-key", "rtp_port", &rtp];
    Sipp::spawn(&bench.dir, name, "queue_caller_served.xml", trunk_side(bench), free_port(), &args)
}

/// An agent's phone registered as `user`, answering up to `calls` offers and
/// hanging up after `talk_ms`.
fn agent(bench: &Bench, user: &str, calls: u32, talk_ms: u32) -> Sipp {
    let (calls, talk, rtp) = (calls.to_string(), talk_ms.to_string(), free_port().to_string());
    bench.phone(user, &format!("agent{user}"), "queue_agent.xml", &["-m", &calls, "-d", &talk, "-key", "rtp_port", &rtp])
}

/// The queue log's events so far.
fn queue_log(bench: &Bench) -> Vec<Value> {
    let text = std::fs::read_to_string(bench.switch.dir.join("data/queue_log.jsonl")).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).expect("a queue log line is JSON"))
        .collect()
}

/// Waits up to `wait` for `count` queue log events named `event`.
fn wait_events(bench: &Bench, event: &str, count: usize, wait: Duration) -> Vec<Value> {
    let end = Instant::now() + wait;
    loop {
        let found: Vec<Value> = queue_log(bench).into_iter().filter(|e| e["event"] == event).collect();
        if found.len() >= count {
            return found;
        }
        assert!(Instant::now() < end, "{count} \"{event}\" events expected, the queue log has:\n{:#?}", queue_log(bench));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The queue log's events named `event`, in order, so far.
fn events(bench: &Bench, event: &str) -> Vec<Value> {
    queue_log(bench).into_iter().filter(|e| e["event"] == event).collect()
}

/// A queue log event's `time` (RFC 3339, UTC, as the switch writes it) in
/// seconds since the Unix epoch.
fn time_s(event: &Value) -> f64 {
    let text = event["time"].as_str().unwrap_or_else(|| panic!("no time in {event}"));
    let parsed = text.strip_suffix('Z').and_then(|t| t.split_once('T')).and_then(|(date, clock)| {
        let date: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, "0"));
        let hms: Vec<i64> = hms.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let fraction: f64 = format!("0.{fraction}").parse().ok()?;
        let ([y, m, d], [h, min, s]) = (<[i64; 3]>::try_from(date).ok()?, <[i64; 3]>::try_from(hms).ok()?);
        // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        Some((days * 86_400 + h * 3600 + min * 60 + s) as f64 + fraction)
    });
    parsed.unwrap_or_else(|| panic!("not an RFC 3339 UTC time: {text}"))
}

/// The `call_id`s of `events`, in order.
fn call_ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["call_id"].as_str().unwrap_or_else(|| panic!("no call_id in {e}")).to_string()).collect()
}

/// How many offers each agent's phone logged.
fn offers(agent: &Sipp) -> usize {
    agent.log_lines().iter().filter(|l| l.starts_with("offered queue=support ")).count()
}

// ---- tests ----

#[test]
fn round_robin_spreads_a_burst_of_callers_evenly_and_agents_see_who_calls() {
    let bench = Bench::start("queue-rr", &config("strategy = \"round-robin\"\nmembers = [\"1001\", \"1002\", \"1003\"]", ""));
    let mut agents: Vec<Sipp> = ["1001", "1002", "1003"].iter().map(|a| agent(&bench, a, 2, 1000)).collect();
    let mut burst = served_callers(&bench, "callers", 6, 10);
    burst.succeeds();
    for a in &mut agents {
        a.succeeds();
    }
    let counts: Vec<usize> = agents.iter().map(offers).collect();
    assert_eq!(counts, [2, 2, 2], "six callers, three agents, round robin: two each");
    // The INVITE to an agent names the queue, the caller and the call.
    let line = agents[0].log_lines().into_iter().find(|l| l.starts_with("offered")).unwrap();
    assert!(line.contains("caller=+15550100"), "{line}");
    assert!(!line.ends_with("ref="), "{line}");
    let connects = wait_events(&bench, "connect", 6, Duration::from_secs(5));
    let mut per_agent: HashMap<String, usize> = HashMap::new();
    for c in &connects {
        *per_agent.entry(c["agent"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_agent.len(), 3, "{connects:?}");
    wait_events(&bench, "complete", 6, Duration::from_secs(5));
}

#[test]
fn ring_all_rings_every_agent_and_cancels_the_others_when_one_answers() {
    let bench = Bench::start("queue-ringall", &config("strategy = \"ring-all\"\nmembers = [\"1001\", \"1002\", \"1003\"]", ""));
    let mut answering = agent(&bench, "1001", 1, 1000);
    let mut ringing: Vec<Sipp> = ["1002", "1003"]
        .iter()
        .map(|a| bench.phone(a, &format!("ringing{a}"), "queue_agent_no_answer.xml", &[]))
        .collect();
    let mut caller = served_callers(&bench, "caller", 1, 1);
    caller.succeeds();
    answering.succeeds();
    for r in &mut ringing {
        // Each rang, then got the CANCEL once 1001 answered.
        r.succeeds();
        assert_eq!(r.log_lines(), ["rang"]);
    }
    let connect = &wait_events(&bench, "connect", 1, Duration::from_secs(5))[0];
    assert_eq!(connect["agent"], "1001");
}

#[test]
fn a_waiting_caller_hears_music_on_hold_and_counts_as_abandoned_when_it_hangs_up() {
    // No agent is registered: the caller waits, hears music, and gives up.
    let bench = Bench::start("queue-moh", &config("members = [\"1001\"]", ""));
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = media.local_addr().unwrap().port();
    let mut caller = callers(&bench, "caller", 1, 1, 3000, port);
    // Music is sent to the caller's SDP address; count what arrives from the relay.
    let packets = music_packets(&media, caller.relay_port(), Duration::from_secs(2));
    assert!(packets >= 60, "about 50 packets a second of PCMU music on hold, got {packets} in 2 s");
    caller.succeeds();
    let abandon = &wait_events(&bench, "abandon", 1, Duration::from_secs(5))[0];
    assert_eq!(abandon["queue"], "support");
    assert!(abandon["wait_s"].as_f64().unwrap() >= 2.5, "{abandon}");
}

/// Counts PCMU packets from `relay` at `media` for `wait`.
fn music_packets(media: &UdpSocket, relay: std::net::SocketAddr, wait: Duration) -> usize {
    media.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (mut packets, end) = (0, Instant::now() + wait);
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if let Ok((n, from)) = media.recv_from(&mut buf)
            && from == relay
            && n == 12 + 160
            && buf[1] & 0x7f == 0
        {
            packets += 1;
        }
    }
    packets
}

#[test]
fn a_queue_that_does_not_answer_plays_music_as_early_media_and_answers_with_the_agent() {
    let bench = Bench::start("queue-early", &config("members = [\"1001\"]\nanswer = false", ""));
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = media.local_addr().unwrap().port().to_string();
    let mut caller =
        Sipp::spawn(&bench.dir, "caller", "queue_caller_early.xml", trunk_side(&bench), free_port(), &["-s", "5000", "-key", "rtp_port", &port]);
    // 183 with the relay's SDP, and music before any answer.
    let relay = caller.relay_port();
    let early = music_packets(&media, relay, Duration::from_secs(1));
    assert!(early >= 30, "music as early media: {early} packets in 1 s");
    assert!(!caller.log_lines().iter().any(|l| l == "answered"), "not answered before an agent is");
    // The agent's phone registers: it is offered the caller, answers, and the caller gets its 200.
    let mut agent = agent(&bench, "1001", 1, 1000);
    caller.succeeds();
    agent.succeeds();
    assert!(caller.log_lines().iter().any(|l| l == "answered"));
    wait_events(&bench, "complete", 1, Duration::from_secs(5));
}

#[test]
fn the_exit_key_sends_a_waiting_caller_to_its_destination() {
    // Nobody answers the queue; the caller presses 9 (RFC 4733 events from
    // SIPp's own capture) and reaches the desk phone 1004.
    exit_key_test("queue-exit-key", "queue_caller_exit_key.xml", &["-mi", "127.0.0.1"]);
}

#[test]
fn the_exit_key_pressed_by_sip_info_sends_a_waiting_caller_to_its_destination() {
    let rtp = free_port().to_string();
    exit_key_test("queue-exit-key-info", "queue_caller_exit_key_info.xml", &["-key", "rtp_port", &rtp]);
}

/// A caller of a queue nobody answers presses 9 (with `scenario`) and reaches the desk phone 1004.
fn exit_key_test(name: &str, scenario: &str, args: &[&str]) {
    let queue = "members = [\"1001\"]\nexit_key = \"9\"\nexit_to = \"endpoint:1004\"";
    let bench = Bench::start(name, &config(queue, ""));
    let rtp = free_port().to_string();
    let mut desk = bench.phone("1004", "desk1004", "b2bua_callee.xml", &["-key", "rtp_port", &rtp]);
    let args = [&["-s", "5000", "-d", "3000"], args].concat();
    let mut caller = Sipp::spawn(&bench.dir, "caller", scenario, trunk_side(&bench), free_port(), &args);
    caller.succeeds();
    desk.succeeds();
    let exit = &wait_events(&bench, "exit-key", 1, Duration::from_secs(5))[0];
    assert_eq!(exit["queue"], "support");
    assert!(queue_log(&bench).iter().all(|e| e["event"] != "connect"), "no agent was connected");
}

/// A routing service on loopback: answers each POST with `{"agent": <agent>}`
/// and hands the request bodies to the test.
fn routing_service(agent: &'static str) -> (u16, std::sync::mpsc::Receiver<Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // At most a few questions per test; the thread ends with the test process.
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            let answer = format!("{{\"agent\": \"{agent}\"}}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, rx)
}

#[test]
fn the_external_strategy_offers_the_agent_the_routing_service_names() {
    let (port, questions) = routing_service("1003");
    let queue = format!(
        "strategy = \"external\"\nrouter_url = \"http://127.0.0.1:{port}/route\"\nmembers = [\"1001\", \"1002\", \"1003\"]"
    );
    let bench = Bench::start("queue-external", &config(&queue, ""));
    let mut agents: Vec<Sipp> = ["1001", "1002", "1003"].iter().map(|a| agent(&bench, a, 1, 500)).collect();
    let mut caller = served_callers(&bench, "caller", 1, 1);
    caller.succeeds();
    let question = questions.recv_timeout(Duration::from_secs(5)).expect("the routing service was asked");
    assert_eq!(question["queue"], "support");
    assert!(question["caller"].as_str().unwrap().starts_with("+15550100"), "{question}");
    let mut candidates: Vec<&str> = question["candidates"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    candidates.sort();
    assert_eq!(candidates, ["1001", "1002", "1003"]);
    agents[2].succeeds();
    assert_eq!(offers(&agents[2]), 1);
    assert_eq!((offers(&agents[0]), offers(&agents[1])), (0, 0), "only the agent the service chose rang");
    assert_eq!(wait_events(&bench, "connect", 1, Duration::from_secs(5))[0]["agent"], "1003");
}

#[test]
fn a_waiting_caller_hears_its_position_between_the_music() {
    use media_relay::{Codec, Prompt};
    use switch::prompts::{Sounds, queue_announcement};
    let bench = Bench::start("queue-announce", &config("members = [\"1001\"]\nannounce_every_s = 1", ""));
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    media.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut caller = callers(&bench, "caller", 1, 1, 3500, media.local_addr().unwrap().port());
    let relay = caller.relay_port();
    let mut heard = Vec::new();
    let (end, mut buf) = (Instant::now() + Duration::from_secs(3), [0u8; 2048]);
    while Instant::now() < end {
        if let Ok((n, from)) = media.recv_from(&mut buf)
            && from == relay
            && n == 12 + 160
        {
            heard.push(buf[12..n].to_vec());
        }
    }
    caller.succeeds();
    // What the caller heard, frame by frame, against the prompts as the switch has them.
    let sounds_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sounds");
    let sounds = Sounds::load(&sounds_dir, "en").unwrap();
    let announcement = sounds.say(&queue_announcement(Some(1), None)).unwrap();
    let music = Prompt::load(sounds_dir.join("moh.wav")).unwrap();
    let frames_of = |p: &Prompt| -> Vec<Vec<u8>> {
        p.encoded(Codec::Pcmu).unwrap().chunks_exact(160).map(<[u8]>::to_vec).collect()
    };
    let (spoken, played) = (frames_of(&announcement), frames_of(&music));
    let count = |frames: &[Vec<u8>]| heard.iter().filter(|f| frames.contains(f)).count();
    let (said, music_heard) = (count(&spoken), count(&played));
    assert!(said >= spoken.len() / 2, "\"you are caller number one\" ({} frames) was heard: {said} of them", spoken.len());
    assert!(music_heard >= 40, "music before and after it: {music_heard} frames");
}

#[test]
fn an_agent_in_wrap_up_is_not_offered_the_next_caller_until_it_is_over() {
    let bench = Bench::start("queue-wrapup", &config("members = [\"1001\"]\nwrap_up_s = 2", ""));
    let mut agent = agent(&bench, "1001", 2, 1000);
    // Two callers at once: the second waits while the first talks, then during the wrap-up.
    let mut burst = served_callers(&bench, "callers", 2, 10);
    burst.succeeds();
    agent.succeeds();
    let connects = wait_events(&bench, "connect", 2, Duration::from_secs(5));
    let completes = wait_events(&bench, "complete", 2, Duration::from_secs(5));
    let offers = events(&bench, "offer");
    assert_eq!(offers.len(), 2, "one offer per caller: {offers:#?}");
    assert_eq!(call_ids(&connects), call_ids(&offers));
    assert_eq!(completes[0]["call_id"], connects[0]["call_id"]);
    assert_eq!(completes[0]["reason"], "agent", "{:?}", completes[0]);
    let first_done = time_s(&completes[0]);
    // The second offer comes when the wrap-up ends, not before (the times are
    // written to the nanosecond from the engine's clock; 10 ms of slack for the
    // wall clock), and not long after.
    let offered = time_s(&offers[1]) - first_done;
    assert!((1.99..3.0).contains(&offered), "second offer {offered:.3} s after the first call ended: {offers:#?}");
    let connected = time_s(&connects[1]) - first_done;
    assert!(connected >= 2.0, "second caller connected {connected:.3} s after the first call ended: {connects:#?}");
}

#[test]
fn a_caller_past_the_maximum_wait_goes_to_the_overflow_endpoint_and_talks_to_it() {
    // No agent is registered: the caller waits 2 s, then rings 1004, which answers.
    let bench = Bench::start(
        "queue-overflow",
        &config("members = [\"1001\"]\nmax_wait_s = 2\noverflow = \"endpoint:1004\"", ""),
    );
    let (a, b, a_port, b_port) = media_sockets();
    let mut callee = bench.phone("1004", "overflow1004", "b2bua_callee.xml", &["-key", "rtp_port", &b_port]);
    let mut caller = callers(&bench, "caller", 1, 1, 5000, a_port.parse().unwrap());
    let relay_a = caller.relay_port();
    let exit = &wait_events(&bench, "exit", 1, Duration::from_secs(5))[0];
    assert_eq!(exit["reason"], "max-wait", "{exit}");
    let waited = exit["wait_s"].as_f64().unwrap();
    assert!((2.0..3.0).contains(&waited), "{exit}");
    // 1004's INVITE offers the caller's second relay leg; once it has answered, they talk.
    let relay_b = callee.relay_port();
    assert!(
        bench.switch.wait_for_log(&["agent answered"], Duration::from_secs(5)),
        "1004 answered the overflow INVITE\n{}",
        callee.report()
    );
    assert_both_ways(&exchange_rtp(&a, relay_a, &b, relay_b, 25), 25);
    // The caller hangs up at 5 s: 1004 gets the BYE.
    caller.succeeds();
    callee.succeeds();
    // The exit destination is not an agent: no connect, nothing after the
    // exit; and 1001, never registered, was never offered the caller.
    let log = queue_log(&bench);
    let names: Vec<&str> = log.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["enter", "exit"], "{log:#?}");
}

#[test]
fn an_agent_who_does_not_answer_is_skipped_and_paused_after_max_no_answer() {
    let queue = "strategy = \"linear\"\nmembers = [\"1001\", \"1002\"]\nring_timeout_s = 1\nmax_no_answer = 2\n\
                 retry_s = 0\nno_answer_delay_s = 0";
    // No retry pause and no no-answer delay: a caller who rang out moves on to
    // 1002 at once, and 1001 is offered the next caller as soon as it comes.
    let bench = Bench::start("queue-noanswer", &config(queue, ""));
    let mut silent = bench.phone("1001", "silent1001", "queue_agent_no_answer.xml", &["-m", "2"]);
    let mut answering = agent(&bench, "1002", 3, 1000);
    // One caller at a time. Linear: each starts with 1001, which rings out (1 s)
    // for the first two; the third finds 1001 paused.
    for (i, name) in ["caller1", "caller2", "caller3"].into_iter().enumerate() {
        let mut caller = served_caller(&bench, name, "5000");
        caller.succeeds();
        wait_events(&bench, "complete", i + 1, Duration::from_secs(5));
    }
    silent.succeeds();
    answering.succeeds();
    assert_eq!(silent.log_lines(), ["rang", "rang"], "1001 rang for the first two callers only");
    assert_eq!(offers(&answering), 3);

    let log = queue_log(&bench);
    let at = |event: &str, agent: &str| -> Vec<usize> {
        (0..log.len()).filter(|&i| log[i]["event"] == event && log[i]["agent"] == agent).collect()
    };
    let no_answers = at("no-answer", "1001");
    assert_eq!(no_answers.len(), 2, "{log:#?}");
    for &i in &no_answers {
        let rang = log[i]["ring_s"].as_f64().unwrap();
        assert!((1.0..2.0).contains(&rang), "the ring timeout is 1 s: {}", log[i]);
    }
    let pauses = at("pause", "1001");
    assert_eq!(pauses.len(), 1, "{log:#?}");
    assert_eq!(log[pauses[0]]["reason"], "max-no-answer");
    assert!(pauses[0] > no_answers[1], "paused after the second miss: {log:#?}");
    let offered_1001 = at("offer", "1001");
    assert_eq!(offered_1001.len(), 2, "{log:#?}");
    assert!(offered_1001.iter().all(|&i| i < pauses[0]), "1001 was offered a caller while paused: {log:#?}");
    assert!(at("no-answer", "1002").is_empty() && at("pause", "1002").is_empty(), "{log:#?}");
    let connects = events(&bench, "connect");
    assert!(connects.iter().all(|c| c["agent"] == "1002"), "{connects:#?}");
    assert_eq!(call_ids(&connects), call_ids(&events(&bench, "enter")), "every caller was served, in order");
}

/// Callers A (sales), B (support), C (sales), D (support) join in that order
/// while no agent is registered; support has the higher weight. Then 1001
/// registers, and once it talks 1002 does; each talks 2 s, then takes the
/// next caller. Returns the call ids in the order they joined and in the order
/// they were offered (each once).
fn two_queues_then_agents(name: &str, longest_waiting_across_queues: bool) -> (Vec<String>, Vec<String>) {
    let extra = format!(
        "[acd]\nlongest_waiting_across_queues = {longest_waiting_across_queues}\n\
         [queues.sales]\nmembers = [\"1001\", \"1002\"]\n\
         [[dialplan.external]]\nexact = \"5001\"\nqueue = \"sales\"\n"
    );
    let bench = Bench::start(name, &config("members = [\"1001\", \"1002\"]\nweight = 5", &extra));
    let mut callers = Vec::new();
    for (i, (caller, number)) in [("A", "5001"), ("B", "5000"), ("C", "5001"), ("D", "5000")].into_iter().enumerate() {
        callers.push(served_caller(&bench, caller, number));
        // Each joins before the next dials: the join order is the test's.
        wait_events(&bench, "enter", i + 1, Duration::from_secs(5));
    }
    let enters = events(&bench, "enter");
    let queues: Vec<&str> = enters.iter().map(|e| e["queue"].as_str().unwrap()).collect();
    assert_eq!(queues, ["sales", "support", "sales", "support"]);
    // Registered, 1001 is offered a caller at once (its phone starts listening
    // just after: the INVITE's retransmission reaches it).
    let mut first = agent(&bench, "1001", 2, 2000);
    wait_events(&bench, "connect", 1, Duration::from_secs(5));
    let mut second = agent(&bench, "1002", 2, 2000);
    for caller in &mut callers {
        caller.succeeds();
    }
    first.succeeds();
    second.succeeds();
    wait_events(&bench, "complete", 4, Duration::from_secs(5));
    let offers = events(&bench, "offer");
    assert_eq!(offers.len(), 4, "each caller offered once: {:#?}", queue_log(&bench));
    // The agents took turns: 1001, 1002, then whoever freed first (1001).
    let agents: Vec<&str> = offers.iter().map(|o| o["agent"].as_str().unwrap()).collect();
    assert_eq!(agents, ["1001", "1002", "1001", "1002"], "{offers:#?}");
    assert_eq!(call_ids(&events(&bench, "connect")), call_ids(&offers));
    (call_ids(&enters), call_ids(&offers))
}

#[test]
fn with_longest_waiting_across_queues_a_freed_agent_takes_the_longest_waiting_caller_of_any_queue() {
    let (joined, offered) = two_queues_then_agents("queue-longest", true);
    assert_eq!(offered, joined, "A, B, C, D: by wait, whatever the queues' weights");
}

#[test]
fn by_default_a_freed_agent_takes_the_callers_of_its_heaviest_queue_first() {
    let (joined, offered) = two_queues_then_agents("queue-weight", false);
    let [a, b, c, d] = <[String; 4]>::try_from(joined).unwrap();
    assert_eq!(offered, [b, d, a, c], "support (weight 5) first: B, D, then sales: A, C");
}

#[test]
fn an_agent_logs_out_and_back_in_with_feature_codes() {
    let bench = Bench::start("queue-codes", &config("strategy = \"linear\"\nmembers = [\"1001\", \"1002\"]", ""));
    let mut first = agent(&bench, "1001", 1, 1000);
    let mut second = agent(&bench, "1002", 1, 1000);
    let rtp = free_port().to_string();
    let feature = |name: &str, code: &str| {
        let mut phone = bench.caller(name, "queue_feature_code.xml", code, &["-key", "rtp_port", &rtp]);
        // Answered, the confirmation plays, then the switch hangs up.
        phone.succeeds();
        assert_eq!(phone.log_lines(), ["answered", "hung up"]);
    };

    // *46: 1001 logs out. Linear would offer it the next caller first; 1002 gets it.
    feature("logout", "*46");
    let logout = &wait_events(&bench, "logout", 1, Duration::from_secs(5))[0];
    assert_eq!(logout["agent"], "1001");
    let mut caller = served_caller(&bench, "caller1", "5000");
    caller.succeeds();
    second.succeeds();
    let connect = &wait_events(&bench, "connect", 1, Duration::from_secs(5))[0];
    assert_eq!(connect["agent"], "1002", "{:#?}", queue_log(&bench));
    wait_events(&bench, "complete", 1, Duration::from_secs(5));

    // *45: back in; the next caller goes to 1001 (first in line again).
    feature("login", "*45");
    let login = &wait_events(&bench, "login", 1, Duration::from_secs(5))[0];
    assert_eq!(login["agent"], "1001");
    let mut caller = served_caller(&bench, "caller2", "5000");
    caller.succeeds();
    first.succeeds();
    let connects = wait_events(&bench, "connect", 2, Duration::from_secs(5));
    assert_eq!(connects[1]["agent"], "1001", "{:#?}", queue_log(&bench));
    let offered = events(&bench, "offer");
    let agents: Vec<&str> = offered.iter().map(|o| o["agent"].as_str().unwrap()).collect();
    assert_eq!(agents, ["1002", "1001"], "1001 was not offered a caller while logged out: {offered:#?}");
    assert_eq!((offers(&first), offers(&second)), (1, 1));
}

/// An agent whose phone has not registered since the switch started is not
/// offered callers (an offer would fail and keep it out for the busy delay);
/// once it registers, it is offered the waiting caller at once.
#[test]
fn an_agent_who_registers_after_a_caller_joined_is_offered_it_at_once() {
    let bench = Bench::start("queue-late-agent", &config("members = [\"1001\"]", ""));
    let mut caller = served_caller(&bench, "caller", "5000");
    wait_events(&bench, "enter", 1, Duration::from_secs(5));
    let mut agent = agent(&bench, "1001", 1, 500);
    // Registered, the agent is offered the caller at once (its phone gets the
    // INVITE's retransmission 500 ms later and answers 300 ms after that).
    wait_events(&bench, "connect", 1, Duration::from_secs(3));
    caller.succeeds();
    agent.succeeds();
    let failed = events(&bench, "failed");
    assert!(failed.is_empty(), "an agent with no registered phone was offered the caller: {failed:#?}");
}

/// Sends SIGHUP to the switch (a configuration reload).
fn reload(bench: &Bench) {
    let status = std::process::Command::new("kill").args(["-HUP", &bench.switch.pid().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_reload_adds_a_member_and_keeps_the_waiting_caller_while_a_bad_file_changes_nothing() {
    let bench = Bench::start("queue-reload", &config("members = [\"1001\"]", ""));
    let mut caller = served_caller(&bench, "caller", "5000");
    wait_events(&bench, "enter", 1, Duration::from_secs(5));
    let path = bench.switch.dir.join("tandem.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    // A member that is no endpoint: refused, with the reason, and the queue runs on.
    std::fs::write(&path, original.replace("members = [\"1001\"]", "members = [\"1001\", \"2002\"]")).unwrap();
    reload(&bench);
    assert!(
        bench.switch.wait_for_log(&["configuration not reloaded", "\\\"2002\\\" is not a defined endpoint"], Duration::from_secs(5)),
        "{:#?}",
        bench.switch.log_lines()
    );
    // 1002 joins the queue: once its phone registers it gets the caller who was waiting all along.
    std::fs::write(&path, original.replace("members = [\"1001\"]", "members = [\"1001\", \"1002\"]")).unwrap();
    reload(&bench);
    assert!(bench.switch.wait_for_log(&["configuration reloaded"], Duration::from_secs(5)));
    let mut agent = agent(&bench, "1002", 1, 500);
    caller.succeeds();
    agent.succeeds();
    assert_eq!(events(&bench, "enter").len(), 1, "the caller waited through both reloads: {:#?}", queue_log(&bench));
    assert_eq!(wait_events(&bench, "connect", 1, Duration::from_secs(5))[0]["agent"], "1002");
}
