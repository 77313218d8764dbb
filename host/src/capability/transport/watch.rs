//! The guest's own producer watching a connection's backlog
//! (watch-write-buffer): what it was last told, and the pauses owed at the
//! end of the call whose writes filled the backlog, as Twisted pauses a
//! producer from inside the `write` that fills its buffer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Watch tokens whose backlog filled during an instance's call in
/// progress: the instance tells each to pause before it takes any other
/// call, so a producer writing from timers cannot outrun the news.
#[derive(Default)]
pub struct DuePauses(Mutex<Vec<u64>>);

impl DuePauses {
    /// The next token owed a pause, if any.
    pub fn next(&self) -> Option<u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn push(&self, token: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(token);
    }
}

/// One connection's side of the watch. Every change to `told_full` happens
/// in or under a call into the guest (the instance's lock), so the
/// decisions below never cross each other.
#[derive(Default)]
pub(super) struct Watch {
    /// Where a backlog that fills is reported; set when the guest builds
    /// the connection's protocol.
    due: OnceLock<Arc<DuePauses>>,
    /// The watcher was told "full" (or heard yes from write-buffer-full)
    /// and not "drained" since.
    told_full: AtomicBool,
}

impl Watch {
    pub(super) fn report_to(&self, due: Arc<DuePauses>) {
        let _ = self.due.set(due);
    }

    /// A write left the backlog `full`: owe `token` a pause if it was not
    /// told yet.
    pub(super) fn wrote(&self, token: u64, full: bool) {
        if full
            && !self.told_full.swap(true, Ordering::AcqRel)
            && let Some(due) = self.due.get()
        {
            due.push(token);
        }
    }

    /// The guest heard "full" from write-buffer-full: the drain that
    /// follows must be told, as it may wait for nothing else.
    pub(super) fn answered_full(&self) {
        self.told_full.store(true, Ordering::Release);
    }

    /// The guest watches with a new token, or stops: it was told nothing.
    pub(super) fn restart(&self) {
        self.told_full.store(false, Ordering::Release);
    }

    pub(super) fn told_full(&self) -> bool {
        self.told_full.load(Ordering::Acquire)
    }

    /// Record that the watcher is now told `full`.
    pub(super) fn tell(&self, full: bool) {
        self.told_full.store(full, Ordering::Release);
    }
}
