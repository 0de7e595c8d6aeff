//! Local state of weir tasks: one RocksDB per task, a checkpoint file saying which changelog offset
//! the local state matches, and the memory shared by all the stores of a worker.
//!
//! # Layout
//! - `resources.rs`: the block cache and write-buffer manager shared by every store of a worker;
//! - `task_dir.rs`: `<state_dir>/<job>/<partition>/`, its `.lock`, wiping;
//! - `checkpoint.rs`: the checkpoint file (versioned, checksummed, tmp + fsync + rename, never backwards);
//! - `store.rs`: a task's RocksDB store: point reads, batched writes, range scans, size figures;
//! - `lifecycle.rs`: a task's state from opening (restore the tail, or wipe and replay all) to its
//!   checkpoints: the one place that decides and builds them;
//! - `changelog.rs`: how store entries travel in changelog records;
//! - `error.rs`: `StoreError` and the entry types.
//!
//! Feature `rocksdb` (on by default) brings the stores; without it (the fuzz targets) the crate
//! builds in seconds: checkpoints, changelog records and task directories only.

mod changelog;
mod checkpoint;
mod error;
#[cfg(feature = "rocksdb")]
mod lifecycle;
#[cfg(feature = "rocksdb")]
mod resources;
#[cfg(feature = "rocksdb")]
mod store;
mod task_dir;

pub use changelog::{
    decode_input_offsets, encode_input_offsets, written_by_committed_cycle, INPUT_OFFSETS_HEADER,
};
pub use checkpoint::{Checkpoint, CheckpointError, CHECKPOINT_FORMAT_VERSION};
pub use error::{Entries, StoreError, WriteOp, CONTENT_MARK};
#[cfg(feature = "rocksdb")]
pub use lifecycle::{CheckpointFailure, LocalState, OpenError, RestoreFrom};
#[cfg(feature = "rocksdb")]
pub use resources::SharedResources;
#[cfg(feature = "rocksdb")]
pub use store::{ReplayBatch, Store};
pub use task_dir::{LockError, TaskDir};
