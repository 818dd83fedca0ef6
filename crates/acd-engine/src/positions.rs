//! Queue positions in O(log n) per join, leave and look-up, with nothing ever renumbered
//! or rebuilt: the callers of a queue sit in an AVL tree ordered by (priority, join
//! order), each node counting the callers in its subtree. A caller's position is the
//! number of callers before it, plus one; a join or a leave changes one path of the tree.

use std::cmp::{Ordering, Reverse};

/// Where a caller stands: higher priority first, then join order.
type Key = (Reverse<u8>, u64);

type Link = Option<Box<Node>>;

#[derive(Debug)]
struct Node {
    key: Key,
    left: Link,
    right: Link,
    /// Callers in this subtree.
    size: u32,
    height: u8,
}

#[derive(Debug, Default)]
pub(crate) struct Positions {
    root: Link,
}

impl Positions {
    /// Adds a caller; `seq` orders callers of one priority (join order). Returns its
    /// 1-based position.
    pub(crate) fn insert(&mut self, priority: u8, seq: u64) -> usize {
        let mut before = 0;
        self.root = Some(insert(self.root.take(), (Reverse(priority), seq), &mut before));
        before as usize + 1
    }

    /// Removes a caller; returns the 1-based position it had, if it was there.
    pub(crate) fn remove(&mut self, priority: u8, seq: u64) -> Option<usize> {
        let mut before = None;
        self.root = remove(self.root.take(), (Reverse(priority), seq), 0, &mut before);
        before.map(|before| before as usize + 1)
    }

    /// 1-based position of the caller with this priority and join order.
    pub(crate) fn position(&self, priority: u8, seq: u64) -> usize {
        let key = (Reverse(priority), seq);
        let mut before = 0;
        let mut link = &self.root;
        while let Some(node) = link {
            match key.cmp(&node.key) {
                Ordering::Less => link = &node.left,
                Ordering::Greater => {
                    before += size(&node.left) + 1;
                    link = &node.right;
                }
                Ordering::Equal => {
                    before += size(&node.left);
                    break;
                }
            }
        }
        before as usize + 1
    }

    pub(crate) fn len(&self) -> usize {
        size(&self.root) as usize
    }
}

fn size(link: &Link) -> u32 {
    link.as_ref().map_or(0, |node| node.size)
}

fn height(link: &Link) -> u8 {
    link.as_ref().map_or(0, |node| node.height)
}

impl Node {
    fn update(&mut self) {
        self.size = size(&self.left) + size(&self.right) + 1;
        self.height = height(&self.left).max(height(&self.right)) + 1;
    }
}

fn rotate_right(mut node: Box<Node>) -> Box<Node> {
    let mut left = node.left.take().expect("a left child to rotate up");
    node.left = left.right.take();
    node.update();
    left.right = Some(node);
    left.update();
    left
}

fn rotate_left(mut node: Box<Node>) -> Box<Node> {
    let mut right = node.right.take().expect("a right child to rotate up");
    node.right = right.left.take();
    node.update();
    right.left = Some(node);
    right.update();
    right
}

/// Updates the node's counts and restores the AVL balance (subtree heights differ by at
/// most one) after one of its subtrees grew or shrank by one level.
fn rebalance(mut node: Box<Node>) -> Box<Node> {
    node.update();
    let (left, right) = (height(&node.left), height(&node.right));
    if left > right + 1 {
        if node.left.as_ref().is_some_and(|l| height(&l.right) > height(&l.left)) {
            node.left = node.left.take().map(rotate_left);
        }
        return rotate_right(node);
    }
    if right > left + 1 {
        if node.right.as_ref().is_some_and(|r| height(&r.left) > height(&r.right)) {
            node.right = node.right.take().map(rotate_right);
        }
        return rotate_left(node);
    }
    node
}

/// Inserts `key` under `link`, adding to `before` the nodes it passes on their right.
fn insert(link: Link, key: Key, before: &mut u32) -> Box<Node> {
    let Some(mut node) = link else {
        return Box::new(Node { key, left: None, right: None, size: 1, height: 1 });
    };
    match key.cmp(&node.key) {
        Ordering::Less => node.left = Some(insert(node.left.take(), key, before)),
        Ordering::Greater => {
            *before += size(&node.left) + 1;
            node.right = Some(insert(node.right.take(), key, before));
        }
        Ordering::Equal => {
            *before += size(&node.left);
            return node;
        }
    }
    rebalance(node)
}

/// Removes `key` from under `link`; `found` gets the number of nodes before it, counting
/// from `passed`, the nodes before this subtree.
fn remove(link: Link, key: Key, passed: u32, found: &mut Option<u32>) -> Link {
    let mut node = link?;
    match key.cmp(&node.key) {
        Ordering::Less => node.left = remove(node.left.take(), key, passed, found),
        Ordering::Greater => {
            let passed = passed + size(&node.left) + 1;
            node.right = remove(node.right.take(), key, passed, found);
        }
        Ordering::Equal => {
            *found = Some(passed + size(&node.left));
            let left = node.left.take();
            let Some(right) = node.right.take() else { return left };
            // The next caller in order takes the removed one's place.
            let (mut successor, rest) = take_first(right);
            successor.left = left;
            successor.right = rest;
            return Some(rebalance(successor));
        }
    }
    Some(rebalance(node))
}

/// Takes the first node out of a subtree: that node, and the rest of the subtree.
fn take_first(mut node: Box<Node>) -> (Box<Node>, Link) {
    match node.left.take() {
        None => {
            let rest = node.right.take();
            (node, rest)
        }
        Some(left) => {
            let (first, rest) = take_first(left);
            node.left = rest;
            (first, Some(rebalance(node)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// Checks sizes, heights and balance; returns the subtree's (size, height).
    fn check(link: &Link) -> (u32, u8) {
        let Some(node) = link else { return (0, 0) };
        let (left_size, left_height) = check(&node.left);
        let (right_size, right_height) = check(&node.right);
        assert_eq!(node.size, left_size + right_size + 1);
        assert_eq!(node.height, left_height.max(right_height) + 1);
        assert!(left_height.abs_diff(right_height) <= 1, "unbalanced at {:?}", node.key);
        (node.size, node.height)
    }

    #[test]
    fn positions_follow_priority_then_join_order() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut positions = Positions::default();
        let mut model: BTreeSet<Key> = BTreeSet::new();
        for seq in 0..5_000u64 {
            let priority = rng.random_range(0..4u8);
            model.insert((Reverse(priority), seq));
            let position = model.range(..(Reverse(priority), seq)).count() + 1;
            assert_eq!(positions.insert(priority, seq), position);
            // Leave at random, a little less often than joining, so the queue grows.
            if rng.random_bool(0.45) {
                let i = rng.random_range(0..model.len());
                let key = *model.iter().nth(i).expect("in range");
                assert_eq!(positions.remove(key.0.0, key.1), Some(i + 1));
                model.remove(&key);
            }
            if seq % 500 == 0 {
                check(&positions.root);
                for (index, &(Reverse(priority), seq)) in model.iter().enumerate() {
                    assert_eq!(positions.position(priority, seq), index + 1);
                }
            }
        }
        assert_eq!(positions.len(), model.len());
        // Removing a caller that is not there changes nothing.
        assert_eq!(positions.remove(9, u64::MAX), None);
        assert_eq!(positions.len(), model.len());
        for (Reverse(priority), seq) in model {
            positions.remove(priority, seq);
        }
        assert_eq!(positions.len(), 0);
    }

    #[test]
    fn joins_in_order_keep_the_tree_shallow() {
        let mut positions = Positions::default();
        for seq in 0..100_000 {
            positions.insert(0, seq);
        }
        let (_, height) = check(&positions.root);
        // An AVL tree of n nodes is at most 1.44 log2(n) deep: 24 for 100,000.
        assert!(height <= 24, "height {height}");
        assert_eq!(positions.position(0, 99_999), 100_000);
    }
}
