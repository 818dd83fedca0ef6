//! `acd-engine`: ACD queues as pure logic.
// (crate docs follow in a later commit)

mod config;
mod engine;
mod positions;
pub mod strategy;
mod types;

pub use config::{
    AcdConfig, AgentConfig, ConfigError, JoinRule, LeaveRule, MAX_SKILL_LEVEL, Member, QueueConfig, StrategyKind,
};
pub use engine::{Engine, MAX_NO_ANSWER_REASON};
pub use types::*;
