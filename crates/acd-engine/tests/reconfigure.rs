//! Config validation and reload.

mod common;

use acd_engine::*;
use common::*;

#[test]
fn config_errors_name_the_thing() {
    let check = |config: AcdConfig, message: &str| {
        let err = Engine::new(config).unwrap_err();
        assert_eq!(err.to_string(), message);
    };
    let support = QueueConfig::new("support", StrategyKind::Linear, &[("1001", 0), ("2001", 0)]);
    check(
        config(vec![support.clone()], agents(&["1001"])),
        "queue \"support\": member \"2001\" is not a defined agent",
    );
    check(
        config(vec![support.clone(), support.clone()], agents(&["1001", "2001"])),
        "queue \"support\" is defined twice",
    );
    check(config(vec![], agents(&["1001", "1001"])), "agent \"1001\" is defined twice");
    let twice = QueueConfig::new("x", StrategyKind::Linear, &[("1001", 0), ("1001", 1)]);
    check(config(vec![twice], agents(&["1001"])), "queue \"x\": member \"1001\" is listed twice");
    let weighted = QueueConfig { tier_wait: Some(secs(5)), ..QueueConfig::new("x", StrategyKind::WeightedRandom, &[]) };
    check(
        config(vec![weighted], vec![]),
        "queue \"x\": weighted-random uses penalties as weights, not tiers: tier_wait cannot be set",
    );
    let external =
        QueueConfig { fallback: StrategyKind::External, ..QueueConfig::new("x", StrategyKind::External, &[]) };
    check(config(vec![external], vec![]), "queue \"x\": the external strategy's fallback cannot be external");
    let ring = QueueConfig { ring_timeout: secs(0), ..QueueConfig::new("x", StrategyKind::Linear, &[]) };
    check(config(vec![ring], vec![]), "queue \"x\": ring_timeout must be more than zero");
    let skilled = AgentConfig { skills: vec![("french".into(), 12)], ..AgentConfig::new("1001") };
    check(config(vec![], vec![skilled]), "agent \"1001\": skill \"french\" has level 12, outside 1..=9");
}

fn base() -> AcdConfig {
    let sales = QueueConfig { name: "sales".into(), ..one_queue(StrategyKind::RoundRobin, &["a", "b"]) };
    let support = QueueConfig { name: "support".into(), ..one_queue(StrategyKind::Linear, &["a", "c"]) };
    config(vec![sales, support], agents(&["a", "b", "c"]))
}

#[test]
fn reload_keeps_agents_callers_in_order_counters_and_round_robin_memory() {
    let mut sim = Sim::new(base());
    sim.join(1, "sales").unwrap();
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.connect(1, "a");
    sim.status("b", AgentStatus::OnBreak("x".into()));
    sim.status("c", AgentStatus::LoggedOut);
    for call in 2..=4 {
        sim.to(call * 1_000);
        sim.join(call, "sales").unwrap();
    }
    sim.join_with(5, "sales", CallerInfo { priority: 3, skills: vec![] }).unwrap();
    let before = sim.stats("sales");

    let mut config = base();
    config.queues[0].wrap_up = secs(30); // a change that keeps the queue
    config.queues[0].members.push(Member::new("c", 0));
    sim.reconfigure(config).unwrap();

    assert_eq!(sim.view("a").state, AgentState::OnCall(CallId(1)));
    assert_eq!(sim.view("b").status, AgentStatus::OnBreak("x".into()));
    assert_eq!(sim.view("c").status, AgentStatus::LoggedOut);
    let after = sim.stats("sales");
    assert_eq!((after.entered, after.answered, after.waiting), (before.entered, before.answered, 4));
    let positions: Vec<usize> = (2..=5).map(|c| sim.engine.caller_position(CallId(c)).unwrap().1).collect();
    assert_eq!(positions, [2, 3, 4, 1]);
    sim.status("b", AgentStatus::Available);
    assert_eq!(sim.offer(), (5, "b".to_owned()), "round robin resumes after a");
    sim.end(1, EndedBy::Agent);
    assert_eq!(sim.view("a").state, AgentState::WrapUp { until: sim.now + secs(30) }, "the new wrap-up applies");
}

#[test]
fn a_removed_queues_callers_exit_and_its_ringing_stops() {
    let mut sim = Sim::new(base());
    sim.status("c", AgentStatus::LoggedOut);
    sim.join(1, "support").unwrap();
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.join(2, "support").unwrap();
    let mut config = base();
    config.queues.remove(1);
    sim.reconfigure(config).unwrap();
    let actions = sim.take();
    assert!(actions.contains(&Action::CancelOffer { call: CallId(1), agent: "a".into() }));
    for call in [1, 2] {
        let exit = Action::Exit { call: CallId(call), queue: "support".into(), reason: ExitReason::QueueRemoved };
        assert!(actions.contains(&exit), "{actions:?}");
    }
    assert_eq!(sim.view("a").state, AgentState::Idle);
    assert!(sim.engine.queue_stats("support", sim.now).is_none());
    assert_eq!(sim.join(3, "support"), Err(JoinRefused::UnknownQueue("support".into())));
}

#[test]
fn a_removed_agent_keeps_its_call_and_its_ringing_offer_moves_on() {
    let mut sim = Sim::new(base());
    sim.join(1, "sales").unwrap();
    sim.connect(1, "a");
    sim.join(2, "support").unwrap();
    assert_eq!(sim.offer(), (2, "c".to_owned()));
    let config = config(
        vec![
            QueueConfig { name: "sales".into(), ..one_queue(StrategyKind::RoundRobin, &["b"]) },
            QueueConfig { name: "support".into(), ..one_queue(StrategyKind::Linear, &["b"]) },
        ],
        agents(&["b"]),
    );
    sim.reconfigure(config).unwrap();
    let actions = sim.take();
    assert!(actions.contains(&Action::CancelOffer { call: CallId(2), agent: "c".into() }));
    assert!(actions.iter().any(|a| matches!(a, Action::Offer { call: CallId(2), agent, .. } if agent == "b")));
    assert!(sim.engine.agent_view("c").is_none());
    assert_eq!(sim.engine.connected_calls(), 1);
    assert!(sim.engine.set_status("a", AgentStatus::Available, sim.now).is_err());
    sim.end(1, EndedBy::Caller);
    assert_eq!(sim.stats("sales").completed, 1);
    assert!(sim.engine.agent_view("a").is_none(), "its slot is gone once its call ended");
    // And it may come back.
    sim.reconfigure(self::base()).unwrap();
    assert_eq!(sim.view("a").status, AgentStatus::Available);
}

#[test]
fn a_bad_reload_changes_nothing() {
    let mut sim = Sim::new(base());
    sim.join(1, "sales").unwrap();
    let mut bad = base();
    bad.queues[0].members.push(Member::new("zz", 0));
    assert!(sim.reconfigure(bad).is_err());
    assert_eq!(sim.view("a").state, AgentState::Offered(CallId(1)));
    assert_eq!(sim.stats("sales").waiting, 1);
}

#[test]
fn a_new_member_takes_a_waiting_caller_at_once() {
    let mut sim = Sim::new(base());
    sim.status("a", AgentStatus::LoggedOut);
    sim.status("c", AgentStatus::LoggedOut);
    sim.join(1, "support").unwrap();
    sim.no_offer();
    let mut config = base();
    config.queues[1].members.push(Member::new("b", 0));
    sim.reconfigure(config).unwrap();
    assert_eq!(sim.offer(), (1, "b".to_owned()));
}
