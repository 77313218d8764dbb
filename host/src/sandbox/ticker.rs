//! The epoch ticker, which interrupts guest calls to charge them and to
//! enforce their deadlines: while any guest call is in progress it advances
//! its engines' epoch and its coarse clock every tick; while none is, it
//! sleeps, so that an idle weft makes no wakeups.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

use crate::sandbox::clock::CoarseClock;
use crate::sandbox::limits::EPOCH_TICK;

/// How long a sleeping ticker waits before it looks whether its engines
/// are gone (when it ends). A call wakes it at once.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// The guest calls in progress that one thread started. On a cache line
/// of its own: each thread writes its own at every call.
#[repr(align(128))]
#[derive(Default)]
struct ThreadCalls {
    active: AtomicUsize,
    /// Held by a live thread; a free one is taken by the next new thread.
    taken: AtomicBool,
}

/// Every thread that has started a guest call, and the tickers.
struct Registry {
    /// Never shrinks: a thread's entry is taken over by a later thread.
    threads: Mutex<Vec<&'static ThreadCalls>>,
    tickers: Mutex<Vec<Thread>>,
    /// Tickers asleep, or about to be: a call that sees any wakes them.
    asleep: AtomicUsize,
}

static REGISTRY: Registry = Registry {
    threads: Mutex::new(Vec::new()),
    tickers: Mutex::new(Vec::new()),
    asleep: AtomicUsize::new(0),
};

thread_local! {
    static CALLS: ThreadSlot = ThreadSlot::take();
}

/// This thread's entry in the registry, given back when the thread ends.
struct ThreadSlot(&'static ThreadCalls);

impl ThreadSlot {
    fn take() -> Self {
        let mut threads = lock(&REGISTRY.threads);
        let free = threads.iter().find(|calls| {
            calls
                .taken
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(calls) = free {
            return Self(calls);
        }
        // One per thread that ever ran a guest call at once: a few.
        let calls: &'static ThreadCalls = Box::leak(Box::default());
        calls.taken.store(true, Ordering::Release);
        threads.push(calls);
        Self(calls)
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        // Calls still counted here (a guard dropped on another thread)
        // are uncounted all the same: only the sum matters.
        self.0.taken.store(false, Ordering::Release);
    }
}

/// A guest call in progress: the tickers keep ticking until it is dropped.
pub struct Busy(&'static ThreadCalls);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Release);
    }
}

/// Count a guest call in progress on this thread. If the tickers sleep,
/// wake them, and bring `clock`, which they did not keep while asleep, up
/// to date first, since the call reads it to start its budget.
pub fn busy(clock: &CoarseClock) -> Busy {
    // A thread past its thread-locals' end (at exit) has none: it takes a
    // fresh entry, leaked like the others.
    let calls = CALLS
        .try_with(|slot| slot.0)
        .unwrap_or_else(|_| ThreadSlot::take().0);
    // SeqCst with the tickers' own order (count `asleep`, then look at the
    // calls): either this sees the ticker asleep, or the ticker sees this.
    calls.active.fetch_add(1, Ordering::SeqCst);
    if REGISTRY.asleep.load(Ordering::SeqCst) > 0 {
        clock.tick();
        for ticker in lock(&REGISTRY.tickers).iter() {
            ticker.unpark();
        }
    }
    Busy(calls)
}

/// Whether any thread has a guest call in progress.
fn any_call() -> bool {
    lock(&REGISTRY.threads)
        .iter()
        .any(|calls| calls.active.load(Ordering::SeqCst) > 0)
}

/// Start the ticker of `engines` and `clock`: it ticks every [`EPOCH_TICK`]
/// while a call runs, sleeps while none does, and ends once the engines
/// are gone.
pub fn spawn(engines: Vec<EngineWeak>, clock: Arc<CoarseClock>) -> io::Result<()> {
    thread::Builder::new()
        .name("weft-epoch".into())
        .spawn(move || {
            let me = thread::current();
            lock(&REGISTRY.tickers).push(me.clone());
            loop {
                let live: Vec<Engine> = engines.iter().filter_map(EngineWeak::upgrade).collect();
                if live.is_empty() {
                    break;
                }
                if any_call() {
                    clock.tick();
                    live.iter().for_each(Engine::increment_epoch);
                    drop(live);
                    thread::sleep(EPOCH_TICK);
                    continue;
                }
                drop(live);
                REGISTRY.asleep.fetch_add(1, Ordering::SeqCst);
                // Looked at again once counted asleep: a call that started
                // since either is seen now or has seen us and unparks us.
                if !any_call() {
                    thread::park_timeout(IDLE_RECHECK);
                }
                REGISTRY.asleep.fetch_sub(1, Ordering::SeqCst);
            }
            lock(&REGISTRY.tickers).retain(|ticker| ticker.id() != me.id());
        })
        .map(drop)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only pushes, reads and removals happen under these locks.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
