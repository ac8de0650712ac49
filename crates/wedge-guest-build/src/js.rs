//! JavaScript modules: componentize-js (StarlingMonkey, SpiderMonkey built for WASI) from npm,
//! installed under `target/tools/js`, building an `app.js` against `wit/wedge.wit`; the SDK in
//! `sdk/js` is imported by relative path.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tool::{self, Error};

/// The componentize-js release modules are built with (pinned like componentize-py).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The JavaScript toolchain of a workspace: where componentize-js lives once installed.
pub struct JavaScript {
    workspace: PathBuf,
    prefix: PathBuf,
}

impl JavaScript {
    /// The toolchain for the workspace at `workspace` (the repository root), not yet
    /// installed.
    pub fn new(workspace: &Path) -> JavaScript {
        JavaScript {
            workspace: workspace.to_path_buf(),
            prefix: tool::tools_dir(workspace).join("js"),
        }
    }

    fn package_json(&self) -> PathBuf {
        self.prefix
            .join("node_modules/@bytecodealliance/componentize-js/package.json")
    }

    fn installed_version(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.package_json()).ok()?;
        // `"version": "0.23.0",` without a JSON parser (this crate has no dependencies).
        let rest = &text[text.find("\"version\"")? + "\"version\"".len()..];
        let start = rest.find('"')? + 1;
        let end = start + rest[start..].find('"')?;
        Some(rest[start..end].to_string())
    }

    /// Installs componentize-js [`COMPONENTIZE_JS_VERSION`] with npm unless that version is
    /// there already. Needs Node.js and npm, and access to the npm registry.
    ///
    /// # Errors
    /// npm is missing or the install fails.
    pub fn ensure_installed(&self) -> Result<(), Error> {
        if self.installed_version().as_deref() == Some(COMPONENTIZE_JS_VERSION) {
            return Ok(());
        }
        tool::create_dir(&self.prefix)?;
        // A package of its own, so npm does not look for one further up the tree.
        let manifest = self.prefix.join("package.json");
        if !manifest.exists() {
            std::fs::write(&manifest, "{\"private\": true}\n")
                .map_err(|e| Error(format!("cannot write {}: {e}", manifest.display())))?;
        }
        tool::run(
            "installing componentize-js from npm (needs Node.js and npm: `apt-get install npm`)",
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent"])
                .arg(format!(
                    "@bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION}"
                ))
                .current_dir(&self.prefix),
        )?;
        Ok(())
    }

    /// Builds the module in `module_dir` (its entry point is `app.js`, which exports `module`
    /// made by `wedge.exportModule`) into the component `out`, installing the tool first when
    /// needed. `module_dir` must be inside the workspace: componentize-js resolves the app's
    /// relative imports (the SDK) only under the directory it runs in, the workspace root.
    ///
    /// # Errors
    /// The tool cannot be installed, or componentize-js refuses the module (its message says
    /// why: a syntax error, an exception while the app's top level ran, an import not found).
    pub fn build(&self, module_dir: &Path, out: &Path) -> Result<(), Error> {
        self.ensure_installed()?;
        let app = module_dir.join("app.js");
        let app = app.strip_prefix(&self.workspace).map_err(|_| {
            Error(format!(
                "{} is not inside the workspace {}",
                app.display(),
                self.workspace.display()
            ))
        })?;
        if let Some(parent) = out.parent() {
            tool::create_dir(parent)?;
        }
        tool::run(
            &format!("building the JavaScript module {}", module_dir.display()),
            Command::new("node")
                .arg(
                    self.prefix
                        .join("node_modules/@bytecodealliance/componentize-js/src/cli.js"),
                )
                .arg(app)
                .args(["--wit", "wit", "--world-name", "edge-module"])
                // The module gets wasi:http only through its grant, and exports nothing but
                // `module`: leave StarlingMonkey's fetch and incoming-handler out.
                .args(["--disable", "http", "fetch-event"])
                .arg("--out")
                .arg(out)
                .current_dir(&self.workspace),
        )?;
        Ok(())
    }
}
