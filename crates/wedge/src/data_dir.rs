//! Where wedge keeps its state when `--data-dir` is not given.

use std::path::PathBuf;

/// `/var/lib/wedge` for root (a device service), else the user's XDG data dir.
pub fn default_data_dir() -> PathBuf {
    let is_root = std::env::var_os("USER").is_some_and(|u| u == "root")
        || std::env::var_os("HOME").is_some_and(|h| h == "/root");
    if is_root {
        return PathBuf::from("/var/lib/wedge");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(xdg).join("wedge");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/wedge"),
        None => PathBuf::from(".wedge"),
    }
}
