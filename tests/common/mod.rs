//! Starts the real `tandem` binary on a generated configuration with port-0
//! listeners on loopback, learns the bound ports from its JSON log, and runs the
//! real peers (SIPp, socat) against it.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    let errors: String = std::fs::read_dir(&dir)
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
    // SIPp's final statistics screen: "  Successful call | <periodic> | <cumulative>".
    let count = |label: &str| -> u64 {
        text.lines()
            .rfind(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    LoadRun { ok: count("Successful call"), failed: count("Failed call"), elapsed, cpu: switch.cpu_time() - cpu_before }
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
