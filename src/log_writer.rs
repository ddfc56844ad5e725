//! The console log's writer: buffers the per-exchange info lines in memory and hands them to
//! stderr from a small thread, at most every 100 ms (issue 15: the console line cost a write
//! system call per request on the proxy's hot path). Warnings and errors, and anything logged
//! while the buffer is very full, are written at once (after what is buffered, so the order
//! holds); the [`FlushGuard`] writes the rest when the process shuts down.
//!
//! It plugs into `tracing_subscriber::fmt` as a `MakeWriter`: the formatter renders each event
//! into its own buffer and calls `write_all` once per event, so a line is never split.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait in memory: still prompt for a person watching.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Past this, the flusher is woken at once instead of at its next tick.
const FLUSH_SOON_BYTES: usize = 64 * 1024;
/// Past this (the flusher is stuck on a blocked stderr), the logging thread writes itself, as
/// an unbuffered writer would: memory stays bounded and the back-pressure is the same as before.
const WRITE_THROUGH_BYTES: usize = 1024 * 1024;

struct Pending {
    buf: Vec<u8>,
    /// The flusher sleeps on an empty buffer: the next writer must wake it. Tracked so that a
    /// write wakes it (a futex system call) at most once per flush, not once per line.
    flusher_idle: bool,
    closed: bool,
}

struct Shared {
    /// Taken first by whoever writes to the sink, so batches reach it in order.
    sink: Mutex<Box<dyn Write + Send>>,
    /// Taken alone by the logging threads: an append to memory.
    pending: Mutex<Pending>,
    wake: Condvar,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves bytes, not broken invariants: keep logging.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes whatever is pending to the sink. Errors are ignored: a closed stderr must not
    /// stop the proxy (the unbuffered writer's errors were ignored by tracing too).
    fn drain(&self, spare: &mut Vec<u8>) {
        let mut sink = lock(&self.sink);
        {
            let mut pending = lock(&self.pending);
            std::mem::swap(&mut pending.buf, spare);
        }
        if !spare.is_empty() {
            let _ = sink.write_all(spare);
            let _ = sink.flush();
            spare.clear();
        }
    }
}

/// A `MakeWriter` for `tracing_subscriber::fmt` that buffers info and below.
#[derive(Clone)]
pub struct BufferedConsole {
    shared: Arc<Shared>,
}

/// Writes what is still buffered and stops the flusher thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BufferedConsole {
    /// A buffered writer to stderr, and the guard that flushes it at exit.
    pub fn stderr() -> (BufferedConsole, FlushGuard) {
        BufferedConsole::new(Box::new(io::stderr()), FLUSH_EVERY)
    }

    /// A buffered writer to `sink`, flushed at most `every` after a line is written.
    pub fn new(sink: Box<dyn Write + Send>, every: Duration) -> (BufferedConsole, FlushGuard) {
        let shared = Arc::new(Shared {
            sink: Mutex::new(sink),
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(FLUSH_SOON_BYTES),
                flusher_idle: false,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let flusher = Arc::clone(&shared);
        // Without the thread the writer still works: each line is then written by the next
        // urgent line or the guard; spawning fails only when the process is out of resources.
        let thread = std::thread::Builder::new()
            .name("console-log".into())
            .spawn(move || run_flusher(&flusher, every))
            .ok();
        (
            BufferedConsole {
                shared: Arc::clone(&shared),
            },
            FlushGuard { shared, thread },
        )
    }
}

fn run_flusher(shared: &Shared, every: Duration) {
    let mut spare = Vec::with_capacity(FLUSH_SOON_BYTES);
    loop {
        let mut pending = lock(&shared.pending);
        while pending.buf.is_empty() && !pending.closed {
            pending.flusher_idle = true;
            pending = shared
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pending.flusher_idle = false;
        if pending.closed {
            return; // the guard writes the rest
        }
        // Something arrived: let more lines join it, unless a burst fills the buffer first.
        let deadline = Instant::now() + every;
        while !pending.closed && pending.buf.len() < FLUSH_SOON_BYTES {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            pending = shared
                .wake
                .wait_timeout(pending, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let closed = pending.closed;
        drop(pending);
        shared.drain(&mut spare);
        if closed {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        {
            let mut pending = lock(&self.shared.pending);
            pending.closed = true;
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.drain(&mut Vec::new());
    }
}

/// The writer for one event.
pub struct EventWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl<'a> MakeWriter<'a> for BufferedConsole {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EventWriter {
            shared: &self.shared,
            // tracing orders levels by verbosity: WARN and ERROR are the ones at or below WARN.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl Write for EventWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let (wake, through) = {
            let mut pending = lock(&self.shared.pending);
            pending.buf.extend_from_slice(bytes);
            let len = pending.buf.len();
            let through = self.urgent || pending.closed || len >= WRITE_THROUGH_BYTES;
            let wake = !through
                && (std::mem::take(&mut pending.flusher_idle)
                    || (len >= FLUSH_SOON_BYTES && len - bytes.len() < FLUSH_SOON_BYTES));
            (wake, through)
        };
        if through {
            self.shared.drain(&mut Vec::new());
        } else if wake {
            self.shared.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read: each `write_all` batch as it reached the sink.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
        }
        fn batches(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    fn write(console: &BufferedConsole, urgent: bool, line: &str) {
        let mut w = EventWriter {
            shared: &console.shared,
            urgent,
        };
        w.write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn info_lines_are_batched_and_arrive_within_the_interval() {
        let sink = Sink::default();
        let (console, _guard) =
            BufferedConsole::new(Box::new(sink.clone()), Duration::from_millis(50));
        for i in 0..100 {
            write(&console, false, &format!("line {i}\n"));
        }
        assert_eq!(sink.batches(), 0, "nothing written per line");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sink.text().contains("line 99\n") {
            assert!(Instant::now() < deadline, "not flushed: {:?}", sink.text());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sink.batches() <= 2, "{} batches", sink.batches());
        assert!(sink.text().starts_with("line 0\nline 1\n"));
    }

    #[test]
    fn a_warning_is_written_at_once_after_what_is_buffered() {
        let sink = Sink::default();
        let (console, _guard) =
            BufferedConsole::new(Box::new(sink.clone()), Duration::from_secs(60));
        write(&console, false, "info\n");
        write(&console, true, "warn\n");
        assert_eq!(sink.text(), "info\nwarn\n");
    }

    #[test]
    fn the_guard_writes_the_rest() {
        let sink = Sink::default();
        let (console, guard) =
            BufferedConsole::new(Box::new(sink.clone()), Duration::from_secs(60));
        write(&console, false, "a\n");
        write(&console, false, "b\n");
        drop(guard);
        assert_eq!(sink.text(), "a\nb\n");
        // After shutdown, lines still arrive (written through).
        write(&console, false, "c\n");
        assert_eq!(sink.text(), "a\nb\nc\n");
    }

    #[test]
    fn warn_and_error_are_the_urgent_levels() {
        // (level, urgent): tracing's ordering puts ERROR lowest (least verbose).
        let table = [
            (Level::ERROR, true),
            (Level::WARN, true),
            (Level::INFO, false),
            (Level::DEBUG, false),
            (Level::TRACE, false),
        ];
        for (level, urgent) in table {
            assert_eq!(level <= Level::WARN, urgent, "{level}");
        }
    }
}
