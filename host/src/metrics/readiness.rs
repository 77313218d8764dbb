//! Whether the process takes new connections, for `/readyz` and the
//! `weft_ready` gauge: not until every worker it started with accepts, and
//! never again once it is told to stop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;

/// The process's readiness, as balancers should see it.
#[derive(Debug)]
pub struct Readiness {
    /// Workers yet to accept, plus one until the server has counted them.
    starting: AtomicUsize,
    stopping: AtomicBool,
    gauge: Gauge,
}

/// What `/readyz` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    Starting,
    Accepting,
    Stopping,
}

impl Readiness {
    pub(super) fn new(gauge: Gauge) -> Self {
        Self {
            starting: AtomicUsize::new(1),
            stopping: AtomicBool::new(false),
            gauge,
        }
    }

    /// Wait for `workers` more workers to accept.
    pub fn expect(&self, workers: usize) {
        self.starting.fetch_add(workers, Ordering::AcqRel);
        self.update();
    }

    /// Every worker the process starts with is counted: once they
    /// accept, it is ready.
    pub fn counted(&self) {
        self.accepting();
    }

    /// One of the workers counted accepts connections.
    pub fn accepting(&self) {
        // Never below zero: a report for a worker not counted is ignored.
        let _ = self
            .starting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.update();
    }

    /// The process was told to stop: balancers should send it no more.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
        self.update();
    }

    pub fn state(&self) -> Ready {
        if self.stopping.load(Ordering::Acquire) {
            Ready::Stopping
        } else if self.starting.load(Ordering::Acquire) > 0 {
            Ready::Starting
        } else {
            Ready::Accepting
        }
    }

    fn update(&self) {
        self.gauge.set(i64::from(self.state() == Ready::Accepting));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_worker_accepts_until_stopping() {
        let readiness = Readiness::new(Gauge::default());
        assert_eq!(readiness.state(), Ready::Starting);
        readiness.expect(2);
        readiness.counted();
        readiness.accepting();
        assert_eq!(readiness.state(), Ready::Starting);
        readiness.accepting();
        assert_eq!(readiness.state(), Ready::Accepting);
        assert_eq!(readiness.gauge.get(), 1);
        readiness.accepting();
        assert_eq!(
            readiness.state(),
            Ready::Accepting,
            "an extra report is ignored"
        );
        readiness.stopping();
        assert_eq!(readiness.state(), Ready::Stopping);
        assert_eq!(readiness.gauge.get(), 0);
    }
}
