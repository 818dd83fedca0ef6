//! A fake clock and a recorder of the engine's decisions.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use acd_engine::*;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn agents(ids: &[&str]) -> Vec<AgentConfig> {
    ids.iter().map(|id| AgentConfig::new(id)).collect()
}

pub fn config(queues: Vec<QueueConfig>, agents: Vec<AgentConfig>) -> AcdConfig {
    AcdConfig { queues, agents, seed: Some(7), ..AcdConfig::default() }
}

/// One queue "q" over the given agents, penalty 0, in that order.
pub fn one_queue(strategy: StrategyKind, ids: &[&str]) -> QueueConfig {
    let members: Vec<(&str, u32)> = ids.iter().map(|id| (*id, 0)).collect();
    QueueConfig::new("q", strategy, &members)
}

pub struct Sim {
    pub engine: Engine,
    pub t0: Instant,
    pub now: Instant,
    /// Every action taken so far, in order.
    pub log: Vec<Action>,
    /// Actions not yet looked at by a test.
    pub pending: Vec<Action>,
}

impl Sim {
    pub fn new(config: AcdConfig) -> Sim {
        let t0 = Instant::now();
        let mut engine = Engine::new(config).expect("valid config");
        engine.handle_timeout(t0);
        let mut sim = Sim { engine, t0, now: t0, log: Vec::new(), pending: Vec::new() };
        sim.collect();
        sim
    }

    pub fn queue(queue: QueueConfig, ids: &[&str]) -> Sim {
        Sim::new(config(vec![queue], agents(ids)))
    }

    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn collect(&mut self) {
        let actions: Vec<Action> = self.engine.drain_actions().collect();
        if std::env::var_os("ACD_TRACE").is_some() {
            for action in &actions {
                eprintln!("{:>9?} {action:?}", self.now - self.t0);
            }
        }
        if let Err(problem) = self.engine.check_invariants() {
            panic!("invariant broken at {:?}: {problem}", self.now - self.t0);
        }
        self.log.extend(actions.iter().cloned());
        self.pending.extend(actions);
    }

    /// Moves the clock to `ms`, firing every timer due on the way in order.
    pub fn to(&mut self, ms: u64) {
        let target = self.at(ms);
        while let Some(at) = self.engine.poll_timeout() {
            if at > target {
                break;
            }
            self.now = at;
            self.engine.handle_timeout(at);
            self.collect();
        }
        self.now = target;
        self.engine.handle_timeout(target);
        self.collect();
    }

    pub fn join(&mut self, call: u64, queue: &str) -> Result<(), JoinRefused> {
        self.join_with(call, queue, CallerInfo::default())
    }

    pub fn join_with(&mut self, call: u64, queue: &str, info: CallerInfo) -> Result<(), JoinRefused> {
        let result = self.engine.caller_join(CallId(call), queue, info, self.now);
        self.collect();
        result
    }

    pub fn leave(&mut self, call: u64, reason: LeaveReason) {
        self.engine.caller_leave(CallId(call), reason, self.now);
        self.collect();
    }

    pub fn result(&mut self, call: u64, agent: &str, result: OfferResult) {
        self.engine.offer_result(CallId(call), agent, result, self.now);
        self.collect();
    }

    pub fn answer(&mut self, call: u64, agent: &str) {
        self.result(call, agent, OfferResult::Answered);
    }

    pub fn end(&mut self, call: u64, by: EndedBy) {
        self.engine.call_ended(CallId(call), by, self.now);
        self.collect();
    }

    pub fn status(&mut self, agent: &str, status: AgentStatus) {
        self.engine.set_status(agent, status, self.now).expect("known agent");
        self.collect();
    }

    /// Sets a status that may be refused (an agent not in the configuration).
    pub fn try_status(&mut self, agent: &str, status: AgentStatus) -> Result<(), UnknownAgent> {
        let result = self.engine.set_status(agent, status, self.now);
        self.collect();
        result
    }

    pub fn device(&mut self, agent: &str, registered: bool, busy: bool) {
        self.engine.device_state(agent, DeviceState { registered, busy }, self.now);
        self.collect();
    }

    pub fn router(&mut self, call: u64, agent: Option<&str>) {
        self.engine.router_answer(CallId(call), agent, self.now);
        self.collect();
    }

    pub fn reconfigure(&mut self, config: AcdConfig) -> Result<(), ConfigError> {
        let result = self.engine.reconfigure(config, self.now);
        self.collect();
        result
    }

    pub fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.pending)
    }

    /// The offers made since the last look, as (call, agent).
    pub fn offers(&mut self) -> Vec<(u64, String)> {
        self.take()
            .into_iter()
            .filter_map(|action| match action {
                Action::Offer { call, agent, .. } => Some((call.0, agent)),
                _ => None,
            })
            .collect()
    }

    /// The one offer made since the last look.
    pub fn offer(&mut self) -> (u64, String) {
        let offers = self.offers();
        assert_eq!(offers.len(), 1, "expected one offer, got {offers:?}");
        offers.into_iter().next().unwrap()
    }

    pub fn no_offer(&mut self) {
        let offers = self.offers();
        assert!(offers.is_empty(), "expected no offer, got {offers:?}");
    }

    pub fn cancels(&mut self) -> Vec<(u64, String)> {
        self.take()
            .into_iter()
            .filter_map(|action| match action {
                Action::CancelOffer { call, agent } => Some((call.0, agent)),
                _ => None,
            })
            .collect()
    }

    pub fn exits(&mut self) -> Vec<(u64, ExitReason)> {
        self.take()
            .into_iter()
            .filter_map(|action| match action {
                Action::Exit { call, reason, .. } => Some((call.0, reason)),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self) -> Vec<&QueueEvent> {
        self.log
            .iter()
            .filter_map(|action| match action {
                Action::Event(event) => Some(event),
                _ => None,
            })
            .collect()
    }

    pub fn view(&self, agent: &str) -> AgentView {
        self.engine.agent_view(agent).expect("known agent")
    }

    pub fn stats(&self, queue: &str) -> QueueStats {
        self.engine.queue_stats(queue, self.now).expect("known queue")
    }

    /// Takes a call from offer to connection: answer, then clear the pending actions.
    pub fn connect(&mut self, call: u64, agent: &str) {
        self.answer(call, agent);
        self.take();
    }
}
