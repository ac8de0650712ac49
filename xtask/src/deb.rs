//! `cargo xtask deb`: the Debian package (binary, hardened unit, /etc/wedge/wedge.toml as a
//! conffile), made by cargo-deb from `[package.metadata.deb]` in crates/wedge/Cargo.toml.
//! cargo-deb is installed under target/tools when missing, at a pinned version that builds on
//! the workspace's Rust.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::{cargo, root, run};

/// The profile the package is built with: the one meant to ship.
pub const PROFILE: &str = "dist";

/// cargo-deb, pinned: 3.8.0 builds on Rust 1.95 (it needs 1.85).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// What a package is made for.
#[derive(Clone, Copy)]
pub enum Purpose {
    /// To ship: built with [`PROFILE`], compressed hard.
    Ship,
    /// For the package's test: the binary the test suite already built (dev profile), fast
    /// compression. Its layout is the shipped one's; a release build and xz at its best would
    /// add minutes to every CI run for nothing the test looks at.
    Test,
}

/// Makes the package; returns its path (`target/debian/wedge_<version>-1_<arch>.deb`).
pub fn deb(purpose: Purpose) -> anyhow::Result<PathBuf> {
    let tool = ensure_cargo_deb()?;
    let out = root().join("target/debian");
    // One package per run: the path printed is the one just made.
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = std::process::Command::new(&tool);
    cmd.current_dir(root())
        .args(["-p", "wedge", "--locked", "--output"])
        .arg(&out);
    match purpose {
        // The profile keeps line tables for backtraces; the package ships without them.
        Purpose::Ship => cmd.args(["--profile", PROFILE, "--strip"]),
        Purpose::Test => cmd.args(["--profile", "dev", "--no-build", "--fast"]),
    };
    run(&mut cmd)?;
    let deb = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("cargo-deb made no .deb")?;
    let size = std::fs::metadata(&deb)?.len();
    eprintln!("xtask: {} ({} KiB)", deb.display(), size / 1024);
    Ok(deb)
}

/// `cargo xtask deb`.
pub fn deb_task(args: &[String]) -> anyhow::Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask deb");
    }
    deb(Purpose::Ship).map(drop)
}

/// target/tools/bin/cargo-deb, installed with `cargo install --locked` when missing.
fn ensure_cargo_deb() -> anyhow::Result<PathBuf> {
    let tools = root().join("target/tools");
    let tool = tools.join("bin/cargo-deb");
    if installed_version(&tool).as_deref() == Some(CARGO_DEB_VERSION) {
        return Ok(tool);
    }
    eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION} under target/tools");
    run(cargo()
        .args(["install", "--locked", "--root"])
        .arg(&tools)
        .args(["cargo-deb", "--version", CARGO_DEB_VERSION]))?;
    Ok(tool)
}

/// `cargo-deb --version` prints `cargo-deb 3.8.0`.
fn installed_version(tool: &Path) -> Option<String> {
    let out = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().nth(1).map(String::from)
}

/// The test suite with the package in it: the suite is built first, the binary it built is
/// packaged (seconds), and the suite runs with `WEDGE_DEB` naming the package, so that
/// tests/package.rs installs it. Building and running with the same selection matters: another
/// one (`-p wedge`, `--test package`) resolves features otherwise and built everything again
/// (3.5 min on 2 cores).
pub fn test_package(args: &[String]) -> anyhow::Result<()> {
    run(cargo().args(["test", "--workspace", "--no-run"]).args(args))?;
    let started = std::time::Instant::now();
    let deb = deb(Purpose::Test)?;
    eprintln!(
        "xtask: packaging the test binary took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    run(cargo()
        .args(["test", "--workspace"])
        .args(args)
        .env("WEDGE_DEB", &deb))
}
