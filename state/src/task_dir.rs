//! A task's directory, `<state_dir>/<job>/<partition>/`, locked by one process at a time.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum LockError {
    /// Another process holds the task directory.
    Busy(PathBuf),
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy(p) => write!(f, "{} is locked by another weir process", p.display()),
            LockError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for LockError {}

/// A locked task directory. The lock (`flock` on `.lock`) is released when this is dropped, and by
/// the kernel when the process dies, so a killed worker never leaves a stale lock behind.
pub struct TaskDir {
    path: PathBuf,
    _lock: File,
}

impl TaskDir {
    pub fn lock(state_dir: &Path, job: &str, partition: i32) -> Result<TaskDir, LockError> {
        let path = state_dir.join(job).join(partition.to_string());
        std::fs::create_dir_all(&path).map_err(|e| LockError::Io(path.clone(), e))?;
        let lock_path = path.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LockError::Io(lock_path.clone(), e))?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                LockError::Busy(path)
            } else {
                LockError::Io(lock_path, err)
            });
        }
        Ok(TaskDir { path, _lock: file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Locks the directory, asking again a few times: its previous owner in this process (a
    /// revoked task still closing) or another process on the host may hold it for a moment.
    pub fn lock_patiently(
        state_dir: &Path,
        job: &str,
        partition: i32,
    ) -> Result<TaskDir, LockError> {
        let mut wait = std::time::Duration::from_millis(100);
        for _ in 0..5 {
            match TaskDir::lock(state_dir, job, partition) {
                Ok(d) => return Ok(d),
                Err(e) => tracing::warn!(partition, "{e}; trying again in {wait:?}"),
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
        TaskDir::lock(state_dir, job, partition)
    }

    pub fn db_path(&self) -> PathBuf {
        self.path.join("db")
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoint")
    }
}

/// fsync a directory, so that a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_task_is_refused_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let first = TaskDir::lock(root.path(), "job", 3).unwrap();
        assert!(first.path().ends_with("job/3"));
        assert!(matches!(
            TaskDir::lock(root.path(), "job", 3),
            Err(LockError::Busy(_))
        ));
        drop(first);
        assert!(TaskDir::lock(root.path(), "job", 3).is_ok());
    }
}
