//! What berth reports about itself. Both shells describe each request they answered as an
//! [`Observation`]; `berth serve` adds it to its [`Metrics`] (Prometheus text on `/metrics`),
//! the Lambda function writes it as a CloudWatch Embedded Metric Format line ([`emf`]), which
//! CloudWatch turns into metrics with no agent and no API call.
//!
//! Labels stay few, so that series stay few: a request is counted by its route class
//! ([`route`], never the repository name), method and status; storage calls by operation and
//! outcome ([`berth_storage::calls`]); garbage collection by kind.

pub mod emf;
mod route;

pub use self::route::route;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_gc::Report;
use berth_storage::calls::Tally;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The media type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One answered request, as both shells see it.
#[derive(Debug)]
pub struct Observation<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The request path (only its route class is kept).
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// From the request's head to the response's head.
    pub elapsed: Duration,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes (its `Content-Length`).
    pub bytes_out: u64,
    /// The storage calls the request made.
    pub storage: &'a Tally,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Latency buckets, in seconds: 1 ms to about a minute (a large blob upload), by factors of 2.5.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 13))
}

/// The counters of one `berth serve` process, encoded as Prometheus text by [`Metrics::encode`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    received: Family<RouteLabel, Counter>,
    sent: Family<RouteLabel, Counter>,
    in_flight: Family<RouteLabel, Gauge>,
    storage_calls: Family<CallLabels, Counter>,
    gc_runs: Family<OutcomeLabel, Counter>,
    gc_removed: Family<KindLabel, Counter>,
    gc_removed_bytes: Family<KindLabel, Counter>,
    gc_storage_calls: Counter,
    gc_last_finished: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero (families appear once they have a first series).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by route class, method and status", requests.clone());
        let latency = Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("request_duration_seconds", "Time to the response's head, by route class", latency.clone());
        let received = Family::<RouteLabel, Counter>::default();
        registry.register("received_bytes", "Request body bytes read, by route class", received.clone());
        let sent = Family::<RouteLabel, Counter>::default();
        registry.register("sent_bytes", "Response body bytes, by route class", sent.clone());
        let in_flight = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "requests_in_flight",
            "Requests being answered, by route class (route=\"upload\": uploads in flight)",
            in_flight.clone(),
        );
        let storage_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "storage_calls",
            "Storage calls (S3 requests, filesystem operations), by operation and outcome",
            storage_calls.clone(),
        );
        let gc_runs = Family::<OutcomeLabel, Counter>::default();
        registry.register("gc_runs", "Garbage collections, by outcome (finished, paused, failed)", gc_runs.clone());
        let gc_removed = Family::<KindLabel, Counter>::default();
        registry.register("gc_removed", "Objects garbage collection removed, by kind", gc_removed.clone());
        let gc_removed_bytes = Family::<KindLabel, Counter>::default();
        registry.register("gc_removed_bytes", "Bytes garbage collection removed, by kind", gc_removed_bytes.clone());
        let gc_storage_calls = Counter::default();
        registry.register("gc_storage_calls", "Storage calls garbage collection made", gc_storage_calls.clone());
        let gc_last_finished = Gauge::default();
        registry.register(
            "gc_last_finished_timestamp_seconds",
            "When the last garbage collection finished (Unix time; 0: none yet)",
            gc_last_finished.clone(),
        );
        let info = Family::<VersionLabel, Gauge>::default();
        info.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "The version of berth running (always 1)", info);
        Self {
            registry,
            requests,
            latency,
            received,
            sent,
            in_flight,
            storage_calls,
            gc_runs,
            gc_removed,
            gc_removed_bytes,
            gc_storage_calls,
            gc_last_finished,
        }
    }

    /// Counts a request being answered until the guard is dropped.
    pub fn in_flight(&self, path: &str) -> InFlight {
        let gauge = self.in_flight.get_or_create(&RouteLabel { route: route(path) }).clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Adds an answered request.
    pub fn observe(&self, request: &Observation<'_>) {
        let route = route(request.path);
        let labels = RequestLabels { route, method: method(request.method), status: request.status };
        self.requests.get_or_create(&labels).inc();
        let label = RouteLabel { route };
        self.latency.get_or_create(&label).observe(request.elapsed.as_secs_f64());
        self.received.get_or_create(&label).inc_by(request.bytes_in);
        self.sent.get_or_create(&label).inc_by(request.bytes_out);
        self.observe_storage(request.storage);
    }

    /// Adds storage calls made outside a request (a background garbage collection).
    pub fn observe_storage(&self, tally: &Tally) {
        for ((operation, outcome), n) in tally.by_outcome() {
            self.storage_calls.get_or_create(&CallLabels { operation, outcome: outcome.as_str() }).inc_by(n);
        }
    }

    /// Adds a garbage collection: its report when it ran (`paused` if it stopped at its deadline
    /// to continue later), `None` if it failed.
    pub fn observe_gc(&self, run: Option<(&Report, bool)>) {
        let outcome = match run {
            None => "failed",
            Some((_, true)) => "paused",
            Some((_, false)) => "finished",
        };
        self.gc_runs.get_or_create(&OutcomeLabel { outcome }).inc();
        let Some((report, paused)) = run else { return };
        self.gc_storage_calls.inc_by(report.storage_calls);
        for (kind, count) in report.by_kind() {
            self.gc_removed.get_or_create(&KindLabel { kind }).inc_by(count.removed);
            self.gc_removed_bytes.get_or_create(&KindLabel { kind }).inc_by(count.removed_bytes);
        }
        if !paused {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            self.gc_last_finished.set(i64::try_from(now).unwrap_or(i64::MAX));
        }
    }

    /// Every metric in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// A request in flight; dropping it ends it.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method as a label: the registry's methods by name, anything else as `other` (a label
/// value a client chose would make series without bound).
fn method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_storage::StorageError;
    use berth_storage::calls;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next())
    }

    #[tokio::test]
    async fn requests_storage_calls_and_gc_are_counted() {
        let metrics = Metrics::new();
        let ((), tally) = calls::count(async {
            calls::record("PutObject");
            calls::record("GetObject");
            calls::failed("GetObject", &StorageError::NotFound("k".into()));
        })
        .await;
        let guard = metrics.in_flight("/v2/a/blobs/uploads/x");
        let text = metrics.encode();
        assert_eq!(line(&text, "berth_requests_in_flight{route=\"upload\"}"), Some("1"), "{text}");
        drop(guard);
        let request = Observation {
            method: "PATCH",
            path: "/v2/team/app/blobs/uploads/x",
            status: 202,
            elapsed: Duration::from_millis(3),
            bytes_in: 1000,
            bytes_out: 0,
            storage: &tally,
        };
        metrics.observe(&request);
        metrics.observe(&Observation { method: "BREW", status: 405, ..request });
        let mut report = Report::default();
        report.blobs.removed = 2;
        report.blobs.removed_bytes = 70;
        metrics.observe_gc(Some((&report, false)));
        let text = metrics.encode();
        for (series, value) in [
            ("berth_requests_total{route=\"upload\",method=\"PATCH\",status=\"202\"}", "1"),
            ("berth_requests_total{route=\"upload\",method=\"other\",status=\"405\"}", "1"),
            ("berth_requests_in_flight{route=\"upload\"}", "0"),
            ("berth_received_bytes_total{route=\"upload\"}", "2000"),
            ("berth_request_duration_seconds_count{route=\"upload\"}", "2"),
            ("berth_storage_calls_total{operation=\"GetObject\",outcome=\"not_found\"}", "2"),
            ("berth_storage_calls_total{operation=\"PutObject\",outcome=\"ok\"}", "2"),
            ("berth_gc_runs_total{outcome=\"finished\"}", "1"),
            ("berth_gc_removed_bytes_total{kind=\"blobs\"}", "70"),
            ("berth_build_info{version=", "1"),
        ] {
            assert_eq!(line(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(line(&text, "berth_gc_last_finished_timestamp_seconds").is_some_and(|v| v != "0"), "{text}");
    }
}
