//! The media load generator (tests/common/media_load.rs says how it measures).
//!
//! Relay mode (the default): `CALLS` bridged calls through a `MediaRelay` in
//! this process, set up through its API (two legs, RTP and RTCP ports each,
//! ports 40000-59999), two phones per call sending 20 ms PCMU packets both ways
//! for `SECONDS` (after a 2 s warm-up). Reports loss, reordering, extra latency
//! through the relay, jitter, the relay threads' CPU per call and per core,
//! and resident memory per call. The generator shares the machine's cores
//! with the relay: its own CPU is reported beside.
//!
//! Switch mode (`MODE=switch`): the real binary (tests/common starts it on
//! loopback, media ports 40000-59999), and `CALLS` calls to its echo line 6000
//! set up one after another by a minimal SIP client here (INVITE, 407, INVITE
//! with digest credentials, 200, ACK; BYE at the end), one phone per call
//! hearing itself. The same measurements, with the whole switch process's CPU
//! and resident memory from /proc/<pid>. An echo call is one leg: half the
//! packets of a bridged call. The switch's memory and sockets are also read
//! every 10 s through the window, and after the BYEs: the soak's verdict (no
//! loss, memory flat, every socket returned; docs/media-load.md, "Soak").
//!
//! cargo bench --bench media_load                       (500 calls, 20 s)
//! CALLS=2000 SECONDS=20 cargo bench --bench media_load
//! MODE=switch CALLS=1000 cargo bench --bench media_load
//! MODE=switch CALLS=1000 SECONDS=600 cargo bench --bench media_load   (the soak)
//!
//! Settings (environment; bounded): CALLS (1-3000, default 500), SECONDS
//! (1-600, default 20), WORKERS (the relay's runtime threads, default one per
//! core), GEN_THREADS (generator threads, default 2), TICK_US (0-10000, default
//! 100; 0: each packet at its time; see `Plan::tick`), PIN=1 (relay mode: the
//! generator's threads on CPU 0, the relay's on the others, WORKERS then
//! defaulting to one per other core: the relay's capacity per core without
//! the generator competing for its core), RTCP_MUX=1 (one port per leg),
//! MEDIA_LOAD_CSV=<file> (one line per call direction).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/media_load.rs"]
mod media_load;

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use media_load::{Mark, Phone, PhoneSet, Plan, RelayOptions, Report};

/// Switch mode: how often the switch's sockets and memory are read through the
/// measured window (at its start and end too).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How long the switch has, after the last BYE, to close the calls' sockets.
const SETTLE: Duration = Duration::from_secs(10);
/// Memory counts as flat when the window's last sample is at most this much above
/// its first (after the warm-up): the larger of 1 MiB and 5%.
const FLAT_KIB: u64 = 1024;
const FLAT_PERCENT: u64 = 5;

fn main() {
    if !common::is_bench_run() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let calls = common::env_or("CALLS", 500).clamp(1, 3000) as usize;
    // PIN=1: the generator on the first CPU, the relay on the others.
    let pin = common::env_or("PIN", 0) == 1 && cores > 1;
    let seconds = common::env_or("SECONDS", 20).clamp(1, 600);
    let plan = Plan {
        warmup: Duration::from_secs(2),
        measure: Duration::from_secs(seconds),
        drain: Duration::from_millis(500),
        threads: common::env_or("GEN_THREADS", 2).clamp(1, 16) as usize,
        tick: Duration::from_micros(common::env_or("TICK_US", 100).min(10_000)),
        cpus: if pin { vec![0] } else { Vec::new() },
    };
    let report = match std::env::var("MODE").as_deref() {
        Ok("switch") => {
            let (report, footprint) = switch_mode(calls, &plan);
            println!("{}", report.text());
            println!("{}", footprint.text(&report));
            report
        }
        Ok("relay") | Err(_) => {
            let options = RelayOptions {
                calls,
                workers: common::env_or("WORKERS", (cores - usize::from(pin)) as u64).clamp(1, 64) as usize,
                rtcp_mux: common::env_or("RTCP_MUX", 0) == 1,
                port_min: 40000,
                port_max: 59999,
                cpus: if pin { (1..cores).collect() } else { Vec::new() },
            };
            let report = media_load::relay_mode(&options, &plan);
            println!("{}", report.text());
            report
        }
        Ok(other) => panic!("MODE={other}: relay or switch"),
    };
    if let Ok(path) = std::env::var("MEDIA_LOAD_CSV") {
        std::fs::write(&path, report.outcome.csv()).unwrap_or_else(|e| panic!("{path}: {e}"));
        println!("  per direction: {path}");
    }
}

/// Echo calls through the real binary; see the module docs.
fn switch_mode(calls: usize, plan: &Plan) -> (Report, Footprint) {
    let extra = "[endpoints]\n1001 = { password = \"demo1001\" }\n[media]\nport_min = 40000\nport_max = 59999\n\
[[dialplan.internal]]\nexact = \"6000\"\necho = true\n";
    let switch = common::Switch::start_logging("media-load", "warn,tandem=info", extra);
    let pid = switch.pid().to_string();
    let mut client = SipClient::new(switch.addr("internal", "udp", false));
    let rss_before = media_load::rss_kib(&pid);
    let before = common::Held::of(switch.pid());
    let mut phones = Vec::with_capacity(calls);
    let mut dialogs = Vec::with_capacity(calls);
    let mut setup_ms = Vec::with_capacity(calls);
    let mut failed = Vec::new();
    let started = Instant::now();
    for call in 0..calls as u32 {
        let phone = Phone::bind(call, 0, 0).expect("a phone binds a loopback port");
        let t = Instant::now();
        match client.call(call, phone.local_addr()) {
            Ok(dialog) => {
                setup_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                phone.connect(dialog.relay).expect("connect a phone to its relay port");
                phones.push(phone);
                dialogs.push(dialog);
            }
            Err(e) => failed.push(format!("call {call}: {e}")),
        }
    }
    let setup = started.elapsed();
    let rss_setup = media_load::rss_kib(&pid);
    let mut set = PhoneSet::new(plan.threads, phones.len());
    for phone in phones {
        set.add(phone);
    }
    let mut marks = Vec::with_capacity(2);
    let (mut sampler, mut samples) = (None, Vec::new());
    let outcome = media_load::run(set, plan, |mark| {
        marks.push(media_load::snapshot(&pid));
        match mark {
            Mark::Measuring => sampler = Some(Sampler::start(switch.pid())),
            Mark::Measured => samples = sampler.take().map(Sampler::stop).unwrap_or_default(),
        }
    });
    let mut hangup_failed = 0;
    for dialog in &dialogs {
        if let Err(e) = client.hang_up(dialog) {
            hangup_failed += 1;
            failed.push(format!("BYE {}: {e}", dialog.call_id));
        }
    }
    // Every call has ended: its ports must close.
    let (after, settled) = common::Held::settle(switch.pid(), before.sockets, SETTLE);
    let (_, log) = switch.stop_and_log();
    // The demo password warning is the configuration's, not the run's.
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| (l.contains("\"WARN\"") || l.contains("\"ERROR\"")) && !l.contains("demo passwords"))
        .collect();
    for w in warnings.iter().take(3) {
        println!("  tandem: {w}");
    }
    setup_ms.sort_by(f64::total_cmp);
    let at = |q: f64| setup_ms.get(((setup_ms.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let title = format!(
        "media_load switch mode: {} echo calls to 6000 through the tandem binary ({} failed to set up, {} BYEs failed; \
set up one after another in {:.2} s, INVITE -> 200 with the 407 round p50 {:.2} ms, p99 {:.2} ms; one phone per call \
hearing itself; tandem logged {} warnings), generator {} thread(s)",
        dialogs.len(),
        calls - dialogs.len(),
        hangup_failed,
        setup.as_secs_f64(),
        at(0.5),
        at(0.99),
        warnings.len(),
        plan.threads
    );
    for f in failed.iter().take(5) {
        println!("  {f}");
    }
    let report = Report::new(title, dialogs.len(), plan.clone(), outcome, &marks, rss_before, rss_setup, None, "");
    (report, Footprint { calls: dialogs.len(), before, samples, after, settled })
}

/// What the switch held through a switch-mode run: its sockets and resident memory.
struct Footprint {
    /// Calls set up (each one echo leg: an RTP and an RTCP port).
    calls: usize,
    /// Before the calls were set up.
    before: common::Held,
    /// Through the measured window, every [`SAMPLE_EVERY`] from its start (after the
    /// warm-up) to its end: (time into the window, what the switch held).
    samples: Vec<(Duration, common::Held)>,
    /// After the last BYE, once the sockets were back to their count before the
    /// calls (or [`SETTLE`] passed), and how long that took.
    after: common::Held,
    settled: Duration,
}

impl Footprint {
    /// The samples, and the verdict: no loss, memory flat, every socket returned.
    fn text(&self, report: &Report) -> String {
        let (Some((_, first)), Some((_, last))) = (self.samples.first(), self.samples.last()) else {
            return "  the switch was not sampled".to_string();
        };
        let rss_max = self.samples.iter().map(|(_, h)| h.rss_kib).max().unwrap_or(0);
        let sockets = self.samples.iter().map(|(_, h)| h.sockets);
        let (sockets_min, sockets_max) = (sockets.clone().min().unwrap_or(0), sockets.max().unwrap_or(0));
        let series: Vec<String> = self
            .samples
            .iter()
            .map(|(t, h)| format!("{:.0} s {:.1}/{}", t.as_secs_f64(), h.rss_kib as f64 / 1024.0, h.sockets))
            .collect();
        let slack = FLAT_KIB.max(first.rss_kib * FLAT_PERCENT / 100);
        let flat = last.rss_kib <= first.rss_kib + slack;
        let returned = self.after.sockets == self.before.sockets;
        let window = self.samples.last().map_or(0.0, |(t, _)| t.as_secs_f64());
        let growth = (last.rss_kib as f64 - first.rss_kib as f64) / 1024.0;
        let t = report.totals();
        format!(
            "  the switch through the window (s into it: RSS MiB/sockets): {}\n  \
soak check: loss {} of {} packets; rss first {} (after the warm-up) -> max {} -> last {} ({growth:+.1} MiB over \
{window:.0} s): {} (at most +{}: the larger of +{} and +{FLAT_PERCENT}%); sockets before the calls {} -> during \
{sockets_min}-{sockets_max} (expected {}: 2 per echo call) -> after the BYEs {} ({}, {:.1} s after the last); \
UDP {} -> {} -> {}; descriptors {} -> {} -> {}; rss after the BYEs {}",
            series.join(", "),
            t.lost,
            t.sent,
            common::mib(first.rss_kib),
            common::mib(rss_max),
            common::mib(last.rss_kib),
            if flat { "flat" } else { "NOT flat" },
            common::mib(slack),
            common::mib(FLAT_KIB),
            self.before.sockets,
            self.before.sockets + 2 * self.calls,
            self.after.sockets,
            if returned { "returned" } else { "NOT returned" },
            self.settled.as_secs_f64(),
            self.before.udp,
            last.udp,
            self.after.udp,
            self.before.fds,
            last.fds,
            self.after.fds,
            common::mib(self.after.rss_kib),
        )
    }
}

/// Reads what the switch holds now and every [`SAMPLE_EVERY`] after, and once more as it stops.
struct Sampler {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Vec<(Duration, common::Held)>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("switch-sampler".to_string())
            .spawn(move || {
                let start = Instant::now();
                let mut samples = Vec::new();
                loop {
                    samples.push((start.elapsed(), common::Held::of(pid)));
                    let next = start + SAMPLE_EVERY * samples.len() as u32;
                    let wait = next.saturating_duration_since(Instant::now());
                    if stopped.recv_timeout(wait) != Err(mpsc::RecvTimeoutError::Timeout) {
                        break;
                    }
                }
                samples.push((start.elapsed(), common::Held::of(pid)));
                samples
            })
            .expect("the sampler thread starts");
        Sampler { stop, thread }
    }

    /// The samples, the last one taken now.
    fn stop(self) -> Vec<(Duration, common::Held)> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// An established echo call, as the client needs it to hang up.
struct Dialog {
    call_id: String,
    from_tag: String,
    /// The To header with the switch's tag.
    to: String,
    /// Where in-dialog requests go (the 200's Contact).
    target: String,
    /// The relay's address in the answer.
    relay: SocketAddr,
}

/// A SIP response as far as this client reads it.
struct Response {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn parse(text: &str) -> Option<Response> {
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let code = lines.next()?.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Response { code, headers, body: body.to_string() })
    }

    /// A header by its name or compact form.
    fn header(&self, name: &str, compact: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name || n == compact).map(|(_, v)| v.as_str())
    }

    /// The audio address of the SDP body (c= and m=audio).
    fn sdp_audio(&self) -> Option<SocketAddr> {
        let ip = self.body.lines().find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?.trim();
        let port = self.body.lines().find_map(|l| l.trim().strip_prefix("m=audio "))?.split(' ').next()?;
        format!("{ip}:{port}").parse().ok()
    }
}

/// A UDP user agent calling the echo line, one transaction at a time.
struct SipClient {
    socket: UdpSocket,
    local: SocketAddr,
    switch: SocketAddr,
    branch: u64,
    buf: Vec<u8>,
}

impl SipClient {
    fn new(switch: SocketAddr) -> SipClient {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the SIP client");
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let local = socket.local_addr().unwrap();
        SipClient { socket, local, switch, branch: 0, buf: vec![0; 65536] }
    }

    fn branch(&mut self) -> String {
        self.branch += 1;
        format!("z9hG4bK-ml-{}-{}", std::process::id(), self.branch)
    }

    /// Sends `request` (again every 500 ms, 4 s at most) until a final response
    /// with this Call-ID and CSeq comes; others (retransmissions) are ignored.
    fn transact(&mut self, request: &str, call_id: &str, cseq: &str) -> Result<Response, String> {
        let end = Instant::now() + Duration::from_secs(4);
        let mut resend = Instant::now();
        loop {
            let now = Instant::now();
            if now > end {
                return Err(format!("no final response to {cseq}"));
            }
            if now >= resend {
                self.socket.send_to(request.as_bytes(), self.switch).map_err(|e| e.to_string())?;
                resend = now + Duration::from_millis(500);
            }
            let Ok(n) = self.socket.recv(&mut self.buf) else { continue };
            let Some(r) = Response::parse(&String::from_utf8_lossy(&self.buf[..n])) else { continue };
            if r.code >= 200 && r.header("call-id", "i") == Some(call_id) && r.header("cseq", "") == Some(cseq) {
                return Ok(r);
            }
        }
    }

    fn send(&self, request: &str) -> Result<(), String> {
        self.socket.send_to(request.as_bytes(), self.switch).map(drop).map_err(|e| e.to_string())
    }

    /// INVITE, 407, ACK, INVITE with credentials, 200, ACK.
    fn call(&mut self, call: u32, media: SocketAddr) -> Result<Dialog, String> {
        let (local, switch) = (self.local, self.switch);
        let uri = format!("sip:6000@{switch}");
        let call_id = format!("ml-{call}-{}@127.0.0.1", std::process::id());
        let from_tag = format!("ml{call}");
        let sdp = format!(
            "v=0\r\no=1001 {call} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            ip = media.ip(),
            port = media.port()
        );
        let invite = |branch: &str, cseq: u32, auth: &str| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
From: <sip:1001@127.0.0.1>;tag={from_tag}\r\nTo: <sip:6000@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
CSeq: {cseq} INVITE\r\nContact: <sip:1001@{local}>\r\nMax-Forwards: 70\r\n{auth}\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
        };
        let ack = |branch: &str, target: &str, to: &str, cseq: u32| {
            format!(
                "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
From: <sip:1001@127.0.0.1>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} ACK\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let branch = self.branch();
        let challenge = self.transact(&invite(&branch, 1, ""), &call_id, "1 INVITE")?;
        if challenge.code != 407 {
            return Err(format!("{} to the first INVITE, not 407", challenge.code));
        }
        // The ACK of a non-2xx final response is in its INVITE's transaction.
        let to = challenge.header("to", "t").ok_or("407 without To")?.to_string();
        self.send(&ack(&branch, &uri, &to, 1))?;
        let header = challenge.header("proxy-authenticate", "").ok_or("407 without Proxy-Authenticate")?;
        let credentials = dialog_layer::auth::answer_challenge(&[header], "INVITE", &uri, "1001", "demo1001", 1)?;
        let branch = self.branch();
        let auth = format!("Proxy-Authorization: {credentials}\r\n");
        let answer = self.transact(&invite(&branch, 2, &auth), &call_id, "2 INVITE")?;
        if answer.code != 200 {
            return Err(format!("{} to the INVITE with credentials", answer.code));
        }
        let to = answer.header("to", "t").ok_or("200 without To")?.to_string();
        let target = answer
            .header("contact", "m")
            .and_then(|c| Some(c.split_once('<')?.1.split_once('>')?.0.to_string()))
            .unwrap_or(uri.clone());
        let relay = answer.sdp_audio().ok_or("200 without an audio address in its SDP")?;
        let branch = self.branch();
        self.send(&ack(&branch, &target, &to, 2))?;
        Ok(Dialog { call_id, from_tag, to, target, relay })
    }

    fn hang_up(&mut self, d: &Dialog) -> Result<(), String> {
        let branch = self.branch();
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
From: <sip:1001@127.0.0.1>;tag={tag}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
            target = d.target,
            local = self.local,
            tag = d.from_tag,
            to = d.to,
            id = d.call_id
        );
        match self.transact(&bye, &d.call_id, "3 BYE")?.code {
            200 => Ok(()),
            code => Err(format!("{code} to BYE")),
        }
    }
}
