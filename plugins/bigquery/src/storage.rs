//! The BigQuery Storage Read API in Arrow format, through the gRPC stubs `gcp-bigquery-client`
//! ships: a read session splits a table into streams (one partition each), each stream sends
//! Arrow IPC record batches that are decoded without conversion. A stream that breaks is
//! opened again at the row it stopped at.

use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use fastlane_plugin_api::{PluginError, Result};
use gcp_bigquery_client::google::cloud::bigquery::storage::v1 as bqs;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::client::{Auth, Retry};

/// Google's Storage API endpoint.
pub const GOOGLE_STORAGE: &str = "https://bigquerystorage.googleapis.com";

type ReadClient = bqs::big_query_read_client::BigQueryReadClient<Channel>;

/// A connection to the Storage Read API.
#[derive(Clone)]
pub struct Storage {
    client: ReadClient,
    endpoint: String,
}

impl Storage {
    /// The endpoint it talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// A read session: its streams and the Arrow schema (IPC bytes) their batches follow.
pub struct Session {
    /// The stream names, one partition each.
    pub streams: Vec<String>,
    /// The IPC-encoded schema.
    pub schema: Vec<u8>,
}

impl Storage {
    /// Connects (lazily) to `endpoint` (`https://…` uses TLS with the system's roots).
    pub fn new(endpoint: &str) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| {
            PluginError::config(format!("`storage_endpoint` {endpoint}: {e}"))
        };
        let mut ep = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| bad(&e))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if endpoint.starts_with("https://") {
            ep = ep
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| bad(&e))?;
        }
        let channel = ep.connect_lazy();
        let client = ReadClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(Self {
            client,
            endpoint: endpoint.to_owned(),
        })
    }

    /// Creates a read session on `table` (`projects/p/datasets/d/tables/t`), billed to
    /// `project`, with at most `max_streams` streams.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_session(
        &self,
        auth: &Auth,
        project: &str,
        table: &str,
        columns: &[String],
        restriction: Option<&str>,
        max_streams: usize,
    ) -> Result<Session> {
        let request = bqs::CreateReadSessionRequest {
            parent: format!("projects/{project}"),
            read_session: Some(bqs::ReadSession {
                table: table.to_owned(),
                data_format: bqs::DataFormat::Arrow as i32,
                read_options: Some(bqs::read_session::TableReadOptions {
                    selected_fields: columns.to_vec(),
                    row_restriction: restriction.unwrap_or_default().to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            max_stream_count: i32::try_from(max_streams).unwrap_or(i32::MAX),
            ..Default::default()
        };
        let request = authorized(auth, request, &format!("read_session.table={table}")).await?;
        let session = self
            .client
            .clone()
            .create_read_session(request)
            .await
            .map_err(|s| self.status_error(&s, &format!("create a read session on {table}")))?
            .into_inner();
        let schema = match session.schema {
            Some(bqs::read_session::Schema::ArrowSchema(s)) => s.serialized_schema,
            _ => {
                return Err(PluginError::io(format!(
                    "the Storage Read API at {} sent no Arrow schema for {table}",
                    self.endpoint
                )));
            }
        };
        Ok(Session {
            streams: session.streams.into_iter().map(|s| s.name).collect(),
            schema,
        })
    }

    /// A gRPC status as a plugin error.
    pub fn status_error(&self, status: &Status, doing: &str) -> PluginError {
        let message = format!(
            "the Storage Read API at {} could not {doing}: {} ({:?})",
            self.endpoint,
            status.message(),
            status.code()
        );
        match status.code() {
            Code::NotFound => PluginError::not_found(message),
            Code::Unauthenticated | Code::PermissionDenied => PluginError::connection(message),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                PluginError::config(message)
            }
            Code::Unimplemented => PluginError::unsupported(message),
            Code::Unavailable => PluginError::connection(message),
            _ => PluginError::io(message),
        }
    }
}

/// `message` with the bearer token and the routing header BigQuery expects.
async fn authorized<T>(auth: &Auth, message: T, routing: &str) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let meta = request.metadata_mut();
    if let Some(token) = auth.token().await? {
        meta.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| PluginError::connection("the access token is not valid ASCII"))?,
        );
    }
    if let Ok(value) = escape_routing(routing).parse() {
        meta.insert("x-goog-request-params", value);
    }
    Ok(request)
}

/// Escapes the value of a `key=value` routing header as Google's clients do.
fn escape_routing(routing: &str) -> String {
    let (key, value) = routing.split_once('=').unwrap_or((routing, ""));
    let mut out = format!("{key}=");
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first IPC message of `bytes`: the schema message alone, without what may follow it (some
/// servers send a whole IPC stream, the schema then its end-of-stream marker).
fn first_message(bytes: &[u8]) -> &[u8] {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // `0xFFFFFFFF <length> <metadata>`, or the pre-1.0 `<length> <metadata>`; a schema message
    // has no body.
    let (prefix, length) = match word(0) {
        Some(0xFFFF_FFFF) => (8, word(4)),
        other => (4, other),
    };
    match length.and_then(|l| usize::try_from(l).ok()) {
        Some(l) if prefix + l <= bytes.len() => &bytes[..prefix + l],
        _ => bytes,
    }
}

/// Whether a failed stream may be opened again.
fn transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted => {
            true
        }
        // A connection reset mid-stream surfaces as INTERNAL (RST_STREAM) or UNKNOWN.
        Code::Internal | Code::Unknown => {
            let m = status.message().to_ascii_lowercase();
            m.contains("rst_stream")
                || m.contains("stream")
                || m.contains("transport")
                || m.contains("connection")
                || m.contains("broken pipe")
                || m.contains("reset")
        }
        _ => false,
    }
}

/// One stream of a session, read batch by batch.
pub struct StreamReader {
    storage: Storage,
    name: String,
    decoder: StreamDecoder,
    responses: Option<tonic::codec::Streaming<bqs::ReadRowsResponse>>,
    /// Rows received so far: where a reopened stream starts.
    offset: i64,
    retry: Retry,
    retries: u32,
}

impl StreamReader {
    /// A reader of stream `name` whose batches follow the IPC `schema`.
    pub fn new(storage: Storage, name: String, schema: &[u8], retry: Retry) -> Result<Self> {
        let mut decoder = StreamDecoder::new();
        let mut buffer = Buffer::from(first_message(schema).to_vec());
        // The decoder takes the schema in with the first batch.
        decoder
            .decode(&mut buffer)
            .map_err(|e| PluginError::data(format!("the session's Arrow schema: {e}")))?;
        Ok(Self {
            storage,
            name,
            decoder,
            responses: None,
            offset: 0,
            retry,
            retries: 0,
        })
    }

    /// The reader, starting after the stream's first `offset` rows.
    pub fn starting_at(mut self, offset: i64) -> Self {
        self.offset = offset;
        self
    }

    /// The rows of the stream read so far, from its start: where a reopened stream starts.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The next batch of the stream, or `None` at its end.
    pub async fn next(&mut self, auth: &Auth) -> Result<Option<RecordBatch>> {
        loop {
            let failure = match self.responses.as_mut() {
                None => {
                    let request = bqs::ReadRowsRequest {
                        read_stream: self.name.clone(),
                        offset: self.offset,
                    };
                    let request =
                        authorized(auth, request, &format!("read_stream={}", self.name)).await?;
                    match self.storage.client.clone().read_rows(request).await {
                        Ok(response) => {
                            self.responses = Some(response.into_inner());
                            continue;
                        }
                        Err(status) => status,
                    }
                }
                Some(responses) => match responses.message().await {
                    Ok(Some(response)) => {
                        self.retries = 0;
                        let Some(batch) = self.decode(response)? else {
                            continue;
                        };
                        return Ok(Some(batch));
                    }
                    Ok(None) => return Ok(None),
                    Err(status) => status,
                },
            };
            self.responses = None;
            if transient(&failure) && self.retries < self.retry.max_retries {
                self.retries += 1;
                let wait = self.retry.backoff(self.retries);
                log::warn!(
                    "BigQuery: the stream {} broke after {} rows ({}); reopening it there, \
                     retry {} of {} in {} ms",
                    self.name,
                    self.offset,
                    failure.message(),
                    self.retries,
                    self.retry.max_retries,
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(self.storage.status_error(
                &failure,
                &format!("read the stream {} after {} rows", self.name, self.offset),
            ));
        }
    }

    fn decode(&mut self, response: bqs::ReadRowsResponse) -> Result<Option<RecordBatch>> {
        let Some(bqs::read_rows_response::Rows::ArrowRecordBatch(rows)) = response.rows else {
            return Ok(None);
        };
        let mut buffer = Buffer::from_vec(rows.serialized_record_batch);
        let batch = self
            .decoder
            .decode(&mut buffer)
            .map_err(|e| {
                PluginError::data(format!(
                    "the stream {} sent a batch that is not Arrow IPC: {e}",
                    self.name
                ))
            })?
            .ok_or_else(|| {
                PluginError::data(format!("the stream {} sent an incomplete batch", self.name))
            })?;
        let expected = response.row_count;
        if expected != 0 && usize::try_from(expected).ok() != Some(batch.num_rows()) {
            return Err(PluginError::data(format!(
                "the stream {} announced {expected} rows and sent {}",
                self.name,
                batch.num_rows()
            )));
        }
        self.offset += i64::try_from(batch.num_rows()).unwrap_or(i64::MAX);
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_streams_are_reopened_and_refusals_are_not() {
        assert!(transient(&Status::unavailable("connection reset")));
        assert!(transient(&Status::internal(
            "Received RST_STREAM with error code 2"
        )));
        assert!(!transient(&Status::internal("table schema changed")));
        assert!(!transient(&Status::permission_denied("no")));
        assert!(!transient(&Status::not_found("no such stream")));
    }

    #[test]
    fn the_schema_message_is_read_without_a_trailing_end_of_stream() {
        let batch = RecordBatch::try_from_iter([(
            "id",
            std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])) as _,
        )])
        .unwrap();
        let mut stream = Vec::new();
        let mut writer =
            arrow_ipc::writer::StreamWriter::try_new(&mut stream, &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        // What an emulator sends as the session's schema: a whole stream (schema, EOS).
        let schema = first_message(&stream).to_vec();
        let message = stream[schema.len()..stream.len() - 8].to_vec();
        let mut whole = schema.clone();
        whole.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let mut reader = StreamReader::new(
            Storage::new("http://127.0.0.1:1").unwrap(),
            "s".into(),
            &whole,
            Retry {
                max_retries: 0,
                backoff_ms: 1,
            },
        )
        .unwrap();
        for _ in 0..2 {
            let response = bqs::ReadRowsResponse {
                row_count: 3,
                rows: Some(bqs::read_rows_response::Rows::ArrowRecordBatch(
                    #[allow(deprecated)]
                    bqs::ArrowRecordBatch {
                        serialized_record_batch: message.clone(),
                        row_count: 0,
                    },
                )),
                ..Default::default()
            };
            assert_eq!(reader.decode(response).unwrap(), Some(batch.clone()));
        }
        assert_eq!(reader.offset, 6);
        let wrong = bqs::ReadRowsResponse {
            row_count: 4,
            rows: Some(bqs::read_rows_response::Rows::ArrowRecordBatch(
                #[allow(deprecated)]
                bqs::ArrowRecordBatch {
                    serialized_record_batch: message,
                    row_count: 0,
                },
            )),
            ..Default::default()
        };
        let err = reader.decode(wrong).unwrap_err();
        assert!(
            err.message().contains("announced 4 rows and sent 3"),
            "{err}"
        );
        assert_eq!(first_message(b"\x01"), b"\x01");
    }

    #[test]
    fn routing_headers_are_escaped() {
        assert_eq!(
            escape_routing("read_session.table=projects/p/datasets/d/tables/t 1"),
            "read_session.table=projects/p/datasets/d/tables/t%201"
        );
    }
}
