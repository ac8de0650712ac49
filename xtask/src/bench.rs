//! `cargo xtask bench`: builds the release binary (the footprint rows measure it), runs every
//! bench of `crates/wedge-bench` (each writes its rows to `target/bench/rows/<bench>.json`),
//! then prints them as one table and writes `target/bench/report.json` with the machine they
//! came from.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use crate::{cargo, root, run};

/// The benches of `crates/wedge-bench`, in the order the table shows them.
const BENCHES: &[&str] = &[
    "e2e",
    "call",
    "start",
    "footprint",
    "latency",
    "http",
    "pubsub",
];

pub fn bench() -> anyhow::Result<()> {
    crate::ensure_wasm_target()?;
    crate::ensure_mosquitto()?;
    let started = Instant::now();
    let out = root().join("target/bench");
    let rows_dir = out.join("rows");
    // Rows of an earlier run must not pass for this one's.
    let _ = std::fs::remove_dir_all(&rows_dir);
    let _ = std::fs::remove_dir_all(out.join("scratch"));
    run(cargo().args(["build", "--release", "-p", "wedge"]))?;
    run(cargo().args(["bench", "-p", "wedge-bench", "--no-run"]))?;
    let built = started.elapsed();
    for bench in BENCHES {
        run(cargo()
            .args(["bench", "-p", "wedge-bench", "--bench", bench])
            .env("WEDGE_BIN", root().join("target/release/wedge")))?;
    }
    let mut rows = Vec::new();
    for bench in BENCHES {
        let file = rows_dir.join(format!("{bench}.json"));
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("bench `{bench}` wrote no rows ({})", file.display()))?;
        let parsed: Vec<Value> =
            serde_json::from_str(&text).with_context(|| format!("{}", file.display()))?;
        rows.extend(parsed);
    }
    let machine = machine();
    let table = table(&rows);
    println!(
        "\n{}\n\n{table}",
        machine["summary"].as_str().unwrap_or_default()
    );
    let report = json!({
        "machine": machine,
        "build-seconds": built.as_secs(),
        "run-seconds": (started.elapsed() - built).as_secs(),
        "rows": rows,
    });
    let file = out.join("report.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&report)?)?;
    let _ = std::fs::remove_dir_all(out.join("scratch"));
    eprintln!(
        "xtask: {} rows in {} (build {} s, benches {} s); the table for docs/benchmarks.md is above",
        rows.len(),
        file.display(),
        built.as_secs(),
        (started.elapsed() - built).as_secs()
    );
    Ok(())
}

/// `nproc`, the CPU model, the kernel and the load average, as the report's `machine`.
fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let load = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|kb| kb.trim().to_string())
        .unwrap_or_default();
    json!({
        "nproc": nproc,
        "cpu": cpu,
        "kernel": kernel,
        "memory": memory,
        "load-average-after": load,
        "summary": format!("machine: {nproc} × {cpu}, Linux {kernel}, {memory} RAM; load average after the run {load}"),
    })
}

/// The rows as one Markdown table.
fn table(rows: &[Value]) -> String {
    let mut lines = vec![
        "| group | row | median | min–max | baseline (median) | ratio (min–max) | target | note |"
            .to_string(),
        "|---|---|---:|---:|---|---:|---|---|".to_string(),
    ];
    for row in rows {
        let unit = row["unit"].as_str().unwrap_or("");
        let value = &row["value"];
        let baseline = match row["baseline"].as_object() {
            Some(b) => format!(
                "{} ({} {unit})",
                b["name"].as_str().unwrap_or(""),
                number(b["value"]["median"].as_f64())
            ),
            None => "–".into(),
        };
        let ratio = match row["ratio"].as_object() {
            Some(r) => format!(
                "{:.2}× ({:.2}–{:.2})",
                r["median"].as_f64().unwrap_or(f64::NAN),
                r["min"].as_f64().unwrap_or(f64::NAN),
                r["max"].as_f64().unwrap_or(f64::NAN)
            ),
            None => "–".into(),
        };
        let target = match (row["target"].as_str(), row["met"].as_bool()) {
            (Some(t), Some(true)) => format!("{t} met"),
            (Some(t), _) => format!("{t} **missed**"),
            _ => String::new(),
        };
        lines.push(format!(
            "| {} | {} | {} {unit} | {}–{} | {baseline} | {ratio} | {target} | {} |",
            row["group"].as_str().unwrap_or(""),
            row["name"].as_str().unwrap_or(""),
            number(value["median"].as_f64()),
            number(value["min"].as_f64()),
            number(value["max"].as_f64()),
            row["note"].as_str().unwrap_or("").replace('|', "/"),
        ));
    }
    lines.join("\n")
}

/// Three significant figures, no exponent.
fn number(n: Option<f64>) -> String {
    let Some(n) = n else { return "?".into() };
    let digits = if n.abs() >= 100.0 {
        0
    } else if n.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{n:.digits$}")
}
