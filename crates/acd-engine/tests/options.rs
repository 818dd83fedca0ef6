//! Queue options, to the millisecond.

mod common;

use acd_engine::*;
use common::*;

fn single(queue: QueueConfig) -> Sim {
    Sim::queue(queue, &["a"])
}

#[test]
fn wrap_up_ending_at_10_s_is_not_offered_at_9_999_but_at_10() {
    let mut sim = single(QueueConfig { wrap_up: secs(5), ..one_queue(StrategyKind::Linear, &["a"]) });
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.to(5_000);
    sim.end(1, EndedBy::Caller);
    assert_eq!(sim.view("a").state, AgentState::WrapUp { until: sim.at(10_000) });
    assert_eq!(sim.view("a").presented, PresentedState::WrapUp);
    sim.to(6_000);
    sim.join(2, "q").unwrap();
    sim.to(9_999);
    sim.no_offer();
    sim.to(10_000);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn an_agents_own_wrap_up_overrides_the_queues() {
    let queue = QueueConfig { wrap_up: secs(5), ..one_queue(StrategyKind::Linear, &["a"]) };
    let agent = AgentConfig { wrap_up: Some(secs(1)), ..AgentConfig::new("a") };
    let mut sim = Sim::new(config(vec![queue], vec![agent]));
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.join(2, "q").unwrap();
    sim.end(1, EndedBy::Agent);
    sim.to(999);
    sim.no_offer();
    sim.to(1_000);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn ring_timeout_cancels_exactly_on_time_and_counts_a_no_answer() {
    let mut sim = single(QueueConfig { ring_timeout: secs(15), ..one_queue(StrategyKind::Linear, &["a"]) });
    sim.join(1, "q").unwrap();
    sim.offer();
    sim.to(14_999);
    assert!(sim.cancels().is_empty());
    assert_eq!(sim.view("a").state, AgentState::Offered(CallId(1)));
    sim.to(15_000);
    assert_eq!(sim.cancels(), vec![(1, "a".to_owned())]);
    assert_eq!(sim.view("a").state, AgentState::Idle);
    assert_eq!(sim.stats("q").no_answer, 1);
    assert_eq!(sim.view("a").no_answer_streak, 1);
}

#[test]
fn retry_delay_separates_rounds() {
    let queue = QueueConfig { retry: secs(5), no_answer_delay: ms(0), ..one_queue(StrategyKind::Linear, &["a"]) };
    let mut sim = single(queue);
    sim.join(1, "q").unwrap();
    sim.offer();
    sim.to(15_000);
    sim.to(19_999);
    sim.no_offer();
    sim.to(20_000);
    let offers = sim.take();
    assert!(
        offers.iter().any(|a| matches!(a, Action::Offer { attempt: 2, waited, .. } if *waited == secs(20))),
        "{offers:?}"
    );
}

#[test]
fn reoffer_delays_depend_on_the_outcome() {
    let queue = QueueConfig {
        retry: ms(0),
        reject_delay: secs(3),
        busy_delay: secs(7),
        no_answer_delay: secs(11),
        ..one_queue(StrategyKind::Linear, &["a"])
    };
    let mut sim = single(queue);
    let mut t = 0;
    for (result, delay) in [
        (OfferResult::Rejected, 3_000),
        (OfferResult::Busy, 7_000),
        (OfferResult::Failed, 7_000),
        (OfferResult::NoAnswer, 11_000),
    ] {
        sim.join(1, "q").unwrap_or(());
        assert_eq!(sim.offer(), (1, "a".to_owned()), "{result:?}");
        sim.result(1, "a", result);
        assert_eq!(sim.view("a").not_before, Some(sim.at(t + delay)), "{result:?}");
        sim.to(t + delay - 1);
        sim.no_offer();
        t += delay;
        sim.to(t);
    }
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    let stats = sim.stats("q");
    assert_eq!((stats.rejected, stats.busy, stats.no_answer), (1, 2, 1));
}

#[test]
fn max_no_answer_pauses_the_agent_after_that_many_in_a_row() {
    let queue = QueueConfig {
        max_no_answer: 2,
        retry: ms(0),
        reject_delay: ms(0),
        no_answer_delay: ms(0),
        ..one_queue(StrategyKind::Linear, &["a"])
    };
    let mut sim = single(queue);
    sim.join(1, "q").unwrap();
    sim.offer();
    sim.result(1, "a", OfferResult::NoAnswer);
    sim.offer();
    sim.result(1, "a", OfferResult::Rejected); // neither counts nor resets
    sim.offer();
    sim.connect(1, "a"); // an answer resets the streak
    sim.end(1, EndedBy::Agent);
    sim.join(2, "q").unwrap();
    sim.offer();
    sim.result(2, "a", OfferResult::NoAnswer);
    sim.offer();
    assert_eq!(sim.view("a").status, AgentStatus::Available);
    sim.to(15_000); // ring timeout: the second in a row
    assert_eq!(sim.view("a").status, AgentStatus::OnBreak(MAX_NO_ANSWER_REASON.to_owned()));
    assert_eq!(sim.view("a").presented, PresentedState::Paused(MAX_NO_ANSWER_REASON.to_owned()));
    assert!(
        sim.events().iter().any(|e| e.agent.as_deref() == Some("a")
            && e.kind == EventKind::Pause { reason: MAX_NO_ANSWER_REASON.to_owned() })
    );
    sim.to(60_000);
    sim.no_offer();
    sim.status("a", AgentStatus::Available);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn higher_priority_first_then_first_come_first_served() {
    let mut sim = single(one_queue(StrategyKind::Linear, &["a"]));
    sim.status("a", AgentStatus::OnBreak("x".into()));
    for (call, priority) in [(1, 0), (2, 0), (3, 5), (4, 5), (5, 1)] {
        sim.to(call * 1_000);
        sim.join_with(call, "q", CallerInfo { priority, skills: vec![] }).unwrap();
    }
    let positions: Vec<usize> = (1..=5).map(|c| sim.engine.caller_position(CallId(c)).unwrap().1).collect();
    assert_eq!(positions, [4, 5, 1, 2, 3]);
    sim.status("a", AgentStatus::Available);
    let mut order = Vec::new();
    for _ in 0..5 {
        let (call, _) = sim.offer();
        order.push(call);
        sim.connect(call, "a");
        sim.end(call, EndedBy::Agent);
    }
    assert_eq!(order, [3, 4, 5, 1, 2]);
}

#[test]
fn higher_penalty_tiers_ring_only_when_lower_ones_are_unavailable() {
    let queue = QueueConfig::new("q", StrategyKind::Linear, &[("b", 1), ("a", 0)]);
    let mut sim = Sim::queue(queue, &["a", "b"]);
    sim.join(1, "q").unwrap();
    assert_eq!(sim.offer(), (1, "a".to_owned()), "penalty 0 before 1, whatever the order");
    sim.join(2, "q").unwrap();
    assert_eq!(sim.offer(), (2, "b".to_owned()), "a is ringing");
}

#[test]
fn tier_wait_opens_penalty_p_after_p_times_the_wait() {
    let queue = QueueConfig {
        tier_wait: Some(secs(10)),
        ring_timeout: secs(60),
        ..QueueConfig::new("q", StrategyKind::Linear, &[("a", 0), ("b", 2), ("c", 3)])
    };
    let mut sim = Sim::queue(queue, &["a", "b", "c"]);
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();
    sim.to(19_999);
    sim.no_offer();
    sim.to(20_000);
    assert_eq!(sim.offer(), (1, "b".to_owned()));
    sim.to(25_000);
    sim.join(2, "q").unwrap();
    sim.to(54_999);
    sim.no_offer();
    sim.to(55_000); // 30 s after joining: tier 3 opens
    assert_eq!(sim.offer(), (2, "c".to_owned()));
}

#[test]
fn tier_wait_also_applies_when_the_agent_frees_up() {
    let queue =
        QueueConfig { tier_wait: Some(secs(10)), ..QueueConfig::new("q", StrategyKind::Linear, &[("a", 0), ("b", 1)]) };
    let mut sim = Sim::queue(queue, &["a", "b"]);
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.status("b", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();
    sim.to(5_000);
    sim.status("b", AgentStatus::Available);
    sim.no_offer();
    sim.to(10_000);
    assert_eq!(sim.offer(), (1, "b".to_owned()));
}

fn two_queues(longest_waiting_across_queues: bool) -> Sim {
    let low = QueueConfig { weight: 1, ..one_queue(StrategyKind::Linear, &["a"]) };
    let low = QueueConfig { name: "low".into(), ..low };
    let high = QueueConfig { name: "high".into(), weight: 5, ..one_queue(StrategyKind::Linear, &["a"]) };
    let config = AcdConfig { longest_waiting_across_queues, ..config(vec![low, high], agents(&["a"])) };
    let mut sim = Sim::new(config);
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "low").unwrap();
    sim.to(1_000);
    sim.join(2, "high").unwrap();
    sim.status("a", AgentStatus::Available);
    sim
}

#[test]
fn an_agent_in_several_queues_takes_the_heavier_queues_caller_first() {
    let mut sim = two_queues(false);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn longest_waiting_across_queues_takes_the_oldest_caller() {
    let mut sim = two_queues(true);
    assert_eq!(sim.offer(), (1, "a".to_owned()));
}

#[test]
fn longest_waiting_across_queues_breaks_ties_by_weight_and_puts_priority_first() {
    let low = QueueConfig { name: "low".into(), weight: 1, ..one_queue(StrategyKind::Linear, &["a"]) };
    let high = QueueConfig { name: "high".into(), weight: 5, ..one_queue(StrategyKind::Linear, &["a"]) };
    let config = AcdConfig { longest_waiting_across_queues: true, ..config(vec![low, high], agents(&["a"])) };
    let mut sim = Sim::new(config);
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "low").unwrap();
    sim.join(2, "high").unwrap(); // same instant
    sim.to(1_000);
    sim.join_with(3, "low", CallerInfo { priority: 9, skills: vec![] }).unwrap();
    sim.status("a", AgentStatus::Available);
    let mut order = Vec::new();
    for _ in 0..3 {
        let (call, _) = sim.offer();
        order.push(call);
        sim.connect(call, "a");
        sim.end(call, EndedBy::Agent);
    }
    assert_eq!(order, [3, 2, 1]);
}

#[test]
fn a_full_queue_refuses_callers() {
    let mut sim = single(QueueConfig { max_callers: Some(2), ..one_queue(StrategyKind::Linear, &["a"]) });
    sim.status("a", AgentStatus::LoggedOut);
    sim.join(1, "q").unwrap();
    sim.join(2, "q").unwrap();
    assert_eq!(sim.join(3, "q"), Err(JoinRefused::Full("q".into())));
    sim.leave(1, LeaveReason::Abandon);
    sim.join(3, "q").unwrap();
    assert_eq!(sim.join(3, "q"), Err(JoinRefused::AlreadyQueued(CallId(3))));
    assert_eq!(sim.join(4, "nope"), Err(JoinRefused::UnknownQueue("nope".into())));
}

#[test]
fn the_engine_wide_limit_refuses_callers_too() {
    let config =
        AcdConfig { max_waiting_total: 1, ..config(vec![one_queue(StrategyKind::Linear, &["a"])], agents(&["a"])) };
    let mut sim = Sim::new(config);
    sim.status("a", AgentStatus::LoggedOut);
    sim.join(1, "q").unwrap();
    assert_eq!(sim.join(2, "q"), Err(JoinRefused::Full("q".into())));
}

#[test]
fn join_when_empty_rules() {
    let queue = |rule| QueueConfig { join_when_empty: rule, ..one_queue(StrategyKind::Linear, &["a"]) };
    let mut sim = single(queue(JoinRule::Always));
    sim.status("a", AgentStatus::LoggedOut);
    sim.join(1, "q").unwrap();

    let mut sim = single(queue(JoinRule::UnlessNoneLoggedIn));
    sim.status("a", AgentStatus::LoggedOut);
    assert_eq!(sim.join(1, "q"), Err(JoinRefused::Empty("q".into())));
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();

    let mut sim = single(queue(JoinRule::UnlessNoneAvailable));
    sim.status("a", AgentStatus::OnBreak("x".into()));
    assert_eq!(sim.join(1, "q"), Err(JoinRefused::Empty("q".into())));
    sim.status("a", AgentStatus::Available);
    sim.join(1, "q").unwrap();
}

#[test]
fn leave_when_none_logged_in_sends_waiting_callers_out() {
    let queue =
        QueueConfig { leave_when_empty: LeaveRule::WhenNoneLoggedIn, ..one_queue(StrategyKind::Linear, &["a", "b"]) };
    let mut sim = Sim::queue(queue, &["a", "b"]);
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.join(2, "q").unwrap();
    sim.connect(2, "b");
    sim.join(3, "q").unwrap();
    sim.join(4, "q").unwrap();
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.status("a", AgentStatus::LoggedOut);
    assert!(sim.exits().is_empty());
    sim.status("b", AgentStatus::LoggedOut);
    assert_eq!(sim.exits(), vec![(3, ExitReason::Empty), (4, ExitReason::Empty)]);
    assert_eq!(sim.stats("q").exited_empty, 2);
    assert_eq!(sim.engine.connected_calls(), 2, "calls in progress go on");
    assert_eq!(sim.join(5, "q"), Err(JoinRefused::Empty("q".into())));
}

#[test]
fn leave_when_none_available_counts_a_break_as_empty() {
    let queue =
        QueueConfig { leave_when_empty: LeaveRule::WhenNoneAvailable, ..one_queue(StrategyKind::Linear, &["a"]) };
    let mut sim = single(queue);
    sim.join(1, "q").unwrap();
    sim.offer();
    sim.join(2, "q").unwrap();
    sim.status("a", AgentStatus::OnBreak("x".into()));
    let actions = sim.take();
    let exits: Vec<_> = actions.iter().filter(|a| matches!(a, Action::Exit { .. })).collect();
    assert_eq!(exits.len(), 2);
    assert!(actions.contains(&Action::CancelOffer { call: CallId(1), agent: "a".into() }));
    assert_eq!(sim.view("a").state, AgentState::Idle);
}

#[test]
fn max_wait_exits_exactly_on_time_and_stops_the_ringing() {
    let queue = QueueConfig { max_wait: Some(secs(30)), ..one_queue(StrategyKind::Linear, &["a"]) };
    let mut sim = single(queue);
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();
    sim.to(20_000);
    sim.status("a", AgentStatus::Available);
    sim.offer();
    sim.to(29_999);
    assert!(sim.exits().is_empty());
    sim.to(30_000);
    let actions = sim.take();
    assert!(actions.contains(&Action::CancelOffer { call: CallId(1), agent: "a".into() }), "{actions:?}");
    assert!(actions.contains(&Action::Exit { call: CallId(1), queue: "q".into(), reason: ExitReason::MaxWait }));
    assert_eq!(sim.stats("q").timed_out, 1);
    assert_eq!(sim.view("a").state, AgentState::Idle);
    assert_eq!(sim.view("a").not_before, None, "the agent did nothing wrong");
}

fn announcements(actions: &[Action]) -> Vec<(u64, usize, Option<std::time::Duration>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Announce { call, position, estimated_wait, .. } => Some((call.0, *position, *estimated_wait)),
            _ => None,
        })
        .collect()
}

#[test]
fn announcements_come_every_interval_with_the_current_position() {
    let queue = QueueConfig { announce_every: Some(secs(30)), ..one_queue(StrategyKind::Linear, &["a"]) };
    let mut sim = single(queue);
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();
    sim.to(1_000);
    sim.join(2, "q").unwrap();
    sim.to(2_000);
    sim.join(3, "q").unwrap();
    sim.to(29_999);
    assert!(announcements(&sim.take()).is_empty());
    sim.to(30_000);
    assert_eq!(announcements(&sim.take()), vec![(1, 1, None)]);
    sim.to(31_000);
    assert_eq!(announcements(&sim.take()), vec![(2, 2, None)]);
    sim.leave(1, LeaveReason::Abandon);
    sim.to(32_000);
    assert_eq!(announcements(&sim.take()), vec![(3, 2, None)]);
    sim.to(61_000);
    assert_eq!(announcements(&sim.take()), vec![(2, 1, None)]);
}

#[test]
fn estimated_wait_is_position_times_handle_time_over_logged_in_agents() {
    let queue = QueueConfig {
        announce_every: Some(secs(30)),
        wrap_up: secs(20),
        ..one_queue(StrategyKind::Linear, &["a", "b"])
    };
    let mut sim = Sim::queue(queue, &["a", "b"]);
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.to(100_000);
    sim.end(1, EndedBy::Caller); // talk 100 s + wrap-up 20 s
    sim.status("b", AgentStatus::OnBreak("x".into()));
    sim.to(101_000);
    sim.join(2, "q").unwrap();
    sim.join(3, "q").unwrap();
    sim.to(101_000 + 30_000);
    // Caller 2 rings a (its wrap-up ended at 120 s): no announcement while ringing.
    // Caller 3: position 2 × AHT 120 s ÷ 2 logged in (a, and b on break).
    let said = announcements(&sim.take());
    assert_eq!(said, vec![(3, 2, Some(secs(120)))]);
    assert_eq!(sim.stats("q").average_handle_time, Some(secs(120)));
}

#[test]
fn stats_service_level_speed_of_answer_handle_time_and_abandons() {
    let queue = QueueConfig { service_level: secs(20), wrap_up: secs(10), ..one_queue(StrategyKind::Linear, &["a"]) };
    let mut sim = single(queue);
    sim.join(1, "q").unwrap();
    sim.to(10_000);
    sim.connect(1, "a"); // waited 10 s
    sim.join(2, "q").unwrap();
    sim.join(3, "q").unwrap();
    sim.to(15_000);
    sim.leave(3, LeaveReason::Abandon);
    sim.to(40_000);
    let live = sim.stats("q");
    assert_eq!((live.waiting, live.longest_wait), (1, secs(30)));
    assert_eq!(live.agents.on_call, 1);
    sim.end(1, EndedBy::Agent); // talk 30 s
    sim.to(50_000);
    sim.offer();
    sim.connect(2, "a"); // waited 40 s
    sim.to(60_000);
    sim.end(2, EndedBy::Caller); // talk 10 s
    let stats = sim.stats("q");
    assert_eq!((stats.entered, stats.answered, stats.abandoned, stats.completed), (3, 2, 1, 2));
    assert_eq!(stats.service_level, Some(50.0));
    assert_eq!(stats.average_speed_of_answer, Some(secs(25)));
    assert_eq!(stats.average_handle_time, Some(secs(30)), "(30 + 10 + 10 + 10) / 2");
    assert_eq!(stats.agents.wrap_up, 1);
    assert_eq!(stats.offered, 2);
}

#[test]
fn unregistered_or_busy_agents_are_not_offered_unless_ring_in_use() {
    let mut sim = single(one_queue(StrategyKind::Linear, &["a"]));
    sim.device("a", false, false);
    sim.join(1, "q").unwrap();
    sim.no_offer();
    sim.device("a", true, true);
    sim.no_offer();
    sim.device("a", true, false);
    assert_eq!(sim.offer(), (1, "a".to_owned()));

    let mut sim = single(QueueConfig { ring_in_use: true, ..one_queue(StrategyKind::Linear, &["a"]) });
    sim.device("a", true, true);
    sim.join(1, "q").unwrap();
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.device("nobody", true, true); // not an agent: ignored
}

#[test]
fn a_caller_hanging_up_while_ringing_stops_the_ringing() {
    let mut sim = Sim::queue(one_queue(StrategyKind::RingAll, &["a", "b"]), &["a", "b"]);
    sim.join(1, "q").unwrap();
    sim.take();
    sim.to(3_000);
    sim.leave(1, LeaveReason::Abandon);
    let mut cancels = sim.cancels();
    cancels.sort();
    assert_eq!(cancels, vec![(1, "a".to_owned()), (1, "b".to_owned())]);
    assert_eq!(sim.view("a").state, AgentState::Idle);
    assert_eq!(sim.stats("q").abandoned, 1);
    let abandon = sim.events().into_iter().find(|e| matches!(e.kind, EventKind::Abandon { .. })).unwrap();
    assert_eq!(abandon.kind, EventKind::Abandon { position: 1, waited: secs(3) });
    sim.result(1, "a", OfferResult::Answered); // late: ignored
    assert_eq!(sim.engine.connected_calls(), 0);
}

#[test]
fn exit_by_key_is_counted_apart() {
    let mut sim = single(one_queue(StrategyKind::Linear, &["a"]));
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q").unwrap();
    sim.leave(1, LeaveReason::Key);
    let stats = sim.stats("q");
    assert_eq!((stats.exited_by_key, stats.abandoned, stats.waiting), (1, 0, 0));
}
