//! How a worker is told to stop: first to stop accepting, then, unless it
//! is to close its connections at once, to let them end on their own.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// What tells a worker to stop: it stops accepting, then gives its open
/// connections the grace to end on their own (SIGTERM's drain) unless the
/// stop is `now` (SIGINT, a test's stop), which closes them at once.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    accepting: CancellationToken,
    now: CancellationToken,
    /// One token per listening socket still open, so that the server can
    /// say it no longer accepts only once that is true.
    listening: TaskTracker,
}

impl Stop {
    /// Stop accepting; and `now`, close open connections without waiting
    /// for them to end.
    pub fn stop(&self, now: bool) {
        if now {
            self.now.cancel();
        }
        self.accepting.cancel();
    }

    /// Resolves once accepting is to stop.
    pub async fn cancelled(&self) {
        self.accepting.cancelled().await;
    }

    /// Whether the open connections are to be closed without waiting.
    pub fn is_now(&self) -> bool {
        self.now.is_cancelled()
    }

    /// Held while a worker's listening socket is open: dropped with it.
    pub fn listening(&self) -> TaskTrackerToken {
        self.listening.token()
    }

    /// Resolves once every listening socket is closed, after [`Self::stop`].
    pub async fn listeners_closed(&self) {
        self.listening.close();
        self.listening.wait().await;
    }
}
