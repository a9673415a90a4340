//! Open connections as the sweeper sees them: each has a deadline while it
//! waits for a request head (idle keep-alive or a head arriving slowly) and
//! none while a request is in progress.
//!
//! The sweeper closes a connection by shutting down a duplicate of its socket,
//! which wakes the coroutine blocked on it with end-of-stream. It also reaps
//! a connection whose coroutine it finds inside an inline handler: inline
//! handlers never yield, so the sweeper (another coroutine of the same
//! worker) should only see that state when the coroutine was abandoned by a
//! stack overflow. It reaps one only when it finds it inside the same inline
//! entry at two sweeps in a row: once, in a loaded test run, a live
//! connection was reaped after a single look. (The cause: may had resumed the
//! sweeper from its interval's timeout on its timer thread, where it looked
//! while the worker ran that connection's handler; the sweeper now yields
//! back to the worker first, `resume_on_worker` in lib.rs. The second look
//! stays as a margin.) Coroutines on the single may worker touch the
//! registry, and the `/ready` idle probe, which a request with a body runs
//! on a pool thread; the std `Mutex` serialises them and is never held
//! across a yield.

use std::collections::HashMap;
use std::net::Shutdown as SocketShutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// No deadline: a request is in progress.
const BUSY: u64 = 0;

/// The connection's coroutine is running an inline handler.
const INLINE: u64 = u64::MAX;

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
    /// Bumped each time the coroutine enters inline code.
    inline_entries: AtomicU64,
    /// The entry the sweeper last found the coroutine inside, plus one (0:
    /// none): a coroutine found in the same one at the next sweep is reaped.
    seen_inline: AtomicU64,
    /// When it was last found idle between requests with nothing of the
    /// next one read (a [`Registry`]-wide sequence number; 0 while not): the
    /// accept loop may close it to make room
    /// ([`Registry::close_longest_kept_alive`]).
    kept_alive: AtomicU64,
    socket: std::net::TcpStream,
}

impl Slot {
    /// An entry for a connection whose duplicated socket is `socket`.
    pub(crate) fn new(socket: std::net::TcpStream) -> Self {
        Self {
            deadline_ms: AtomicU64::new(BUSY),
            inline_entries: AtomicU64::new(0),
            seen_inline: AtomicU64::new(0),
            kept_alive: AtomicU64::new(0),
            socket,
        }
    }

    /// The connection waits for a request head (its first, or one partly
    /// read); it may wait `timeout`.
    pub(crate) fn set_idle(&self, timeout: Duration) {
        self.kept_alive.store(0, Ordering::Relaxed);
        self.set_deadline(timeout);
    }

    /// The connection has served a request and waits for the next, of which
    /// nothing has arrived; it may wait `timeout`. `order` tells which
    /// connection has been kept alive longest ([`Registry::kept_alive_order`]).
    pub(crate) fn set_kept_alive(&self, timeout: Duration, order: u64) {
        self.set_deadline(timeout);
        self.kept_alive.store(order, Ordering::Relaxed);
    }

    /// Bytes of a next request arrived: the connection is no longer idle
    /// between requests (its deadline stays: a head must arrive whole
    /// within it).
    pub(crate) fn set_receiving(&self) {
        self.kept_alive.store(0, Ordering::Relaxed);
    }

    fn set_deadline(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
        self.deadline_ms
            .store(now_ms().saturating_add(ms), Ordering::Relaxed);
    }

    /// A request is in progress: the sweeper leaves the connection alone.
    pub(crate) fn set_busy(&self) {
        self.kept_alive.store(0, Ordering::Relaxed);
        self.deadline_ms.store(BUSY, Ordering::Relaxed);
    }

    /// The coroutine runs application code that never yields (an inline
    /// handler, or an inline stream's read); [`Slot::set_busy`] after it.
    pub(crate) fn set_inline(&self) {
        self.kept_alive.store(0, Ordering::Relaxed);
        self.inline_entries.fetch_add(1, Ordering::Relaxed);
        self.deadline_ms.store(INLINE, Ordering::Relaxed);
    }

    /// Whether the sweeper, looking now, finds the coroutine inside the
    /// same inline entry it found at its last look: abandoned there. Seen
    /// once, an entry is only remembered: a coroutine that overflowed its
    /// stack stays in it for good, so waiting one sweep costs a dead
    /// connection one interval, while a live one is never reaped for being
    /// caught once mid-handler.
    fn abandoned_inline(&self) -> bool {
        if !self.is_inline() {
            return false;
        }
        let entry = self.inline_entries.load(Ordering::Relaxed) + 1;
        self.seen_inline.swap(entry, Ordering::Relaxed) == entry
    }

    fn is_idle(&self) -> bool {
        let deadline = self.deadline_ms.load(Ordering::Relaxed);
        deadline != BUSY && deadline != INLINE
    }

    fn is_inline(&self) -> bool {
        self.deadline_ms.load(Ordering::Relaxed) == INLINE
    }

    fn expired(&self, now: u64) -> bool {
        self.is_idle() && now >= self.deadline_ms.load(Ordering::Relaxed)
    }

    fn close(&self) {
        let _ = self.socket.shutdown(SocketShutdown::Both);
    }
}

/// Every open connection.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    kept_alive: AtomicU64,
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

    /// The next number of [`Slot::set_kept_alive`]'s order, never 0.
    pub(crate) fn kept_alive_order(&self) -> u64 {
        self.kept_alive.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a connection; returns its id.
    pub(crate) fn insert(&self, slot: Arc<Slot>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.with_slots(|s| s.insert(id, slot));
        id
    }

    /// Removes a closed connection; `false` when the sweeper reaped it
    /// already (whoever removes the entry releases the connection's count
    /// and `connection_limit` slot, so that happens once).
    pub(crate) fn remove(&self, id: u64) -> bool {
        self.with_slots(|s| s.remove(&id).is_some())
    }

    /// Closes and removes the connections whose coroutine was abandoned
    /// inside an inline handler (a stack overflow: may's guard page stops
    /// the coroutine without unwinding it, so its own cleanup never runs).
    /// Called from the sweeper, a coroutine of the same single worker, which
    /// never runs while an inline handler does. Returns how many; the caller
    /// releases their counts and slots.
    pub(crate) fn reap_abandoned(&self) -> usize {
        self.with_slots(|s| {
            let dead: Vec<u64> = s
                .iter()
                .filter(|(_, slot)| slot.abandoned_inline())
                .map(|(id, _)| *id)
                .collect();
            for id in &dead {
                if let Some(slot) = s.remove(id) {
                    slot.close();
                }
            }
            dead.len()
        })
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

    /// Whether some connection is kept alive now: a new client at the limit
    /// would take its place.
    pub(crate) fn any_kept_alive(&self) -> bool {
        self.with_slots(|s| {
            s.values()
                .any(|slot| slot.is_idle() && slot.kept_alive.load(Ordering::Relaxed) != 0)
        })
    }

    /// Closes the connection kept alive longest (idle between requests, the
    /// first to become so), so a client waiting at the connection limit gets
    /// its place; `false` when none is. Its coroutine wakes to the close,
    /// and its guard releases its count and slot. A client pooling
    /// connections (a proxy) opens another when it needs one; only an
    /// idle one is ever closed, never one with a request under way.
    pub(crate) fn close_longest_kept_alive(&self) -> bool {
        self.with_slots(|s| {
            let longest = s
                .values()
                .filter(|slot| slot.is_idle())
                .map(|slot| (slot.kept_alive.load(Ordering::Relaxed), slot))
                .filter(|&(order, _)| order != 0)
                .min_by_key(|&(order, _)| order);
            match longest {
                Some((_, slot)) => {
                    // Closed once: not chosen again while its coroutine wakes.
                    slot.kept_alive.store(0, Ordering::Relaxed);
                    slot.close();
                    true
                }
                None => false,
            }
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair: the registry's socket and the client's.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    #[test]
    fn only_a_connection_left_inside_an_inline_handler_is_reaped() {
        let registry = Registry::default();
        let (server, mut client) = pair();
        let abandoned = Arc::new(Slot::new(server));
        let dead = registry.insert(Arc::clone(&abandoned));
        let (busy_server, _busy_client) = pair();
        let busy = registry.insert(Arc::new(Slot::new(busy_server)));
        let (idle_server, _idle_client) = pair();
        let idle_slot = Arc::new(Slot::new(idle_server));
        idle_slot.set_idle(Duration::from_secs(60));
        let idle = registry.insert(idle_slot);

        abandoned.set_inline();
        assert_eq!(registry.sweep(), 0, "an inline handler has no deadline");
        // Found inside it once: remembered, not reaped; at the next look,
        // still inside the same entry: reaped.
        assert_eq!(registry.reap_abandoned(), 0);
        assert_eq!(registry.reap_abandoned(), 1);
        // The client sees the connection end.
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 0);
        // Reaped once: the connection's own guard finds it gone.
        assert!(!registry.remove(dead));
        assert_eq!(registry.reap_abandoned(), 0);
        assert!(registry.remove(busy));
        assert!(registry.remove(idle));
    }

    #[test]
    fn the_connection_kept_alive_longest_is_closed_first_and_once() {
        let registry = Registry::default();
        let wait = Duration::from_secs(60);
        let mut clients = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..4 {
            let (server, client) = pair();
            let slot = Arc::new(Slot::new(server));
            registry.insert(Arc::clone(&slot));
            client
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            clients.push(client);
            slots.push(slot);
        }
        // 0: kept alive second; 1: kept alive first, then its next request
        // began; 2: kept alive third; 3: waiting for its first request.
        slots[1].set_kept_alive(wait, registry.kept_alive_order());
        slots[0].set_kept_alive(wait, registry.kept_alive_order());
        slots[2].set_kept_alive(wait, registry.kept_alive_order());
        slots[1].set_receiving();
        slots[3].set_idle(wait);
        let closed = |client: &mut std::net::TcpStream| matches!(client.read(&mut [0u8; 8]), Ok(0));
        assert!(registry.close_longest_kept_alive());
        assert!(closed(&mut clients[0]));
        assert!(registry.close_longest_kept_alive());
        assert!(closed(&mut clients[2]));
        // Neither again, and never one receiving or not yet served.
        assert!(!registry.close_longest_kept_alive());
        assert!(!closed(&mut clients[1]));
        assert!(!closed(&mut clients[3]));
    }

    #[test]
    fn an_inline_handler_that_returned_is_not_reaped() {
        let registry = Registry::default();
        let (server, _client) = pair();
        let slot = Arc::new(Slot::new(server));
        let id = registry.insert(Arc::clone(&slot));
        slot.set_inline();
        slot.set_busy();
        assert_eq!(registry.reap_abandoned(), 0);
        // Caught inside two different entries at two looks: alive.
        slot.set_inline();
        assert_eq!(registry.reap_abandoned(), 0);
        slot.set_busy();
        slot.set_inline();
        assert_eq!(registry.reap_abandoned(), 0);
        assert!(registry.remove(id));
    }
}
