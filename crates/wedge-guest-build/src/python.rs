//! Python modules: `componentize-py` in a virtual environment under `target/tools/python`,
//! building an app file against `wit/wedge.wit` with the SDK in `sdk/python` on its path.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tool::{self, Error};

/// The componentize-py release modules are built with. Pinned: a new release can change the
/// bindings it generates (and the CPython it embeds), which must be a deliberate update.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The Python toolchain of a workspace: where componentize-py lives once installed.
pub struct Python {
    workspace: PathBuf,
    venv: PathBuf,
}

impl Python {
    /// The toolchain for the workspace at `workspace` (the repository root), not yet
    /// installed.
    pub fn new(workspace: &Path) -> Python {
        Python {
            workspace: workspace.to_path_buf(),
            venv: tool::tools_dir(workspace).join("python"),
        }
    }

    /// The `componentize-py` executable (installed or not).
    pub fn componentize_py(&self) -> PathBuf {
        self.venv.join("bin/componentize-py")
    }

    /// Installs componentize-py [`COMPONENTIZE_PY_VERSION`] in the virtual environment unless
    /// that version is there already. Needs `python3` with `venv` and access to PyPI.
    ///
    /// # Errors
    /// `python3` is missing, the environment cannot be made, or pip fails.
    pub fn ensure_installed(&self) -> Result<(), Error> {
        if self.installed_version().as_deref() == Some(COMPONENTIZE_PY_VERSION) {
            return Ok(());
        }
        if !self.venv.join("bin/python").exists() {
            tool::run(
                "making a Python virtual environment for componentize-py (needs python3 with \
                 venv: `apt-get install python3-venv`)",
                Command::new("python3")
                    .arg("-m")
                    .arg("venv")
                    .arg(&self.venv),
            )?;
        }
        tool::run(
            "installing componentize-py from PyPI",
            Command::new(self.venv.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}")),
        )?;
        Ok(())
    }

    fn installed_version(&self) -> Option<String> {
        let output = Command::new(self.componentize_py())
            .arg("--version")
            .output()
            .ok()?;
        // "componentize-py 0.25.1"
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace().nth(1).map(str::to_string)
    }

    /// The SDK's directory, put on the module's Python path.
    pub fn sdk_dir(&self) -> PathBuf {
        self.workspace.join("sdk/python")
    }

    /// Builds the module in `module_dir` (its entry point is `app.py`, which binds the class
    /// `Module` with `wedge.export`) into the component `out`, installing the tool first when
    /// needed.
    ///
    /// # Errors
    /// The tool cannot be installed, or componentize-py refuses the module (its message says
    /// why: a syntax error, a missing `Module`, an import it cannot find).
    pub fn build(&self, module_dir: &Path, out: &Path) -> Result<(), Error> {
        self.ensure_installed()?;
        if let Some(parent) = out.parent() {
            tool::create_dir(parent)?;
        }
        tool::run(
            &format!("building the Python module {}", module_dir.display()),
            Command::new(self.componentize_py())
                .arg("--wit-path")
                .arg(self.workspace.join("wit"))
                .args(["--world", "edge-module", "componentize"])
                .arg("--python-path")
                .arg(self.sdk_dir())
                .arg("--python-path")
                .arg(module_dir)
                .arg("app")
                .arg("--output")
                .arg(out)
                // componentize-py writes `__pycache__` next to the sources otherwise.
                .env("PYTHONDONTWRITEBYTECODE", "1"),
        )?;
        Ok(())
    }
}
