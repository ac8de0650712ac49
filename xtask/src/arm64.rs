//! `cargo xtask test-arm64` (also the last step of `cargo xtask test`): the aarch64 `wedge`,
//! cross-built, runs under `qemu-aarch64` on the demo deployment. It must compile the modules
//! for aarch64, deliver telemetry to the local hub, apply `twin set` live, and refuse x86_64
//! machine code put in its compile cache (compiling again instead of loading it).
//!
//! The build uses the dev profile, not `dist`: it reuses the host's build scripts and
//! proc-macros that `cargo test` built, and needs no fat LTO (minutes on CI's two cores); what
//! runs is the same code for the same target.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::dist::{self, Cross};
use crate::{cargo, root, run};

const TARGET: &str = "aarch64-unknown-linux-gnu";
/// ELF `e_machine` of the code in a cached artifact.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
/// Cranelift compiling two modules under emulation: the first telemetry came 13 s after the
/// start on a 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// The sensor ticks every 500 ms.
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

pub fn check() -> anyhow::Result<()> {
    let started = Instant::now();
    let cross = Cross::of(TARGET)?;
    crate::ensure_debian_package(
        &["/usr/bin/qemu-aarch64"],
        &["qemu-user"],
        "qemu-user (to run the aarch64 build)",
    )?;
    crate::ensure_wasm_target()?;
    crate::build_modules()?;
    let wedge = dist::build(TARGET, "dev")?;
    // The host's own build makes the x86_64 artifacts: the one `cargo test` built (so nothing
    // to do after it; `cargo build -p wedge` would rebuild a dozen crates without the tests'
    // features).
    run(cargo().args(["test", "--workspace", "--no-run"]))?;
    let built = started.elapsed();

    let root = root();
    let work = root.join("target/arm64-check");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let sysroot = cross.sysroot().expect("aarch64 is cross-built");
    let arm = Wedge {
        program: vec!["qemu-aarch64".into(), "-L".into(), sysroot, wedge.clone()],
        data_dir: work.join("data"),
        log: work.join("wedge.log"),
    };
    let deployment = root.join("examples/demo/wedge.toml");

    // 1. Modules compile for aarch64, telemetry flows, `twin set` applies live.
    let mut host = arm.run(&deployment)?;
    let first = host.wait_for(START_TIMEOUT, "the first telemetry", || {
        let records = telemetry(&arm.data_dir);
        (!records.is_empty()).then_some(records.len())
    })?;
    let ran_after = started.elapsed();
    let artifacts = cached_artifacts(&arm.data_dir.join("compiled"))?;
    for artifact in &artifacts {
        expect_machine(artifact, EM_AARCH64)?;
    }
    if artifacts.len() != 2 {
        bail!("expected the 2 demo modules in the cache, found {artifacts:?}");
    }
    arm.cli(&["twin", "set", "filter", "threshold=10"])?;
    // The sensor's temperatures are 20–35: below the demo's 30 only the new threshold passes.
    host.wait_for(FLOW_TIMEOUT, "a reading below 30 after `twin set`", || {
        telemetry(&arm.data_dir)[first..]
            .iter()
            .any(|r| temperature(r).is_some_and(|t| t < 30.0))
            .then_some(())
    })?;
    let status = arm.cli(&["status"])?;
    if !(status.contains("filter") && status.contains("running")) {
        bail!("`wedge status` does not show filter running:\n{status}");
    }
    host.stop()?;

    // 2. x86_64 code where the aarch64 engine looks is refused and compiled again.
    let x86 = Wedge {
        program: vec![root.join("target/debug/wedge")],
        data_dir: work.join("data-x86_64"),
        log: work.join("wedge-x86_64.log"),
    };
    let mut native = x86.run(&deployment)?;
    let x86_artifacts = native.wait_for(START_TIMEOUT, "the x86_64 artifacts", || {
        let found = cached_artifacts(&x86.data_dir.join("compiled")).ok()?;
        (found.len() == 2).then_some(found)
    })?;
    native.stop()?;
    for artifact in &artifacts {
        let name = artifact.file_name().expect("a file");
        let from = x86_artifacts
            .iter()
            .find(|a| a.file_name() == Some(name))
            .with_context(|| format!("no x86_64 artifact for {}", artifact.display()))?;
        expect_machine(from, EM_X86_64)?;
        std::fs::copy(from, artifact)?;
    }
    let before = telemetry(&arm.data_dir).len();
    let mut host = arm.run(&deployment)?;
    host.wait_for(START_TIMEOUT, "telemetry after the restart", || {
        (telemetry(&arm.data_dir).len() > before).then_some(())
    })?;
    host.stop()?;
    for artifact in &artifacts {
        expect_machine(artifact, EM_AARCH64)?;
    }
    let log = std::fs::read_to_string(&arm.log)?;
    let refused = log.lines().filter(|l| l.contains("recompiling")).count();
    if refused != artifacts.len() {
        bail!(
            "expected {} `recompiling` lines in {}, found {refused}",
            artifacts.len(),
            arm.log.display()
        );
    }
    eprintln!(
        "xtask: test-arm64 passed in {:.0} s (build {:.0} s, first telemetry under qemu {:.0} s \
         after the build)",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        (ran_after - built).as_secs_f64()
    );
    Ok(())
}

/// A way to run `wedge` on a data dir, logging to a file.
struct Wedge {
    /// The program and the arguments before wedge's own (`qemu-aarch64 -L … wedge`).
    program: Vec<PathBuf>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Wedge {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .current_dir(root());
        cmd
    }

    /// `wedge run deployment` in the background; its output appended to the log.
    fn run(&self, deployment: &Path) -> anyhow::Result<Running> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = self
            .command()
            .arg("run")
            .arg(deployment)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start wedge")?;
        Ok(Running {
            child,
            log: self.log.clone(),
        })
    }

    /// A command-line call; its stdout, or an error with its stderr.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.command().args(args).output()?;
        if !out.status.success() {
            bail!(
                "`wedge {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A `wedge run`, killed if dropped before [`Running::stop`].
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Polls `ready` until it gives a value, failing at `timeout` or if wedge exits.
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut() -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = ready() {
                return Ok(value);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "wedge exited ({status}) before {what}:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!("no {what} within {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as a service manager stops it; it must exit cleanly.
    fn stop(mut self) -> anyhow::Result<()> {
        run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("wedge exited with {status}:\n{}", self.log_text());
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The local hub's telemetry records (whole lines only: the host may be appending one).
fn telemetry(data_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(data_dir.join("telemetry.jsonl")).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    whole
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `temperature` in a record's JSON body.
fn temperature(record: &Value) -> Option<f64> {
    let body: Value = serde_json::from_str(record["body"].as_str()?).ok()?;
    body["temperature"].as_f64()
}

/// The `.cwasm` files in the engine directories under `compiled`.
fn cached_artifacts(compiled: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for engine_dir in std::fs::read_dir(compiled)? {
        for entry in std::fs::read_dir(engine_dir?.path())? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "cwasm") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Fails unless the machine code in the cached `artifact` is for `machine` (ELF `e_machine`).
fn expect_machine(artifact: &Path, machine: u16) -> anyhow::Result<()> {
    let bytes = std::fs::read(artifact)?;
    let elf = bytes
        .windows(4)
        .position(|w| w == b"\x7fELF")
        .with_context(|| format!("{}: no ELF image", artifact.display()))?;
    let found = bytes
        .get(elf + 18..elf + 20)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .with_context(|| format!("{}: ELF header cut short", artifact.display()))?;
    if found != machine {
        bail!(
            "{}: machine code for ELF machine {found}, expected {machine}",
            artifact.display()
        );
    }
    Ok(())
}
