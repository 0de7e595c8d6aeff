//! The bounded cache in front of a task's store, shared by time windows and sessions. Open
//! entries are the hot set (keys x open windows): reads hit the cache, changes mark entries
//! dirty, and at commit each dirty entry becomes one changelog record and one write of the task's
//! batch, however many records touched it. Clean entries are evicted when the cache is over its
//! budget; an entry is never evicted while dirty, so nothing uncommitted is lost to eviction.
//! Discarding the uncommitted work is clearing the cache: the store holds the committed state.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// One cached entry and whether it changed since the last commit.
#[derive(Debug, Clone)]
pub struct Cached<E> {
    value: E,
    dirty: bool,
}

impl<E> Cached<E> {
    pub fn get(&self) -> &E {
        &self.value
    }

    /// The entry, to change: it is written at the next commit.
    pub fn touch(&mut self) -> &mut E {
        self.dirty = true;
        &mut self.value
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

#[derive(Debug)]
pub struct DirtyCache<K, E> {
    map: HashMap<K, Cached<E>>,
    max_entries: usize,
}

impl<K: Eq + Hash + Clone, E> DirtyCache<K, E> {
    /// A cache of about `budget_bytes`, entries taking about `entry_bytes` each (at least 1,024
    /// entries, whatever the budget).
    pub fn new(budget_bytes: usize, entry_bytes: usize) -> Self {
        DirtyCache {
            map: HashMap::new(),
            max_entries: (budget_bytes / entry_bytes).max(1024),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut Cached<E>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key)
    }

    /// An entry as read from the store (clean).
    pub fn insert(&mut self, key: K, value: E) -> &mut Cached<E> {
        self.map.entry(key).or_insert(Cached {
            value,
            dirty: false,
        })
    }

    /// An entry changed without being read (a window closed): written at the next commit.
    pub fn put(&mut self, key: K, value: E) {
        self.map.insert(key, Cached { value, dirty: true });
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &Cached<E>)> {
        self.map.iter()
    }

    /// At commit: every dirty entry once, to `write` (which returns false for an entry that is
    /// gone, dropped from the cache once written); all entries are clean afterwards.
    pub fn commit(&mut self, mut write: impl FnMut(&K, &mut E) -> bool) {
        let mut gone = Vec::new();
        for (k, e) in self.map.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            if !write(k, &mut e.value) {
                gone.push(k.clone());
            }
        }
        for k in gone {
            self.map.remove(&k);
        }
    }

    /// Over budget: clean entries go until a quarter of the budget is free; `evicted` sees each.
    pub fn trim(&mut self, mut evicted: impl FnMut(&K, &E)) {
        if self.map.len() <= self.max_entries {
            return;
        }
        let target = self.max_entries * 3 / 4;
        let mut excess = self.map.len() - target;
        self.map.retain(|k, e| {
            if excess > 0 && !e.dirty {
                excess -= 1;
                evicted(k, &e.value);
                false
            } else {
                true
            }
        });
    }

    /// Forgets every entry (uncommitted changes with them).
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
