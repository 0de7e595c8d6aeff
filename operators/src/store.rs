//! Read access to a task's store, as the operators need it (writes go through the commit: an
//! operator hands its changes over in `take_dirty`).

#[cfg(feature = "rocksdb")]
use weir_state::Store;
use weir_state::{Entries, StoreError};

/// Read access to the task's store, as the operator needs it.
pub trait StoreAccess {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries with keys in `[from, to)`, in key order, at most `limit` of them.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, StoreError>;
    /// The first key at or after `from`.
    fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The last key strictly before `to`.
    fn last_key_before(&self, to: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

#[cfg(feature = "rocksdb")]
impl StoreAccess for Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Store::get(self, key)
    }
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, StoreError> {
        Store::scan(self, from, to, limit)
    }
    fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Store::first_key_from(self, from)
    }
    fn last_key_before(&self, to: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Store::last_key_before(self, to)
    }
}

#[cfg(test)]
pub(crate) mod mem {
    use super::*;
    use std::collections::BTreeMap;
    use weir_state::WriteOp;

    /// The store as the engine keeps it: writes land only at commit.
    #[derive(Default)]
    pub(crate) struct MemStore(pub BTreeMap<Vec<u8>, Vec<u8>>);

    impl StoreAccess for MemStore {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(key).cloned())
        }
        fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, StoreError> {
            Ok(self
                .0
                .range(from.to_vec()..to.to_vec())
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
        fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.range(from.to_vec()..).next().map(|(k, _)| k.clone()))
        }
        fn last_key_before(&self, to: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self
                .0
                .range(..to.to_vec())
                .next_back()
                .map(|(k, _)| k.clone()))
        }
    }

    impl MemStore {
        pub(crate) fn apply(&mut self, writes: Vec<WriteOp>) {
            for (k, v) in writes {
                match v {
                    Some(v) => self.0.insert(k, v),
                    None => self.0.remove(&k),
                };
            }
        }
    }
}
