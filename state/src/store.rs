//! A task's RocksDB store. Writes arrive in batches (one WriteBatch per commit or per restore chunk);
//! the WAL is synced before a checkpoint claims the data. A restore's writes skip the WAL (the
//! changelog can replay them from the previous checkpoint) and are flushed to SST files instead.

use crate::{Entries, SharedResources, StoreError};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::path::{Path, PathBuf};

pub struct Store {
    db: DB,
    path: PathBuf,
}

/// Changelog records on their way into a store, copied once into RocksDB's batch buffer (no
/// allocation per record). Written with [`Store::write_replayed`].
#[derive(Default)]
pub struct ReplayBatch {
    batch: WriteBatch,
}

impl ReplayBatch {
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.batch.put(key, value);
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.batch.delete(key);
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path`. A store RocksDB cannot open (damaged files)
    /// is reported, so the caller can wipe it and restore from the changelog.
    pub fn open(path: &Path, resources: &SharedResources) -> Result<Store, StoreError> {
        let db = DB::open(&resources.db_options(), path)
            .map_err(|e| StoreError(format!("opening {}: {}", path.display(), e.into_string())))?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Deletes the store's files and opens it again, empty.
    pub fn wipe(self, resources: &SharedResources) -> Result<Store, StoreError> {
        let path = self.path.clone();
        drop(self);
        Self::destroy(&path)?;
        Self::open(&path, resources)
    }

    /// Removes a store's files without opening it (for stores too damaged to open).
    pub fn destroy(path: &Path) -> Result<(), StoreError> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError(format!("removing {}: {e}", path.display())))
            }
            _ => Ok(()),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?)
    }

    pub fn is_empty(&self) -> bool {
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        !it.valid()
    }

    /// Applies every write in one atomic batch.
    pub fn write<'a>(
        &self,
        ops: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        Ok(self.db.write_opt(batch, &opts)?)
    }

    /// Makes every write so far durable (WAL synced), before a checkpoint claims them.
    pub fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.flush_wal(true)?)
    }

    /// Writes replayed changelog records without the WAL and empties the batch. They are lost
    /// in a crash until [`Store::flush`]; the restore that wrote them then starts again from the
    /// checkpoint before it, and replaying a changelog twice gives the same state.
    pub fn write_replayed(&self, batch: &mut ReplayBatch) -> Result<(), StoreError> {
        let b = std::mem::take(&mut batch.batch);
        if b.is_empty() {
            return Ok(());
        }
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        Ok(self.db.write_opt(b, &opts)?)
    }

    /// Writes every memtable to SST files (waiting for it): writes without the WAL are durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        Ok(self.db.flush()?)
    }

    /// Entries with keys in `[from, to)`, in key order, at most `limit` of them.
    pub fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator();
        it.seek(from);
        while it.valid() && out.len() < limit {
            let key = it.key().expect("valid iterator has a key");
            if key >= to {
                break;
            }
            out.push((
                key.to_vec(),
                it.value().expect("valid iterator has a value").to_vec(),
            ));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The first key at or after `from`, reading one entry.
    pub fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut it = self.db.raw_iterator();
        it.seek(from);
        let key = it
            .valid()
            .then(|| it.key().expect("valid iterator has a key").to_vec());
        it.status()?;
        Ok(key)
    }

    /// The last key strictly before `to`, reading one or two entries.
    pub fn last_key_before(&self, to: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut it = self.db.raw_iterator();
        it.seek_for_prev(to);
        if it.valid() && it.key() == Some(to) {
            it.prev();
        }
        let key = it
            .valid()
            .then(|| it.key().expect("valid iterator has a key").to_vec());
        it.status()?;
        Ok(key)
    }

    /// Estimated live data size in bytes (RocksDB's estimate).
    pub fn estimated_size_bytes(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.estimate-live-data-size")
            .ok()
            .flatten()
            .unwrap_or(0)
            + self
                .db
                .property_int_value("rocksdb.cur-size-all-mem-tables")
                .ok()
                .flatten()
                .unwrap_or(0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries in memtables, which only the WAL (or a flush) keeps across a crash.
    #[cfg(test)]
    pub(crate) fn memtable_entries(&self) -> u64 {
        [
            "rocksdb.num-entries-active-mem-table",
            "rocksdb.num-entries-imm-mem-tables",
        ]
        .iter()
        .filter_map(|p| self.db.property_int_value(*p).ok().flatten())
        .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_open_twice_is_a_transient_error_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let res = SharedResources::new(8 << 20, 8 << 20);
        let _open = Store::open(&dir.path().join("db"), &res).unwrap();
        let err = Store::open(&dir.path().join("db"), &res).err().unwrap();
        assert!(err.is_transient(), "{err}");
        assert!(!StoreError("Corruption: bad block".into()).is_transient());
    }

    #[test]
    fn batched_writes_scans_and_wipe() {
        let dir = tempfile::tempdir().unwrap();
        let res = SharedResources::new(8 << 20, 8 << 20);
        let store = Store::open(&dir.path().join("db"), &res).unwrap();
        assert!(store.is_empty());
        store
            .write([
                (&b"a1"[..], Some(&b"x"[..])),
                (b"a2", Some(b"y")),
                (b"b1", Some(b"z")),
            ])
            .unwrap();
        store.write([(&b"a2"[..], None)]).unwrap();
        store.sync().unwrap();
        assert_eq!(store.get(b"a1").unwrap().as_deref(), Some(&b"x"[..]));
        let keys: Vec<Vec<u8>> = store
            .scan(b"a", b"b", usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a1".to_vec()]);
        assert_eq!(
            store.first_key_from(b"a2").unwrap().as_deref(),
            Some(&b"b1"[..])
        );
        assert_eq!(
            store.last_key_before(b"b1").unwrap().as_deref(),
            Some(&b"a1"[..])
        );
        assert_eq!(
            store.last_key_before(b"c").unwrap().as_deref(),
            Some(&b"b1"[..])
        );
        assert_eq!(store.last_key_before(b"a1").unwrap(), None);
        let store = store.wipe(&res).unwrap();
        assert!(store.is_empty());
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let res = SharedResources::new(8 << 20, 8 << 20);
        {
            let store = Store::open(&dir.path().join("db"), &res).unwrap();
            store.write([(&b"k"[..], Some(&b"v"[..]))]).unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(&dir.path().join("db"), &res).unwrap();
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
