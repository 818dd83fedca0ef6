//! `acd-engine`: ACD queues as pure logic: no sockets, no clock, no async, no threads.
//!
//! The switch drives one [`Engine`] from one task. It reports what happened, each
//! time with the `now` it happened at ([`Engine::caller_join`], [`Engine::offer_result`],
//! [`Engine::call_ended`], [`Engine::set_status`], [`Engine::device_state`],
//! [`Engine::router_answer`], ...), calls [`Engine::handle_timeout`] when
//! [`Engine::poll_timeout`] passes, and carries out the [`Action`]s it drains with
//! [`Engine::poll_action`] / [`Engine::drain_actions`]: ring an agent, stop ringing,
//! send a caller out, announce a position, ask the router; plus [`QueueEvent`]s for
//! the queue log. Every entry point first runs the timers due at its `now`, so the
//! engine's view is current whatever order the switch calls it in.
//!
//! # Model
//!
//! - **Callers** wait in one queue each, ordered by priority (higher first), then by
//!   join time (FIFO). A waiting caller is *ready* (to be offered), *ringing* (offers
//!   outstanding), in a *retry* pause between rounds, or *routing* (the router is
//!   asked). Once an offer is answered it leaves the queue and becomes a connected call.
//! - **Agents** have a status they set themselves ([`AgentStatus`]: Available,
//!   OnBreak(reason), LoggedOut) and a state the engine keeps ([`AgentState`]: Idle,
//!   Offered, OnCall, WrapUp{until}), kept apart so that neither blocks the other:
//!   logging out or pausing during a call or a wrap-up never cuts it short, and the
//!   agent simply is not offered again until both allow it. [`PresentedState`] shows
//!   what the agent does (offered, on call, wrap-up) before its status (logged out,
//!   paused(reason), available). Logging out withdraws a ringing offer
//!   (CancelOffer; the caller is offered on at once); a break lets it ring (the agent
//!   may still answer).
//! - An agent is **offered** only when it is Available, Idle (not offered, on a call or
//!   in wrap-up), registered, not busy on another call (unless the queue has
//!   `ring_in_use`), and past any re-offer delay. One offer at a time per agent.
//! - The engine owns the **ring timeout**: it cancels the offer (CancelOffer) and counts
//!   a no-answer. After a round with no answer the caller waits `retry`, then is
//!   offered again. The agent that did not take it is not offered anything until its
//!   outcome's delay passes: `reject_delay` (Rejected), `busy_delay` (Busy, Failed),
//!   `no_answer_delay` (NoAnswer, ring timeout). `max_no_answer` unanswered offers in a
//!   row (no-answer or ring timeout; rejects, busy and failures neither count nor
//!   reset) pause the agent as OnBreak("max-no-answer") with a Pause event; an answer
//!   resets the count.
//! - A result for an offer the engine no longer holds (it sent CancelOffer, or the
//!   caller left) is ignored: the switch is to stop that leg when told to cancel.
//!
//! # Precedence
//!
//! Who gets a free agent, in this order:
//! 1. **caller priority** (higher first),
//! 2. **wait time** (longest first; FIFO within a priority),
//! 3. **skill match**: a caller's required skills ([`CallerInfo::skills`]) admit only
//!    agents that have all of them, in every queue; tiers (penalties) admit only the
//!    open tiers,
//! 4. the queue's **algorithm** chooses among the agents left.
//!
//! An agent in several queues takes, when it frees up, the caller of the queue with the
//! highest `weight` first (then priority, then wait). With
//! [`AcdConfig::longest_waiting_across_queues`] it takes the caller with the highest
//! priority and then the longest wait across all its queues, weight breaking ties.
//!
//! **Tiers**: a member's penalty is its tier; lower tiers are offered first, and a
//! higher tier only when no lower-tier member is free for the caller. With `tier_wait:
//! Some(d)`, tier p opens to a caller only once it has waited p × d, even when lower
//! tiers are busy. Weighted random uses penalties as weights instead, not as tiers.
//!
//! # Algorithms ([`StrategyKind`], behind the [`strategy::Strategy`] trait)
//!
//! - **ring-all**: every free agent of the best tier rings; the first to answer gets
//!   the caller, the others get CancelOffer. Agents freed during a round wait for the
//!   next (as Asterisk's ringall).
//! - **linear**: configured member order; each caller starts at the first member and its
//!   next round starts after the member it last rang.
//! - **round-robin** (rrmemory): the queue remembers the last agent offered and resumes
//!   after it, over the members sorted by agent id (an order that does not change when
//!   the member list is edited); **rrordered** does the same in configured order.
//! - **longest-idle**: the agent whose last call ended longest ago (agent-wide; never
//!   called counts as longest).
//! - **fewest-calls**, **least-talk-time**: counted per queue.
//! - **random**: uniform within the best tier. **weighted-random**: across all members,
//!   weight 1 / (penalty + 1).
//! - **ring-progressively**: like linear, but earlier agents keep ringing while one more
//!   is added every `ring_progressively_every`; each offer has its own ring timeout.
//! - **skills**: best match first (sum of the agent's levels, 1..=9, on the caller's
//!   required skills), then longest idle.
//! - **external**: Action::AskRouter with the free candidates (in fallback order, at most
//!   `router_max_candidates`); an answer naming a candidate still free is offered;
//!   no answer within `router_timeout`, None, or an agent that is not a free candidate:
//!   the `fallback` strategy picks (a RouterFallback event is logged). An agent asked
//!   about is not held for the answer, but callers of other router queues wait for it
//!   rather than ask about the same agent again.
//!
//! Ties always fall back to configured member order, and the random strategies take
//! their seed from [`AcdConfig::seed`], so a run can be replayed.
//!
//! # Defaults (as Asterisk app_queue and FreeSWITCH mod_callcenter operators expect)
//!
//! | option | default |
//! | --- | --- |
//! | strategy | ring-all |
//! | ring timeout / retry | 15 s / 5 s |
//! | wrap-up | 0 (per queue, overridden by the agent's own) |
//! | reject / busy / no-answer delays | 10 s each |
//! | max no-answer | 0 = never pause |
//! | ring in use | off |
//! | join when empty | Always: a caller waits for agents to come |
//! | leave when empty | Never |
//! | max callers / max wait | none (the engine holds at most `max_waiting_total`, 1,000,000) |
//! | service level | 20 s |
//! | announcements | none; with `announce_every`, first after one interval |
//! | ring-progressively step | 10 s |
//! | router timeout / candidates / fallback | 2 s / 50 / longest-idle |
//! | agents in the config | Available and registered, like Asterisk's static members, until the switch says otherwise |
//!
//! "Logged in" means a status other than LoggedOut; "available" means Available (the
//! join and leave rules count those). A caller that leave-when-empty would send out at
//! once is refused at the door instead (JoinRefused::Empty).
//!
//! # Statistics and the estimated wait
//!
//! [`Engine::queue_stats`]: waiting callers, longest wait, members by presented state,
//! and counters (entered, offered, answered, abandoned, timed out, exits by key or
//! empty queue, no-answer, rejected, busy, completed). **Service level** = answered
//! within `service_level` ÷ answered, in percent. **Average speed of answer** = mean wait
//! of answered callers. **Average handle time** = (talk + wrap-up) ÷ completed calls,
//! wrap-up being the configured length that applied.
//!
//! **Estimated wait** in announcements = position × average handle time ÷ logged-in
//! members; None until a call has completed or while no member is logged in.
//! Announcements skip a turn while an agent's phone rings for the caller.
//!
//! # Reload
//!
//! [`Engine::reconfigure`] keeps each agent's status, state and device, every waiting
//! caller with its place, each queue's counters and its round-robin memory (when the
//! strategy is the same). Callers of a removed queue get Exit{QueueRemoved}; an agent
//! removed from the config loses its ringing offers (CancelOffer) and keeps its call
//! until it ends. A config that does not validate changes nothing.
//!
//! # Cost and bounds
//!
//! Free agents are kept per queue and tier in the order their strategy gives them, and
//! ready callers per queue and required-skill set in (priority, join) order, so a
//! decision reads the heads of a few ordered sets: O(log n), about 1–4 µs with 10,000
//! agents and 100,000 waiting callers (`benches/acd_decision.rs`). Each member keeps the
//! list of the skill sets its agent can serve, so a freed agent reads only those sets;
//! adding a set to the lists or dropping it is a pass over the queue's members, and a
//! set left without ready callers stays listed while the empty sets are at most 64 more
//! than the others. Exceptions, linear in the free agents of the caller's queue:
//! ring-all (it rings them all), the skills strategy for a caller that needs skills (it
//! scores every free agent with them), and weighted random for such a caller. Positions
//! come from a tree per queue that counts the callers under each node, so a join or a
//! leave updates one path, never the queue. Timers live in one ordered set with at most
//! one entry per caller and per agent. Callers are bounded by `max_waiting_total`,
//! connected calls by the agents, skill names by 4,096; once the callers' table holds
//! 4,096 it is given room for up to 131,072 at once, so that it does not grow, rehashing
//! them all, under load. The switch must drain the actions after each call.

mod config;
mod engine;
mod positions;
mod ready;
pub mod strategy;
mod types;

pub use config::{
    AcdConfig, AgentConfig, ConfigError, JoinRule, LeaveRule, MAX_SKILL_LEVEL, Member, QueueConfig, StrategyKind,
};
pub use engine::{Engine, MAX_NO_ANSWER_REASON};
pub use types::*;
