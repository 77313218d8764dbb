//! How a worker is told to stop: first to stop accepting, then, unless it
//! is to close its connections at once, to let them end on their own.

use tokio_util::sync::CancellationToken;

/// What tells a worker to stop: it stops accepting, then gives its open
/// connections the grace to end on their own (SIGTERM's drain) unless the
/// stop is `now` (SIGINT, a test's stop), which closes them at once.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    accepting: CancellationToken,
    now: CancellationToken,
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
}
