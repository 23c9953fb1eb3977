//! The monitoring service (`fastlane serve`): the REST API under `/api`, `/metrics` in the
//! Prometheus text format, `/healthz`, the OpenAPI document at `/api/openapi.json`, and the
//! web UI at `/`, all from one warp server.
//!
//! Requests to `/api` are read by one warp filter (method, path, query, headers, a body of at
//! most [`ServeOptions::body_limit`] bytes, chunked or not) and dispatched by [`api`], so that
//! every answer, including an unknown path or a wrong method, is the same JSON error shape.

pub mod api;
pub mod error;
pub mod metrics;
pub mod ui;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Reply;

pub use error::ApiError;

use crate::store::Store;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The bearer token write requests must carry; `None` leaves them open.
    pub token: Option<String>,
    /// The largest request body accepted, bytes.
    pub body_limit: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8001)),
            token: None,
            body_limit: 1024 * 1024,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct State {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    token: Option<String>,
    body_limit: usize,
    metrics: metrics::HttpMetrics,
    started: Instant,
}

impl State {
    /// The state of a service over `store`.
    pub fn new(store: Store, opts: &ServeOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                token: opts.token.clone().filter(|t| !t.is_empty()),
                body_limit: opts.body_limit,
                metrics: metrics::HttpMetrics::default(),
                started: Instant::now(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether a token is required for writes.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.inner.token else {
            return true;
        };
        let given = headers
            .get(warp::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request as the dispatcher sees it.
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path (`/api/pipeline/run`).
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

async fn read_body(
    mut stream: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::body(format!("cannot read the body: {e}")))?;
        if out.len() + chunk.remaining() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {limit} bytes"),
            ));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// All the service's routes.
pub fn routes(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_state = {
        let s = state.clone();
        warp::any().map(move || s.clone())
    };
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let api = warp::path("api")
        .and(warp::method())
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_state.clone())
        .then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             body,
             state: State| async move {
                let body = match read_body(Box::pin(body), state.inner.body_limit).await {
                    Ok(b) => b,
                    Err(e) => return e.into_response(),
                };
                let req = Request {
                    method,
                    path: path.as_str().to_owned(),
                    query,
                    headers,
                    body,
                };
                api::dispatch(&state, req).await
            },
        );
    let healthz = warp::path!("healthz")
        .and(with_state.clone())
        .then(|state: State| async move { api::healthz(&state).await });
    let prometheus = warp::path!("metrics")
        .and(with_state.clone())
        .then(|state: State| async move { metrics::render(&state).await });
    let ui = warp::get()
        .and(warp::path::full())
        .map(|p: warp::path::FullPath| ui::serve(p.as_str()));
    let metrics_state = state.clone();
    let all = api
        .or(healthz)
        .unify()
        .or(prometheus)
        .unify()
        .or(ui)
        .unify()
        .recover(|_rejection: warp::Rejection| async move {
            // Only non-GET requests outside /api reach here.
            Ok::<_, Infallible>(
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "only GET is served outside /api",
                )
                .into_response(),
            )
        })
        .unify();
    all.with(warp::log::custom(move |info| {
        metrics_state.inner.metrics.observe(info);
    }))
}

/// Serves until `shutdown` completes.
pub async fn serve(
    store: Store,
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let state = State::new(store, &opts);
    let listener = tokio::net::TcpListener::bind(opts.bind).await?;
    let addr = listener.local_addr()?;
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    Ok(addr)
}

/// Binds `opts.bind` and serves in the background on the current runtime; returns the bound
/// address and a handle that stops the server when dropped or sent to.
pub async fn spawn(
    store: Store,
    opts: ServeOptions,
) -> std::io::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let state = State::new(store, &opts);
    let listener = tokio::net::TcpListener::bind(opts.bind).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        warp::serve(routes(state))
            .incoming(listener)
            .graceful(async move {
                let _ = rx.await;
            })
            .run(),
    );
    Ok((addr, tx))
}
