//! CloudWatch Embedded Metric Format: a JSON log line that CloudWatch Logs turns into metrics.
//! The Lambda function prints one per request ([`request`]) and one per garbage collection
//! ([`gc`]) on stdout, in namespace [`NAMESPACE`]: the figures `berth serve` keeps for
//! Prometheus, without an agent or a `PutMetricData` call.

use std::time::{SystemTime, UNIX_EPOCH};

use berth_gc::Report;
use serde_json::{Map, Value, json};

use crate::{Observation, route};

/// The CloudWatch namespace of berth's metrics.
pub const NAMESPACE: &str = "berth";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One document: `metrics` (name, unit, value) under `dimensions` (name, value).
fn document(dimensions: &[(&str, Value)], metrics: &[(&str, &str, Value)], extra: Map<String, Value>) -> String {
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let directive: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let mut line = extra;
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms(),
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [names], "Metrics": directive}],
        }),
    );
    for (name, value) in dimensions {
        line.insert((*name).into(), value.clone());
    }
    for (name, _, value) in metrics {
        line.insert((*name).into(), value.clone());
    }
    Value::Object(line).to_string()
}

/// The line for one request: `Requests`, `Latency`, `BytesIn`, `BytesOut`, `StorageCalls`,
/// `StorageErrors` by route class and status class (`2xx`, `4xx`, `5xx`); the storage calls by
/// operation and outcome ride along as properties (searchable in Logs Insights, not metrics,
/// which would multiply what CloudWatch bills).
pub fn request(request: &Observation<'_>) -> String {
    let errors: u64 = request
        .storage
        .failed
        .iter()
        .filter(|((_, outcome), _)| *outcome == berth_storage::calls::Outcome::Error)
        .map(|(_, n)| n)
        .sum();
    let calls: Map<String, Value> = request
        .storage
        .by_outcome()
        .into_iter()
        .map(|((operation, outcome), n)| (format!("{operation}.{}", outcome.as_str()), json!(n)))
        .collect();
    let mut extra = Map::new();
    extra.insert("method".into(), json!(request.method));
    extra.insert("storage".into(), Value::Object(calls));
    document(
        &[("route", json!(route(request.path))), ("status", json!(format!("{}xx", request.status / 100)))],
        &[
            ("Requests", "Count", json!(1)),
            ("Latency", "Milliseconds", json!(request.elapsed.as_micros() as f64 / 1000.0)),
            ("BytesIn", "Bytes", json!(request.bytes_in)),
            ("BytesOut", "Bytes", json!(request.bytes_out)),
            ("StorageCalls", "Count", json!(request.storage.total())),
            ("StorageErrors", "Count", json!(errors)),
        ],
        extra,
    )
}

/// The line for a garbage collection (`None`: it failed): `GcRuns` by outcome, `GcRemoved` and
/// `GcRemovedBytes` (all kinds), `GcStorageCalls`; each kind's figures ride along.
pub fn gc(run: Option<(&Report, bool)>) -> String {
    let outcome = match run {
        None => "failed",
        Some((_, true)) => "paused",
        Some((_, false)) => "finished",
    };
    let report = run.map(|(r, _)| r.clone()).unwrap_or_default();
    let kinds: Map<String, Value> = report
        .by_kind()
        .iter()
        .map(|(kind, c)| ((*kind).to_string(), json!({"removed": c.removed, "bytes": c.removed_bytes})))
        .collect();
    let removed: u64 = report.by_kind().iter().map(|(_, c)| c.removed).sum();
    let mut extra = Map::new();
    extra.insert("kinds".into(), Value::Object(kinds));
    document(
        &[("outcome", json!(outcome))],
        &[
            ("GcRuns", "Count", json!(1)),
            ("GcRemoved", "Count", json!(removed)),
            ("GcRemovedBytes", "Bytes", json!(report.removed_bytes())),
            ("GcStorageCalls", "Count", json!(report.storage_calls)),
        ],
        extra,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_storage::StorageError;
    use berth_storage::calls::{self, Tally};
    use std::time::Duration;

    /// The document's shape is what CloudWatch requires: every metric of the directive and every
    /// dimension is a member of the root, the timestamp is in milliseconds.
    fn check(line: &str) -> Value {
        let doc: Value = serde_json::from_str(line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert!(doc["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        for name in directive["Dimensions"][0].as_array().unwrap() {
            assert!(doc[name.as_str().unwrap()].is_string(), "dimension {name} in {line}");
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(doc[metric["Name"].as_str().unwrap()].is_number(), "metric {metric} in {line}");
        }
        doc
    }

    #[tokio::test]
    async fn a_request_is_one_document() {
        let ((), tally): ((), Tally) = calls::count(async {
            calls::record("PutObject");
            calls::failed("PutObject", &StorageError::backend("down"));
        })
        .await;
        let doc = check(&request(&Observation {
            method: "PUT",
            path: "/v2/a/manifests/v1",
            status: 503,
            elapsed: Duration::from_micros(12_345),
            bytes_in: 10,
            bytes_out: 20,
            storage: &tally,
        }));
        assert_eq!((doc["route"].as_str(), doc["status"].as_str()), (Some("manifest"), Some("5xx")));
        assert_eq!(doc["Latency"], 12.345);
        assert_eq!((doc["StorageCalls"].as_u64(), doc["StorageErrors"].as_u64()), (Some(1), Some(1)));
        assert_eq!(doc["storage"]["PutObject.error"], 1);
    }

    #[test]
    fn a_collection_is_one_document() {
        let mut report = Report::default();
        report.links.removed = 3;
        report.blobs.removed = 2;
        report.blobs.removed_bytes = 99;
        let doc = check(&gc(Some((&report, false))));
        assert_eq!((doc["outcome"].as_str(), doc["GcRemoved"].as_u64()), (Some("finished"), Some(5)));
        assert_eq!(doc["GcRemovedBytes"], 99);
        assert_eq!(check(&gc(None))["outcome"], "failed");
    }
}
