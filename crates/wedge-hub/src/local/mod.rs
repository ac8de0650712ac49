//! The embedded local hub: `$upstream` telemetry is appended to `telemetry.jsonl` in the data
//! directory and the device twin lives in `twin.json` beside it.

mod twin;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use wedge_core::{SendError, Upstream, UpstreamMessage, files};

pub use twin::TwinDocument;

use crate::Drain;
use crate::iothub::twin::properties_patch;
use crate::telemetry_record::TelemetryRecord;

/// Records moved from the outbox to the telemetry file at once.
const FORWARD_BATCH: usize = 512;
/// Pauses before retrying a failed write to the telemetry file.
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(10);

/// File of received telemetry, one JSON object per line.
pub const TELEMETRY_FILE: &str = "telemetry.jsonl";
/// File of the twin document.
pub const TWIN_FILE: &str = "twin.json";

/// Errors of the local hub's files.
#[derive(Debug, thiserror::Error)]
pub enum LocalHubError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The twin file is not a twin document. It is left as it is.
    #[error("{path}: not a wedge twin document ({reason}); fix or remove it")]
    CorruptTwin {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The local hub of one data directory.
pub struct LocalHub {
    dir: PathBuf,
    telemetry: Mutex<File>,
    twin: Mutex<TwinDocument>,
}

impl LocalHub {
    /// Opens (creating if needed) the hub files in `dir`.
    ///
    /// # Errors
    /// A file cannot be opened, or `twin.json` exists but is not a twin document.
    pub fn open(dir: &Path) -> Result<Self, LocalHubError> {
        files::private_dir(dir).map_err(io_error(dir))?;
        let telemetry_path = dir.join(TELEMETRY_FILE);
        let telemetry =
            files::open_private_append(&telemetry_path).map_err(io_error(&telemetry_path))?;
        let twin_path = dir.join(TWIN_FILE);
        let twin = match std::fs::read(&twin_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| e.to_string())
                .and_then(TwinDocument::from_value)
                .map_err(|reason| LocalHubError::CorruptTwin {
                    path: twin_path.clone(),
                    reason,
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TwinDocument::default(),
            Err(e) => return Err(io_error(&twin_path)(e)),
        };
        Ok(LocalHub {
            dir: dir.to_path_buf(),
            telemetry: Mutex::new(telemetry),
            twin: Mutex::new(twin),
        })
    }

    fn twin(&self) -> std::sync::MutexGuard<'_, TwinDocument> {
        self.twin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole twin document.
    pub fn twin_document(&self) -> Value {
        self.twin().value().clone()
    }

    /// `desired.wedge`, the desired deployment, and its `$version`.
    pub fn desired(&self) -> (u64, Value) {
        let twin = self.twin();
        (twin.desired_version(), twin.desired_wedge().clone())
    }

    /// Merges `patch` into `desired.wedge` and saves the twin. Returns the new desired
    /// deployment, its `$version`, and the previous deployment (to put back with
    /// [`LocalHub::restore_desired`] if it is refused).
    ///
    /// # Errors
    /// The twin cannot be saved; it is unchanged then.
    pub fn patch_desired(&self, patch: &Value) -> Result<(Value, u64, Value), LocalHubError> {
        let mut twin = self.twin();
        let mut updated = twin.clone();
        let previous = updated.patch_desired(patch);
        self.save(&updated)?;
        *twin = updated;
        Ok((
            twin.desired_wedge().clone(),
            twin.desired_version(),
            previous,
        ))
    }

    /// Puts back a previous desired deployment.
    ///
    /// # Errors
    /// The twin cannot be saved.
    pub fn restore_desired(&self, wedge: Value) -> Result<(), LocalHubError> {
        let mut twin = self.twin();
        let mut updated = twin.clone();
        updated.set_desired(wedge);
        self.save(&updated)?;
        *twin = updated;
        Ok(())
    }

    /// Makes the desired version continue after `applied`, the last version applied from this
    /// twin, if the file does not (it was replaced, restored from a backup, or edited by
    /// hand): desired versions only go up, so no report mixes up two documents. Returns the
    /// desired deployment and its version.
    ///
    /// # Errors
    /// The twin cannot be saved; it is unchanged then.
    pub fn continue_after(
        &self,
        applied: u64,
        applied_desired: &Value,
    ) -> Result<(u64, Value), LocalHubError> {
        let mut twin = self.twin();
        let version = twin.desired_version();
        let stale =
            version < applied || (version == applied && twin.desired_wedge() != applied_desired);
        if stale {
            let mut updated = twin.clone();
            updated.renumber_desired(applied + 1);
            self.save(&updated)?;
            *twin = updated;
        }
        Ok((twin.desired_version(), twin.desired_wedge().clone()))
    }

    /// Merges `patch` (a JSON object) into the reported section, as it is.
    ///
    /// # Errors
    /// The twin cannot be saved; it is unchanged then.
    pub fn report_raw(&self, patch: &Value) -> Result<(), LocalHubError> {
        let mut twin = self.twin();
        let mut updated = twin.clone();
        updated.report(patch);
        self.save(&updated)?;
        *twin = updated;
        Ok(())
    }

    /// Writes the twin crash-safely (a power cut leaves the old or the new one, whole).
    fn save(&self, twin: &TwinDocument) -> Result<(), LocalHubError> {
        let path = self.dir.join(TWIN_FILE);
        let text = serde_json::to_vec_pretty(twin.value()).expect("JSON values serialize");
        files::write_atomic(&path, &text).map_err(io_error(&path))
    }
}

/// Appends `lines` and syncs them. If that fails part-way (a full disk), the file is cut back
/// to where it was, so the retry does not append after half a line: every line stays readable.
fn append_whole(file: &mut File, lines: &[u8]) -> std::io::Result<()> {
    let end = file.metadata()?.len();
    let written = file.write_all(lines).and_then(|()| file.sync_data());
    if written.is_err()
        && let Err(e) = file.set_len(end)
    {
        tracing::error!(error = %e, "cannot cut {TELEMETRY_FILE} back after a failed write");
    }
    written
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalHubError + '_ {
    move |source| LocalHubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LocalHub {
    /// Moves telemetry from the outbox to `telemetry.jsonl` in order, until the task is
    /// aborted: each batch of lines is written with one `write` (readers never see a torn
    /// line), synced, and only then acknowledged (deleted from the outbox). A crash between the
    /// sync and the acknowledgement repeats those lines on the next start, with the same
    /// `message-id`.
    pub fn forward(self: Arc<Self>, drain: Drain) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut read_up_to = 0;
            let mut retry = RETRY_START;
            loop {
                drain.outbox.wait_after(read_up_to).await;
                let before = read_up_to;
                let written = match drain.outbox.read_from(&mut read_up_to, FORWARD_BATCH) {
                    Ok(records) if records.is_empty() => continue,
                    Ok(records) => self.clone().append(&drain, records).await,
                    Err(e) => Err(e.to_string()),
                };
                match written {
                    Ok(ids) => {
                        drain.outbox.acknowledge(&ids);
                        retry = RETRY_START;
                    }
                    Err(error) => {
                        // Not acknowledged: the same records are read again after a pause.
                        tracing::error!(%error, retry_in = ?retry, "cannot move telemetry to {TELEMETRY_FILE}");
                        read_up_to = before;
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(RETRY_CAP);
                    }
                }
            }
        })
    }

    /// Appends `records` as lines and syncs the file; returns the ids it covered.
    async fn append(
        self: Arc<Self>,
        drain: &Drain,
        records: Vec<(u64, Vec<u8>)>,
    ) -> Result<Vec<u64>, String> {
        let mut lines = Vec::new();
        let mut ids = Vec::with_capacity(records.len());
        let mut damaged = Vec::new();
        for (id, record) in records {
            ids.push(id);
            match UpstreamMessage::from_record(&record) {
                Ok(message) => {
                    let mut line = TelemetryRecord::new(&message);
                    line.message_id = Some(drain.message_id(id));
                    serde_json::to_writer(&mut lines, &line).expect("records serialize");
                    lines.push(b'\n');
                }
                Err(e) => {
                    tracing::error!(id, "dropping a damaged outbox record: {e}");
                    damaged.push(id);
                }
            }
        }
        // Counted as dropped, not as delivered.
        drain.outbox.discard(&damaged);
        ids.retain(|id| !damaged.contains(id));
        tokio::task::spawn_blocking(move || {
            let mut file = self.telemetry.lock().unwrap_or_else(|e| e.into_inner());
            append_whole(&mut file, &lines)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(ids)
    }
}

#[async_trait::async_trait]
impl Upstream for LocalHub {
    fn admit(&self, _message: &UpstreamMessage) -> Result<(), SendError> {
        Ok(())
    }

    async fn report(&self, module: &str, patch: Value) -> Result<(), String> {
        self.report_raw(&properties_patch(module, patch))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn twin_survives_reopen_and_corruption_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LocalHub::open(dir.path()).unwrap();
        let config = |patch| json!({"modules": {"filter": {"config": patch}}});
        hub.patch_desired(&config(json!({"threshold": 25})))
            .unwrap();
        let (desired, version, previous) = hub
            .patch_desired(&config(json!({"field": "pressure"})))
            .unwrap();
        assert_eq!(
            desired,
            config(json!({"threshold": 25, "field": "pressure"}))
        );
        assert_eq!(version, 2);
        hub.restore_desired(previous).unwrap();
        drop(hub);

        let hub = LocalHub::open(dir.path()).unwrap();
        assert_eq!(hub.desired(), (3, config(json!({"threshold": 25}))));
        drop(hub);

        std::fs::write(dir.path().join(TWIN_FILE), "{not json").unwrap();
        let err = LocalHub::open(dir.path())
            .err()
            .expect("corrupt twin refused")
            .to_string();
        assert!(
            err.contains("twin.json") && err.contains("not a wedge twin document"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(TWIN_FILE)).unwrap(),
            "{not json"
        );
    }
}
