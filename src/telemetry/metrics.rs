//! Prometheus metrics, one registry per `App` so parallel test servers never
//! share counters. Hot-path handles are resolved once here, so recording a
//! decision costs a few atomic adds, not a label lookup.

use std::collections::HashMap;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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

/// Per route and method: request counts by status class and latency,
/// resolved once so a request records without a label lookup or lock.
pub struct RouteMetrics {
    by_class: [IntCounter; 5],
    duration: Histogram,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// `route -> [GET, POST, PUT, PATCH, DELETE]`, fixed at start-up.
    routes: HashMap<Box<str>, [Option<RouteMetrics>; 5]>,
    pub decision_duration: Histogram,
    pub decisions_allow: IntCounter,
    pub decisions_deny: IntCounter,
    pub decision_cache_hits: IntCounter,
    pub decision_cache_misses: IntCounter,
    pub entity_cache_hits: IntCounter,
    pub entity_cache_misses: IntCounter,
    pub identity_cache_hits: IntCounter,
    pub identity_cache_misses: IntCounter,
    /// Decisions denied because a directory could not be read.
    pub identity_unavailable: IntCounter,
    pub policy_reloads: IntCounterVec,
    pub policy_generation: IntGauge,
    pub entity_generation: IntGauge,
    breaker_state: IntGaugeVec,
    backend_retries: IntCounterVec,
    backend_errors: IntCounterVec,
    decision_log: IntCounterVec,
    grpc_checks: IntCounterVec,
    grpc_duration: Histogram,
    connections_open: IntGaugeVec,
    connections_refused: IntCounterVec,
}

impl Metrics {
    /// Registers every metric; `routes` are the `(method, path template)`
    /// pairs whose request metrics are resolved ahead of time.
    pub fn new(routes: &[(&str, &str)]) -> Metrics {
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
        let identity_unavailable = IntCounter::new(
            "identity_unavailable_total",
            "Decisions denied (fail closed) because the principal's directory could not be read.",
        )
        .expect("static metric definition");
        let policy_generation =
            IntGauge::new("policy_generation", "Generation of the serving policy set.")
                .expect("static metric definition");
        let entity_generation =
            IntGauge::new("entity_generation", "Generation of the serving entity set.")
                .expect("static metric definition");

        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "backend_breaker_state",
                "Circuit breaker per backend: 0 closed, 1 half-open, 2 open.",
            ),
            &["backend"],
        )
        .expect("static metric definition");
        let backend_retries = IntCounterVec::new(
            Opts::new(
                "backend_retries_total",
                "Backend calls retried after a transient error.",
            ),
            &["backend"],
        )
        .expect("static metric definition");
        let backend_errors = IntCounterVec::new(
            Opts::new(
                "backend_errors_total",
                "Backend calls that failed with a transient error after their retries.",
            ),
            &["backend"],
        )
        .expect("static metric definition");

        let decision_log = IntCounterVec::new(
            Opts::new(
                "decision_log_entries_total",
                "Decision log entries by outcome: written, or dropped because the queue was full.",
            ),
            &["outcome"],
        )
        .expect("static metric definition");

        let grpc_checks = IntCounterVec::new(
            Opts::new(
                "ext_authz_grpc_checks_total",
                "Envoy ext_authz gRPC checks by the google.rpc code answered.",
            ),
            &["code"],
        )
        .expect("static metric definition");
        let grpc_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ext_authz_grpc_duration_seconds",
                "Envoy ext_authz gRPC check latency, from the decoded request to the answer.",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
        )
        .expect("static metric definition");

        let connections_open = IntGaugeVec::new(
            Opts::new(
                "connections_open",
                "Open connections by listener (http, grpc).",
            ),
            &["listener"],
        )
        .expect("static metric definition");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "Connections refused because the listener had server.max_connections open.",
            ),
            &["listener"],
        )
        .expect("static metric definition");

        for collector in [
            Box::new(decision_log.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(grpc_checks.clone()),
            Box::new(grpc_duration.clone()),
            Box::new(breaker_state.clone()),
            Box::new(backend_retries.clone()),
            Box::new(backend_errors.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(decision_duration.clone()),
            Box::new(decisions.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_misses.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(identity_unavailable.clone()),
            Box::new(policy_generation.clone()),
            Box::new(entity_generation.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }

        let mut table: HashMap<Box<str>, [Option<RouteMetrics>; 5]> = HashMap::new();
        for (method, path) in routes {
            let Some(slot) = METHODS.iter().position(|m| m == method) else {
                continue;
            };
            let row = table.entry((*path).into()).or_default();
            row[slot] = Some(RouteMetrics {
                by_class: STATUS_CLASSES
                    .map(|class| http_requests.with_label_values(&[path, method, class])),
                duration: http_duration.with_label_values(&[path, method]),
            });
        }

        Metrics {
            routes: table,
            decisions_allow: decisions.with_label_values(&["allow"]),
            decisions_deny: decisions.with_label_values(&["deny"]),
            decision_cache_hits: cache_hits.with_label_values(&["decision"]),
            decision_cache_misses: cache_misses.with_label_values(&["decision"]),
            entity_cache_hits: cache_hits.with_label_values(&["entity"]),
            entity_cache_misses: cache_misses.with_label_values(&["entity"]),
            identity_cache_hits: cache_hits.with_label_values(&["identity"]),
            identity_cache_misses: cache_misses.with_label_values(&["identity"]),
            identity_unavailable,
            registry,
            http_requests,
            http_duration,
            decision_duration,
            policy_reloads,
            policy_generation,
            entity_generation,
            breaker_state,
            backend_retries,
            backend_errors,
            decision_log,
            grpc_checks,
            grpc_duration,
            connections_open,
            connections_refused,
        }
    }

    /// The open-connections gauge and the refusals counter of `listener`.
    pub fn connections(&self, listener: &str) -> (IntGauge, IntCounter) {
        (
            self.connections_open.with_label_values(&[listener]),
            self.connections_refused.with_label_values(&[listener]),
        )
    }

    /// Records one ext_authz gRPC check.
    pub fn observe_grpc_check(&self, code: &str, seconds: f64) {
        self.grpc_checks.with_label_values(&[code]).inc();
        self.grpc_duration.observe(seconds);
    }

    /// Brings the decision log's counters up to its totals.
    pub fn observe_decision_log(&self, written: u64, dropped: u64) {
        for (outcome, total) in [("written", written), ("dropped", dropped)] {
            let counter = self.decision_log.with_label_values(&[outcome]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Brings a backend's breaker gauge and counters up to its totals.
    pub fn observe_backend(&self, backend: &str, breaker: i64, retries: u64, errors: u64) {
        self.breaker_state
            .with_label_values(&[backend])
            .set(breaker);
        for (counter, total) in [
            (&self.backend_retries, retries),
            (&self.backend_errors, errors),
        ] {
            let counter = counter.with_label_values(&[backend]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Records one HTTP request.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let known = METHODS
            .iter()
            .position(|m| *m == method)
            .and_then(|slot| self.routes.get(route)?[slot].as_ref());
        match known {
            Some(route) => {
                route.by_class[class].inc();
                route.duration.observe(seconds);
            }
            None => {
                self.http_requests
                    .with_label_values(&[route, method, STATUS_CLASSES[class]])
                    .inc();
                self.http_duration
                    .with_label_values(&[route, method])
                    .observe(seconds);
            }
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
