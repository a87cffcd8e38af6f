//! Every metric the server exports, declared once with its help text.
//!
//! Counters and histograms are updated where events happen; gauges that
//! describe state (backlog, lag, storage sizes) are computed at scrape time
//! from the broker and the store, so they never drift (`gather`). Names are
//! an API: dashboards and alerts in `dashboards/` use exactly these.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Whether metrics carry per-topic and per-subscription label values. Off
/// (`metrics_per_topic = false`) for deployments with very many topics:
/// every series is then labelled `_all` and aggregated.
static PER_NAME_LABELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The label value aggregated series use when per-name labels are off.
pub const AGGREGATE_LABEL: &str = "_all";

/// The label value of names beyond `metrics_max_label_names`.
pub const OVERFLOW_LABEL: &str = "_other";

/// The topic and subscription names that have their own label value: the
/// first `max` distinct names seen (until restart); later ones share
/// `_other`, so the number of series stays bounded by configuration.
pub struct NameLabels {
    max: std::sync::atomic::AtomicUsize,
    labelled: std::sync::RwLock<std::collections::HashSet<String>>,
    warned: std::sync::atomic::AtomicBool,
}

impl NameLabels {
    pub fn new(max: usize) -> NameLabels {
        NameLabels {
            max: std::sync::atomic::AtomicUsize::new(max),
            labelled: std::sync::RwLock::new(std::collections::HashSet::new()),
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `name` itself while there is room for it, else `_other`.
    pub fn label<'a>(&self, name: &'a str) -> &'a str {
        let known = match self.labelled.read() {
            Ok(set) => set.contains(name),
            Err(p) => p.into_inner().contains(name),
        };
        if known {
            return name;
        }
        let mut set = match self.labelled.write() {
            Ok(set) => set,
            Err(p) => p.into_inner(),
        };
        let max = self.max.load(std::sync::atomic::Ordering::Relaxed);
        if set.contains(name) {
            name
        } else if set.len() < max {
            set.insert(name.to_owned());
            name
        } else {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(max, "metric label names exhausted: further topics and subscriptions are labelled `_other` (raise `metrics_max_label_names`)");
            }
            OVERFLOW_LABEL
        }
    }
}

static NAME_LABELS: LazyLock<NameLabels> = LazyLock::new(|| NameLabels::new(usize::MAX));

/// Switches per-topic/per-subscription labels on or off and bounds how
/// many names get their own label value (at startup).
pub fn configure_name_labels(per_name: bool, max_names: usize) {
    PER_NAME_LABELS.store(per_name, std::sync::atomic::Ordering::Relaxed);
    NAME_LABELS
        .max
        .store(max_names, std::sync::atomic::Ordering::Relaxed);
}

/// The label value for a topic or subscription name.
pub fn name_label(name: &str) -> &str {
    if PER_NAME_LABELS.load(std::sync::atomic::Ordering::Relaxed) {
        NAME_LABELS.label(name)
    } else {
        AGGREGATE_LABEL
    }
}

/// Creates a topic's counter series at 0 (so `rate()` and `increase()`
/// see its first events), when the topic is created or loaded.
pub fn topic_created(topic: &str) {
    let m = &*METRICS;
    let t = [name_label(topic)];
    for v in [
        &m.messages_produced,
        &m.bytes_produced,
        &m.retention_deleted,
    ] {
        v.with_label_values(&t);
    }
}

/// Removes a deleted topic's series (unless they are shared aggregates).
pub fn topic_deleted(topic: &str) {
    if name_label(topic) != topic {
        return;
    }
    let m = &*METRICS;
    for v in [
        &m.messages_produced,
        &m.bytes_produced,
        &m.retention_deleted,
    ] {
        let _ = v.remove_label_values(&[topic]);
    }
}

const REDELIVERY_REASONS: [&str; 3] = ["nack", "lease_expired", "disconnect"];

/// Creates a subscription's counter series at 0.
pub fn subscription_created(topic: &str, sub: &str) {
    let m = &*METRICS;
    let labels = [name_label(topic), name_label(sub)];
    for v in [
        &m.deliveries,
        &m.acks,
        &m.nacks,
        &m.dead_lettered,
        &m.circuit_breaker_trips,
    ] {
        v.with_label_values(&labels);
    }
    for reason in REDELIVERY_REASONS {
        m.redeliveries
            .with_label_values(&[labels[0], labels[1], reason]);
    }
}

/// Removes a deleted subscription's series (unless they are aggregates).
pub fn subscription_deleted(topic: &str, sub: &str) {
    if name_label(topic) != topic || name_label(sub) != sub {
        return;
    }
    let m = &*METRICS;
    for v in [
        &m.deliveries,
        &m.acks,
        &m.nacks,
        &m.dead_lettered,
        &m.circuit_breaker_trips,
    ] {
        let _ = v.remove_label_values(&[topic, sub]);
    }
    for reason in REDELIVERY_REASONS {
        let _ = m.redeliveries.remove_label_values(&[topic, sub, reason]);
    }
}

/// All metrics of the process.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub messages_produced: IntCounterVec,
    pub bytes_produced: IntCounterVec,
    pub produce_batch_messages: Histogram,
    pub commit_batch_operations: Histogram,
    pub commit_sync_duration: Histogram,
    pub commit_write_duration: Histogram,
    pub wal_syncs: IntCounter,
    pub retention_deleted: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub acks: IntCounterVec,
    pub nacks: IntCounterVec,
    pub redeliveries: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub websocket_connections: IntGaugeVec,
    pub websocket_slow_disconnects: IntCounter,
    pub circuit_breaker_trips: IntCounterVec,
    pub sub_paused: IntGaugeVec,
    pub push_requests: IntCounterVec,
    pub push_duration: HistogramVec,
    pub push_in_flight: IntGaugeVec,
    pub auth_failures: IntCounterVec,
    pub requests_denied: IntCounter,
    pub config_reload_failures: IntCounterVec,
    pub connections_open: IntGauge,
    pub connections_rejected: IntCounter,
    pub requests_shed: IntCounterVec,
    pub requests_rate_limited: IntCounterVec,
    pub requests_in_flight: IntGauge,
    pub long_polls: IntGauge,
    pub request_bytes_in_flight: IntGauge,
    // Scrape-time gauges.
    pub topic_messages: IntGaugeVec,
    pub topic_bytes: IntGaugeVec,
    pub sub_backlog: IntGaugeVec,
    pub sub_in_flight: IntGaugeVec,
    pub sub_delayed: IntGaugeVec,
    pub sub_oldest_unacked_age: prometheus::GaugeVec,
    pub sub_lag_messages: IntGaugeVec,
    pub sub_lag_seconds: prometheus::GaugeVec,
    pub storage_live_data: IntGauge,
    pub storage_pending_compaction: IntGauge,
    pub storage_write_stopped: IntGauge,
    pub storage_delayed_write_rate: IntGauge,
    pub storage_disk_total: IntGauge,
    pub storage_disk_free: IntGauge,
    pub ready: IntGauge,
    pub cluster_nodes: IntGaugeVec,
    pub cluster_metadata_leader: IntGauge,
    pub cluster_metadata_term: IntGauge,
    pub cluster_partitions_led: IntGauge,
    pub cluster_partitions_leaderless: IntGauge,
    pub cluster_partitions_under_replicated: IntGauge,
    pub cluster_follower_lag_max: IntGauge,
    pub cluster_commit_duration: Histogram,
    pub cluster_elections: IntCounter,
    pub build_info: IntGaugeVec,
}

const TOPIC_SUB: &[&str] = &["topic", "subscription"];

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric `{name}`: {e}"));
    register(r, Box::new(m.clone()));
    m
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric `{name}`: {e}"));
    register(r, Box::new(m.clone()));
    m
}

fn fgauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    let m = prometheus::GaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric `{name}`: {e}"));
    register(r, Box::new(m.clone()));
    m
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let m = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric `{name}`: {e}"));
    register(r, Box::new(m.clone()));
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let m = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric `{name}`: {e}"));
    register(r, Box::new(m.clone()));
    m
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("metric `{name}`: {e}"));
    register(r, Box::new(m.clone()));
    m
}

fn register(r: &Registry, m: Box<dyn prometheus::core::Collector>) {
    // Names are static and unique: a failure is a programming error caught
    // by the first test that touches metrics.
    #[allow(clippy::panic)]
    if let Err(e) = r.register(m) {
        panic!("metric registration: {e}");
    }
}

/// Buckets for integer counts: boundaries halfway between integers, so a
/// histogram whose observations are all `n` reports quantiles of `n`
/// (with a bucket ending at `n`, interpolation would put the median at
/// `n - 0.5`).
fn size_buckets() -> Vec<f64> {
    vec![
        0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5, 64.5, 128.5, 256.5, 512.5, 1024.5, 2048.5, 4096.5,
        8192.5, 16384.5,
    ]
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0, 60.0,
    ]
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        register(
            &r,
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        );
        let m = Metrics {
            http_requests: counter_vec(
                &r,
                "weir_http_requests_total",
                "HTTP requests answered, by matched route, method and status class.",
                &["route", "method", "status_class"],
            ),
            http_duration: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "weir_http_request_duration_seconds",
                        "HTTP request latency by matched route and method.",
                    )
                    .buckets(latency_buckets()),
                    &["route", "method"],
                )
                .unwrap_or_else(|e| panic!("metric: {e}"));
                register(&r, Box::new(h.clone()));
                h
            },
            messages_produced: counter_vec(
                &r,
                "weir_messages_produced_total",
                "Messages appended, by topic.",
                &["topic"],
            ),
            bytes_produced: counter_vec(
                &r,
                "weir_bytes_produced_total",
                "Stored bytes appended, by topic.",
                &["topic"],
            ),
            produce_batch_messages: histogram(
                &r,
                "weir_produce_batch_messages",
                "Messages per produce request.",
                size_buckets(),
            ),
            commit_batch_operations: histogram(
                &r,
                "weir_commit_batch_operations",
                "Requests (write sets) merged into one group-commit write batch.",
                size_buckets(),
            ),
            commit_sync_duration: histogram(
                &r,
                "weir_commit_sync_duration_seconds",
                "Duration of one WAL sync (fsync = always); each covers every batch written before it.",
                latency_buckets(),
            ),
            commit_write_duration: histogram(
                &r,
                "weir_commit_write_duration_seconds",
                "Duration of one group-commit batch write to the WAL and memtables, before its sync.",
                latency_buckets(),
            ),
            wal_syncs: counter(&r, "weir_wal_syncs_total", "WAL syncs (fsync) performed."),
            retention_deleted: counter_vec(
                &r,
                "weir_retention_deleted_messages_total",
                "Messages removed by retention, by topic.",
                &["topic"],
            ),
            deliveries: counter_vec(
                &r,
                "weir_subscription_deliveries_total",
                "Messages delivered (leased) to consumers, including redeliveries.",
                TOPIC_SUB,
            ),
            acks: counter_vec(
                &r,
                "weir_subscription_acks_total",
                "Messages acked.",
                TOPIC_SUB,
            ),
            nacks: counter_vec(
                &r,
                "weir_subscription_nacks_total",
                "Messages nacked.",
                TOPIC_SUB,
            ),
            redeliveries: counter_vec(
                &r,
                "weir_subscription_redeliveries_total",
                "Messages scheduled for redelivery, by reason (nack, lease_expired, disconnect).",
                &["topic", "subscription", "reason"],
            ),
            dead_lettered: counter_vec(
                &r,
                "weir_subscription_dead_lettered_total",
                "Messages moved to the dead-letter topic.",
                TOPIC_SUB,
            ),
            websocket_connections: gauge_vec(
                &r,
                "weir_websocket_connections",
                "Open WebSocket connections by kind (subscribe, tail, publish).",
                &["kind"],
            ),
            websocket_slow_disconnects: counter(
                &r,
                "weir_websocket_slow_consumer_disconnects_total",
                "WebSocket connections closed because the client did not keep up.",
            ),
            circuit_breaker_trips: counter_vec(
                &r,
                "weir_subscription_circuit_breaker_trips_total",
                "Times a subscription's circuit breaker paused it (too many dead letters in its window).",
                TOPIC_SUB,
            ),
            sub_paused: gauge_vec(
                &r,
                "weir_subscription_paused",
                "1 while a subscription is paused, by cause (manual, circuit_breaker).",
                &["topic", "subscription", "cause"],
            ),
            push_requests: counter_vec(
                &r,
                "weir_push_requests_total",
                "Push (webhook) requests by outcome class (2xx, 3xx, 4xx, 5xx, timeout, error, refused).",
                &["topic", "subscription", "class"],
            ),
            push_duration: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "weir_push_request_duration_seconds",
                        "Latency of push (webhook) requests sent, until the answer or the timeout.",
                    )
                    .buckets(latency_buckets()),
                    TOPIC_SUB,
                )
                .unwrap_or_else(|e| panic!("metric: {e}"));
                register(&r, Box::new(h.clone()));
                h
            },
            push_in_flight: gauge_vec(
                &r,
                "weir_push_in_flight",
                "Push (webhook) requests in flight now.",
                TOPIC_SUB,
            ),
            auth_failures: counter_vec(
                &r,
                "weir_auth_failures_total",
                "Requests refused with 401, by reason (missing, unknown_token, expired, invalid_token).",
                &["reason"],
            ),
            requests_denied: counter(
                &r,
                "weir_requests_denied_total",
                "Authenticated requests refused with 403 (action not granted).",
            ),
            config_reload_failures: counter_vec(
                &r,
                "weir_config_reload_failures_total",
                "Changed tokens, JWKS or TLS files that could not be used (the previous version stays), by file.",
                &["file"],
            ),
            connections_open: gauge(
                &r,
                "weir_connections_open",
                "Client connections open now.",
            ),
            connections_rejected: counter(
                &r,
                "weir_connections_rejected_total",
                "Connections closed at once because max_connections were open.",
            ),
            requests_shed: counter_vec(
                &r,
                "weir_requests_shed_total",
                "Requests refused with 503 to shed load, by limit (requests, long_polls, request_bytes).",
                &["limit"],
            ),
            requests_rate_limited: counter_vec(
                &r,
                "weir_requests_rate_limited_total",
                "Requests refused with 429 by a per-principal rate limit, by limit (requests, messages, bytes).",
                &["limit"],
            ),
            requests_in_flight: gauge(
                &r,
                "weir_requests_in_flight",
                "Requests being handled now (counted against max_concurrent_requests).",
            ),
            long_polls: gauge(
                &r,
                "weir_long_polls_waiting",
                "Long polls waiting now (counted against max_long_polls).",
            ),
            request_bytes_in_flight: gauge(
                &r,
                "weir_request_bytes_in_flight",
                "Request body bytes reserved by requests being received now.",
            ),
            topic_messages: gauge_vec(
                &r,
                "weir_topic_messages",
                "Messages stored, by topic.",
                &["topic"],
            ),
            topic_bytes: gauge_vec(
                &r,
                "weir_topic_bytes",
                "Bytes stored, by topic.",
                &["topic"],
            ),
            sub_backlog: gauge_vec(
                &r,
                "weir_subscription_backlog_messages",
                "Messages not yet settled by the subscription.",
                TOPIC_SUB,
            ),
            sub_in_flight: gauge_vec(
                &r,
                "weir_subscription_in_flight_messages",
                "Messages leased to consumers.",
                TOPIC_SUB,
            ),
            sub_delayed: gauge_vec(
                &r,
                "weir_subscription_delayed_messages",
                "Messages waiting for a delivery time or a retry backoff.",
                TOPIC_SUB,
            ),
            sub_oldest_unacked_age: fgauge_vec(
                &r,
                "weir_subscription_oldest_unacked_age_seconds",
                "Age of the oldest unsettled message.",
                TOPIC_SUB,
            ),
            sub_lag_messages: gauge_vec(
                &r,
                "weir_subscription_lag_messages",
                "Messages produced but not yet delivered to the subscription.",
                TOPIC_SUB,
            ),
            sub_lag_seconds: fgauge_vec(
                &r,
                "weir_subscription_lag_seconds",
                "Age of the oldest message not yet delivered.",
                TOPIC_SUB,
            ),
            storage_live_data: gauge(
                &r,
                "weir_storage_live_data_bytes",
                "RocksDB estimate of live data size.",
            ),
            storage_pending_compaction: gauge(
                &r,
                "weir_storage_pending_compaction_bytes",
                "RocksDB estimate of bytes compaction still has to rewrite.",
            ),
            storage_write_stopped: gauge(
                &r,
                "weir_storage_write_stopped",
                "1 when RocksDB stops writes (stall), else 0.",
            ),
            storage_delayed_write_rate: gauge(
                &r,
                "weir_storage_delayed_write_rate_bytes",
                "RocksDB delayed write rate in bytes/s (0 when not slowed down).",
            ),
            storage_disk_total: gauge(
                &r,
                "weir_storage_disk_total_bytes",
                "Size of the filesystem holding the data directory.",
            ),
            storage_disk_free: gauge(
                &r,
                "weir_storage_disk_free_bytes",
                "Free bytes on the filesystem holding the data directory.",
            ),
            ready: gauge(&r, "weir_ready", "1 when the store accepts writes, else 0."),
            cluster_nodes: gauge_vec(
                &r,
                "weir_cluster_nodes",
                "Cluster nodes by their state as this node sees them (leader, follower, learner, candidate, unreachable).",
                &["state"],
            ),
            cluster_metadata_leader: gauge(
                &r,
                "weir_cluster_metadata_leader",
                "1 when this node leads the metadata group (a lone server: always).",
            ),
            cluster_metadata_term: gauge(
                &r,
                "weir_cluster_metadata_term",
                "The metadata group's Raft term: it grows by one or more with every election.",
            ),
            cluster_partitions_led: gauge(
                &r,
                "weir_cluster_partitions_led",
                "Partitions this node leads.",
            ),
            cluster_partitions_leaderless: gauge(
                &r,
                "weir_cluster_partitions_leaderless",
                "Partitions with no leader known to this node (an election runs or a majority of replicas is down).",
            ),
            cluster_partitions_under_replicated: gauge(
                &r,
                "weir_cluster_partitions_under_replicated",
                "Partitions led here with a replica that is unreachable or has not caught up once.",
            ),
            cluster_follower_lag_max: gauge(
                &r,
                "weir_cluster_follower_lag_max_entries",
                "The largest lag, in log entries, of a follower of a group this node leads.",
            ),
            cluster_commit_duration: histogram(
                &r,
                "weir_cluster_commit_duration_seconds",
                "Time from proposing a produced batch on its partition's leader here to its commit by a majority of the replicas and its apply (what a produce waits for); a lone server, a cluster of one, reports its local durable commit.",
                latency_buckets(),
            ),
            cluster_elections: counter(
                &r,
                "weir_cluster_elections_total",
                "Terms started (elections) in the Raft groups this node holds, as it observed them.",
            ),
            build_info: gauge_vec(
                &r,
                "weir_build_info",
                "Build information; the value is always 1.",
                &["version"],
            ),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Series of the security counters exist from the start at 0, so
        // rate() and increase() see their first event.
        for reason in ["missing", "unknown_token", "expired", "invalid_token"] {
            m.auth_failures.with_label_values(&[reason]);
        }
        for limit in ["requests", "long_polls", "request_bytes"] {
            m.requests_shed.with_label_values(&[limit]);
        }
        for limit in ["requests", "messages", "bytes"] {
            m.requests_rate_limited.with_label_values(&[limit]);
        }
        for kind in ["tail", "publish", "subscribe"] {
            m.websocket_connections.with_label_values(&[kind]);
        }
        for file in ["tokens", "jwks", "tls"] {
            m.config_reload_failures.with_label_values(&[file]);
        }
        m
    }

    /// Encodes every metric in the text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn label_names_beyond_the_cap_share_one_series() {
        let labels = NameLabels::new(2);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), "b");
        assert_eq!(labels.label("c"), OVERFLOW_LABEL);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("d"), OVERFLOW_LABEL);
        assert_eq!(labels.label("b"), "b");
    }

    /// `dashboards/metric-names.txt` (what dashboards and alerts may use,
    /// checked by `scripts/check-dashboards.sh`) must list exactly what the
    /// server declares.
    #[test]
    fn dashboard_metric_list_matches_declared_metrics() {
        let m = &*METRICS;
        // Vec metrics only appear in `gather` once a child exists.
        let two = ["a", "b"];
        for v in [
            &m.messages_produced,
            &m.bytes_produced,
            &m.retention_deleted,
        ] {
            v.with_label_values(&["t"]);
        }
        for v in [&m.deliveries, &m.acks, &m.nacks, &m.dead_lettered] {
            v.with_label_values(&two);
        }
        m.redeliveries.with_label_values(&["a", "b", "nack"]);
        m.push_requests.with_label_values(&["a", "b", "2xx"]);
        m.push_duration.with_label_values(&two);
        m.push_in_flight.with_label_values(&two);
        m.http_requests.with_label_values(&["r", "GET", "2xx"]);
        m.http_duration.with_label_values(&["r", "GET"]);
        m.websocket_connections.with_label_values(&["tail"]);
        m.cluster_nodes.with_label_values(&["leader"]);
        m.topic_messages.with_label_values(&["t"]);
        m.topic_bytes.with_label_values(&["t"]);
        for v in [
            &m.sub_backlog,
            &m.sub_in_flight,
            &m.sub_delayed,
            &m.sub_lag_messages,
        ] {
            v.with_label_values(&two);
        }
        m.sub_oldest_unacked_age.with_label_values(&two);
        m.sub_lag_seconds.with_label_values(&two);
        m.circuit_breaker_trips.with_label_values(&two);
        m.sub_paused.with_label_values(&["a", "b", "manual"]);
        let declared: BTreeSet<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dashboards/metric-names.txt"
        );
        let text = std::fs::read_to_string(path).expect("dashboards/metric-names.txt");
        let listed: BTreeSet<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        let missing: Vec<_> = listed.difference(&declared).collect();
        assert!(missing.is_empty(), "listed but not exposed: {missing:?}");
        let unlisted: Vec<_> = declared
            .difference(&listed)
            .filter(|n| !n.starts_with("process_"))
            .collect();
        assert!(unlisted.is_empty(), "exposed but not listed: {unlisted:?}");
    }
}
