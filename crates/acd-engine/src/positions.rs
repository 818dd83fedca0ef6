//! Queue positions in O(log n): per priority, a Fenwick tree over slots handed out in
//! join order. A caller's position is the number of callers of higher priority plus
//! those of its priority in earlier slots. Slots are renumbered when a priority's
//! slots run out, which costs O(n) once per n joins.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::types::CallId;

#[derive(Debug, Default)]
pub(crate) struct Positions {
    levels: BTreeMap<Reverse<u8>, Level>,
}

#[derive(Debug)]
struct Level {
    /// Fenwick tree, 1-based, over `slots`.
    tree: Vec<u32>,
    slots: Vec<Option<CallId>>,
    live: usize,
}

impl Level {
    fn with_capacity(capacity: usize) -> Level {
        Level { tree: vec![0; capacity + 1], slots: Vec::with_capacity(capacity), live: 0 }
    }

    fn capacity(&self) -> usize {
        self.tree.len() - 1
    }

    fn add(&mut self, slot: usize, delta: i32) {
        let mut i = slot + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Live callers in slots before `slot`.
    fn before(&self, slot: usize) -> usize {
        let mut i = slot;
        let mut sum = 0usize;
        while i > 0 {
            sum += self.tree[i] as usize;
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

impl Positions {
    /// Adds a caller behind all callers of its priority. Returns its slot, and the
    /// callers whose slots were renumbered to make room.
    pub(crate) fn push(&mut self, priority: u8, call: CallId, renumbered: &mut Vec<(CallId, u32)>) -> u32 {
        let level = self.levels.entry(Reverse(priority)).or_insert_with(|| Level::with_capacity(16));
        if level.slots.len() == level.capacity() {
            let live: Vec<CallId> = level.slots.iter().flatten().copied().collect();
            *level = Level::with_capacity((live.len() * 2).max(16));
            for call in live {
                let slot = level.slots.len();
                level.slots.push(Some(call));
                level.add(slot, 1);
                level.live += 1;
                renumbered.push((call, slot as u32));
            }
        }
        let slot = level.slots.len();
        level.slots.push(Some(call));
        level.add(slot, 1);
        level.live += 1;
        slot as u32
    }

    pub(crate) fn remove(&mut self, priority: u8, slot: u32) {
        let Some(level) = self.levels.get_mut(&Reverse(priority)) else { return };
        let slot = slot as usize;
        if level.slots.get(slot).is_some_and(Option::is_some) {
            level.slots[slot] = None;
            level.add(slot, -1);
            level.live -= 1;
        }
        if level.live == 0 {
            self.levels.remove(&Reverse(priority));
        }
    }

    /// 1-based position of the caller in this priority and slot.
    pub(crate) fn position(&self, priority: u8, slot: u32) -> usize {
        let ahead: usize = self.levels.range(..Reverse(priority)).map(|(_, level)| level.live).sum();
        let own = self.levels.get(&Reverse(priority)).map_or(0, |level| level.before(slot as usize));
        ahead + own + 1
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.values().map(|level| level.live).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_priority_then_order_through_renumbering() {
        let mut positions = Positions::default();
        let mut slots: std::collections::HashMap<CallId, (u8, u32)> = std::collections::HashMap::new();
        let mut renumbered = Vec::new();
        for i in 0..100u64 {
            let priority = (i % 3) as u8;
            let slot = positions.push(priority, CallId(i), &mut renumbered);
            for (call, slot) in renumbered.drain(..) {
                slots.insert(call, (slots[&call].0, slot));
            }
            slots.insert(CallId(i), (priority, slot));
            if i % 4 == 0 {
                let (p, s) = slots.remove(&CallId(i / 2)).unwrap_or((9, 0));
                if p != 9 {
                    positions.remove(p, s);
                }
            }
        }
        let mut order: Vec<(Reverse<u8>, u64)> = slots.iter().map(|(c, (p, _))| (Reverse(*p), c.0)).collect();
        order.sort();
        assert_eq!(positions.len(), order.len());
        for (index, (Reverse(p), c)) in order.iter().enumerate() {
            let (_, slot) = slots[&CallId(*c)];
            assert_eq!(positions.position(*p, slot), index + 1, "call {c}");
        }
    }
}
