//! A contact-centre day through the real ACD engine, as a discrete-event simulation,
//! checked against the Erlang C formula (M/M/N: Poisson arrivals, exponential handle
//! times, infinite patience, first come first served).
//!
//! One queue, longest-idle, `ACD_DAY_AGENTS` agents (30), arrivals at
//! `ACD_DAY_PER_HOUR` (540/hour), average handle time `ACD_DAY_AHT` seconds (180):
//! A = 27 Erlangs, 90% occupancy. Agents answer every offer at the instant it is made,
//! nobody abandons, wrap-up is 0, so the engine's queue is an M/M/N queue and Erlang C
//! gives the steady state it should reach. Each replication simulates
//! `ACD_DAY_HOURS` (8) hours with its own seed; callers who arrive in the first
//! `ACD_DAY_WARMUP_MIN` minutes (60) are left out of the figures (the day starts with
//! an empty queue, Erlang C is the steady state), and the day runs on after the last
//! arrival until every caller has been served. `ACD_DAY_REPS` replications (300).
//!
//! Figures: service level (answered within 20 s), average speed of answer, P(wait),
//! occupancy (agents' busy time over the measured window), each the mean of the
//! replications with its 95% interval, against Erlang C. Tolerances on the mean:
//! service level and P(wait) within 3 percentage points, ASA within 15%, occupancy
//! within 2 points of A/N. Outside them the bench panics: this checks the model, not
//! the timing. Wall time is reported, not checked.
//!
//! The Erlang functions are checked first against values known in closed form or from
//! the Erlang B tables; under `cargo test --benches` (no `--bench` argument) only that
//! check runs.
//!
//! cargo bench --bench acd_day
//! ACD_DAY_AGENTS=100 ACD_DAY_PER_HOUR=1900 ACD_DAY_REPS=20 cargo bench --bench acd_day

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use acd_engine::{
    AcdConfig, Action, AgentConfig, CallId, CallerInfo, EndedBy, Engine, Member, OfferResult, QueueConfig, StrategyKind,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Erlang B blocking probability for `n` servers offered `a` Erlangs, by the recursion
/// B(0) = 1, B(k) = a·B(k−1) / (k + a·B(k−1)): no factorials, no overflow.
fn erlang_b(n: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=n {
        b = a * b / (f64::from(k) + a * b);
    }
    b
}

/// Erlang C: the probability that a caller waits, for `n` agents and `a` Erlangs
/// (a < n), from Erlang B: C = n·B / (n − a·(1 − B)).
fn erlang_c(n: u32, a: f64) -> f64 {
    assert!(a < f64::from(n), "Erlang C needs a < n (a = {a}, n = {n})");
    let b = erlang_b(n, a);
    f64::from(n) * b / (f64::from(n) - a * (1.0 - b))
}

/// Erlang C summed directly (in logarithms), to cross-check the recursion.
fn erlang_c_direct(n: u32, a: f64) -> f64 {
    let ln_term = |k: u32| f64::from(k) * a.ln() - (1..=k).map(|i| f64::from(i).ln()).sum::<f64>();
    let last = (ln_term(n) + (f64::from(n) / (f64::from(n) - a)).ln()).exp();
    let sum: f64 = (0..n).map(|k| ln_term(k).exp()).sum();
    last / (sum + last)
}

struct ErlangC {
    p_wait: f64,
    asa: f64,
    service_level: f64,
}

/// P(wait), ASA = P(wait)·AHT/(N − A), SL(T) = 1 − P(wait)·e^(−(N − A)·T/AHT).
fn erlang_c_figures(n: u32, a: f64, aht: f64, threshold: f64) -> ErlangC {
    let p_wait = erlang_c(n, a);
    let spare = f64::from(n) - a;
    ErlangC { p_wait, asa: p_wait * aht / spare, service_level: 1.0 - p_wait * (-spare * threshold / aht).exp() }
}

/// The Erlang functions against known values; panics if one is off.
fn check_erlang() {
    let checks: [(&str, f64, f64); 5] = [
        ("Erlang C, N=1, A=0.5 (M/M/1: P(wait) = rho)", erlang_c(1, 0.5), 0.5),
        ("Erlang C, N=2, A=1 (M/M/2: A^2/(2+A))", erlang_c(2, 1.0), 1.0 / 3.0),
        ("Erlang B, N=10, A=5 (Erlang B tables: 1.84%)", erlang_b(10, 5.0), 0.018_384_570),
        ("Erlang C, N=30, A=27, recursion vs direct sum", erlang_c(30, 27.0), erlang_c_direct(30, 27.0)),
        ("Erlang C, N=100, A=95, recursion vs direct sum", erlang_c(100, 95.0), erlang_c_direct(100, 95.0)),
    ];
    for (what, got, want) in checks {
        let ok = (got - want).abs() < 1e-6;
        println!("  {what}: {got:.6} (reference {want:.6}) {}", if ok { "ok" } else { "WRONG" });
        assert!(ok, "{what}: {got} != {want}");
    }
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy)]
struct Params {
    agents: u32,
    per_hour: f64,
    aht: f64,
    hours: f64,
    warmup: f64,
    threshold: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Arrival,
    CallEnd(CallId),
}

/// What one replication measured.
struct Day {
    measured: u64,
    waited: u64,
    within: u64,
    total_wait: f64,
    busy_seconds: f64,
    window: f64,
    engine_sl: Option<f64>,
    engine_asa: Option<Duration>,
    wall: Duration,
}

fn exp(rng: &mut SmallRng, mean: f64) -> f64 {
    // U in (0, 1]: -ln(U) is finite.
    let u: f64 = 1.0 - rng.random::<f64>();
    -u.ln() * mean
}

fn ns(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}

fn simulate(p: Params, seed: u64) -> Day {
    let wall = Instant::now();
    let ids: Vec<String> = (0..p.agents).map(|i| format!("agent{i:03}")).collect();
    let queue = QueueConfig {
        name: "q".to_owned(),
        strategy: StrategyKind::LongestIdle,
        members: ids.iter().map(|id| Member::new(id, 0)).collect(),
        service_level: Duration::from_secs_f64(p.threshold),
        ..QueueConfig::default()
    };
    let config = AcdConfig {
        queues: vec![queue],
        agents: ids.iter().map(|id| AgentConfig::new(id)).collect(),
        seed: Some(seed),
        ..AcdConfig::default()
    };
    let mut engine = Engine::new(config).expect("a valid configuration");
    let mut rng = SmallRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let at = |t: u64| t0 + Duration::from_nanos(t);
    let end = ns(p.hours * 3600.0);
    let warmup = ns(p.warmup);
    let mean_gap = 3600.0 / p.per_hour;

    // (time in ns, order of scheduling, what): the earliest first, ties in order.
    let mut events: BinaryHeap<Reverse<(u64, u64, Kind)>> = BinaryHeap::new();
    let mut scheduled = 0u64;
    let mut schedule = |events: &mut BinaryHeap<Reverse<(u64, u64, Kind)>>, t: u64, kind: Kind| {
        scheduled += 1;
        events.push(Reverse((t, scheduled, kind)));
    };
    schedule(&mut events, ns(exp(&mut rng, mean_gap)), Kind::Arrival);

    let mut arrived: HashMap<CallId, u64> = HashMap::new();
    let mut next_call = 0u64;
    let mut busy = 0u32;
    let mut last_change = 0u64;
    let mut busy_ns = 0f64;
    let (mut measured, mut waited, mut within, mut total_wait) = (0u64, 0u64, 0u64, 0f64);
    let mut pending: VecDeque<Action> = VecDeque::new();
    engine.handle_timeout(at(0));
    pending.extend(engine.drain_actions());

    loop {
        let next_event = events.peek().map(|Reverse((t, _, _))| *t);
        let next_timer = engine.poll_timeout().map(|i| u64::try_from((i - t0).as_nanos()).unwrap_or(u64::MAX));
        let now = match (next_event, next_timer) {
            (None, None) => break,
            (Some(e), Some(t)) if t <= e => {
                engine.handle_timeout(at(t));
                pending.extend(engine.drain_actions());
                t
            }
            (None, Some(t)) => {
                engine.handle_timeout(at(t));
                pending.extend(engine.drain_actions());
                t
            }
            (Some(_), _) => {
                let Some(Reverse((t, _, kind))) = events.pop() else { break };
                match kind {
                    Kind::Arrival => {
                        let call = CallId(next_call);
                        next_call += 1;
                        arrived.insert(call, t);
                        engine
                            .caller_join(call, "q", CallerInfo::default(), at(t))
                            .expect("the queue takes every caller");
                        let gap = ns(exp(&mut rng, mean_gap));
                        if t + gap < end {
                            schedule(&mut events, t + gap, Kind::Arrival);
                        }
                    }
                    Kind::CallEnd(call) => {
                        engine.call_ended(call, EndedBy::Caller, at(t));
                        // The agent's busy time up to now, within the measured window.
                        let from = last_change.clamp(warmup, end);
                        let to = t.clamp(warmup, end);
                        busy_ns += f64::from(busy) * (to - from) as f64;
                        last_change = t;
                        busy -= 1;
                    }
                }
                pending.extend(engine.drain_actions());
                t
            }
        };
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Offer { call, agent, .. } => {
                    engine.offer_result(call, &agent, OfferResult::Answered, at(now));
                    pending.extend(engine.drain_actions());
                    let from = last_change.clamp(warmup, end);
                    let to = now.clamp(warmup, end);
                    busy_ns += f64::from(busy) * (to - from) as f64;
                    last_change = now;
                    busy += 1;
                    let joined = arrived.remove(&call).expect("an offer for a caller that arrived");
                    if joined >= warmup {
                        let wait = (now - joined) as f64 / 1e9;
                        measured += 1;
                        waited += u64::from(now > joined);
                        within += u64::from(wait <= p.threshold);
                        total_wait += wait;
                    }
                    schedule(&mut events, now + ns(exp(&mut rng, p.aht)), Kind::CallEnd(call));
                }
                Action::Event(_) => {}
                other => panic!("the model has no place for {other:?}"),
            }
        }
    }
    assert!(arrived.is_empty(), "{} callers never served", arrived.len());
    let stats = engine.queue_stats("q", at(last_change)).expect("the queue");
    Day {
        measured,
        waited,
        within,
        total_wait,
        busy_seconds: busy_ns / 1e9,
        window: (end - warmup) as f64 / 1e9,
        engine_sl: stats.service_level,
        engine_asa: stats.average_speed_of_answer,
        wall: wall.elapsed(),
    }
}

/// Mean and the half-width of its 95% interval (normal approximation).
fn mean_ci(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

fn main() {
    println!("acd_day: Erlang functions against known values");
    check_erlang();
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let p = Params {
        agents: env_f64("ACD_DAY_AGENTS", 30.0) as u32,
        per_hour: env_f64("ACD_DAY_PER_HOUR", 540.0),
        aht: env_f64("ACD_DAY_AHT", 180.0),
        hours: env_f64("ACD_DAY_HOURS", 8.0),
        warmup: env_f64("ACD_DAY_WARMUP_MIN", 60.0) * 60.0,
        threshold: 20.0,
    };
    let reps = env_f64("ACD_DAY_REPS", 300.0).max(1.0) as u64;
    let a = p.per_hour * p.aht / 3600.0;
    let theory = erlang_c_figures(p.agents, a, p.aht, p.threshold);
    println!(
        "acd_day: {} agents, {} calls/hour, AHT {} s: A = {a:.2} Erlangs; {} h a day, the first {} min left out; \
         {reps} replications (seeds 1..={reps}); longest-idle, answered at once, no abandonment, wrap-up 0",
        p.agents,
        p.per_hour,
        p.aht,
        p.hours,
        p.warmup / 60.0
    );
    println!(
        "{:>4} {:>6} {:>8} {:>8} {:>8} {:>7} {:>10} {:>10} {:>8}",
        "seed", "calls", "SL %", "ASA s", "Pwait %", "occ %", "engine SL", "engine ASA", "wall ms"
    );
    let started = Instant::now();
    let (mut sl, mut asa, mut pw, mut occ) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    for seed in 1..=reps {
        let day = simulate(p, seed);
        let n = day.measured.max(1) as f64;
        let day_sl = 100.0 * day.within as f64 / n;
        let day_asa = day.total_wait / n;
        let day_pw = 100.0 * day.waited as f64 / n;
        let day_occ = 100.0 * day.busy_seconds / (f64::from(p.agents) * day.window);
        println!(
            "{seed:>4} {:>6} {day_sl:>8.2} {day_asa:>8.2} {day_pw:>8.2} {day_occ:>7.2} {:>10} {:>10} {:>8.1}",
            day.measured,
            day.engine_sl.map_or("-".to_owned(), |v| format!("{v:.2}")),
            day.engine_asa.map_or("-".to_owned(), |v| format!("{:.2}", v.as_secs_f64())),
            day.wall.as_secs_f64() * 1e3
        );
        sl.push(day_sl);
        asa.push(day_asa);
        pw.push(day_pw);
        occ.push(day_occ);
        calls += day.measured;
        slowest = slowest.max(day.wall);
    }
    let wall = started.elapsed();
    println!(
        "(engine SL / ASA: the engine's own queue_stats over the whole day, warm-up included; the other figures: \
         callers arriving after the warm-up)"
    );

    let mut failed = Vec::new();
    let mut verdict = |name: &str, values: &[f64], want: f64, tolerance: f64, relative: bool, unit: &str| {
        let (mean, ci) = mean_ci(values);
        let allowed = if relative { tolerance * want } else { tolerance };
        let pass = (mean - want).abs() <= allowed;
        let rule =
            if relative { format!("within {:.0}%", tolerance * 100.0) } else { format!("within {tolerance} points") };
        println!(
            "{name:<26} simulated {mean:>7.2} ± {ci:.2}{unit}   Erlang C {want:>7.2}{unit}   {rule:<16} {}",
            if pass { "PASS" } else { "FAIL" }
        );
        if !pass {
            failed.push(name.to_owned());
        }
    };
    println!("mean of {reps} replications (± the 95% interval of the mean), {calls} callers measured in all:");
    verdict("service level (<= 20 s)", &sl, 100.0 * theory.service_level, 3.0, false, " %");
    verdict("average speed of answer", &asa, theory.asa, 0.15, true, " s");
    verdict("P(wait)", &pw, 100.0 * theory.p_wait, 3.0, false, " %");
    verdict("occupancy", &occ, 100.0 * a / f64::from(p.agents), 2.0, false, " %");
    println!(
        "acd_day: wall {:.2} s for {reps} replications: {:.1} ms per replication on average, slowest {:.1} ms",
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1e3 / reps as f64,
        slowest.as_secs_f64() * 1e3
    );
    assert!(failed.is_empty(), "outside Erlang C's tolerance: {}", failed.join(", "));
}
