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

fn main() {
    if !common::is_bench_run() {
        return;
    }
    let users = 10_000u32;
    let rate = common::env_or("REG_RATE", 15_000);
    let total = common::env_or("REG_TOTAL", 100_000);
    let mut extra = String::from("[auth]\nalgorithms = [\"MD5\"]\n[endpoints]\n");
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..users {
        let user = 100_000 + i;
        let _ = writeln!(extra, "{user} = {{ password = \"pw{user}\" }}");
        let _ = writeln!(csv, "{user};[authentication username={user} password=pw{user}]");
    }
    let switch = common::Switch::start_logging("register-rate", "warn,tandem=info", &extra);
    let csv_path = switch.dir.join("users.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let csv_arg = csv_path.to_string_lossy().to_string();
    let run = common::sipp_load(&switch, "register_load.xml", rate, total, &["-inf", &csv_arg]);
    let (ok, failed, elapsed, cpu) = (run.ok, run.failed, run.elapsed, run.cpu);
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
