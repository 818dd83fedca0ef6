//! Configuration: plain structs with defaults, filled by the switch's TOML layer,
//! and their validation.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The whole ACD configuration: queues, the agents they draw on, and engine options.
#[derive(Clone, Debug)]
pub struct AcdConfig {
    pub queues: Vec<QueueConfig>,
    pub agents: Vec<AgentConfig>,
    /// When an agent in several queues frees up: false (default) takes the caller of the
    /// queue with the highest `weight` first; true takes the longest-waiting caller across
    /// all that agent's queues (caller priority first, ties by weight).
    pub longest_waiting_across_queues: bool,
    /// Seed of the random and weighted-random strategies; None seeds from the OS.
    pub seed: Option<u64>,
    /// Callers waiting in all queues together; a join past it is refused as `Full`.
    pub max_waiting_total: usize,
}

impl Default for AcdConfig {
    fn default() -> Self {
        AcdConfig {
            queues: Vec::new(),
            agents: Vec::new(),
            longest_waiting_across_queues: false,
            seed: None,
            max_waiting_total: 1_000_000,
        }
    }
}

/// How a queue chooses among its free agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// Ring every free agent of the best tier at once; the first to answer gets the caller.
    #[default]
    RingAll,
    /// Members in configured order; each caller starts at the first and moves on
    /// after each unanswered offer.
    Linear,
    /// Round robin over the members sorted by agent id, resuming after the last agent offered.
    RoundRobin,
    /// Round robin in configured member order, resuming after the last agent offered.
    RoundRobinOrdered,
    /// The agent whose last queue call ended longest ago (never called: first).
    LongestIdle,
    /// The agent who took the fewest calls from this queue.
    FewestCalls,
    /// The agent with the least talk time on this queue's calls.
    LeastTalkTime,
    /// A free agent at random.
    Random,
    /// A free agent at random, weighted by penalty: weight 1 / (penalty + 1).
    WeightedRandom,
    /// Like `Linear`, but earlier agents keep ringing while one more is added every
    /// `ring_progressively_every`.
    RingProgressively,
    /// Agents with all the caller's required skills; best match (sum of their levels on
    /// the required skills) first, then longest idle.
    Skills,
    /// Ask an outside service (Action::AskRouter); use `fallback` if it fails.
    External,
}

impl StrategyKind {
    /// Every strategy, for iteration in tests and docs.
    pub const ALL: [StrategyKind; 12] = [
        StrategyKind::RingAll,
        StrategyKind::Linear,
        StrategyKind::RoundRobin,
        StrategyKind::RoundRobinOrdered,
        StrategyKind::LongestIdle,
        StrategyKind::FewestCalls,
        StrategyKind::LeastTalkTime,
        StrategyKind::Random,
        StrategyKind::WeightedRandom,
        StrategyKind::RingProgressively,
        StrategyKind::Skills,
        StrategyKind::External,
    ];

    /// The name used in configuration files. Asterisk's and FreeSWITCH's names are
    /// accepted by [`StrategyKind::from_name`] too.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::RingAll => "ring-all",
            StrategyKind::Linear => "linear",
            StrategyKind::RoundRobin => "round-robin",
            StrategyKind::RoundRobinOrdered => "rrordered",
            StrategyKind::LongestIdle => "longest-idle",
            StrategyKind::FewestCalls => "fewest-calls",
            StrategyKind::LeastTalkTime => "least-talk-time",
            StrategyKind::Random => "random",
            StrategyKind::WeightedRandom => "weighted-random",
            StrategyKind::RingProgressively => "ring-progressively",
            StrategyKind::Skills => "skills",
            StrategyKind::External => "external",
        }
    }

    pub fn from_name(name: &str) -> Option<StrategyKind> {
        let kind = match name {
            "ring-all" | "ringall" => StrategyKind::RingAll,
            "linear" | "top-down" => StrategyKind::Linear,
            "round-robin" | "rrmemory" | "roundrobin" => StrategyKind::RoundRobin,
            "rrordered" | "round-robin-ordered" => StrategyKind::RoundRobinOrdered,
            "longest-idle" | "leastrecent" | "longest-idle-agent" => StrategyKind::LongestIdle,
            "fewest-calls" | "fewestcalls" | "agent-with-fewest-calls" => StrategyKind::FewestCalls,
            "least-talk-time" | "agent-with-least-talk-time" => StrategyKind::LeastTalkTime,
            "random" => StrategyKind::Random,
            "weighted-random" | "wrandom" => StrategyKind::WeightedRandom,
            "ring-progressively" => StrategyKind::RingProgressively,
            "skills" | "skills-based" => StrategyKind::Skills,
            "external" => StrategyKind::External,
            _ => return None,
        };
        Some(kind)
    }
}

/// When a caller may not join a queue that has no agents to serve it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JoinRule {
    /// Always join: the caller waits for agents to come.
    #[default]
    Always,
    /// Refuse when no member is logged in (status other than LoggedOut).
    UnlessNoneLoggedIn,
    /// Refuse when no member is available (logged in and not on break).
    UnlessNoneAvailable,
}

/// When waiting callers are sent out of a queue that has no agents to serve them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeaveRule {
    #[default]
    Never,
    /// Exit{Empty} once no member is logged in.
    WhenNoneLoggedIn,
    /// Exit{Empty} once no member is available (logged in and not on break).
    WhenNoneAvailable,
}

/// A queue's member: an agent and its penalty (tier) in this queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub agent: String,
    /// Lower is offered first; see the crate docs on tiers.
    pub penalty: u32,
}

impl Member {
    pub fn new(agent: &str, penalty: u32) -> Member {
        Member { agent: agent.to_owned(), penalty }
    }
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub name: String,
    pub strategy: StrategyKind,
    pub members: Vec<Member>,
    /// Which queue's caller a free agent in several queues takes first (higher first).
    pub weight: u32,
    /// Waiting callers at most; None: no limit but the engine's `max_waiting_total`.
    pub max_callers: Option<usize>,
    /// Exit{MaxWait} after this long waiting.
    pub max_wait: Option<Duration>,
    pub join_when_empty: JoinRule,
    pub leave_when_empty: LeaveRule,
    /// How long one offer rings before CancelOffer.
    pub ring_timeout: Duration,
    /// Wait after an unanswered round before the caller is offered again.
    pub retry: Duration,
    /// Wrap-up after a call from this queue, unless the agent has its own.
    pub wrap_up: Duration,
    /// Offer agents whose device is busy on another call.
    pub ring_in_use: bool,
    /// Open penalty tier p only once the caller has waited p × tier_wait.
    pub tier_wait: Option<Duration>,
    /// How long an agent is not offered again after it rejected an offer.
    pub reject_delay: Duration,
    /// ... after it was busy or could not be reached.
    pub busy_delay: Duration,
    /// ... after it did not answer (its phone's timeout or the ring timeout).
    pub no_answer_delay: Duration,
    /// Pause an agent (OnBreak("max-no-answer")) after this many unanswered offers in a
    /// row; 0 = never.
    pub max_no_answer: u32,
    /// The service level threshold: answered within it counts as in service level.
    pub service_level: Duration,
    /// Position announcements every so often while waiting; None = none.
    pub announce_every: Option<Duration>,
    /// How often ring-progressively adds one more agent.
    pub ring_progressively_every: Duration,
    /// The external strategy: how long to wait for the router's answer.
    pub router_timeout: Duration,
    /// The external strategy: at most this many candidates are sent.
    pub router_max_candidates: usize,
    /// The external strategy: what chooses when the router fails or answers nonsense.
    pub fallback: StrategyKind,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            name: String::new(),
            strategy: StrategyKind::RingAll,
            members: Vec::new(),
            weight: 0,
            max_callers: None,
            max_wait: None,
            join_when_empty: JoinRule::Always,
            leave_when_empty: LeaveRule::Never,
            ring_timeout: Duration::from_secs(15),
            retry: Duration::from_secs(5),
            wrap_up: Duration::ZERO,
            ring_in_use: false,
            tier_wait: None,
            reject_delay: Duration::from_secs(10),
            busy_delay: Duration::from_secs(10),
            no_answer_delay: Duration::from_secs(10),
            max_no_answer: 0,
            service_level: Duration::from_secs(20),
            announce_every: None,
            ring_progressively_every: Duration::from_secs(10),
            router_timeout: Duration::from_secs(2),
            router_max_candidates: 50,
            fallback: StrategyKind::LongestIdle,
        }
    }
}

impl QueueConfig {
    pub fn new(name: &str, strategy: StrategyKind, members: &[(&str, u32)]) -> QueueConfig {
        QueueConfig {
            name: name.to_owned(),
            strategy,
            members: members.iter().map(|&(agent, penalty)| Member::new(agent, penalty)).collect(),
            ..QueueConfig::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentConfig {
    pub id: String,
    /// Overrides the queues' wrap-up for this agent.
    pub wrap_up: Option<Duration>,
    /// Skill name and level, 1..=9 (9 best).
    pub skills: Vec<(String, u8)>,
}

impl AgentConfig {
    pub fn new(id: &str) -> AgentConfig {
        AgentConfig { id: id.to_owned(), ..AgentConfig::default() }
    }
}

/// The highest skill level.
pub const MAX_SKILL_LEVEL: u8 = 9;

/// A configuration the engine cannot run; the message names the queue, agent or skill.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("queue \"{queue}\": member \"{agent}\" is not a defined agent")]
    UnknownMember { queue: String, agent: String },
    #[error("queue \"{queue}\": member \"{agent}\" is listed twice")]
    DuplicateMember { queue: String, agent: String },
    #[error("queue \"{0}\" is defined twice")]
    DuplicateQueue(String),
    #[error("agent \"{0}\" is defined twice")]
    DuplicateAgent(String),
    #[error("a queue has an empty name")]
    EmptyQueueName,
    #[error("an agent has an empty id")]
    EmptyAgentId,
    #[error("agent \"{agent}\": skill \"{skill}\" has level {level}, outside 1..={max}", max = MAX_SKILL_LEVEL)]
    SkillLevel { agent: String, skill: String, level: u8 },
    #[error("queue \"{queue}\": {problem}")]
    Queue { queue: String, problem: String },
    #[error("max_waiting_total must be at least 1")]
    NoWaitingRoom,
}

impl AcdConfig {
    /// Checks references and values; the engine accepts only a validated config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_waiting_total == 0 {
            return Err(ConfigError::NoWaitingRoom);
        }
        let mut agents = HashSet::new();
        for agent in &self.agents {
            if agent.id.is_empty() {
                return Err(ConfigError::EmptyAgentId);
            }
            if !agents.insert(agent.id.as_str()) {
                return Err(ConfigError::DuplicateAgent(agent.id.clone()));
            }
            for (skill, level) in &agent.skills {
                if !(1..=MAX_SKILL_LEVEL).contains(level) {
                    return Err(ConfigError::SkillLevel {
                        agent: agent.id.clone(),
                        skill: skill.clone(),
                        level: *level,
                    });
                }
            }
        }
        let mut queues = HashMap::new();
        for queue in &self.queues {
            if queue.name.is_empty() {
                return Err(ConfigError::EmptyQueueName);
            }
            if queues.insert(queue.name.as_str(), ()).is_some() {
                return Err(ConfigError::DuplicateQueue(queue.name.clone()));
            }
            let problem = |problem: &str| ConfigError::Queue { queue: queue.name.clone(), problem: problem.to_owned() };
            let mut members = HashSet::new();
            for member in &queue.members {
                if !agents.contains(member.agent.as_str()) {
                    return Err(ConfigError::UnknownMember { queue: queue.name.clone(), agent: member.agent.clone() });
                }
                if !members.insert(member.agent.as_str()) {
                    return Err(ConfigError::DuplicateMember {
                        queue: queue.name.clone(),
                        agent: member.agent.clone(),
                    });
                }
            }
            if queue.ring_timeout.is_zero() {
                return Err(problem("ring_timeout must be more than zero"));
            }
            if queue.announce_every.is_some_and(|every| every.is_zero()) {
                return Err(problem("announce_every must be more than zero"));
            }
            if queue.max_wait.is_some_and(|wait| wait.is_zero()) {
                return Err(problem("max_wait must be more than zero"));
            }
            if queue.tier_wait.is_some_and(|wait| wait.is_zero()) {
                return Err(problem("tier_wait must be more than zero"));
            }
            if queue.strategy == StrategyKind::RingProgressively && queue.ring_progressively_every.is_zero() {
                return Err(problem("ring-progressively needs ring_progressively_every more than zero"));
            }
            let uses_weights =
                queue.strategy == StrategyKind::WeightedRandom || queue.fallback == StrategyKind::WeightedRandom;
            if uses_weights && queue.tier_wait.is_some() {
                return Err(problem("weighted-random uses penalties as weights, not tiers: tier_wait cannot be set"));
            }
            if queue.strategy == StrategyKind::External {
                if queue.fallback == StrategyKind::External {
                    return Err(problem("the external strategy's fallback cannot be external"));
                }
                if queue.router_timeout.is_zero() {
                    return Err(problem("the external strategy needs router_timeout more than zero"));
                }
                if queue.router_max_candidates == 0 {
                    return Err(problem("the external strategy needs router_max_candidates of at least 1"));
                }
            }
        }
        Ok(())
    }
}
