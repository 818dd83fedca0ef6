//! Starts the real `tandem` binary on a generated configuration with port-0
//! listeners on loopback, learns the bound ports from its JSON log, and runs the
//! real peers (SIPp, socat) against it: SIPp phones in the background with
//! their `<log>` lines, and test-owned RTP sockets that check the relay.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The demo endpoints of the default configuration, as the tests use them.
pub const ENDPOINTS: &str = r#"
[endpoints]
1001 = { password = "demo1001" }
1002 = { password = "demo1002" }
1003 = { password = "demo1003" }
"#;

pub struct Switch {
    child: Child,
    pub dir: PathBuf,
    /// (profile, transport in lower case, bound address) of every listener.
    pub listeners: Vec<(String, String, SocketAddr)>,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread reading the log; it ends when the process does.
    reader: Option<std::thread::JoinHandle<()>>,
}

fn unique_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tandem-e2e-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Switch {
    /// Starts the binary with loopback listeners on every transport of both
    /// profiles (IPv4 and IPv6, ports chosen by the system) plus `extra` TOML.
    pub fn start(name: &str, extra: &str) -> Switch {
        Self::start_logging(name, "info,switch=debug", extra)
    }

    /// As [`Switch::start`], with another log filter (JSON lines; the harness
    /// reads the bound ports from the `tandem` target at info).
    pub fn start_logging(name: &str, level: &str, extra: &str) -> Switch {
        let dir = unique_dir(name);
        let config = format!(
            r#"
[general]
data_dir = "{data}"
[log]
level = "{level}"
format = "json"
[profiles.internal]
udp = ["127.0.0.1:0", "[::1]:0"]
tcp = ["127.0.0.1:0", "[::1]:0"]
tls = ["127.0.0.1:0"]
[profiles.external]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
{extra}
"#,
            data = dir.join("data").display()
        );
        let path = dir.join("tandem.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_with(&path, dir)
    }

    pub fn start_with(config: &Path, dir: PathBuf) -> Switch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tandem");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("tandem is running") {
                    let _ = ready_tx.send(());
                }
                sink.lock().unwrap().push(line);
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            panic!("tandem did not start:\n{}", log.lock().unwrap().join("\n"));
        }
        let listeners = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "listening")
            .map(|v| {
                let f = &v["fields"];
                (
                    f["profile"].as_str().unwrap().to_string(),
                    f["transport"].as_str().unwrap().to_ascii_lowercase(),
                    f["addr"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        Switch { child, dir, listeners, log, reader: Some(reader) }
    }

    /// The first listener of a profile and transport in an address family.
    pub fn addr(&self, profile: &str, transport: &str, v6: bool) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(p, t, a)| p == profile && t == transport && a.is_ipv6() == v6)
            .map(|(_, _, a)| *a)
            .unwrap_or_else(|| panic!("no {profile} {transport} listener (v6: {v6})"))
    }

    /// The switch's process id, for /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the switch process has used so far (user + system), from /proc.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the ")" that ends the command name come fields 3 (state) onwards; utime
        // and stime are fields 14 and 15. Counted by position: some fields are not
        // numbers (state) or are negative (tpgid is -1 without a terminal).
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ticks = field(14) + field(15);
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether a log line containing every one of `parts` appears within `wait`.
    pub fn wait_for_log(&self, parts: &[&str], wait: Duration) -> bool {
        let end = Instant::now() + wait;
        loop {
            if self.log.lock().unwrap().iter().any(|l| parts.iter().all(|p| l.contains(p))) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // The shell's builtin kill: no dependency on procps.
        let _ = Command::new("sh").arg("-c").arg(format!("kill -TERM {}", self.child.id())).status();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("tandem did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then every line the switch logged, its last ones included.
    pub fn stop_and_log(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let reader = self.reader.take();
        let log = self.log.clone();
        let status = self.stop();
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        let lines = log.lock().unwrap().clone();
        (status, lines)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes sure a peer program is on the machine: a test that needs a tool
/// installs it (Debian package, as root) rather than skipping.
pub fn require_tool(binary: &str, package: &str) {
    static APT: Mutex<bool> = Mutex::new(false); // whether `apt-get update` ran
    let present = || Command::new("sh").arg("-c").arg(format!("command -v {binary}")).output().is_ok_and(|o| o.status.success());
    if present() {
        return;
    }
    let mut updated = APT.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return;
    }
    if !*updated {
        let ok = Command::new("apt-get").args(["update", "-qq"]).status().is_ok_and(|s| s.success());
        assert!(ok, "{binary} is missing and `apt-get update` failed: install the Debian package {package}");
        *updated = true;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok && present(), "{binary} is missing and could not be installed: install the Debian package {package}");
}

pub fn sipp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp")
}

/// Runs one SIPp scenario to completion; returns whether every call succeeded,
/// with SIPp's output for the failure message.
pub fn sipp(scenario: &str, target: SocketAddr, transport: &str, args: &[&str]) -> (bool, String) {
    require_tool("sipp", "sip-tester");
    let local_ip = if target.is_ipv6() { "::1" } else { "127.0.0.1" };
    let dir = unique_dir("sipp");
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&dir).arg("-sf").arg(sipp_dir().join(scenario));
    // The local address, unless the caller picks one (`-i`).
    if !args.contains(&"-i") {
        cmd.args(["-i", local_ip]);
    }
    let out = cmd
        .args(["-t", transport, "-m", "1", "-timeout", "30s", "-timeout_error", "-trace_err", "-nostdin"])
        .args(args)
        .arg(target.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run sipp (Debian package sip-tester)");
    sipp_outcome(&dir, &out)
}

/// Whether a SIPp run succeeded, with its output and the error log it wrote in `dir`.
fn sipp_outcome(dir: &Path, out: &std::process::Output) -> (bool, String) {
    let errors: String = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let text = format!("{}\n{}\n{errors}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Registers `user` through SIPp and asserts success.
pub fn sipp_ok(scenario: &str, target: SocketAddr, transport: &str, args: &[&str]) {
    let (ok, text) = sipp(scenario, target, transport, args);
    assert!(ok, "sipp {scenario} against {target} over {transport} failed:\n{text}");
}

/// A TLS client tunnel: socat accepts plain TCP on a loopback port and carries
/// it over TLS to `tls_target` (SIPp as packaged in Debian has no TLS).
pub struct TlsTunnel {
    child: Child,
    pub addr: SocketAddr,
}

impl TlsTunnel {
    pub fn start(tls_target: SocketAddr) -> TlsTunnel {
        require_tool("socat", "socat");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("OPENSSL:{tls_target},verify=0"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run socat (Debian package socat)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "socat did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsTunnel { child, addr }
    }
}

impl Drop for TlsTunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a bounded SIPp load run against the switch did.
pub struct LoadRun {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// CPU time the switch used during the run.
    pub cpu: Duration,
}

/// Runs a SIPp load scenario over UDP from 127.0.0.1 at `rate` calls per second
/// for `total` calls (at most 5,000 at once, 120 s at most), in the switch's folder.
pub fn sipp_load(switch: &Switch, scenario: &str, rate: u64, total: u64, args: &[&str]) -> LoadRun {
    require_tool("sipp", "sip-tester");
    let cpu_before = switch.cpu_time();
    let started = Instant::now();
    let out = Command::new("sipp")
        .current_dir(&switch.dir)
        .arg("-sf")
        .arg(sipp_dir().join(scenario))
        .args(["-t", "u1", "-i", "127.0.0.1", "-nostdin", "-timeout", "120s"])
        .args(["-r", &rate.to_string(), "-rp", "1000", "-m", &total.to_string(), "-l", "5000"])
        .args(args)
        .arg(switch.addr("internal", "udp", false).to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run sipp (Debian package sip-tester)");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |label: &str| sipp_count(&text, label);
    LoadRun { ok: count("Successful call"), failed: count("Failed call"), elapsed, cpu: switch.cpu_time() - cpu_before }
}

/// A cumulative count from SIPp's final statistics screen:
/// "  Successful call | <periodic> | <cumulative>".
pub fn sipp_count(text: &str, label: &str) -> u64 {
    text.lines()
        .rfind(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A load bench's setting from the environment.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `cargo bench` passes `--bench`; `cargo test --benches` runs a bench with no
/// argument, and a load run has no place there.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether something listens on loopback `port` (TCP) or has it bound (UDP), from /proc.
pub fn listening(port: u16, tcp: bool) -> bool {
    let table = std::fs::read_to_string(if tcp { "/proc/net/tcp" } else { "/proc/net/udp" }).unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    // Fields: slot, local address, remote address, state (0A: TCP LISTEN).
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&local.as_str()) && (!tcp || f.get(3) == Some(&"0A"))
    })
}

/// What a process holds, from /proc/<pid>: its open file descriptors, the
/// sockets among them (the `socket:[inode]` links in fd/), the UDP ones (those
/// inodes in net/udp and net/udp6) and its resident memory (VmRSS, KiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub fds: usize,
    pub sockets: usize,
    pub udp: usize,
    pub rss_kib: u64,
}

impl Held {
    /// Zeros if the process has gone; a descriptor closed while fd/ is read is not counted.
    pub fn of(pid: u32) -> Held {
        let mut held = Held::default();
        let mut inodes = std::collections::HashSet::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else { continue };
            held.fds += 1;
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                held.sockets += 1;
                inodes.extend(inode.parse::<u64>().ok());
            }
        }
        // The tables list every UDP socket of the network namespace (SIPp's, the bench's): only the process's count.
        for table in ["udp", "udp6"] {
            let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            // Fields: slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode.
            let inode = |l: &str| l.split_whitespace().nth(9).and_then(|i| i.parse::<u64>().ok());
            held.udp += text.lines().skip(1).filter(|l| inode(l).is_some_and(|i| inodes.contains(&i))).count();
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        held.rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        held
    }

    /// The larger of each figure.
    pub fn max(self, other: Held) -> Held {
        Held {
            fds: self.fds.max(other.fds),
            sockets: self.sockets.max(other.sockets),
            udp: self.udp.max(other.udp),
            rss_kib: self.rss_kib.max(other.rss_kib),
        }
    }

    /// Polls every 100 ms until the process holds at most `sockets` sockets, or
    /// `wait` has passed: what it holds then, and how long that took.
    pub fn settle(pid: u32, sockets: usize, wait: Duration) -> (Held, Duration) {
        let start = Instant::now();
        loop {
            let held = Held::of(pid);
            if held.sockets <= sockets || start.elapsed() >= wait {
                return (held, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// KiB as MiB, one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// SIPp as a server (a carrier's registrar or gateway) on 127.0.0.1:`port`,
/// running `scenario` once (30 s at most). Returns once it listens; the handle gives its success and output.
pub fn sipp_server(scenario: &str, port: u16, transport: &str) -> std::thread::JoinHandle<(bool, String)> {
    require_tool("sipp", "sip-tester");
    assert!(!listening(port, transport == "t1"), "port {port} is taken: SIPp cannot listen there");
    let dir: PathBuf = std::env::temp_dir().join(format!("tandem-e2e-{}-server-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&dir)
        .arg("-sf")
        .arg(sipp_dir().join(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", transport])
        .args(["-m", "1", "-timeout", "30s", "-timeout_error", "-trace_err", "-nostdin"])
        .stdin(Stdio::null());
    let handle = std::thread::spawn(move || {
        let out = cmd.output().expect("run sipp (Debian package sip-tester)");
        sipp_outcome(&dir, &out)
    });
    // A REGISTER sent before SIPp listens would be lost (over TCP, not even retransmitted).
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !listening(port, transport == "t1") {
        assert!(!handle.is_finished() && std::time::Instant::now() < end, "SIPp did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    handle
}

// ---- SIPp phones and the switch they call through ----

/// A loopback UDP port nobody holds now (the system's choice, released).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An even loopback UDP port that is free with the one two above it: SIPp binds
/// its media port and that one (for video).
pub fn free_media_port() -> u16 {
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
pub fn udp_port_bound(port: u16) -> bool {
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
pub struct Sipp {
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
    /// call (unless `args` has `-m`), 20 s at most, logging into `dir` under `name`.
    pub fn spawn(dir: &Path, name: &str, scenario: &str, target: SocketAddr, port: u16, args: &[&str]) -> Sipp {
        require_tool("sipp", "sip-tester");
        std::fs::create_dir_all(dir).unwrap();
        let file = |suffix: &str| dir.join(format!("{name}_{suffix}.log"));
        let (log, errors, messages, output) = (file("logs"), file("errors"), file("messages"), file("output"));
        let mp = free_media_port().to_string();
        let mut cmd = Command::new("sipp");
        cmd.current_dir(dir)
            .arg("-sf")
            .arg(sipp_dir().join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1"])
            .args(["-timeout", "20s", "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-trace_msg", "-trace_logs"])
            .arg("-log_file")
            .arg(&log)
            .arg("-error_file")
            .arg(&errors)
            .arg("-message_file")
            .arg(&messages);
        // One call, unless the test says how many.
        if !args.contains(&"-m") {
            cmd.args(["-m", "1"]);
        }
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
    pub fn logged(&self, key: &str, wait: Duration) -> Option<String> {
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
    pub fn wait_line(&self, line: &str, wait: Duration) -> bool {
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
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// A relay port the scenario logged (`relay_port=N`).
    pub fn relay_port(&self) -> SocketAddr {
        let port = self.logged("relay_port", Duration::from_secs(10));
        let port = port.unwrap_or_else(|| panic!("{}: no SDP with the relay's port\n{}", self.name, self.report()));
        SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap()))
    }

    /// Waits for SIPp to end (at most 25 s after it started) and returns
    /// whether its call succeeded.
    pub fn finish(&mut self) -> bool {
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
    pub fn succeeds(&mut self) {
        let ok = self.finish();
        assert!(ok, "{}: the scenario failed\n{}", self.name, self.report());
    }

    /// Its errors and the messages it exchanged, for a failure message.
    pub fn report(&self) -> String {
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
pub struct Bench {
    pub switch: Switch,
    pub dir: PathBuf,
}

impl Bench {
    pub fn start(name: &str, config: &str) -> Bench {
        let switch = Switch::start(name, config);
        let dir = switch.dir.join("peers");
        Bench { switch, dir }
    }

    pub fn udp(&self) -> SocketAddr {
        self.switch.addr("internal", "udp", false)
    }

    /// A SIPp phone registered as 1002 from a port of its own (digest auth),
    /// then listening there with `scenario` for the INVITE.
    pub fn callee(&self, name: &str, scenario: &str, args: &[&str]) -> Sipp {
        self.phone("1002", name, scenario, args)
    }

    /// A SIPp phone registered as endpoint `user` (password `demo<user>`) from
    /// a port of its own, then listening there with `scenario`.
    pub fn phone(&self, user: &str, name: &str, scenario: &str, args: &[&str]) -> Sipp {
        let port = free_port();
        let password = format!("demo{user}");
        sipp_ok(
            "register_auth.xml",
            self.udp(),
            "u1",
            &["-s", user, "-au", user, "-ap", &password, "-p", &port.to_string()],
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
    pub fn caller(&self, name: &str, scenario: &str, number: &str, args: &[&str]) -> Sipp {
        let base = ["-s", number, "-au", "1001", "-ap", "demo1001"];
        Sipp::spawn(&self.dir, name, scenario, self.udp(), free_port(), &[&base[..], args].concat())
    }

    /// The first `count` CDRs, waiting up to 5 s for them.
    pub fn cdrs(&self, count: usize) -> Vec<Value> {
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
    pub fn cdr(&self) -> Value {
        let records = self.cdrs(1);
        std::thread::sleep(Duration::from_millis(200));
        let again = self.cdrs(1);
        assert_eq!(again.len(), 1, "one call, one CDR: {again:?}");
        records.into_iter().next().unwrap()
    }

    /// The relay's packet counters of the first call whose media stopped:
    /// (a_rtp_in, a_rtp_out, b_rtp_in, b_rtp_out); leg A is the caller's.
    pub fn media_counters(&self) -> [u64; 4] {
        assert!(self.switch.wait_for_log(&["call media stopped"], Duration::from_secs(5)), "the call's media stopped");
        let line = self.switch.log_lines().into_iter().find(|l| l.contains("call media stopped")).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        ["a_rtp_in", "a_rtp_out", "b_rtp_in", "b_rtp_out"]
            .map(|k| v["fields"][k].as_u64().unwrap_or_else(|| panic!("no {k} in {line}")))
    }

    pub fn count_log(&self, message: &str) -> usize {
        let needle = format!("\"message\":\"{message}\"");
        self.switch.log_lines().iter().filter(|l| l.contains(&needle)).count()
    }
}

// ---- RTP ----

pub const PACKETS: u16 = 50;
pub const PAYLOAD: usize = 160;

/// A G.711 μ-law packet (RTP v2, PT 0, 20 ms) whose payload says who sent it
/// and which one it is: `side`, the sequence number, then a pattern of both.
pub fn rtp_packet(side: u8, seq: u16) -> Vec<u8> {
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
pub fn receive_rtp(
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
pub fn sent_by(payload: &[u8], side: u8) -> bool {
    let seq = u16::from_be_bytes([payload[1], payload[2]]);
    payload[0] == side && payload[..] == rtp_packet(side, seq)[12..]
}

/// Throws away what is waiting on `socket` (packets of an earlier phase).
pub fn drain(socket: &UdpSocket) {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    while socket.recv(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
}

/// What one side received of the other's packets.
pub struct Heard {
    /// The payloads that came, in order.
    pub payloads: Vec<Vec<u8>>,
    /// Datagrams that were not PT 0 RTP of our size.
    pub other: usize,
}

impl Heard {
    /// Whether every one of `side`'s `count` payloads came, in order and unchanged.
    pub fn everything_from(&self, side: u8, count: u16) -> bool {
        let theirs: Vec<&Vec<u8>> = self.payloads.iter().filter(|p| sent_by(p, side)).collect();
        theirs.len() == usize::from(count)
            && theirs.iter().zip(0..count).all(|(p, seq)| p[..] == rtp_packet(side, seq)[12..])
    }

    /// How many of the payloads are packets `side` sent.
    pub fn from(&self, side: u8) -> usize {
        self.payloads.iter().filter(|p| sent_by(p, side)).count()
    }
}

/// Sends `count` packets each way, 20 ms apart: from `a` (side `A`) to the
/// relay's port for the caller, from `b` (side `B`) to its port for the
/// callee; returns what `a` and `b` received meanwhile (what was waiting on
/// them before is thrown away).
pub fn exchange_rtp(
    a: &UdpSocket,
    relay_a: SocketAddr,
    b: &UdpSocket,
    relay_b: SocketAddr,
    count: u16,
) -> (Heard, Heard) {
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
pub fn assert_both_ways((at_a, at_b): &(Heard, Heard), count: u16) {
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
pub fn media_sockets() -> (UdpSocket, UdpSocket, String, String) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_port, b_port) = (a.local_addr().unwrap().port().to_string(), b.local_addr().unwrap().port().to_string());
    (a, b, a_port, b_port)
}

/// baresip (Debian `baresip-core`), a phone stack we did not write, with one
/// account (`;answermode=auto` makes it answer calls) and the switch's
/// music-on-hold file as its microphone; what it plays goes to an
/// in-memory device. Its output lines come through the channel.
pub fn baresip(dir: &Path, account: &str) -> (Child, std::sync::mpsc::Receiver<String>) {
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
pub fn baresip_says(rx: &std::sync::mpsc::Receiver<String>, needle: &str, wait: Duration, seen: &mut Vec<String>) -> bool {
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
