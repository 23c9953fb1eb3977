//! The REST API: the original fastlane's resources (`/api/pipeline`, `/api/pipelines`,
//! `/api/pipeline/run`, `…/latest`, `…/rps`, `…/memory_usage`, `…/logs`) with their methods
//! and field names, and what fastlane adds (`/api/pipeline/runs`, `…/metrics`, `…/stop`,
//! `…/report`, `/api/openapi.json`).
//!
//! Fixed from the original: validation errors are 400/422 JSON errors instead of 500s; an
//! unknown id is a 404 instead of `{}`; DELETE answers 204; the list filters work; `rps`,
//! `memory_usage` and `logs` of an unknown run are 404s; configurations are stored with their
//! secrets redacted; with tokens configured, reads need a read or write token and writes a
//! write token.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::OpenApi;
use warp::http::{HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};

use super::{ApiError, Request, Role, State};
use crate::model::*;
use crate::time::{iso, now_ms, parse};

type Answer = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(v: &T) -> Answer {
    Ok(warp::reply::json(v).into_response())
}

fn with_status<T: serde::Serialize>(v: &T, status: StatusCode) -> Answer {
    Ok(warp::reply::with_status(warp::reply::json(v), status).into_response())
}

/// 201 Created with the body and a `Location` header naming where to read it.
fn created<T: serde::Serialize>(v: &T, path: &str, query: &[(&str, &str)]) -> Answer {
    let mut r = warp::reply::with_status(warp::reply::json(v), StatusCode::CREATED).into_response();
    let location = format!(
        "{path}?{}",
        serde_urlencoded::to_string(query).unwrap_or_default()
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(warp::http::header::LOCATION, v);
    }
    Ok(r)
}

fn no_content() -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn with_total(mut r: Response, total: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        r.headers_mut().insert("x-total-count", v);
    }
    r
}

/// Parses a query string into `T`, naming the problem.
fn query<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    serde_urlencoded::from_str(&req.query)
        .map_err(|e| ApiError::query(format!("bad query string: {e}")))
}

/// Parses a JSON body into `T`, naming the problem.
fn body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::body("a JSON body is required"));
    }
    if let Some(ct) = req
        .headers
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        && !ct.to_ascii_lowercase().contains("json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be application/json, not `{ct}`"),
        ));
    }
    let mut value: serde_json::Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::body(format!("bad JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::body(format!(
            "the body must be a JSON object, not {}",
            crate::strict::kind(&value)
        )));
    }
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        if path == "." {
            ApiError::body(format!("bad JSON body: {inner}"))
        } else {
            ApiError::body(format!(
                "bad JSON body: {}",
                crate::strict::join(&path, &inner)
            ))
        }
    })
}

/// JSON has one number type: `677.0` is the integer 677 (as JSON Schema has it), so integral
/// numbers written with a fraction or an exponent are accepted where an integer is expected,
/// up to 2^53 included (every integral float there is exact), beyond which a float no longer
/// says which integer it meant.
fn integral_floats_as_integers(v: &mut serde_json::Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match v {
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *v = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

fn allowed(path: &str) -> Option<&'static [Method]> {
    use Method as M;
    Some(match path {
        "/api/healthcheck" => &[M::GET],
        "/api/pipeline" => &[M::GET, M::POST, M::PUT, M::DELETE],
        "/api/pipelines" => &[M::GET],
        "/api/pipeline/runs" => &[M::GET],
        "/api/pipeline/run" => &[M::GET, M::POST, M::PUT, M::DELETE],
        "/api/pipeline/run/latest" => &[M::GET],
        "/api/pipeline/run/rps" => &[M::GET, M::POST],
        "/api/pipeline/run/memory_usage" | "/api/pipeline/run/memory" => &[M::GET, M::POST],
        "/api/pipeline/run/logs" => &[M::GET, M::POST],
        "/api/pipeline/run/metrics" => &[M::GET, M::POST],
        "/api/pipeline/run/stop" => &[M::POST],
        "/api/pipeline/run/report" => &[M::POST],
        "/api/openapi.json" => &[M::GET],
        _ => return None,
    })
}

/// Answers one `/api` request.
pub async fn dispatch(state: &State, req: Request) -> Response {
    let path = req.path.trim_end_matches('/').to_owned();
    let Some(methods) = allowed(&path) else {
        return ApiError::not_found(format!("no such resource `{}`", req.path)).into_response();
    };
    if !methods.contains(&req.method) {
        let list = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut r = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {path}; use {list}", req.method),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&list) {
            r.headers_mut().insert(warp::http::header::ALLOW, v);
        }
        return r;
    }
    let need = if req.method == Method::GET {
        Role::Read
    } else {
        Role::Write
    };
    if let Err(denied) = state.check(&req.headers, req.client, need) {
        return denied.response();
    }
    let answer = match (req.method.clone(), path.as_str()) {
        (Method::GET, "/api/healthcheck") => healthcheck(state, &req).await,
        (Method::GET, "/api/pipeline") => get_pipeline(state, &req).await,
        (Method::POST, "/api/pipeline") => post_pipeline(state, &req).await,
        (Method::PUT, "/api/pipeline") => put_pipeline(state, &req).await,
        (Method::DELETE, "/api/pipeline") => delete_pipeline(state, &req).await,
        (Method::GET, "/api/pipelines") => get_pipelines(state, &req).await,
        (Method::GET, "/api/pipeline/runs") => get_runs(state, &req).await,
        (Method::GET, "/api/pipeline/run") => get_run(state, &req).await,
        (Method::POST, "/api/pipeline/run") => post_run(state, &req).await,
        (Method::PUT, "/api/pipeline/run") => put_run(state, &req).await,
        (Method::DELETE, "/api/pipeline/run") => delete_run(state, &req).await,
        (Method::GET, "/api/pipeline/run/latest") => get_latest(state, &req).await,
        (Method::GET, "/api/pipeline/run/rps") => get_rps(state, &req).await,
        (Method::POST, "/api/pipeline/run/rps") => post_rps(state, &req).await,
        (Method::GET, "/api/pipeline/run/memory_usage" | "/api/pipeline/run/memory") => {
            get_memory(state, &req).await
        }
        (Method::POST, "/api/pipeline/run/memory_usage" | "/api/pipeline/run/memory") => {
            post_memory(state, &req).await
        }
        (Method::GET, "/api/pipeline/run/logs") => get_logs(state, &req).await,
        (Method::POST, "/api/pipeline/run/logs") => post_logs(state, &req).await,
        (Method::GET, "/api/pipeline/run/metrics") => get_metrics(state, &req).await,
        (Method::POST, "/api/pipeline/run/metrics") => post_metrics(state, &req).await,
        (Method::POST, "/api/pipeline/run/stop") => post_stop(state, &req).await,
        (Method::POST, "/api/pipeline/run/report") => post_report(state, &req).await,
        (Method::GET, "/api/openapi.json") => Ok(openapi_response()),
        _ => Err(ApiError::not_found("no such resource")),
    };
    answer.unwrap_or_else(Reply::into_response)
}

/// `GET /healthz`: 200 when the store answers, 503 otherwise.
pub async fn healthz(state: &State) -> Response {
    match state.store().ping().await {
        Ok(()) => warp::reply::json(&json!({
            "status": "ok",
            "uptime_secs": state.inner.started.elapsed().as_secs(),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %crate::error_chain(&e), "health check failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store does not answer",
            )
            .into_response()
        }
    }
}

// ----- queries -----

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EchoQuery {
    /// Echoed back.
    echo: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PipelineIdQuery {
    /// The pipeline id.
    #[param(required = true, min_length = 1)]
    pipeline_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunIdQuery {
    /// The run.
    #[param(required = true, value_type = i64)]
    pipeline_run_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    /// The run.
    #[param(required = true, value_type = i64)]
    pipeline_run_id: Option<String>,
    /// From this time [default: 12 hours ago].
    #[param(format = DateTime)]
    start_date: Option<String>,
    /// Until this time [default: now].
    #[param(format = DateTime)]
    end_date: Option<String>,
    /// At most this many points (1–100000) [default: 10000].
    #[param(minimum = 1, maximum = 100000)]
    #[serde(default, deserialize_with = "crate::strict::query_int")]
    limit: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    /// The run.
    #[param(required = true, value_type = i64)]
    pipeline_run_id: Option<String>,
    /// Only lines after this one (`next_after` of the previous answer).
    #[serde(default, deserialize_with = "crate::strict::query_int")]
    after: Option<i64>,
    /// Only lines at this level or more severe (ERROR, WARN, INFO, DEBUG, TRACE).
    #[param(value_type = Option<crate::model::LogLevel>)]
    level: Option<String>,
    /// At most this many lines (1–10000) [default: 1000].
    #[param(minimum = 1, maximum = 10000)]
    #[serde(default, deserialize_with = "crate::strict::query_int")]
    limit: Option<i64>,
}

fn require_pipeline_id(q: PipelineIdQuery) -> Result<String, ApiError> {
    match q.pipeline_id {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(ApiError::query("pipeline_id is required")),
    }
}

fn require_run_id(id: Option<String>) -> Result<i64, ApiError> {
    let id = id.ok_or_else(|| ApiError::query("pipeline_run_id is required"))?;
    crate::strict::parse_int(&id).ok_or_else(|| {
        ApiError::query(format!(
            "pipeline_run_id must be an integer, not `{}`",
            id.chars().take(40).collect::<String>()
        ))
    })
}

fn time_param(v: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    v.map(|t| {
        parse(t).ok_or_else(|| {
            ApiError::query(format!(
                "{field} must be an ISO 8601 time, not `{}`",
                t.chars().take(40).collect::<String>()
            ))
        })
    })
    .transpose()
}

// ----- handlers -----

/// The original's health check, with its bug fixed (a store failure is a 503, not 200 `500`).
#[utoipa::path(get, path = "/api/healthcheck", params(EchoQuery),
    responses((status = 200, description = "The store answers", body = Object),
              (status = 400, body = ErrorBody),
              (status = 503, description = "The store does not answer", body = ErrorBody)))]
async fn healthcheck(state: &State, req: &Request) -> Answer {
    let q: EchoQuery = query(req)?;
    state.store().ping().await?;
    let mut v = json!({"status": "ok"});
    if let Some(e) = q.echo {
        v["echo"] = json!(e);
    }
    ok(&v)
}

/// A pipeline with its latest run.
#[utoipa::path(get, path = "/api/pipeline", params(PipelineIdQuery),
    responses((status = 200, body = Pipeline), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_pipeline(state: &State, req: &Request) -> Answer {
    let id = require_pipeline_id(query(req)?)?;
    match state.store().pipeline(&id).await? {
        Some(p) => ok(&p),
        None => Err(ApiError::not_found(format!(
            "pipeline `{id}` does not exist"
        ))),
    }
}

/// Registers a pipeline (its configuration is stored with secrets redacted).
#[utoipa::path(post, path = "/api/pipeline", request_body = NewPipeline, security(("bearer" = [])),
    responses((status = 201, body = Pipeline, headers(("location" = String, description = "Where to read it")),
        links(("pipeline" = (operation_id = "get_pipeline", parameters(("pipeline_id" = "$response.body#/id")))), ("runs" = (operation_id = "get_runs", parameters(("pipeline_id" = "$response.body#/id")))), ("delete" = (operation_id = "delete_pipeline", parameters(("pipeline_id" = "$response.body#/id")))))),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, description = "It exists already", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_pipeline(state: &State, req: &Request) -> Answer {
    let p: NewPipeline = body(req)?;
    let created_pipeline = state.store().create_pipeline(&p).await?;
    created(
        &created_pipeline,
        "/api/pipeline",
        &[("pipeline_id", &created_pipeline.id)],
    )
}

/// Changes a pipeline's fields.
#[utoipa::path(put, path = "/api/pipeline", request_body = PipelineUpdate, security(("bearer" = [])),
    responses((status = 200, body = Pipeline), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_pipeline(state: &State, req: &Request) -> Answer {
    let u: PipelineUpdate = body(req)?;
    ok(&state.store().update_pipeline(&u).await?)
}

/// Deletes a pipeline with its runs.
#[utoipa::path(delete, path = "/api/pipeline", params(PipelineIdQuery), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_pipeline(state: &State, req: &Request) -> Answer {
    let id = require_pipeline_id(query(req)?)?;
    if state.store().delete_pipeline(&id).await? {
        no_content()
    } else {
        Err(ApiError::not_found(format!(
            "pipeline `{id}` does not exist"
        )))
    }
}

/// Pipelines, each with its latest run; filters and paging (`X-Total-Count` has the total).
#[utoipa::path(get, path = "/api/pipelines", params(PipelineFilter),
    responses((status = 200, body = Vec<Pipeline>), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_pipelines(state: &State, req: &Request) -> Answer {
    let f: PipelineFilter = query(req)?;
    let (items, total) = state.store().pipelines(&f).await?;
    Ok(with_total(ok(&items)?, total))
}

/// Runs, newest first; filters and paging (`X-Total-Count` has the total).
#[utoipa::path(get, path = "/api/pipeline/runs", params(RunFilter),
    responses((status = 200, body = Vec<PipelineRun>), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_runs(state: &State, req: &Request) -> Answer {
    let f: RunFilter = query(req)?;
    let (items, total) = state.store().runs(&f).await?;
    Ok(with_total(ok(&items)?, total))
}

/// A run.
#[utoipa::path(get, path = "/api/pipeline/run", params(RunIdQuery),
    responses((status = 200, body = PipelineRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_run(state: &State, req: &Request) -> Answer {
    let q: RunIdQuery = query(req)?;
    let id = require_run_id(q.pipeline_run_id)?;
    match state.store().run(id).await? {
        Some(r) => ok(&r),
        None => Err(ApiError::not_found(format!("run {id} does not exist"))),
    }
}

/// Creates a run of a registered pipeline.
#[utoipa::path(post, path = "/api/pipeline/run", request_body = NewRun, security(("bearer" = [])),
    responses((status = 201, body = PipelineRun, headers(("location" = String, description = "Where to read it")),
        links(("run" = (operation_id = "get_run", parameters(("pipeline_run_id" = "$response.body#/id")))), ("logs" = (operation_id = "get_logs", parameters(("pipeline_run_id" = "$response.body#/id")))), ("metrics" = (operation_id = "get_metrics", parameters(("pipeline_run_id" = "$response.body#/id")))), ("delete" = (operation_id = "delete_run", parameters(("pipeline_run_id" = "$response.body#/id")))))),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, description = "No such pipeline", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_run(state: &State, req: &Request) -> Answer {
    let r: NewRun = body(req)?;
    let run = state.store().create_run(&r).await?;
    created(
        &run,
        "/api/pipeline/run",
        &[("pipeline_run_id", &run.id.to_string())],
    )
}

/// Changes a run's fields.
#[utoipa::path(put, path = "/api/pipeline/run", request_body = RunUpdate, security(("bearer" = [])),
    responses((status = 200, body = PipelineRun), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_run(state: &State, req: &Request) -> Answer {
    let u: RunUpdate = body(req)?;
    ok(&state.store().update_run(&u).await?)
}

/// Deletes a run with its samples and logs.
#[utoipa::path(delete, path = "/api/pipeline/run", params(RunIdQuery), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_run(state: &State, req: &Request) -> Answer {
    let q: RunIdQuery = query(req)?;
    let id = require_run_id(q.pipeline_run_id)?;
    if state.store().delete_run(id).await? {
        no_content()
    } else {
        Err(ApiError::not_found(format!("run {id} does not exist")))
    }
}

/// The latest run of a pipeline.
#[utoipa::path(get, path = "/api/pipeline/run/latest", params(PipelineIdQuery),
    responses((status = 200, body = PipelineRun), (status = 400, body = ErrorBody),
              (status = 404, description = "No such pipeline, or no run yet", body = ErrorBody)))]
async fn get_latest(state: &State, req: &Request) -> Answer {
    let id = require_pipeline_id(query(req)?)?;
    match state.store().latest_run(&id).await? {
        Some(r) => ok(&r),
        None if state.store().pipeline(&id).await?.is_none() => Err(ApiError::not_found(format!(
            "pipeline `{id}` does not exist"
        ))),
        None => Err(ApiError::not_found(format!("pipeline `{id}` has no runs"))),
    }
}

async fn range(state: &State, req: &Request, only: &str) -> Result<(i64, Vec<Sample>), ApiError> {
    let q: RangeQuery = query(req)?;
    let id = require_run_id(q.pipeline_run_id)?;
    let now = now_ms();
    let from = time_param(q.start_date.as_deref(), "start_date")?.unwrap_or(now - 12 * 3600 * 1000);
    let to = time_param(q.end_date.as_deref(), "end_date")?.unwrap_or(now + 60_000);
    let limit = q.limit.unwrap_or(10_000);
    if !(1..=100_000).contains(&limit) {
        return Err(ApiError::query(format!(
            "limit must be between 1 and 100000, not {limit}"
        )));
    }
    let only = (!only.is_empty()).then_some(only);
    Ok((
        id,
        state
            .store()
            .samples(id, Some(from), Some(to), only, limit)
            .await?,
    ))
}

/// Records-per-second samples of a run (default: the last 12 hours).
#[utoipa::path(get, path = "/api/pipeline/run/rps", params(RangeQuery),
    responses((status = 200, body = Vec<RpsPoint>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_rps(state: &State, req: &Request) -> Answer {
    let (id, samples) = range(state, req, "rps").await?;
    let points: Vec<RpsPoint> = samples
        .into_iter()
        .filter_map(|s| {
            Some(RpsPoint {
                pipeline_run_id: id,
                rps: s.rps?,
                created_at: s.created_at?,
            })
        })
        .collect();
    ok(&points)
}

/// Adds a records-per-second sample.
#[utoipa::path(post, path = "/api/pipeline/run/rps", request_body = NewRps, security(("bearer" = [])),
    responses((status = 201, description = "Stored", body = Object), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_rps(state: &State, req: &Request) -> Answer {
    let b: NewRps = body(req)?;
    let s = Sample {
        rps: Some(b.rps),
        ..Default::default()
    };
    crate::store::validate_sample(&s)?;
    state.store().add_sample(b.pipeline_run_id, &s).await?;
    with_status(
        &json!({"pipeline_run_id": b.pipeline_run_id, "rps": b.rps}),
        StatusCode::CREATED,
    )
}

/// Memory samples of a run, MB (default: the last 12 hours). Also at `…/run/memory`.
#[utoipa::path(get, path = "/api/pipeline/run/memory_usage", params(RangeQuery),
    responses((status = 200, body = Vec<MemoryPoint>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_memory(state: &State, req: &Request) -> Answer {
    let (id, samples) = range(state, req, "memory_usage").await?;
    let points: Vec<MemoryPoint> = samples
        .into_iter()
        .filter_map(|s| {
            Some(MemoryPoint {
                pipeline_run_id: id,
                memory_usage: s.memory_usage?,
                created_at: s.created_at?,
            })
        })
        .collect();
    ok(&points)
}

/// Adds a memory sample, MB. Also at `…/run/memory`.
#[utoipa::path(post, path = "/api/pipeline/run/memory_usage", request_body = NewMemory, security(("bearer" = [])),
    responses((status = 201, description = "Stored", body = Object), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_memory(state: &State, req: &Request) -> Answer {
    let b: NewMemory = body(req)?;
    let s = Sample {
        memory_usage: Some(b.memory_usage),
        ..Default::default()
    };
    crate::store::validate_sample(&s)?;
    state.store().add_sample(b.pipeline_run_id, &s).await?;
    with_status(
        &json!({"pipeline_run_id": b.pipeline_run_id, "memory_usage": b.memory_usage}),
        StatusCode::CREATED,
    )
}

/// Log lines of a run, oldest first, in pages (`after`, `next_after`).
#[utoipa::path(get, path = "/api/pipeline/run/logs", params(LogsQuery),
    responses((status = 200, body = Logs), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn get_logs(state: &State, req: &Request) -> Answer {
    let q: LogsQuery = query(req)?;
    let id = require_run_id(q.pipeline_run_id)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::query(format!(
            "limit must be between 1 and 10000, not {limit}"
        )));
    }
    let mut note = None;
    if let Some(external) = state.external_logs()
        && let Some(run) = state.store().run(id).await?
        && !run.cloudwatch_log_stream.is_empty()
        && let Some(pipeline) = state.store().pipeline(&run.pipeline_id).await?
    {
        let reader = external.0.clone();
        let read = tokio::task::spawn_blocking(move || reader.read(&pipeline, &run))
            .await
            .unwrap_or_else(|e| Some(Err(format!("the reader stopped: {e}"))));
        match read {
            Some(Ok(lines)) => {
                let entries = external_entries(lines, q.after, q.level.as_deref(), limit)?;
                let next_after = entries.last().map(|e| e.id).or(q.after);
                return ok(&Logs {
                    logs: entries.iter().map(|e| e.message.clone()).collect(),
                    entries,
                    next_after,
                    source: "cloudwatch".into(),
                    note: None,
                });
            }
            Some(Err(e)) => {
                note = Some(format!(
                    "the run's lines in CloudWatch Logs cannot be read ({e}); these are the lines the store kept"
                ));
            }
            None => {}
        }
    }
    let entries = state
        .store()
        .logs(id, q.after, q.level.as_deref(), limit)
        .await?;
    let next_after = entries.last().map(|e| e.id).or(q.after);
    ok(&Logs {
        logs: entries.iter().map(|e| e.message.clone()).collect(),
        entries,
        next_after,
        source: "store".into(),
        note,
    })
}

/// CloudWatch events as log entries: numbered from 1 in order (the numbers `after` pages by),
/// each `LEVEL target: message` line split as the host's CloudWatch sink wrote it.
fn external_entries(
    lines: Vec<(i64, String)>,
    after: Option<i64>,
    level: Option<&str>,
    limit: i64,
) -> Result<Vec<LogEntry>, ApiError> {
    let levels = match level {
        Some(l) => Some(crate::store::levels_at_least(l).ok_or_else(|| {
            ApiError::query(format!(
                "level must be ERROR, WARN, INFO, DEBUG or TRACE, not `{l}`"
            ))
        })?),
        None => None,
    };
    Ok(lines
        .into_iter()
        .enumerate()
        .map(|(i, (at, text))| {
            let (level, rest) = text.split_once(' ').unwrap_or(("INFO", text.as_str()));
            let known = crate::store::levels_at_least(level).is_some();
            let (level, rest) = if known {
                (level, rest)
            } else {
                ("INFO", text.as_str())
            };
            let (target, message) = match rest.split_once(": ") {
                Some((t, m)) if known && !t.contains(' ') => (t, m),
                _ => ("", rest),
            };
            LogEntry {
                id: i as i64 + 1,
                created_at: iso(at),
                level: level.to_ascii_uppercase(),
                target: target.to_owned(),
                message: message.to_owned(),
            }
        })
        .filter(|e| after.is_none_or(|a| e.id > a))
        .filter(|e| levels.is_none_or(|ls| ls.contains(&e.level.as_str())))
        .take(limit as usize)
        .collect())
}

/// Adds log lines to a run.
#[utoipa::path(post, path = "/api/pipeline/run/logs", request_body = NewLogs, security(("bearer" = [])),
    responses((status = 201, description = "Stored", body = Object), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_logs(state: &State, req: &Request) -> Answer {
    let b: NewLogs = body(req)?;
    if b.logs.len() > 10_000 {
        return Err(ApiError::body("at most 10000 lines per request"));
    }
    let lines: Vec<LogLine> = b
        .logs
        .into_iter()
        .map(|l| match l {
            LogInput::Message(m) => LogLine {
                seq: None,
                created_at: None,
                level: "INFO".into(),
                target: String::new(),
                message: m,
            },
            LogInput::Line(l) => l,
        })
        .collect();
    state.store().add_logs(b.pipeline_run_id, &lines).await?;
    with_status(
        &json!({"pipeline_run_id": b.pipeline_run_id, "stored": lines.len()}),
        StatusCode::CREATED,
    )
}

/// Every sample of a run: records/s per stage, rows, bytes, memory and queue depths.
#[utoipa::path(get, path = "/api/pipeline/run/metrics", params(RangeQuery),
    responses((status = 200, body = Vec<Sample>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_metrics(state: &State, req: &Request) -> Answer {
    let (_, samples) = range(state, req, "").await?;
    ok(&samples)
}

/// The body of `POST /api/pipeline/run/metrics`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewSamples {
    /// The run.
    pipeline_run_id: i64,
    /// The samples.
    #[serde(deserialize_with = "crate::strict::objects")]
    samples: Vec<Sample>,
}

/// Adds samples to a run.
#[utoipa::path(post, path = "/api/pipeline/run/metrics", request_body = NewSamples, security(("bearer" = [])),
    responses((status = 201, description = "Stored", body = Object), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_metrics(state: &State, req: &Request) -> Answer {
    let b: NewSamples = body(req)?;
    if b.samples.len() > 10_000 {
        return Err(ApiError::body("at most 10000 samples per request"));
    }
    for s in &b.samples {
        crate::store::validate_sample(s)?;
    }
    for s in &b.samples {
        state.store().add_sample(b.pipeline_run_id, s).await?;
    }
    with_status(
        &json!({"pipeline_run_id": b.pipeline_run_id, "stored": b.samples.len()}),
        StatusCode::CREATED,
    )
}

/// Asks a running run to stop; it finishes its in-flight batches, stops cleanly and is
/// recorded as `stopped`.
#[utoipa::path(post, path = "/api/pipeline/run/stop", request_body = StopRequest, security(("bearer" = [])),
    responses((status = 202, description = "The run will stop at its next report", body = PipelineRun),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "The run is not running", body = ErrorBody)))]
async fn post_stop(state: &State, req: &Request) -> Answer {
    let b: StopRequest = body(req)?;
    with_status(
        &state.store().request_stop(b.pipeline_run_id).await?,
        StatusCode::ACCEPTED,
    )
}

/// The body of `POST /api/pipeline/run/stop`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StopRequest {
    /// The run.
    pipeline_run_id: i64,
}

/// A run's report: registers the pipeline and the run on first contact, then updates them;
/// safe to resend.
#[utoipa::path(post, path = "/api/pipeline/run/report", request_body = Report, security(("bearer" = [])),
    responses((status = 200, body = ReportAck,
        links(("run" = (operation_id = "get_run", parameters(("pipeline_run_id" = "$response.body#/pipeline_run_id")))), ("logs" = (operation_id = "get_logs", parameters(("pipeline_run_id" = "$response.body#/pipeline_run_id")))), ("metrics" = (operation_id = "get_metrics", parameters(("pipeline_run_id" = "$response.body#/pipeline_run_id")))))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_report(state: &State, req: &Request) -> Answer {
    let r: Report = body(req)?;
    if r.samples.len() > 10_000 || r.logs.len() > 10_000 {
        return Err(ApiError::body(
            "at most 10000 samples and 10000 log lines per report",
        ));
    }
    ok(&state.store().apply_report(&r).await?)
}

/// An error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable kind: `not_found`, `invalid_body`, `invalid_query`, `invalid_value`,
    /// `conflict`, `unauthorized`, `method_not_allowed`, `body_too_large`,
    /// `unsupported_media_type`, `store_unavailable`.
    pub kind: String,
    /// For people.
    pub message: String,
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // With tokens configured, reads need one too: every operation names the scheme.
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.security.get_or_insert_with(|| {
                    vec![utoipa::openapi::security::SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]
                });
                let body_limit = op
                    .request_body
                    .is_some()
                    .then_some(("413", "The body is larger than the service takes"));
                for (code, description) in [
                    ("401", "No token, or a refused one"),
                    ("403", "A read token, for a write"),
                    ("429", "Too many refused tokens from this client lately"),
                ]
                .into_iter()
                .chain(body_limit)
                {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| {
                            utoipa::openapi::ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    utoipa::openapi::ContentBuilder::new()
                                        .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                            "ErrorBody",
                                        )))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "fastlane monitoring API", description = "Pipelines, runs, samples and logs of fastlane runs."),
    paths(healthcheck, get_pipeline, post_pipeline, put_pipeline, delete_pipeline, get_pipelines,
          get_runs, get_run, post_run, put_run, delete_run, get_latest, get_rps, post_rps,
          get_memory, post_memory, get_logs, post_logs, get_metrics, post_metrics, post_stop,
          post_report),
    components(schemas(ErrorBody, ErrorDetail, Pipeline, PipelineRun, PipelineType, RunStatus,
                       Sample, QueueSample, LogLine, LogEntry, Logs, NewPipeline, PipelineUpdate,
                       NewRun, RunUpdate, NewRps, NewMemory, NewLogs, LogInput, RpsPoint,
                       MemoryPoint, Report, ReportPipeline, ReportRun, ReportAck, NewSamples,
                       StopRequest, LogLevel)),
    modifiers(&Security),
)]
pub struct ApiDoc;

fn openapi_response() -> Response {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()));
    let mut r = DOC.clone().into_response();
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The time now, as the API shows times.
pub fn now_iso() -> String {
    iso(now_ms())
}
