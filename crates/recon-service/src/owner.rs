//! Who owns a temporary upload or a running job: host, process and application
//! instance. Lets a starting replica clean up after a crashed one without
//! touching the work of a live replica sharing the same data directory.
//!
//! Each live instance holds an exclusive `flock` on its lease file,
//! `owners/{instance}.lock` in the data directory, for as long as it runs.
//! On the same host (containers included: the kernel is shared even across
//! PID namespaces, where two replicas can both be pid 1) an instance is dead
//! exactly when its lease can be locked by someone else. The process id is
//! the fallback for work recorded without a lease file.
//!
//! [`Owner::liveness`] is the one judgement: a held lease means the instance
//! runs (its work is never taken from it), a free one that it is gone; what
//! cannot be told from here (another host, an unreadable lease, a pid that
//! may have been reused) is left to the caller, which judges by the age of
//! the work.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// The owner of a piece of in-progress work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// The host name (container name under Docker).
    pub host: String,
    /// The process id on that host.
    pub pid: u32,
    /// The application instance inside that process.
    pub instance: String,
}

/// An instance's hold on its lease file; dropping it releases the lease and
/// removes the file.
#[derive(Debug)]
pub struct Lease {
    /// Holds the lock: closing it releases the lease (`None` where the file
    /// system has no locks).
    file: Option<File>,
    path: Option<PathBuf>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
        // The lock goes with the descriptor.
        drop(self.file.take());
    }
}

/// Where the lease files of the instances using `data_dir` are.
pub fn leases_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("owners")
}

fn lease_path(leases: &Path, instance: &str) -> PathBuf {
    leases.join(format!("{instance}.lock"))
}

/// Every instance this process registered, and whether it is still live
/// (`false` once unregistered). An instance of this pid that is not here
/// belongs to another process reusing the pid (two containers, each pid 1).
fn live_instances() -> &'static Mutex<HashMap<String, bool>> {
    static LIVE: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// This machine's host name, or `localhost` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether `file` could be locked exclusively without waiting; the lock is
/// taken (and kept until the file is closed) when it could.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor this File owns; LOCK_NB never blocks.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// What a lease file says of its instance.
enum LeaseState {
    /// Locked by a live instance.
    Held,
    /// Present but lockable: its instance is gone.
    Free,
    /// No lease file (work recorded by an older recon, or an instance that
    /// ended normally and removed it).
    Missing,
    /// It could not be opened or locked: nothing can be told from it, and
    /// live work is never judged abandoned on a guess.
    Unchecked,
}

/// Checks the lease at `path` with one non-blocking `flock`; a lock taken is
/// released at once (the file is closed on return).
fn lease_state(path: &Path) -> LeaseState {
    match OpenOptions::new().read(true).open(path) {
        Ok(file) => match try_lock(&file) {
            Ok(true) => LeaseState::Free,
            Ok(false) => LeaseState::Held,
            Err(_) => LeaseState::Unchecked,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => LeaseState::Missing,
        Err(_) => LeaseState::Unchecked,
    }
}

/// What can be told from here of whether an owner's instance still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs: its lease is held on this host, or it is a live instance of
    /// this process. Its work is never judged abandoned.
    Alive,
    /// It is gone: its lease on this host is free, or (without a lease file)
    /// its process has exited, or it is an instance of this process no longer
    /// live. Gone for good, since an instance id is never reused.
    Gone,
    /// It cannot be told from here: it runs on another host, its lease could
    /// not be checked, or (without a lease file) a process with its pid
    /// exists, which may be another one reusing the pid (this process's pid
    /// included, for an instance it never registered). A caller judges its
    /// work by age instead.
    Unknown,
}

impl Owner {
    /// A new owner for an application instance in this process, registered
    /// as live and holding its lease file under `leases` (created if missing).
    ///
    /// # Errors
    /// When the lease file cannot be created or locked.
    pub fn register(leases: &Path) -> io::Result<(Self, Lease)> {
        let me = Self {
            host: host_name(),
            pid: std::process::id(),
            instance: crate::ids::new_id(),
        };
        crate::durable::create_dir_all(leases)?;
        // Locked under a name no sweep looks at, then renamed into place
        // (the lock stays with the file): a lease file is never seen unlocked
        // while its instance lives.
        let staging = leases.join(format!(".{}.new", me.instance));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)
            .map_err(crate::durable::naming(&staging, "creating"))?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(io::Error::other(format!(
                    "{}: a fresh lease file is locked by another process",
                    staging.display()
                )));
            }
            // A file system without locks: no lease at all (never an
            // unlocked one, which others would take for a dead instance);
            // others judge this instance by its pid, as before leases.
            Err(e) => {
                tracing::warn!(path = %staging.display(), error = %e, "no lease: the data directory's file system refuses locks; replicas fall back to process ids");
                drop(file);
                let _ = fs::remove_file(&staging);
                if let Ok(mut live) = live_instances().lock() {
                    live.insert(me.instance.clone(), true);
                }
                return Ok((
                    me,
                    Lease {
                        file: None,
                        path: None,
                    },
                ));
            }
        }
        io::Write::write_all(
            &mut file,
            &serde_json::to_vec(&me).map_err(io::Error::other)?,
        )?;
        let path = lease_path(leases, &me.instance);
        fs::rename(&staging, &path)
            .map_err(crate::durable::naming(&path, "renaming a lease to"))?;
        if let Ok(mut live) = live_instances().lock() {
            live.insert(me.instance.clone(), true);
        }
        Ok((
            me,
            Lease {
                file: Some(file),
                path: Some(path),
            },
        ))
    }

    /// Marks this instance as gone (its application was dropped).
    pub fn unregister(&self) {
        if let Ok(mut live) = live_instances().lock() {
            live.insert(self.instance.clone(), false);
        }
    }

    /// Whether the instance `self` names still runs, as far as can be told
    /// from here, with `leases` the data directory's lease files (see
    /// [`Liveness`]). Costs one `open` and one non-blocking `flock` of its
    /// lease file for an owner on this host, nothing for another host's.
    pub fn liveness(&self, leases: &Path) -> Liveness {
        if self.host != host_name() {
            return Liveness::Unknown;
        }
        match lease_state(&lease_path(leases, &self.instance)) {
            LeaseState::Held => Liveness::Alive,
            LeaseState::Free => Liveness::Gone,
            LeaseState::Unchecked => Liveness::Unknown,
            LeaseState::Missing if self.pid == std::process::id() => {
                match live_instances()
                    .lock()
                    .map(|live| live.get(&self.instance).copied())
                {
                    Ok(Some(true)) => Liveness::Alive,
                    Ok(Some(false)) => Liveness::Gone,
                    // Not one of this process's: another process with this
                    // pid (in another PID namespace) runs without a lease
                    // (a file system refusing locks); judged by age.
                    Ok(None) | Err(_) => Liveness::Unknown,
                }
            }
            LeaseState::Missing if process_alive(self.pid) => Liveness::Unknown,
            LeaseState::Missing => Liveness::Gone,
        }
    }

    /// Whether the work of `self` can be known abandoned from here, with
    /// `leases` the data directory's lease files: its [`Owner::liveness`] is
    /// [`Liveness::Gone`] (it belongs to this host and its lease is free; or,
    /// with no lease file, its process is gone, or it is this process but an
    /// instance no longer live). Work of another host is never judged
    /// abandoned by this alone.
    pub fn is_abandoned(&self, leases: &Path) -> bool {
        self.liveness(leases) == Liveness::Gone
    }
}

/// Removes the lease files of dead instances (lockable ones), once their
/// work has been recovered or swept.
pub fn sweep_leases(leases: &Path) {
    let Ok(entries) = fs::read_dir(leases) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "lock")
            && matches!(lease_state(&path), LeaseState::Free)
        {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Whether a process with `pid` exists on this host and has not exited (a
/// zombie, exited but not yet reaped by its parent, counts as gone).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// Whether `/proc/{pid}/stat` shows the process as a zombie (`Z`) or dead (`X`).
fn is_zombie(pid: libc::pid_t) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last `)`, as comm may hold one.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_instances_are_not_abandoned_and_dropped_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let leases = leases_dir(dir.path());
        let (me, lease) = Owner::register(&leases).unwrap();
        assert!(!me.is_abandoned(&leases));
        // Another process on this host, even with this pid (a second PID
        // namespace), holding its lease: alive.
        let (twin, twin_lease) = Owner::register(&leases).unwrap();
        me.unregister();
        assert!(!me.is_abandoned(&leases), "its lease is still held");
        drop(lease);
        assert!(me.is_abandoned(&leases), "no lease, instance gone");
        let other_host = Owner {
            host: "elsewhere.invalid".into(),
            ..twin.clone()
        };
        assert!(!other_host.is_abandoned(&leases));
        // A crashed instance leaves its lease file behind, unlocked.
        let crashed = Owner {
            instance: "0123456789abcdef0123456789abcdef".into(),
            ..twin.clone()
        };
        fs::write(lease_path(&leases, &crashed.instance), b"{}").unwrap();
        assert!(crashed.is_abandoned(&leases));
        // This pid, no lease file, an instance this process never had:
        // another process reusing the pid, without a lease (a file system
        // refusing locks). Not known gone: judged by the age of its work.
        let stranger = Owner {
            instance: "fedcba9876543210fedcba9876543210".into(),
            ..twin.clone()
        };
        assert_eq!(stranger.liveness(&leases), Liveness::Unknown);
        sweep_leases(&leases);
        assert!(!lease_path(&leases, &crashed.instance).exists());
        assert!(
            lease_path(&leases, &twin.instance).exists(),
            "a held lease is kept"
        );
        drop(twin_lease);
        // Without lease files: the pid decides.
        let dead = Owner {
            pid: u32::MAX / 2,
            ..twin
        };
        assert!(dead.is_abandoned(&leases));
    }

    /// What [`Owner::liveness`] says of each kind of owner.
    #[test]
    fn liveness_is_told_where_it_can_be() {
        let dir = tempfile::tempdir().unwrap();
        let leases = leases_dir(dir.path());
        let (me, lease) = Owner::register(&leases).unwrap();
        assert_eq!(me.liveness(&leases), Liveness::Alive);
        let elsewhere = Owner {
            host: "elsewhere.invalid".into(),
            ..me.clone()
        };
        assert_eq!(elsewhere.liveness(&leases), Liveness::Unknown);
        // No lease file, and a process with its pid exists (this one's
        // parent): it may be another process reusing the pid.
        let parent = Owner {
            pid: std::os::unix::process::parent_id(),
            instance: "fedcba9876543210fedcba9876543210".into(),
            ..me.clone()
        };
        assert_eq!(parent.liveness(&leases), Liveness::Unknown);
        me.unregister();
        drop(lease);
        assert_eq!(me.liveness(&leases), Liveness::Gone);
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie until `wait`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(
            !process_alive(pid),
            "an exited, unreaped child counts as gone"
        );
        child.wait().unwrap();
        assert!(process_alive(std::process::id()));
    }
}
