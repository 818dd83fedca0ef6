//! ACD queues through the real binary: SIPp callers dial 5000 from the trunk
//! side, SIPp agents registered as 1001-1003 answer (or not). Each test checks
//! what the peers saw and what the queue log says. Everything runs on
//! loopback; every wait is bounded.

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{Bench, Sipp, free_port};
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
    media.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = media.local_addr().unwrap().port();
    let mut caller = callers(&bench, "caller", 1, 1, 3000, port);
    let relay = caller.relay_port();
    // Music is sent to the caller's SDP address; count what arrives from the relay.
    let (mut packets, end) = (0, Instant::now() + Duration::from_secs(2));
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if let Ok((n, from)) = media.recv_from(&mut buf) {
            if from == relay && n == 12 + 160 && buf[1] & 0x7f == 0 {
                packets += 1;
            }
        }
    }
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
    let queue = "members = [\"1001\"]\nexit_key = \"9\"\nexit_to = \"endpoint:1004\"";
    let bench = Bench::start("queue-exit-key", &config(queue, ""));
    let rtp = free_port().to_string();
    let mut desk = bench.phone("1004", "desk1004", "b2bua_callee.xml", &["-key", "rtp_port", &rtp]);
    let args = ["-s", "5000", "-mi", "127.0.0.1", "-d", "3000"];
    let mut caller = Sipp::spawn(&bench.dir, "caller", "queue_caller_exit_key.xml", trunk_side(&bench), free_port(), &args);
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
