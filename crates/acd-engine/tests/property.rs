//! Random interleavings of everything the switch can tell the engine, over simulated
//! hours, checked after every step against a model built only from the engine's own
//! actions; then a drain, after which no agent may be left ringing or on a call.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use acd_engine::*;
use common::*;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const AGENTS: [&str; 8] = ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"];
const SKILLS: [&str; 3] = ["en", "fr", "de"];

/// Three queues over eight agents, with strategies and options drawn from the seed.
fn random_config(rng: &mut SmallRng, seed: u64) -> AcdConfig {
    let agents = AGENTS
        .iter()
        .map(|id| AgentConfig {
            wrap_up: rng.random_bool(0.3).then(|| ms(rng.random_range(0..4_000))),
            skills: SKILLS
                .iter()
                .filter(|_| rng.random_bool(0.6))
                .map(|skill| skill.to_string())
                .collect::<Vec<_>>()
                .into_iter()
                .map(|skill| (skill, rng.random_range(1..=9)))
                .collect(),
            ..AgentConfig::new(id)
        })
        .collect();
    let queues = (0..3)
        .map(|i| {
            let strategy = StrategyKind::ALL[(seed as usize * 3 + i) % StrategyKind::ALL.len()];
            let members = AGENTS
                .iter()
                .filter(|_| rng.random_bool(0.6))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|id| Member::new(id, rng.random_range(0..3)))
                .collect();
            let weighted = strategy == StrategyKind::WeightedRandom;
            QueueConfig {
                name: format!("q{i}"),
                strategy,
                members,
                weight: rng.random_range(0..3),
                max_callers: rng.random_bool(0.3).then(|| rng.random_range(1..10)),
                max_wait: rng.random_bool(0.5).then(|| secs(rng.random_range(20..300))),
                join_when_empty: [JoinRule::Always, JoinRule::UnlessNoneLoggedIn, JoinRule::UnlessNoneAvailable]
                    [rng.random_range(0..3)],
                leave_when_empty: [LeaveRule::Never, LeaveRule::WhenNoneLoggedIn, LeaveRule::WhenNoneAvailable]
                    [rng.random_range(0..3)],
                ring_timeout: secs(rng.random_range(5..20)),
                retry: ms(rng.random_range(0..6_000)),
                wrap_up: ms(rng.random_range(0..5_000)),
                ring_in_use: rng.random_bool(0.3),
                tier_wait: (!weighted && rng.random_bool(0.3)).then(|| secs(rng.random_range(1..20))),
                reject_delay: ms(rng.random_range(0..5_000)),
                busy_delay: ms(rng.random_range(0..5_000)),
                no_answer_delay: ms(rng.random_range(0..5_000)),
                max_no_answer: rng.random_range(0..4),
                announce_every: rng.random_bool(0.5).then(|| secs(rng.random_range(5..40))),
                ring_progressively_every: secs(rng.random_range(1..8)),
                router_timeout: ms(rng.random_range(100..3_000)),
                router_max_candidates: rng.random_range(1..5),
                fallback: [StrategyKind::Linear, StrategyKind::RingAll, StrategyKind::Random][rng.random_range(0..3)],
                ..QueueConfig::default()
            }
        })
        .collect();
    AcdConfig {
        queues,
        agents,
        seed: Some(seed),
        longest_waiting_across_queues: rng.random_bool(0.5),
        ..AcdConfig::default()
    }
}

/// What the switch knows, from the engine's actions and its own reports.
#[derive(Default)]
struct Model {
    /// Outstanding offers: call -> agents ringing.
    offers: BTreeMap<u64, BTreeSet<String>>,
    /// Connected calls: call -> agent.
    connected: BTreeMap<u64, String>,
    /// Waiting callers: call -> queue.
    waiting: BTreeMap<u64, String>,
    /// Router questions not yet answered: call -> candidates.
    asks: BTreeMap<u64, Vec<String>>,
}

impl Model {
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Offer { call, agent, queue, .. } => {
                    assert_eq!(self.waiting.get(&call.0), Some(&queue), "offer for {call:?} not waiting in {queue}");
                    assert!(self.offers.entry(call.0).or_default().insert(agent.clone()), "{agent} offered twice");
                    self.asks.remove(&call.0);
                }
                Action::CancelOffer { call, agent } => {
                    let ringing = self.offers.get_mut(&call.0).expect("cancel of a call with no offers");
                    assert!(ringing.remove(&agent), "cancel of {agent} for {call:?}, which was not ringing");
                    if ringing.is_empty() {
                        self.offers.remove(&call.0);
                    }
                }
                Action::Exit { call, queue, .. } => {
                    assert_eq!(self.waiting.remove(&call.0), Some(queue), "exit of a caller not waiting");
                    assert!(!self.offers.contains_key(&call.0), "{call:?} exits with phones ringing");
                    self.asks.remove(&call.0);
                }
                Action::AskRouter { call, candidates, .. } => {
                    assert!(self.waiting.contains_key(&call.0));
                    assert!(!candidates.is_empty());
                    self.asks.insert(call.0, candidates);
                }
                Action::Announce { call, .. } => assert!(self.waiting.contains_key(&call.0)),
                Action::Event(_) => {}
            }
        }
    }

    fn check(&self, sim: &Sim, config: &AcdConfig) {
        let mut ringing: BTreeMap<&str, u64> = BTreeMap::new();
        for (call, agents) in &self.offers {
            let queue = &self.waiting[call];
            let queue = config.queues.iter().find(|q| &q.name == queue).unwrap();
            let kind = if queue.strategy == StrategyKind::External { queue.fallback } else { queue.strategy };
            if agents.len() > 1 {
                assert!(
                    matches!(kind, StrategyKind::RingAll | StrategyKind::RingProgressively),
                    "{call} rings {agents:?} in a {kind:?} queue"
                );
            }
            for agent in agents {
                assert!(ringing.insert(agent, *call).is_none(), "{agent} rings for two callers");
            }
        }
        for id in AGENTS {
            let Some(view) = sim.engine.agent_view(id) else { continue };
            let expected = match (ringing.get(id), self.connected.iter().find(|(_, a)| a.as_str() == id)) {
                (Some(call), None) => Some(AgentState::Offered(CallId(*call))),
                (None, Some((call, _))) => Some(AgentState::OnCall(CallId(*call))),
                (None, None) => None,
                (Some(_), Some(_)) => panic!("{id} rings while on a call"),
            };
            match expected {
                Some(state) => assert_eq!(view.state, state, "agent {id}"),
                None => assert!(
                    matches!(view.state, AgentState::Idle | AgentState::WrapUp { .. }),
                    "agent {id} is {:?} with nothing outstanding",
                    view.state
                ),
            }
        }
        assert_eq!(sim.engine.waiting_callers(), self.waiting.len());
        assert_eq!(sim.engine.connected_calls(), self.connected.len());
        for (call, queue) in &self.waiting {
            assert_eq!(sim.engine.caller_position(CallId(*call)).map(|(q, _)| q), Some(queue.as_str()));
        }
    }
}

fn variant(config: &AcdConfig, rng: &mut SmallRng) -> AcdConfig {
    let mut config = config.clone();
    if config.agents.len() > 1 && rng.random_bool(0.3) {
        let gone = config.agents.remove(rng.random_range(0..config.agents.len())).id;
        for queue in &mut config.queues {
            queue.members.retain(|m| m.agent != gone);
        }
    }
    if config.queues.len() > 1 && rng.random_bool(0.1) {
        config.queues.remove(rng.random_range(0..config.queues.len()));
    }
    for queue in &mut config.queues {
        if !queue.members.is_empty() && rng.random_bool(0.3) {
            queue.members.remove(rng.random_range(0..queue.members.len()));
        }
        queue.ring_timeout = secs(rng.random_range(5..20));
        queue.wrap_up = ms(rng.random_range(0..5_000));
        queue.members.reverse();
    }
    config
}

fn pick<'a, T>(rng: &mut SmallRng, items: impl IntoIterator<Item = &'a T>) -> Option<&'a T>
where
    T: 'a,
{
    let items: Vec<&T> = items.into_iter().collect();
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

fn run(seed: u64, steps: usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let original = random_config(&mut rng, seed);
    let mut config = original.clone();
    let mut sim = Sim::new(config.clone());
    let mut model = Model::default();
    let mut clock = 0u64;
    let mut next_call = 1u64;
    for _ in 0..steps {
        clock += [0, 0, 1, 10, 250, 1_000, 3_000, 9_000][rng.random_range(0..8)];
        sim.to(clock);
        model.apply(sim.take());
        model.check(&sim, &config);
        let op = rng.random_range(0..100);
        if std::env::var_os("ACD_TRACE").is_some() {
            eprintln!("op {op}");
        }
        match op {
            0..25 => {
                let queue = format!("q{}", rng.random_range(0..3));
                let skills = SKILLS.iter().filter(|_| rng.random_bool(0.2)).map(|s| s.to_string()).collect();
                let info = CallerInfo { priority: rng.random_range(0..3), skills };
                if sim.join_with(next_call, &queue, info).is_ok() {
                    model.waiting.insert(next_call, queue);
                }
                next_call += 1;
            }
            25..32 => {
                if let Some(&call) = pick(&mut rng, model.waiting.keys()) {
                    let reason = if rng.random_bool(0.8) { LeaveReason::Abandon } else { LeaveReason::Key };
                    sim.leave(call, reason);
                    model.waiting.remove(&call);
                    model.asks.remove(&call);
                }
            }
            32..60 => {
                let offers: Vec<(u64, String)> =
                    model.offers.iter().flat_map(|(c, agents)| agents.iter().map(|a| (*c, a.clone()))).collect();
                if let Some((call, agent)) = pick(&mut rng, offers.iter()).cloned() {
                    let result = [
                        OfferResult::Answered,
                        OfferResult::Answered,
                        OfferResult::Rejected,
                        OfferResult::Busy,
                        OfferResult::NoAnswer,
                        OfferResult::Failed,
                    ][rng.random_range(0..6)];
                    sim.result(call, &agent, result);
                    let ringing = model.offers.get_mut(&call).unwrap();
                    ringing.remove(&agent);
                    if ringing.is_empty() {
                        model.offers.remove(&call);
                    }
                    if result == OfferResult::Answered {
                        model.waiting.remove(&call);
                        model.connected.insert(call, agent);
                    }
                }
            }
            60..72 => {
                if let Some(&call) = pick(&mut rng, model.connected.keys()) {
                    let by = if rng.random_bool(0.5) { EndedBy::Agent } else { EndedBy::Caller };
                    sim.end(call, by);
                    model.connected.remove(&call);
                }
            }
            72..82 => {
                let agent = AGENTS[rng.random_range(0..AGENTS.len())];
                let status = match rng.random_range(0..5) {
                    0 => AgentStatus::LoggedOut,
                    1 => AgentStatus::OnBreak("break".into()),
                    _ => AgentStatus::Available,
                };
                let known = config.agents.iter().any(|a| a.id == agent);
                assert_eq!(sim.try_status(agent, status).is_ok(), known);
            }
            82..90 => {
                let agent = AGENTS[rng.random_range(0..AGENTS.len())];
                sim.device(agent, rng.random_bool(0.85), rng.random_bool(0.2));
            }
            90..95 => {
                let asks: Vec<(u64, Vec<String>)> = model.asks.iter().map(|(c, v)| (*c, v.clone())).collect();
                if let Some((call, candidates)) = pick(&mut rng, asks.iter()).cloned() {
                    let answer = match rng.random_range(0..4) {
                        0 => None,
                        1 => Some("nobody".to_owned()),
                        2 => Some(AGENTS[rng.random_range(0..AGENTS.len())].to_owned()),
                        _ => pick(&mut rng, candidates.iter()).cloned(),
                    };
                    model.asks.remove(&call);
                    sim.router(call, answer.as_deref());
                }
            }
            95..97 => {
                // A late or stray result: ignored by the engine.
                let call = rng.random_range(1..next_call.max(2));
                let agent = AGENTS[rng.random_range(0..AGENTS.len())];
                let outstanding = model.offers.get(&call).is_some_and(|agents| agents.contains(agent));
                let on_it = model.connected.get(&call).is_some_and(|a| a == agent);
                if !outstanding && !on_it {
                    sim.result(call, agent, OfferResult::Answered);
                    assert!(!sim.engine.agent_view(agent).is_some_and(|v| v.state == AgentState::OnCall(CallId(call))));
                }
            }
            _ => {
                // Reload: the same configuration, or the first with an agent, members or
                // a queue less and other timings (so they also come back; strategies
                // stay: a queue that rings all keeps its round).
                if rng.random_bool(0.5) {
                    config = variant(&original, &mut rng);
                    if std::env::var_os("ACD_TRACE").is_some() {
                        let queues: Vec<_> = config
                            .queues
                            .iter()
                            .map(|q| {
                                (&q.name, q.strategy, q.members.iter().map(|m| m.agent.as_str()).collect::<Vec<_>>())
                            })
                            .collect();
                        eprintln!(
                            "reload: agents {:?} queues {queues:?}",
                            config.agents.iter().map(|a| a.id.as_str()).collect::<Vec<_>>()
                        );
                    }
                }
                sim.reconfigure(config.clone()).unwrap();
            }
        }
        model.apply(sim.take());
        model.check(&sim, &config);
    }

    // Drain: callers hang up, calls end, agents come back, and time runs out.
    let waiting: Vec<u64> = model.waiting.keys().copied().collect();
    for call in waiting {
        sim.leave(call, LeaveReason::Abandon);
        model.waiting.remove(&call);
        model.asks.remove(&call);
        model.apply(sim.take());
    }
    assert!(model.offers.is_empty(), "offers left after every caller left: {:?}", model.offers);
    let connected: Vec<u64> = model.connected.keys().copied().collect();
    for call in connected {
        sim.end(call, EndedBy::Caller);
        model.connected.remove(&call);
    }
    for agent in AGENTS {
        // Agents dropped from the configuration are unknown: the error is expected.
        let _ = sim.try_status(agent, AgentStatus::Available);
        sim.device(agent, true, false);
    }
    clock += 3_600_000;
    sim.to(clock);
    model.apply(sim.take());
    model.check(&sim, &config);
    for agent in AGENTS.iter().filter(|id| config.agents.iter().any(|a| a.id == **id)) {
        assert_eq!(sim.view(agent).state, AgentState::Idle, "agent {agent} after the drain (seed {seed})");
        assert_eq!(sim.view(agent).presented, PresentedState::Available);
    }
    assert_eq!(sim.engine.poll_timeout(), None, "timers left after the drain (seed {seed})");
    assert_eq!(sim.engine.waiting_callers() + sim.engine.connected_calls(), 0);
}

#[test]
fn random_interleavings_keep_the_invariants() {
    // ACD_SEED=n runs one seed (with ACD_TRACE=1 to print every action), ACD_SEEDS=n
    // runs more of them.
    let only: Option<u64> = std::env::var("ACD_SEED").ok().and_then(|s| s.parse().ok());
    let default_seeds = if cfg!(debug_assertions) { 8 } else { 24 };
    let seeds = std::env::var("ACD_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seeds);
    for seed in (0..seeds).filter(|s| only.is_none_or(|o| o == *s)) {
        eprintln!("seed {seed}");
        run(seed, 3_000);
    }
}
