//! Each routing strategy, driven through the public API with a fake clock.

mod common;

use std::collections::HashMap;

use acd_engine::*;
use common::*;

/// A queue with no delays between rounds, so strategy order shows at once.
fn quick(strategy: StrategyKind, ids: &[&str]) -> QueueConfig {
    QueueConfig {
        retry: ms(0),
        no_answer_delay: ms(0),
        reject_delay: ms(0),
        busy_delay: ms(0),
        ..one_queue(strategy, ids)
    }
}

/// Joins a caller, checks whom it is offered to, and completes the call at once.
fn serve(sim: &mut Sim, call: u64) -> String {
    sim.join(call, "q").unwrap();
    let (_, agent) = sim.offer();
    sim.connect(call, &agent);
    sim.end(call, EndedBy::Caller);
    sim.take();
    agent
}

#[test]
fn ring_all_rings_every_free_agent_and_cancels_the_others_on_answer() {
    let mut sim = Sim::queue(one_queue(StrategyKind::RingAll, &["a", "b", "c"]), &["a", "b", "c"]);
    sim.device("c", true, true); // busy elsewhere: not rung
    sim.join(1, "q").unwrap();
    let offers = sim.offers();
    assert_eq!(offers, vec![(1, "a".to_owned()), (1, "b".to_owned())]);
    sim.answer(1, "b");
    assert_eq!(sim.cancels(), vec![(1, "a".to_owned())]);
    assert_eq!(sim.view("a").state, AgentState::Idle);
    assert_eq!(sim.view("b").state, AgentState::OnCall(CallId(1)));
}

#[test]
fn ring_all_rings_only_the_best_tier_with_free_agents() {
    let queue = QueueConfig::new("q", StrategyKind::RingAll, &[("a", 0), ("b", 0), ("c", 1), ("d", 1)]);
    let mut sim = Sim::queue(queue, &["a", "b", "c", "d"]);
    sim.join(1, "q").unwrap();
    assert_eq!(sim.offers(), vec![(1, "a".to_owned()), (1, "b".to_owned())]);
    sim.join(2, "q").unwrap();
    // a and b ring for caller 1: caller 2 gets tier 1.
    assert_eq!(sim.offers(), vec![(2, "c".to_owned()), (2, "d".to_owned())]);
}

#[test]
fn ring_all_round_times_out_together_and_rings_again_after_retry() {
    let queue = QueueConfig { no_answer_delay: ms(0), ..one_queue(StrategyKind::RingAll, &["a", "b"]) };
    let mut sim = Sim::queue(queue, &["a", "b"]);
    sim.join(1, "q").unwrap();
    assert_eq!(sim.offers().len(), 2);
    sim.to(14_999);
    assert!(sim.cancels().is_empty());
    sim.to(15_000);
    assert_eq!(sim.cancels(), vec![(1, "a".to_owned()), (1, "b".to_owned())]);
    sim.to(19_999);
    sim.no_offer();
    sim.to(20_000); // retry 5 s
    assert_eq!(sim.offers().len(), 2);
}

#[test]
fn linear_starts_each_caller_at_the_first_member_and_moves_on_after_no_answer() {
    let mut sim = Sim::queue(quick(StrategyKind::Linear, &["a", "b", "c"]), &["a", "b", "c"]);
    sim.join(1, "q").unwrap();
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.result(1, "a", OfferResult::NoAnswer);
    assert_eq!(sim.offer(), (1, "b".to_owned()));
    sim.result(1, "b", OfferResult::Rejected);
    assert_eq!(sim.offer(), (1, "c".to_owned()));
    sim.result(1, "c", OfferResult::NoAnswer);
    assert_eq!(sim.offer(), (1, "a".to_owned()), "wraps around");
    sim.connect(1, "a");
    sim.join(2, "q").unwrap();
    assert_eq!(sim.offer(), (2, "b".to_owned()), "a is on a call; b is the first free");
    sim.end(1, EndedBy::Agent);
    sim.join(3, "q").unwrap();
    assert_eq!(sim.offer(), (3, "a".to_owned()), "a new caller starts at the top");
}

#[test]
fn round_robin_remembers_the_last_agent_across_calls_in_id_order() {
    let mut sim = Sim::queue(quick(StrategyKind::RoundRobin, &["c", "a", "b"]), &["a", "b", "c"]);
    let order: Vec<String> = (1..=5).map(|call| serve(&mut sim, call)).collect();
    assert_eq!(order, ["a", "b", "c", "a", "b"]);
}

#[test]
fn round_robin_skips_busy_agents_and_resumes_after_the_last_offered() {
    let mut sim = Sim::queue(quick(StrategyKind::RoundRobin, &["a", "b", "c"]), &["a", "b", "c"]);
    assert_eq!(serve(&mut sim, 1), "a");
    sim.status("b", AgentStatus::OnBreak("lunch".into()));
    assert_eq!(serve(&mut sim, 2), "c");
    sim.status("b", AgentStatus::Available);
    assert_eq!(serve(&mut sim, 3), "a");
    assert_eq!(serve(&mut sim, 4), "b");
}

#[test]
fn rrordered_rotates_in_configured_member_order() {
    let mut sim = Sim::queue(quick(StrategyKind::RoundRobinOrdered, &["c", "a", "b"]), &["a", "b", "c"]);
    let order: Vec<String> = (1..=4).map(|call| serve(&mut sim, call)).collect();
    assert_eq!(order, ["c", "a", "b", "c"]);
}

#[test]
fn longest_idle_offers_the_agent_whose_last_call_ended_first() {
    let mut sim = Sim::queue(quick(StrategyKind::LongestIdle, &["a", "b", "c"]), &["a", "b", "c"]);
    for (call, agent) in [(1, "a"), (2, "b"), (3, "c")] {
        sim.join(call, "q").unwrap();
        assert_eq!(sim.offer(), (call, agent.to_owned()), "never called: configured order");
        sim.connect(call, agent);
    }
    sim.to(1_000);
    sim.end(2, EndedBy::Agent); // b idle since 1 s
    sim.to(2_000);
    sim.end(3, EndedBy::Agent); // c since 2 s
    sim.to(3_000);
    sim.end(1, EndedBy::Agent); // a since 3 s
    sim.take();
    sim.to(4_000);
    assert_eq!(serve(&mut sim, 4), "b");
    assert_eq!(serve(&mut sim, 5), "c");
    assert_eq!(serve(&mut sim, 6), "a");
}

#[test]
fn fewest_calls_offers_the_agent_with_fewest_calls_from_this_queue() {
    let mut sim = Sim::queue(quick(StrategyKind::FewestCalls, &["a", "b", "c"]), &["a", "b", "c"]);
    assert_eq!(serve(&mut sim, 1), "a");
    assert_eq!(serve(&mut sim, 2), "b");
    assert_eq!(serve(&mut sim, 3), "c");
    sim.status("b", AgentStatus::OnBreak("x".into()));
    sim.status("c", AgentStatus::OnBreak("x".into()));
    assert_eq!(serve(&mut sim, 4), "a"); // a: 2 calls
    sim.status("b", AgentStatus::Available);
    sim.status("c", AgentStatus::Available);
    assert_eq!(serve(&mut sim, 5), "b");
    assert_eq!(serve(&mut sim, 6), "c");
    assert_eq!(serve(&mut sim, 7), "a");
}

#[test]
fn least_talk_time_offers_the_agent_with_least_talk_on_this_queue() {
    let mut sim = Sim::queue(quick(StrategyKind::LeastTalkTime, &["a", "b", "c"]), &["a", "b", "c"]);
    for (call, agent) in [(1, "a"), (2, "b"), (3, "c")] {
        sim.join(call, "q").unwrap();
        assert_eq!(sim.offer(), (call, agent.to_owned()));
        sim.connect(call, agent);
    }
    sim.to(5_000);
    sim.end(2, EndedBy::Agent); // b: 5 s
    sim.to(20_000);
    sim.end(3, EndedBy::Agent); // c: 20 s
    sim.to(30_000);
    sim.end(1, EndedBy::Agent); // a: 30 s
    sim.take();
    assert_eq!(serve(&mut sim, 4), "b"); // b now 5 s + 0
    sim.join(5, "q").unwrap();
    assert_eq!(sim.offer(), (5, "b".to_owned()));
    sim.connect(5, "b");
    sim.to(50_000);
    sim.end(5, EndedBy::Agent); // b: 25 s
    sim.take();
    assert_eq!(serve(&mut sim, 6), "c");
}

/// Offers `n` callers one by one, each leaving at once; counts whom they were offered.
fn tally(sim: &mut Sim, n: u64) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for call in 1..=n {
        sim.join(call, "q").unwrap();
        let (_, agent) = sim.offer();
        *counts.entry(agent).or_insert(0) += 1;
        sim.leave(call, LeaveReason::Abandon);
        sim.take();
    }
    counts
}

#[test]
fn random_spreads_offers_evenly() {
    let mut sim = Sim::queue(quick(StrategyKind::Random, &["a", "b", "c"]), &["a", "b", "c"]);
    let counts = tally(&mut sim, 3_000);
    for agent in ["a", "b", "c"] {
        let n = counts[agent];
        assert!((850..=1150).contains(&n), "{agent}: {n} of 3000 ({counts:?})");
    }
}

#[test]
fn random_keeps_to_the_best_tier() {
    let queue = QueueConfig::new("q", StrategyKind::Random, &[("a", 0), ("b", 0), ("c", 5)]);
    let mut sim = Sim::queue(queue, &["a", "b", "c"]);
    let counts = tally(&mut sim, 200);
    assert_eq!(counts.get("c"), None, "{counts:?}");
}

#[test]
fn weighted_random_weighs_by_penalty() {
    let queue = QueueConfig::new("q", StrategyKind::WeightedRandom, &[("a", 0), ("b", 1), ("c", 3)]);
    let mut sim = Sim::queue(queue, &["a", "b", "c"]);
    let counts = tally(&mut sim, 7_000);
    // Weights 1, 1/2, 1/4: shares 4/7, 2/7, 1/7.
    for (agent, expected) in [("a", 4_000.0), ("b", 2_000.0), ("c", 1_000.0)] {
        let n = counts[agent] as f64;
        assert!((n - expected).abs() < expected * 0.1, "{agent}: {n}, expected about {expected} ({counts:?})");
    }
}

#[test]
fn seeded_engines_choose_alike() {
    let run = || {
        let mut sim = Sim::queue(quick(StrategyKind::Random, &["a", "b", "c", "d"]), &["a", "b", "c", "d"]);
        (1..=50).map(|call| serve(&mut sim, call)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn ring_progressively_adds_one_agent_every_interval_while_the_others_ring() {
    let queue = QueueConfig {
        ring_timeout: secs(60),
        ring_progressively_every: secs(10),
        ..one_queue(StrategyKind::RingProgressively, &["a", "b", "c"])
    };
    let mut sim = Sim::queue(queue, &["a", "b", "c"]);
    sim.join(1, "q").unwrap();
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.to(9_999);
    sim.no_offer();
    sim.to(10_000);
    assert_eq!(sim.offer(), (1, "b".to_owned()));
    assert_eq!(sim.view("a").state, AgentState::Offered(CallId(1)), "a rings on");
    sim.to(20_000);
    assert_eq!(sim.offer(), (1, "c".to_owned()));
    sim.to(25_000);
    sim.answer(1, "b");
    let mut cancels = sim.cancels();
    cancels.sort();
    assert_eq!(cancels, vec![(1, "a".to_owned()), (1, "c".to_owned())]);
}

#[test]
fn ring_progressively_offers_each_agent_its_own_ring_timeout() {
    let queue = QueueConfig {
        ring_timeout: secs(15),
        ring_progressively_every: secs(10),
        ..one_queue(StrategyKind::RingProgressively, &["a", "b"])
    };
    let mut sim = Sim::queue(queue, &["a", "b"]);
    sim.join(1, "q").unwrap();
    sim.take();
    sim.to(10_000);
    assert_eq!(sim.offer(), (1, "b".to_owned()));
    sim.to(15_000);
    assert_eq!(sim.cancels(), vec![(1, "a".to_owned())]);
    assert_eq!(sim.view("b").state, AgentState::Offered(CallId(1)));
    sim.to(25_000);
    assert_eq!(sim.cancels(), vec![(1, "b".to_owned())]);
}

fn skilled(id: &str, skills: &[(&str, u8)]) -> AgentConfig {
    AgentConfig { skills: skills.iter().map(|(s, l)| (s.to_string(), *l)).collect(), ..AgentConfig::new(id) }
}

fn needs(skills: &[&str]) -> CallerInfo {
    CallerInfo { priority: 0, skills: skills.iter().map(|s| s.to_string()).collect() }
}

fn skills_sim() -> Sim {
    let agents = vec![
        skilled("a", &[("english", 9)]),
        skilled("b", &[("french", 3)]),
        skilled("c", &[("french", 7), ("english", 2)]),
        skilled("d", &[("french", 7)]),
    ];
    let queue = quick(StrategyKind::Skills, &["a", "b", "c", "d"]);
    Sim::new(config(vec![queue], agents))
}

#[test]
fn skills_offers_only_agents_with_every_required_skill_best_match_first() {
    let mut sim = skills_sim();
    sim.join_with(1, "q", needs(&["french"])).unwrap();
    assert_eq!(sim.offer(), (1, "c".to_owned()), "c and d score 7; c is first in order");
    sim.join_with(2, "q", needs(&["french"])).unwrap();
    assert_eq!(sim.offer(), (2, "d".to_owned()));
    sim.join_with(3, "q", needs(&["french"])).unwrap();
    assert_eq!(sim.offer(), (3, "b".to_owned()), "b has french at 3");
    sim.join_with(4, "q", needs(&["french", "english"])).unwrap();
    sim.no_offer(); // only c has both, and c is ringing
    sim.join_with(5, "q", needs(&[])).unwrap();
    assert_eq!(sim.offer(), (5, "a".to_owned()));
    sim.connect(1, "c");
    sim.end(1, EndedBy::Agent);
    assert_eq!(sim.offer(), (4, "c".to_owned()), "c is free again, and only caller 4 waits");
}

#[test]
fn skills_breaks_equal_matches_by_longest_idle() {
    let mut sim = skills_sim();
    sim.join_with(1, "q", needs(&["french"])).unwrap();
    assert_eq!(sim.offer(), (1, "c".to_owned()));
    sim.connect(1, "c");
    sim.to(1_000);
    sim.end(1, EndedBy::Agent);
    sim.take();
    sim.join_with(2, "q", needs(&["french"])).unwrap();
    assert_eq!(sim.offer(), (2, "d".to_owned()), "d never had a call: idle longer than c");
}

#[test]
fn a_caller_with_a_skill_no_agent_has_waits() {
    let mut sim = skills_sim();
    sim.join_with(1, "q", needs(&["klingon"])).unwrap();
    sim.no_offer();
    sim.join(2, "q").unwrap();
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

fn external() -> QueueConfig {
    QueueConfig {
        router_timeout: secs(2),
        fallback: StrategyKind::Linear,
        ..one_queue(StrategyKind::External, &["a", "b", "c"])
    }
}

fn ask(sim: &mut Sim) -> (u64, Vec<String>) {
    let asks: Vec<_> = sim
        .take()
        .into_iter()
        .filter_map(|action| match action {
            Action::AskRouter { call, candidates, .. } => Some((call.0, candidates)),
            _ => None,
        })
        .collect();
    assert_eq!(asks.len(), 1, "{asks:?}");
    asks.into_iter().next().unwrap()
}

#[test]
fn external_offers_the_agent_the_router_names() {
    let mut sim = Sim::queue(external(), &["a", "b", "c"]);
    sim.status("c", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();
    assert_eq!(ask(&mut sim), (1, vec!["a".to_owned(), "b".to_owned()]));
    sim.to(1_500);
    sim.router(1, Some("b"));
    assert_eq!(sim.offer(), (1, "b".to_owned()));
}

#[test]
fn external_falls_back_when_the_router_is_late() {
    let mut sim = Sim::queue(external(), &["a", "b", "c"]);
    sim.join(1, "q").unwrap();
    ask(&mut sim);
    sim.to(1_999);
    sim.no_offer();
    sim.to(2_000);
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    assert!(sim.events().iter().any(|e| e.kind == EventKind::RouterFallback));
    sim.router(1, Some("c")); // too late: ignored
    sim.no_offer();
}

#[test]
fn external_falls_back_on_nonsense_or_failure() {
    let mut sim = Sim::queue(external(), &["a", "b", "c", "z"]);
    sim.status("c", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();
    ask(&mut sim);
    sim.router(1, Some("c")); // not a candidate
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.join(2, "q").unwrap();
    ask(&mut sim);
    sim.router(2, Some("nobody"));
    assert_eq!(sim.offer(), (2, "b".to_owned()));
    sim.status("c", AgentStatus::Available);
    sim.join(3, "q").unwrap();
    assert_eq!(ask(&mut sim), (3, vec!["c".to_owned()]));
    sim.router(3, None);
    assert_eq!(sim.offer(), (3, "c".to_owned()));
}

#[test]
fn external_falls_back_when_the_named_agent_was_taken_meanwhile() {
    let queue = QueueConfig { fallback: StrategyKind::Linear, ..one_queue(StrategyKind::External, &["a", "b"]) };
    let mut sim = Sim::queue(queue, &["a", "b"]);
    sim.join(1, "q").unwrap();
    ask(&mut sim);
    sim.join(2, "q").unwrap();
    ask(&mut sim);
    sim.router(1, Some("a"));
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.router(2, Some("a")); // a rings for 1 now
    assert_eq!(sim.offer(), (2, "b".to_owned()));
}

#[test]
fn every_strategy_serves_a_caller() {
    for kind in StrategyKind::ALL {
        let mut sim = Sim::queue(quick(kind, &["a", "b"]), &["a", "b"]);
        sim.join(1, "q").unwrap();
        if kind == StrategyKind::External {
            ask(&mut sim);
            sim.router(1, Some("b"));
        }
        let offers = sim.offers();
        assert!(!offers.is_empty(), "{kind:?}");
        let agent = offers[0].1.clone();
        sim.connect(1, &agent);
        assert_eq!(sim.engine.connected_calls(), 1, "{kind:?}");
        assert_eq!(StrategyKind::from_name(kind.name()), Some(kind));
    }
}
