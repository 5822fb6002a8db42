//! Fault injection (`--faults`), for testing clients against a misbehaving API.
//!
//! The spec is a comma-separated list of rules `ROUTE:ACTION[@CALLS]`:
//! - ROUTE: `files.create`, `files.list`, `files.retrieve`, `files.delete`, `content`
//!   (file downloads), `batches.create`, `batches.retrieve`, `batches.list`,
//!   `batches.cancel`, `chat`, `embeddings`, `responses`, `batch.line` (each request
//!   a batch executes), or `*` (every route);
//! - ACTION: an HTTP status (`429`, `500`, `503`, any 4xx/5xx) with the OpenAI error
//!   body, optionally `/SECONDS` for its `Retry-After` (429 and 503 default to 1);
//!   `hang` (the call is carried out, then its answer is never sent: a created batch
//!   exists but the client hears nothing); `drop=BYTES` (a download's connection is
//!   cut after BYTES bytes of the body); `slow=DURATION` (the answer waits, e.g.
//!   `slow=200ms`);
//! - CALLS: which calls of that route (counted from 1 per route since start): `N`,
//!   `N-M`, `N-` (from N on); every call when left out.
//!
//! Example: `files.create:429@1,batches.create:hang@2,content:drop=1000@1,chat:500@3,*:slow=200ms`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;

use super::error::ApiError;

/// The routes a rule may name.
pub const ROUTES: [&str; 13] = [
    "files.create",
    "files.list",
    "files.retrieve",
    "files.delete",
    "content",
    "batches.create",
    "batches.retrieve",
    "batches.list",
    "batches.cancel",
    "chat",
    "embeddings",
    "responses",
    "batch.line",
];

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Status(u16, Option<u64>),
    Hang,
    Drop(u64),
    Slow(Duration),
}

#[derive(Debug, Clone)]
struct Rule {
    route: String,
    action: Action,
    from: u64,
    to: Option<u64>,
}

/// What to do to one call.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Answer with this error instead of doing the work.
    pub error: Option<ApiError>,
    /// Do the work, then never answer.
    pub hang: bool,
    /// Cut a download after this many bytes of the body.
    pub drop_after: Option<u64>,
    /// Wait this long first.
    pub slow: Option<Duration>,
}

/// The parsed rules and a call counter per route.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<Rule>,
    calls: Mutex<HashMap<&'static str, u64>>,
}

/// Parses `200ms`, `2s`, `1.5s`, `10m`, `24h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 200ms, 2s, 10m, 24h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(format!(
                "not a duration: {s:?} (use e.g. 200ms, 2s, 10m, 24h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration out of range: {s:?}"))
}

fn parse_rule(r: &str) -> Result<Rule, String> {
    let bad = |why: &str| format!("--faults rule {r:?}: {why}");
    let (route, rest) = r
        .split_once(':')
        .ok_or_else(|| bad("expected ROUTE:ACTION[@CALLS]"))?;
    let route = route.trim();
    if route != "*" && !ROUTES.contains(&route) {
        return Err(bad(&format!(
            "unknown route (known: *, {})",
            ROUTES.join(", ")
        )));
    }
    let (action, calls) = match rest.split_once('@') {
        Some((a, c)) => (a.trim(), Some(c.trim())),
        None => (rest.trim(), None),
    };
    let action = if action == "hang" {
        Action::Hang
    } else if let Some(n) = action.strip_prefix("drop=") {
        Action::Drop(
            n.parse()
                .map_err(|_| bad("drop=BYTES needs a number of bytes"))?,
        )
    } else if let Some(d) = action.strip_prefix("slow=") {
        Action::Slow(parse_duration(d).map_err(|e| bad(&e))?)
    } else {
        let (code, ra) = match action.split_once('/') {
            Some((c, s)) => (
                c,
                Some(
                    s.parse::<u64>()
                        .map_err(|_| bad("STATUS/SECONDS needs whole seconds"))?,
                ),
            ),
            None => (action, None),
        };
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (400..600).contains(c))
            .ok_or_else(|| {
                bad("the action must be a 4xx/5xx status, hang, drop=BYTES or slow=DURATION")
            })?;
        Action::Status(code, ra)
    };
    let (from, to) = match calls {
        None => (1, None),
        Some(c) => {
            let num = |s: &str| s.trim().parse::<u64>().ok().filter(|n| *n >= 1);
            match c.split_once('-') {
                None => {
                    let n = num(c).ok_or_else(|| bad("@CALLS is N, N-M or N- (from 1)"))?;
                    (n, Some(n))
                }
                Some((a, "")) => (
                    num(a).ok_or_else(|| bad("@CALLS is N, N-M or N- (from 1)"))?,
                    None,
                ),
                Some((a, b)) => {
                    let (a, b) = num(a)
                        .zip(num(b))
                        .ok_or_else(|| bad("@CALLS is N, N-M or N- (from 1)"))?;
                    (a, Some(b))
                }
            }
        }
    };
    Ok(Rule {
        route: route.to_string(),
        action,
        from,
        to,
    })
}

fn error_for(code: u16, retry_after: Option<u64>) -> ApiError {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match code {
        429 => ApiError::rate_limited(
            "requests",
            "Rate limit reached (injected by --faults). Please try again later.",
            retry_after.unwrap_or(1),
        ),
        500.. => {
            let mut e = ApiError::new(
                status,
                "server_error",
                "The server had an error while processing your request (injected by --faults).",
            );
            e.retry_after = retry_after.or((code == 503).then_some(1));
            e
        }
        _ => ApiError::new(status, "invalid_request_error", "Injected by --faults."),
    }
}

impl Faults {
    /// Parses a spec (see the module doc); an empty spec injects nothing.
    pub fn parse(spec: &str) -> Result<Faults, String> {
        let rules = spec
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(parse_rule)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Faults {
            rules,
            calls: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Counts one call of `route` and says what to do to it.
    pub fn on_call(&self, route: &'static str) -> Plan {
        if self.rules.is_empty() {
            return Plan::default();
        }
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let c = calls.entry(route).or_insert(0);
            *c += 1;
            *c
        };
        let mut plan = Plan::default();
        for r in &self.rules {
            if (r.route != "*" && r.route != route) || n < r.from || r.to.is_some_and(|t| n > t) {
                continue;
            }
            match &r.action {
                Action::Status(code, ra) => {
                    if plan.error.is_none() {
                        plan.error = Some(error_for(*code, *ra));
                    }
                }
                Action::Hang => plan.hang = true,
                Action::Drop(b) => plan.drop_after = Some(*b),
                Action::Slow(d) => plan.slow = Some(plan.slow.map_or(*d, |s| s.max(*d))),
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_to_the_chosen_calls() {
        let f = Faults::parse("files.create:429/3@2,batches.create:hang@1-2,content:drop=1000,*:slow=200ms,chat:500@3-").unwrap();
        assert!(f.on_call("files.create").error.is_none());
        let e = f.on_call("files.create").error.unwrap();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(3)));
        assert!(f.on_call("files.create").error.is_none());
        assert!(f.on_call("batches.create").hang);
        assert!(f.on_call("batches.create").hang);
        assert!(!f.on_call("batches.create").hang);
        assert_eq!(f.on_call("content").drop_after, Some(1000));
        assert_eq!(
            f.on_call("files.list").slow,
            Some(Duration::from_millis(200))
        );
        let codes: Vec<Option<u16>> = (0..4)
            .map(|_| f.on_call("chat").error.map(|e| e.status.as_u16()))
            .collect();
        assert_eq!(codes, [None, None, Some(500), Some(500)]);
    }

    #[test]
    fn bad_rules_are_explained() {
        for (spec, want) in [
            ("nope:500", "unknown route"),
            ("chat", "ROUTE:ACTION"),
            ("chat:200", "4xx/5xx"),
            ("chat:500@0", "@CALLS"),
            ("chat:slow=fast", "not a duration"),
            ("chat:slow=99999999999999999999999h", "out of range"),
        ] {
            let e = Faults::parse(spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }
}
