//! Records appended to a file as JSON lines (CDRs, the queue log). A record
//! that cannot be written stays queued and is retried; it is never dropped (a
//! full disk costs memory and a loud log, not billing data).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{error, info};

/// Lines waiting to be appended to a file.
pub struct JsonLinesFile {
    path: PathBuf,
    pending: VecDeque<String>,
    written: u64,
}

impl JsonLinesFile {
    pub fn new(path: &Path) -> JsonLinesFile {
        JsonLinesFile { path: path.to_path_buf(), pending: VecDeque::new(), written: 0 }
    }

    pub fn push<T: Serialize + Debug>(&mut self, record: &T) {
        match serde_json::to_string(record) {
            Ok(line) => self.pending.push_back(line),
            // Cannot happen for our types; said loudly if it ever does.
            Err(e) => error!(error = %e, "a record could not be encoded: {record:?}"),
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends every pending line; on error the lines not written stay queued.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        while let Some(line) = self.pending.front() {
            // One write per line, so a failure never leaves half a batch unaccounted.
            file.write_all(format!("{line}\n").as_bytes())?;
            self.pending.pop_front();
            self.written += 1;
        }
        file.flush()
    }
}

/// Where records go to their writer task.
pub struct RecordSink<T>(mpsc::UnboundedSender<T>);

impl<T> Clone for RecordSink<T> {
    fn clone(&self) -> Self {
        RecordSink(self.0.clone())
    }
}

impl<T: Debug> RecordSink<T> {
    /// Never blocks a call; the writer task owns the file.
    pub fn send(&self, record: T) {
        if let Err(e) = self.0.send(record) {
            error!("record writer has stopped: record logged here instead: {:?}", e.0);
        }
    }
}

/// How long a failed write waits before the next try.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Starts the writer task for `path` (`what` names the records in logs). It
/// ends, after a last flush, when every sink is dropped.
pub fn spawn_writer<T: Serialize + Debug + Send + 'static>(
    path: &Path,
    what: &'static str,
) -> (RecordSink<T>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    let mut file = JsonLinesFile::new(path);
    let handle = tokio::spawn(async move {
        let mut failing = false;
        loop {
            // None: every sink is gone; Some(None): time to retry; Some(Some(cdr)): a record.
            let received = if failing {
                match tokio::time::timeout(RETRY_EVERY, rx.recv()).await {
                    Ok(r) => r.map(Some),
                    Err(_) => Some(None),
                }
            } else {
                rx.recv().await.map(Some)
            };
            if let Some(Some(record)) = &received {
                file.push(record);
            }
            match (file.flush(), failing) {
                (Ok(()), true) => {
                    failing = false;
                    info!(path = %file.path.display(), written = file.written(), what, "record file writable again");
                }
                (Err(e), false) => {
                    failing = true;
                    error!(path = %file.path.display(), error = %e, pending = file.pending(), what, "cannot write records: kept in memory and retried");
                }
                _ => {}
            }
            if received.is_none() {
                if file.pending() > 0 {
                    error!(pending = file.pending(), what, "record writer stopping with records not written");
                }
                return;
            }
        }
    });
    (RecordSink(tx), handle)
}

