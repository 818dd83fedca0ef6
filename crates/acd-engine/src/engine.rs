//! The engine: queues, agents, callers and timers, driven by events with an explicit
//! `now`. See the crate docs for the rules it follows.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::ops::Bound;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::config::{AcdConfig, ConfigError, JoinRule, LeaveRule, QueueConfig};
use crate::positions::Positions;
use crate::ready::ReadyCallers;
use crate::strategy::{self, Candidates, FreeMembers, MemberFacts, MemberId, OrderKey, Ring, Strategy};
use crate::types::*;

/// The reason an automatic pause gives.
pub const MAX_NO_ANSWER_REASON: &str = "max-no-answer";

/// Distinct skill names the engine keeps (agents' and callers'); past it, a caller's
/// unknown skill is one no agent has.
const MAX_SKILLS: usize = 4096;

type AgentIdx = u32;
type QueueIdx = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SkillId(pub(crate) u16);

/// Room the callers' table gets once it is large (or `max_waiting_total`, if lower):
/// 4.5 MB. A table that grows, or that is over half full when the churn of joins and
/// leaves has used up its spare room, rehashes every entry within one join (3.5 ms at
/// 100,000 callers). With this room, up to about 100,000 waiting callers it neither
/// grows nor, in practice, fills up.
const CALLERS_ROOM: usize = 1 << 17;

/// Entries at which a table gets all its room at once (a rehash of this many takes
/// about 0.1 ms). Below, it grows step by step and stays small: the few callers of a
/// small engine spread over megabytes would each cost cache misses and, at first, a
/// page fault.
const ROOM_AT: usize = 4096;

/// A skill no agent has.
const NO_SUCH_SKILL: SkillId = SkillId(u16::MAX);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Caller(CallId),
    Agent(AgentIdx),
}

#[derive(Debug)]
struct Agent {
    id: String,
    /// False once the agent left the configuration; its slot lives on until its call ends.
    defined: bool,
    wrap_up: Option<Duration>,
    skills: Vec<(SkillId, u8)>,
    status: AgentStatus,
    state: AgentState,
    device: DeviceState,
    not_before: Option<Instant>,
    no_answer_streak: u32,
    calls_taken: u64,
    last_call_end: Option<Instant>,
    memberships: Vec<(QueueIdx, MemberId)>,
    /// While the agent is offered a call: where its offer sits in that caller's offers,
    /// so that ending one of many (a ring-all round) finds it at once.
    offer_index: u32,
    timer: Option<Instant>,
}

impl Agent {
    fn has_skills(&self, required: &[SkillId]) -> bool {
        required.iter().all(|skill| self.skills.binary_search_by_key(skill, |&(s, _)| s).is_ok())
    }

    fn skill_score(&self, required: &[SkillId]) -> u32 {
        required
            .iter()
            .filter_map(|skill| self.skills.binary_search_by_key(skill, |&(s, _)| s).ok())
            .map(|i| u32::from(self.skills[i].1))
            .sum()
    }

    fn logged_in(&self) -> bool {
        self.status != AgentStatus::LoggedOut
    }

    fn available(&self) -> bool {
        self.status == AgentStatus::Available
    }
}

#[derive(Debug, Clone, Copy)]
struct QueueMember {
    agent: AgentIdx,
    penalty: u32,
    position: u32,
    id_rank: u32,
    calls: u64,
    talk: Duration,
}

#[derive(Debug, Default, Clone)]
struct Counters {
    entered: u64,
    offered: u64,
    answered: u64,
    answered_in_service_level: u64,
    abandoned: u64,
    timed_out: u64,
    exited_by_key: u64,
    exited_empty: u64,
    no_answer: u64,
    rejected: u64,
    busy: u64,
    completed: u64,
    total_wait_answered: Duration,
    total_talk: Duration,
    total_wrap_up: Duration,
}

impl Counters {
    fn average_handle_time(&self) -> Option<Duration> {
        let calls = u32::try_from(self.completed).ok().filter(|&n| n > 0)?;
        Some((self.total_talk + self.total_wrap_up) / calls)
    }
}

#[derive(Debug)]
struct Queue {
    config: QueueConfig,
    strategy: Box<dyn Strategy>,
    members: Vec<QueueMember>,
    free: FreeMembers,
    ready: ReadyCallers,
    /// Every waiting caller, by join order.
    waiting: BTreeMap<u64, CallId>,
    positions: Positions,
    /// Distinct member penalties, ascending: when tiers open.
    penalties: Vec<u32>,
    logged_in: usize,
    available: usize,
    counters: Counters,
}

impl Queue {
    fn name(&self) -> &str {
        &self.config.name
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// In its queue's ready set, to be offered when an agent fits.
    Ready,
    /// Offers outstanding.
    Ringing,
    /// Between rounds.
    Retry { until: Instant },
    /// Waiting for the router's answer.
    Routing { until: Instant, candidates: Vec<AgentIdx> },
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    agent: AgentIdx,
    started: Instant,
    until: Instant,
}

#[derive(Debug)]
struct Caller {
    queue: QueueIdx,
    priority: u8,
    skills: Box<[SkillId]>,
    joined: Instant,
    seq: u64,
    phase: Phase,
    offers: Vec<Offer>,
    attempt: u32,
    next_announce: Option<Instant>,
    next_progressive: Option<Instant>,
    cursor: Option<OrderKey>,
    /// The router failed for this round: the fallback strategy picks.
    use_fallback: bool,
    timer: Option<Instant>,
}

#[derive(Debug)]
struct Connected {
    agent: AgentIdx,
    queue: Option<QueueIdx>,
    answered: Instant,
    waited: Duration,
}

/// How an offer ended, when not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfferEnd {
    Rejected,
    Busy,
    Failed,
    NoAnswer,
    /// The engine's ring timeout.
    RingTimeout,
    /// Withdrawn by the engine: the caller went, another agent answered, the agent left.
    Withdrawn,
}

/// ACD queues as a state machine. Feed it events with the time they happened; take
/// its decisions with [`Engine::poll_action`]; call [`Engine::handle_timeout`] when
/// [`Engine::poll_timeout`] passes.
#[derive(Debug)]
pub struct Engine {
    agents: Vec<Agent>,
    /// Slots of agents gone from the configuration, for reuse.
    spare_agents: Vec<AgentIdx>,
    agent_ids: HashMap<String, AgentIdx>,
    skills: HashMap<String, SkillId>,
    queues: Vec<Queue>,
    queue_ids: HashMap<String, QueueIdx>,
    /// Boxed, so that growing the table moves 16-byte entries, not the callers: unboxed,
    /// one join at 100,000 waiting took about 40 ms to move them all.
    callers: HashMap<CallId, Box<Caller>>,
    connected: HashMap<CallId, Connected>,
    timers: BTreeSet<(Instant, Timer)>,
    actions: VecDeque<Action>,
    /// Agents that became free and callers that became ready, to match.
    work_agents: Vec<AgentIdx>,
    work_callers: Vec<CallId>,
    rng: SmallRng,
    epoch: Option<Instant>,
    now: Option<Instant>,
    next_seq: u64,
    longest_waiting_across_queues: bool,
    max_waiting_total: usize,
}

impl Engine {
    pub fn new(config: AcdConfig) -> Result<Engine, ConfigError> {
        config.validate()?;
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        let mut engine = Engine {
            agents: Vec::new(),
            spare_agents: Vec::new(),
            agent_ids: HashMap::new(),
            skills: HashMap::new(),
            queues: Vec::new(),
            queue_ids: HashMap::new(),
            callers: HashMap::new(),
            connected: HashMap::new(),
            timers: BTreeSet::new(),
            actions: VecDeque::new(),
            work_agents: Vec::new(),
            work_callers: Vec::new(),
            rng,
            epoch: None,
            now: None,
            next_seq: 0,
            longest_waiting_across_queues: false,
            max_waiting_total: 0,
        };
        engine.apply_config(config, None);
        Ok(engine)
    }

    /// Loads a new configuration. Agents keep their status, state and device; waiting
    /// callers keep their place; queues keep their counters. Callers of a removed queue
    /// get Exit{QueueRemoved}; offers to an agent removed from the configuration are
    /// withdrawn, its connected call runs on.
    pub fn reconfigure(&mut self, config: AcdConfig, now: Instant) -> Result<(), ConfigError> {
        config.validate()?;
        self.advance(now);
        self.apply_config(config, Some(now));
        self.settle(now);
        Ok(())
    }

    pub fn caller_join(
        &mut self,
        call: CallId,
        queue: &str,
        caller: CallerInfo,
        now: Instant,
    ) -> Result<(), JoinRefused> {
        self.advance(now);
        let &q = self.queue_ids.get(queue).ok_or_else(|| JoinRefused::UnknownQueue(queue.to_owned()))?;
        if self.callers.contains_key(&call) || self.connected.contains_key(&call) {
            return Err(JoinRefused::AlreadyQueued(call));
        }
        let queue_ref = &self.queues[q as usize];
        let full = queue_ref.config.max_callers.is_some_and(|max| queue_ref.waiting.len() >= max);
        if full || self.callers.len() >= self.max_waiting_total {
            return Err(JoinRefused::Full(queue.to_owned()));
        }
        let refuse_empty = match queue_ref.config.join_when_empty {
            JoinRule::Always => false,
            JoinRule::UnlessNoneLoggedIn => queue_ref.logged_in == 0,
            JoinRule::UnlessNoneAvailable => queue_ref.available == 0,
        };
        // A caller let into a queue that leave-when-empty would empty at once would wait
        // for nothing: refuse it the same way.
        if refuse_empty || queue_ref.leave_rule_applies() {
            return Err(JoinRefused::Empty(queue.to_owned()));
        }
        let mut skills: Vec<SkillId> = caller.skills.iter().map(|name| self.intern_skill(name)).collect();
        skills.sort_unstable();
        skills.dedup();
        let seq = self.next_seq;
        self.next_seq += 1;
        let queue_ref = &mut self.queues[q as usize];
        let next_announce = queue_ref.config.announce_every.map(|every| now + every);
        let position = queue_ref.positions.insert(caller.priority, seq);
        queue_ref.waiting.insert(seq, call);
        queue_ref.counters.entered += 1;
        let name = queue_ref.name().to_owned();
        make_room(&mut self.callers, self.max_waiting_total.min(CALLERS_ROOM));
        self.callers.insert(
            call,
            Box::new(Caller {
                queue: q,
                priority: caller.priority,
                skills: skills.into_boxed_slice(),
                joined: now,
                seq,
                phase: Phase::Ready,
                offers: Vec::new(),
                attempt: 0,
                next_announce,
                next_progressive: None,
                cursor: None,
                use_fallback: false,
                timer: None,
            }),
        );
        self.add_ready(call);
        self.event(now, Some(name), Some(call), None, EventKind::Enter { position, priority: caller.priority });
        self.work_callers.push(call);
        self.schedule_caller(call, now);
        self.settle(now);
        Ok(())
    }

    /// The caller hung up or pressed the exit key before being connected.
    pub fn caller_leave(&mut self, call: CallId, reason: LeaveReason, now: Instant) {
        self.advance(now);
        if !self.callers.contains_key(&call) {
            return;
        }
        let Some((caller, position)) = self.remove_caller(call) else { return };
        self.cancel_offers(call, &caller, now);
        let queue = &mut self.queues[caller.queue as usize];
        let waited = now.saturating_duration_since(caller.joined);
        let kind = match reason {
            LeaveReason::Abandon => {
                queue.counters.abandoned += 1;
                EventKind::Abandon { position, waited }
            }
            LeaveReason::Key => {
                queue.counters.exited_by_key += 1;
                EventKind::ExitKey { position, waited }
            }
        };
        let name = queue.name().to_owned();
        self.event(now, Some(name), Some(call), None, kind);
        self.settle(now);
    }

    /// What became of an offer. A result for an offer the engine no longer holds (it
    /// sent CancelOffer, or the caller left) is ignored: the switch stops that leg.
    pub fn offer_result(&mut self, call: CallId, agent: &str, result: OfferResult, now: Instant) {
        self.advance(now);
        let Some(&a) = self.agent_ids.get(agent) else { return };
        let Some(caller) = self.callers.get(&call) else { return };
        if self.offer_index(caller, a).is_none() {
            return;
        }
        match result {
            OfferResult::Answered => self.answered(call, a, now),
            OfferResult::Rejected => self.end_offer(call, a, OfferEnd::Rejected, now),
            OfferResult::Busy => self.end_offer(call, a, OfferEnd::Busy, now),
            OfferResult::NoAnswer => self.end_offer(call, a, OfferEnd::NoAnswer, now),
            OfferResult::Failed => self.end_offer(call, a, OfferEnd::Failed, now),
        }
        self.settle(now);
    }

    /// A connected call ended: the agent goes to wrap-up (or straight to idle).
    pub fn call_ended(&mut self, call: CallId, by: EndedBy, now: Instant) {
        self.advance(now);
        let Some(connected) = self.connected.remove(&call) else { return };
        let talk = now.saturating_duration_since(connected.answered);
        let a = connected.agent;
        let agent = &mut self.agents[a as usize];
        let queue_wrap_up = connected.queue.map_or(Duration::ZERO, |q| self.queues[q as usize].config.wrap_up);
        let wrap_up = agent.wrap_up.unwrap_or(queue_wrap_up);
        agent.last_call_end = Some(now);
        if agent.state == AgentState::OnCall(call) {
            agent.state =
                if wrap_up.is_zero() { AgentState::Idle } else { AgentState::WrapUp { until: now + wrap_up } };
        }
        let agent_id = agent.id.clone();
        let membership = agent.memberships.iter().find(|&&(q, _)| Some(q) == connected.queue).copied();
        let mut queue_name = None;
        if let Some(q) = connected.queue {
            let queue = &mut self.queues[q as usize];
            queue.counters.completed += 1;
            queue.counters.total_talk += talk;
            queue.counters.total_wrap_up += wrap_up;
            if let Some((_, m)) = membership {
                queue.members[m.0 as usize].talk += talk;
            }
            queue_name = Some(queue.name().to_owned());
        }
        self.event(
            now,
            queue_name,
            Some(call),
            Some(agent_id),
            EventKind::Complete { by, waited: connected.waited, talk },
        );
        if !self.agents[a as usize].defined {
            self.release_agent_slot(a);
        } else {
            self.refresh_agent(a, now);
        }
        self.settle(now);
    }

    /// The agent's own status; applies to all its queues. Going on break or logging out
    /// never interrupts a call; logging out withdraws a ringing offer, a break lets it
    /// ring on (the agent may still answer).
    pub fn set_status(&mut self, agent: &str, status: AgentStatus, now: Instant) -> Result<(), UnknownAgent> {
        self.advance(now);
        let &a = self
            .agent_ids
            .get(agent)
            .filter(|&&a| self.agents[a as usize].defined)
            .ok_or_else(|| UnknownAgent(agent.to_owned()))?;
        self.change_status(a, status, now);
        self.settle(now);
        Ok(())
    }

    /// Device state from registrations and calls. Unknown ids (phones that are not
    /// agents) are ignored.
    pub fn device_state(&mut self, agent: &str, device: DeviceState, now: Instant) {
        self.advance(now);
        let Some(&a) = self.agent_ids.get(agent) else { return };
        self.agents[a as usize].device = device;
        self.refresh_agent(a, now);
        self.settle(now);
    }

    /// The router's answer to Action::AskRouter. None (the service failed), an agent
    /// that was not a candidate, or one no longer free: the fallback strategy picks.
    pub fn router_answer(&mut self, call: CallId, agent: Option<&str>, now: Instant) {
        self.advance(now);
        let Some(caller) = self.callers.get(&call) else { return };
        let Phase::Routing { candidates, .. } = &caller.phase else { return };
        let q = caller.queue;
        let chosen = agent
            .and_then(|id| self.agent_ids.get(id).copied())
            .filter(|a| candidates.contains(a))
            .and_then(|a| self.agents[a as usize].memberships.iter().find(|&&(mq, _)| mq == q).map(|&(_, m)| (a, m)))
            .filter(|&(a, m)| {
                self.queues[q as usize].free.contains(m) && self.agents[a as usize].has_skills(&caller.skills)
            });
        match chosen {
            Some((_, m)) => {
                self.offer(call, m, now);
            }
            None => self.router_failed(call, now),
        }
        self.settle(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// When [`Engine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// The next decision, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// All decisions since the last call, in order.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    pub fn queue_stats(&self, queue: &str, now: Instant) -> Option<QueueStats> {
        let &q = self.queue_ids.get(queue)?;
        let queue = &self.queues[q as usize];
        let longest_wait = queue
            .waiting
            .values()
            .next()
            .and_then(|call| self.callers.get(call))
            .map_or(Duration::ZERO, |caller| now.saturating_duration_since(caller.joined));
        let mut agents = AgentCounts::default();
        for member in &queue.members {
            match presented(&self.agents[member.agent as usize]) {
                PresentedState::LoggedOut => agents.logged_out += 1,
                PresentedState::Available => agents.available += 1,
                PresentedState::Offered => agents.offered += 1,
                PresentedState::OnCall => agents.on_call += 1,
                PresentedState::WrapUp => agents.wrap_up += 1,
                PresentedState::Paused(_) => agents.paused += 1,
            }
        }
        let c = &queue.counters;
        let answered = u32::try_from(c.answered).ok().filter(|&n| n > 0);
        Some(QueueStats {
            waiting: queue.waiting.len(),
            longest_wait,
            agents,
            entered: c.entered,
            offered: c.offered,
            answered: c.answered,
            abandoned: c.abandoned,
            timed_out: c.timed_out,
            exited_by_key: c.exited_by_key,
            exited_empty: c.exited_empty,
            no_answer: c.no_answer,
            rejected: c.rejected,
            busy: c.busy,
            completed: c.completed,
            service_level: answered.map(|n| c.answered_in_service_level as f64 * 100.0 / f64::from(n)),
            average_speed_of_answer: answered.map(|n| c.total_wait_answered / n),
            average_handle_time: c.average_handle_time(),
        })
    }

    pub fn agent_view(&self, agent: &str) -> Option<AgentView> {
        let &a = self.agent_ids.get(agent)?;
        let agent = &self.agents[a as usize];
        Some(AgentView {
            id: agent.id.clone(),
            status: agent.status.clone(),
            state: agent.state,
            presented: presented(agent),
            device: agent.device,
            calls_taken: agent.calls_taken,
            no_answer_streak: agent.no_answer_streak,
            not_before: agent.not_before.filter(|&t| self.now.is_none_or(|now| t > now)),
            queues: agent
                .memberships
                .iter()
                .map(|&(q, m)| {
                    let queue = &self.queues[q as usize];
                    (queue.name().to_owned(), queue.members[m.0 as usize].penalty)
                })
                .collect(),
        })
    }

    /// The queue a caller waits in, and its 1-based position there.
    pub fn caller_position(&self, call: CallId) -> Option<(&str, usize)> {
        let caller = self.callers.get(&call)?;
        let queue = &self.queues[caller.queue as usize];
        Some((queue.name(), queue.positions.position(caller.priority, caller.seq)))
    }

    /// Callers waiting in all queues.
    pub fn waiting_callers(&self) -> usize {
        self.callers.len()
    }

    /// Calls connected to agents and not yet ended.
    pub fn connected_calls(&self) -> usize {
        self.connected.len()
    }

    // ---- time ----

    /// Runs every timer due at `now`, then matches free agents and ready callers.
    fn advance(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |last| last.max(now)));
        if self.epoch.is_none() {
            // The first event starts the clock: agents enter their queues' free sets.
            self.epoch = Some(now);
            for a in self.agent_slots() {
                self.refresh_agent(a, now);
            }
        }
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Caller(call) => {
                    if let Some(caller) = self.callers.get_mut(&call) {
                        caller.timer = None;
                        self.caller_timer(call, now);
                    }
                }
                Timer::Agent(a) => {
                    self.agents[a as usize].timer = None;
                    self.agent_timer(a, now);
                }
            }
            self.settle(now);
        }
        self.settle(now);
    }

    fn set_timer(&mut self, timer: Timer, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.timers.remove(&(old, timer));
        }
        if let Some(new) = new {
            self.timers.insert((new, timer));
        }
    }

    fn schedule_caller(&mut self, call: CallId, now: Instant) {
        let Some(caller) = self.callers.get(&call) else { return };
        let queue = &self.queues[caller.queue as usize];
        let config = &queue.config;
        let mut next = config.max_wait.map(|max| caller.joined + max);
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        };
        consider(caller.offers.iter().map(|offer| offer.until).min());
        consider(caller.next_announce);
        match &caller.phase {
            Phase::Retry { until } | Phase::Routing { until, .. } => consider(Some(*until)),
            Phase::Ringing => consider(caller.next_progressive),
            Phase::Ready => {
                // The next tier to open for this caller, if tiers wait.
                if let Some(step) = config.tier_wait {
                    let opening = queue
                        .penalties
                        .iter()
                        .filter_map(|&p| step.checked_mul(p).map(|wait| caller.joined + wait))
                        .find(|&at| at > now);
                    consider(opening);
                }
            }
        }
        let old = caller.timer;
        self.callers.get_mut(&call).expect("caller present above").timer = next;
        self.set_timer(Timer::Caller(call), old, next);
    }

    fn schedule_agent(&mut self, a: AgentIdx, now: Instant) {
        let agent = &self.agents[a as usize];
        let wrap_up_end = match agent.state {
            AgentState::WrapUp { until } => Some(until),
            _ => None,
        };
        let delay_end = agent.not_before.filter(|&t| t > now);
        let next = match (wrap_up_end, delay_end) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let old = agent.timer;
        self.agents[a as usize].timer = next;
        self.set_timer(Timer::Agent(a), old, next);
    }

    fn caller_timer(&mut self, call: CallId, now: Instant) {
        let Some(caller) = self.callers.get(&call) else { return };
        let config = &self.queues[caller.queue as usize].config;
        if config.max_wait.is_some_and(|max| caller.joined + max <= now) {
            self.exit_caller(call, ExitReason::MaxWait, now);
            return;
        }
        let expired: Vec<AgentIdx> =
            caller.offers.iter().filter(|offer| offer.until <= now).map(|offer| offer.agent).collect();
        // The caller is scheduled once, below: a round of k offers ends in O(k).
        for a in expired {
            self.close_offer(call, a, OfferEnd::RingTimeout, now);
        }
        let Some(caller) = self.callers.get_mut(&call) else { return };
        match caller.phase {
            Phase::Retry { until } if until <= now => {
                caller.phase = Phase::Ready;
                self.add_ready(call);
                self.work_callers.push(call);
            }
            Phase::Routing { until, .. } if until <= now => self.router_failed(call, now),
            Phase::Ready => self.work_callers.push(call),
            _ => {}
        }
        let Some(caller) = self.callers.get_mut(&call) else { return };
        if caller.phase == Phase::Ringing
            && let Some(at) = caller.next_progressive.filter(|&at| at <= now)
            && let Ring::Progressive(every) = self.queues[caller.queue as usize].strategy.ring()
        {
            caller.next_progressive = Some(at + every);
            if let Some(m) = self.pick(call) {
                self.offer(call, m, now);
            }
        }
        if let Some(caller) = self.callers.get_mut(&call)
            && let Some(mut at) = caller.next_announce.filter(|&at| at <= now)
        {
            let queue = &self.queues[caller.queue as usize];
            let every = queue.config.announce_every.unwrap_or(Duration::MAX);
            while at <= now {
                at = at.checked_add(every).unwrap_or(now + Duration::from_secs(86_400));
            }
            caller.next_announce = Some(at);
            // While an agent's phone rings, the caller is about to be connected: an
            // announcement now would only be cut off. The cadence goes on.
            if caller.phase == Phase::Ringing {
                self.schedule_caller(call, now);
                return;
            }
            let position = queue.positions.position(caller.priority, caller.seq);
            let estimated_wait = estimated_wait(queue, position);
            self.actions.push_back(Action::Announce { call, queue: queue.name().to_owned(), position, estimated_wait });
        }
        self.schedule_caller(call, now);
    }

    fn agent_timer(&mut self, a: AgentIdx, now: Instant) {
        let agent = &mut self.agents[a as usize];
        if let AgentState::WrapUp { until } = agent.state
            && until <= now
        {
            agent.state = AgentState::Idle;
        }
        if agent.not_before.is_some_and(|t| t <= now) {
            agent.not_before = None;
        }
        self.refresh_agent(a, now);
    }

    // ---- agents ----

    fn offerable(&self, a: AgentIdx, q: QueueIdx, now: Instant) -> bool {
        let agent = &self.agents[a as usize];
        agent.defined
            && agent.status == AgentStatus::Available
            && agent.state == AgentState::Idle
            && agent.device.registered
            && (!agent.device.busy || self.queues[q as usize].config.ring_in_use)
            && agent.not_before.is_none_or(|t| t <= now)
    }

    /// Puts the agent in or out of its queues' free sets; queues it enters get a match.
    fn refresh_agent(&mut self, a: AgentIdx, now: Instant) {
        let mut became_free = false;
        for i in 0..self.agents[a as usize].memberships.len() {
            let (q, m) = self.agents[a as usize].memberships[i];
            let should = self.offerable(a, q, now);
            let facts = self.member_facts(q, m);
            let queue = &mut self.queues[q as usize];
            match (should, queue.free.contains(m)) {
                (true, false) => {
                    let key = queue.strategy.order_key(&facts);
                    queue.free.insert(m, facts.penalty, key);
                    became_free = true;
                }
                (false, true) => queue.free.remove(m),
                _ => {}
            }
        }
        if became_free {
            self.work_agents.push(a);
        }
        self.schedule_agent(a, now);
    }

    fn member_facts(&self, q: QueueIdx, m: MemberId) -> MemberFacts {
        let member = self.queues[q as usize].members[m.0 as usize];
        let agent = &self.agents[member.agent as usize];
        let idle_since_ns = match (agent.last_call_end, self.epoch) {
            (Some(end), Some(epoch)) => {
                u64::try_from(end.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX).max(1)
            }
            _ => 0,
        };
        MemberFacts {
            position: member.position,
            id_rank: member.id_rank,
            penalty: member.penalty,
            idle_since_ns,
            calls: member.calls,
            talk_ms: u64::try_from(member.talk.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn change_status(&mut self, a: AgentIdx, status: AgentStatus, now: Instant) {
        let agent = &mut self.agents[a as usize];
        if agent.status == status {
            return;
        }
        let old = std::mem::replace(&mut agent.status, status.clone());
        let (was_in, was_available) = (old != AgentStatus::LoggedOut, old == AgentStatus::Available);
        let (is_in, is_available) = (agent.logged_in(), agent.available());
        for &(q, _) in &agent.memberships {
            let queue = &mut self.queues[q as usize];
            queue.logged_in = queue.logged_in + usize::from(is_in) - usize::from(was_in);
            queue.available = queue.available + usize::from(is_available) - usize::from(was_available);
        }
        let id = agent.id.clone();
        let mut kinds = Vec::new();
        match (&old, &status) {
            (AgentStatus::LoggedOut, _) => kinds.push(EventKind::Login),
            (_, AgentStatus::LoggedOut) => kinds.push(EventKind::Logout),
            _ => {}
        }
        match (&old, &status) {
            (AgentStatus::OnBreak(_), AgentStatus::Available) => kinds.push(EventKind::Unpause),
            (_, AgentStatus::OnBreak(reason)) => kinds.push(EventKind::Pause { reason: reason.clone() }),
            _ => {}
        }
        for kind in kinds {
            self.event(now, None, None, Some(id.clone()), kind);
        }
        if status == AgentStatus::LoggedOut
            && let AgentState::Offered(call) = self.agents[a as usize].state
        {
            self.end_offer(call, a, OfferEnd::Withdrawn, now);
        }
        self.refresh_agent(a, now);
        let queues: Vec<QueueIdx> = self.agents[a as usize].memberships.iter().map(|&(q, _)| q).collect();
        for q in queues {
            self.apply_leave_rule(q, now);
        }
    }

    /// The agents' slots in order, so that what the engine does is reproducible.
    fn agent_slots(&self) -> Vec<AgentIdx> {
        let mut slots: Vec<AgentIdx> = self.agent_ids.values().copied().collect();
        slots.sort_unstable();
        slots
    }

    fn release_agent_slot(&mut self, a: AgentIdx) {
        let agent = &mut self.agents[a as usize];
        if agent.defined || matches!(agent.state, AgentState::OnCall(_) | AgentState::Offered(_)) {
            return;
        }
        if let Some(at) = agent.timer.take() {
            self.timers.remove(&(at, Timer::Agent(a)));
        }
        let id = std::mem::take(&mut agent.id);
        self.agent_ids.remove(&id);
        self.spare_agents.push(a);
    }

    // ---- callers ----

    fn add_ready(&mut self, call: CallId) {
        let Some(caller) = self.callers.get(&call) else { return };
        let queue = &mut self.queues[caller.queue as usize];
        let (agents, members) = (&self.agents, &queue.members);
        let qualifies =
            |m: MemberId, skills: &[SkillId]| agents[members[m.0 as usize].agent as usize].has_skills(skills);
        queue.ready.insert(&caller.skills, (Reverse(caller.priority), caller.seq), call, qualifies);
    }

    fn remove_ready(&mut self, call: CallId) {
        let Some(caller) = self.callers.get(&call) else { return };
        let queue = &mut self.queues[caller.queue as usize];
        queue.ready.remove(&caller.skills, (Reverse(caller.priority), caller.seq));
    }

    /// Takes the caller out of its queue; returns it and the position it had.
    fn remove_caller(&mut self, call: CallId) -> Option<(Caller, usize)> {
        if self.callers.get(&call)?.phase == Phase::Ready {
            self.remove_ready(call);
        }
        let caller = *self.callers.remove(&call)?;
        if let Some(at) = caller.timer {
            self.timers.remove(&(at, Timer::Caller(call)));
        }
        let queue = &mut self.queues[caller.queue as usize];
        // Every waiting caller has a position (see check_invariants).
        let position = queue.positions.remove(caller.priority, caller.seq).unwrap_or(0);
        queue.waiting.remove(&caller.seq);
        Some((caller, position))
    }

    fn exit_caller(&mut self, call: CallId, reason: ExitReason, now: Instant) {
        let Some((caller, position)) = self.remove_caller(call) else { return };
        self.cancel_offers(call, &caller, now);
        let queue = &mut self.queues[caller.queue as usize];
        match reason {
            ExitReason::MaxWait => queue.counters.timed_out += 1,
            ExitReason::Empty => queue.counters.exited_empty += 1,
            ExitReason::QueueRemoved => {}
        }
        let name = queue.name().to_owned();
        let waited = now.saturating_duration_since(caller.joined);
        self.actions.push_back(Action::Exit { call, queue: name.clone(), reason });
        self.event(now, Some(name), Some(call), None, EventKind::Exit { reason, position, waited });
    }

    /// Stops the ringing for a caller that left its queue (answered elsewhere, gone).
    fn cancel_offers(&mut self, call: CallId, caller: &Caller, now: Instant) {
        let queue = self.queues[caller.queue as usize].name().to_owned();
        for offer in &caller.offers {
            let a = offer.agent;
            let agent = &mut self.agents[a as usize];
            if agent.state == AgentState::Offered(call) {
                agent.state = AgentState::Idle;
            }
            let id = agent.id.clone();
            self.actions.push_back(Action::CancelOffer { call, agent: id.clone() });
            self.event(now, Some(queue.clone()), Some(call), Some(id), EventKind::OfferWithdrawn);
            if self.agents[a as usize].defined {
                self.refresh_agent(a, now);
            } else {
                self.release_agent_slot(a);
            }
        }
    }

    fn apply_leave_rule(&mut self, q: QueueIdx, now: Instant) {
        if !self.queues[q as usize].leave_rule_applies() {
            return;
        }
        let calls: Vec<CallId> = self.queues[q as usize].waiting.values().copied().collect();
        for call in calls {
            self.exit_caller(call, ExitReason::Empty, now);
        }
    }

    fn router_failed(&mut self, call: CallId, now: Instant) {
        let Some(caller) = self.callers.get_mut(&call) else { return };
        caller.phase = Phase::Ready;
        caller.use_fallback = true;
        let queue = self.queues[caller.queue as usize].name().to_owned();
        self.add_ready(call);
        self.work_callers.push(call);
        self.event(now, Some(queue), Some(call), None, EventKind::RouterFallback);
        self.schedule_caller(call, now);
    }

    // ---- matching ----

    /// Matches until no free agent fits a ready caller: each freed agent takes the best
    /// caller it may have, then each newly ready caller (best first) its best agent.
    fn settle(&mut self, now: Instant) {
        loop {
            if let Some(a) = self.work_agents.pop() {
                self.match_agent(a, now);
                continue;
            }
            if self.work_callers.is_empty() {
                break;
            }
            let mut calls = std::mem::take(&mut self.work_callers);
            calls.sort_by_key(|call| self.callers.get(call).map(|c| (Reverse(c.priority), c.joined, c.seq)));
            calls.dedup();
            for call in calls {
                self.route_caller(call, now);
            }
        }
    }

    /// The agent is free: offer it the best caller of its queues, until it is not free.
    fn match_agent(&mut self, a: AgentIdx, now: Instant) {
        // Once the router is asked about this agent, callers of router queues wait for
        // that answer (else every one of them would ask about the same agent); callers
        // of other queues may still have it.
        let mut skip_router_queues = false;
        // Each round offers or routes one caller, so this ends; the bound is a guard.
        for _ in 0..=self.callers.len() {
            let Some(call) = self.best_caller_for(a, now, skip_router_queues) else { return };
            self.route_caller(call, now);
            match self.callers.get(&call).map(|c| &c.phase) {
                Some(Phase::Ready) => return,
                Some(Phase::Routing { .. }) => skip_router_queues = true,
                _ => {}
            }
        }
    }

    /// Precedence: queue weight (or, across queues by wait, caller priority then wait),
    /// then caller priority, then wait. Skills and tiers decide who may be taken.
    fn best_caller_for(&self, a: AgentIdx, now: Instant, skip_router_queues: bool) -> Option<CallId> {
        let agent = &self.agents[a as usize];
        // (queue weight first unless ranking across queues by wait, priority, joined,
        // weight as the tie-break, join order)
        type Rank = (Reverse<u32>, Reverse<u8>, Instant, Reverse<u32>, u64);
        let mut best: Option<(Rank, CallId)> = None;
        for &(q, m) in &agent.memberships {
            let queue = &self.queues[q as usize];
            if !queue.free.contains(m) || (skip_router_queues && queue.strategy.asks_router()) {
                continue;
            }
            let penalty = queue.members[m.0 as usize].penalty;
            let tier_open = |joined: Instant| {
                queue.config.tier_wait.is_none_or(|step| {
                    step.checked_mul(penalty).is_some_and(|wait| now.saturating_duration_since(joined) >= wait)
                })
            };
            for class in queue.ready.classes_of(m) {
                // The first caller of each priority is the longest waiting: if its
                // tier is not open yet, no later one's is.
                let mut from = Bound::Unbounded;
                while let Some((&(Reverse(priority), seq), &call)) =
                    class.callers.range((from, Bound::Unbounded)).next()
                {
                    let Some(caller) = self.callers.get(&call) else { break };
                    if tier_open(caller.joined) {
                        let weight = queue.config.weight;
                        let lead = if self.longest_waiting_across_queues { 0 } else { weight };
                        let rank = (Reverse(lead), Reverse(priority), caller.joined, Reverse(weight), seq);
                        if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                            best = Some((rank, call));
                        }
                        break;
                    }
                    if priority == 0 {
                        break;
                    }
                    from = Bound::Excluded((Reverse(priority), u64::MAX));
                }
            }
        }
        best.map(|(_, call)| call)
    }

    /// Builds the candidates view for a caller and lets `f` read it.
    fn with_candidates<R>(
        &mut self,
        call: CallId,
        only_tier: Option<u32>,
        f: impl FnOnce(&mut dyn Strategy, &Candidates<'_>, &mut SmallRng) -> R,
    ) -> Option<R> {
        let now = self.now?;
        let caller = self.callers.get(&call)?;
        let queue = &mut self.queues[caller.queue as usize];
        let max_penalty = match queue.config.tier_wait {
            Some(step) if !step.is_zero() => {
                let waited = now.saturating_duration_since(caller.joined);
                u32::try_from(waited.as_nanos() / step.as_nanos()).unwrap_or(u32::MAX)
            }
            _ => u32::MAX,
        };
        let agents = &self.agents;
        let members = &queue.members;
        let skills = &caller.skills;
        let qualifies = |m: MemberId| agents[members[m.0 as usize].agent as usize].has_skills(skills);
        let skill_score = |m: MemberId| agents[members[m.0 as usize].agent as usize].skill_score(skills);
        let candidates = Candidates {
            free: &queue.free,
            max_penalty,
            only_tier,
            filtered: !skills.is_empty(),
            qualifies: &qualifies,
            skill_score: &skill_score,
            caller_cursor: caller.cursor,
        };
        Some(f(queue.strategy.as_mut(), &candidates, &mut self.rng))
    }

    fn pick(&mut self, call: CallId) -> Option<MemberId> {
        self.with_candidates(call, None, |strategy, candidates, rng| strategy.pick(candidates, rng)).flatten()
    }

    /// Offers a ready caller to the agent(s) its queue's strategy picks, or asks the
    /// router; leaves it ready if no free agent fits.
    fn route_caller(&mut self, call: CallId, now: Instant) {
        let Some(caller) = self.callers.get(&call) else { return };
        if caller.phase != Phase::Ready {
            return;
        }
        let q = caller.queue;
        let use_fallback = caller.use_fallback;
        let queue = &self.queues[q as usize];
        if queue.free.is_empty() {
            return;
        }
        if queue.strategy.asks_router() && !use_fallback {
            let max = queue.config.router_max_candidates;
            let members = self.with_candidates(call, None, |_, candidates, _| candidates.in_order(max));
            let members = members.unwrap_or_default();
            if members.is_empty() {
                return;
            }
            let queue = &self.queues[q as usize];
            let agents: Vec<AgentIdx> = members.iter().map(|m| queue.members[m.0 as usize].agent).collect();
            let names = agents.iter().map(|&a| self.agents[a as usize].id.clone()).collect();
            let until = now + queue.config.router_timeout;
            let name = queue.name().to_owned();
            self.remove_ready(call);
            if let Some(caller) = self.callers.get_mut(&call) {
                caller.phase = Phase::Routing { until, candidates: agents };
            }
            self.actions.push_back(Action::AskRouter { call, queue: name, candidates: names });
            self.schedule_caller(call, now);
            return;
        }
        if let Some(caller) = self.callers.get_mut(&call) {
            caller.use_fallback = false;
        }
        let ring = self.queues[q as usize].strategy.ring();
        let Some(first) = self.pick(call) else { return };
        let tier = self.tier_of(q, first);
        self.start_offer(call, first, now);
        match ring {
            Ring::One => {}
            Ring::All => {
                // The rest of the tier, listed in one pass rather than a search per offer.
                let rest = self.with_candidates(call, tier, |_, candidates, _| candidates.in_order(usize::MAX));
                for m in rest.unwrap_or_default() {
                    self.start_offer(call, m, now);
                }
            }
            Ring::Progressive(every) => {
                if let Some(caller) = self.callers.get_mut(&call) {
                    caller.next_progressive = Some(now + every);
                }
            }
        }
        // Once for the round: scheduling reads every offer.
        self.schedule_caller(call, now);
    }

    fn tier_of(&self, q: QueueIdx, m: MemberId) -> Option<u32> {
        Some(self.queues[q as usize].members.get(m.0 as usize)?.penalty)
    }

    fn offer(&mut self, call: CallId, m: MemberId, now: Instant) {
        self.start_offer(call, m, now);
        self.schedule_caller(call, now);
    }

    /// Offers the caller to a member. The caller's timer is left to whoever calls this,
    /// to set once for all the offers it makes.
    fn start_offer(&mut self, call: CallId, m: MemberId, now: Instant) {
        let Some(caller) = self.callers.get(&call) else { return };
        let q = caller.queue;
        let queue = &self.queues[q as usize];
        let Some(key) = queue.free.key(m) else { return };
        let a = queue.members[m.0 as usize].agent;
        if caller.phase == Phase::Ready {
            self.remove_ready(call);
        }
        let queue = &mut self.queues[q as usize];
        queue.strategy.offered(key);
        queue.counters.offered += 1;
        let ring_timeout = queue.config.ring_timeout;
        let queue_name = queue.name().to_owned();
        let caller = self.callers.get_mut(&call).expect("caller present above");
        caller.phase = Phase::Ringing;
        caller.cursor = Some(key);
        caller.attempt += 1;
        caller.offers.push(Offer { agent: a, started: now, until: now + ring_timeout });
        let attempt = caller.attempt;
        let waited = now.saturating_duration_since(caller.joined);
        let agent = &mut self.agents[a as usize];
        agent.state = AgentState::Offered(call);
        agent.offer_index = (caller.offers.len() - 1) as u32;
        let agent_id = agent.id.clone();
        self.actions.push_back(Action::Offer {
            call,
            agent: agent_id.clone(),
            queue: queue_name.clone(),
            waited,
            attempt,
        });
        self.event(now, Some(queue_name), Some(call), Some(agent_id), EventKind::Offer { attempt, waited });
        self.refresh_agent(a, now);
    }

    /// Where agent `a`'s offer sits in the caller's offers, if it has one there.
    fn offer_index(&self, caller: &Caller, a: AgentIdx) -> Option<usize> {
        let i = self.agents[a as usize].offer_index as usize;
        caller.offers.get(i).is_some_and(|offer| offer.agent == a).then_some(i)
    }

    /// Takes agent `a`'s offer out of the caller's offers.
    fn take_offer(&mut self, call: CallId, a: AgentIdx) -> Option<Offer> {
        let caller = self.callers.get(&call)?;
        let i = self.offer_index(caller, a)?;
        let caller = self.callers.get_mut(&call)?;
        let offer = caller.offers.swap_remove(i);
        if let Some(moved) = caller.offers.get(i) {
            self.agents[moved.agent as usize].offer_index = i as u32;
        }
        Some(offer)
    }

    fn answered(&mut self, call: CallId, a: AgentIdx, now: Instant) {
        let Some(offer) = self.take_offer(call, a) else { return };
        let Some((caller, _)) = self.remove_caller(call) else { return };
        self.cancel_offers(call, &caller, now);
        let q = caller.queue;
        let waited = now.saturating_duration_since(caller.joined);
        let queue = &mut self.queues[q as usize];
        let c = &mut queue.counters;
        c.answered += 1;
        c.total_wait_answered += waited;
        if waited <= queue.config.service_level {
            c.answered_in_service_level += 1;
        }
        let queue_name = queue.name().to_owned();
        let agent = &mut self.agents[a as usize];
        agent.state = AgentState::OnCall(call);
        agent.no_answer_streak = 0;
        agent.calls_taken += 1;
        if let Some(&(_, m)) = agent.memberships.iter().find(|&&(mq, _)| mq == q) {
            self.queues[q as usize].members[m.0 as usize].calls += 1;
        }
        let agent_id = agent.id.clone();
        // Connected calls are bounded by the agents. Room for twice as many: like the
        // callers' table, one over half full rehashes under churn (1.3 ms at 10,000).
        make_room(&mut self.connected, 2 * self.agent_ids.len());
        self.connected.insert(call, Connected { agent: a, queue: Some(q), answered: now, waited });
        let rang = now.saturating_duration_since(offer.started);
        self.event(now, Some(queue_name), Some(call), Some(agent_id), EventKind::Connect { waited, rang });
        self.refresh_agent(a, now);
    }

    fn end_offer(&mut self, call: CallId, a: AgentIdx, end: OfferEnd, now: Instant) {
        if self.close_offer(call, a, end, now) {
            self.schedule_caller(call, now);
        }
    }

    /// Ends agent `a`'s offer; false if there was none. The caller's timer is left to
    /// whoever calls this, to set once for all the offers it ends.
    fn close_offer(&mut self, call: CallId, a: AgentIdx, end: OfferEnd, now: Instant) -> bool {
        let Some(offer) = self.take_offer(call, a) else { return false };
        let Some(caller) = self.callers.get(&call) else { return false };
        let q = caller.queue;
        let rang = now.saturating_duration_since(offer.started);
        let queue = &mut self.queues[q as usize];
        let config = &queue.config;
        let agent = &mut self.agents[a as usize];
        if agent.state == AgentState::Offered(call) {
            agent.state = AgentState::Idle;
        }
        let (delay, kind) = match end {
            OfferEnd::Rejected => {
                queue.counters.rejected += 1;
                (config.reject_delay, EventKind::Reject { rang })
            }
            OfferEnd::Busy => {
                queue.counters.busy += 1;
                (config.busy_delay, EventKind::Busy)
            }
            OfferEnd::Failed => {
                queue.counters.busy += 1;
                (config.busy_delay, EventKind::Failed)
            }
            OfferEnd::NoAnswer | OfferEnd::RingTimeout => {
                queue.counters.no_answer += 1;
                agent.no_answer_streak += 1;
                (config.no_answer_delay, EventKind::NoAnswer { rang })
            }
            OfferEnd::Withdrawn => (Duration::ZERO, EventKind::OfferWithdrawn),
        };
        if !delay.is_zero() {
            let until = now + delay;
            agent.not_before = Some(agent.not_before.map_or(until, |t| t.max(until)));
        }
        let auto_pause = config.max_no_answer > 0
            && agent.no_answer_streak >= config.max_no_answer
            && agent.status == AgentStatus::Available;
        let retry = config.retry;
        let queue_name = queue.name().to_owned();
        let agent_id = agent.id.clone();
        if matches!(end, OfferEnd::RingTimeout | OfferEnd::Withdrawn) {
            self.actions.push_back(Action::CancelOffer { call, agent: agent_id.clone() });
        }
        self.event(now, Some(queue_name), Some(call), Some(agent_id), kind);
        if auto_pause {
            self.agents[a as usize].no_answer_streak = 0;
            self.change_status(a, AgentStatus::OnBreak(MAX_NO_ANSWER_REASON.to_owned()), now);
        }
        if !self.agents[a as usize].defined {
            self.release_agent_slot(a);
        } else {
            self.refresh_agent(a, now);
        }
        // The round is over when nothing rings any more.
        let Some(caller) = self.callers.get_mut(&call) else { return true };
        if caller.phase == Phase::Ringing && caller.offers.is_empty() {
            caller.next_progressive = None;
            if end == OfferEnd::Withdrawn || retry.is_zero() {
                caller.phase = Phase::Ready;
                self.add_ready(call);
                self.work_callers.push(call);
            } else {
                caller.phase = Phase::Retry { until: now + retry };
            }
        }
        true
    }

    // ---- configuration ----

    fn intern_skill(&mut self, name: &str) -> SkillId {
        if let Some(&id) = self.skills.get(name) {
            return id;
        }
        if self.skills.len() >= MAX_SKILLS {
            return NO_SUCH_SKILL;
        }
        let id = SkillId(self.skills.len() as u16);
        self.skills.insert(name.to_owned(), id);
        id
    }

    /// Builds agents and queues from a validated config, carrying over what exists.
    fn apply_config(&mut self, config: AcdConfig, now: Option<Instant>) {
        self.longest_waiting_across_queues = config.longest_waiting_across_queues;
        self.max_waiting_total = config.max_waiting_total;
        let now_or_epoch = now.or(self.now);

        // Agents: keep slots by id, define new ones, retire the missing.
        let mut defined = vec![false; self.agents.len()];
        for agent_config in &config.agents {
            let mut skills: Vec<(SkillId, u8)> =
                agent_config.skills.iter().map(|(name, level)| (self.intern_skill(name), *level)).collect();
            skills.sort_unstable();
            skills.dedup_by_key(|(skill, _)| *skill);
            let a = match self.agent_ids.get(&agent_config.id) {
                Some(&a) => a,
                None => {
                    let agent = Agent {
                        id: agent_config.id.clone(),
                        defined: true,
                        wrap_up: None,
                        skills: Vec::new(),
                        status: AgentStatus::Available,
                        state: AgentState::Idle,
                        device: DeviceState { registered: true, busy: false },
                        not_before: None,
                        no_answer_streak: 0,
                        calls_taken: 0,
                        last_call_end: None,
                        memberships: Vec::new(),
                        offer_index: 0,
                        timer: None,
                    };
                    let a = match self.spare_agents.pop() {
                        Some(a) => {
                            self.agents[a as usize] = agent;
                            a
                        }
                        None => {
                            self.agents.push(agent);
                            defined.push(false);
                            (self.agents.len() - 1) as AgentIdx
                        }
                    };
                    self.agent_ids.insert(agent_config.id.clone(), a);
                    a
                }
            };
            let agent = &mut self.agents[a as usize];
            agent.defined = true;
            agent.wrap_up = agent_config.wrap_up;
            agent.skills = skills;
            agent.memberships.clear();
            defined[a as usize] = true;
        }
        let retired: Vec<AgentIdx> = self
            .agent_slots()
            .into_iter()
            .filter(|&a| !defined[a as usize] && self.agents[a as usize].defined)
            .collect();

        // Queues: carry counters, strategy memory and member figures by name.
        let mut old_queues: HashMap<String, (QueueIdx, Queue)> = std::mem::take(&mut self.queues)
            .into_iter()
            .enumerate()
            .map(|(i, queue)| (queue.config.name.clone(), (i as QueueIdx, queue)))
            .collect();
        let mut remap: HashMap<QueueIdx, QueueIdx> = HashMap::new();
        let mut carried_callers: Vec<(QueueIdx, Vec<CallId>)> = Vec::new();
        self.queue_ids.clear();
        for queue_config in config.queues {
            let q = self.queues.len() as QueueIdx;
            let old = old_queues.remove(&queue_config.name);
            let mut strategy = strategy::build(&queue_config);
            let mut sorted_ids: Vec<&str> = queue_config.members.iter().map(|m| m.agent.as_str()).collect();
            sorted_ids.sort_unstable();
            let mut members = Vec::with_capacity(queue_config.members.len());
            for (position, member) in queue_config.members.iter().enumerate() {
                let a = self.agent_ids[&member.agent];
                let id_rank = sorted_ids.binary_search(&member.agent.as_str()).unwrap_or(0) as u32;
                let (calls, talk) = old
                    .as_ref()
                    .and_then(|(_, old)| old.members.iter().find(|m| m.agent == a))
                    .map_or((0, Duration::ZERO), |m| (m.calls, m.talk));
                members.push(QueueMember {
                    agent: a,
                    penalty: member.penalty,
                    position: position as u32,
                    id_rank,
                    calls,
                    talk,
                });
                self.agents[a as usize].memberships.push((q, MemberId(position as u32)));
            }
            let mut penalties: Vec<u32> = members.iter().map(|m| m.penalty).collect();
            penalties.sort_unstable();
            penalties.dedup();
            let mut counters = Counters::default();
            if let Some((old_q, old)) = old {
                if old.strategy.kind() == queue_config.strategy {
                    strategy.restore(old.strategy.memory());
                }
                counters = old.counters;
                remap.insert(old_q, q);
                carried_callers.push((q, old.waiting.values().copied().collect()));
            }
            self.queue_ids.insert(queue_config.name.clone(), q);
            self.queues.push(Queue {
                free: FreeMembers::new(members.len()),
                ready: ReadyCallers::new(members.len()),
                config: queue_config,
                strategy,
                members,
                waiting: BTreeMap::new(),
                positions: Positions::default(),
                penalties,
                logged_in: 0,
                available: 0,
                counters,
            });
        }

        // Callers of removed queues exit; the rest move to their queue's new index. (Through
        // the queues' lists: iterating the callers' table costs its room, not its callers.)
        let mut removed: Vec<(u64, CallId)> =
            old_queues.values().flat_map(|(_, queue)| queue.waiting.iter().map(|(&seq, &call)| (seq, call))).collect();
        removed.sort_unstable();
        let removed_names: HashMap<QueueIdx, String> =
            old_queues.into_values().map(|(old_q, queue)| (old_q, queue.config.name)).collect();
        for (_, call) in removed {
            let Some(caller) = self.callers.remove(&call) else { continue };
            if let Some(at) = caller.timer {
                self.timers.remove(&(at, Timer::Caller(call)));
            }
            let now = now_or_epoch.unwrap_or(caller.joined);
            for offer in &caller.offers {
                let agent = &mut self.agents[offer.agent as usize];
                if agent.state == AgentState::Offered(call) {
                    agent.state = AgentState::Idle;
                }
                self.actions.push_back(Action::CancelOffer { call, agent: agent.id.clone() });
            }
            let queue = removed_names.get(&caller.queue).cloned().unwrap_or_default();
            let waited = now.saturating_duration_since(caller.joined);
            self.actions.push_back(Action::Exit { call, queue: queue.clone(), reason: ExitReason::QueueRemoved });
            let kind = EventKind::Exit { reason: ExitReason::QueueRemoved, position: 0, waited };
            self.event(now, Some(queue), Some(call), None, kind);
        }
        for connected in self.connected.values_mut() {
            connected.queue = connected.queue.and_then(|q| remap.get(&q).copied());
        }
        for (q, calls) in carried_callers {
            for call in calls {
                let Some(caller) = self.callers.get_mut(&call) else { continue };
                caller.queue = q;
                let queue = &mut self.queues[q as usize];
                queue.positions.insert(caller.priority, caller.seq);
                queue.waiting.insert(caller.seq, call);
                let caller = &self.callers[&call];
                if caller.phase == Phase::Ready {
                    self.add_ready(call);
                    self.work_callers.push(call);
                }
            }
        }

        // Retired agents: withdraw their offers; free their slots unless on a call.
        for a in retired {
            self.agents[a as usize].defined = false;
            self.agents[a as usize].memberships.clear();
            if let (AgentState::Offered(call), Some(now)) = (self.agents[a as usize].state, now_or_epoch) {
                self.end_offer(call, a, OfferEnd::Withdrawn, now);
            }
            self.release_agent_slot(a);
        }

        for q in 0..self.queues.len() {
            let queue = &self.queues[q];
            let (logged_in, available) = queue.members.iter().fold((0, 0), |(l, v), m| {
                let agent = &self.agents[m.agent as usize];
                (l + usize::from(agent.logged_in()), v + usize::from(agent.available()))
            });
            let queue = &mut self.queues[q];
            queue.logged_in = logged_in;
            queue.available = available;
        }
        if let Some(now) = now_or_epoch {
            for a in self.agent_slots() {
                self.refresh_agent(a, now);
            }
            let calls: Vec<CallId> = self.queues.iter().flat_map(|queue| queue.waiting.values().copied()).collect();
            for call in calls {
                self.schedule_caller(call, now);
            }
            for q in 0..self.queues.len() {
                self.apply_leave_rule(q as QueueIdx, now);
            }
        }
        // Before the first event there is no clock: agents enter the free sets at the first.
    }

    fn event(
        &mut self,
        at: Instant,
        queue: Option<String>,
        call: Option<CallId>,
        agent: Option<String>,
        kind: EventKind,
    ) {
        self.actions.push_back(Action::Event(QueueEvent { at, queue, call, agent, kind }));
    }

    /// Checks the engine's internal consistency; for tests and debug builds of the
    /// switch. Returns what is wrong.
    pub fn check_invariants(&self) -> Result<(), String> {
        let now = self.now.ok_or("no event yet")?;
        let mut offers_of: HashMap<AgentIdx, Vec<CallId>> = HashMap::new();
        let mut waiting = 0;
        for (q, queue) in self.queues.iter().enumerate() {
            waiting += queue.waiting.len();
            if queue.positions.len() != queue.waiting.len() {
                return Err(format!(
                    "queue {:?}: {} positions, {} waiting",
                    queue.name(),
                    queue.positions.len(),
                    queue.waiting.len()
                ));
            }
            for (&seq, call) in &queue.waiting {
                let caller = self
                    .callers
                    .get(call)
                    .ok_or(format!("queue {:?}: {call:?} waits but is no caller", queue.name()))?;
                if caller.queue as usize != q || caller.seq != seq {
                    return Err(format!("{call:?} is listed in queue {:?} but belongs elsewhere", queue.name()));
                }
            }
            let members = &queue.members;
            let qualifies =
                |m: MemberId, skills: &[SkillId]| self.agents[members[m.0 as usize].agent as usize].has_skills(skills);
            queue.ready.check(qualifies).map_err(|problem| format!("queue {:?}: {problem}", queue.name()))?;
            let ready = queue.ready.len();
            let ready_callers = queue
                .waiting
                .values()
                .filter(|call| self.callers.get(call).is_some_and(|c| c.phase == Phase::Ready))
                .count();
            if ready != ready_callers {
                return Err(format!("queue {:?}: {ready} in ready sets, {ready_callers} ready callers", queue.name()));
            }
            for (m, member) in queue.members.iter().enumerate() {
                let should = self.offerable(member.agent, q as QueueIdx, now);
                if should != queue.free.contains(MemberId(m as u32)) {
                    let id = &self.agents[member.agent as usize].id;
                    return Err(format!(
                        "queue {:?}: agent {id:?} offerable {should} but free-set membership differs",
                        queue.name()
                    ));
                }
            }
        }
        if waiting != self.callers.len() {
            return Err(format!("{waiting} callers listed in queues, {} callers", self.callers.len()));
        }
        // Through the queues (each caller is in one, checked above): iterating the callers'
        // table costs its room, not its callers.
        let callers = self.queues.iter().flat_map(|queue| queue.waiting.values());
        let callers = callers.filter_map(|call| self.callers.get_key_value(call));
        let mut scheduled = 0;
        for (&call, caller) in callers {
            scheduled += usize::from(caller.timer.is_some());
            let queue = &self.queues[caller.queue as usize];
            if (caller.phase == Phase::Ringing) == caller.offers.is_empty() {
                return Err(format!("{call:?}: phase {:?} with {} offers", caller.phase, caller.offers.len()));
            }
            if caller.offers.len() > 1 && queue.strategy.ring() == Ring::One {
                return Err(format!("{call:?}: {} offers in a one-at-a-time queue", caller.offers.len()));
            }
            for offer in &caller.offers {
                offers_of.entry(offer.agent).or_default().push(call);
            }
            if caller.timer.is_some_and(|at| !self.timers.contains(&(at, Timer::Caller(call)))) {
                return Err(format!("{call:?}: timer not in the timer set"));
            }
            // No ready caller may be left with a free agent that fits it.
            if caller.phase == Phase::Ready && !queue.strategy.asks_router() {
                let mut probe = Candidates {
                    free: &queue.free,
                    max_penalty: u32::MAX,
                    only_tier: None,
                    filtered: !caller.skills.is_empty(),
                    qualifies: &|m: MemberId| {
                        self.agents[queue.members[m.0 as usize].agent as usize].has_skills(&caller.skills)
                    },
                    skill_score: &|_| 0,
                    caller_cursor: None,
                };
                if let Some(step) = queue.config.tier_wait {
                    let waited = now.saturating_duration_since(caller.joined);
                    probe.max_penalty = u32::try_from(waited.as_nanos() / step.as_nanos()).unwrap_or(u32::MAX);
                }
                if let Some(m) = probe.first() {
                    let id = &self.agents[queue.members[m.0 as usize].agent as usize].id;
                    return Err(format!("{call:?} is ready in {:?} and agent {id:?} is free for it", queue.name()));
                }
            }
        }
        for &a in self.agent_ids.values() {
            let agent = &self.agents[a as usize];
            let offers = offers_of.remove(&a).unwrap_or_default();
            match agent.state {
                AgentState::Offered(call) => {
                    if offers != [call] {
                        return Err(format!("agent {:?} is Offered({call:?}) but holds offers {offers:?}", agent.id));
                    }
                }
                AgentState::OnCall(call) => {
                    if self.connected.get(&call).is_none_or(|c| c.agent != a) || !offers.is_empty() {
                        return Err(format!("agent {:?} is OnCall({call:?}) without that connection", agent.id));
                    }
                }
                _ => {
                    if !offers.is_empty() {
                        return Err(format!("agent {:?} is {:?} but holds offers {offers:?}", agent.id, agent.state));
                    }
                }
            }
            if agent.timer.is_some_and(|at| !self.timers.contains(&(at, Timer::Agent(a)))) {
                return Err(format!("agent {:?}: timer not in the timer set", agent.id));
            }
        }
        if let Some((a, calls)) = offers_of.into_iter().next() {
            return Err(format!("offers {calls:?} to agent slot {a} that has no id"));
        }
        for (&call, connected) in &self.connected {
            if self.agents[connected.agent as usize].state != AgentState::OnCall(call) {
                return Err(format!("{call:?} is connected but its agent is not on it"));
            }
        }
        scheduled += self.agents.iter().filter(|a| a.timer.is_some()).count();
        if scheduled != self.timers.len() {
            return Err(format!("{} timers set, {scheduled} entities scheduled", self.timers.len()));
        }
        Ok(())
    }
}

impl Queue {
    fn leave_rule_applies(&self) -> bool {
        match self.config.leave_when_empty {
            LeaveRule::Never => false,
            LeaveRule::WhenNoneLoggedIn => self.logged_in == 0,
            LeaveRule::WhenNoneAvailable => self.available == 0,
        }
    }
}

fn presented(agent: &Agent) -> PresentedState {
    match (&agent.state, &agent.status) {
        (AgentState::Offered(_), _) => PresentedState::Offered,
        (AgentState::OnCall(_), _) => PresentedState::OnCall,
        (AgentState::WrapUp { .. }, _) => PresentedState::WrapUp,
        (AgentState::Idle, AgentStatus::LoggedOut) => PresentedState::LoggedOut,
        (AgentState::Idle, AgentStatus::OnBreak(reason)) => PresentedState::Paused(reason.clone()),
        (AgentState::Idle, AgentStatus::Available) => PresentedState::Available,
    }
}

/// Gives a table that has reached `ROOM_AT` entries room for `room`, once.
fn make_room<K: Eq + Hash, V>(table: &mut HashMap<K, V>, room: usize) {
    if table.len() >= ROOM_AT && table.capacity() < room {
        table.reserve(room - table.len());
    }
}

/// position × average handle time ÷ logged-in members; None without history or agents.
fn estimated_wait(queue: &Queue, position: usize) -> Option<Duration> {
    let handle_time = queue.counters.average_handle_time()?;
    let agents = u32::try_from(queue.logged_in).ok().filter(|&n| n > 0)?;
    let position = u32::try_from(position).unwrap_or(u32::MAX);
    handle_time.checked_mul(position).map(|total| total / agents)
}
