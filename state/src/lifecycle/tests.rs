//! The restore decision and the checkpoint discipline, on real RocksDB stores in a temporary
//! directory (no Kafka).

use super::*;
use std::path::Path;

fn resources() -> SharedResources {
    SharedResources::new(8 << 20, 8 << 20)
}

fn open(root: &Path, bounds: (i64, i64)) -> (LocalState, RestoreFrom) {
    let dir = TaskDir::lock(root, "job", 0).expect("lock");
    LocalState::open(dir, "agg", &resources(), bounds).expect("open")
}

/// A store with one entry and a checkpoint at `at`, closed again.
fn checkpointed(root: &Path, at: i64) {
    let (mut s, _) = open(root, (0, at));
    s.write(&[(b"k".to_vec(), Some(b"v".to_vec()))]).unwrap();
    s.checkpoint_at(at, 7, || {}).unwrap();
}

#[test]
fn a_new_task_restores_everything_without_a_wipe() {
    let root = tempfile::tempdir().unwrap();
    let (s, from) = open(root.path(), (3, 10));
    assert_eq!(
        from,
        RestoreFrom::Everything {
            low: 3,
            wiped: false,
            why: "no checkpoint".into()
        }
    );
    assert_eq!(s.changelog_next(), 3);
    assert!(s.checkpoint().is_none());
}

#[test]
fn a_checkpointed_store_restores_only_the_tail() {
    let root = tempfile::tempdir().unwrap();
    checkpointed(root.path(), 42);
    let (s, from) = open(root.path(), (0, 50));
    assert_eq!(from, RestoreFrom::Tail(42));
    assert_eq!(s.store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(s.checkpoint().unwrap().input_offset, 7);
    // Compaction or retention removed the start of the changelog: the tail starts at its low end.
    drop(s);
    let (_, from) = open(root.path(), (45, 50));
    assert_eq!(from, RestoreFrom::Tail(45));
}

#[test]
fn an_untrusted_checkpoint_wipes_the_store() {
    for damage in ["corrupt", "other store", "missing"] {
        let root = tempfile::tempdir().unwrap();
        checkpointed(root.path(), 42);
        let path = root.path().join("job/0/checkpoint");
        let cp_path = TaskDir::lock(root.path(), "job", 0)
            .unwrap()
            .checkpoint_path();
        assert_eq!(cp_path, path, "the checkpoint's place");
        match damage {
            "corrupt" => std::fs::write(&path, b"WCKP garbage").unwrap(),
            "other store" => Checkpoint {
                changelog_offsets: [("other".to_string(), 42)].into(),
                input_offset: 7,
            }
            .write(&path, None)
            .unwrap(),
            _ => std::fs::remove_file(&path).unwrap(),
        }
        let (s, from) = open(root.path(), (0, 50));
        assert!(from.wiped(), "{damage}: {from:?}");
        assert_eq!(from.offset(), 0, "{damage}");
        assert!(s.store.is_empty(), "{damage}: the store was wiped");
        assert!(s.checkpoint().is_none());
    }
}

#[test]
fn a_checkpoint_beyond_the_changelog_end_means_it_was_recreated() {
    let root = tempfile::tempdir().unwrap();
    checkpointed(root.path(), 42);
    let (s, from) = open(root.path(), (0, 5));
    match &from {
        RestoreFrom::Everything {
            low: 0,
            wiped: true,
            why,
        } => {
            assert!(why.contains("recreated"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(s.store.is_empty());
    assert!(!s.dir.checkpoint_path().exists(), "the checkpoint is gone");
}

#[test]
fn a_damaged_rocksdb_is_wiped_and_made_again() {
    let root = tempfile::tempdir().unwrap();
    checkpointed(root.path(), 42);
    let db = root.path().join("job/0/db");
    let current = db.join("CURRENT");
    assert!(
        current.exists(),
        "{:?}",
        std::fs::read_dir(&db).unwrap().count()
    );
    std::fs::write(&current, b"MANIFEST-999999\n").unwrap();
    let (s, from) = open(root.path(), (0, 50));
    assert!(from.wiped(), "{from:?}");
    assert!(s.store.is_empty());
    assert!(s.checkpoint().is_none());
}

#[test]
fn checkpoints_never_go_backwards() {
    let root = tempfile::tempdir().unwrap();
    let (mut s, _) = open(root.path(), (0, 0));
    s.checkpoint_at(10, 100, || {}).unwrap();
    // Older delivery figures and an older input offset keep what the checkpoint already says.
    s.checkpoint_at(4, 50, || {}).unwrap();
    let cp = s.checkpoint().unwrap().clone();
    assert_eq!(cp.changelog_offsets["agg"], 10);
    assert_eq!(cp.input_offset, 100);
    assert_eq!(Checkpoint::read(&s.dir.checkpoint_path()).unwrap(), cp);
    assert!(s.unchanged(&[], 10));
    assert!(!s.unchanged(&[(b"k".to_vec(), None)], 10));
    assert!(!s.unchanged(&[], 11));
}

#[test]
fn distrusted_state_is_wiped_at_the_next_opening() {
    let root = tempfile::tempdir().unwrap();
    checkpointed(root.path(), 42);
    let (mut s, _) = open(root.path(), (0, 50));
    s.distrust().unwrap();
    drop(s);
    let (_, from) = open(root.path(), (0, 50));
    assert!(from.wiped());
}

/// A restore writes without the WAL; its checkpoint claims nothing a crash could take back: the
/// replayed entries are in SST files by then, and a WAL-logged write after it is logged again.
#[test]
fn a_checkpoint_after_a_replay_flushes_what_skipped_the_wal() {
    let root = tempfile::tempdir().unwrap();
    let (mut s, _) = open(root.path(), (0, 3));
    let mut batch = ReplayBatch::default();
    batch.put(b"a", b"1");
    batch.put(b"b", b"2");
    batch.delete(b"a");
    assert_eq!(batch.len(), 3);
    s.write_replayed(&mut batch).unwrap();
    assert!(batch.is_empty(), "a written batch starts again empty");
    assert_eq!(
        s.store.memtable_entries(),
        3,
        "replayed entries wait in memory"
    );
    s.checkpoint_at(3, 0, || {}).unwrap();
    assert_eq!(s.store.memtable_entries(), 0, "the checkpoint flushed them");
    assert_eq!(s.store.get(b"a").unwrap(), None);
    assert_eq!(s.store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    // Later commits are logged and synced as before: no flush per checkpoint.
    s.write(&[(b"c".to_vec(), Some(b"3".to_vec()))]).unwrap();
    s.checkpoint_at(4, 1, || {}).unwrap();
    assert_eq!(s.store.memtable_entries(), 1);
}
