//! The traffic log's writer. Requests never wait for the disk: [`TrafficLog::record`] hands
//! the record to a background tokio task, the only writer of the file, which serialises whole
//! lines into a buffer and flushes it whenever its queue is momentarily empty (and at least
//! every 200 ms under a steady stream), so a line reaches the file well within a second of the
//! exchange's end. One writer means lines are never interleaved; the file is opened in append
//! mode so that a rotation tool may truncate it. SIGHUP (wired by the binary) calls
//! [`TrafficLog::reopen`] for log rotation. A write error is reported once and never stops the
//! proxy.

use super::{TrafficError, TrafficRecord};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

/// How many records may wait for the writer before new ones are dropped (and counted): a stalled
/// disk must not grow the proxy's memory without bound. At a few hundred bytes a record this is
/// some tens of MiB at worst.
pub const DEFAULT_MAX_QUEUED: usize = 65_536;

/// Under a steady stream the queue may never be empty; flush at least this often anyway.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// After a write error the file is reopened at most this often (and on every SIGHUP).
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Dropped-record warnings are at most this frequent, so an overload is not also a log flood.
const WARN_DROPPED_EVERY: Duration = Duration::from_secs(10);

const BUFFER_BYTES: usize = 64 * 1024;

/// Counters shared by the handles and the writer (the writer must not hold a sender, or the
/// channel would never close).
struct QueueCounters {
    queued: AtomicUsize,
    max_queued: usize,
    dropped: AtomicU64,
}

/// A handle on the traffic log. Cheap to clone; the writer task ends (after a last flush) when
/// every handle is dropped.
#[derive(Clone)]
pub struct TrafficLog {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<QueueCounters>,
}

impl TrafficLog {
    /// Opens (append, create) the log and spawns its writer task on the current tokio runtime.
    pub fn open(path: &Path) -> Result<TrafficLog, TrafficError> {
        Self::open_with_queue(path, DEFAULT_MAX_QUEUED)
    }

    /// Like [`TrafficLog::open`], with at most `max_queued` records waiting for the writer.
    pub fn open_with_queue(path: &Path, max_queued: usize) -> Result<TrafficLog, TrafficError> {
        let runtime = tokio::runtime::Handle::try_current()?;
        let file = open_append_std(path).map_err(|source| TrafficError::Open {
            path: path.to_owned(),
            source,
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(QueueCounters {
            queued: AtomicUsize::new(0),
            max_queued: max_queued.max(1),
            dropped: AtomicU64::new(0),
        });
        let writer = Writer::new(path.to_owned(), File::from_std(file), shared.clone());
        runtime.spawn(writer.run(rx));
        Ok(TrafficLog { tx, shared })
    }

    /// Queues one record. Never blocks and never fails visibly: when the writer is too far
    /// behind the record is dropped and counted (and the count reported by the writer).
    pub fn record(&self, rec: impl Into<Arc<TrafficRecord>>) {
        let shared = &self.shared;
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= shared.max_queued {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send(Command::Record(rec.into())).is_err() {
            // The writer is gone (runtime shutting down): nothing left to do.
            shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Asks the writer to close and reopen the file (SIGHUP, after a rotation tool renamed it).
    /// Records given before this call go to the old file, records after it to the new one.
    pub fn reopen(&self) {
        let _ = self.tx.send(Command::Reopen);
    }

    /// Resolves when every record given before the call is written and flushed to the OS (or,
    /// if the file cannot be written, has been given up on).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Records dropped so far because the writer was too far behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Opens for appending; a new file is created 0600 whatever the umask (issue 11 item 6: the log
/// holds full URLs and tokens in query strings), and an existing one that others may read gets
/// one warning, since its mode is the operator's to change.
fn open_append_std(path: &Path) -> io::Result<std::fs::File> {
    if let Some(warning) = crate::private_file::warn_if_exposed(path) {
        tracing::warn!("traffic log: {warning}");
    }
    crate::private_file::open_private_append(path)
}

/// The background writer: owns the file, and the state of its failures.
struct Writer {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    shared: Arc<QueueCounters>,
    /// Lines given to `out` since its last successful flush (lost if that flush fails).
    unflushed: u64,
    /// Lines lost since the last failure was reported.
    lost: u64,
    /// A failure was reported and the file has not been written successfully since.
    failing: bool,
    /// A write may have stopped mid-line: start the next one on a fresh line.
    torn: bool,
    last_flush: Instant,
    last_attempt: Instant,
    last_dropped_warning: Option<Instant>,
    /// The shared dropped counter as last read, and what of it was not reported yet.
    dropped_seen: u64,
    dropped_unreported: u64,
}

impl Writer {
    fn new(path: PathBuf, file: File, shared: Arc<QueueCounters>) -> Self {
        let now = Instant::now();
        Writer {
            path,
            out: Some(BufWriter::with_capacity(BUFFER_BYTES, file)),
            shared,
            unflushed: 0,
            lost: 0,
            failing: false,
            torn: false,
            last_flush: now,
            last_attempt: now,
            last_dropped_warning: None,
            dropped_seen: 0,
            dropped_unreported: 0,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = rx.recv().await {
            self.handle(command).await;
            // Take what is already queued, then flush: the queue being momentarily empty is the
            // moment to hand the lines to the OS.
            while let Ok(command) = rx.try_recv() {
                self.handle(command).await;
                if self.last_flush.elapsed() >= FLUSH_EVERY {
                    self.flush().await;
                }
            }
            self.flush().await;
        }
        self.flush().await;
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Record(rec) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.write_record(&rec).await;
            }
            Command::Reopen => self.reopen().await,
            Command::Flush(done) => {
                self.flush().await;
                let _ = done.send(());
            }
        }
    }

    async fn write_record(&mut self, rec: &TrafficRecord) {
        let mut line = match serde_json::to_vec(rec) {
            Ok(line) => line,
            Err(e) => {
                // Only a timestamp out of RFC 3339's range can do this: skip the record.
                tracing::error!(error = %e, url = %rec.url, "traffic log: record not serialisable, skipped");
                return;
            }
        };
        line.push(b'\n');
        if self.out.is_none() && self.last_attempt.elapsed() >= RETRY_EVERY {
            self.open_again().await;
        }
        let Some(out) = self.out.as_mut() else {
            self.lost += 1;
            return;
        };
        let mut result = Ok(());
        if self.torn {
            result = out.write_all(b"\n").await;
        }
        if result.is_ok() {
            result = out.write_all(&line).await;
        }
        match result {
            Ok(()) => {
                self.torn = false;
                self.unflushed += 1;
            }
            Err(e) => {
                self.unflushed += 1;
                self.fail("write", e);
            }
        }
    }

    async fn flush(&mut self) {
        self.last_flush = Instant::now();
        self.warn_dropped();
        let Some(out) = self.out.as_mut() else {
            return;
        };
        if self.unflushed == 0 && out.buffer().is_empty() {
            return;
        }
        match out.flush().await {
            Ok(()) => {
                self.unflushed = 0;
                if self.failing {
                    self.failing = false;
                    tracing::warn!(
                        path = %self.path.display(),
                        lost = self.lost,
                        "traffic log: writing again; {} records were lost meanwhile",
                        self.lost
                    );
                    self.lost = 0;
                }
            }
            Err(e) => self.fail("write", e),
        }
    }

    /// Reports a failure once, drops the file and what was buffered for it, and keeps going.
    fn fail(&mut self, what: &str, e: io::Error) {
        self.lost += self.unflushed;
        self.unflushed = 0;
        self.out = None;
        self.torn = true;
        self.last_attempt = Instant::now();
        if !self.failing {
            self.failing = true;
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "traffic log: {what} failed; records are dropped until the file can be written \
                 again (retried every {}s and on SIGHUP)",
                RETRY_EVERY.as_secs()
            );
        }
    }

    /// SIGHUP: flush what the old file is owed, then open the path anew.
    async fn reopen(&mut self) {
        self.flush().await;
        self.out = None;
        match self.open_path().await {
            Ok(file) => {
                // A fresh file (after a rotation) has no torn line to step over.
                if file.metadata().await.is_ok_and(|m| m.len() == 0) {
                    self.torn = false;
                }
                self.out = Some(BufWriter::with_capacity(BUFFER_BYTES, file));
                tracing::info!(path = %self.path.display(), "traffic log reopened");
            }
            Err(e) => {
                // An operator asked for this: always say why it did not work.
                self.failing = false;
                self.torn = false;
                self.fail("reopen", e);
            }
        }
    }

    /// The periodic retry after a failure: silent, the failure was already reported.
    async fn open_again(&mut self) {
        self.last_attempt = Instant::now();
        if let Ok(file) = self.open_path().await {
            self.out = Some(BufWriter::with_capacity(BUFFER_BYTES, file));
        }
    }

    async fn open_path(&self) -> io::Result<File> {
        let path = self.path.clone();
        match tokio::task::spawn_blocking(move || crate::private_file::open_private_append(&path))
            .await
        {
            Ok(opened) => opened.map(File::from_std),
            Err(join) => Err(io::Error::other(join)),
        }
    }

    fn warn_dropped(&mut self) {
        let total = self.shared.dropped.load(Ordering::Relaxed);
        self.dropped_unreported += total.saturating_sub(self.dropped_seen);
        self.dropped_seen = total;
        if self.dropped_unreported == 0 {
            return;
        }
        if self
            .last_dropped_warning
            .is_some_and(|t| t.elapsed() < WARN_DROPPED_EVERY)
        {
            return;
        }
        tracing::warn!(
            path = %self.path.display(),
            dropped = self.dropped_unreported,
            "traffic log: {} records dropped because the writer fell behind",
            self.dropped_unreported
        );
        self.dropped_unreported = 0;
        self.last_dropped_warning = Some(Instant::now());
    }
}

/// What the handles ask of the writer task.
enum Command {
    Record(Arc<TrafficRecord>),
    Reopen,
    Flush(oneshot::Sender<()>),
}
