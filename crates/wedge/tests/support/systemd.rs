//! What `systemd-analyze verify --root` needs in a scratch root besides the unit: the targets
//! every service depends on by default and the `kill` the unit's `ExecReload` runs, taken from
//! this machine's systemd (Debian's `systemd` package).

use std::path::{Path, PathBuf};

/// `tool` on `$PATH`, if installed.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.is_file())
}

/// Copies this machine's `*.target` units and `/bin/kill` into `root`.
pub fn prepare_root(root: &Path) {
    let units = root.join("lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for entry in std::fs::read_dir("/lib/systemd/system").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "target") && path.is_file() {
            std::fs::copy(&path, units.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let kill = std::fs::canonicalize("/bin/kill").unwrap();
    std::fs::copy(kill, root.join("bin/kill")).unwrap();
}
