//! `wedge check`: what an operator runs on a device to find out whether wedge can work there,
//! as `iotedge check` does for IoT Edge. Each check gives one line: ok, warning or error, its
//! name, what it found and, when something is wrong, what to do about it.
//!
//! The families, one file each: the deployment file is valid and its modules compile
//! (`deployment.rs`); the data dir can be written and has room (`data_dir.rs`); the
//! credentials the upstream needs are there and well-formed (`credentials.rs`); each endpoint
//! the upstream connects to resolves, accepts a TCP connection and completes a TLS handshake
//! with the configured trust (`upstream.rs`); the local clock lies within the validity of the
//! certificate that endpoint presents (`clock.rs`). The local hub only has the first two.
//!
//! Every check that touches the network or the file system has a deadline
//! ([`CheckOptions::timeout`]), so a black-holed address or a hung mount cannot hang the check.
//! Secrets are read to be checked but never appear in a line: no key, token or password.

mod certificate;
mod clock;
mod credentials;
mod data_dir;
mod deployment;
mod dps;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// How long one network or file-system check may take when not told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `wedge check` looks at.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The deployment file (`wedge.toml`).
    pub deployment: PathBuf,
    /// The data dir `wedge run` would use.
    pub data_dir: PathBuf,
    /// The longest one check may wait on the network or the file system.
    pub timeout: Duration,
}

impl CheckOptions {
    /// Checks of `deployment` and `data_dir` with [`DEFAULT_TIMEOUT`].
    pub fn new(deployment: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        CheckOptions {
            deployment: deployment.into(),
            data_dir: data_dir.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// wedge works, but something needs attention soon (a certificate about to expire, little
    /// free space).
    Warning,
    /// wedge will not work as configured.
    Error,
}

impl Level {
    /// `ok`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `deployment`, `data dir`, `upstream tcp`, `device certificate`, …
    pub name: String,
    /// The outcome.
    pub level: Level,
    /// What was found.
    pub found: String,
    /// What to do about it; `None` when there is nothing to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn ok(name: impl Into<String>, found: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            level: Level::Ok,
            found: found.into(),
            remedy: None,
        }
    }

    /// A check with a warning and what to do.
    pub fn warning(
        name: impl Into<String>,
        found: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            level: Level::Warning,
            found: found.into(),
            remedy: Some(remedy.into()),
        }
    }

    /// A check that failed and what to do.
    pub fn error(
        name: impl Into<String>,
        found: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            level: Level::Error,
            found: found.into(),
            remedy: Some(remedy.into()),
        }
    }
}

impl std::fmt::Display for Check {
    /// `error   upstream tcp: TCP connect to … refused => start the broker …`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<7} {}: {}",
            self.level.as_str(),
            self.name,
            self.found
        )?;
        if let Some(remedy) = &self.remedy {
            write!(f, " => {remedy}")?;
        }
        Ok(())
    }
}

/// Every check's line, in a fixed order (deployment, data dir, credentials, endpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The lines.
    pub checks: Vec<Check>,
}

/// How many checks came out at each level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub ok: usize,
    /// Warnings.
    pub warnings: usize,
    /// Errors.
    pub errors: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        write!(
            f,
            "{} ok, {}, {}",
            self.ok,
            plural(self.warnings, "warning"),
            plural(self.errors, "error")
        )
    }
}

impl Report {
    /// The counts per level.
    pub fn summary(&self) -> Summary {
        let count = |level| self.checks.iter().filter(|c| c.level == level).count();
        Summary {
            ok: count(Level::Ok),
            warnings: count(Level::Warning),
            errors: count(Level::Error),
        }
    }

    /// Whether any check is an error (`wedge check` then exits non-zero).
    pub fn has_errors(&self) -> bool {
        self.checks.iter().any(|c| c.level == Level::Error)
    }
}

/// Runs every check that applies to the deployment. The families run concurrently; each
/// network or file-system step waits at most `options.timeout` (compiling modules, which is
/// local work, has a bound of its own).
pub async fn run(options: &CheckOptions) -> Report {
    let (loaded, mut checks) = deployment::load(&options.deployment);
    let upstream = async {
        match &loaded {
            Some(deployment) => {
                upstream_checks(&deployment.upstream, &options.data_dir, options.timeout).await
            }
            None => Vec::new(),
        }
    };
    let compiled = async {
        match &loaded {
            Some(deployment) => deployment::compile(deployment).await,
            None => Vec::new(),
        }
    };
    let (compiled, data_dir, upstream) = tokio::join!(
        compiled,
        data_dir::check(&options.data_dir, options.timeout),
        upstream
    );
    checks.extend(compiled);
    checks.extend(data_dir);
    checks.extend(upstream);
    Report { checks }
}

/// The credentials, then every endpoint of the upstream (none for the local hub).
async fn upstream_checks(
    spec: &crate::config::UpstreamSpec,
    data_dir: &std::path::Path,
    timeout: Duration,
) -> Vec<Check> {
    let now = std::time::SystemTime::now();
    let (endpoints, mut checks) = credentials::check(spec, data_dir, now);
    for endpoint in &endpoints {
        checks.extend(upstream::check_endpoint(endpoint, timeout).await);
    }
    checks
}

/// Why [`blocking`] gave no answer.
#[derive(Debug)]
enum Blocked {
    /// Still running after the timeout.
    TimedOut,
    /// No thread could be started for it, or it panicked.
    Failed(String),
}

/// Runs blocking `f` on a thread of its own and waits for it at most `timeout`. Not tokio's
/// blocking pool: the runtime waits for those threads when it shuts down, so a `getaddrinfo`
/// or `write` stuck on a dead resolver or NFS mount would hang `wedge check` at exit. A thread
/// that overruns is left behind and ends with the process.
async fn blocking<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Blocked> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wedge-check".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| Blocked::Failed(format!("cannot start a thread: {e}")))?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(Blocked::Failed("the check panicked".into())),
        Err(_) => Err(Blocked::TimedOut),
    }
}

/// `seconds` (a duration) as people read it: `5 s`, `300 ms`.
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary_read_as_documented() {
        let report = Report {
            checks: vec![
                Check::ok("data dir", "/var/lib/wedge is writable"),
                Check::warning("data dir free space", "40 MiB free", "free some space"),
                Check::error("upstream tcp", "TCP connect to h:1 refused", "start it"),
            ],
        };
        assert_eq!(
            report.checks[0].to_string(),
            "ok      data dir: /var/lib/wedge is writable"
        );
        assert_eq!(
            report.checks[2].to_string(),
            "error   upstream tcp: TCP connect to h:1 refused => start it"
        );
        assert_eq!(report.summary().to_string(), "1 ok, 1 warning, 1 error");
        assert!(report.has_errors());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][1]["level"], "warning");
        assert!(json["checks"][0].get("remedy").is_none());
    }

    #[tokio::test]
    async fn a_blocking_step_that_hangs_is_given_up_on_at_its_deadline() {
        let started = std::time::Instant::now();
        let outcome = blocking(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(30));
        })
        .await;
        assert!(matches!(outcome, Err(Blocked::TimedOut)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(blocking(DEFAULT_TIMEOUT, || 7).await.unwrap(), 7);
    }
}
