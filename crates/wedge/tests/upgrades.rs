//! Upgrades that cannot brick a device: the data dir records which wedge wrote it
//! (`data-version.json`); a wedge older than the data refuses it, naming both versions, and
//! leaves every file as it was; a data dir from before the record gets it only once a start
//! succeeded, so a failed start changes nothing an older wedge would trip over.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Host, WEDGE, module, wait_for};
use wedge_test_artifacts::COUNTER;

const TIMEOUT: Duration = Duration::from_secs(30);
const MARKER: &str = "data-version.json";

/// Every file under `dir` (the control socket aside) with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = entry.metadata().unwrap();
            let key = path.display().to_string();
            if meta.is_dir() {
                files.insert(key, (Vec::new(), meta.permissions().mode()));
                stack.push(path);
            } else if !meta.file_type().is_socket() {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(key, (bytes, meta.permissions().mode()));
            }
        }
    }
    files
}

/// A data dir a counter module ran on: store, twin, telemetry, compiled cache, marker.
fn used_data_dir() -> Host {
    let host = Host::start(&format!(
        "{}[routes]\nup = {{ from = \"counter/counts\", to = \"$upstream\" }}\n",
        module("counter", COUNTER, "tick-ms = 20")
    ));
    wait_for("telemetry", TIMEOUT, || {
        (host.module_status("counter")["messages-out"].as_u64() > Some(3)).then_some(())
    });
    host
}

fn marker(data_dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(data_dir.join(MARKER)).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// `wedge run`, expected to refuse to start: its output once it exited. One still running
/// after [`TIMEOUT`] accepted the data dir: it is killed and the test fails.
fn run(deployment: &Path, data_dir: &Path) -> std::process::Output {
    let child = std::process::Command::new(WEDGE)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("run")
        .arg(deployment)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let exited = Arc::new(AtomicBool::new(false));
    let watch = exited.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline && !watch.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !watch.load(Ordering::Relaxed) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let out = child.wait_with_output().unwrap();
    exited.store(true, Ordering::Relaxed);
    out
}

#[test]
fn a_started_data_dir_records_the_wedge_that_wrote_it() {
    let host = used_data_dir();
    let marker = marker(&host.data_dir).expect("no data-version.json after a start");
    assert_eq!(
        marker,
        json!({"layout": 1, "written-by": env!("CARGO_PKG_VERSION")})
    );
}

/// `wedge check`'s line about the data dir's version: its outcome and its text.
fn check_version_line(host: &Host) -> String {
    let out = host.cli(&["check", host.deployment.path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find(|l| l.contains("data dir version"))
        .unwrap_or_else(|| panic!("no data dir version line:\n{stdout}"))
        .to_string()
}

#[test]
fn wedge_check_says_which_wedge_wrote_the_data_dir_and_refuses_a_newer_one() {
    let mut host = used_data_dir();
    let line = check_version_line(&host);
    assert!(line.starts_with("ok"), "{line}");
    assert!(
        line.contains(&format!(
            "data layout 1, written by wedge {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{line}"
    );
    host.kill();
    let future = json!({"layout": 7, "written-by": "9.4.0"});
    std::fs::write(host.data_dir.join(MARKER), future.to_string()).unwrap();
    let line = check_version_line(&host);
    assert!(line.starts_with("error"), "{line}");
    assert!(
        line.contains("written by wedge 9.4.0 (data layout 7)"),
        "{line}"
    );
}

#[test]
fn a_data_dir_from_a_newer_wedge_is_refused_and_left_as_it_was() {
    let mut host = used_data_dir();
    host.kill();
    let future = json!({"layout": 7, "written-by": "9.4.0"});
    std::fs::write(host.data_dir.join(MARKER), future.to_string()).unwrap();
    let before = snapshot(&host.data_dir);

    let out = run(&host.deployment.path, &host.data_dir);
    assert!(!out.status.success(), "a newer data dir was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("9.4.0"), "{stderr}");
    assert!(stderr.contains(env!("CARGO_PKG_VERSION")), "{stderr}");
    assert!(stderr.contains(MARKER), "{stderr}");
    assert_eq!(
        snapshot(&host.data_dir),
        before,
        "the refused data dir changed"
    );
}

#[test]
fn a_damaged_version_record_is_refused_and_left_as_it_was() {
    let mut host = used_data_dir();
    host.kill();
    std::fs::write(host.data_dir.join(MARKER), b"{\"layout\": ").unwrap();
    let before = snapshot(&host.data_dir);
    let out = run(&host.deployment.path, &host.data_dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(MARKER), "{stderr}");
    assert_eq!(snapshot(&host.data_dir), before);
}

#[test]
fn an_unrecorded_data_dir_is_recorded_only_after_a_good_start() {
    // A data dir as wedge wrote it before the record existed.
    let mut host = used_data_dir();
    host.kill();
    std::fs::remove_file(host.data_dir.join(MARKER)).unwrap();

    // A start that fails after the data dir was opened (the metrics address is taken):
    // nothing recorded, so an older wedge can still take the data dir back.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let failing = host.deployment.dir.path().join("failing.toml");
    let text = std::fs::read_to_string(&host.deployment.path).unwrap();
    std::fs::write(
        &failing,
        format!(
            "{text}[metrics]\nlisten = \"{}\"\n",
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = run(&failing, &host.data_dir);
    assert!(!out.status.success(), "the start was meant to fail");
    assert!(
        marker(&host.data_dir).is_none(),
        "recorded after a failed start"
    );

    host.restart();
    assert_eq!(
        marker(&host.data_dir).unwrap()["written-by"],
        env!("CARGO_PKG_VERSION")
    );
}
