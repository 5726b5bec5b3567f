//! `Resilient`: the one wrapper every backend call goes through.
//!
//! - **Retries** (backon): exponential backoff with jitter, bounded, for
//!   transient errors only. Reads retry on any transient error; writes only
//!   when no connection was had (`Unreachable`), because a write that failed
//!   on the way may have applied, and applying it twice is worse than
//!   reporting the failure.
//! - **Circuit breaker**, one per backend: after `failures` transient
//!   failures in a row (each failed attempt counts, retries included: calls
//!   to one backend may be serialized, and a down backend must not take
//!   `failures` whole calls with their retries to be noticed) it opens and
//!   calls fail at once with `CircuitOpen`;
//!   after `cooldown` one probe call is let through (half-open), and its
//!   outcome closes or reopens it. Answers such as a version conflict prove
//!   the backend is up and count as successes.
//!
//! State is kept in atomics: no lock on the call path.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use tracing::Instrument;

use super::{Expect, Op, ScanPage, Store, StoreError, Versioned};
use crate::config::ResilienceConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open: the value of the breaker metric.
    pub fn as_number(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    /// As the API names it: `closed`, `half_open` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// Counters of one backend, for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub retries: AtomicU64,
    pub failures: AtomicU64,
}

struct Breaker {
    name: String,
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    consecutive: AtomicU32,
    /// Milliseconds since `epoch` when it opened, plus one; 0 = closed.
    opened_at: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn state(&self) -> BreakerState {
        match self.opened_at.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            opened if self.now_ms() + 1 < opened + self.cooldown.as_millis() as u64 => {
                BreakerState::Open
            }
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go out now.
    fn admit(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            // One probe at a time.
            BreakerState::HalfOpen => self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
        }
    }

    fn succeeded(&self) {
        self.consecutive.store(0, Ordering::Release);
        if self.opened_at.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(backend = %self.name, "Circuit closed: the backend answers again.");
        }
        self.probing.store(false, Ordering::Release);
    }

    /// A failed attempt. At the threshold the breaker opens; a failure
    /// while it is open (an attempt admitted before, such as a retry) starts
    /// the cooldown again, so it counts from the latest failure.
    fn failed(&self) {
        let failures = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let probing = self.probing.swap(false, Ordering::AcqRel);
        if probing || failures >= self.threshold {
            let was = self.opened_at.swap(self.now_ms() + 1, Ordering::AcqRel);
            if was == 0 || probing {
                tracing::warn!(backend = %self.name, failures, "Circuit opened: calls fail fast until the cooldown ends.");
            }
        }
    }
}

/// Retries and a breaker for one backend: every call to it goes through
/// [`Guard::call`]. Stores get it through [`Resilient`]; directories hold
/// one themselves.
pub struct Guard {
    breaker: Breaker,
    backoff: ExponentialBuilder,
    pub stats: Arc<BackendStats>,
}

impl Guard {
    pub fn new(name: &str, config: &ResilienceConfig) -> Guard {
        Guard {
            breaker: Breaker {
                name: name.to_owned(),
                threshold: config.breaker_failures,
                cooldown: Duration::from_millis(config.breaker_cooldown_ms),
                epoch: Instant::now(),
                consecutive: AtomicU32::new(0),
                opened_at: AtomicU64::new(0),
                probing: AtomicBool::new(false),
            },
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(config.retry_min_delay_ms))
                .with_max_delay(Duration::from_millis(config.retry_max_delay_ms))
                .with_max_times(config.retries as usize)
                .with_jitter(),
            stats: Arc::new(BackendStats::default()),
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Breaker state, retried calls, and calls failed after their retries.
    pub fn status(&self) -> (BreakerState, u64, u64) {
        (
            self.breaker.state(),
            self.stats.retries.load(Ordering::Relaxed),
            self.stats.failures.load(Ordering::Relaxed),
        )
    }

    /// Runs `call` through the breaker, retrying transient errors that
    /// `retry_on` accepts (see [`read_retry`] and [`write_retry`]).
    pub async fn call<T, F, Fut>(
        &self,
        retry_on: fn(&StoreError) -> bool,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        if !self.breaker.admit() {
            return Err(StoreError::CircuitOpen(self.breaker.name.clone()));
        }
        // One span per backend call, retries included.
        let span = tracing::debug_span!("backend_call", backend = %self.breaker.name);
        let result = call
            .retry(self.backoff)
            .when(retry_on)
            .notify(|e, delay| {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                self.breaker.failed();
                tracing::debug!(backend = %self.breaker.name, error = %e, delay_ms = delay.as_millis() as u64, "Retrying a backend call.");
            })
            .instrument(span)
            .await;
        match &result {
            Err(e) if e.is_transient() => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.breaker.failed();
            }
            _ => self.breaker.succeeded(),
        }
        result
    }
}

/// A store behind its [`Guard`].
pub struct Resilient {
    inner: Arc<dyn Store>,
    pub guard: Guard,
}

impl Resilient {
    pub fn new(name: &str, inner: Arc<dyn Store>, config: &ResilienceConfig) -> Resilient {
        Resilient {
            inner,
            guard: Guard::new(name, config),
        }
    }

    pub fn status(&self) -> (BreakerState, u64, u64) {
        self.guard.status()
    }
}

/// Reads and idempotent calls: retry any transient error.
pub fn read_retry(e: &StoreError) -> bool {
    e.is_transient()
}

/// Writes: retry only when the call never reached the backend.
pub fn write_retry(e: &StoreError) -> bool {
    matches!(e, StoreError::Unreachable(_))
}

#[async_trait]
impl Store for Resilient {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.guard
            .call(read_retry, || self.inner.get(ns, key))
            .await
    }

    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        expect: Expect,
    ) -> Result<u64, StoreError> {
        self.guard
            .call(write_retry, || self.inner.put(ns, key, value, expect))
            .await
    }

    async fn delete(&self, ns: &str, key: &str, expect: Expect) -> Result<bool, StoreError> {
        self.guard
            .call(write_retry, || self.inner.delete(ns, key, expect))
            .await
    }

    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.guard
            .call(read_retry, || self.inner.scan(ns, prefix, cursor, limit))
            .await
    }

    async fn transact(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        self.guard
            .call(write_retry, || self.inner.transact(ops.clone()))
            .await
    }

    async fn import(&self, ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError> {
        // Import overwrites with fixed versions: applying it twice is harmless.
        self.guard
            .call(read_retry, || self.inner.import(ns, items))
            .await
    }

    async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        self.guard
            .call(read_retry, || self.inner.namespaces())
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.guard.call(read_retry, || self.inner.health()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cooldown_ms: u64) -> Breaker {
        Breaker {
            name: "test".into(),
            threshold,
            cooldown: Duration::from_millis(cooldown_ms),
            epoch: Instant::now(),
            consecutive: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    #[test]
    fn opens_after_the_threshold_and_a_success_resets_the_count() {
        let b = breaker(3, 60_000);
        b.failed();
        b.failed();
        b.succeeded();
        b.failed();
        b.failed();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit());
        b.failed();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.admit());
    }

    #[test]
    fn a_failure_while_open_restarts_the_cooldown() {
        // A retry admitted before the breaker opened fails after it did.
        let b = breaker(1, 80);
        b.failed();
        std::thread::sleep(Duration::from_millis(50));
        b.failed();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "80 ms from the latest failure"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_admits_one_probe_whose_outcome_decides() {
        let b = breaker(1, 30);
        b.failed();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(), "one probe");
        assert!(!b.admit(), "only one probe at a time");
        b.failed();
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit());
        b.succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit() && b.admit());
    }
}
