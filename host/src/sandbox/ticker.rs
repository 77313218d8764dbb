//! The epoch tickers, which interrupt guest calls to charge them and to
//! enforce their deadlines: while a thread that may run guest code is awake
//! they advance their engines' epoch and the coarse clock every tick; while
//! none is, they sleep, so that an idle weft makes no wakeups.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

use crate::sandbox::clock;
use crate::sandbox::limits::EPOCH_TICK;

/// How long a sleeping ticker waits before it looks whether its engines
/// are gone (when it ends). A thread waking wakes it at once.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// What one thread may be running guest code in. On a cache line of its
/// own: each thread writes only its own.
#[repr(align(128))]
#[derive(Default)]
struct ThreadState {
    /// A watched thread (a worker's reactor) is awake: not parked waiting
    /// for I/O or timers, so it may be in a guest call.
    awake: AtomicBool,
    /// Guest calls in progress that an unwatched thread started.
    calls: AtomicUsize,
    /// Held by a live thread; a free one is taken by the next new thread.
    taken: AtomicBool,
}

/// Every thread that has run guest code, and the tickers.
struct Registry {
    /// Never shrinks: a thread's entry is taken over by a later thread.
    threads: Mutex<Vec<&'static ThreadState>>,
    tickers: Mutex<Vec<Thread>>,
    /// Tickers asleep, or about to be: a thread that sees any wakes them.
    asleep: AtomicUsize,
}

static REGISTRY: Registry = Registry {
    threads: Mutex::new(Vec::new()),
    tickers: Mutex::new(Vec::new()),
    asleep: AtomicUsize::new(0),
};

thread_local! {
    static STATE: Slot = Slot::take();
    /// Whether this thread's waking and sleeping are reported (by its
    /// reactor's park hooks), which then covers every call it makes.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// This thread's entry in the registry, given back when the thread ends.
struct Slot(&'static ThreadState);

impl Slot {
    fn take() -> Self {
        let mut threads = lock(&REGISTRY.threads);
        let free = threads.iter().find(|state| {
            state
                .taken
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(state) = free {
            return Self(state);
        }
        // One per thread that ever ran a guest call at once: a few.
        let state: &'static ThreadState = Box::leak(Box::default());
        state.taken.store(true, Ordering::Release);
        threads.push(state);
        Self(state)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Calls still counted here (a guard dropped on another thread)
        // are uncounted all the same: only whether any remains matters.
        self.0.awake.store(false, Ordering::Release);
        self.0.taken.store(false, Ordering::Release);
    }
}

/// This thread's entry; a thread past its thread-locals' end (at exit)
/// takes a fresh one, given back at once but still counted in.
fn this_thread() -> &'static ThreadState {
    STATE
        .try_with(|slot| slot.0)
        .unwrap_or_else(|_| Slot::take().0)
}

/// Wake the tickers if they sleep, bringing the coarse clock, which they
/// did not keep while asleep, up to date first: a call reads it to start
/// its budget. SeqCst with the tickers' own order (count `asleep`, then
/// look at the threads): either this sees a ticker asleep, or that ticker
/// sees what the caller stored just before.
fn wake_tickers() {
    if REGISTRY.asleep.load(Ordering::SeqCst) > 0 {
        clock::coarse().tick();
        for ticker in lock(&REGISTRY.tickers).iter() {
            ticker.unpark();
        }
    }
}

/// Report this thread's waking and sleeping from now on, through
/// [`thread_awake`] and [`thread_asleep`] in its reactor's park hooks,
/// until the returned guard is dropped: every guest call it makes is then
/// covered at no cost per call. It is awake now.
pub fn watch_this_thread() -> Watched {
    WATCHED.set(true);
    thread_awake();
    Watched(())
}

/// A watched thread; dropping it ends the watch, the thread asleep.
pub struct Watched(());

impl Drop for Watched {
    fn drop(&mut self) {
        thread_asleep();
        WATCHED.set(false);
    }
}

/// A watched thread woke (its reactor unparked): it may run guest code.
pub fn thread_awake() {
    this_thread().awake.store(true, Ordering::SeqCst);
    wake_tickers();
}

/// A watched thread is about to sleep (its reactor parks): no guest code
/// runs on it until it wakes.
pub fn thread_asleep() {
    this_thread().awake.store(false, Ordering::Release);
}

/// A guest call in progress on an unwatched thread: the tickers keep
/// ticking until it is dropped.
pub struct Busy(&'static ThreadState);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Release);
    }
}

/// Count a guest call starting on this thread, unless the thread is
/// watched (awake, as it is, covers it); wake the tickers if they sleep.
pub fn busy() -> Option<Busy> {
    if WATCHED.get() {
        return None;
    }
    let state = this_thread();
    state.calls.fetch_add(1, Ordering::SeqCst);
    wake_tickers();
    Some(Busy(state))
}

/// Whether any thread may be running guest code.
fn anyone_busy() -> bool {
    lock(&REGISTRY.threads)
        .iter()
        .any(|state| state.awake.load(Ordering::SeqCst) || state.calls.load(Ordering::SeqCst) > 0)
}

/// Start the ticker of `engines`: it ticks every [`EPOCH_TICK`] while any
/// thread may run guest code, sleeps while none does, and ends once the
/// engines are gone.
pub fn spawn(engines: Vec<EngineWeak>) -> io::Result<()> {
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
                if anyone_busy() {
                    clock::coarse().tick();
                    live.iter().for_each(Engine::increment_epoch);
                    drop(live);
                    thread::sleep(EPOCH_TICK);
                    continue;
                }
                drop(live);
                REGISTRY.asleep.fetch_add(1, Ordering::SeqCst);
                // Looked at again once counted asleep: a thread that woke
                // since either is seen now or has seen us and unparks us.
                if !anyone_busy() {
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
