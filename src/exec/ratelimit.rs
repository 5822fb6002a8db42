//! Rate limits: a token bucket for requests-per-minute and tokens-per-minute limits
//! (the server side of `serve`), and the [`Limiter`] that schedules the sends of `run`.
//! Hand-written because the common crates cannot refund or retune a limit at run time,
//! which `run` needs when a provider's headers say the real limit.

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
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{}s", format!("{s:.3}").trim_end_matches('0'))
        }
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// How fast the rate comes back after a 429 pause: the fraction of the limit regained
/// per second (from half the limit to all of it in 10 s), so a run far over its limit
/// converges instead of bouncing between a fixed cooldown and a full-speed burst.
const RECOVERY_PER_SEC: f64 = 0.05;
/// The lowest fraction of the limit a run of 429s can push the rate down to.
const MIN_FACTOR: f64 = 1.0 / 64.0;

/// The share of a limit the schedule uses. Sends are exactly spaced, but timers wake a
/// little late and networks delay unevenly, so a server that counts arrivals in its own
/// 60 s windows saw 1,201 in one window at exactly 1,200 a minute; 1% of headroom
/// absorbs that.
const HEADROOM: f64 = 0.99;

/// The time `n` units take at `per_minute` (less the headroom), capped at a day so
/// that an absurd `max_tokens` cannot overflow the clock (it still waits a day).
fn share(n: u64, per_minute: f64) -> Duration {
    Duration::from_secs_f64((60.0 * n as f64 / (per_minute * HEADROOM)).clamp(0.0, 86_400.0))
}

/// A place in the send schedule handed out by [`Limiter::reserve`]: send at `at`, unless
/// a 429 or an empty header budget moved the schedule meanwhile (then reserve again).
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub at: Instant,
    epoch: u64,
}

/// The rate-limit headers of one answer (`x-ratelimit-*`), as far as they were sent.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub reset_tokens: Option<Duration>,
}

/// Parses a reset duration as OpenAI writes it (`12ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`);
/// a bare number is seconds.
pub fn parse_reset(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return (n >= 0.0 && n.is_finite()).then(|| Duration::from_secs_f64(n.min(86_400.0)));
    }
    let mut total = 0.0;
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let (mult, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return None;
        };
        total += n * mult;
        rest = &rest[len..];
        any = true;
    }
    any.then(|| Duration::from_secs_f64(total.min(86_400.0)))
}

impl RateHeaders {
    /// Reads the `x-ratelimit-*` headers through `get` (a header's text by name).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> RateHeaders {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let dur = |k: &str| get(k).and_then(parse_reset);
        RateHeaders {
            limit_requests: num("x-ratelimit-limit-requests"),
            limit_tokens: num("x-ratelimit-limit-tokens"),
            remaining_requests: num("x-ratelimit-remaining-requests"),
            remaining_tokens: num("x-ratelimit-remaining-tokens"),
            reset_requests: dur("x-ratelimit-reset-requests"),
            reset_tokens: dur("x-ratelimit-reset-tokens"),
        }
    }
}

/// The send schedule of `run`: requests-per-minute and tokens-per-minute limits kept by
/// spacing sends evenly (each request and each token has its own time slot, so no
/// minute's budget ever goes out in one burst: Azure checks RPM over 1-10 s windows),
/// limits that follow the server's `x-ratelimit-*` headers, and a pause on a 429 for
/// its `Retry-After` followed by a gradual return to the full rate.
///
/// The spacing is a virtual-scheduling (GCRA) form of a token bucket with no burst
/// allowance: `next_req` / `next_tok` are the earliest instants the next request / the
/// next token may go. A reservation takes the later of both and moves them on by the
/// request's share of the current rate.
#[derive(Debug)]
pub struct Limiter {
    state: std::sync::Mutex<LimState>,
}

#[derive(Debug)]
struct LimState {
    /// Limits given by the user: a header may lower them, never raise them.
    user_rpm: Option<f64>,
    user_tpm: Option<f64>,
    /// Limits in force (per minute); `None` sends as fast as the window allows.
    rpm: Option<f64>,
    tpm: Option<f64>,
    next_req: Instant,
    next_tok: Instant,
    /// Moves on whenever the schedule is reset, invalidating older slots.
    epoch: u64,
    paused_until: Instant,
    /// Fraction of the limits in force: `factor` at `factor_at`, growing by
    /// [`RECOVERY_PER_SEC`] per second after it, up to 1.
    factor: f64,
    factor_at: Instant,
    /// The last slot handed out and its cost: when limits first become known (the
    /// first answer's headers), the next slot still keeps its distance from it.
    last: Option<(Instant, u64)>,
}

impl LimState {
    fn factor_now(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.factor_at).as_secs_f64();
        (self.factor + RECOVERY_PER_SEC * dt).min(1.0)
    }

    /// Empties the schedule up to `until`: slots handed out before are void.
    fn reset_schedule(&mut self, until: Instant) {
        self.epoch += 1;
        self.next_req = until;
        self.next_tok = until;
    }
}

impl Limiter {
    /// A schedule for the given limits (per minute); `None` is unlimited until a header
    /// or a 429 says otherwise.
    pub fn new(rpm: Option<u64>, tpm: Option<u64>) -> Limiter {
        let now = Instant::now();
        let rpm = rpm.map(|r| r.max(1) as f64);
        let tpm = tpm.map(|t| t.max(1) as f64);
        Limiter {
            state: std::sync::Mutex::new(LimState {
                user_rpm: rpm,
                user_tpm: tpm,
                rpm,
                tpm,
                next_req: now,
                next_tok: now,
                epoch: 0,
                paused_until: now,
                factor: 1.0,
                factor_at: now,
                last: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits in force now (requests, tokens per minute), after the recovery
    /// factor.
    pub fn current(&self) -> (Option<f64>, Option<f64>) {
        let s = self.lock();
        let f = s.factor_now(Instant::now());
        (s.rpm.map(|r| r * f), s.tpm.map(|t| t * f))
    }

    /// Whether a tokens-per-minute limit is in force (given, or learnt from headers):
    /// without one, a request's token cost is never read.
    pub fn limits_tokens(&self) -> bool {
        self.lock().tpm.is_some()
    }

    /// Books the next free slot for a request of `cost` tokens.
    pub fn reserve(&self, cost: u64) -> Slot {
        self.reserve_at(cost, Instant::now())
    }

    pub fn reserve_at(&self, cost: u64, now: Instant) -> Slot {
        let mut s = self.lock();
        let f = s.factor_now(now);
        let mut at = now.max(s.paused_until);
        if s.rpm.is_some() {
            at = at.max(s.next_req);
        }
        if s.tpm.is_some() {
            at = at.max(s.next_tok);
        }
        if let Some(r) = s.rpm {
            s.next_req = at + share(1, r * f);
        }
        if let Some(t) = s.tpm {
            // A request larger than a minute's budget still goes (it could never go
            // otherwise); the ones after it wait its full share.
            s.next_tok = at + share(cost, t * f);
        }
        s.last = Some((at, cost));
        Slot { at, epoch: s.epoch }
    }

    /// Whether `slot` still stands at `now` (no pause or reset since it was booked).
    pub fn holds(&self, slot: &Slot, now: Instant) -> bool {
        let s = self.lock();
        s.epoch == slot.epoch && now >= s.paused_until
    }

    /// A 429: pause until `retry_after` (1 s when the server did not say), halve the
    /// rate once per pause, and come back gradually. Without any known limit there is
    /// no rate to halve: the pause and the executor's window (halved too) do the work,
    /// since guessing a limit from a few early answers could slow a run to a crawl.
    pub fn on_429(&self, retry_after: Option<Duration>, now: Instant) {
        let mut s = self.lock();
        let until = now + retry_after.unwrap_or(Duration::from_secs(1));
        if now >= s.paused_until {
            let f = s.factor_now(now);
            s.factor = (f / 2.0).max(MIN_FACTOR);
        }
        if until > s.paused_until {
            s.paused_until = until;
        }
        s.factor_at = s.paused_until;
        let p = s.paused_until;
        s.reset_schedule(p);
    }

    /// Follows the server's headers: its limits (never above the user's), and a pause
    /// until the reset when it says nothing is left.
    pub fn on_headers(&self, h: &RateHeaders, now: Instant) {
        if *h == RateHeaders::default() {
            return;
        }
        let mut s = self.lock();
        let before = (s.rpm, s.tpm);
        if let Some(l) = h.limit_requests.filter(|&l| l > 0) {
            let l = l as f64;
            s.rpm = Some(s.user_rpm.map_or(l, |u| u.min(l)));
        }
        if let Some(l) = h.limit_tokens.filter(|&l| l > 0) {
            let l = l as f64;
            s.tpm = Some(s.user_tpm.map_or(l, |u| u.min(l)));
        }
        if (s.rpm, s.tpm) != before {
            // Slots booked under the old limits are void; everyone books again, after
            // the last request sent (the probe) as the new limits space it.
            let at = now.max(s.paused_until);
            s.reset_schedule(at);
            if let Some((last, cost)) = s.last {
                let f = s.factor_now(now);
                if let Some(r) = s.rpm {
                    s.next_req = s.next_req.max(last + share(1, r * f));
                }
                if let Some(t) = s.tpm {
                    s.next_tok = s.next_tok.max(last + share(cost, t * f));
                }
            }
        }
        let mut until = None;
        if h.remaining_requests == Some(0) {
            until = h.reset_requests;
        }
        if h.remaining_tokens == Some(0) {
            until = until.max(h.reset_tokens);
        }
        if let Some(d) = until {
            let u = now + d;
            if u > s.paused_until {
                s.paused_until = u;
                s.reset_schedule(u);
            }
        }
    }

    /// Corrects the token schedule once the answer's `usage` says what a request
    /// really cost (`actual - estimated` tokens, either sign).
    pub fn correct_tokens(&self, delta: i64, now: Instant) {
        let mut s = self.lock();
        let Some(t) = s.tpm else { return };
        let f = s.factor_now(now);
        let d = share(delta.unsigned_abs(), t * f);
        s.next_tok = if delta >= 0 {
            s.next_tok + d
        } else {
            s.next_tok.checked_sub(d).unwrap_or(now).max(now)
        };
    }

    /// Until when sending is paused (in the past when it is not).
    pub fn paused_until(&self) -> Instant {
        self.lock().paused_until
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
    #[test]
    fn sends_are_spaced_evenly_never_in_a_burst() {
        let l = Limiter::new(Some(600), None);
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..20).map(|_| l.reserve_at(1, t0).at).collect();
        for w in slots.windows(2) {
            let gap = w[1] - w[0];
            assert!((gap.as_secs_f64() - 0.1 / HEADROOM).abs() < 1e-6, "{gap:?}");
        }
        // In any 60 s window at most 600 slots: the 601st is 60 s after the first.
        let l = Limiter::new(Some(600), None);
        let first = l.reserve_at(1, t0).at;
        let mut last = first;
        for _ in 0..600 {
            last = l.reserve_at(1, t0).at;
        }
        assert!(last - first >= Duration::from_secs(60));
    }

    #[test]
    fn tokens_take_their_share_of_the_minute() {
        let l = Limiter::new(None, Some(6000));
        let t0 = Instant::now();
        let a = l.reserve_at(1000, t0).at;
        let b = l.reserve_at(10, t0).at;
        assert!(((b - a).as_secs_f64() - 10.0 / HEADROOM).abs() < 1e-6);
        l.correct_tokens(-500, t0);
        let c = l.reserve_at(10, t0).at;
        assert!(c >= t0 && c <= b + Duration::from_millis(200));
    }

    #[test]
    fn a_429_pauses_then_the_rate_comes_back_gradually() {
        let l = Limiter::new(Some(6000), None);
        let t0 = Instant::now();
        let old = l.reserve_at(1, t0);
        l.on_429(Some(Duration::from_secs(2)), t0);
        assert!(!l.holds(&old, t0 + Duration::from_secs(3)));
        let s = l.reserve_at(1, t0);
        assert_eq!(s.at, t0 + Duration::from_secs(2));
        let next = l.reserve_at(1, t0).at;
        // Half the rate right after the pause: 20 ms between sends instead of 10 ms.
        assert!(((next - s.at).as_secs_f64() - 0.02 / HEADROOM).abs() < 1e-6);
        // A second 429 during the same pause does not halve again.
        l.on_429(
            Some(Duration::from_secs(1)),
            t0 + Duration::from_millis(500),
        );
        let s = l.state.lock().unwrap();
        assert!((s.factor - 0.5).abs() < 1e-9);
        assert!((s.factor_now(t0 + Duration::from_secs(12)) - 1.0).abs() < 1e-9);
        assert!(s.factor_now(t0 + Duration::from_secs(7)) < 0.8);
    }

    #[test]
    fn headers_set_the_limits_and_an_empty_budget_pauses() {
        let l = Limiter::new(Some(1000), None);
        let t0 = Instant::now();
        let h = RateHeaders::read(|k| match k {
            "x-ratelimit-limit-requests" => Some("500"),
            "x-ratelimit-limit-tokens" => Some("90000"),
            "x-ratelimit-remaining-requests" => Some("0"),
            "x-ratelimit-reset-requests" => Some("1.5s"),
            _ => None,
        });
        assert_eq!(h.reset_requests, Some(Duration::from_millis(1500)));
        l.on_headers(&h, t0);
        let (r, t) = l.current();
        assert_eq!(r.map(|r| r.round()), Some(500.0));
        assert_eq!(t.map(|t| t.round()), Some(90000.0));
        assert_eq!(l.paused_until(), t0 + Duration::from_millis(1500));
        // A header above the user's limit does not raise it.
        let h = RateHeaders {
            limit_requests: Some(5000),
            ..Default::default()
        };
        l.on_headers(&h, t0);
        assert_eq!(l.current().0.map(|r| r.round()), Some(1000.0));
    }

    #[test]
    fn limits_learnt_from_the_first_answer_space_the_next_send_from_it() {
        let l = Limiter::new(None, None);
        let t0 = Instant::now();
        let probe = l.reserve_at(1, t0).at;
        let h = RateHeaders {
            limit_requests: Some(60),
            ..Default::default()
        };
        l.on_headers(&h, t0 + Duration::from_millis(10));
        let next = l.reserve_at(1, t0 + Duration::from_millis(10)).at;
        assert_eq!(next, probe + share(1, 60.0));
    }

    #[test]
    fn without_limits_a_429_only_pauses() {
        let l = Limiter::new(None, None);
        let t0 = Instant::now();
        l.on_429(None, t0);
        assert_eq!(l.current(), (None, None));
        assert_eq!(l.reserve_at(1, t0).at, t0 + Duration::from_secs(1));
        assert_eq!(l.reserve_at(1, t0).at, t0 + Duration::from_secs(1));
    }

    #[test]
    fn reset_durations_parse() {
        assert_eq!(parse_reset("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_reset("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_reset("soon"), None);
    }
}
