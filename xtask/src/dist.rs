//! `cargo xtask dist [--target T]`: the build that ships. For each target (x86_64 and aarch64
//! Linux by default) a `dist`-profile `wedge` (see `[profile.dist]` in Cargo.toml and
//! docs/distribution.md), packed with the example modules, a sample deployment, the systemd
//! unit when `packaging/wedge.service` exists, and a README into
//! `target/dist/wedge-<version>-<target>.tar.gz`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{cargo, root, run};

/// What `dist` builds when no `--target` is given.
const DEFAULT_TARGETS: &[&str] = &["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/// The example modules shipped (cdylib stems under `modules/target/wasm32-wasip2/release`): the
/// two the sample deployment runs, and the HTTP one. The Python and JavaScript examples are left
/// out: 12 MB and more each, and they show the SDKs rather than anything for a device.
const MODULES: &[&str] = &["sensor", "filter", "http_gateway"];

/// Where `examples/demo/wedge.toml` finds the modules, and where the tarball has them.
const DEMO_MODULES: &str = "../../modules/target/wasm32-wasip2/release/";
const SHIPPED_MODULES: &str = "modules/";

pub fn dist(args: &[String]) -> anyhow::Result<()> {
    let targets: Vec<String> = match args {
        [] => DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect(),
        [flag, target] if flag == "--target" => vec![target.clone()],
        _ => bail!("usage: cargo xtask dist [--target T]"),
    };
    crate::ensure_wasm_target()?;
    crate::build_modules()?;
    for target in &targets {
        let binary = build(target, "dist")?;
        let tarball = package(target, &binary)?;
        eprintln!(
            "xtask: {target}: wedge {:.1} MiB, {} {:.1} MiB",
            mib(&binary)?,
            tarball.display(),
            mib(&tarball)?
        );
    }
    Ok(())
}

/// Builds `wedge` for `target` with cargo profile `profile` (cross-linked when `target` is
/// not the host's) and returns the binary's path.
pub fn build(target: &str, profile: &str) -> anyhow::Result<PathBuf> {
    let cross = Cross::of(target)?;
    cross.ensure_installed()?;
    let mut cmd = cargo();
    cmd.args(["build", "-p", "wedge", "--profile", profile]);
    // The host's build without `--target`: in `target/<profile>`, where other builds of the
    // host find it (an explicit `--target` would be a second, separate tree).
    let mut dir = root().join("target");
    if cross.gnu.is_some() {
        cmd.args(["--target", target]);
        dir.push(target);
    }
    cross.configure(&mut cmd);
    run(&mut cmd)?;
    // Cargo's directory for the dev profile is `debug`.
    Ok(dir
        .join(if profile == "dev" { "debug" } else { profile })
        .join("wedge"))
}

/// How to build for a target: the rustup target, and for one other than the host's, Debian's
/// cross toolchain (C compiler for ring and SQLite, and the linker).
pub struct Cross {
    target: String,
    /// The GNU triple of Debian's cross gcc (`aarch64-linux-gnu`), when cross-compiling.
    gnu: Option<&'static str>,
    /// Debian's packages of that gcc and of the target's C library.
    packages: &'static [&'static str],
}

impl Cross {
    /// The toolchain for `target`, or an error naming the targets `dist` knows.
    pub fn of(target: &str) -> anyhow::Result<Cross> {
        let (gnu, packages): (_, &'static [&'static str]) = match target {
            t if t == host() => (None, &[]),
            "aarch64-unknown-linux-gnu" => (
                Some("aarch64-linux-gnu"),
                &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
            ),
            "armv7-unknown-linux-gnueabihf" => (
                Some("arm-linux-gnueabihf"),
                &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"],
            ),
            _ => bail!(
                "unknown target `{target}`: dist builds {}, aarch64-unknown-linux-gnu and \
                 armv7-unknown-linux-gnueabihf",
                host()
            ),
        };
        Ok(Cross {
            target: target.to_string(),
            gnu,
            packages,
        })
    }

    /// Adds the rustup target and installs the cross gcc (apt-get, as root) when missing.
    pub fn ensure_installed(&self) -> anyhow::Result<()> {
        crate::ensure_rust_target(&self.target)?;
        if let Some(gnu) = self.gnu {
            crate::ensure_debian_package(
                &[&format!("/usr/bin/{gnu}-gcc")],
                self.packages,
                &format!("a C cross compiler and linker for {}", self.target),
            )?;
        }
        Ok(())
    }

    /// Points cargo and the `cc` crate at the cross gcc. Set here rather than in a committed
    /// `.cargo/config.toml`: that would apply to every build in the workspace, and name a
    /// linker that only machines which ran `dist` have.
    pub fn configure(&self, cmd: &mut Command) {
        let Some(gnu) = self.gnu else { return };
        let upper = self.target.to_uppercase().replace('-', "_");
        let lower = self.target.replace('-', "_");
        cmd.env(format!("CARGO_TARGET_{upper}_LINKER"), format!("{gnu}-gcc"))
            .env(format!("CC_{lower}"), format!("{gnu}-gcc"))
            .env(format!("AR_{lower}"), format!("{gnu}-ar"));
    }

    /// The sysroot `qemu-user` needs to run the target's binaries (`-L`).
    pub fn sysroot(&self) -> Option<PathBuf> {
        self.gnu.map(|gnu| Path::new("/usr").join(gnu))
    }
}

/// The host's target triple (wedge builds on Linux with glibc).
pub fn host() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Writes `target/dist/wedge-<version>-<target>.tar.gz` and returns its path.
fn package(target: &str, binary: &Path) -> anyhow::Result<PathBuf> {
    let root = root();
    let name = format!("wedge-{}-{target}", env!("CARGO_PKG_VERSION"));
    let out = root.join("target/dist");
    let staging = out.join("staging");
    let top = staging.join(&name);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(top.join(SHIPPED_MODULES))?;

    copy(binary, &top.join("wedge"))?;
    for module in MODULES {
        let file = format!("{module}.wasm");
        copy(
            &root
                .join("modules/target/wasm32-wasip2/release")
                .join(&file),
            &top.join(SHIPPED_MODULES).join(&file),
        )?;
    }
    std::fs::write(top.join("wedge.toml"), sample_deployment(&root)?)?;
    let unit = root.join("packaging/wedge.service");
    if unit.exists() {
        copy(&unit, &top.join("wedge.service"))?;
    } else {
        eprintln!(
            "xtask: note: {} does not exist; the tarball has no systemd unit",
            unit.display()
        );
    }
    std::fs::write(top.join("README.md"), readme(&name, target, unit.exists()))?;

    let tarball = out.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&staging)
        .arg(&name))?;
    std::fs::remove_dir_all(&staging)?;
    Ok(tarball)
}

/// `examples/demo/wedge.toml` with its module paths pointing into the tarball's `modules/`
/// (paths in a deployment are relative to its file, so it runs wherever the tarball is
/// unpacked).
fn sample_deployment(root: &Path) -> anyhow::Result<String> {
    let demo_file = root.join("examples/demo/wedge.toml");
    let demo = std::fs::read_to_string(&demo_file)
        .with_context(|| format!("cannot read {}", demo_file.display()))?;
    if !demo.contains(DEMO_MODULES) {
        bail!(
            "{}: no module path under {DEMO_MODULES}; update xtask/src/dist.rs",
            demo_file.display()
        );
    }
    let body = demo
        .lines()
        .skip_while(|l| l.starts_with('#') || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    Ok(format!(
        "# The demo deployment: a simulated sensor, a filter that forwards only readings above a\n\
         # threshold, and the local hub (telemetry in DATA_DIR/telemetry.jsonl). Module paths are\n\
         # relative to this file.\n\n{}\n",
        body.replace(DEMO_MODULES, SHIPPED_MODULES)
    ))
}

fn readme(name: &str, target: &str, has_unit: bool) -> String {
    let unit = if has_unit {
        "\n`wedge.service` is the systemd unit; it expects the paths of the Debian package\n\
         (read it before installing it by hand).\n"
    } else {
        ""
    };
    format!(
        "# {name}\n\n\
         wedge runs WebAssembly edge modules on IoT devices and connects them to a hub.\n\
         This is the `{target}` build: one stripped binary that needs only glibc.\n\n\
         - `wedge`: the host and its command line (`wedge --help`)\n\
         - `modules/`: example modules (`sensor`, `filter`, `http_gateway`), WebAssembly\n\
           components for any target\n\
         - `wedge.toml`: a sample deployment, sensor -> filter -> the embedded local hub\n{unit}\n\
         Try it where it is unpacked:\n\n\
         ```sh\n\
         ./wedge --data-dir ./data run wedge.toml &\n\
         ./wedge --data-dir ./data tail                       # telemetry as it arrives\n\
         ./wedge --data-dir ./data twin set filter threshold=25   # live, no restart\n\
         ./wedge --data-dir ./data status\n\
         ```\n\n\
         The first start compiles each module for this machine (cached in\n\
         `data/compiled/<target>-<compatibility>/`); later starts load the cache.\n\
         The documentation is README.md and docs/ in wedge's source.\n"
    )
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn mib(path: &Path) -> anyhow::Result<f64> {
    Ok(std::fs::metadata(path)?.len() as f64 / (1024.0 * 1024.0))
}
