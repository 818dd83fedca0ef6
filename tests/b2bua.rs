//! Two-party calls through the real binary (the B2BUA), with real peers on both
//! sides: SIPp as the caller (1001, answering the 407) and as the called phone
//! (1002, registered from the port it then listens on), and baresip as a phone
//! stack we did not write. Each test checks what both peers saw and the CDR;
//! the media tests check that each side receives the other side's RTP through
//! the relay. Everything runs on loopback; every wait is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ENDPOINTS, Switch, require_tool, sipp_dir, sipp_ok};
use serde_json::Value;

/// The relay's ports for these tests (calls.rs uses 32000-32999, the core tests 33000-33099).
const MEDIA: &str = "[media]\nport_min = 34000\nport_max = 34999\n";

/// Endpoints 1001-1003, the relay, and 1001-1010 routed to the endpoint of that
/// number, ringing at most `ring_timeout_s` when given.
fn config(ring_timeout_s: Option<u64>) -> String {
    let ring = ring_timeout_s.map(|s| format!("ring_timeout_s = {s}\n")).unwrap_or_default();
    format!("{ENDPOINTS}{MEDIA}[[dialplan.internal]]\npattern = '10(0[1-9]|10)'\nendpoint = \"$0\"\n{ring}")
}

/// A loopback UDP port nobody holds now (the system's choice, released).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An even loopback UDP port that is free with the one two above it: SIPp binds
/// its media port and that one (for video).
fn free_media_port() -> u16 {
    for _ in 0..100 {
        let first = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port.is_multiple_of(2) && port < 65000 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no free even UDP port pair on loopback");
}

/// Whether a process has a UDP socket bound on `port` (IPv4), from /proc.
fn udp_port_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .and_then(|local| local.rsplit_once(':'))
            .is_some_and(|(_, p)| u16::from_str_radix(p, 16).ok() == Some(port))
    })
}

/// One SIPp process running a scenario in the background, its `<log>` lines
/// in a file of its own.
struct Sipp {
    child: Option<Child>,
    name: String,
    log: PathBuf,
    errors: PathBuf,
    messages: PathBuf,
    output: PathBuf,
    started: Instant,
}

impl Sipp {
    /// Starts `scenario` from 127.0.0.1:`port` against `target` over UDP, one
    /// call, 20 s at most, logging into `dir` under `name`.
    fn spawn(dir: &Path, name: &str, scenario: &str, target: SocketAddr, port: u16, args: &[&str]) -> Sipp {
        require_tool("sipp", "sip-tester");
        std::fs::create_dir_all(dir).unwrap();
        let file = |suffix: &str| dir.join(format!("{name}_{suffix}.log"));
        let (log, errors, messages, output) = (file("logs"), file("errors"), file("messages"), file("output"));
        let mp = free_media_port().to_string();
        let mut cmd = Command::new("sipp");
        cmd.current_dir(dir)
            .arg("-sf")
            .arg(sipp_dir().join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1", "-m", "1"])
            .args(["-timeout", "20s", "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-trace_msg", "-trace_logs"])
            .arg("-log_file")
            .arg(&log)
            .arg("-error_file")
            .arg(&errors)
            .arg("-message_file")
            .arg(&messages);
        // The media port, unless the test chose one.
        if !args.contains(&"-mp") {
            cmd.args(["-mp", &mp]);
        }
        let out = std::fs::File::create(&output).unwrap();
        let child = cmd
            .args(args)
            .arg(target.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("run sipp (Debian package sip-tester)");
        Sipp { child: Some(child), name: name.to_string(), log, errors, messages, output, started: Instant::now() }
    }

    /// The value of the first `<log>` line `key=value`, waiting up to `wait`.
    fn logged(&self, key: &str, wait: Duration) -> Option<String> {
        let end = Instant::now() + wait;
        let prefix = format!("{key}=");
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(v) = text.lines().find_map(|l| l.strip_prefix(&prefix)) {
                return Some(v.trim().to_string());
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the scenario logs the line `line` within `wait`.
    fn wait_line(&self, line: &str, wait: Duration) -> bool {
        let end = Instant::now() + wait;
        while !self.log_lines().iter().any(|l| l == line) {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The `<log>` lines written so far.
    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// A relay port the scenario logged (`relay_port=N`).
    fn relay_port(&self) -> SocketAddr {
        let port = self.logged("relay_port", Duration::from_secs(10));
        let port = port.unwrap_or_else(|| panic!("{}: no SDP with the relay's port\n{}", self.name, self.report()));
        SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap()))
    }

    /// Waits for SIPp to end (at most 25 s after it started) and returns
    /// whether its call succeeded.
    fn finish(&mut self) -> bool {
        let mut child = self.child.take().expect("finished once");
        let end = self.started + Duration::from_secs(25);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that the scenario ran to its end.
    fn succeeds(&mut self) {
        let ok = self.finish();
        assert!(ok, "{}: the scenario failed\n{}", self.name, self.report());
    }

    /// Its errors and the messages it exchanged, for a failure message.
    fn report(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        // The last screen of its output: the statistics, or why it did not start.
        let output = read(&self.output);
        let tail = output.len().saturating_sub(3000);
        let (name, errors, messages) = (&self.name, read(&self.errors), read(&self.messages));
        format!(
            "--- {name} output ---\n{}\n--- {name} errors ---\n{errors}\n--- {name} messages ---\n{messages}",
            output.get(tail..).unwrap_or(&output)
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A test's switch, and a folder for its peers' files.
struct Bench {
    switch: Switch,
    dir: PathBuf,
}

impl Bench {
    fn start(name: &str, config: &str) -> Bench {
        let switch = Switch::start(name, config);
        let dir = switch.dir.join("peers");
        Bench { switch, dir }
    }

    fn udp(&self) -> SocketAddr {
        self.switch.addr("internal", "udp", false)
    }

    /// A SIPp phone registered as 1002 from a port of its own (digest auth),
    /// then listening there with `scenario` for the INVITE.
    fn callee(&self, name: &str, scenario: &str, args: &[&str]) -> Sipp {
        let port = free_port();
        sipp_ok(
            "register_auth.xml",
            self.udp(),
            "u1",
            &["-s", "1002", "-au", "1002", "-ap", "demo1002", "-p", &port.to_string()],
        );
        let sipp = Sipp::spawn(&self.dir, name, scenario, self.udp(), port, args);
        let end = Instant::now() + Duration::from_secs(5);
        while !udp_port_bound(port) {
            assert!(Instant::now() < end, "{name}: SIPp did not bind 127.0.0.1:{port}\n{}", sipp.report());
            std::thread::sleep(Duration::from_millis(10));
        }
        sipp
    }

    /// SIPp as 1001 calling `number` with `scenario`.
    fn caller(&self, name: &str, scenario: &str, number: &str, args: &[&str]) -> Sipp {
        let base = ["-s", number, "-au", "1001", "-ap", "demo1001"];
        Sipp::spawn(&self.dir, name, scenario, self.udp(), free_port(), &[&base[..], args].concat())
    }

    /// The first `count` CDRs, waiting up to 5 s for them.
    fn cdrs(&self, count: usize) -> Vec<Value> {
        let path = self.switch.dir.join("data/cdr.jsonl");
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Whole lines only: the switch may be writing the next one.
            let lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
            let records: Vec<Value> = lines.map(|l| serde_json::from_str(l).expect("a CDR is JSON")).collect();
            if records.len() >= count {
                return records;
            }
            assert!(Instant::now() < end, "{count} CDR(s) expected, found:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The only CDR, once written; no second one appears meanwhile.
    fn cdr(&self) -> Value {
        let records = self.cdrs(1);
        std::thread::sleep(Duration::from_millis(200));
        let again = self.cdrs(1);
        assert_eq!(again.len(), 1, "one call, one CDR: {again:?}");
        records.into_iter().next().unwrap()
    }

    /// The relay's packet counters of the first call whose media stopped:
    /// (a_rtp_in, a_rtp_out, b_rtp_in, b_rtp_out); leg A is the caller's.
    fn media_counters(&self) -> [u64; 4] {
        assert!(self.switch.wait_for_log(&["call media stopped"], Duration::from_secs(5)), "the call's media stopped");
        let line = self.switch.log_lines().into_iter().find(|l| l.contains("call media stopped")).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        ["a_rtp_in", "a_rtp_out", "b_rtp_in", "b_rtp_out"]
            .map(|k| v["fields"][k].as_u64().unwrap_or_else(|| panic!("no {k} in {line}")))
    }

    fn count_log(&self, message: &str) -> usize {
        let needle = format!("\"message\":\"{message}\"");
        self.switch.log_lines().iter().filter(|l| l.contains(&needle)).count()
    }
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

// ---- RTP ----

const PACKETS: u16 = 50;
const PAYLOAD: usize = 160;

/// A G.711 μ-law packet (RTP v2, PT 0, 20 ms) whose payload says who sent it
/// and which one it is: `side`, the sequence number, then a pattern of both.
fn rtp_packet(side: u8, seq: u16) -> Vec<u8> {
    let ssrc = u32::from_be_bytes([side, 0x7a, 0x6e, 0x64]);
    let mut p = Vec::with_capacity(12 + PAYLOAD);
    p.extend_from_slice(&[0x80, 0]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.push(side);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((3..PAYLOAD).map(|i| (i as u8).wrapping_mul(7) ^ (seq as u8) ^ side));
    p
}

/// Receives on `socket` until `count` of the packets `side` sends have come or
/// `wait` is over: the payloads of every valid PT 0 RTP packet (others may come
/// too, e.g. music on hold), and how many datagrams were something else.
fn receive_rtp(
    socket: UdpSocket,
    side: u8,
    count: usize,
    wait: Duration,
) -> std::thread::JoinHandle<(Vec<Vec<u8>>, usize)> {
    std::thread::spawn(move || {
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let end = Instant::now() + wait;
        let (mut payloads, mut other) = (Vec::<Vec<u8>>::new(), 0);
        let mut buf = [0u8; 2048];
        while payloads.iter().filter(|p| sent_by(p, side)).count() < count && Instant::now() < end {
            let Ok(n) = socket.recv(&mut buf) else { continue };
            // Version 2, no padding, extension or CSRC; payload type 0 (the marker may be set).
            if n == 12 + PAYLOAD && buf[0] == 0x80 && buf[1] & 0x7f == 0 {
                payloads.push(buf[12..n].to_vec());
            } else {
                other += 1;
            }
        }
        (payloads, other)
    })
}

/// Whether `payload` is that of a packet `side` sends.
fn sent_by(payload: &[u8], side: u8) -> bool {
    let seq = u16::from_be_bytes([payload[1], payload[2]]);
    payload[0] == side && payload[..] == rtp_packet(side, seq)[12..]
}

/// Throws away what is waiting on `socket` (packets of an earlier phase).
fn drain(socket: &UdpSocket) {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    while socket.recv(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
}

/// What one side received of the other's packets.
struct Heard {
    /// The payloads that came, in order.
    payloads: Vec<Vec<u8>>,
    /// Datagrams that were not PT 0 RTP of our size.
    other: usize,
}

impl Heard {
    /// Whether every one of `side`'s `count` payloads came, in order and unchanged.
    fn everything_from(&self, side: u8, count: u16) -> bool {
        let theirs: Vec<&Vec<u8>> = self.payloads.iter().filter(|p| sent_by(p, side)).collect();
        theirs.len() == usize::from(count)
            && theirs.iter().zip(0..count).all(|(p, seq)| p[..] == rtp_packet(side, seq)[12..])
    }

    /// How many of the payloads are packets `side` sent.
    fn from(&self, side: u8) -> usize {
        self.payloads.iter().filter(|p| sent_by(p, side)).count()
    }
}

/// Sends `count` packets each way, 20 ms apart: from `a` (side `A`) to the
/// relay's port for the caller, from `b` (side `B`) to its port for the
/// callee; returns what `a` and `b` received meanwhile (what was waiting on
/// them before is thrown away).
fn exchange_rtp(a: &UdpSocket, relay_a: SocketAddr, b: &UdpSocket, relay_b: SocketAddr, count: u16) -> (Heard, Heard) {
    let wait = Duration::from_millis(20 * u64::from(count) + 1000);
    drain(a);
    drain(b);
    let at_a = receive_rtp(a.try_clone().unwrap(), b'B', usize::from(count), wait);
    let at_b = receive_rtp(b.try_clone().unwrap(), b'A', usize::from(count), wait);
    for seq in 0..count {
        a.send_to(&rtp_packet(b'A', seq), relay_a).unwrap();
        b.send_to(&rtp_packet(b'B', seq), relay_b).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let heard = |h: std::thread::JoinHandle<(Vec<Vec<u8>>, usize)>| {
        let (payloads, other) = h.join().unwrap();
        Heard { payloads, other }
    };
    (heard(at_a), heard(at_b))
}

/// Asserts that each side heard every packet the other sent.
fn assert_both_ways((at_a, at_b): &(Heard, Heard), count: u16) {
    assert!(
        at_b.everything_from(b'A', count),
        "the callee got {} of the caller's {count} packets through the relay ({} other RTP packets, {} other datagrams)",
        at_b.from(b'A'),
        at_b.payloads.len() - at_b.from(b'A'),
        at_b.other
    );
    assert!(
        at_a.everything_from(b'B', count),
        "the caller got {} of the callee's {count} packets through the relay ({} other RTP packets, {} other datagrams)",
        at_a.from(b'B'),
        at_a.payloads.len() - at_a.from(b'B'),
        at_a.other
    );
}

/// Two loopback sockets standing for the phones' media, and their ports.
fn media_sockets() -> (UdpSocket, UdpSocket, String, String) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_port, b_port) = (a.local_addr().unwrap().port().to_string(), b.local_addr().unwrap().port().to_string());
    (a, b, a_port, b_port)
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

/// baresip (Debian `baresip-core`) as the called phone, auto-answering, with
/// the switch's music-on-hold file as its microphone; what it plays goes to an
/// in-memory device. Its output lines come through the channel.
fn baresip_phone(dir: &Path, account: &str) -> (Child, std::sync::mpsc::Receiver<String>) {
    require_tool("baresip", "baresip-core");
    let wav = Path::new(env!("CARGO_MANIFEST_DIR")).join("sounds/moh.wav");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen 127.0.0.1:{port}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
module aubridge.so\nmodule_app account.so\nmodule_app menu.so\naudio_source aufile,{wav}\naudio_player aubridge,x\n",
            port = free_port(),
            wav = wav.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
    let mut child = Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run baresip (Debian package baresip-core)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line of baresip's output containing `needle`; the lines seen
/// meanwhile go into `seen`.
fn baresip_says(rx: &std::sync::mpsc::Receiver<String>, needle: &str, wait: Duration, seen: &mut Vec<String>) -> bool {
    let end = Instant::now() + wait;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn baresip_answers_a_call_through_the_switch() {
    let bench = Bench::start("b2bua-baresip", &config(None));
    let account = format!("<sip:1002@{}>;auth_pass=demo1002;regint=60;answermode=auto", bench.udp());
    let (mut phone, rx) = baresip_phone(&bench.dir.join("baresip"), &account);
    let mut seen = Vec::new();
    let registered = baresip_says(&rx, "[1 binding]", Duration::from_secs(15), &mut seen);
    assert!(registered, "baresip did not register as 1002:\n{}", seen.join("\n"));

    let mp = free_media_port().to_string();
    let mut caller = bench.caller("caller", "b2bua_caller_pcap.xml", "1002", &["-mp", &mp, "-key", "rtp_port", &mp]);
    let established = baresip_says(&rx, "Call established", Duration::from_secs(10), &mut seen);
    // The caller: 180, 200 (PCMA, which baresip took), 4 s of audio, BYE.
    caller.succeeds();
    let ended = baresip_says(&rx, "terminated", Duration::from_secs(5), &mut seen);
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
