//! The monitoring service (`fastlane serve`): the REST API under `/api`, `/metrics` in the
//! Prometheus text format, `/healthz`, the OpenAPI document at `/api/openapi.json`, and the
//! web UI at `/`, all from one warp server.
//!
//! With tokens configured, every route but `/healthz` and the UI's static files needs one,
//! reads included: a read token for `GET`s (dashboards, Prometheus), a write token for the
//! rest. A client whose tokens are refused too often is answered 429 for a while.
//!
//! Requests to `/api` are read by one warp filter (method, path, query, headers, a body of at
//! most [`ServeOptions::body_limit`] bytes, chunked or not) and dispatched by [`api`], so that
//! every answer, including an unknown path or a wrong method, is the same JSON error shape.

pub mod api;
pub mod error;
pub mod metrics;
pub mod ui;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Reply;

pub use error::ApiError;

use crate::store::Store;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `GET` requests: the API's reads and `/metrics`.
    Read,
    /// Everything.
    Write,
}

/// A bearer token the service accepts.
#[derive(Clone)]
pub struct ApiToken {
    /// A name for the token (in a tokens file), for the operator.
    pub name: String,
    /// What it allows.
    pub role: Role,
    /// The token itself.
    pub secret: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("secret", &"***")
            .finish()
    }
}

impl ApiToken {
    /// Parses a tokens file: one token per line, `<name> <read|write> <token>`; blank lines
    /// and lines starting with `#` are skipped. Every problem is listed with its line.
    pub fn parse_file(text: &str) -> Result<Vec<ApiToken>, String> {
        let mut tokens = Vec::new();
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, secret] = fields[..] else {
                problems.push(format!(
                    "line {}: expected `<name> <read|write> <token>`",
                    i + 1
                ));
                continue;
            };
            let role = match role {
                "read" => Role::Read,
                "write" => Role::Write,
                other => {
                    problems.push(format!(
                        "line {}: the role `{other}` is not `read` or `write`",
                        i + 1
                    ));
                    continue;
                }
            };
            if secret.len() < 8 {
                problems.push(format!(
                    "line {}: the token of `{name}` is shorter than 8 characters",
                    i + 1
                ));
                continue;
            }
            tokens.push(ApiToken {
                name: name.to_owned(),
                role,
                secret: secret.to_owned(),
            });
        }
        if problems.is_empty() {
            Ok(tokens)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Log lines kept outside the store: a run whose lines went to CloudWatch Logs has them read
/// from there (the host reads them through the `aws` plugin).
pub trait ExternalLogs: Send + Sync + 'static {
    /// The lines of `run`, a run of `pipeline` (its stored configuration, secrets redacted),
    /// oldest first, as (epoch milliseconds, text); `None` when they are not kept outside.
    fn read(
        &self,
        pipeline: &crate::model::Pipeline,
        run: &crate::model::PipelineRun,
    ) -> Option<Result<Vec<(i64, String)>, String>>;
}

/// An [`ExternalLogs`] to share.
#[derive(Clone)]
pub struct ExternalLogsHandle(pub Arc<dyn ExternalLogs>);

impl std::fmt::Debug for ExternalLogsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExternalLogs")
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The write token; with any token set, every route but `/healthz` needs one.
    pub token: Option<String>,
    /// Tokens that may only read (dashboards, Prometheus scrapes).
    pub read_tokens: Vec<String>,
    /// Named tokens, each reading or writing (from a tokens file).
    pub tokens: Vec<ApiToken>,
    /// The largest request body accepted, bytes.
    pub body_limit: usize,
    /// Refused tokens a client may present per minute before it is answered 429; 0 for no
    /// limit.
    pub max_token_failures: u32,
    /// Where the lines of runs that logged to CloudWatch are read.
    pub external_logs: Option<ExternalLogsHandle>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8001)),
            token: None,
            read_tokens: Vec::new(),
            tokens: Vec::new(),
            body_limit: 1024 * 1024,
            max_token_failures: MAX_FAILURES,
            external_logs: None,
        }
    }
}

impl ServeOptions {
    /// Every token the service accepts.
    pub fn all_tokens(&self) -> Vec<ApiToken> {
        let mut all: Vec<ApiToken> = self
            .token
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| ApiToken {
                name: "token".into(),
                role: Role::Write,
                secret: t.clone(),
            })
            .collect();
        all.extend(
            self.read_tokens
                .iter()
                .filter(|t| !t.is_empty())
                .enumerate()
                .map(|(i, t)| ApiToken {
                    name: format!("read-token-{}", i + 1),
                    role: Role::Read,
                    secret: t.clone(),
                }),
        );
        all.extend(self.tokens.iter().filter(|t| !t.secret.is_empty()).cloned());
        all
    }
}

/// Refused tokens a client may present per [`FAILURE_WINDOW`] before it is answered 429, by
/// default ([`ServeOptions::max_token_failures`]).
pub const MAX_FAILURES: u32 = 10;
/// The window of [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token was given.
    Missing,
    /// The token given is none of the service's.
    Wrong,
    /// The token may only read.
    ReadOnly,
    /// Too many refused tokens from this client lately; try again after this many seconds.
    TooMany(u64),
}

impl Denied {
    /// The JSON error answer.
    pub fn response(self) -> warp::reply::Response {
        let (status, kind, message) = match self {
            Denied::Missing => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this service needs `Authorization: Bearer <token>`".to_owned(),
            ),
            Denied::Wrong => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the token was refused".to_owned(),
            ),
            Denied::ReadOnly => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token may only read".to_owned(),
            ),
            Denied::TooMany(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many refused tokens from this address; try again in {secs} s"),
            ),
        };
        let mut r = ApiError::new(status, kind, message).into_response();
        let headers = r.headers_mut();
        match self {
            Denied::Missing | Denied::Wrong => {
                headers.insert(
                    warp::http::header::WWW_AUTHENTICATE,
                    warp::http::HeaderValue::from_static("Bearer"),
                );
            }
            Denied::TooMany(secs) => {
                headers.insert(warp::http::header::RETRY_AFTER, secs.into());
            }
            Denied::ReadOnly => {}
        }
        r
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
    tokens: Vec<ApiToken>,
    /// Per client address: when its window began and the tokens refused in it.
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    max_failures: u32,
    external_logs: Option<ExternalLogsHandle>,
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
                tokens: opts.all_tokens(),
                failures: Mutex::new(HashMap::new()),
                max_failures: opts.max_token_failures,
                external_logs: opts.external_logs.clone(),
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

    /// Where lines kept outside the store are read, if anywhere.
    pub fn external_logs(&self) -> Option<&ExternalLogsHandle> {
        self.inner.external_logs.as_ref()
    }

    /// Whether tokens are required.
    pub fn has_token(&self) -> bool {
        !self.inner.tokens.is_empty()
    }

    /// Lets a request from `client` that needs `need` through, or says why not.
    pub fn check(
        &self,
        headers: &HeaderMap,
        client: Option<SocketAddr>,
        need: Role,
    ) -> Result<(), Denied> {
        if self.inner.tokens.is_empty() {
            return Ok(());
        }
        let ip = client.map(|c| c.ip());
        if let Some(ip) = ip
            && let Some(wait) = self.blocked(ip)
        {
            return Err(Denied::TooMany(wait));
        }
        let given = headers
            .get(warp::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(Denied::Missing)?;
        // Every token is compared, in constant time, whichever matches.
        let mut role = None;
        for t in &self.inner.tokens {
            if constant_time_eq(given.as_bytes(), t.secret.as_bytes()) {
                role = role.max(Some(t.role));
            }
        }
        match role {
            None => {
                if let Some(ip) = ip {
                    self.refused(ip);
                }
                Err(Denied::Wrong)
            }
            Some(r) if r < need => Err(Denied::ReadOnly),
            Some(_) => Ok(()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.inner
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds `ip` must wait, when it is over the limit of refused tokens.
    fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let failures = self.failures();
        let (start, count) = failures.get(&ip)?;
        let elapsed = start.elapsed();
        let max = self.inner.max_failures;
        (max > 0 && *count >= max && elapsed < FAILURE_WINDOW)
            .then(|| (FAILURE_WINDOW - elapsed).as_secs().max(1))
    }

    fn refused(&self, ip: IpAddr) {
        let mut failures = self.failures();
        let now = Instant::now();
        // Forget old windows, so the map stays small.
        failures.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
        let entry = failures.entry(ip).or_insert((now, 0));
        entry.1 += 1;
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
    /// The client's address.
    pub client: Option<SocketAddr>,
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
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .and(with_state.clone())
        .then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             client: Option<SocketAddr>,
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
                    client,
                };
                api::dispatch(&state, req).await
            },
        );
    let healthz = warp::path!("healthz")
        .and(with_state.clone())
        .then(|state: State| async move { api::healthz(&state).await });
    let prometheus = warp::path!("metrics")
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(with_state.clone())
        .then(
            |headers: HeaderMap, client: Option<SocketAddr>, state: State| async move {
                match state.check(&headers, client, Role::Read) {
                    Ok(()) => metrics::render(&state).await,
                    Err(denied) => denied.response(),
                }
            },
        );
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
