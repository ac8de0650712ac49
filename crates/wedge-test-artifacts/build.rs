//! Builds every component in `modules/` for `wasm32-wasip2` (Rust guests with a nested cargo,
//! Python and JavaScript modules through `wedge-guest-build`) and writes their paths to
//! `$OUT_DIR/artifacts.rs`, like wasmtime's `test-programs-artifacts`.
//!
//! The nested cargo uses its own target directory inside `OUT_DIR`: sharing the outer build's
//! would deadlock on its lock. Environment set for the outer build (flags, target, wrappers) is
//! removed so it cannot leak into the guest build.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wedge_guest_build::Language;

const TARGET: &str = "wasm32-wasip2";

/// Constant name in `artifacts.rs`, cdylib file stem, and what the component is for.
const COMPONENTS: &[(&str, &str, &str)] = &[
    (
        "SENSOR",
        "sensor",
        "Example module emitting readings on `readings` every tick.",
    ),
    (
        "FILTER",
        "filter",
        "Example module forwarding readings above a threshold to `alerts`.",
    ),
    (
        "HTTP_GATEWAY",
        "http_gateway",
        "Example module POSTing messages to `url` via wasi:http.",
    ),
    (
        "MODBUS_POLLER",
        "modbus_poller",
        "Example module reading Modbus TCP holding registers every tick and sending them on `registers`.",
    ),
    (
        "PUBSUB_SERVER",
        "pubsub_server",
        "Example module: a line-protocol pub/sub server for local TCP clients (`listen` in its config), each publication also telemetry on `messages`.",
    ),
    (
        "TRAPPER",
        "trapper",
        "Test guest that traps in `on-message`.",
    ),
    (
        "FS_PROBE",
        "fs_probe",
        "Test guest reporting whether it can read/write files.",
    ),
    ("BUSY", "busy", "Test guest spinning forever in `on-tick`."),
    (
        "ECHO",
        "echo",
        "Test guest forwarding messages to `out` and answering `ping`.",
    ),
    (
        "COUNTER",
        "counter",
        "Test guest sending consecutive numbers on `counts`, its progress in durable state.",
    ),
    (
        "PLAIN_CLI",
        "plain_cli",
        "Test guest: a WASI command component that does not export `wedge:edge/module`.",
    ),
    (
        "HOSTILE",
        "hostile",
        "Test guest misbehaving as its `mode` says: log or stderr flood, memory bomb, panic, slow sends.",
    ),
    (
        "WASI_STD",
        "wasi_std",
        "Test guest on wasi:keyvalue and wasi:config instead of wedge's state and twin.",
    ),
    (
        "AIO_TEMPERATURE",
        "aio_temperature",
        "Test guest: Azure IoT Operations operators (map, filter, branch, accumulate, delay) over temperature readings.",
    ),
    (
        "LOADGEN",
        "loadgen",
        "Benchmark guest sending `per-tick` messages of `size` bytes on `out`, one per call or in `batch`es.",
    ),
    (
        "RUNNER",
        "runner",
        "Test guest: a long-running module (`service.run`) serving, spinning, trapping, failing or returning as its `mode` says.",
    ),
    (
        "BIG",
        "big",
        "Benchmark guest: a deliberately large component (12 000 generated functions) for cold-compile memory.",
    ),
    (
        "NET_PROBE",
        "net_probe",
        "Test guest trying the socket operation its `probe` method names and answering what happened.",
    ),
    (
        "WEBHOOK",
        "webhook",
        "Example module: JSON POSTed to its HTTP trigger becomes telemetry on `events`.",
    ),
    (
        "HTTP_PROBE",
        "http_probe",
        "Test guest of the HTTP trigger (HTTP only): `/sleep/<ms>`, `/spin`, `/trap`, else 200.",
    ),
    (
        "HTTP_BOTH",
        "http_both",
        "Test guest exporting a wedge module and an HTTP handler, counting requests in its state.",
    ),
];

/// Modules in other languages: constant name, directory under `modules/` (entry point
/// `app.py` or `app.js`), language, and what the component is for.
const OTHER_COMPONENTS: &[(&str, &str, Language, &str)] = &[
    (
        "FILTER_PY",
        "filter-py",
        Language::Python,
        "Example module in Python: the `filter` ported (threshold on a JSON field, to `alerts`).",
    ),
    (
        "CONVERTER_JS",
        "converter-js",
        Language::JavaScript,
        "Example module in JavaScript: converts readings to another unit, on `converted`.",
    ),
];

/// Variables of the outer build that the nested cargo would otherwise obey. Variables with
/// the prefixes in `LEAKY_PREFIXES` are removed as well.
const LEAKY_VARS: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_INCREMENTAL",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_LLVM_COV",
    "CARGO_LLVM_COV_TARGET_DIR",
    "LLVM_PROFILE_FILE",
];
/// `CARGO_TARGET_<triple>_*` (linker, runner, rustflags) and `CARGO_PROFILE_*` settings.
const LEAKY_PREFIXES: &[&str] = &["CARGO_TARGET_", "CARGO_PROFILE_", "CARGO_BUILD_"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crate lives in <repo>/crates/")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let modules = repo.join("modules");

    rerun_if_changed(&repo, &modules);
    check_target_installed();

    let target_dir = out_dir.join("modules-target");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--manifest-path")
        .arg(modules.join("Cargo.toml"))
        .current_dir(&modules)
        // Cargo interprets a build script's stdout as directives; the nested build's diagnostics
        // go to stderr, which cargo shows when this script fails.
        .stdout(Stdio::null());
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if LEAKY_VARS.contains(&key) || LEAKY_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cargo.env_remove(key);
        }
    }
    // Set after the clean-up above, which removes the outer build's `CARGO_TARGET_DIR`.
    cargo.env("CARGO_TARGET_DIR", &target_dir);
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", modules.display()));
    if !status.success() {
        panic!(
            "building the guest modules failed ({status}); see the cargo output above. Reproduce \
             with `cd modules && cargo build --release --target {TARGET}` (if modules/Cargo.lock \
             is out of date, run `cargo update --workspace` there)"
        );
    }

    let release = target_dir.join(TARGET).join("release");
    let mut code = String::new();
    let mut constant = |name: &str, path: &Path, doc: &str| {
        assert!(
            path.is_file(),
            "the guest build did not produce {}",
            path.display()
        );
        let file = path.file_name().unwrap().to_string_lossy();
        let path = path.to_str().expect("OUT_DIR is valid UTF-8");
        writeln!(code, "/// {doc}\n///\n/// Absolute path of `{file}`.").unwrap();
        writeln!(code, "pub const {name}: &str = {path:?};").unwrap();
    };
    for (name, stem, doc) in COMPONENTS {
        constant(name, &release.join(format!("{stem}.wasm")), doc);
    }
    for (name, dir, language, doc) in OTHER_COMPONENTS {
        let out = out_dir.join("other").join(format!("{dir}.wasm"));
        wedge_guest_build::build(&repo, *language, &modules.join(dir), &out)
            .unwrap_or_else(|e| panic!("{e}"));
        constant(name, &out, doc);
    }
    writeln!(code, "\n/// Every component, as `(constant name, path)`.").unwrap();
    writeln!(code, "pub const ALL: &[(&str, &str)] = &[").unwrap();
    let names = COMPONENTS.iter().map(|c| c.0);
    for name in names.chain(OTHER_COMPONENTS.iter().map(|c| c.0)) {
        writeln!(code, "    ({name:?}, {name}),").unwrap();
    }
    writeln!(code, "];").unwrap();
    fs::write(out_dir.join("artifacts.rs"), code).expect("write artifacts.rs");
}

/// Rebuilds when a module, an SDK or the WIT changes. Files are listed one by one because a
/// directory would include `modules/target`, which every manual build touches.
fn rerun_if_changed(repo: &Path, modules: &Path) {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", repo.join("wit").display());
    let sdk = repo.join("crates/wedge-sdk");
    println!(
        "cargo:rerun-if-changed={}",
        sdk.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-changed={}", sdk.join("src").display());
    // Cargo.lock of the root workspace pins the SDK's dependencies only for the outer build;
    // the guests use modules/Cargo.lock, listed by the walk below.
    let mut rerun = |path: &Path| println!("cargo:rerun-if-changed={}", path.display());
    walk(modules, &mut rerun);
    walk(&repo.join("sdk"), &mut rerun);
}

/// Calls `f` for every file under `dir`, skipping build output and hidden directories.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target"
                && !["__pycache__", "node_modules"].contains(&name.as_ref())
                && !name.starts_with('.')
            {
                walk(&path, f);
            }
        } else {
            f(&path);
        }
    }
}

/// Fails early, with the fix, when the standard library for the target is not installed: the
/// nested build's own error ("can't find crate for `core`") does not say what to do.
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    // Without a sysroot we cannot tell; let the build itself report the problem.
    let Some(sysroot) = sysroot else { return };
    if !sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        panic!(
            "the Rust target {TARGET} is not installed (no {}); the guest modules need it. \
             Fix: `rustup target add {TARGET}`",
            sysroot.join("lib/rustlib").join(TARGET).display()
        );
    }
}
