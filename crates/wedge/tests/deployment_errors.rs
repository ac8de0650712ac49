//! Bad deployment files: `wedge run` refuses each with one clear error naming the problem and
//! where it is, before starting anything.

mod support;

use std::process::Command;

use support::{Deployment, WEDGE, run_refused};
use wedge_test_artifacts::{FILTER, SENSOR};

/// Runs `wedge run` on `toml` (with `extra_files` beside it), which must fail with exactly one
/// error line; returns that line.
fn run_fails(toml: &str, extra_files: &[(&str, &[u8])]) -> String {
    let stderr = run_refused(toml, extra_files);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error line:\n{stderr}"
    );
    errors[0].to_string()
}

fn assert_names(error: &str, needles: &[&str]) {
    for needle in needles {
        assert!(error.contains(needle), "`{error}` should name `{needle}`");
    }
}

#[test]
fn unknown_field() {
    let error = run_fails(
        &format!("[modules.sensor]\npath = {SENSOR:?}\ntick_ms = 100\n"),
        &[],
    );
    assert_names(
        &error,
        &["wedge.toml:3:1", "unknown field `tick_ms`", "tick-ms"],
    );
}

#[test]
fn missing_wasm_file() {
    let error = run_fails("[modules.sensor]\npath = \"sensor.wasm\"\n", &[]);
    assert_names(
        &error,
        &[
            "wedge.toml:2:8",
            "modules.sensor.path",
            "sensor.wasm",
            "No such file",
        ],
    );
}

#[test]
fn not_a_component() {
    let core_module = b"\0asm\x01\x00\x00\x00";
    let error = run_fails(
        "[modules.old]\npath = \"old.wasm\"\n",
        &[("old.wasm", core_module)],
    );
    assert_names(
        &error,
        &[
            "modules.old.path",
            "core WebAssembly module, not a component",
        ],
    );
    let error = run_fails(
        "[modules.txt]\npath = \"notes.wasm\"\n",
        &[("notes.wasm", b"hello")],
    );
    assert_names(&error, &["modules.txt.path", "not a WebAssembly component"]);
}

#[test]
fn route_to_unknown_module() {
    let error = run_fails(
        &format!(
            "[modules.sensor]\npath = {SENSOR:?}\n[modules.filter]\npath = {FILTER:?}\n\n[routes]\nr = {{ from = \"sensor/readings\", to = \"filtr/input\" }}\n"
        ),
        &[],
    );
    assert_names(
        &error,
        &["wedge.toml:7:", "routes.r.to", "unknown module `filtr`"],
    );
}

#[test]
fn a_component_that_is_not_a_wedge_module() {
    // A truncated component: right header, nothing valid after it.
    let mut broken = b"\0asm\x0d\x00\x01\x00".to_vec();
    broken.extend_from_slice(&[0x01, 0xff, 0xff]);
    let error = run_fails(
        "[modules.broken]\npath = \"broken.wasm\"\n",
        &[("broken.wasm", &broken)],
    );
    assert_names(&error, &["modules.broken", "broken.wasm"]);
}

/// A message in a cycle of routes would circulate for ever: `wedge run` and `wedge check`
/// refuse it, naming the modules and the route's line.
#[test]
fn a_cycle_of_routes() {
    let toml = format!(
        "[modules.a]\npath = {FILTER:?}\n[modules.b]\npath = {FILTER:?}\n[modules.c]\npath = {FILTER:?}\n\n[routes]\n\
         ab = {{ from = \"a/alerts\", to = \"b/input\" }}\n\
         bc = {{ from = \"b/alerts\", to = \"c/input\" }}\n\
         ca = {{ from = \"c/alerts\", to = \"a/input\" }}\n"
    );
    let error = run_fails(&toml, &[]);
    assert_names(
        &error,
        &[
            "wedge.toml:9:",
            "routes.ab",
            "a cycle between modules: a -> b -> c -> a",
        ],
    );
    let deployment = Deployment::new(&toml);
    let check = Command::new(WEDGE)
        .arg("check")
        .arg(&deployment.path)
        .output()
        .unwrap();
    assert!(!check.status.success(), "wedge check accepted a cycle");
    assert!(String::from_utf8_lossy(&check.stderr).contains("a cycle between modules"));
}

/// `when-full` is about a module's inbox: on a route to `$upstream` it is refused.
#[test]
fn when_full_on_a_route_to_the_hub() {
    let error = run_fails(
        &format!(
            "[modules.sensor]\npath = {SENSOR:?}\n[routes]\nr = {{ from = \"sensor/readings\", to = \"$upstream\", when-full = \"drop-oldest\" }}\n"
        ),
        &[],
    );
    assert_names(
        &error,
        &["wedge.toml:4:", "routes.r.when-full", "module's inbox"],
    );
}
