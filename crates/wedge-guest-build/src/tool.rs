//! Running the external tools and telling what went wrong.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A tool could not be installed or did not build the module. The message says what was run
/// and what it printed.
#[derive(Debug)]
pub struct Error(pub(crate) String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Runs `cmd` to completion, capturing its output; an error names `what` and shows the
/// tool's stderr (its stdout too, where pip and componentize-py write part of their errors).
pub(crate) fn run(what: &str, cmd: &mut Command) -> Result<Output, Error> {
    let output = cmd
        .output()
        .map_err(|e| Error(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))?;
    if !output.status.success() {
        return Err(Error(format!(
            "{what} failed ({}): {cmd:?}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(output)
}

/// The workspace's `target/tools`, or `$WEDGE_TOOLS_DIR` when set (CI caches may put it
/// elsewhere). `workspace` is the repository root.
pub(crate) fn tools_dir(workspace: &std::path::Path) -> PathBuf {
    std::env::var_os("WEDGE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target/tools"))
}

/// Creates `dir` and its parents; the error names it.
pub(crate) fn create_dir(dir: &std::path::Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))
}
