//! Open connections as the sweeper sees them: each has a deadline while it
//! waits for a request head (idle keep-alive or a head arriving slowly) and
//! none while a request is in progress.
//!
//! The sweeper closes a connection by shutting down a duplicate of its socket,
//! which wakes the coroutine blocked on it with end-of-stream. Only
//! coroutines of the single may worker touch the registry, so they never run
//! at the same time; the std `Mutex` is never held across a yield.

use std::collections::HashMap;
use std::net::Shutdown as SocketShutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// No deadline: a request is in progress.
const BUSY: u64 = 0;

/// Milliseconds since the first call, never 0.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// One connection's entry.
#[derive(Debug)]
pub(crate) struct Slot {
    deadline_ms: AtomicU64,
    socket: std::net::TcpStream,
}

impl Slot {
    /// An entry for a connection whose duplicated socket is `socket`.
    pub(crate) fn new(socket: std::net::TcpStream) -> Self {
        Self {
            deadline_ms: AtomicU64::new(BUSY),
            socket,
        }
    }

    /// The connection waits for a request head; it may wait `timeout`.
    pub(crate) fn set_idle(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
        self.deadline_ms
            .store(now_ms().saturating_add(ms), Ordering::Relaxed);
    }

    /// A request is in progress: the sweeper leaves the connection alone.
    pub(crate) fn set_busy(&self) {
        self.deadline_ms.store(BUSY, Ordering::Relaxed);
    }

    fn is_idle(&self) -> bool {
        self.deadline_ms.load(Ordering::Relaxed) != BUSY
    }

    fn expired(&self, now: u64) -> bool {
        let deadline = self.deadline_ms.load(Ordering::Relaxed);
        deadline != BUSY && now >= deadline
    }

    fn close(&self) {
        let _ = self.socket.shutdown(SocketShutdown::Both);
    }
}

/// Every open connection.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Registry {
    fn with_slots<R>(&self, f: impl FnOnce(&mut HashMap<u64, Arc<Slot>>) -> R) -> R {
        let mut guard = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Adds a connection; returns its id.
    pub(crate) fn insert(&self, slot: Arc<Slot>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.with_slots(|s| s.insert(id, slot));
        id
    }

    /// Removes a closed connection.
    pub(crate) fn remove(&self, id: u64) {
        self.with_slots(|s| s.remove(&id));
    }

    /// Closes connections idle past their deadline; returns how many.
    pub(crate) fn sweep(&self) -> usize {
        let now = now_ms();
        self.with_slots(|s| {
            let mut n = 0;
            for slot in s.values().filter(|slot| slot.expired(now)) {
                slot.close();
                n += 1;
            }
            n
        })
    }

    /// Closes every connection waiting for a request (shutdown).
    pub(crate) fn close_idle(&self) {
        self.with_slots(|s| {
            s.values()
                .filter(|slot| slot.is_idle())
                .for_each(|slot| slot.close())
        });
    }

    /// Closes every connection (shutdown past its timeout).
    pub(crate) fn close_all(&self) {
        self.with_slots(|s| s.values().for_each(|slot| slot.close()));
    }
}
