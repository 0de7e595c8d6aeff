//! Changelog records: key = the store key, value = the full new value (never a delta), or a
//! tombstone (no value) when the entry is deleted. Replaying any suffix twice is harmless.

/// Stored in a record header so a reader can refuse values written in an encoding it does not know.
pub const CHANGELOG_VALUE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct ChangelogRecord {
    pub key: Vec<u8>,
    /// `None` = tombstone.
    pub value: Option<Vec<u8>>,
}
