//! A shutdown signal shared by the binary (which triggers it on SIGTERM/SIGINT),
//! the application (which reports not-ready) and the engine (which drains).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    callbacks: Mutex<Vec<Callback>>,
}

/// Cheap to clone; every clone sees the same trigger.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Inner>);

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: runs every registered callback once. Idempotent.
    pub fn trigger(&self) {
        if self.0.triggered.swap(true, Ordering::SeqCst) {
            return;
        }
        let callbacks = match self.0.callbacks.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for cb in callbacks {
            cb();
        }
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(Ordering::SeqCst)
    }

    /// Runs `f` when shutdown starts (at once if it already has).
    pub fn on_trigger(&self, f: impl FnOnce() + Send + 'static) {
        {
            let mut callbacks = match self.0.callbacks.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !self.is_triggered() {
                callbacks.push(Box::new(f));
                return;
            }
        }
        f();
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}
