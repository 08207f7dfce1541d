//! C-STORE SCP: each Data PDV of the incoming data set goes through a
//! bounded channel into [`Archive::store_dataset`], running as its own
//! task, so an instance is never buffered whole and a slow store slows the
//! socket. The response is sent only once the store returned (durable). A
//! data set that ends without its last PDV reads as an I/O error, so
//! nothing of it is stored.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;
use tracing::{debug, error, warn};

use super::command::CommandSet;
use super::status;
use std::collections::BTreeSet;

use crate::{Archive, DicomError, DicomResult, StoredInstance};

/// PDUs queued between the socket and the store (each ≤ our max PDU).
const DEPTH: usize = 8;

pub(crate) struct StoreJob {
    pub pc: u8,
    cmd: CommandSet,
    tx: Option<mpsc::Sender<Bytes>>,
    complete: Arc<AtomicBool>,
    task: JoinHandle<DicomResult<StoredInstance>>,
    received: u64,
}

impl StoreJob {
    /// The SOP Instance UID the command names.
    pub(crate) fn sop_uid(&self) -> String {
        self.cmd.sop_instance.clone()
    }

    /// Data set bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    pub(crate) fn start(
        archive: Archive,
        tenant: &str,
        pc: u8,
        cmd: CommandSet,
        ts: &str,
        calling_ae: &str,
    ) -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        let complete = Arc::new(AtomicBool::new(false));
        let reader = StreamReader::new(Incoming {
            rx,
            complete: complete.clone(),
            ended: false,
        });
        let (tenant, class, sop, ts, ae) = (
            tenant.to_string(),
            cmd.sop_class.clone(),
            cmd.sop_instance.clone(),
            ts.to_string(),
            calling_ae.to_string(),
        );
        let task = tokio::spawn(async move {
            archive
                .store_dataset(&tenant, &class, &sop, &ts, &ae, reader)
                .await
        });
        Self {
            pc,
            cmd,
            tx: Some(tx),
            complete,
            task,
            received: 0,
        }
    }

    /// Hands one Data PDV to the store (waits while the channel is full).
    pub(crate) async fn push(&mut self, data: Vec<u8>, last: bool) {
        self.received += data.len() as u64;
        if last {
            self.complete.store(true, Ordering::Release);
        }
        if let Some(tx) = &self.tx {
            // An error means the store already gave up: drain the rest.
            if tx.send(Bytes::from(data)).await.is_err() {
                self.tx = None;
            }
        }
        if last {
            self.tx = None;
        }
    }

    /// Waits for the store and builds the C-STORE-RSP; the study the
    /// instance left, if it did (refreshed when the association ends).
    pub(crate) async fn finish(mut self, left: &mut BTreeSet<String>) -> CommandSet {
        self.tx = None;
        let sop = self.cmd.sop_instance.clone();
        match (&mut self.task).await {
            Ok(Ok(stored)) => {
                debug!(sop = %sop, bytes = self.received, outcome = ?stored.outcome, "C-STORE stored");
                left.extend(stored.left);
                self.cmd.response(status::SUCCESS)
            }
            Ok(Err(e)) => {
                warn!(sop = %sop, "C-STORE refused: {e}");
                self.cmd
                    .response(e.status())
                    .with_comment(client_comment(&e))
            }
            Err(e) => {
                error!(sop = %sop, "C-STORE task failed: {e}");
                self.cmd
                    .response(status::OUT_OF_RESOURCES)
                    .with_comment("the store failed")
            }
        }
    }
}

/// What a peer is told about a failed store: our own messages, never
/// storage internals.
pub(crate) fn client_comment(e: &DicomError) -> String {
    match e {
        DicomError::Engine(_) => "the archive could not store the instance".into(),
        e => e.to_string(),
    }
}

/// The data set as a byte stream for the store; a channel closed before
/// the last PDV is an error, not an end of file.
struct Incoming {
    rx: mpsc::Receiver<Bytes>,
    complete: Arc<AtomicBool>,
    ended: bool,
}

impl Stream for Incoming {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => {
                self.ended = true;
                if self.complete.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the association ended in the middle of the data set",
                    ))))
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn an_unfinished_data_set_is_an_error() {
        let (tx, rx) = mpsc::channel(2);
        let complete = Arc::new(AtomicBool::new(false));
        let mut r = StreamReader::new(Incoming {
            rx,
            complete: complete.clone(),
            ended: false,
        });
        tx.send(Bytes::from_static(b"abc")).await.expect("queued");
        drop(tx);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).await.expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(out, b"abc");

        let (tx, rx) = mpsc::channel(2);
        let complete = Arc::new(AtomicBool::new(false));
        let mut r = StreamReader::new(Incoming {
            rx,
            complete: complete.clone(),
            ended: false,
        });
        tx.send(Bytes::from_static(b"abc")).await.expect("queued");
        complete.store(true, Ordering::Release);
        drop(tx);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("complete");
        assert_eq!(out, b"abc");
    }
}
