//! Decision logs: one JSON line per decision (HTTP API, batch, ext_authz),
//! written off the request path.
//!
//! A decision hands its entry to a bounded queue with `try_send` and moves
//! on; a writer thread serializes, masks and writes. When the queue is full
//! the entry is dropped and counted, so logging never slows a decision
//! beyond the cost of building the entry.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::config::{DecisionLogConfig, Sink};

/// One decision, as logged.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub decision_id: String,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// `http`, `batch` or `ext_authz`.
    pub origin: &'static str,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub context: Value,
    pub decision: &'static str,
    /// `reasons` and `errors`.
    #[serde(flatten)]
    pub why: Why,
    pub latency_us: u64,
    pub cache_hit: bool,
}

/// A decision's determining policies and evaluation errors. An entry holds
/// the decision's own explanation and the writer reads it, so putting the
/// diagnostics into words happens on the writer's thread, not in the
/// request.
pub trait Explanation: Send + Sync {
    fn reasons(&self) -> &[String];
    fn errors(&self) -> &[String];
}

/// An entry's explanation, written as its `reasons` and `errors` fields.
pub struct Why(pub Arc<dyn Explanation>);

impl std::fmt::Debug for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Why")
            .field("reasons", &self.0.reasons())
            .field("errors", &self.0.errors())
            .finish()
    }
}

impl Serialize for Why {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("Why", 2)?;
        fields.serialize_field("reasons", self.0.reasons())?;
        fields.serialize_field("errors", self.0.errors())?;
        fields.end()
    }
}

/// Counters of the log, for `/metrics`.
#[derive(Debug, Default)]
pub struct LogStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

/// What the writer is handed: an entry, or a request to write out what
/// came before it and say so (at shutdown).
pub enum Message {
    Entry(Box<Entry>),
    Flush(SyncSender<()>),
}

pub struct DecisionLog {
    sender: Option<SyncSender<Message>>,
    sample_allows: f64,
    allows_seen: AtomicU64,
    pub stats: Arc<LogStats>,
}

impl DecisionLog {
    /// A log that writes nothing.
    pub fn disabled() -> DecisionLog {
        DecisionLog {
            sender: None,
            sample_allows: 0.0,
            allows_seen: AtomicU64::new(0),
            stats: Arc::new(LogStats::default()),
        }
    }

    /// The log and the receiving end its writer drains.
    pub fn with_queue(config: &DecisionLogConfig) -> (DecisionLog, Receiver<Message>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(config.queue);
        let log = DecisionLog {
            sender: Some(sender),
            sample_allows: config.sample_allows,
            allows_seen: AtomicU64::new(0),
            stats: Arc::new(LogStats::default()),
        };
        (log, receiver)
    }

    /// Starts the log and its writer thread, as configured.
    pub fn start(config: &DecisionLogConfig) -> std::io::Result<DecisionLog> {
        if !config.enabled {
            return Ok(DecisionLog::disabled());
        }
        let mut writer = Writer::open(config)?;
        let (log, receiver) = DecisionLog::with_queue(config);
        let stats = log.stats.clone();
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer.drain(&receiver, &stats))?;
        Ok(log)
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Whether an allow is to be written: every `1 / sample_allows`-th one.
    pub fn keep_allow(&self) -> bool {
        if self.sample_allows >= 1.0 {
            return true;
        }
        let n = self.allows_seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.sample_allows).floor() > (n * self.sample_allows).floor()
    }

    /// Queues `entry`, or drops and counts it when the queue is full.
    pub fn record(&self, entry: Entry) {
        let Some(sender) = &self.sender else {
            return;
        };
        match sender.try_send(Message::Entry(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits, up to `timeout`, until every entry queued so far is written
    /// and flushed: what shutdown calls, so the last batch is not lost with
    /// the process. Returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(sender) = &self.sender else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let (done, written) = std::sync::mpsc::sync_channel(1);
        let mut message = Message::Flush(done);
        loop {
            match sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// How long the writer lets a batch gather. A queue of `queue` entries
/// holds `queue / BATCH_WINDOW` decisions a second without a drop (the
/// default 10,000 entries: a million a second).
const BATCH_WINDOW: Duration = Duration::from_millis(10);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum Output {
    Stdout(std::io::Stdout),
    File {
        path: PathBuf,
        file: BufWriter<File>,
        size: u64,
        max_bytes: u64,
        max_files: u32,
    },
}

pub struct Writer {
    output: Output,
    mask: Vec<Vec<String>>,
}

impl Writer {
    pub fn open(config: &DecisionLogConfig) -> std::io::Result<Writer> {
        let output = match config.sink {
            Sink::Stdout => Output::Stdout(std::io::stdout()),
            Sink::File => {
                if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let file = appending(&config.path)?;
                let size = file.get_ref().metadata()?.len();
                Output::File {
                    path: config.path.clone(),
                    file,
                    size,
                    max_bytes: config.max_bytes,
                    max_files: config.max_files,
                }
            }
        };
        Ok(Writer {
            output,
            mask: config
                .mask
                .iter()
                .map(|m| m.split('.').map(str::to_owned).collect())
                .collect(),
        })
    }

    /// Writes entries until every sender is gone, a batch at a time.
    ///
    /// After the first entry of a batch the thread sleeps for
    /// [`BATCH_WINDOW`] before it takes the rest. While it sleeps no
    /// receiver is waiting, so `try_send` wakes nobody: a busy PDP pays one
    /// wake-up of this thread per batch, not one per decision, and the
    /// writes land as one `write` per batch. Each wake-up of a third thread
    /// on a 2-core machine was a context switch in the request path's
    /// latency tail.
    pub fn drain(&mut self, receiver: &Receiver<Message>, stats: &LogStats) {
        while let Ok(first) = receiver.recv() {
            if matches!(first, Message::Entry(_)) {
                std::thread::sleep(BATCH_WINDOW);
            }
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Entry(entry) => {
                        let counter = match self.write(*entry) {
                            Ok(()) => &stats.written,
                            Err(_) => &stats.dropped,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Message::Flush(done) => {
                        let _ = self.flush();
                        let _ = done.send(());
                    }
                }
                next = receiver.try_recv().ok();
            }
            let _ = self.flush();
        }
        let _ = self.flush();
    }

    pub fn write(&mut self, mut entry: Entry) -> std::io::Result<()> {
        for path in &self.mask {
            mask(&mut entry.context, path);
        }
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        match &mut self.output {
            Output::Stdout(out) => out.lock().write_all(&line),
            Output::File {
                path,
                file,
                size,
                max_bytes,
                max_files,
            } => {
                if *size > 0 && *size + line.len() as u64 > *max_bytes {
                    file.flush()?;
                    rotate(path, *max_files)?;
                    *file = appending(path)?;
                    *size = 0;
                }
                file.write_all(&line)?;
                *size += line.len() as u64;
                Ok(())
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.output {
            Output::Stdout(out) => out.lock().flush(),
            Output::File { file, .. } => file.flush(),
        }
    }
}

/// The log file, opened to append, behind a buffer that holds a batch.
fn appending(path: &Path) -> std::io::Result<BufWriter<File>> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, file))
}

/// `log` → `log.1` → `log.2` …, the oldest past `max_files` removed.
fn rotate(path: &Path, max_files: u32) -> std::io::Result<()> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    if max_files == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(numbered(max_files));
    for n in (1..max_files).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

fn mask(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(inner) = value.as_object_mut().and_then(|map| map.get_mut(first)) else {
        return;
    };
    if rest.is_empty() {
        *inner = Value::String("***".into());
    } else {
        mask(inner, rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Listed(Vec<String>, Vec<String>);

    impl Explanation for Listed {
        fn reasons(&self) -> &[String] {
            &self.0
        }
        fn errors(&self) -> &[String] {
            &self.1
        }
    }

    fn entry(id: &str, context: Value) -> Entry {
        Entry {
            decision_id: id.into(),
            time_ms: 1,
            origin: "http",
            principal: Some("User::\"a\"".into()),
            action: None,
            resource: None,
            context,
            decision: "Allow",
            why: Why(Arc::new(Listed(vec!["p".into()], vec![]))),
            latency_us: 3,
            cache_hit: false,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let config = DecisionLogConfig {
            enabled: true,
            queue: 2,
            ..DecisionLogConfig::default()
        };
        let (log, receiver) = DecisionLog::with_queue(&config);
        for i in 0..5 {
            log.record(entry(&i.to_string(), Value::Null));
        }
        assert_eq!(log.stats.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(receiver.try_iter().count(), 2);
        // Nothing drains this queue, so a flush cannot complete.
        assert!(!log.flush(Duration::from_millis(10)));
    }

    #[test]
    fn files_rotate_by_size_and_masked_fields_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let config = DecisionLogConfig {
            enabled: true,
            sink: Sink::File,
            path: dir.path().join("decisions.log"),
            max_bytes: 1024,
            max_files: 2,
            mask: vec!["card".into(), "user.ssn".into()],
            ..DecisionLogConfig::default()
        };
        let mut writer = Writer::open(&config).unwrap();
        let context = serde_json::json!({"card": "4111", "user": {"ssn": "123", "name": "ada"}});
        for i in 0..40 {
            writer
                .write(entry(&format!("{i:04}"), context.clone()))
                .unwrap();
        }
        writer.flush().unwrap();
        let current = std::fs::read_to_string(&config.path).unwrap();
        assert!(current.len() <= 1024);
        assert!(dir.path().join("decisions.log.1").exists());
        assert!(dir.path().join("decisions.log.2").exists());
        assert!(!dir.path().join("decisions.log.3").exists());
        let line: Value = serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(line["decision_id"], "0039");
        assert_eq!(line["reasons"], serde_json::json!(["p"]));
        assert_eq!(line["errors"], serde_json::json!([]));
        assert_eq!(line["context"]["card"], "***");
        assert_eq!(line["context"]["user"]["ssn"], "***");
        assert_eq!(line["context"]["user"]["name"], "ada");
    }

    #[test]
    fn a_flush_writes_out_every_entry_queued_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = DecisionLogConfig {
            enabled: true,
            sink: Sink::File,
            path: dir.path().join("decisions.log"),
            ..DecisionLogConfig::default()
        };
        let log = DecisionLog::start(&config).unwrap();
        for i in 0..100 {
            log.record(entry(&i.to_string(), Value::Null));
        }
        assert!(log.flush(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&config.path).unwrap();
        assert_eq!(text.lines().count(), 100);
        assert_eq!(log.stats.written.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn allows_are_sampled_evenly() {
        let config = DecisionLogConfig {
            enabled: true,
            sample_allows: 0.25,
            ..DecisionLogConfig::default()
        };
        let (log, _receiver) = DecisionLog::with_queue(&config);
        let kept = (0..100).filter(|_| log.keep_allow()).count();
        assert_eq!(kept, 25);
    }
}
