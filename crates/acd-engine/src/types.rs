//! What goes in (call ids, caller facts, results, statuses) and what comes out
//! (actions, events, statistics, views).

use std::time::{Duration, Instant};

/// A call waiting in or connected through a queue; the switch assigns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What the engine knows of a caller when it joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerInfo {
    /// Higher is served first; FIFO within one priority.
    pub priority: u8,
    /// Skills an agent must all have to be offered this caller (any level).
    pub skills: Vec<String>,
}

/// Why a caller left before being connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// The caller hung up.
    Abandon,
    /// The caller pressed the queue's exit key.
    Key,
}

/// What became of an offer (Action::Offer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferResult {
    Answered,
    Rejected,
    Busy,
    /// The phone gave up ringing before the engine's ring timeout.
    NoAnswer,
    /// The agent could not be reached.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndedBy {
    Agent,
    Caller,
}

/// The status an agent sets itself (feature codes, API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentStatus {
    Available,
    OnBreak(String),
    LoggedOut,
}

/// The agent's device as the switch sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceState {
    /// The agent has at least one registered contact.
    pub registered: bool,
    /// The device is on a call the engine did not connect.
    pub busy: bool,
}

/// What the engine is doing with an agent, apart from the agent's own status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    Idle,
    Offered(CallId),
    OnCall(CallId),
    WrapUp { until: Instant },
}

/// Status and state combined, as shown to supervisors. Offered, on call and wrap-up
/// show first (that is what the agent is doing); then the agent's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresentedState {
    LoggedOut,
    Available,
    Offered,
    OnCall,
    WrapUp,
    Paused(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentView {
    pub id: String,
    pub status: AgentStatus,
    pub state: AgentState,
    pub presented: PresentedState,
    pub device: DeviceState,
    /// Calls the agent answered, all queues together.
    pub calls_taken: u64,
    /// Unanswered offers in a row (for max-no-answer).
    pub no_answer_streak: u32,
    /// Not offered again before this (a reject, busy or no-answer delay).
    pub not_before: Option<Instant>,
    /// The queues the agent is a member of, with its penalty in each.
    pub queues: Vec<(String, u32)>,
}

/// Why the engine sends a caller out of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The queue's max wait passed.
    MaxWait,
    /// leave-when-empty: no agent to serve the queue.
    Empty,
    /// The queue is no longer in the configuration.
    QueueRemoved,
}

/// A decision for the switch to carry out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ring this agent for this caller; the engine owns the ring timeout.
    Offer { call: CallId, agent: String, queue: String, waited: Duration, attempt: u32 },
    /// Stop ringing this agent for this caller.
    CancelOffer { call: CallId, agent: String },
    /// Send the caller to the queue's configured destination.
    Exit { call: CallId, queue: String, reason: ExitReason },
    /// Tell the caller its position and, when known, the estimated wait.
    Announce { call: CallId, queue: String, position: usize, estimated_wait: Option<Duration> },
    /// Ask the routing service which of these agents should get the caller.
    AskRouter { call: CallId, queue: String, candidates: Vec<String> },
    /// For the queue log and the event stream.
    Event(QueueEvent),
}

/// One line of the queue log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEvent {
    pub at: Instant,
    /// None for an agent's own status changes, which apply to all its queues.
    pub queue: Option<String>,
    pub call: Option<CallId>,
    pub agent: Option<String>,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Enter {
        position: usize,
        priority: u8,
    },
    Offer {
        attempt: u32,
        waited: Duration,
    },
    /// The agent did not answer: its phone's timeout, or the engine's ring timeout.
    NoAnswer {
        rang: Duration,
    },
    Reject {
        rang: Duration,
    },
    Busy,
    Failed,
    /// The offer was withdrawn: another agent answered, the caller left, the agent logged out.
    OfferWithdrawn,
    Connect {
        waited: Duration,
        rang: Duration,
    },
    Complete {
        by: EndedBy,
        waited: Duration,
        talk: Duration,
    },
    Abandon {
        position: usize,
        waited: Duration,
    },
    /// The caller pressed the exit key.
    ExitKey {
        position: usize,
        waited: Duration,
    },
    Exit {
        reason: ExitReason,
        position: usize,
        waited: Duration,
    },
    Pause {
        reason: String,
    },
    Unpause,
    Login,
    Logout,
    /// The router did not answer in time, or named an agent that was not a candidate.
    RouterFallback,
}

/// A queue's live figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    pub waiting: usize,
    pub longest_wait: Duration,
    pub agents: AgentCounts,
    /// Callers that joined.
    pub entered: u64,
    /// Offers made (a ring-all round counts each agent rung).
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Exit{MaxWait}.
    pub timed_out: u64,
    /// Exit by key.
    pub exited_by_key: u64,
    /// Exit{Empty}.
    pub exited_empty: u64,
    pub no_answer: u64,
    pub rejected: u64,
    /// Busy or failed offers.
    pub busy: u64,
    pub completed: u64,
    /// Percent of answered calls answered within the queue's service level; None before any.
    pub service_level: Option<f64>,
    /// Average speed of answer: the mean wait of answered callers.
    pub average_speed_of_answer: Option<Duration>,
    /// Average handle time: (talk + wrap-up) per completed call.
    pub average_handle_time: Option<Duration>,
}

/// Members of a queue by presented state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentCounts {
    pub logged_out: usize,
    pub available: usize,
    pub offered: usize,
    pub on_call: usize,
    pub wrap_up: usize,
    pub paused: usize,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    #[error("queue \"{0}\" is full")]
    Full(String),
    #[error("queue \"{0}\" has no agent to serve it")]
    Empty(String),
    #[error("no queue \"{0}\"")]
    UnknownQueue(String),
    #[error("call {0:?} is already in a queue or connected")]
    AlreadyQueued(CallId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no agent \"{0}\"")]
pub struct UnknownAgent(pub String);
