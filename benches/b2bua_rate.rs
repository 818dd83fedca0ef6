//! Two-party calls through the B2BUA, in the real binary, driven by SIPp over
//! UDP loopback. SIPp plays the callee: it registers as endpoint 1002 from
//! 127.0.0.1:5470 (digest auth), then answers there every INVITE the switch
//! forks to that binding (180, 200 with SDP, ACK, BYE). Another SIPp, from
//! 127.0.0.1:5471, is 1001 calling 1002: INVITE, 407, INVITE with credentials,
//! 100/180, 200, ACK, BYE. Each call has two dialogs and two relay legs (four
//! media ports, no RTP).
//!
//! Reports calls per second with the failure ratio; the setup time of the
//! authenticated INVITE to its 200 (p50, p99) as SIPp's -trace_rtt counts it;
//! the CPU the switch and both SIPp processes used (they share the machine's
//! cores) and the CPU other processes took meanwhile (the machine is shared:
//! a build beside the run shows there); datagrams the kernel dropped at each
//! socket. Bounded: `CALLS` calls (default 20,000) at `CALL_RATE` per second
//! (default 1,000), 120 s at most (the callee SIPp: 130 s).
//!
//! Leak check: the switch's open descriptors, the sockets among them (and the UDP
//! ones) and its resident memory, from /proc/<pid>: idle (the callee registered,
//! before the load), at their highest during the run (read every 500 ms), after
//! (once both SIPps are done, as soon as the sockets are back to the idle count,
//! 10 s at most) and once the last calls' SIP transactions have expired (64 x T1,
//! 34 s after the load). The sockets must come back exactly; memory to within a
//! few MiB of idle (see `RSS_SLACK_KIB`). The 100,000-call check:
//! `CALLS=100000 CALL_RATE=2000 cargo bench --bench b2bua_rate`.
//!
//! SIPp's response times are coarse: SIPp 3.6.1's figures come in steps of the
//! kernel's clock tick, 4 ms on the development machine (0, 4, 8... ms). With
//! `TRACE_MSG=1` (the default up to 200 calls/s) both SIPps log every message
//! with its microsecond timestamp, and the bench pairs the two legs of each
//! call: INVITE -> 200 as the caller sees it, the time the callee SIPp took to
//! answer, and the switch's share (the INVITE's way through it to the callee,
//! plus the 200's way back).
//!
//! cargo bench --bench b2bua_rate
//! CALL_RATE=200 CALLS=2000 cargo bench --bench b2bua_rate    (unloaded setup time)
//! TANDEM_LOG=warn,tandem=info,switch=debug ...               (the switch's log filter, to diagnose)

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Held;

/// The callee's SIP port (registered, then listened on), its media port for SDP
/// (SIPp binds it and the three above), and the caller's SIP port: free of the
/// ports the tests use.
const CALLEE_PORT: u16 = 5470;
const CALLER_PORT: u16 = 5471;
const CALLEE_MEDIA_PORT: u16 = 5474;
/// SIPp's socket buffers (its default, 64 KiB, overflows at a few thousand
/// calls per second); the kernel caps it at net.core.rmem_max.
const SIPP_BUFFER: &str = "4194304";
/// The most each SIPp log (errors, messages) may take on disk, in bytes.
const MAX_LOG: &str = "100000000";
/// How long the switch has, once the calls have ended, to close their sockets.
const SETTLE: Duration = Duration::from_secs(10);
/// When the last calls' SIP state has expired: 64 x T1 (32 s) after the load,
/// and 2 s more.
const STATE_LIFETIME: Duration = Duration::from_secs(34);
/// Resident memory counts as returned within this much above idle: what glibc's
/// allocator keeps once everything is freed, an arena per thread that allocated
/// (the runtime's workers) with its caches, and the top of each heap below its
/// trim threshold. Not freed memory it keeps in the middle of a heap, nor tables
/// kept at their largest size: those show as not returned.
const RSS_SLACK_KIB: u64 = 4096;

fn main() {
    if !common::is_bench_run() {
        return;
    }
    let rate = common::env_or("CALL_RATE", 1000);
    let total = common::env_or("CALLS", 20_000);
    let trace = common::env_or("TRACE_MSG", u64::from(rate <= 200)) == 1;
    // 4 ports per call (two legs, RTP and RTCP): the 5,000 calls SIPp keeps at
    // most at once (-l), away from the tests' range (32000-32999), call_rate's
    // (40000-59999) and the ephemeral ports (32768-60999).
    let extra = "[endpoints]\n1001 = { password = \"demo1001\" }\n1002 = { password = \"demo1002\" }\n\
[media]\nport_min = 10000\nport_max = 29999\n\
[[dialplan.internal]]\nexact = \"1002\"\nendpoint = \"1002\"\n";
    let level = std::env::var("TANDEM_LOG").unwrap_or_else(|_| "warn,tandem=info".to_string());
    let switch = common::Switch::start_logging("b2bua-rate", &level, extra);
    let udp = switch.addr("internal", "udp", false);
    for port in [CALLEE_PORT, CALLER_PORT] {
        assert!(!udp_bound(port), "port {port} is taken: SIPp cannot use it");
    }
    // The binding (an hour) points at the address the REGISTER came from.
    let port = CALLEE_PORT.to_string();
    common::sipp_ok("register_auth.xml", udp, "u1", &["-s", "1002", "-au", "1002", "-ap", "demo1002", "-p", &port]);
    let callee = Callee::start(&switch, total, trace);

    // What the switch holds idle, with the callee registered: every call's ports
    // and state must go once the calls end.
    let pid = switch.pid();
    let idle = Held::of(pid);
    let watch = Watch::start(&[udp.port(), CALLEE_PORT, CALLER_PORT], pid);
    let children_before = children_cpu();
    let caller_port = CALLER_PORT.to_string();
    let mut args = vec!["-s", "1002", "-au", "1001", "-ap", "demo1001", "-p", &caller_port, "-mi", "127.0.0.1"];
    args.extend(["-buff_size", SIPP_BUFFER, "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-max_log_size", MAX_LOG]);
    if trace {
        args.push("-trace_msg");
    }
    let run = common::sipp_load(&switch, "b2bua_uac_short.xml", rate, total, &args);
    let caller_cpu = children_cpu() - children_before;
    let load_end = Instant::now();
    let (drops, others, during) = watch.stop();
    let (ok, failed, elapsed, cpu) = (run.ok, run.failed, run.elapsed, run.cpu);
    let (callee_ok, callee_failed, callee_and_caller_cpu, callee_errors) = callee.finish();
    // Every call has ended (both SIPps have): the sockets go back to their idle count.
    let (after, settle_time) = Held::settle(pid, idle.sockets, SETTLE);
    // The SIP layer keeps the last calls' transactions 64 x T1 after they end (RFC
    // 3261 timers J and H, RFC 6026 timer L): their memory is the switch's until then.
    let expiry = load_end + STATE_LIFETIME;
    std::thread::sleep(expiry.saturating_duration_since(Instant::now()));
    let expired = Held::of(pid);
    let callee_cpu = callee_and_caller_cpu.saturating_sub(caller_cpu);

    // -trace_rtt: "Date_ms;response_time_ms;rtd_no" lines.
    let mut rtts: Vec<f64> = files_ending(&switch.dir, "_rtt.csv")
        .iter()
        .flat_map(|p| std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| l.split(';').nth(1).and_then(|v| v.trim().parse().ok()))
        .collect();
    rtts.sort_by(f64::total_cmp);
    // SIPp's step: its smallest figure above 0 (4 ms where the kernel ticks at 250 Hz).
    let step = rtts.iter().copied().find(|&v| v > 0.0).unwrap_or(1.0);
    let pct = |p: f64| match percentile(&rtts, p) {
        Some(0.0) => format!("< {step:.0}"),
        Some(v) => format!("{v:.0}"),
        None => "n/a".to_string(),
    };
    let per_call = |d: Duration| d.as_secs_f64() * 1e6 / ok.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = |d: Duration| 100.0 * d.as_secs_f64() / (elapsed.as_secs_f64() * cores as f64);
    println!(
        "b2bua_rate: {ok} two-party calls ({failed} failed, {:.3}%) in {:.2} s = {:.0} calls/s (offered {rate}/s); \
INVITE->200 by SIPp p50 {} ms, p99 {} ms over {} calls (SIPp's figures come in {step:.0} ms steps); \
tandem used {:.2} s of CPU = {:.0} us per call; on the same cores SIPp used {:.2} s as caller and {:.2} s as callee \
({:.0} + {:.0} us per call): {:.0}% of the {cores} cores; other processes took {:.0}% meanwhile (kernel threads \
{:.0}%); the callee saw {callee_ok} calls complete, {callee_failed} fail; datagrams dropped by the kernel: tandem {}, \
callee {}, caller {}",
        100.0 * failed as f64 / (ok + failed).max(1) as f64,
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        rtts.len(),
        cpu.as_secs_f64(),
        per_call(cpu),
        caller_cpu.as_secs_f64(),
        callee_cpu.as_secs_f64(),
        per_call(caller_cpu),
        per_call(callee_cpu),
        share(cpu + caller_cpu + callee_cpu),
        share(others.user),
        share(others.kernel),
        drops[0],
        drops[1],
        drops[2],
    );
    if share(others.user) >= 2.0 {
        let top: Vec<String> = others.top.iter().map(|(name, d)| format!("{name} {:.2} s", d.as_secs_f64())).collect();
        println!("b2bua_rate: the other processes that took the most CPU meanwhile: {}", top.join(", "));
    }
    leak_check(&idle, &during, &after, settle_time, &expired);
    if trace {
        let caller_log = files_ending(&switch.dir, "_messages.log");
        let callee_log = files_ending(&switch.dir.join("callee"), "_messages.log");
        match setup_split(&caller_log, &callee_log) {
            Some(s) => println!(
                "b2bua_rate setup from SIPp's message timestamps, {} calls: INVITE->200 at the caller p50 {:.2} ms, \
p99 {:.2} ms; of which the callee SIPp (INVITE in -> 200 out) p50 {:.2} ms; the switch (INVITE to the callee + 200 \
back) p50 {:.2} ms, p99 {:.2} ms",
                s.calls, s.end_to_end.0, s.end_to_end.1, s.callee_p50, s.switch.0, s.switch.1
            ),
            None => println!("b2bua_rate: no call could be paired in SIPp's message logs"),
        }
    }
    let dir = switch.dir.clone();
    let (_, log) = switch.stop_and_log();
    if failed > 0 || callee_failed > 0 {
        // What went wrong, for the diagnosis: SIPp's error logs and the switch's warnings.
        let caller_errors: String = files_ending(&dir, "_errors.log").iter().map(|p| read_head(p)).collect();
        let head = |s: &str| s.lines().take(40).collect::<Vec<_>>().join("\n");
        println!("caller's SIPp errors (first lines):\n{}", head(&caller_errors));
        println!("callee's SIPp errors (first lines):\n{}", head(&callee_errors));
        let warnings: Vec<&String> = log.iter().filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\"")).collect();
        println!("tandem logged {} warnings; the first ones:", warnings.len());
        for l in warnings.iter().take(10) {
            println!("  {l}");
        }
    }
    if let Some(stats) = log.iter().rfind(|l| l.contains("tandem::stats")) {
        println!("tandem's last counters: {stats}");
    }
    // SIPp's logs run to hundreds of MB: kept only when something failed.
    if failed > 0 || callee_failed > 0 {
        println!("the logs are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Says what the switch held idle, through the load and once the calls had ended,
/// and whether it gave it back: every socket, and its memory to within [`RSS_SLACK_KIB`].
fn leak_check(idle: &Held, during: &Footprint, after: &Held, settled: Duration, expired: &Held) {
    let series: Vec<String> =
        during.rss.iter().map(|(t, kib)| format!("{:.0} s {:.1}", t.as_secs_f64(), *kib as f64 / 1024.0)).collect();
    println!("leak check: rss through the load (s into it: MiB): {}", series.join(", "));
    let peak = during.peak.max(*after);
    let returned = |ok: bool| if ok { "returned" } else { "NOT returned" };
    let sockets_back = after.sockets == idle.sockets && expired.sockets == idle.sockets;
    println!(
        "leak check: sockets idle {} -> peak {} -> after {} ({}: {:.1} s after the callee's last call; still {} \
{} s after the load); of them UDP {} -> {} -> {}; descriptors {} -> {} -> {}",
        idle.sockets,
        peak.sockets,
        after.sockets,
        returned(sockets_back),
        settled.as_secs_f64(),
        expired.sockets,
        STATE_LIFETIME.as_secs(),
        idle.udp,
        peak.udp,
        after.udp,
        idle.fds,
        peak.fds,
        after.fds,
    );
    let rss_back = expired.rss_kib <= idle.rss_kib + RSS_SLACK_KIB;
    println!(
        "leak check: rss idle {} -> peak {} -> after {} (as the sockets settled) -> {} once the calls' SIP state had \
expired ({} s after the load): {} (at most idle + {})",
        common::mib(idle.rss_kib),
        common::mib(peak.rss_kib),
        common::mib(after.rss_kib),
        common::mib(expired.rss_kib),
        STATE_LIFETIME.as_secs(),
        returned(rss_back),
        common::mib(RSS_SLACK_KIB),
    );
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// The first 64 KiB of a log (SIPp's error logs run to hundreds of MB).
fn read_head(path: &Path) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(64 << 10).read_to_end(&mut head);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The value at `p` (0..=1) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied()
}

/// The callee's SIPp, answering on 127.0.0.1:5470 until it has had `total` calls
/// (130 s at most).
struct Callee {
    child: Child,
    dir: PathBuf,
    cpu_before: Duration,
}

impl Callee {
    fn start(switch: &common::Switch, total: u64, trace: bool) -> Callee {
        let dir = switch.dir.join("callee");
        std::fs::create_dir_all(&dir).unwrap();
        let stdout = std::fs::File::create(dir.join("stdout.txt")).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr.txt")).unwrap();
        let cpu_before = children_cpu();
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&dir)
            .arg("-sf")
            .arg(common::sipp_dir().join("b2bua_uas.xml"))
            .args(["-t", "u1", "-i", "127.0.0.1", "-p", &CALLEE_PORT.to_string(), "-buff_size", SIPP_BUFFER])
            .args(["-mi", "127.0.0.1", "-mp", &CALLEE_MEDIA_PORT.to_string()])
            .args(["-m", &total.to_string(), "-timeout", "130s", "-trace_err", "-max_log_size", MAX_LOG, "-nostdin"]);
        if trace {
            cmd.arg("-trace_msg");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("run sipp (Debian package sip-tester)");
        let mut callee = Callee { child, dir, cpu_before };
        // An INVITE forked before SIPp listens would be retransmitted, and time the setup wrong.
        let end = Instant::now() + Duration::from_secs(10);
        while !udp_bound(CALLEE_PORT) {
            if callee.child.try_wait().ok().flatten().is_some() || Instant::now() > end {
                panic!("the callee's SIPp did not start listening on {CALLEE_PORT}: {}", callee.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        callee
    }

    /// Waits for the callee to stop (it does by itself after its last call; else
    /// a soft quit, then a kill), and returns its successful and failed calls, the
    /// CPU of the children waited for since it started (it and the caller's
    /// SIPp) and its error log.
    fn finish(mut self) -> (u64, u64, Duration, String) {
        let wait = |child: &mut Child, for_: Duration| {
            let end = Instant::now() + for_;
            while Instant::now() < end {
                if child.try_wait().ok().flatten().is_some() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        if !wait(&mut self.child, Duration::from_secs(10)) {
            // SIGUSR1: SIPp's soft exit, with its final statistics.
            let _ = Command::new("sh").arg("-c").arg(format!("kill -USR1 {}", self.child.id())).status();
            if !wait(&mut self.child, Duration::from_secs(5)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let cpu = children_cpu() - self.cpu_before;
        let text = self.output();
        let count = |label: &str| common::sipp_count(&text, label);
        let errors = files_ending(&self.dir, "_errors.log").iter().map(|p| read_head(p)).collect();
        (count("Successful call"), count("Failed call"), cpu, errors)
    }

    fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}\n{}", read("stdout.txt"), read("stderr.txt"))
    }
}

/// The rows of /proc/net/udp bound to 127.0.0.1: port -> datagrams dropped.
fn udp_table() -> HashMap<u16, u64> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.strip_prefix("0100007F:")?;
            Some((u16::from_str_radix(port, 16).ok()?, f.last()?.parse().ok()?))
        })
        .collect()
}

/// Whether a UDP socket is bound to 127.0.0.1:`port`, from /proc.
fn udp_bound(port: u16) -> bool {
    udp_table().contains_key(&port)
}

/// Watches, while a run lasts, the drop counters of some loopback UDP sockets
/// (the caller's is gone once its SIPp has ended), the CPU of every process
/// but ours: the bench and its children (the switch, the SIPps), and what the
/// switch holds.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<u64>, OtherCpu, Footprint)>,
}

/// CPU other processes used during a run.
#[derive(Default)]
struct OtherCpu {
    user: Duration,
    kernel: Duration,
    /// The processes (not kernel threads) that took the most, by name.
    top: Vec<(String, Duration)>,
}

impl Watch {
    fn start(ports: &[u16], switch: u32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, ports) = (stop.clone(), ports.to_vec());
        let thread = std::thread::spawn(move || {
            let me = std::process::id();
            let mut drops = vec![0; ports.len()];
            // (pid, start time) -> (ticks at first sight, last ticks, kernel thread); a
            // process born during the run counts from 0.
            let mut seen: HashMap<(u32, u64), (u64, Process)> = HashMap::new();
            let mut first = true;
            let mut footprint = Footprint::default();
            let (started, mut next_held, mut next_rss) = (Instant::now(), Duration::ZERO, Duration::ZERO);
            loop {
                // The switch's descriptors and memory every 500 ms; its memory kept every 5 s, and at the end.
                let stopping = flag.load(Ordering::Relaxed);
                let now = started.elapsed();
                if now >= next_held || stopping {
                    let held = Held::of(switch);
                    footprint.peak = footprint.peak.max(held);
                    next_held = now + Duration::from_millis(500);
                    if now >= next_rss || stopping {
                        footprint.rss.push((now, held.rss_kib));
                        next_rss = now + Duration::from_secs(5);
                    }
                }
                let table = udp_table();
                for (m, port) in drops.iter_mut().zip(&ports) {
                    *m = (*m).max(table.get(port).copied().unwrap_or(0));
                }
                for p in processes().into_iter().filter(|p| p.pid != me && p.ppid != me) {
                    let from = if first { p.ticks } else { 0 };
                    seen.insert((p.pid, p.start), (seen.get(&(p.pid, p.start)).map_or(from, |s| s.0), p));
                }
                first = false;
                if stopping {
                    let mut others = OtherCpu::default();
                    let mut by_name: HashMap<String, Duration> = HashMap::new();
                    for (from, p) in seen.into_values() {
                        let used = Duration::from_millis(p.ticks.saturating_sub(from) * 10); // USER_HZ is 100
                        if p.kernel {
                            others.kernel += used;
                        } else {
                            others.user += used;
                            *by_name.entry(p.name).or_default() += used;
                        }
                    }
                    others.top = by_name.into_iter().filter(|(_, d)| !d.is_zero()).collect();
                    others.top.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
                    others.top.truncate(3);
                    return (drops, others, footprint);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Watch { stop, thread }
    }

    fn stop(self) -> (Vec<u64>, OtherCpu, Footprint) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// What the switch held through a run: the most of each figure, and its
/// resident memory (KiB) every 5 s from the start.
#[derive(Default)]
struct Footprint {
    peak: Held,
    rss: Vec<(Duration, u64)>,
}

/// A process as /proc/<pid>/stat shows it.
struct Process {
    pid: u32,
    ppid: u32,
    /// Start time (ticks since boot): a pid reused is another process.
    start: u64,
    /// User and system CPU, in USER_HZ ticks.
    ticks: u64,
    kernel: bool,
    name: String,
}

fn processes() -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (name) state ...": after the ")" that ends the name, field 3 onwards.
            let (head, tail) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            let f: Vec<&str> = tail.split_whitespace().collect();
            let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            let ppid = field(4)? as u32;
            Some(Process {
                pid,
                ppid,
                start: field(22)?,
                ticks: field(14)? + field(15)?,
                kernel: pid == 2 || ppid == 2,
                name,
            })
        })
        .collect()
}

/// CPU time (user + system) of this process's children that have ended and
/// been waited for, from /proc: the SIPp runs.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the ")" that ends the command name: state, then numbers; cutime and
    // cstime are fields 16 and 17 of the line.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((field(16) + field(17)) * 10) // USER_HZ is 100 on Linux
}

/// Setup times from both SIPps' message logs, in milliseconds: (p50, p99).
struct SetupSplit {
    calls: usize,
    end_to_end: (f64, f64),
    callee_p50: f64,
    switch: (f64, f64),
}

/// One message of a SIPp message log: when, which way, its first line, Call-ID,
/// CSeq and From.
struct Logged {
    at: f64,
    sent: bool,
    first: String,
    call_id: String,
    cseq: String,
    from: String,
}

/// Reads SIPp's -trace_msg log: each message follows a line of dashes ending in
/// "YYYY-MM-DD HH:MM:SS.micros", then "UDP message sent|received ...".
fn read_messages(paths: &[PathBuf]) -> Vec<Logged> {
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut current: Option<Logged> = None;
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            if line.starts_with("----------") {
                out.extend(current.take());
                // Seconds of the day; differences are taken modulo a day.
                let at = line
                    .rsplit(' ')
                    .next()
                    .map(|t| t.split(':').filter_map(|p| p.parse::<f64>().ok()).fold(0.0, |acc, p| acc * 60.0 + p));
                current = at.map(|at| Logged {
                    at,
                    sent: false,
                    first: String::new(),
                    call_id: String::new(),
                    cseq: String::new(),
                    from: String::new(),
                });
                continue;
            }
            let Some(m) = current.as_mut() else { continue };
            if line.trim().is_empty() {
                continue;
            }
            if line.contains(" message sent") || line.contains(" message received") {
                m.sent = line.contains(" message sent");
            } else if m.first.is_empty() {
                m.first = line.trim().to_string();
            } else if let Some((name, value)) = line.split_once(':') {
                let value = value.trim().to_string();
                match name.trim().to_ascii_lowercase().as_str() {
                    "call-id" | "i" => m.call_id = value,
                    "cseq" => m.cseq = value,
                    "from" | "f" => m.from = value,
                    _ => {}
                }
            }
        }
        out.extend(current);
    }
    out
}

/// Pairs the caller's and the callee's side of each call: the caller's Call-ID
/// starts with its call number, which the switch's INVITE to the callee carries
/// in the From display name ("c<number>").
fn setup_split(caller_log: &[PathBuf], callee_log: &[PathBuf]) -> Option<SetupSplit> {
    #[derive(Default)]
    struct Times {
        invite_out: Option<f64>,
        ok_in: Option<f64>,
        invite_in: Option<f64>,
        ok_out: Option<f64>,
    }
    let mut calls: HashMap<String, Times> = HashMap::new();
    let first = |slot: &mut Option<f64>, at: f64| {
        slot.get_or_insert(at);
    };
    for m in read_messages(caller_log) {
        let number = m.call_id.split('-').next().unwrap_or("").to_string();
        let t = calls.entry(number).or_default();
        if m.sent && m.first.starts_with("INVITE ") && m.cseq == "2 INVITE" {
            first(&mut t.invite_out, m.at);
        } else if !m.sent && m.first.starts_with("SIP/2.0 200") && m.cseq == "2 INVITE" {
            first(&mut t.ok_in, m.at);
        }
    }
    // The callee's 200 answers its INVITE: pair them by the callee's Call-ID.
    let mut callee_numbers: HashMap<String, String> = HashMap::new();
    for m in read_messages(callee_log) {
        if !m.sent && m.first.starts_with("INVITE ") {
            let display = m.from.split('<').next().unwrap_or("").trim().trim_matches('"');
            let Some(number) = display.strip_prefix('c') else { continue };
            callee_numbers.insert(m.call_id.clone(), number.to_string());
            first(&mut calls.entry(number.to_string()).or_default().invite_in, m.at);
        } else if m.sent
            && m.first.starts_with("SIP/2.0 200")
            && m.cseq.ends_with("INVITE")
            && let Some(number) = callee_numbers.get(&m.call_id)
        {
            first(&mut calls.entry(number.clone()).or_default().ok_out, m.at);
        }
    }
    let day = |d: f64| d.rem_euclid(86_400.0) * 1000.0;
    let (mut end_to_end, mut callee, mut switch) = (Vec::new(), Vec::new(), Vec::new());
    for t in calls.values() {
        if let (Some(a), Some(b), Some(c), Some(d)) = (t.invite_out, t.invite_in, t.ok_out, t.ok_in) {
            end_to_end.push(day(d - a));
            callee.push(day(c - b));
            switch.push(day(b - a) + day(d - c));
        }
    }
    for v in [&mut end_to_end, &mut callee, &mut switch] {
        v.sort_by(f64::total_cmp);
    }
    let both = |v: &[f64]| Some((percentile(v, 0.5)?, percentile(v, 0.99)?));
    Some(SetupSplit {
        calls: end_to_end.len(),
        end_to_end: both(&end_to_end)?,
        callee_p50: percentile(&callee, 0.5)?,
        switch: both(&switch)?,
    })
}
