//! `/metrics`: the service's own HTTP figures and the store's view of the runs, in the
//! Prometheus text format (prometheus-client).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use super::{ApiError, State};

type Labels = Vec<(String, String)>;

/// HTTP request counts and latencies, by route and status.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        }
    }
}

/// The route label of a path: known routes by name, anything else `other` (so that unknown
/// paths cannot grow the label set).
fn route(path: &str) -> &'static str {
    const KNOWN: [&str; 17] = [
        "/api/healthcheck",
        "/api/pipeline",
        "/api/pipelines",
        "/api/pipeline/runs",
        "/api/pipeline/run",
        "/api/pipeline/run/latest",
        "/api/pipeline/run/rps",
        "/api/pipeline/run/memory_usage",
        "/api/pipeline/run/memory",
        "/api/pipeline/run/logs",
        "/api/pipeline/run/metrics",
        "/api/pipeline/run/stop",
        "/api/pipeline/run/report",
        "/api/openapi.json",
        "/metrics",
        "/healthz",
        "/",
    ];
    let p = path.trim_end_matches('/');
    let p = if p.is_empty() { "/" } else { p };
    KNOWN
        .iter()
        .find(|k| **k == p)
        .copied()
        .unwrap_or(if p.starts_with("/ui/") {
            "/ui"
        } else {
            "other"
        })
}

impl HttpMetrics {
    /// Records one answered request.
    pub fn observe(&self, info: warp::log::Info<'_>) {
        let labels = vec![
            ("method".to_owned(), info.method().as_str().to_owned()),
            ("route".to_owned(), route(info.path()).to_owned()),
            ("status".to_owned(), info.status().as_u16().to_string()),
        ];
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels[..2].to_vec())
            .observe(info.elapsed().as_secs_f64());
    }
}

fn label(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Renders `/metrics`.
pub async fn render(state: &State) -> Response {
    match build(state).await {
        Ok(text) => {
            let mut r = text.into_response();
            r.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn build(state: &State) -> Result<String, ApiError> {
    let store = state.store();
    let (pipelines, by_status) = store.counts().await?;
    let running = store.running().await?;

    let mut reg = Registry::with_prefix("fastlane");
    let up = Gauge::<i64>::default();
    up.set(state.inner.started.elapsed().as_secs() as i64);
    reg.register("uptime_seconds", "Seconds since the service started", up);
    let p = Gauge::<i64>::default();
    p.set(pipelines);
    reg.register("pipelines", "Pipelines in the store", p);
    let runs = Family::<Labels, Gauge>::default();
    for s in crate::model::RunStatus::ALL {
        let n = by_status
            .iter()
            .find(|(x, _)| *x == s)
            .map_or(0, |(_, n)| *n);
        runs.get_or_create(&label(&[("status", s.as_str())])).set(n);
    }
    reg.register("runs", "Runs in the store, by status", runs);

    let rows = Family::<Labels, Gauge>::default();
    let rps = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let memory = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let queue_batches = Family::<Labels, Gauge>::default();
    let queue_bytes = Family::<Labels, Gauge>::default();
    for (run, sample) in &running {
        let id = run.id.to_string();
        let base = [
            ("pipeline_id", run.pipeline_id.as_str()),
            ("run", id.as_str()),
        ];
        let with = |stage: &str| {
            let mut l = label(&base);
            l.push(("stage".into(), stage.into()));
            l
        };
        rows.get_or_create(&with("target")).set(run.rows_loaded);
        rows.get_or_create(&with("source")).set(run.rows_extracted);
        if let Some(s) = sample {
            if let Some(v) = s.source_rps {
                rps.get_or_create(&with("source")).set(v);
            }
            if let Some(v) = s.transform_rps {
                rps.get_or_create(&with("transform")).set(v);
            }
            if let Some(v) = s.rps {
                rps.get_or_create(&with("target")).set(v);
            }
            if let Some(v) = s.transform_rows {
                rows.get_or_create(&with("transform")).set(v);
            }
            if let Some(m) = s.memory_usage {
                memory.get_or_create(&label(&base)).set(m * 1e6);
            }
            for q in s.queues.iter().flatten() {
                let mut l = label(&base);
                l.push(("queue".into(), q.name.clone()));
                queue_batches.get_or_create(&l).set(q.batches as i64);
                queue_bytes.get_or_create(&l).set(q.bytes as i64);
            }
        }
    }
    reg.register(
        "run_rows",
        "Rows handled by each stage of a running run",
        rows,
    );
    reg.register(
        "run_records_per_second",
        "Records per second of each stage of a running run, at its last sample",
        rps,
    );
    reg.register(
        "run_memory_bytes",
        "Resident memory of a running run, at its last sample",
        memory,
    );
    reg.register(
        "run_queue_batches",
        "Batches waiting in each queue of a running run",
        queue_batches,
    );
    reg.register(
        "run_queue_bytes",
        "Bytes waiting in each queue of a running run",
        queue_bytes,
    );
    reg.register(
        "http_requests",
        "HTTP requests answered, by method, route and status",
        state.inner.metrics.requests.clone(),
    );
    reg.register(
        "http_request_duration_seconds",
        "Time to answer HTTP requests, by method and route",
        state.inner.metrics.latency.clone(),
    );
    let mut out = String::new();
    encode(&mut out, &reg).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot encode the metrics",
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(route("/api/pipeline/run/"), "/api/pipeline/run");
        assert_eq!(route("/api/nope"), "other");
        assert_eq!(route("/ui/app.js"), "/ui");
        assert_eq!(route(""), "/");
    }
}
