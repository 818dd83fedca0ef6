//! The decision budget: with 10,000 agents and 100,000 waiting callers, what happens
//! when an agent frees up or a caller joins must take well under 50 µs at p99.
//! Timed in release builds only (`cargo test -p acd-engine --release --test latency
//! -- --nocapture` prints the figures).

use std::time::{Duration, Instant};

use acd_engine::*;

const AGENTS: usize = 10_000;
const WAITING: usize = 100_000;
const ROUNDS: usize = 20_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

fn measure(strategy: StrategyKind) -> (Duration, Duration, Duration, Duration) {
    let ids: Vec<String> = (0..AGENTS).map(|i| format!("{}", 100_000 + i)).collect();
    let queue = QueueConfig {
        members: ids.iter().map(|id| Member::new(id, 0)).collect(),
        ..QueueConfig::new("big", strategy, &[])
    };
    let config = AcdConfig {
        queues: vec![queue],
        agents: ids.iter().map(|id| AgentConfig::new(id)).collect(),
        seed: Some(1),
        ..AcdConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    let t0 = Instant::now();
    let mut clock = t0;
    let mut next_call = 0u64;
    let mut on_call: Vec<(CallId, String)> = Vec::new();

    // Caller joins while every agent is free: the join offers at once.
    let mut join_free = Vec::with_capacity(AGENTS);
    for _ in 0..AGENTS {
        let call = CallId(next_call);
        next_call += 1;
        let started = Instant::now();
        engine.caller_join(call, "big", CallerInfo::default(), clock).unwrap();
        let offer = engine.drain_actions().find_map(|a| match a {
            Action::Offer { agent, .. } => Some(agent),
            _ => None,
        });
        join_free.push(started.elapsed());
        let agent = offer.expect("a free agent is offered");
        engine.offer_result(call, &agent, OfferResult::Answered, clock);
        engine.drain_actions().for_each(drop);
        on_call.push((call, agent));
    }
    // Every agent on a call; 100,000 callers wait.
    let mut join_busy = Vec::with_capacity(WAITING);
    for _ in 0..WAITING {
        clock += Duration::from_micros(10);
        let started = Instant::now();
        engine.caller_join(CallId(next_call), "big", CallerInfo::default(), clock).unwrap();
        engine.drain_actions().for_each(drop);
        join_busy.push(started.elapsed());
        next_call += 1;
    }
    assert_eq!(engine.waiting_callers(), WAITING);

    // An agent frees up: the head caller is offered to it; it answers; a new caller joins.
    let mut freed = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        clock += Duration::from_millis(1);
        let (call, agent) = on_call[round % AGENTS].clone();
        let started = Instant::now();
        engine.call_ended(call, EndedBy::Caller, clock);
        let offer = engine.drain_actions().find_map(|a| match a {
            Action::Offer { call, agent, .. } => Some((call, agent)),
            _ => None,
        });
        freed.push(started.elapsed());
        let (next, offered) = offer.expect("the head caller is offered");
        assert_eq!(offered, agent);
        engine.offer_result(next, &agent, OfferResult::Answered, clock);
        engine.drain_actions().for_each(drop);
        on_call[round % AGENTS] = (next, agent);
        engine.caller_join(CallId(next_call), "big", CallerInfo::default(), clock).unwrap();
        engine.drain_actions().for_each(drop);
        next_call += 1;
    }
    assert_eq!(engine.waiting_callers(), WAITING);
    let p99_busy = percentile(&mut join_busy, 0.99);
    let p99_free = percentile(&mut join_free, 0.99);
    let p50_freed = percentile(&mut freed, 0.50);
    let p99_freed = percentile(&mut freed, 0.99);
    (p99_free, p99_busy, p50_freed, p99_freed)
}

#[test]
#[cfg_attr(debug_assertions, ignore = "timed in release builds only")]
fn a_decision_with_10000_agents_and_100000_waiting_callers_is_under_50_us_at_p99() {
    for strategy in [
        StrategyKind::LongestIdle,
        StrategyKind::RoundRobin,
        StrategyKind::Linear,
        StrategyKind::FewestCalls,
        StrategyKind::Random,
        StrategyKind::Skills,
    ] {
        let (join_free, join_busy, freed_p50, freed_p99) = measure(strategy);
        println!(
            "{:<16} join with free agents p99 {:>6.2} µs | join, all busy p99 {:>6.2} µs | agent frees up p50 {:>6.2} µs p99 {:>6.2} µs",
            strategy.name(),
            join_free.as_secs_f64() * 1e6,
            join_busy.as_secs_f64() * 1e6,
            freed_p50.as_secs_f64() * 1e6,
            freed_p99.as_secs_f64() * 1e6,
        );
        for (what, p99) in
            [("join (free agents)", join_free), ("join (all busy)", join_busy), ("agent frees up", freed_p99)]
        {
            assert!(p99 < Duration::from_micros(50), "{}: {what} p99 {p99:?}", strategy.name());
        }
    }
}
