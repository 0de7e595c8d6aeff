//! The checkpoint file: which changelog offset a task's local state matches, and the input offset
//! it was taken with. Written as tmp file, fsync, rename, fsync of the directory; its offsets never
//! go backwards. A missing or unreadable checkpoint means the local state is untrusted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Bumped whenever the file layout or the store's value encoding changes; a checkpoint of another
/// version is treated as missing (wipe and restore).
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 4] = b"WCKP";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Checkpoint {
    /// Per store: the next changelog offset to restore from (everything before it is in the store).
    pub changelog_offsets: BTreeMap<String, i64>,
    /// The input offset committed with this state (next offset to process).
    pub input_offset: i64,
}

#[derive(Debug)]
pub enum CheckpointError {
    Missing,
    Corrupt(String),
    OtherVersion(u32),
    Io(std::io::Error),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Missing => write!(f, "no checkpoint"),
            CheckpointError::Corrupt(why) => write!(f, "corrupt checkpoint: {why}"),
            CheckpointError::OtherVersion(v) => write!(
                f,
                "checkpoint of format version {v}, expected {CHECKPOINT_FORMAT_VERSION}"
            ),
            CheckpointError::Io(e) => write!(f, "checkpoint: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::Missing)
            }
            Err(e) => return Err(CheckpointError::Io(e)),
        };
        Checkpoint::decode(&bytes)
    }

    /// The file's bytes: magic, format version, bincode body (nothing after it), CRC32 of the body.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        use bincode::Options;
        if bytes.len() < 12 || &bytes[..4] != MAGIC {
            return Err(CheckpointError::Corrupt("bad header".into()));
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        if version != CHECKPOINT_FORMAT_VERSION {
            return Err(CheckpointError::OtherVersion(version));
        }
        let (body, crc) = bytes[8..].split_at(bytes.len() - 12);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(CheckpointError::Corrupt("checksum mismatch".into()));
        }
        // The layout of `bincode::serialize`, refusing bytes after the body.
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(body.len() as u64)
            .deserialize(body)
            .map_err(|e| CheckpointError::Corrupt(e.to_string()))
    }

    /// The bytes `decode` reads.
    pub fn encode(&self) -> Vec<u8> {
        let body = bincode::serialize(self).expect("a checkpoint serialises");
        let mut bytes = Vec::with_capacity(body.len() + 12);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes
    }

    /// Writes the checkpoint durably, refusing to move any offset backwards.
    pub fn write(&self, path: &Path, previous: Option<&Checkpoint>) -> Result<(), CheckpointError> {
        if let Some(prev) = previous {
            let back = prev.input_offset > self.input_offset
                || prev.changelog_offsets.iter().any(|(store, off)| {
                    self.changelog_offsets
                        .get(store)
                        .is_some_and(|new| new < off)
                });
            if back {
                return Err(CheckpointError::Corrupt(format!(
                    "refusing to move a checkpoint backwards: {prev:?} -> {self:?}"
                )));
            }
        }
        let bytes = self.encode();
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(CheckpointError::Io)?;
        file.write_all(&bytes).map_err(CheckpointError::Io)?;
        file.sync_all().map_err(CheckpointError::Io)?;
        std::fs::rename(&tmp, path).map_err(CheckpointError::Io)?;
        if let Some(dir) = path.parent() {
            crate::task_dir::sync_dir(dir).map_err(CheckpointError::Io)?;
        }
        Ok(())
    }

    pub fn delete(path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(input: i64, changelog: i64) -> Checkpoint {
        Checkpoint {
            changelog_offsets: [("hourly".to_string(), changelog)].into(),
            input_offset: input,
        }
    }

    #[test]
    fn round_trips_and_detects_every_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        assert!(matches!(
            Checkpoint::read(&path),
            Err(CheckpointError::Missing)
        ));
        sample(10, 20).write(&path, None).unwrap();
        assert_eq!(Checkpoint::read(&path).unwrap(), sample(10, 20));

        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Checkpoint::read(&path),
            Err(CheckpointError::Corrupt(_))
        ));

        bytes[4] = 99;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Checkpoint::read(&path),
            Err(CheckpointError::OtherVersion(99))
        ));

        std::fs::write(&path, b"WCK").unwrap();
        assert!(matches!(
            Checkpoint::read(&path),
            Err(CheckpointError::Corrupt(_))
        ));
    }

    #[test]
    fn offsets_never_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        let first = sample(10, 20);
        first.write(&path, None).unwrap();
        assert!(sample(9, 20).write(&path, Some(&first)).is_err());
        assert!(sample(10, 19).write(&path, Some(&first)).is_err());
        sample(11, 25).write(&path, Some(&first)).unwrap();
        assert_eq!(Checkpoint::read(&path).unwrap().input_offset, 11);
    }
}
