//! Memory of a process as Linux accounts it (`/proc/PID/status`).

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    /// `VmRSS`: everything resident.
    pub total: u64,
    /// `RssAnon`: heap, stacks, instance memories, loaded machine code.
    pub anon: u64,
    /// `RssFile`: pages of mapped files (the executable's code and read-only data), clean and
    /// shared with the page cache.
    pub file: u64,
    /// `VmHWM`: the peak of `total`.
    pub peak: u64,
}

impl Rss {
    /// `total` in MB (10^6 bytes, as the targets count).
    pub fn total_mb(&self) -> f64 {
        self.total as f64 * 1024.0 / 1e6
    }
}

/// The resident memory of process `pid` (`"self"` for this one).
///
/// # Panics
/// If the process is gone or its status has no `VmRSS`.
pub fn rss(pid: &str) -> Rss {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Rss {
        total: field("VmRSS:").unwrap_or_else(|| panic!("{path}: no VmRSS")),
        anon: field("RssAnon:").unwrap_or(0),
        file: field("RssFile:").unwrap_or(0),
        peak: field("VmHWM:").unwrap_or(0),
    }
}
