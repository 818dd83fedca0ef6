//! Authenticated registrations per second through the real binary, driven by
//! SIPp over UDP on loopback. Each registration is two transactions: REGISTER,
//! 401 challenge, REGISTER with MD5 digest credentials, 200. Bounded in count
//! (`REG_TOTAL`, default 100,000) and time (SIPp's -timeout).
//!
//! cargo bench --bench register_rate
//! REG_RATE=12000 REG_TOTAL=120000 cargo bench --bench register_rate

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo test --benches` runs this with no argument; a bench run passes --bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let users = 10_000u32;
    let rate = env_or("REG_RATE", 15_000);
    let total = env_or("REG_TOTAL", 100_000);
    let mut extra = String::from("[auth]\nalgorithms = [\"MD5\"]\n[endpoints]\n");
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..users {
        let user = 100_000 + i;
        let _ = writeln!(extra, "{user} = {{ password = \"pw{user}\" }}");
        let _ = writeln!(csv, "{user};[authentication username={user} password=pw{user}]");
    }
    let switch = common::Switch::start_logging("register-rate", "warn,tandem=info", &extra);
    let target = switch.addr("internal", "udp", false);
    let csv_path = switch.dir.join("users.csv");
    std::fs::write(&csv_path, csv).unwrap();

    let cpu_before = switch.cpu_time();
    let started = Instant::now();
    let out = Command::new("sipp")
        .current_dir(&switch.dir)
        .arg("-sf")
        .arg(common::sipp_dir().join("register_load.xml"))
        .arg("-inf")
        .arg(&csv_path)
        .args(["-t", "u1", "-i", "127.0.0.1", "-nostdin", "-timeout", "120s"])
        .args(["-r", &rate.to_string(), "-rp", "1000", "-m", &total.to_string(), "-l", "5000"])
        .arg(target.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run sipp (Debian package sip-tester)");
    let elapsed = started.elapsed();
    let cpu = switch.cpu_time() - cpu_before;
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |label: &str| -> u64 {
        text.lines()
            .rfind(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let (ok, failed) = (count("Successful call"), count("Failed call"));
    println!(
        "register_rate: {ok} authenticated registrations ({failed} failed) in {:.2} s = {:.0} registrations/s \
(offered {rate}/s, {users} users, UDP loopback); tandem used {:.2} s of CPU = {:.1} us per registration",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / ok.max(1) as f64
    );
    switch.stop();
}
