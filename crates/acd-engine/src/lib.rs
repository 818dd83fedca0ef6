//! `acd-engine`: ACD queues as pure logic.

mod config;
mod positions;
mod types;

pub use config::{
    AcdConfig, AgentConfig, ConfigError, JoinRule, LeaveRule, MAX_SKILL_LEVEL, Member, QueueConfig, StrategyKind,
};
pub use types::*;
