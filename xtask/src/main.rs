//! `cargo xtask <task>`: the project's entry points, so that a fresh machine with only Rust
//! installed needs nothing else to build, demo and test wedge.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod arm64;
mod bench;
mod deb;
mod dist;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  build                 build the wedge host (release) and every module (Rust for wasm32-wasip2,
                        Python and JavaScript with componentize-py/-js, installed under
                        target/tools when missing)
  demo [--seconds N]    build, then run examples/demo/wedge.toml on the local hub and print
                        telemetry as it flows (until Ctrl-C, or for N seconds)
  test [ARGS...]        install what the tests need, then cargo test --workspace [ARGS...]
  deb                   the Debian package (binary, systemd unit, /etc/wedge/wedge.toml) with
                        cargo-deb (installed under target/tools when missing), dist profile
  dist [--target T]     the shipping build (profile dist) for x86_64 and aarch64 Linux, or T:
                        target/dist/wedge-<version>-<target>.tar.gz (docs/distribution.md)
  test-arm64            the aarch64 wedge under qemu-aarch64 on the demo deployment (also the
                        last step of `test`)
  bench                 every benchmark against a baseline measured in the same run: one table,
                        target/bench/report.json (see docs/benchmarks.md)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => build(),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("deb") => deb::deb_task(&args[1..]),
        Some("bench") => bench::bench(),
        Some("dist") => dist::dist(&args[1..]),
        Some("test-arm64") => arm64::check(),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Adds the wasm32-wasip2 target through rustup when it is missing.
fn ensure_wasm_target() -> anyhow::Result<()> {
    ensure_rust_target("wasm32-wasip2")
}

/// Adds `target` through rustup when it is missing.
fn ensure_rust_target(target: &str) -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == target) =>
        {
            Ok(())
        }
        Ok(_) => {
            eprintln!("xtask: adding the {target} target");
            run(Command::new("rustup").args(["target", "add", target]))
        }
        Err(_) => {
            eprintln!("xtask: rustup not found; assuming the {target} target is installed");
            Ok(())
        }
    }
}

fn build_modules() -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
        "modules/Cargo.toml",
    ]))
}

/// Example modules in other languages (directories under `modules/` with an `app.py` or
/// `app.js`), built into `modules/target/<language dir>/<name>.wasm`.
const OTHER_MODULES: &[(&str, wedge_guest_build::Language, &str)] = &[
    ("filter-py", wedge_guest_build::Language::Python, "python"),
    (
        "converter-js",
        wedge_guest_build::Language::JavaScript,
        "js",
    ),
];

fn build_other_modules() -> anyhow::Result<()> {
    let root = root();
    for (name, language, dir) in OTHER_MODULES {
        eprintln!("xtask: building the {language:?} module {name}");
        let out = root.join(format!("modules/target/{dir}/{name}.wasm"));
        wedge_guest_build::build(&root, *language, &root.join("modules").join(name), &out)?;
    }
    Ok(())
}

fn build() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    run(cargo().args(["build", "--release", "-p", "wedge"]))?;
    build_modules()?;
    ensure_component_tools()?;
    build_other_modules()?;
    for dir in ["wasm32-wasip2/release", "python", "js"] {
        for entry in std::fs::read_dir(root().join("modules/target").join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                let size = std::fs::metadata(&path)?.len();
                eprintln!("xtask: {:>8} KiB  {}", size / 1024, path.display());
            }
        }
    }
    Ok(())
}

fn demo(args: &[String]) -> anyhow::Result<()> {
    let seconds = match args {
        [] => None,
        [flag, n] if flag == "--seconds" => {
            Some(n.parse::<u64>().context("--seconds takes a number")?)
        }
        _ => bail!("usage: cargo xtask demo [--seconds N]"),
    };
    build()?;
    let root = root();
    let wedge = root.join("target/release/wedge");
    let data_dir = root.join("target/demo-data");
    // A fresh local hub each time, so the demo shows what this run produced.
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;

    let mut host = Command::new(&wedge)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["run", "examples/demo/wedge.toml"])
        .current_dir(&root)
        .spawn()
        .context("cannot start wedge")?;
    wait_for(&data_dir.join("telemetry.jsonl"), &mut host)?;
    let mut tail = Command::new(&wedge)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["tail", "-n", "0"])
        .spawn()?;
    let d = data_dir.display();
    eprintln!(
        "\nxtask: the demo is running: sensor -> filter (threshold) -> local hub. Telemetry that passes the
       filter prints below. In another terminal, try:
         {w} --data-dir {d} twin set filter threshold=25
         {w} --data-dir {d} status
         {w} --data-dir {d} twin get filter\n",
        w = wedge.display()
    );
    let outcome = match seconds {
        Some(n) => {
            std::thread::sleep(Duration::from_secs(n));
            stop(&mut host)
        }
        None => host.wait().map(|_| ()).map_err(Into::into),
    };
    let _ = tail.kill();
    let _ = tail.wait();
    outcome
}

/// Waits until the host has created `file` (it opens the local hub before starting modules).
fn wait_for(file: &Path, host: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !file.exists() {
        if let Some(status) = host.try_wait()? {
            bail!("wedge exited: {status}");
        }
        if Instant::now() > deadline {
            bail!("wedge did not start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Stops the host with SIGTERM, as a service manager would, and waits for it.
fn stop(host: &mut Child) -> anyhow::Result<()> {
    run(Command::new("kill").args(["-TERM", &host.id().to_string()]))?;
    let status = host.wait()?;
    if !status.success() {
        bail!("wedge exited with {status}");
    }
    Ok(())
}

/// Installs Mosquitto from Debian's packages when it is missing: the MQTT tests start a real
/// broker.
fn ensure_mosquitto() -> anyhow::Result<()> {
    ensure_debian_package(
        &["/usr/sbin/mosquitto", "/usr/bin/mosquitto"],
        &["mosquitto", "mosquitto-clients"],
        "an MQTT broker",
    )
}

/// Installs Debian's `docker-registry` (the CNCF distribution registry) when it is missing: the
/// module-source and deployment tests push to and pull from a real OCI registry.
fn ensure_docker_registry() -> anyhow::Result<()> {
    ensure_debian_package(
        &["/usr/bin/docker-registry"],
        &["docker-registry"],
        "an OCI registry",
    )
}

/// Installs `packages` with apt-get unless one of `binaries` exists. Needs root (as on CI);
/// otherwise says what to run.
fn ensure_debian_package(binaries: &[&str], packages: &[&str], what: &str) -> anyhow::Result<()> {
    if binaries.iter().any(|p| Path::new(p).exists()) {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let list = packages.join(" ");
    if !is_root {
        bail!("the tests need {what}: run `sudo apt-get install -y {list}`");
    }
    eprintln!("xtask: installing {list} (apt-get)");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Installs the component tools of the Python and JavaScript modules under `target/tools`:
/// componentize-py in a virtual environment (first Debian's `python3-venv` when Python cannot
/// make one) and componentize-js with npm (first Debian's `npm` when missing).
fn ensure_component_tools() -> anyhow::Result<()> {
    let has_venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_venv {
        ensure_debian_package(
            &[],
            &["python3-venv"],
            "Python with venv (for componentize-py)",
        )?;
    }
    wedge_guest_build::Python::new(&root()).ensure_installed()?;
    ensure_debian_package(
        &["/usr/bin/npm", "/usr/local/bin/npm"],
        &["npm"],
        "Node.js and npm (for componentize-js)",
    )?;
    wedge_guest_build::JavaScript::new(&root()).ensure_installed()?;
    Ok(())
}

/// The pymodbus release the Modbus tests run their device with (its 3.9+ datastore API is in
/// flux towards 4.0; 3.8 is the last with the stable one).
const PYMODBUS: &str = "pymodbus==3.8.6";

/// Installs pymodbus in a virtual environment of its own under `target/tools/pymodbus`: the
/// `modbus-poller` test talks to a real Modbus TCP server (`crates/wedge/tests/modbus.rs`).
fn ensure_pymodbus() -> anyhow::Result<()> {
    let tools = std::env::var_os("WEDGE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/tools"));
    let venv = tools.join("pymodbus");
    let python = venv.join("bin/python");
    let version = PYMODBUS.split_once("==").map_or("", |(_, v)| v);
    let installed = Command::new(&python)
        .args(["-c", "import pymodbus; print(pymodbus.__version__)"])
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == version.as_bytes());
    if installed {
        return Ok(());
    }
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    eprintln!("xtask: installing {PYMODBUS} (PyPI) in {}", venv.display());
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(PYMODBUS))
}

fn test(args: &[String]) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    ensure_component_tools()?;
    ensure_pymodbus()?;
    ensure_mosquitto()?;
    ensure_docker_registry()?;
    ensure_debian_package(
        &["/usr/bin/systemd-analyze"],
        &["systemd"],
        "systemd-analyze (to verify the unit file)",
    )?;
    deb::test_package(args)?;
    arm64::check()
}
