//! Request-rate limits (the `[[limits]]` contract): token buckets per
//! declared limit, checked after a request is allowed by policy and before
//! it reaches the safeguards or the upstream, so refused requests spend no
//! quota and over-limit requests cost no upstream work.
//!
//! `requests_per_minute = N` admits N requests back to back, then refills
//! at N per minute (`requests_per_second` likewise per second). Several
//! limits can apply to one request; all must pass, and a request refused by
//! one takes nothing from the others. Counters live in this process: each
//! replica enforces its own limits.
//!
//! `concurrent_streams = N` admits at most N streaming requests of the
//! scope at once; the slot is held for the stream's whole life (see
//! [`LimitPermit`]) and a stream over it is refused before it starts.
//!
//! Token and budget limits (`input_tokens_per_minute`,
//! `output_tokens_per_minute`, `tokens_per_day`, `tokens_per_month`) are
//! part of the contract but not enforced yet: a config naming them is
//! refused at start, so nobody believes in a budget that does not exist.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::error::ApiError;

/// The longest limit id accepted.
const MAX_LIMIT_ID_BYTES: usize = 128;

/// One `[[limits]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub id: String,
    pub scope: LimitScope,
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub input_tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub output_tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub concurrent_streams: Option<u32>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    #[serde(default)]
    pub tokens_per_month: Option<u64>,
}

/// What a limit counts: the requests of one principal, organization, API
/// key, model or model family.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LimitScope {
    Principal(String),
    Organization(String),
    Key(String),
    Model(String),
    Family(String),
}

/// The request facts a scope is matched against.
#[derive(Debug, Clone, Copy)]
pub struct LimitSubject<'a> {
    pub principal: &'a str,
    pub organization: Option<&'a str>,
    pub key: &'a str,
    pub model: &'a str,
    pub family: &'a str,
}

impl LimitScope {
    fn matches(&self, subject: &LimitSubject<'_>) -> bool {
        match self {
            LimitScope::Principal(id) => id == subject.principal,
            LimitScope::Organization(id) => Some(id.as_str()) == subject.organization,
            LimitScope::Key(id) => id == subject.key,
            LimitScope::Model(name) => name == subject.model,
            LimitScope::Family(name) => name == subject.family,
        }
    }
}

/// Checks every declared limit: a unique, bounded id, at least one rate,
/// rates above zero, and none of the kinds not enforced yet.
pub fn validate(limits: &[LimitConfig]) -> Result<(), ConfigError> {
    let invalid = |field: String, reason: String| ConfigError::Invalid { field, reason };
    let mut ids = HashSet::new();
    for (index, limit) in limits.iter().enumerate() {
        let field = |name: &str| format!("limits[{index}].{name}");
        if limit.id.trim().is_empty() || limit.id.len() > MAX_LIMIT_ID_BYTES {
            return Err(invalid(
                field("id"),
                format!("must be 1 to {MAX_LIMIT_ID_BYTES} bytes"),
            ));
        }
        if !ids.insert(limit.id.as_str()) {
            return Err(invalid(
                field("id"),
                format!("`{}` is declared twice", limit.id),
            ));
        }
        let not_yet = [
            (
                "input_tokens_per_minute",
                limit.input_tokens_per_minute.is_some(),
            ),
            (
                "output_tokens_per_minute",
                limit.output_tokens_per_minute.is_some(),
            ),
            ("tokens_per_day", limit.tokens_per_day.is_some()),
            ("tokens_per_month", limit.tokens_per_month.is_some()),
        ];
        if let Some((name, _)) = not_yet.iter().find(|(_, set)| *set) {
            return Err(invalid(
                field(name),
                "is not enforced by this version; only requests_per_second, requests_per_minute and concurrent_streams are, so the limit is refused rather than ignored".into(),
            ));
        }
        match (
            limit.requests_per_second,
            limit.requests_per_minute,
            limit.concurrent_streams,
        ) {
            (None, None, None) => {
                return Err(invalid(
                    field("requests_per_minute"),
                    "a limit needs requests_per_second, requests_per_minute or concurrent_streams"
                        .into(),
                ));
            }
            (Some(0), _, _) | (_, Some(0), _) | (_, _, Some(0)) => {
                return Err(invalid(
                    field("requests_per_minute"),
                    "must be above 0 (remove the model from the registry to refuse every request)"
                        .into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A token bucket: `capacity` requests back to back, refilled at
/// `capacity` per `period`.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: u32, period: Duration, now: Instant) -> Self {
        let capacity = f64::from(capacity);
        Self {
            capacity,
            per_second: capacity / period.as_secs_f64(),
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Seconds until one request fits again.
    fn wait_seconds(&self) -> f64 {
        ((1.0 - self.tokens) / self.per_second).max(0.0)
    }
}

/// A declared limit and its buckets (one per rate it sets).
#[derive(Debug)]
struct Limit {
    config: LimitConfig,
    buckets: Mutex<Vec<(&'static str, Bucket)>>,
    /// Streams of the scope running now.
    streams: Arc<AtomicU32>,
}

/// The stream slots a request holds; they are given back when it is
/// dropped, which is when the stream ends however it ends.
#[derive(Debug, Default)]
pub struct LimitPermit {
    slots: Vec<Arc<AtomicU32>>,
}

impl Drop for LimitPermit {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Every limit of this replica.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: Vec<Limit>,
}

/// Why a request is over a limit, for its 429.
#[derive(Debug, Clone, PartialEq)]
pub struct OverLimit {
    pub limit_id: String,
    /// `requests_per_second` or `requests_per_minute`.
    pub rate: &'static str,
    pub limit: u32,
    pub retry_after_seconds: u32,
}

impl Limiter {
    pub fn new(limits: &[LimitConfig]) -> Self {
        let now = Instant::now();
        Self {
            limits: limits
                .iter()
                .map(|config| {
                    let mut buckets = Vec::new();
                    if let Some(rate) = config.requests_per_second {
                        buckets.push((
                            "requests_per_second",
                            Bucket::new(rate, Duration::from_secs(1), now),
                        ));
                    }
                    if let Some(rate) = config.requests_per_minute {
                        buckets.push((
                            "requests_per_minute",
                            Bucket::new(rate, Duration::from_secs(60), now),
                        ));
                    }
                    Limit {
                        config: config.clone(),
                        buckets: Mutex::new(buckets),
                        streams: Arc::new(AtomicU32::new(0)),
                    }
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Takes one request from every limit that covers `subject` (and, for
    /// a stream, a stream slot), or nothing when any limit is exhausted.
    pub fn admit(
        &self,
        subject: &LimitSubject<'_>,
        stream: bool,
    ) -> Result<LimitPermit, OverLimit> {
        self.admit_at(subject, stream, Instant::now())
    }

    fn admit_at(
        &self,
        subject: &LimitSubject<'_>,
        stream: bool,
        now: Instant,
    ) -> Result<LimitPermit, OverLimit> {
        let matching: Vec<&Limit> = self
            .limits
            .iter()
            .filter(|limit| limit.config.scope.matches(subject))
            .collect();
        let mut permit = LimitPermit::default();
        if matching.is_empty() {
            return Ok(permit);
        }
        // Stream slots first: reserved one by one, and given back (by the
        // permit's drop) if any limit refuses.
        if stream {
            for limit in &matching {
                let Some(max) = limit.config.concurrent_streams else {
                    continue;
                };
                let before = limit.streams.fetch_add(1, Ordering::AcqRel);
                permit.slots.push(limit.streams.clone());
                if before >= max {
                    return Err(OverLimit {
                        limit_id: limit.config.id.clone(),
                        rate: "concurrent_streams",
                        limit: max,
                        retry_after_seconds: 1,
                    });
                }
            }
        }
        // Locks are taken in declaration order, so two requests never wait
        // on each other's locks in opposite orders.
        let mut guards: Vec<_> = matching.iter().map(|limit| limit.buckets.lock()).collect();
        let mut refused: Option<OverLimit> = None;
        for (limit, guard) in matching.iter().zip(guards.iter_mut()) {
            for (rate, bucket) in guard.iter_mut() {
                bucket.refill(now);
                if bucket.tokens < 1.0 {
                    let wait = bucket.wait_seconds();
                    let candidate = OverLimit {
                        limit_id: limit.config.id.clone(),
                        rate,
                        limit: bucket.capacity as u32,
                        retry_after_seconds: wait.ceil().max(1.0) as u32,
                    };
                    // The longest wait is the one that decides.
                    if refused
                        .as_ref()
                        .is_none_or(|r| r.retry_after_seconds < candidate.retry_after_seconds)
                    {
                        refused = Some(candidate);
                    }
                }
            }
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
        for guard in guards.iter_mut() {
            for (_, bucket) in guard.iter_mut() {
                bucket.tokens -= 1.0;
            }
        }
        Ok(permit)
    }
}

impl From<OverLimit> for ApiError {
    fn from(over: OverLimit) -> Self {
        ApiError::rate_limited(
            format!(
                "rate limit `{}` reached ({} {}); retry in {} s",
                over.limit_id,
                over.limit,
                over.rate.replace('_', " "),
                over.retry_after_seconds
            ),
            over.retry_after_seconds,
            over.limit,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn limit(id: &str, scope: LimitScope, rps: Option<u32>, rpm: Option<u32>) -> LimitConfig {
        LimitConfig {
            id: id.into(),
            scope,
            requests_per_second: rps,
            requests_per_minute: rpm,
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            concurrent_streams: None,
            tokens_per_day: None,
            tokens_per_month: None,
        }
    }

    fn subject<'a>(principal: &'a str, model: &'a str) -> LimitSubject<'a> {
        LimitSubject {
            principal,
            organization: Some("acme"),
            key: "key_1",
            model,
            family: "frontier",
        }
    }

    #[test]
    fn a_bucket_admits_its_burst_then_refills_at_its_rate() {
        let limiter = Limiter::new(&[limit(
            "alice-rpm",
            LimitScope::Principal("alice".into()),
            None,
            Some(5),
        )]);
        let start = Instant::now();
        let alice = subject("alice", "haiku");
        for _ in 0..5 {
            assert!(limiter.admit_at(&alice, false, start).is_ok());
        }
        let refused = limiter.admit_at(&alice, false, start).unwrap_err();
        assert_eq!(refused.limit_id, "alice-rpm");
        assert_eq!(refused.retry_after_seconds, 12);
        // Others are not counted against alice's limit.
        assert!(
            limiter
                .admit_at(&subject("bruno", "haiku"), false, start)
                .is_ok()
        );
        // One request back after 12 s, not two.
        let later = start + Duration::from_secs(12);
        assert!(limiter.admit_at(&alice, false, later).is_ok());
        assert!(limiter.admit_at(&alice, false, later).is_err());
    }

    #[test]
    fn every_covering_limit_must_pass_and_a_refusal_takes_from_none() {
        let limiter = Limiter::new(&[
            limit(
                "org",
                LimitScope::Organization("acme".into()),
                None,
                Some(3),
            ),
            limit("fable", LimitScope::Model("fable".into()), Some(1), None),
        ]);
        let now = Instant::now();
        assert!(
            limiter
                .admit_at(&subject("alice", "fable"), false, now)
                .is_ok()
        );
        // fable's per-second bucket is empty: refused, and the org's bucket
        // keeps its two remaining requests.
        assert_eq!(
            limiter
                .admit_at(&subject("bruno", "fable"), false, now)
                .unwrap_err()
                .limit_id,
            "fable"
        );
        assert!(
            limiter
                .admit_at(&subject("bruno", "haiku"), false, now)
                .is_ok()
        );
        assert!(
            limiter
                .admit_at(&subject("chen", "haiku"), false, now)
                .is_ok()
        );
        assert_eq!(
            limiter
                .admit_at(&subject("dara", "haiku"), false, now)
                .unwrap_err()
                .limit_id,
            "org"
        );
    }

    #[test]
    fn a_stream_slot_is_held_until_the_permit_is_dropped() {
        let mut streams = limit(
            "acme-streams",
            LimitScope::Organization("acme".into()),
            None,
            None,
        );
        streams.concurrent_streams = Some(2);
        let limiter = Limiter::new(&[
            streams,
            limit(
                "alice-rps",
                LimitScope::Principal("alice".into()),
                Some(1),
                None,
            ),
        ]);
        let now = Instant::now();
        let first = limiter
            .admit_at(&subject("bruno", "haiku"), true, now)
            .unwrap();
        let second = limiter
            .admit_at(&subject("chen", "haiku"), true, now)
            .unwrap();
        let refused = limiter
            .admit_at(&subject("dara", "haiku"), true, now)
            .unwrap_err();
        assert_eq!(refused.rate, "concurrent_streams");
        // Whole answers hold no slot.
        assert!(
            limiter
                .admit_at(&subject("dara", "haiku"), false, now)
                .is_ok()
        );
        drop(first);
        let third = limiter
            .admit_at(&subject("dara", "haiku"), true, now)
            .unwrap();
        // A stream refused by another limit gives its slot back.
        assert!(
            limiter
                .admit_at(&subject("alice", "haiku"), false, now)
                .is_ok()
        );
        drop(second);
        assert_eq!(
            limiter
                .admit_at(&subject("alice", "haiku"), true, now)
                .unwrap_err()
                .limit_id,
            "alice-rps"
        );
        assert!(
            limiter
                .admit_at(&subject("emeka", "haiku"), true, now)
                .is_ok()
        );
        drop(third);
    }

    #[test]
    fn scopes_match_their_own_fact() {
        let cases = [
            (LimitScope::Principal("alice".into()), true),
            (LimitScope::Principal("bruno".into()), false),
            (LimitScope::Organization("acme".into()), true),
            (LimitScope::Key("key_1".into()), true),
            (LimitScope::Key("key_2".into()), false),
            (LimitScope::Model("haiku".into()), true),
            (LimitScope::Family("frontier".into()), true),
            (LimitScope::Family("haiku".into()), false),
        ];
        for (scope, expected) in cases {
            assert_eq!(
                scope.matches(&subject("alice", "haiku")),
                expected,
                "{scope:?}"
            );
        }
    }

    #[test]
    fn bad_limits_are_refused_at_start() {
        let ok = limit("a", LimitScope::Principal("alice".into()), None, Some(5));
        let mut tokens = ok.clone();
        tokens.tokens_per_day = Some(1000);
        let mut streams_only = ok.clone();
        streams_only.requests_per_minute = None;
        streams_only.concurrent_streams = Some(4);
        let mut no_rate = ok.clone();
        no_rate.requests_per_minute = None;
        let mut zero = ok.clone();
        zero.requests_per_minute = Some(0);
        let mut blank = ok.clone();
        blank.id = " ".into();
        let cases = [
            (vec![ok.clone()], None),
            (vec![streams_only], None),
            (vec![ok.clone(), ok.clone()], Some("limits[1].id")),
            (vec![tokens], Some("limits[0].tokens_per_day")),
            (vec![no_rate], Some("limits[0].requests_per_minute")),
            (vec![zero], Some("limits[0].requests_per_minute")),
            (vec![blank], Some("limits[0].id")),
        ];
        for (limits, field) in cases {
            match (validate(&limits), field) {
                (Ok(()), None) => {}
                (Err(ConfigError::Invalid { field: got, .. }), Some(expected)) => {
                    assert_eq!(got, expected);
                }
                (other, expected) => panic!("{other:?} for {expected:?}"),
            }
        }
        let parsed: LimitConfig = serde_json::from_value(serde_json::json!(
            {"id": "alice-rpm", "scope": {"principal": "alice"}, "requests_per_minute": 5}
        ))
        .unwrap();
        assert_eq!(parsed.scope, LimitScope::Principal("alice".into()));
    }
}
