//! Files in the data directory: private whatever the umask, and small documents replaced
//! crash-safely. The one place wedge's parts create them, so that none forgets a mode or a
//! sync.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of directories in the data dir: the owner only.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of files in the data dir: the owner only.
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and its parents) if absent and makes it (not the parents) private. An
/// existing directory is made private too: its contents (telemetry, twin, secrets in
/// configuration) are nobody else's business.
///
/// # Errors
/// It cannot be created or its mode cannot be set.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR))
}

/// Opens `path` for appending, creating it private; an existing file is made private.
///
/// # Errors
/// As `open`.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(PRIVATE_FILE))?;
    Ok(file)
}

/// Replaces `path` with `bytes` so that after a crash or power cut it holds either the old or
/// the new content, whole: a private temporary file beside it is written and synced, renamed
/// over it, and the directory synced (the rename is durable only then). Concurrent writers of
/// the same path (two compilations of one module) each use their own temporary file.
///
/// # Errors
/// Any step fails; the old file is untouched then and the temporary file removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = dir.join(name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(PRIVATE_FILE)
            .open(&tmp)?;
        file.set_permissions(Permissions::from_mode(PRIVATE_FILE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_dirs_are_private_and_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), PRIVATE_DIR);

        let doc = dir.join("twin.json");
        write_atomic(&doc, b"one").unwrap();
        write_atomic(&doc, b"two").unwrap();
        assert_eq!(std::fs::read(&doc).unwrap(), b"two");
        assert_eq!(mode(&doc), PRIVATE_FILE);
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files left behind");

        let log = dir.join("telemetry.jsonl");
        std::fs::write(&log, b"").unwrap();
        std::fs::set_permissions(&log, Permissions::from_mode(0o644)).unwrap();
        open_private_append(&log).unwrap();
        assert_eq!(mode(&log), PRIVATE_FILE);
    }
}
