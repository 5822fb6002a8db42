//! `JOB/.lock`: an exclusive `flock` held while a lifecycle command works on a job, so
//! that a second process on the same job stops at once with a clear message instead of
//! racing the first (two submits could both create a batch for one shard).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file's name inside the job directory.
pub const LOCK_NAME: &str = ".lock";

/// Held while alive; the kernel drops the lock when the process ends, however it ends
/// (kill -9 included), so a stale lock never blocks the next run.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    path: PathBuf,
}

impl JobLock {
    /// Takes the job's lock without waiting; an error naming the job when another
    /// process holds it.
    pub fn acquire(job: &Path) -> Result<JobLock> {
        let path = job.join(LOCK_NAME);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(Error::Other(format!(
                        "{}: another batchline process is working on this job (it holds {}); \
                         wait for it to finish or stop it, then run this again",
                        job.display(),
                        path.display()
                    )));
                }
                return Err(Error::io(&path, err));
            }
        }
        Ok(JobLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_job_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = JobLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open in the same
        // process conflicts just as another process would.
        let err = JobLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another batchline process"), "{err}");
        drop(first);
        JobLock::acquire(dir.path()).unwrap();
    }
}
