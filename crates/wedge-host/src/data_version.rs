//! Which wedge wrote the data dir: `DATA_DIR/data-version.json`, `{"layout": N, "written-by":
//! "<version>"}`. The layout is the shape of the whole data dir (which files, in which
//! formats); each file that has a format of its own also checks it itself (the store's
//! `user_version`, a compiled module's header). Read before anything touches the data dir: a
//! wedge older than the layout refuses it, naming both versions, and changes nothing, so the
//! newer wedge can be put back. Written only after a start succeeded: a start that fails
//! after an upgrade leaves the data dir as the older wedge knew it.
//!
//! Moving a layout forward: each step from layout `n` to `n + 1` writes new files beside the
//! old ones and never changes an old one; the record, replaced atomically, is the commit, and
//! the old files are removed only after it. A step that fails half-way leaves the old files
//! and the old record: the data dir is as it was, and the next start tries again. Layout 1 is
//! the first: a data dir without a record (wedge 0.1.0 before records) has its files in the
//! layout-1 shape, so its step only writes the record.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The data dir layout this wedge reads and writes.
pub(crate) const LAYOUT: u32 = 1;

/// The record's file name inside the data dir.
pub(crate) const FILE_NAME: &str = "data-version.json";

/// What a data dir's record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    layout: u32,
    #[serde(rename = "written-by")]
    written_by: String,
}

/// Why a data dir cannot be used by this wedge. Nothing in it was changed.
#[derive(Debug, thiserror::Error)]
pub enum DataVersionError {
    /// A newer wedge wrote it.
    #[error(
        "{path}: the data dir was written by wedge {written_by} (data layout {layout}); this is wedge {ours}, which reads data layout {LAYOUT} or older. Run wedge {written_by} or newer on it, or move the data dir away to start afresh (nothing in it was changed)"
    )]
    Newer {
        /// The record.
        path: PathBuf,
        /// The wedge that wrote it.
        written_by: String,
        /// Its layout.
        layout: u32,
        /// This wedge's version.
        ours: &'static str,
    },
    /// The record cannot be read or is not a record.
    #[error(
        "{path}: {reason}: cannot tell which wedge wrote the data dir, so it is not used (nothing in it was changed); restore the file, or move the data dir away to start afresh"
    )]
    Damaged {
        /// The record.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A data dir checked for this wedge: what [`DataVersion::commit`] makes of it after a
/// successful start.
#[derive(Debug)]
pub(crate) struct DataVersion {
    path: PathBuf,
    /// The record found; `None`: none (a new data dir, or one from before records).
    found: Option<Record>,
}

impl DataVersion {
    /// Reads `data_dir`'s record, writing nothing.
    ///
    /// # Errors
    /// A newer wedge wrote the data dir, or the record is damaged.
    pub(crate) fn check(data_dir: &Path) -> Result<DataVersion, DataVersionError> {
        let path = data_dir.join(FILE_NAME);
        let damaged = |reason: String| DataVersionError::Damaged {
            path: path.clone(),
            reason,
        };
        let found = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<Record>(&bytes)
                    .map_err(|e| damaged(format!("not a data version record ({e})")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(damaged(format!("cannot read ({e})"))),
        };
        if let Some(record) = &found
            && record.layout > LAYOUT
        {
            return Err(DataVersionError::Newer {
                path,
                written_by: record.written_by.clone(),
                layout: record.layout,
                ours: env!("CARGO_PKG_VERSION"),
            });
        }
        Ok(DataVersion { path, found })
    }

    /// What the record says, for `wedge check`.
    pub(crate) fn describe(&self) -> String {
        match &self.found {
            Some(r) if r.layout == LAYOUT => {
                format!(
                    "data layout {}, written by wedge {}",
                    r.layout, r.written_by
                )
            }
            Some(r) => format!(
                "data layout {}, written by wedge {}: `wedge run` moves it to layout {LAYOUT}",
                r.layout, r.written_by
            ),
            None => format!(
                "no version record yet: `wedge run` writes one (data layout {LAYOUT}) after its first good start"
            ),
        }
    }

    /// After a successful start: moves the data dir forward to [`LAYOUT`] (see the module's
    /// doc) and records this wedge as its writer, if the record says otherwise.
    ///
    /// # Errors
    /// The record cannot be written; the data dir stays as it was.
    pub(crate) fn commit(&self) -> std::io::Result<()> {
        let ours = Record {
            layout: LAYOUT,
            written_by: env!("CARGO_PKG_VERSION").to_string(),
        };
        if self.found.as_ref() == Some(&ours) {
            return Ok(());
        }
        // From layout 0 (no record) to 1 there is nothing to move: the record is all.
        let text = serde_json::to_vec(&ours).expect("a record serializes");
        wedge_core::files::write_atomic(&self.path, &text)?;
        match &self.found {
            None => tracing::info!(layout = LAYOUT, "data dir: version recorded"),
            Some(old) => tracing::info!(
                from = %old.written_by,
                from_layout = old.layout,
                layout = LAYOUT,
                "data dir: now written by this wedge"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_this_layout_is_accepted_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let version = DataVersion::check(dir.path()).unwrap();
        version.commit().unwrap();
        let written = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            written,
            format!(
                r#"{{"layout":{LAYOUT},"written-by":"{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        );
        DataVersion::check(dir.path()).unwrap();

        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"layout": 2, "written-by": "0.9.0"}"#,
        )
        .unwrap();
        let error = DataVersion::check(dir.path()).unwrap_err().to_string();
        assert!(error.contains("wedge 0.9.0 (data layout 2)"), "{error}");
        assert!(error.contains("reads data layout 1 or older"), "{error}");
    }

    #[test]
    fn a_record_that_is_not_one_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), r#"{"layout": "one"}"#).unwrap();
        let error = DataVersion::check(dir.path()).unwrap_err();
        assert!(matches!(error, DataVersionError::Damaged { .. }), "{error}");
    }
}
