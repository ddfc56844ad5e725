//! Prometheus metrics (prometheus-client): what the proxy did, by action, status, finding
//! kind and upstream error cause, plus gauges read from the HSTS store and the leaf cache at
//! scrape time. Served as text by the admin API at `/metrics`.

use crate::finding::FindingKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionStatus {
    action: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CulpritCause {
    culprit: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<ActionStatus, Counter>,
    internal_redirects: Counter,
    findings: Family<Kind, Counter>,
    upstream_errors: Family<Cause, Counter>,
    forward_errors: Family<CulpritCause, Counter>,
    tls_handshakes: Family<Outcome, Counter>,
    hsts_entries: Family<Source, Gauge>,
    hsts_evictions: Counter,
    leaf_cache_hits: Counter,
    leaf_cache_misses: Counter,
    open_connections: Gauge,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strictproxy");
        let requests = Family::<ActionStatus, Counter>::default();
        registry.register(
            "requests",
            "Exchanges finished, by action and status",
            requests.clone(),
        );
        let internal_redirects = Counter::default();
        registry.register(
            "hsts_internal_redirects",
            "Plain-HTTP requests answered with a 307 Internal Redirect",
            internal_redirects.clone(),
        );
        let findings = Family::<Kind, Counter>::default();
        registry.register("findings", "Findings, by kind", findings.clone());
        let upstream_errors = Family::<Cause, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures, by cause",
            upstream_errors.clone(),
        );
        let forward_errors = Family::<CulpritCause, Counter>::default();
        registry.register(
            "forward_errors",
            "Forwarded requests that failed, by who failed (client, upstream, proxy) and cause",
            forward_errors.clone(),
        );
        let tls_handshakes = Family::<Outcome, Counter>::default();
        registry.register(
            "client_tls_handshakes",
            "TLS handshakes with clients on intercepted CONNECTs, by outcome",
            tls_handshakes.clone(),
        );
        let hsts_entries = Family::<Source, Gauge>::default();
        registry.register(
            "hsts_entries",
            "HSTS store entries, by source",
            hsts_entries.clone(),
        );
        let hsts_evictions = Counter::default();
        registry.register(
            "hsts_evictions",
            "Learned HSTS entries evicted by max_learned_per_site or max_learned_entries",
            hsts_evictions.clone(),
        );
        let leaf_cache_hits = Counter::default();
        registry.register(
            "leaf_cache_hits",
            "Leaf certificate cache hits since start",
            leaf_cache_hits.clone(),
        );
        let leaf_cache_misses = Counter::default();
        registry.register(
            "leaf_cache_misses",
            "Leaf certificate cache misses (certificates minted) since start",
            leaf_cache_misses.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        // From 0.5 ms to ~16 s: a locally answered redirect up to a slow upstream.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0005, 2.0, 16,
        ));
        registry.register(
            "request_duration_seconds",
            "Time from request received to response body finished",
            latency.clone(),
        );
        for kind in FindingKind::ALL {
            let _ = findings.get_or_create(&Kind {
                kind: kind.as_str(),
            });
        }
        Metrics {
            registry,
            requests,
            internal_redirects,
            findings,
            upstream_errors,
            forward_errors,
            tls_handshakes,
            hsts_entries,
            hsts_evictions,
            leaf_cache_hits,
            leaf_cache_misses,
            open_connections,
            latency,
        }
    }

    pub fn exchange(&self, action: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&ActionStatus { action, status })
            .inc();
        self.latency.observe(seconds);
        if action == "hsts_internal_redirect" {
            self.internal_redirects.inc();
        }
    }

    pub fn finding(&self, kind: FindingKind) {
        self.findings
            .get_or_create(&Kind {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub fn upstream_error(&self, cause: &'static str) {
        self.upstream_errors.get_or_create(&Cause { cause }).inc();
    }

    /// A forwarded request that failed; `culprit` is `client`, `upstream` or `proxy`.
    pub fn forward_error(&self, culprit: &'static str, cause: &'static str) {
        self.forward_errors
            .get_or_create(&CulpritCause { culprit, cause })
            .inc();
    }

    pub fn tls_handshake(&self, outcome: &'static str) {
        self.tls_handshakes
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// Brings `strictproxy_hsts_evictions_total` up to the store's own count
    /// (`HstsStore::evictions`); call before [`Metrics::render`].
    pub fn sync_hsts_evictions(&self, total: u64) {
        let exported = self.hsts_evictions.get();
        if total > exported {
            self.hsts_evictions.inc_by(total - exported);
        }
    }

    /// Encodes every metric in the Prometheus/OpenMetrics text format, after refreshing the
    /// gauges that are read from elsewhere.
    pub fn render(
        &self,
        hsts_counts: (usize, usize, usize),
        leaf_hits: u64,
        leaf_misses: u64,
    ) -> String {
        let (learned, manual, preload) = hsts_counts;
        for (source, count) in [
            ("learned", learned),
            ("manual", manual),
            ("preload", preload),
        ] {
            self.hsts_entries
                .get_or_create(&Source { source })
                .set(count as i64);
        }
        // The cache keeps its own monotonic counts; bring the exported counters up to them.
        for (counter, value) in [
            (&self.leaf_cache_hits, leaf_hits),
            (&self.leaf_cache_misses, leaf_misses),
        ] {
            let exported = counter.get();
            if value > exported {
                counter.inc_by(value - exported);
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let metrics = Metrics::new();
        metrics.exchange("forwarded", 200, 0.01);
        metrics.exchange("hsts_internal_redirect", 307, 0.0001);
        metrics.finding(FindingKind::MethodChangeRisk);
        metrics.upstream_error("refused");
        metrics.sync_hsts_evictions(7);
        metrics.sync_hsts_evictions(4);
        let text = metrics.render((2, 1, 100), 5, 3);
        for needle in [
            "strictproxy_requests_total{action=\"forwarded\",status=\"200\"} 1",
            "strictproxy_hsts_internal_redirects_total 1",
            "strictproxy_findings_total{kind=\"method_change_risk\"} 1",
            "strictproxy_upstream_errors_total{cause=\"refused\"} 1",
            "strictproxy_hsts_entries{source=\"preload\"} 100",
            "strictproxy_leaf_cache_hits_total 5",
            "strictproxy_hsts_evictions_total 7",
            "strictproxy_request_duration_seconds_count 2",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
