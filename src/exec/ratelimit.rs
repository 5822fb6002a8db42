//! A token bucket for requests-per-minute and tokens-per-minute limits. Hand-written
//! because the common crates cannot refund or retune a limit at run time, which the
//! executor of `run` needs when a provider's headers say the real limit.

use std::time::{Duration, Instant};

/// A bucket that holds up to `capacity` tokens and refills `capacity` per minute.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `per_minute` tokens a minute.
    pub fn per_minute(per_minute: u64) -> TokenBucket {
        let capacity = per_minute.max(1) as f64;
        TokenBucket {
            capacity,
            per_sec: capacity / 60.0,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// Takes `n` tokens, or says how long to wait until they are there. A request larger
    /// than the whole bucket may go when the bucket is full (it could never go
    /// otherwise) and leaves it in debt.
    pub fn try_take(&mut self, n: u64) -> Result<(), Duration> {
        self.try_take_at(n, Instant::now())
    }

    fn try_take_at(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let need = (n as f64).min(self.capacity);
        if self.tokens >= need {
            self.tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - self.tokens) / self.per_sec))
        }
    }

    /// Gives back tokens that were taken but not used.
    pub fn refund(&mut self, n: u64) {
        self.tokens = (self.tokens + n as f64).min(self.capacity);
    }

    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    /// Whole tokens left now.
    pub fn remaining(&mut self) -> u64 {
        self.refill(Instant::now());
        self.tokens.max(0.0) as u64
    }

    /// Time until the bucket is full again.
    pub fn reset_after(&mut self) -> Duration {
        self.refill(Instant::now());
        Duration::from_secs_f64(((self.capacity - self.tokens) / self.per_sec).max(0.0))
    }
}

/// A duration as OpenAI's `x-ratelimit-reset-*` headers write it: `12ms`, `1s`, `6m0s`,
/// `1.5s`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{}s", format!("{s:.3}").trim_end_matches('0'))
        }
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_until_empty_then_says_how_long() {
        let mut b = TokenBucket::per_minute(60);
        let t0 = b.last;
        for _ in 0..60 {
            assert!(b.try_take_at(1, t0).is_ok());
        }
        let wait = b.try_take_at(1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        assert!(b.try_take_at(1, t0 + Duration::from_secs(1)).is_ok());
        b.refund(5);
        assert!(b.try_take_at(5, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn formats_like_openai() {
        assert_eq!(format_reset(Duration::from_millis(12)), "12ms");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
    }
}
