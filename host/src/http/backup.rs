//! `GET /api/v1/backup`: a consistent snapshot of the store, streamed as it is read (see
//! `store::backup`). Off unless the server runs with `--allow-backup`: the stream holds the
//! whole history. It never holds the Secret hashing key, which `logistis store backup`
//! adds from the data dir when it runs beside the server (in the pod).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Extension;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::AppState;
use super::error::ApiError;
use crate::store::backup::BackupWriter;

/// Whether `GET /api/v1/backup` answers (`--allow-backup`); absent means no.
#[derive(Debug, Clone, Copy)]
pub struct BackupEndpoint {
    pub enabled: bool,
}

/// Chunks of the stream handed from the blocking reader to the response.
const CHUNK: usize = 256 * 1024;

pub async fn backup(
    State(state): State<AppState>,
    setting: Option<Extension<BackupEndpoint>>,
) -> Result<Response, ApiError> {
    if !setting.is_some_and(|Extension(s)| s.enabled) {
        return Err(ApiError::not_found(
            "backups are disabled: start the server with --allow-backup (LOGISTIS_ALLOW_BACKUP=true)",
        ));
    }
    let (sender, receiver) = mpsc::channel(4);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK),
        };
        let result = BackupWriter::new(sink).and_then(|mut writer| {
            let summary = store.backup_into(&mut writer)?;
            writer.finish()?;
            Ok(summary)
        });
        match result {
            Ok(summary) => tracing::info!(
                keyspaces = summary.keyspaces,
                entries = summary.entries,
                "backup streamed"
            ),
            Err(error) => {
                // The client sees a stream without its end record and refuses it.
                tracing::error!(error = %crate::telemetry::chain(&error), "backup failed");
                let _ = sender.blocking_send(Err(std::io::Error::other("backup failed")));
            }
        }
    });
    let mut response = Body::new(ChannelBody { receiver }).into_response();
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.logistis.backup"),
    );
    Ok(response)
}

/// A `Write` that hands full chunks to the response (blocking: it runs on a blocking thread).
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

struct ChannelBody {
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}
