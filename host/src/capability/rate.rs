//! A token bucket, the rate limit shared by the capabilities that have one:
//! guest log lines, and a `udp:` service's datagrams each way.

use std::time::Instant;

/// A token bucket: `rate` a second, twice that at once.
pub struct Rate {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Rate {
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        Self {
            rate,
            tokens: rate * 2.0,
            refilled: Instant::now(),
        }
    }

    /// Take one token, if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate * 2.0);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Tokens a second.
    pub fn per_second(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_allows_a_burst_of_two_seconds_then_refuses() {
        let mut rate = Rate::new(5);
        assert_eq!((0..20).filter(|_| rate.take()).count(), 10);
    }
}
