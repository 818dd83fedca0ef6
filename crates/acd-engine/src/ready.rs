//! A queue's ready callers, in classes by the skills they need, each class in (priority,
//! join order). Each member keeps the list of the classes its agent has the skills for,
//! so that a freed agent looks only at callers it can take, however many distinct sets
//! of skills the waiting callers need. Making or dropping a class visits every member of
//! the queue once, so a class left without callers is kept for the next caller that
//! needs the same skills, as long as such classes are not too many.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::engine::SkillId;
use crate::strategy::MemberId;
use crate::types::CallId;

/// Where a ready caller stands in its class: higher priority first, then join order.
pub(crate) type ReadyKey = (Reverse<u8>, u64);

/// Classes without callers kept beyond the number of classes with callers. In a queue
/// whose agents are free, every caller's class empties as soon as it is offered.
const SPARE_EMPTY_CLASSES: usize = 64;

#[derive(Debug)]
pub(crate) struct ReadyClass {
    pub(crate) skills: Box<[SkillId]>,
    pub(crate) callers: BTreeMap<ReadyKey, CallId>,
}

#[derive(Debug)]
pub(crate) struct ReadyCallers {
    /// Classes by slot; a slot left None is taken by the next new class.
    classes: Vec<Option<ReadyClass>>,
    free_slots: Vec<u32>,
    slot_of: HashMap<Box<[SkillId]>, u32>,
    /// Per member: the slots of the classes whose skills its agent has.
    member_classes: Vec<Vec<u32>>,
    /// Slots of the classes without callers.
    empty: BTreeSet<u32>,
    len: usize,
}

impl ReadyCallers {
    pub(crate) fn new(members: usize) -> ReadyCallers {
        ReadyCallers {
            classes: Vec::new(),
            free_slots: Vec::new(),
            slot_of: HashMap::new(),
            member_classes: vec![Vec::new(); members],
            empty: BTreeSet::new(),
            len: 0,
        }
    }

    /// Ready callers in all classes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds a caller that needs `skills`. `qualifies(member, skills)`: the member's agent
    /// has every one of them; asked only when the class is new.
    pub(crate) fn insert(
        &mut self,
        skills: &[SkillId],
        key: ReadyKey,
        call: CallId,
        qualifies: impl Fn(MemberId, &[SkillId]) -> bool,
    ) {
        let slot = match self.slot_of.get(skills) {
            Some(&slot) => slot,
            None => self.add_class(skills, qualifies),
        };
        self.empty.remove(&slot);
        if let Some(class) = &mut self.classes[slot as usize]
            && class.callers.insert(key, call).is_none()
        {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, skills: &[SkillId], key: ReadyKey) {
        let Some(&slot) = self.slot_of.get(skills) else { return };
        let Some(class) = &mut self.classes[slot as usize] else { return };
        if class.callers.remove(&key).is_some() {
            self.len -= 1;
        }
        if class.callers.is_empty() && self.empty.insert(slot) {
            let with_callers = self.slot_of.len() - self.empty.len();
            while self.empty.len() > with_callers + SPARE_EMPTY_CLASSES {
                let Some(slot) = self.empty.pop_first() else { break };
                self.remove_class(slot);
            }
        }
    }

    /// The classes whose skills the member's agent has.
    pub(crate) fn classes_of(&self, member: MemberId) -> impl Iterator<Item = &ReadyClass> {
        let slots = self.member_classes.get(member.0 as usize).map_or(&[][..], Vec::as_slice);
        slots.iter().filter_map(|&slot| self.classes[slot as usize].as_ref())
    }

    fn add_class(&mut self, skills: &[SkillId], qualifies: impl Fn(MemberId, &[SkillId]) -> bool) -> u32 {
        let class = Some(ReadyClass { skills: skills.into(), callers: BTreeMap::new() });
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.classes[slot as usize] = class;
                slot
            }
            None => {
                self.classes.push(class);
                (self.classes.len() - 1) as u32
            }
        };
        self.slot_of.insert(skills.into(), slot);
        for (m, classes) in self.member_classes.iter_mut().enumerate() {
            if qualifies(MemberId(m as u32), skills) {
                classes.push(slot);
            }
        }
        slot
    }

    fn remove_class(&mut self, slot: u32) {
        let Some(class) = self.classes[slot as usize].take() else { return };
        self.slot_of.remove(&class.skills);
        self.free_slots.push(slot);
        for classes in &mut self.member_classes {
            if let Some(i) = classes.iter().position(|&s| s == slot) {
                classes.swap_remove(i);
            }
        }
    }

    /// For the engine's invariants: every member lists exactly the classes it qualifies
    /// for, and the counts of callers and of empty classes are right.
    pub(crate) fn check(&self, qualifies: impl Fn(MemberId, &[SkillId]) -> bool) -> Result<(), String> {
        let callers: usize = self.classes.iter().flatten().map(|class| class.callers.len()).sum();
        if callers != self.len {
            return Err(format!("{callers} ready callers in classes, {} counted", self.len));
        }
        let slots = self.classes.iter().enumerate().filter_map(|(slot, class)| Some((slot as u32, class.as_ref()?)));
        let empty: BTreeSet<u32> = slots.filter(|(_, class)| class.callers.is_empty()).map(|(slot, _)| slot).collect();
        if empty != self.empty {
            return Err(format!("empty classes {empty:?}, listed {:?}", self.empty));
        }
        if self.empty.len() > self.slot_of.len() - self.empty.len() + SPARE_EMPTY_CLASSES {
            return Err(format!("{} empty classes of {}", self.empty.len(), self.slot_of.len()));
        }
        for (m, classes) in self.member_classes.iter().enumerate() {
            let member = MemberId(m as u32);
            for (slot, class) in self.classes.iter().enumerate() {
                let Some(class) = class else { continue };
                let listed = classes.contains(&(slot as u32));
                if listed != qualifies(member, &class.skills) {
                    return Err(format!("member {m}: class {:?} listed {listed}", class.skills));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_list_the_classes_they_can_serve_and_empty_classes_are_kept_a_while() {
        // Member 0 has skills 1 and 2, member 1 has skill 2, member 2 none.
        let agent_skills: [&[u16]; 3] = [&[1, 2], &[2], &[]];
        let qualifies =
            |m: MemberId, skills: &[SkillId]| skills.iter().all(|skill| agent_skills[m.0 as usize].contains(&skill.0));
        let set = |ids: &[u16]| ids.iter().map(|&id| SkillId(id)).collect::<Vec<_>>();
        let listed = |ready: &ReadyCallers, m: u32| {
            let mut sets: Vec<Vec<u16>> =
                ready.classes_of(MemberId(m)).map(|class| class.skills.iter().map(|s| s.0).collect()).collect();
            sets.sort();
            sets
        };
        let mut ready = ReadyCallers::new(3);
        ready.insert(&set(&[]), (Reverse(0), 1), CallId(1), qualifies);
        ready.insert(&set(&[1, 2]), (Reverse(0), 2), CallId(2), qualifies);
        ready.insert(&set(&[2]), (Reverse(1), 3), CallId(3), qualifies);
        ready.insert(&set(&[2]), (Reverse(0), 4), CallId(4), qualifies);
        assert_eq!(ready.len(), 4);
        assert_eq!(listed(&ready, 0), vec![vec![], vec![1, 2], vec![2]]);
        assert_eq!(listed(&ready, 1), vec![vec![], vec![2]]);
        assert_eq!(listed(&ready, 2), vec![Vec::<u16>::new()]);
        ready.check(qualifies).unwrap();

        // The last caller of {1, 2} goes: its class stays, for the next such caller.
        ready.remove(&set(&[1, 2]), (Reverse(0), 2));
        ready.remove(&set(&[2]), (Reverse(1), 3));
        assert_eq!(listed(&ready, 0), vec![vec![], vec![1, 2], vec![2]]);
        ready.insert(&set(&[1, 2]), (Reverse(0), 5), CallId(5), |_, _| panic!("the class is there"));
        assert_eq!(ready.len(), 3);
        ready.check(qualifies).unwrap();

        // Empty classes are dropped once they outnumber the others by the spare allowance.
        for call in 0..2 * SPARE_EMPTY_CLASSES as u16 {
            let key = (Reverse(0), 100 + u64::from(call));
            ready.insert(&set(&[10 + call]), key, CallId(key.1), qualifies);
            ready.remove(&set(&[10 + call]), key);
            ready.check(qualifies).unwrap();
        }
        // Three classes have callers ({}, {1, 2}, {2}); as many empty ones, plus the spare.
        assert_eq!(ready.slot_of.len(), 3 + 3 + SPARE_EMPTY_CLASSES);
        assert_eq!(ready.classes.len(), 3 + 3 + SPARE_EMPTY_CLASSES + 1, "freed slots are reused");
        assert_eq!(listed(&ready, 1), vec![vec![], vec![2]]);
    }
}
