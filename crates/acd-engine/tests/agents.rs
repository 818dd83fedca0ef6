//! Agents: their own status apart from the engine's state, and neither stuck by the other.

mod common;

use acd_engine::*;
use common::*;

fn sim() -> Sim {
    let queue = QueueConfig { wrap_up: secs(10), ..one_queue(StrategyKind::Linear, &["a", "b"]) };
    Sim::queue(queue, &["a", "b"])
}

#[test]
fn configured_members_start_available_and_registered() {
    let sim = sim();
    let view = sim.view("a");
    assert_eq!(view.status, AgentStatus::Available);
    assert_eq!(view.state, AgentState::Idle);
    assert_eq!(view.presented, PresentedState::Available);
    assert_eq!(view.device, DeviceState { registered: true, busy: false });
    assert_eq!(view.queues, vec![("q".to_owned(), 0)]);
    assert_eq!(sim.stats("q").agents.available, 2);
}

#[test]
fn presented_state_follows_the_call_then_the_status() {
    let mut sim = sim();
    sim.status("b", AgentStatus::OnBreak("lunch".into()));
    assert_eq!(sim.view("b").presented, PresentedState::Paused("lunch".into()));
    sim.join(1, "q").unwrap();
    assert_eq!(sim.view("a").presented, PresentedState::Offered);
    sim.connect(1, "a");
    assert_eq!(sim.view("a").presented, PresentedState::OnCall);
    assert_eq!(sim.view("a").calls_taken, 1);
    sim.end(1, EndedBy::Agent);
    assert_eq!(sim.view("a").presented, PresentedState::WrapUp);
    sim.status("a", AgentStatus::LoggedOut);
    assert_eq!(sim.view("a").presented, PresentedState::WrapUp, "what the agent does shows first");
    sim.to(10_000);
    assert_eq!(sim.view("a").presented, PresentedState::LoggedOut);
    let counts = sim.stats("q").agents;
    assert_eq!((counts.logged_out, counts.paused), (1, 1));
}

#[test]
fn logging_out_on_a_call_keeps_the_call_and_stops_the_offers() {
    let mut sim = sim();
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.status("a", AgentStatus::LoggedOut);
    assert_eq!(sim.view("a").state, AgentState::OnCall(CallId(1)));
    sim.status("b", AgentStatus::OnBreak("x".into()));
    sim.join(2, "q").unwrap();
    sim.to(60_000);
    sim.end(1, EndedBy::Caller);
    sim.to(120_000);
    sim.no_offer();
    assert_eq!(sim.view("a").state, AgentState::Idle);
    assert_eq!(sim.stats("q").completed, 1);
    sim.status("a", AgentStatus::Available);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn a_break_during_wrap_up_outlasts_it_and_unpausing_offers_at_once() {
    let mut sim = sim();
    sim.status("b", AgentStatus::LoggedOut);
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.end(1, EndedBy::Agent);
    sim.status("a", AgentStatus::OnBreak("coffee".into()));
    sim.join(2, "q").unwrap();
    sim.to(10_000);
    assert_eq!(sim.view("a").state, AgentState::Idle);
    sim.to(30_000);
    sim.no_offer();
    sim.status("a", AgentStatus::Available);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn unpausing_during_wrap_up_waits_for_its_end() {
    let mut sim = sim();
    sim.status("b", AgentStatus::LoggedOut);
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.end(1, EndedBy::Agent);
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(2, "q").unwrap();
    sim.to(5_000);
    sim.status("a", AgentStatus::Available);
    sim.no_offer();
    sim.to(10_000);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn logging_out_while_ringing_withdraws_the_offer_and_the_caller_goes_on() {
    let mut sim = sim();
    sim.join(1, "q").unwrap();
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.status("a", AgentStatus::LoggedOut);
    let actions = sim.take();
    assert!(actions.contains(&Action::CancelOffer { call: CallId(1), agent: "a".into() }));
    assert!(
        actions.iter().any(|a| matches!(a, Action::Offer { agent, .. } if agent == "b")),
        "offered on at once, without a retry delay: {actions:?}"
    );
    assert_eq!(sim.view("a").not_before, None);
}

#[test]
fn a_break_while_ringing_lets_the_phone_ring_and_be_answered() {
    let mut sim = sim();
    sim.join(1, "q").unwrap();
    sim.offer();
    sim.status("a", AgentStatus::OnBreak("x".into()));
    assert_eq!(sim.view("a").state, AgentState::Offered(CallId(1)));
    sim.answer(1, "a");
    assert_eq!(sim.view("a").state, AgentState::OnCall(CallId(1)));
    sim.end(1, EndedBy::Caller);
    sim.to(10_000);
    sim.join(2, "q").unwrap();
    assert_eq!(sim.offer(), (2, "b".to_owned()));
}

#[test]
fn unregistering_while_on_a_call_keeps_the_call() {
    let mut sim = sim();
    sim.join(1, "q").unwrap();
    sim.connect(1, "a");
    sim.device("a", false, false);
    sim.end(1, EndedBy::Agent);
    sim.to(10_000);
    assert_eq!(sim.view("a").state, AgentState::Idle);
    sim.status("b", AgentStatus::LoggedOut);
    sim.join(2, "q").unwrap();
    sim.no_offer();
    sim.device("a", true, false);
    assert_eq!(sim.offer(), (2, "a".to_owned()));
}

#[test]
fn status_events_are_logged() {
    let mut sim = sim();
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.status("a", AgentStatus::Available);
    sim.status("a", AgentStatus::LoggedOut);
    sim.status("a", AgentStatus::Available);
    let kinds: Vec<EventKind> = sim.events().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![EventKind::Pause { reason: "x".into() }, EventKind::Unpause, EventKind::Logout, EventKind::Login]
    );
    assert!(sim.events().iter().all(|e| e.agent.as_deref() == Some("a") && e.queue.is_none()));
}

#[test]
fn unknown_agents_are_named_in_the_error() {
    let mut sim = sim();
    let err = sim.engine.set_status("9999", AgentStatus::Available, sim.now).unwrap_err();
    assert_eq!(err.to_string(), "no agent \"9999\"");
    assert!(sim.engine.agent_view("9999").is_none());
}

#[test]
fn an_agent_in_two_queues_pauses_in_both() {
    let q1 = QueueConfig { name: "q1".into(), ..one_queue(StrategyKind::Linear, &["a"]) };
    let q2 = QueueConfig { name: "q2".into(), ..one_queue(StrategyKind::Linear, &["a"]) };
    let mut sim = Sim::new(config(vec![q1, q2], agents(&["a"])));
    sim.status("a", AgentStatus::OnBreak("x".into()));
    sim.join(1, "q1").unwrap();
    sim.join(2, "q2").unwrap();
    sim.no_offer();
    assert_eq!(sim.stats("q2").agents.paused, 1);
    sim.status("a", AgentStatus::Available);
    assert_eq!(sim.offer(), (1, "a".to_owned()));
    sim.connect(1, "a");
    sim.join(3, "q1").unwrap();
    sim.no_offer();
    sim.end(1, EndedBy::Agent);
    assert_eq!(sim.offer(), (2, "a".to_owned()), "q2's caller waited longer; equal weights");
}
