//! Streaming one object to S3: bytes are gathered into parts and uploaded in the background
//! while the writer keeps encoding; an object smaller than one part is sent in one request.
//! Every part carries a CRC32 checksum that S3 verifies, and the completed object is checked
//! against the list of part checksums.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use fastlane_plugin_api::{PluginError, Result};
use fastlane_plugin_support::keys::KeyMax;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::connection::{call_error, runtime};

/// An object a run has published, as listed in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Rows it holds.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a run has uploaded so far, shared by the target and its writers, so that an abort can
/// remove it all.
#[derive(Debug, Default)]
pub struct RunState {
    /// Completed objects.
    pub objects: Mutex<Vec<ObjectInfo>>,
    /// Multipart uploads in progress: key → upload id.
    pub uploads: Mutex<HashMap<String, String>>,
    /// The largest replication key written.
    pub key_max: Mutex<Option<KeyMax>>,
    /// The schema of the rows written (for the Glue table).
    pub schema: Mutex<Option<arrow_schema::SchemaRef>>,
}

impl RunState {
    /// Locks a part of the state, even after a panic elsewhere.
    pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where and how an object is uploaded.
#[derive(Clone)]
pub struct Destination {
    /// The client.
    pub client: Client,
    /// The bucket.
    pub bucket: String,
    /// Part size in bytes.
    pub part_size: usize,
    /// Parts uploaded at once.
    pub concurrency: usize,
    /// The content type of the objects.
    pub content_type: &'static str,
}

type PartTask = JoinHandle<Result<CompletedPart>>;

/// One object being uploaded; a [`io::Write`] for the encoders.
pub struct Upload {
    to: Destination,
    key: String,
    state: Arc<RunState>,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: VecDeque<PartTask>,
    parts: Vec<CompletedPart>,
    bytes: Arc<AtomicU64>,
    done: bool,
}

impl Upload {
    /// Starts an object at `key` (nothing is sent until a part is full or the object ends).
    pub fn new(to: Destination, key: String, state: Arc<RunState>) -> Self {
        Self {
            buffer: Vec::with_capacity(to.part_size.min(1 << 20)),
            to,
            key,
            state,
            upload_id: None,
            next_part: 1,
            in_flight: VecDeque::new(),
            parts: Vec::new(),
            bytes: Arc::new(AtomicU64::new(0)),
            done: false,
        }
    }

    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A counter of the bytes written so far (sent or buffered), readable while encoders own
    /// the upload.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.to.bucket, self.key)
    }

    /// Sends the buffer as the next part, starting the multipart upload if needed.
    fn send_part(&mut self) -> Result<()> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = runtime()
                    .block_on(
                        self.to
                            .client
                            .create_multipart_upload()
                            .bucket(&self.to.bucket)
                            .key(&self.key)
                            .content_type(self.to.content_type)
                            .checksum_algorithm(ChecksumAlgorithm::Crc32)
                            .send(),
                    )
                    .map_err(|e| call_error(&format!("cannot start `{}`", self.url()), &e))?;
                let id = created.upload_id().unwrap_or_default().to_owned();
                if id.is_empty() {
                    return Err(PluginError::io(format!(
                        "S3 gave no upload id for `{}`",
                        self.url()
                    )));
                }
                RunState::lock(&self.state.uploads).insert(self.key.clone(), id.clone());
                self.upload_id = Some(id.clone());
                id
            }
        };
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.to.part_size));
        let number = self.next_part;
        self.next_part += 1;
        let request = self
            .to
            .client
            .upload_part()
            .bucket(&self.to.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body));
        let url = self.url();
        self.in_flight.push_back(runtime().spawn(async move {
            let out = request
                .send()
                .await
                .map_err(|e| call_error(&format!("cannot upload part {number} of `{url}`"), &e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                .build())
        }));
        while self.in_flight.len() >= self.to.concurrency {
            self.join_oldest()?;
        }
        Ok(())
    }

    fn join_oldest(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.pop_front() {
            let part = runtime()
                .block_on(task)
                .map_err(|e| PluginError::internal(format!("an upload task failed: {e}")))??;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Ends the object: the last part and the completion, or one request for a small object.
    pub fn finish(&mut self) -> Result<u64> {
        let result = self.finish_inner();
        if result.is_err() {
            self.abandon();
        }
        self.done = true;
        result.map(|()| self.bytes.load(Ordering::Relaxed))
    }

    fn finish_inner(&mut self) -> Result<()> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buffer);
            runtime()
                .block_on(
                    self.to
                        .client
                        .put_object()
                        .bucket(&self.to.bucket)
                        .key(&self.key)
                        .content_type(self.to.content_type)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32)
                        .body(ByteStream::from(body))
                        .send(),
                )
                .map_err(|e| call_error(&format!("cannot upload `{}`", self.url()), &e))?;
            return Ok(());
        };
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.join_oldest()?;
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.part_number());
        runtime()
            .block_on(
                self.to
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.to.bucket)
                    .key(&self.key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send(),
            )
            .map_err(|e| call_error(&format!("cannot complete `{}`", self.url()), &e))?;
        RunState::lock(&self.state.uploads).remove(&self.key);
        Ok(())
    }

    /// Gives up the object: cancels the parts in flight and aborts the multipart upload.
    fn abandon(&mut self) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        if let Some(upload_id) = self.upload_id.take() {
            let aborted = runtime().block_on(
                self.to
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.to.bucket)
                    .key(&self.key)
                    .upload_id(&upload_id)
                    .send(),
            );
            match aborted {
                Ok(_) => {
                    RunState::lock(&self.state.uploads).remove(&self.key);
                }
                Err(e) => log::warn!(
                    "{}",
                    call_error(&format!("cannot abort the upload of `{}`", self.url()), &e)
                ),
            }
        }
    }
}

impl io::Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.buffer.len() >= self.to.part_size {
            self.send_part()
                .map_err(|e| io::Error::other(e.message().to_owned()))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            self.abandon();
        }
    }
}
