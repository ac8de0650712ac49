//! The data dir: it exists (or can be created), wedge can write in it (a probe file written
//! and removed the way wedge writes its files), it belongs to the user running the check, and
//! its file system has room for the outbox, the store and compiled modules.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::Access;

use super::{Blocked, Check, blocking, seconds};

const NAME: &str = "data dir";
const SPACE: &str = "data dir free space";
const VERSION: &str = "data dir version";

/// Below this much free space the check warns: the outbox alone defaults to 64 MiB.
const LOW_SPACE_BYTES: u64 = 64 << 20;
/// Or below this share of the file system, in percent.
const LOW_SPACE_PERCENT: u64 = 5;

/// The data dir's lines. The file system work runs on a thread of its own, given up on after
/// `timeout` (a hung network mount answers nothing at all).
pub(super) async fn check(dir: &Path, timeout: Duration) -> Vec<Check> {
    let owned = dir.to_path_buf();
    match blocking(timeout, move || inspect(&owned)).await {
        Ok(checks) => checks,
        Err(Blocked::TimedOut) => vec![Check::error(
            NAME,
            format!(
                "{}: the file system did not answer within {}",
                dir.display(),
                seconds(timeout)
            ),
            "check the mount the data dir is on (a hung network file system?)",
        )],
        Err(Blocked::Failed(e)) => vec![Check::error(
            NAME,
            format!("{}: {e}", dir.display()),
            "report this as a bug",
        )],
    }
}

fn inspect(dir: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    // Where the free space is measured: the dir, or the ancestor it would be created in.
    let measured: PathBuf = match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return vec![Check::error(
                NAME,
                format!("{} exists but is not a directory", dir.display()),
                "point --data-dir (or WEDGE_DATA_DIR) at a directory, or move the file away",
            )];
        }
        Ok(meta) => {
            checks.push(probe(dir));
            checks.push(version(dir));
            let me = rustix::process::geteuid().as_raw();
            if meta.uid() != me {
                checks.push(Check::warning(
                    NAME,
                    format!(
                        "{} belongs to uid {}, this check runs as uid {me}",
                        dir.display(),
                        meta.uid()
                    ),
                    "run `wedge check` as the user `wedge run` runs as, or chown the data dir to that user",
                ));
            }
            dir.to_path_buf()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(ancestor) = dir.ancestors().skip(1).find(|a| a.is_dir()) else {
                return vec![Check::error(
                    NAME,
                    format!("{} does not exist, nor does any parent", dir.display()),
                    "give an absolute --data-dir",
                )];
            };
            checks.push(
                match rustix::fs::access(ancestor, Access::WRITE_OK | Access::EXEC_OK) {
                    Ok(()) => Check::ok(
                        NAME,
                        format!(
                            "{} does not exist yet; `wedge run` creates it (in {}, which is writable)",
                            dir.display(),
                            ancestor.display()
                        ),
                    ),
                    Err(e) => Check::error(
                        NAME,
                        format!(
                            "{} does not exist and cannot be created: {} is not writable ({e})",
                            dir.display(),
                            ancestor.display()
                        ),
                        format!(
                            "create it for the user wedge runs as (`mkdir -p {0} && chown USER {0}`) or choose another --data-dir",
                            dir.display()
                        ),
                    ),
                },
            );
            ancestor.to_path_buf()
        }
        Err(e) => {
            return vec![Check::error(
                NAME,
                format!("{}: {e}", dir.display()),
                "make the data dir and its parents accessible to the user wedge runs as",
            )];
        }
    };
    checks.push(free_space(&measured));
    checks
}

/// Whether this wedge can use the data dir's layout (the record of the wedge that wrote it).
fn version(dir: &Path) -> Check {
    match crate::data_version::DataVersion::check(dir) {
        Ok(version) => Check::ok(VERSION, version.describe()),
        Err(e) => Check::error(
            VERSION,
            e.to_string(),
            "run the wedge that wrote it (or a newer one), or move the data dir away",
        ),
    }
}

/// Writes and removes a probe file the way wedge writes its files (private, synced, renamed
/// into place), so "writable" means what `wedge run` needs, read-only mounts and full disks
/// included.
fn probe(dir: &Path) -> Check {
    let path = dir.join(format!(".wedge-check.{}", std::process::id()));
    let written = wedge_core::files::write_atomic(&path, b"wedge check\n");
    match written.map(|()| std::fs::remove_file(&path)) {
        Ok(Ok(())) => Check::ok(NAME, format!("{} is writable", dir.display())),
        Err(e) => Check::error(
            NAME,
            format!("{} is not writable: {e}", dir.display()),
            format!(
                "give the user wedge runs as write access (`chown USER {0} && chmod 700 {0}`), or remount it read-write",
                dir.display()
            ),
        ),
        Ok(Err(e)) => Check::error(
            NAME,
            format!(
                "{}: a probe file was written but cannot be removed: {e}",
                dir.display()
            ),
            format!(
                "remove {} and check the directory's permissions",
                path.display()
            ),
        ),
    }
}

fn free_space(path: &Path) -> Check {
    match rustix::fs::statvfs(path) {
        Ok(stat) => {
            let available = stat.f_bavail.saturating_mul(stat.f_frsize);
            let total = stat.f_blocks.saturating_mul(stat.f_frsize);
            space_check(path, available, total)
        }
        Err(e) => Check::warning(
            SPACE,
            format!("cannot measure the free space of {}: {e}", path.display()),
            "check the file system with `df`",
        ),
    }
}

/// The line for `available` of `total` bytes free.
fn space_check(path: &Path, available: u64, total: u64) -> Check {
    let percent = available
        .saturating_mul(100)
        .checked_div(total)
        .unwrap_or(0);
    let found = format!(
        "{} free of {} on {} ({percent} %)",
        mib(available),
        mib(total),
        path.display()
    );
    if available < LOW_SPACE_BYTES || percent < LOW_SPACE_PERCENT {
        Check::warning(
            SPACE,
            found,
            format!(
                "free some space: wedge needs room for its outbox (64 MiB by default), store and compiled modules; warned below {} or {LOW_SPACE_PERCENT} %",
                mib(LOW_SPACE_BYTES)
            ),
        )
    } else {
        Check::ok(SPACE, found)
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Level;

    #[test]
    fn little_space_warns_by_size_or_by_share() {
        let path = Path::new("/data");
        let plenty = space_check(path, 10 << 30, 100 << 30);
        assert_eq!(plenty.level, Level::Ok, "{plenty}");
        assert_eq!(plenty.found, "10240 MiB free of 102400 MiB on /data (10 %)");
        // 2 GiB free is only 2 % of a large disk.
        assert_eq!(space_check(path, 2 << 30, 100 << 30).level, Level::Warning);
        // 60 MiB free is below the outbox's default size, even on a small disk.
        assert_eq!(space_check(path, 60 << 20, 100 << 20).level, Level::Warning);
        assert_eq!(space_check(path, 0, 0).level, Level::Warning);
    }

    #[test]
    fn a_writable_dir_passes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let checks = inspect(dir.path());
        assert_eq!(checks[0].level, Level::Ok, "{checks:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("a/b");
        let checks = inspect(&missing);
        assert_eq!(checks[0].level, Level::Ok, "{checks:?}");
        assert!(checks[0].found.contains("does not exist yet"), "{checks:?}");
        assert!(!missing.exists());
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(inspect(&file)[0].level, Level::Error);
    }
}
