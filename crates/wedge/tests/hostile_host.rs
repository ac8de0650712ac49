//! Hostile surroundings of the host: a umask of 000, local clients that flood or hold the
//! control socket, a process out of file descriptors, a full disk, a closed stdout. The device
//! keeps working, its files stay private, nothing accepted is lost, and logs stay small.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::process::cpu_time;
use support::{Host, WEDGE, module, wait_for};
use wedge_test_artifacts::COUNTER;

const TIMEOUT: Duration = Duration::from_secs(30);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn counter_host(extra: &str, data_dir: Option<PathBuf>, shell: &str) -> Host {
    Host::start_with(
        &format!(
            "{}[routes.up]\nfrom = \"counter/counts\"\nto = \"$upstream\"\n",
            module("counter", COUNTER, extra)
        ),
        data_dir,
        shell,
    )
}

#[test]
fn the_data_dir_and_its_files_are_private_under_umask_000() {
    let host = counter_host("tick-ms = 20", None, "umask 000");
    host.request(&json!({"op": "twin-set", "module": "counter", "patch": {"batch": 2}}))
        .unwrap();
    wait_for("telemetry", TIMEOUT, || {
        (!host.telemetry().is_empty()).then_some(())
    });
    assert_eq!(mode(&host.data_dir), 0o700, "data dir");
    for file in ["wedge.sock", "twin.json", "telemetry.jsonl"] {
        assert_eq!(mode(&host.data_dir.join(file)), 0o600, "{file}");
    }
}

/// Idle connections are answered and closed after a few seconds, at most a bounded number are
/// served at once, and `wedge status` works again as soon as they go.
#[test]
fn idle_control_connections_time_out_and_are_capped() {
    let host = counter_host("tick-ms = 50", None, "");
    let socket = host.data_dir.join("wedge.sock");
    let idle: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // Over the cap, a client is told so at once rather than left waiting.
    let busy = host.request(&json!({"op": "status"}));
    assert!(
        busy.as_ref().is_err_and(|e| e.starts_with("busy")),
        "{busy:?}"
    );
    // Each idle connection gets an answer saying why it is closed.
    for stream in idle {
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with("no request within") || error.starts_with("busy"),
            "{answer}"
        );
    }
    host.request(&json!({"op": "status"})).unwrap();
}

/// A request over the size limit or not UTF-8 gets an answer naming the problem.
#[test]
fn oversized_and_binary_requests_are_answered() {
    let host = counter_host("tick-ms = 50", None, "");
    let ask = |bytes: &[u8]| {
        let mut stream = UnixStream::connect(host.data_dir.join("wedge.sock")).unwrap();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(bytes);
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut long = b"{\"op\": \"status\", \"x\": \"".to_vec();
    long.resize(70 * 1024, b'a');
    long.extend_from_slice(b"\"}\n");
    assert_eq!(ask(&long), "request longer than 64 KiB");
    assert!(ask(b"\xff\xfe\n").contains("not UTF-8"));
}

/// At the file descriptor limit `accept` fails; the host backs off instead of spinning and
/// logs one line, not millions, and serves again once descriptors are free.
#[test]
fn running_out_of_file_descriptors_does_not_spin_or_flood_the_log() {
    let host = counter_host("tick-ms = 50", None, "ulimit -n 96");
    let socket = host.data_dir.join("wedge.sock");
    let log_before = host.log().len();
    // More connections than the host has descriptors; the kernel queues the rest.
    let held: Vec<UnixStream> = (0..200)
        .filter_map(|_| UnixStream::connect(&socket).ok())
        .collect();
    assert!(held.len() > 96, "only {} connections", held.len());
    let cpu_before = cpu_time(host.pid());
    // A measurement window, not a wait for anything: how much CPU and log 3 s cost.
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_time(host.pid()) - cpu_before;
    let logged = host.log().len() - log_before;
    eprintln!("out of descriptors for 3 s: {cpu:?} of CPU, {logged} bytes of log");
    assert!(cpu < Duration::from_secs(1), "{cpu:?} of CPU in 3 s");
    assert!(logged < 20_000, "{logged} bytes of log in 3 s");
    drop(held);
    wait_for("status after the flood", TIMEOUT, || {
        host.request(&json!({"op": "status"})).ok()
    });
}

/// `wedge status | head`: the reader closing the pipe is not a crash.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let host = counter_host("tick-ms = 50", None, "");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(WEDGE)
        .arg("--data-dir")
        .arg(&host.data_dir)
        .arg("status")
        .stdout(Stdio::from(writer))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

/// An empty deployment file is legitimate (the cloud or `wedge deploy` brings modules), but
/// the host says loudly that nothing runs yet.
#[test]
fn an_empty_deployment_says_that_nothing_runs() {
    let host = Host::start("");
    assert!(
        host.log().contains("no modules run"),
        "no warning in:\n{}",
        host.log()
    );
}

/// A tmpfs of a few MiB mounted for the test; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where mounting is not permitted (not root, or in a container without the
    /// capability): the caller says so and skips.
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    /// Fills the disk with one file; returns it.
    fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // The last few bytes, for a disk exactly full.
        while file.write_all(&block[..512]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The disk fills while telemetry flows, then frees up. Every number arrives, no message (by
/// message id) is written twice, every line of `telemetry.jsonl` is whole, and the store does
/// not log rollbacks of transactions SQLite had already ended. (The counter itself may send a
/// batch again when recording its progress failed on the full disk: those are new messages,
/// with new ids, as at-least-once allows.)
#[test]
fn a_full_disk_loses_and_tears_nothing() {
    const LIMIT: u64 = 1500;
    let Some(disk) = SmallDisk::mount(8) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let data_dir = disk.dir.path().join("data");
    let host = counter_host(
        &format!("tick-ms = 2\nconfig = {{ limit = {LIMIT}, batch = 4, pad = 900 }}"),
        Some(data_dir.clone()),
        "",
    );
    let lines = || -> Vec<Value> {
        let text = std::fs::read_to_string(data_dir.join("telemetry.jsonl")).unwrap_or_default();
        text.lines()
            .enumerate()
            .map(|(n, line)| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("line {} is torn ({e}): {line:.80}", n + 1))
            })
            .collect()
    };
    let seqs = || -> BTreeSet<u64> {
        let body = |r: &Value| serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap();
        lines()
            .iter()
            .map(|r| body(r)["seq"].as_u64().unwrap())
            .collect()
    };
    wait_for("some telemetry", TIMEOUT, || {
        (seqs().len() > 100).then_some(())
    });
    let filler = disk.fill();
    wait_for("the host to hit the full disk", TIMEOUT, || {
        let log = host.log();
        (log.contains("No space left") || log.contains("full")).then_some(())
    });
    std::fs::remove_file(filler).unwrap();
    wait_for("every number", Duration::from_secs(60), || {
        (seqs().len() as u64 >= LIMIT).then_some(())
    });
    assert_eq!(seqs(), (1..=LIMIT).collect::<BTreeSet<u64>>());
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for record in lines() {
        *ids.entry(record["message-id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let written_twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(written_twice.is_empty(), "written twice: {written_twice:?}");
    assert!(!host.log().contains("rollback failed"), "{}", host.log());
}
