//! Who owns a temporary upload or a running job: host, process and application
//! instance. Lets a starting replica clean up after a crashed one without
//! touching the work of a live replica sharing the same data directory.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// The owner of a piece of in-progress work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The host name (container name under Docker).
    pub host: String,
    /// The process id on that host.
    pub pid: u32,
    /// The application instance inside that process.
    pub instance: String,
}

fn live_instances() -> &'static Mutex<HashSet<String>> {
    static LIVE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// This machine's host name, or `localhost` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Owner {
    /// A new owner for an application instance in this process, registered as live.
    pub fn register() -> Self {
        let me = Self {
            host: host_name(),
            pid: std::process::id(),
            instance: crate::ids::new_id(),
        };
        if let Ok(mut live) = live_instances().lock() {
            live.insert(me.instance.clone());
        }
        me
    }

    /// Marks this instance as gone (its application was dropped).
    pub fn unregister(&self) {
        if let Ok(mut live) = live_instances().lock() {
            live.remove(&self.instance);
        }
    }

    /// Whether the work of `self` can be known abandoned from here: it belongs
    /// to this host and its process is gone, or to this process but an instance
    /// no longer live (a previous incarnation that had the same pid). Work of
    /// another host is never judged abandoned.
    pub fn is_abandoned(&self) -> bool {
        if self.host != host_name() {
            return false;
        }
        if self.pid == std::process::id() {
            return match live_instances().lock() {
                Ok(live) => !live.contains(&self.instance),
                Err(_) => false,
            };
        }
        !process_alive(self.pid)
    }
}

/// Whether a process with `pid` exists on this host.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_instances_are_not_abandoned_and_dropped_ones_are() {
        let me = Owner::register();
        assert!(!me.is_abandoned());
        me.unregister();
        assert!(me.is_abandoned());
        let other_host = Owner {
            host: "elsewhere.invalid".into(),
            ..me.clone()
        };
        assert!(!other_host.is_abandoned());
        let dead = Owner {
            pid: u32::MAX / 2,
            ..me
        };
        assert!(dead.is_abandoned());
    }
}
