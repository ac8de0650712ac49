//! Module logs for an operator: `wedge logs` with its filters and `--follow`, a flood that
//! stays within the module's ring, and the `wedge.get-logs` direct method through IoT Hub.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use support::iothub::{Cloud, DEVICE};
use support::{Host, WEDGE, module, wait_for};
use wedge_test_artifacts::{ECHO, HOSTILE};

const TIMEOUT: Duration = Duration::from_secs(30);

fn log(host: &Host, level: &str, text: &str) {
    host.call("echo", "log", &json!({"level": level, "text": text}));
}

/// `wedge logs ARGS… --json`, parsed.
fn logs(host: &Host, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = host.cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn texts(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["text"].as_str().unwrap()).collect()
}

#[test]
fn wedge_logs_shows_a_modules_records_with_filters_and_follows() {
    let host = Host::start(&module("echo", ECHO, ""));
    log(&host, "info", "one");
    log(&host, "warn", "two");
    host.call(
        "echo",
        "log",
        &json!({"stderr": true, "text": "three on stderr"}),
    );
    log(&host, "error", "four");

    let all = logs(&host, &["echo"]);
    assert_eq!(texts(&all), ["one", "two", "three on stderr", "four"]);
    assert_eq!(all[2]["stream"], "stderr");
    assert_eq!(all[1]["level"], "warn");
    assert_eq!(all[2]["level"], "warn", "stderr is at warn");
    assert_eq!(
        texts(&logs(&host, &["echo", "--level", "warn"])),
        ["two", "three on stderr", "four"]
    );
    assert_eq!(
        texts(&logs(&host, &["echo", "--tail", "2"])),
        ["three on stderr", "four"]
    );
    assert_eq!(logs(&host, &["echo", "--since", "1h"]).len(), 4);

    // The human format prints one line per record.
    let plain = host.cli(&["logs", "echo", "--tail", "1"]);
    let plain = String::from_utf8(plain.stdout).unwrap();
    assert!(
        plain.trim_end().ends_with("error  log     four"),
        "{plain:?}"
    );

    // --follow prints what comes after.
    let mut follower = Command::new(WEDGE)
        .arg("--data-dir")
        .arg(&host.data_dir)
        .args(["logs", "echo", "--follow", "--json", "--tail", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut seen = Vec::new();
    wait_for("the followed record", TIMEOUT, || {
        // Logged until the follower has seen one: it may start after the first.
        log(&host, "info", "five");
        while let Ok(line) = rx.try_recv() {
            seen.push(serde_json::from_str::<Value>(&line).unwrap());
        }
        (!seen.is_empty()).then_some(())
    });
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        texts(&seen).iter().all(|t| *t == "five"),
        "{:?}",
        texts(&seen)
    );

    let unknown = host.cli(&["logs", "ghost"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("ghost"));
}

/// A module logging 10 MB: its ring holds at most `log-kb`, the flood is told in a host record,
/// and the neighbour's records are untouched.
#[test]
fn a_flood_stays_within_the_modules_ring() {
    let host = Host::start(&format!(
        "{}{}",
        module("echo", ECHO, ""),
        module(
            "hostile",
            HOSTILE,
            "tick-ms = 10\nlog-kb = 32\nconfig = { mode = \"log-flood\", bytes = 10000000, per-tick = 200000 }"
        ),
    ));
    log(&host, "info", "neighbour");
    wait_for("the flood to end", TIMEOUT, || {
        let progress = host.call("hostile", "progress", &json!(null));
        (progress["done"] == true).then_some(())
    });
    let flood = wait_for("the suppression record", TIMEOUT, || {
        let lines = logs(&host, &["hostile"]);
        lines.iter().any(|l| l["stream"] == "host").then_some(lines)
    });
    let bytes: usize = flood
        .iter()
        .map(|l| l["text"].as_str().unwrap().len())
        .sum();
    assert!(bytes <= 32 * 1024, "{bytes} bytes kept for a 32 KiB ring");
    assert!(texts(&flood).iter().any(|t| t.starts_with("suppressed")));
    assert_eq!(texts(&logs(&host, &["echo"])), ["neighbour"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_get_logs_method_answers_from_the_cloud() {
    let cloud = Cloud::start().await;
    let host = Host::start(&cloud.deployment(&cloud.token, &module("echo", ECHO, "")));
    cloud.hub.wait_for_connections(1, TIMEOUT).await.unwrap();
    for (level, text) in [("info", "alpha"), ("warn", "beta"), ("error", "gamma")] {
        let (status, _) = cloud
            .hub
            .invoke(
                DEVICE,
                "echo.log",
                json!({"level": level, "text": text}),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    let (status, answer) = cloud
        .hub
        .invoke(
            DEVICE,
            "wedge.get-logs",
            json!({"module": "echo", "level": "warn", "since": "10m"}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        texts(answer["lines"].as_array().unwrap()),
        ["beta", "gamma"]
    );
    assert_eq!(answer["truncated"], false);
    let (status, answer) = cloud
        .hub
        .invoke(
            DEVICE,
            "wedge.get-logs",
            json!({"module": "ghost"}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = cloud
        .hub
        .invoke(DEVICE, "wedge.get-logs", json!({"tail": 3}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    drop(host);
}

/// `wedge run --log-format json`: every line on stderr is a JSON object, a collector's input.
#[test]
fn json_log_format_writes_one_object_per_line() {
    let host = Host::start_with(
        &module("echo", ECHO, ""),
        None,
        "set -- \"$@\" --log-format json",
    );
    log(&host, "warn", "as json");
    let log = wait_for("the module's record", TIMEOUT, || {
        let log = host.log();
        log.contains("as json").then_some(log)
    });
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let record = records
        .iter()
        .find(|r| r["fields"]["message"] == "as json")
        .expect("the record");
    assert_eq!(record["level"], "WARN");
    assert_eq!(record["span"]["module"], "echo", "{record}");
}

/// `wedge status --watch` prints the table again and again until interrupted.
#[test]
fn status_watch_refreshes() {
    let host = Host::start(&module("echo", ECHO, ""));
    let mut watcher = Command::new(WEDGE)
        .arg("--data-dir")
        .arg(&host.data_dir)
        .args(["status", "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(watcher.stdout.take().unwrap());
    let mut tables = 0;
    for line in stdout.lines() {
        if line.unwrap().starts_with("echo ") {
            tables += 1;
            if tables == 2 {
                break;
            }
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(tables, 2);
}
