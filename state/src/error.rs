//! What state reads and writes fail with, and what they carry (no RocksDB needed to name them).

#[derive(Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// Where an error's message starts quoting the data it failed on (see [`StoreError::summary`]).
pub const CONTENT_MARK: &str = ", key ";

impl StoreError {
    /// The message without the data it quotes (an example key): what `/readyz` may show.
    pub fn summary(&self) -> &str {
        self.0.split(CONTENT_MARK).next().unwrap_or(&self.0)
    }

    /// An error that says nothing about the data: the directory is locked (its previous owner
    /// has not let go yet), the process is out of file descriptors, memory or disk. Retry it;
    /// wiping the store would throw good state away.
    pub fn is_transient(&self) -> bool {
        const TRANSIENT: &[&str] = &[
            "lock hold by current process",
            "While lock file",
            "Resource temporarily unavailable",
            "Too many open files",
            "No space left on device",
            "Cannot allocate memory",
        ];
        TRANSIENT.iter().any(|t| self.0.contains(t))
    }
}

#[cfg(feature = "rocksdb")]
impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError(e.into_string())
    }
}

/// Store entries as (key, value) pairs.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One write of a batch: `Some` = put, `None` = delete.
pub type WriteOp = (Vec<u8>, Option<Vec<u8>>);
