//! Prometheus metrics, one registry per `App` so parallel test servers never
//! share counters. Hot-path handles are resolved once here, so recording a
//! decision costs a few atomic adds, not a label lookup.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Decision latencies span ~1 µs (cache hit) to tens of ms (huge entity sets).
const DECISION_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
];
const HTTP_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub decision_duration: Histogram,
    pub decisions_allow: IntCounter,
    pub decisions_deny: IntCounter,
    pub decision_cache_hits: IntCounter,
    pub decision_cache_misses: IntCounter,
    pub entity_cache_hits: IntCounter,
    pub entity_cache_misses: IntCounter,
    pub policy_reloads: IntCounterVec,
    pub policy_generation: IntGauge,
    pub entity_generation: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("portcullis".to_owned()), None)
            .expect("static registry prefix is valid");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency.")
                .buckets(HTTP_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("static metric definition");
        let decision_duration = Histogram::with_opts(
            HistogramOpts::new(
                "decision_duration_seconds",
                "Time to reach one authorization decision, cache lookups included.",
            )
            .buckets(DECISION_BUCKETS.to_vec()),
        )
        .expect("static metric definition");
        let decisions = IntCounterVec::new(
            Opts::new("decisions_total", "Authorization decisions by outcome."),
            &["decision"],
        )
        .expect("static metric definition");
        let cache_hits = IntCounterVec::new(
            Opts::new("cache_hits_total", "Cache hits by cache."),
            &["cache"],
        )
        .expect("static metric definition");
        let cache_misses = IntCounterVec::new(
            Opts::new("cache_misses_total", "Cache misses by cache."),
            &["cache"],
        )
        .expect("static metric definition");
        let policy_reloads = IntCounterVec::new(
            Opts::new("policy_reloads_total", "Policy set rebuilds by result."),
            &["result"],
        )
        .expect("static metric definition");
        let policy_generation =
            IntGauge::new("policy_generation", "Generation of the serving policy set.")
                .expect("static metric definition");
        let entity_generation =
            IntGauge::new("entity_generation", "Generation of the serving entity set.")
                .expect("static metric definition");

        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(decision_duration.clone()),
            Box::new(decisions.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_misses.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(policy_generation.clone()),
            Box::new(entity_generation.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }

        Metrics {
            decisions_allow: decisions.with_label_values(&["allow"]),
            decisions_deny: decisions.with_label_values(&["deny"]),
            decision_cache_hits: cache_hits.with_label_values(&["decision"]),
            decision_cache_misses: cache_misses.with_label_values(&["decision"]),
            entity_cache_hits: cache_hits.with_label_values(&["entity"]),
            entity_cache_misses: cache_misses.with_label_values(&["entity"]),
            registry,
            http_requests,
            http_duration,
            decision_duration,
            policy_reloads,
            policy_generation,
            entity_generation,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
