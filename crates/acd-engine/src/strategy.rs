//! Routing strategies: which free member of a queue is offered a caller.
//!
//! Every queue keeps its free members (those that may be offered a call right now) in
//! [`FreeMembers`]: per penalty tier, ordered by the key the queue's strategy gives
//! them ([`Strategy::order_key`]), and in a list for random picks. A strategy reads
//! them through [`Candidates`], which hides the members this caller may not have
//! (missing skills, a tier not open yet). Adding a strategy is one new type that
//! implements [`Strategy`], and a [`StrategyKind`] naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;

use crate::config::{QueueConfig, StrategyKind};

/// A member of one queue, by its index in the queue's member list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u32);

/// Where a free member sorts: lower is offered first. Built from a strategy's measure
/// and the member's configured position, so that ties keep configuration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderKey(pub u128);

impl OrderKey {
    pub fn new(measure: u64, position: u32) -> OrderKey {
        OrderKey((u128::from(measure) << 32) | u128::from(position))
    }
}

/// What a strategy may sort a member by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberFacts {
    /// Index in the queue's configured member list.
    pub position: u32,
    /// Rank of the agent's id among the queue's members, sorted.
    pub id_rank: u32,
    pub penalty: u32,
    /// When the agent's last queue call ended, in nanoseconds since the engine's first
    /// event; 0 if it never had one (so it counts as idle longest).
    pub idle_since_ns: u64,
    /// Calls answered from this queue.
    pub calls: u64,
    /// Talk time on this queue's calls, in milliseconds.
    pub talk_ms: u64,
}

/// How many agents one caller rings at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// One offer at a time.
    One,
    /// Every free agent of the best tier at once.
    All,
    /// One more every so often, earlier ones ringing on.
    Progressive(Duration),
}

pub trait Strategy: Send + fmt::Debug {
    fn kind(&self) -> StrategyKind;
    /// The key a free member is kept under; the engine recomputes it each time the
    /// member becomes free, so it may use anything in [`MemberFacts`].
    fn order_key(&self, facts: &MemberFacts) -> OrderKey;
    fn ring(&self) -> Ring {
        Ring::One
    }
    /// The member to offer the caller, or None to let it wait.
    fn pick(&mut self, candidates: &Candidates<'_>, rng: &mut SmallRng) -> Option<MemberId>;
    /// The member with this key was offered a call (round-robin remembers it).
    fn offered(&mut self, _key: OrderKey) {}
    /// What the strategy remembers between calls, carried over a config reload.
    fn memory(&self) -> Option<OrderKey> {
        None
    }
    fn restore(&mut self, _memory: Option<OrderKey>) {}
    /// True for the external strategy: the engine asks the router before `pick`.
    fn asks_router(&self) -> bool {
        false
    }
}

/// The strategy a queue's config names.
pub(crate) fn build(config: &QueueConfig) -> Box<dyn Strategy> {
    build_kind(config.strategy, config)
}

fn build_kind(kind: StrategyKind, config: &QueueConfig) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::RingAll => Box::new(RingAll),
        StrategyKind::Linear => Box::new(Linear),
        StrategyKind::RoundRobin => Box::new(RoundRobin { by_id: true, last: None }),
        StrategyKind::RoundRobinOrdered => Box::new(RoundRobin { by_id: false, last: None }),
        StrategyKind::LongestIdle => Box::new(LongestIdle),
        StrategyKind::FewestCalls => Box::new(FewestCalls),
        StrategyKind::LeastTalkTime => Box::new(LeastTalkTime),
        StrategyKind::Random => Box::new(Random),
        StrategyKind::WeightedRandom => Box::new(WeightedRandom),
        StrategyKind::RingProgressively => Box::new(RingProgressively { every: config.ring_progressively_every }),
        StrategyKind::Skills => Box::new(Skills),
        StrategyKind::External => {
            // validate() refuses an external fallback; guard the recursion anyway.
            let fallback = match config.fallback {
                StrategyKind::External => StrategyKind::LongestIdle,
                other => other,
            };
            Box::new(External { fallback: build_kind(fallback, config) })
        }
    }
}

/// The free members of one queue.
#[derive(Debug, Default)]
pub struct FreeMembers {
    tiers: BTreeMap<u32, FreeTier>,
    /// Per member, while free: its tier, key and index in the tier's list.
    slots: Vec<Option<(u32, OrderKey, u32)>>,
    len: usize,
}

#[derive(Debug, Default)]
struct FreeTier {
    ordered: BTreeSet<(OrderKey, MemberId)>,
    list: Vec<MemberId>,
}

impl FreeMembers {
    pub(crate) fn new(members: usize) -> FreeMembers {
        FreeMembers { tiers: BTreeMap::new(), slots: vec![None; members], len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, member: MemberId) -> bool {
        self.slots.get(member.0 as usize).is_some_and(Option::is_some)
    }

    pub fn key(&self, member: MemberId) -> Option<OrderKey> {
        self.slots.get(member.0 as usize).copied().flatten().map(|(_, key, _)| key)
    }

    pub(crate) fn insert(&mut self, member: MemberId, penalty: u32, key: OrderKey) {
        let Some(slot) = self.slots.get_mut(member.0 as usize) else { return };
        if slot.is_some() {
            return;
        }
        let tier = self.tiers.entry(penalty).or_default();
        tier.ordered.insert((key, member));
        *slot = Some((penalty, key, tier.list.len() as u32));
        tier.list.push(member);
        self.len += 1;
    }

    pub(crate) fn remove(&mut self, member: MemberId) {
        let Some((penalty, key, index)) = self.slots.get_mut(member.0 as usize).and_then(Option::take) else {
            return;
        };
        self.len -= 1;
        let Some(tier) = self.tiers.get_mut(&penalty) else { return };
        tier.ordered.remove(&(key, member));
        tier.list.swap_remove(index as usize);
        if let Some(&moved) = tier.list.get(index as usize)
            && let Some(Some((_, _, moved_index))) = self.slots.get_mut(moved.0 as usize)
        {
            *moved_index = index;
        }
        if tier.list.is_empty() {
            self.tiers.remove(&penalty);
        }
    }
}

/// The free members one caller may be offered, as a strategy sees them: tiers in
/// ascending penalty, members the caller cannot have left out.
pub struct Candidates<'a> {
    pub(crate) free: &'a FreeMembers,
    /// Tiers above this penalty are not open to the caller yet.
    pub(crate) max_penalty: u32,
    /// Only this tier (the rest of a ring-all round).
    pub(crate) only_tier: Option<u32>,
    /// False when the caller needs no skills: every free member qualifies.
    pub(crate) filtered: bool,
    pub(crate) qualifies: &'a dyn Fn(MemberId) -> bool,
    /// Sum of the member's levels on the caller's required skills.
    pub(crate) skill_score: &'a dyn Fn(MemberId) -> u32,
    /// The key of the last member offered to this caller in this queue.
    pub caller_cursor: Option<OrderKey>,
}

impl Candidates<'_> {
    fn open_tiers(&self) -> impl Iterator<Item = (u32, &FreeTier)> {
        let range = match self.only_tier {
            Some(tier) => (Bound::Included(tier), Bound::Included(tier)),
            None => (Bound::Unbounded, Bound::Included(self.max_penalty)),
        };
        self.free.tiers.range(range).map(|(penalty, tier)| (*penalty, tier))
    }

    fn qualifies(&self, member: MemberId) -> bool {
        !self.filtered || (self.qualifies)(member)
    }

    /// The member of this tier that qualifies, in key order.
    fn first_in(&self, tier: &FreeTier) -> Option<MemberId> {
        tier.ordered.iter().map(|&(_, member)| member).find(|&member| self.qualifies(member))
    }

    /// The first qualifying member in key order, lowest open tier first.
    pub fn first(&self) -> Option<MemberId> {
        self.open_tiers().find_map(|(_, tier)| self.first_in(tier))
    }

    /// In the lowest open tier with a qualifying member: the first after `cursor` in
    /// key order, wrapping around to the start.
    pub fn first_after(&self, cursor: OrderKey) -> Option<MemberId> {
        let after = (Bound::Excluded((cursor, MemberId(u32::MAX))), Bound::Unbounded);
        self.open_tiers().find_map(|(_, tier)| {
            let mut from_cursor = tier.ordered.range(after).map(|&(_, member)| member);
            from_cursor.find(|&member| self.qualifies(member)).or_else(|| self.first_in(tier))
        })
    }

    /// Uniformly at random from the lowest open tier with a qualifying member.
    pub fn random(&self, rng: &mut SmallRng) -> Option<MemberId> {
        self.open_tiers().find_map(|(_, tier)| self.random_in(tier, rng))
    }

    fn random_in(&self, tier: &FreeTier, rng: &mut SmallRng) -> Option<MemberId> {
        if tier.list.is_empty() {
            return None;
        }
        let start = rng.random_range(0..tier.list.len());
        // With a skill filter, the first qualifying member from a random start: close
        // to uniform, and never a scan of more than the tier.
        (0..tier.list.len()).map(|i| tier.list[(start + i) % tier.list.len()]).find(|&member| self.qualifies(member))
    }

    /// At random across all open tiers, a member of penalty p weighing 1 / (p + 1).
    pub fn weighted_random(&self, rng: &mut SmallRng) -> Option<MemberId> {
        let weight = |penalty: u32| 1.0 / (f64::from(penalty) + 1.0);
        if !self.filtered {
            let total: f64 = self.open_tiers().map(|(p, tier)| weight(p) * tier.list.len() as f64).sum();
            if total <= 0.0 {
                return None;
            }
            let mut point = rng.random_range(0.0..total);
            let mut last = None;
            for (penalty, tier) in self.open_tiers() {
                let mass = weight(penalty) * tier.list.len() as f64;
                last = Some(tier);
                if point < mass {
                    let index = ((point / weight(penalty)) as usize).min(tier.list.len() - 1);
                    return Some(tier.list[index]);
                }
                point -= mass;
            }
            return last.and_then(|tier| tier.list.last().copied());
        }
        let qualified: Vec<(MemberId, f64)> = self
            .open_tiers()
            .flat_map(|(penalty, tier)| tier.list.iter().map(move |&member| (member, weight(penalty))))
            .filter(|&(member, _)| self.qualifies(member))
            .collect();
        let total: f64 = qualified.iter().map(|(_, w)| w).sum();
        if qualified.is_empty() {
            return None;
        }
        let mut point = rng.random_range(0.0..total);
        for &(member, w) in &qualified {
            if point < w {
                return Some(member);
            }
            point -= w;
        }
        qualified.last().map(|&(member, _)| member)
    }

    /// In the lowest open tier with a qualifying member: the best skill match, ties in
    /// key order.
    pub fn best_skill_match(&self) -> Option<MemberId> {
        if !self.filtered {
            return self.first();
        }
        self.open_tiers().find_map(|(_, tier)| {
            let mut best: Option<(u32, MemberId)> = None;
            for &(_, member) in &tier.ordered {
                if !self.qualifies(member) {
                    continue;
                }
                let score = (self.skill_score)(member);
                if best.is_none_or(|(best_score, _)| score > best_score) {
                    best = Some((score, member));
                }
            }
            best.map(|(_, member)| member)
        })
    }

    /// Qualifying members in preference order (tiers, then keys), at most `max`.
    pub fn in_order(&self, max: usize) -> Vec<MemberId> {
        self.open_tiers()
            .flat_map(|(_, tier)| tier.ordered.iter().map(|&(_, member)| member))
            .filter(|&member| self.qualifies(member))
            .take(max)
            .collect()
    }

    /// The tier (penalty) of a free member.
    pub fn tier_of(&self, member: MemberId) -> Option<u32> {
        self.free.slots.get(member.0 as usize).copied().flatten().map(|(tier, _, _)| tier)
    }
}

#[derive(Debug)]
struct RingAll;

impl Strategy for RingAll {
    fn kind(&self) -> StrategyKind {
        StrategyKind::RingAll
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(0, facts.position)
    }
    fn ring(&self) -> Ring {
        Ring::All
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        candidates.first()
    }
}

/// Configured order; a caller's next round starts after the member it last rang.
#[derive(Debug)]
struct Linear;

impl Strategy for Linear {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Linear
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(0, facts.position)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        match candidates.caller_cursor {
            Some(cursor) => candidates.first_after(cursor),
            None => candidates.first(),
        }
    }
}

/// The queue remembers the last member offered and resumes after it.
#[derive(Debug)]
struct RoundRobin {
    /// Order by agent id (round-robin) or by configured position (rrordered).
    by_id: bool,
    last: Option<OrderKey>,
}

impl Strategy for RoundRobin {
    fn kind(&self) -> StrategyKind {
        if self.by_id { StrategyKind::RoundRobin } else { StrategyKind::RoundRobinOrdered }
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        let rank = if self.by_id { facts.id_rank } else { facts.position };
        OrderKey::new(0, rank)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        match self.last {
            Some(last) => candidates.first_after(last),
            None => candidates.first(),
        }
    }
    fn offered(&mut self, key: OrderKey) {
        self.last = Some(key);
    }
    fn memory(&self) -> Option<OrderKey> {
        self.last
    }
    fn restore(&mut self, memory: Option<OrderKey>) {
        self.last = memory;
    }
}

#[derive(Debug)]
struct LongestIdle;

impl Strategy for LongestIdle {
    fn kind(&self) -> StrategyKind {
        StrategyKind::LongestIdle
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(facts.idle_since_ns, facts.position)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        candidates.first()
    }
}

#[derive(Debug)]
struct FewestCalls;

impl Strategy for FewestCalls {
    fn kind(&self) -> StrategyKind {
        StrategyKind::FewestCalls
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(facts.calls, facts.position)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        candidates.first()
    }
}

#[derive(Debug)]
struct LeastTalkTime;

impl Strategy for LeastTalkTime {
    fn kind(&self) -> StrategyKind {
        StrategyKind::LeastTalkTime
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(facts.talk_ms, facts.position)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        candidates.first()
    }
}

#[derive(Debug)]
struct Random;

impl Strategy for Random {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Random
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(0, facts.position)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, rng: &mut SmallRng) -> Option<MemberId> {
        candidates.random(rng)
    }
}

#[derive(Debug)]
struct WeightedRandom;

impl Strategy for WeightedRandom {
    fn kind(&self) -> StrategyKind {
        StrategyKind::WeightedRandom
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(0, facts.position)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, rng: &mut SmallRng) -> Option<MemberId> {
        candidates.weighted_random(rng)
    }
}

#[derive(Debug)]
struct RingProgressively {
    every: Duration,
}

impl Strategy for RingProgressively {
    fn kind(&self) -> StrategyKind {
        StrategyKind::RingProgressively
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(0, facts.position)
    }
    fn ring(&self) -> Ring {
        Ring::Progressive(self.every)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        candidates.first()
    }
}

/// Best skill match, then longest idle (the key).
#[derive(Debug)]
struct Skills;

impl Strategy for Skills {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Skills
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        OrderKey::new(facts.idle_since_ns, facts.position)
    }
    fn pick(&mut self, candidates: &Candidates<'_>, _: &mut SmallRng) -> Option<MemberId> {
        candidates.best_skill_match()
    }
}

/// The router chooses; when it cannot, the fallback does (and orders the candidates).
#[derive(Debug)]
struct External {
    fallback: Box<dyn Strategy>,
}

impl Strategy for External {
    fn kind(&self) -> StrategyKind {
        StrategyKind::External
    }
    fn order_key(&self, facts: &MemberFacts) -> OrderKey {
        self.fallback.order_key(facts)
    }
    fn ring(&self) -> Ring {
        self.fallback.ring()
    }
    fn pick(&mut self, candidates: &Candidates<'_>, rng: &mut SmallRng) -> Option<MemberId> {
        self.fallback.pick(candidates, rng)
    }
    fn offered(&mut self, key: OrderKey) {
        self.fallback.offered(key);
    }
    fn memory(&self) -> Option<OrderKey> {
        self.fallback.memory()
    }
    fn restore(&mut self, memory: Option<OrderKey>) {
        self.fallback.restore(memory);
    }
    fn asks_router(&self) -> bool {
        true
    }
}
