//! Group commit: one device flush shared by every instance that is ready for it.
//!
//! An acknowledgement needs its spool file's bytes and name on the card. A flush
//! of the whole filesystem (`syncfs`) gives both in one journal commit and one
//! device flush, the same work a single `fsync` costs, so one call is the physical
//! floor for one instance; and instances of several associations that are waiting
//! at the same moment share it. A caller joins the batch being gathered; the first
//! caller to find no flush running leads it, and everyone who joined before the
//! leader started is answered by that one flush. Someone who arrives while a flush
//! runs waits for the next one, since the running one may have missed their writes.
//!
//! `syncfs` reports write-back errors since Linux 5.8 (`check_kernel`); an error
//! fails every instance of the batch, which are then refused, never acknowledged.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// The flush result a batch's callers share (`io::Error` is not `Clone`).
type Shared = Result<(), (io::ErrorKind, Option<i32>, String)>;

type Flush = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

#[derive(Default)]
struct Batch {
    result: OnceLock<Shared>,
}

struct State {
    gathering: Arc<Batch>,
    flushing: bool,
}

/// Flushes shared by concurrent committers.
pub struct GroupCommit {
    flush: Flush,
    state: Mutex<State>,
    finished: Condvar,
}

impl GroupCommit {
    /// Group commit by `syncfs` on the filesystem that holds `dir`.
    pub fn syncfs(dir: &Path) -> io::Result<GroupCommit> {
        check_kernel(&kernel_release())?;
        let dir = File::open(dir)?;
        Ok(GroupCommit::new(Box::new(move || {
            // SAFETY: a plain syscall on a descriptor we own.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })))
    }

    fn new(flush: Flush) -> GroupCommit {
        GroupCommit {
            flush,
            state: Mutex::new(State {
                gathering: Arc::default(),
                flushing: false,
            }),
            finished: Condvar::new(),
        }
    }

    /// Returns once everything written before the call is durable.
    pub fn sync(&self) -> io::Result<()> {
        let mut state = self.state.lock().expect("group commit lock");
        let mine = state.gathering.clone();
        loop {
            if let Some(result) = mine.result.get() {
                return result.clone().map_err(|(kind, code, text)| match code {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(kind, text),
                });
            }
            if state.flushing {
                state = self.finished.wait(state).expect("group commit lock");
                continue;
            }
            // No flush runs, so `mine` is still the batch being gathered: lead it.
            state.flushing = true;
            let batch = std::mem::take(&mut state.gathering);
            drop(state);
            let result = (self.flush)().map_err(|e| (e.kind(), e.raw_os_error(), e.to_string()));
            let _ = batch.result.set(result);
            state = self.state.lock().expect("group commit lock");
            state.flushing = false;
            self.finished.notify_all();
        }
    }
}

/// The running kernel's release, as `uname -r` prints it.
fn kernel_release() -> String {
    // SAFETY: uname fills the struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return String::new();
    }
    // SAFETY: the kernel NUL-terminates the release field.
    unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Refuses a kernel whose `syncfs` would not report a failed write (before 5.8):
/// an acknowledgement must never rest on a flush that can fail silently.
fn check_kernel(release: &str) -> io::Result<()> {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version >= (5, 8) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "this kernel ({release}) is older than Linux 5.8, whose syncfs reports failed writes; \
             uplink acknowledges instances only on flushes that report failures, so it needs 5.8 or later"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn kernels_before_5_8_are_refused() {
        assert!(check_kernel("6.1.0-27-arm64").is_ok());
        assert!(check_kernel("5.8.0").is_ok());
        assert!(check_kernel("6.18.44-fc-v857").is_ok());
        let old = check_kernel("5.4.0-150-generic").unwrap_err().to_string();
        assert!(
            old.contains("5.4.0-150-generic") && old.contains("5.8"),
            "{old}"
        );
        assert!(check_kernel("").is_err());
        assert!(
            check_kernel(&kernel_release()).is_ok(),
            "this machine's kernel"
        );
    }

    /// Callers waiting together share flushes; none returns before a flush that
    /// started after it arrived has finished.
    #[test]
    fn concurrent_callers_share_flushes_that_began_after_they_arrived() {
        let started = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicU64::new(0));
        let (s, f) = (started.clone(), finished.clone());
        let group = Arc::new(GroupCommit::new(Box::new(move || {
            s.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            f.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (group, started, finished) = (group.clone(), started.clone(), finished.clone());
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let before = started.load(Ordering::SeqCst);
                        group.sync().unwrap();
                        // A flush that started after this caller arrived has ended.
                        assert!(finished.load(Ordering::SeqCst) > before);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        let flushes = finished.load(Ordering::SeqCst);
        assert!(flushes < 80, "80 commits took {flushes} flushes");
        assert!(flushes >= 10, "each caller waited for its own flushes");
    }

    #[test]
    fn a_failed_flush_fails_every_caller_of_its_batch() {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let group = GroupCommit::new(Box::new(move || {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(())
            }
        }));
        assert_eq!(group.sync().unwrap_err().raw_os_error(), Some(libc::EIO));
        group.sync().unwrap();
    }

    #[test]
    fn syncfs_flushes_this_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupCommit::syncfs(dir.path()).unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        group.sync().unwrap();
    }
}
