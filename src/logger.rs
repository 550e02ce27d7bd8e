//! drainit's log: stderr, one line per record, never waited on.
//!
//! A stalled log pipe (Docker's blocking log mode with a log driver that
//! cannot deliver) must not stop PID 1 from forwarding signals and reaping.
//! So no thread that logs ever writes: records are formatted into a
//! bounded queue, and one writer thread, started with the first line,
//! writes them. When the queue is full, lines are dropped and counted; once
//! writing resumes, one line says how many were lost.
//!
//! Each write holds whole lines and at most PIPE_BUF bytes, so drainit's
//! lines never land inside a line of the child's output on a shared pipe.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Bytes of log lines held while the writer cannot write.
const QUEUE_BYTES: usize = 64 * 1024;
/// Longest line kept; longer ones are cut, so one line is one atomic write.
const MAX_LINE: usize = 1024;
/// Bytes per write: the pipe's atomic-write limit.
const PIPE_BUF: usize = 4096;

struct Queue {
    lines: VecDeque<String>,
    bytes: usize,
    /// Lines dropped since the writer last said so.
    unreported: u64,
    /// Whether the writer is between taking lines and finishing their write.
    writing: bool,
    /// Batches written so far, so a flush can tell a slow log from a stalled one.
    written: u64,
}

struct Logger {
    queue: Mutex<Queue>,
    /// Wakes the writer when lines arrive, and `flush` when they are out.
    changed: Condvar,
    dropped_total: AtomicU64,
    writer: Once,
}

static LOGGER: Logger = Logger {
    queue: Mutex::new(Queue {
        lines: VecDeque::new(),
        bytes: 0,
        unreported: 0,
        writing: false,
        written: 0,
    }),
    changed: Condvar::new(),
    dropped_total: AtomicU64::new(0),
    writer: Once::new(),
};

/// Installs the logger at the level `filter` names (see [`parse_filter`]).
pub fn init(filter: &str) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(parse_filter(filter));
    }
}

/// The most verbose level a filter allows: a level name, or env_logger's
/// `target=level` directives, of which those for drainit (or for every
/// target) count. Anything unreadable means the default, warnings.
pub fn parse_filter(filter: &str) -> LevelFilter {
    filter
        .split(',')
        .filter_map(|directive| match directive.split_once('=') {
            Some((target, level)) if target.trim().starts_with("drainit") => level.parse().ok(),
            Some(_) => None,
            None => directive.trim().parse().ok(),
        })
        .max()
        .unwrap_or(LevelFilter::Warn)
}

/// Log lines dropped because the log could not be written fast enough.
pub fn dropped_total() -> u64 {
    LOGGER.dropped_total.load(Ordering::Relaxed)
}

/// Waits until every queued line is written, giving up once the writer has
/// made no progress for `patience`: a stalled log delays drainit's exit by
/// that much, a slow one does not lose its last lines.
pub fn flush(patience: Duration) {
    let mut queue = LOGGER.lock();
    let mut seen = queue.written;
    let mut deadline = Instant::now() + patience;
    while !queue.lines.is_empty() || queue.writing {
        if queue.written != seen {
            seen = queue.written;
            deadline = Instant::now() + patience;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        queue = LOGGER
            .changed
            .wait_timeout(queue, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            LOGGER.push(format_line(record.level(), &record.args().to_string()));
        }
    }

    fn flush(&self) {}
}

fn format_line(level: Level, message: &str) -> String {
    let mut line = format!("drainit: {}: {message}", level.as_str().to_lowercase());
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE - 3;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line.push('\n');
    line
}

impl Logger {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a line, or counts it as dropped when the queue is full.
    fn push(&'static self, line: String) {
        {
            let mut queue = self.lock();
            if queue.bytes + line.len() > QUEUE_BYTES {
                queue.unreported += 1;
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
                return;
            }
            queue.bytes += line.len();
            queue.lines.push_back(line);
        }
        self.changed.notify_all();
        self.writer.call_once(|| self.start_writer());
    }

    fn start_writer(&'static self) {
        let builder = thread::Builder::new()
            .name("log".into())
            .stack_size(64 * 1024);
        let spawned = crate::signals::spawn(builder, move || self.write_forever());
        if spawned.is_err() {
            // Nothing can be written then; the queue fills and counts drops.
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write_forever(&self) {
        let mut stderr = io::stderr();
        loop {
            let batch = self.next_batch();
            // A closed stderr (EPIPE) loses the lines: nobody reads them.
            let _ = stderr.write_all(batch.as_bytes());
            let mut queue = self.lock();
            queue.writing = false;
            queue.written += 1;
            drop(queue);
            self.changed.notify_all();
        }
    }

    /// Whole lines, at most PIPE_BUF bytes (a single longer line alone);
    /// first a line about lines dropped since the last report.
    fn next_batch(&self) -> String {
        let mut queue = self.lock();
        while queue.lines.is_empty() && queue.unreported == 0 {
            queue = self
                .changed
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let mut batch = String::new();
        if queue.unreported > 0 {
            let n = std::mem::take(&mut queue.unreported);
            batch = format_line(Level::Warn, &format!("{n} log lines dropped"));
        }
        while let Some(line) = queue.lines.front() {
            if !batch.is_empty() && batch.len() + line.len() > PIPE_BUF {
                break;
            }
            queue.bytes -= line.len();
            if let Some(line) = queue.lines.pop_front() {
                batch.push_str(&line);
            }
        }
        queue.writing = true;
        batch
    }
}

/// A warning that may repeat as fast as an outsider can cause it (refused
/// requests, accept errors): at most one line a second, and the next line
/// says how many were skipped.
pub struct Throttle {
    last: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last: Mutex::new(None),
        }
    }

    /// Logs `message()` at warn level unless a line went out less than a
    /// second ago; `message` is only called when the line is written.
    pub fn warn(&self, message: impl FnOnce() -> String) {
        match self.pass(Instant::now()) {
            Some(0) => log::warn!("{}", message()),
            Some(skipped) => log::warn!("{} ({skipped} more since the last line)", message()),
            None => {}
        }
    }

    /// Whether a line may go out at `now`, and how many were skipped before it.
    fn pass(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, skipped)) = last
            .as_mut()
            .filter(|(at, _)| now.saturating_duration_since(*at) < Duration::from_secs(1))
        {
            *skipped += 1;
            return None;
        }
        let skipped = last.map_or(0, |(_, n)| n);
        *last = Some((now, 0));
        Some(skipped)
    }
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_levels_and_drainit_directives() {
        assert_eq!(parse_filter("debug"), LevelFilter::Debug);
        assert_eq!(parse_filter("INFO"), LevelFilter::Info);
        assert_eq!(parse_filter("other=trace,drainit=info"), LevelFilter::Info);
        assert_eq!(parse_filter("drainit::health=trace"), LevelFilter::Trace);
        assert_eq!(parse_filter("off"), LevelFilter::Off);
        assert_eq!(parse_filter("nonsense"), LevelFilter::Warn);
    }

    #[test]
    fn long_lines_are_cut_whole() {
        let line = format_line(Level::Warn, &"é".repeat(2000));
        assert!(
            line.len() <= MAX_LINE + 1 && line.ends_with("...\n"),
            "{line}"
        );
        assert!(line.starts_with("drainit: warn: "));
    }

    #[test]
    fn throttle_counts_what_it_skips() {
        let t = Throttle::new();
        let t0 = Instant::now();
        assert_eq!(t.pass(t0), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(t.pass(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.pass(t0 + Duration::from_secs(1)), Some(4));
        assert_eq!(t.pass(t0 + Duration::from_millis(1500)), None);
    }
}
