use serde_json::{Value, json};

use super::*;
use crate::doc::merge::merged;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn running(sha: &str) -> ModuleReport {
    ModuleReport {
        sha256: Some(sha.into()),
        last_start_time_utc: Some("2026-12-01T10:00:00.000Z".into()),
        ..ModuleReport::new(RuntimeStatus::Running)
    }
}

fn example() -> ReportedDoc {
    ReportedDoc {
        last_desired_version: Some(7),
        last_desired_status: Some(DesiredStatusReport::ok()),
        modules: [("sensor".to_string(), running(SHA))].into(),
    }
}

#[test]
fn serializes_edge_agent_style() {
    let expected = json!({
        "lastDesiredVersion": 7,
        "lastDesiredStatus": { "code": 200, "description": "" },
        "modules": { "sensor": { "runtimeStatus": "running", "sha256": SHA, "restartCount": 0,
                                 "lastStartTimeUtc": "2026-12-01T10:00:00.000Z" } }
    });
    assert_eq!(example().to_value(), expected);
    assert_eq!(ReportedDoc::from_value(&expected).unwrap(), example());
    assert_eq!(ReportedDoc::default().to_value(), json!({ "modules": {} }));
}

#[test]
fn runtime_statuses() {
    for (status, text) in [
        (RuntimeStatus::Running, "running"),
        (RuntimeStatus::Backoff, "backoff"),
        (RuntimeStatus::Failed, "failed"),
        (RuntimeStatus::Stopped, "stopped"),
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), text);
    }
}

#[test]
fn from_value_ignores_twin_metadata_and_reads_nulls_as_absent() {
    let value = json!({
        "$version": 3, "$metadata": {},
        "modules": { "sensor": { "runtimeStatus": "failed", "lastExitTimeUtc": null,
                                 "statusDescription": null } }
    });
    let doc = ReportedDoc::from_value(&value).unwrap();
    assert_eq!(
        doc.modules["sensor"],
        ModuleReport::new(RuntimeStatus::Failed)
    );
    let err = ReportedDoc::from_value(&json!({ "modules": { "m": { "runtimeStatus": "odd" } } }));
    let err = err.unwrap_err();
    assert_eq!(err.path(), "modules.m.runtimeStatus");
}

#[test]
fn truncate_at_char_boundaries() {
    assert_eq!(truncate("hello", 10), "hello");
    assert_eq!(truncate("hello", 5), "hello");
    assert_eq!(truncate("hello", 3), "hel");
    assert_eq!(truncate("hello", 0), "");
    assert_eq!(truncate("", 4), "");
    // "é" is 2 bytes, "€" 3, "🦀" 4.
    assert_eq!(truncate("aé", 2), "a");
    assert_eq!(truncate("€€", 5), "€");
    assert_eq!(truncate("🦀", 3), "");
    assert_eq!(truncate("a🦀b", 5), "a🦀");
    for max in 0..12 {
        let s = "x€🦀éy";
        let t = truncate(s, max);
        assert!(t.len() <= max && s.starts_with(t));
    }
}

#[test]
fn descriptions_are_written_truncated() {
    let mut doc = example();
    let long = "é".repeat(200); // 400 bytes
    if let Some(m) = doc.modules.get_mut("sensor") {
        m.status_description = Some(long.clone());
    }
    doc.last_desired_status = Some(DesiredStatusReport {
        code: 400,
        description: long,
    });
    let value = doc.to_value();
    let text = value["modules"]["sensor"]["statusDescription"]
        .as_str()
        .unwrap();
    assert_eq!(text.len(), 256);
    assert_eq!(text, "é".repeat(128));
    assert_eq!(
        value["lastDesiredStatus"]["description"]
            .as_str()
            .unwrap()
            .len(),
        256
    );
}

#[test]
fn invalid_status_carries_the_error_line() {
    let err = crate::doc::DocError::new("modules.a.tick-ms", "must be greater than 0");
    let status = DesiredStatusReport::invalid(&err);
    assert_eq!(status.code, 400);
    assert_eq!(
        status.description,
        "modules.a.tick-ms: must be greater than 0"
    );
}

#[track_caller]
fn check_patch(previous: &ReportedDoc, next: &ReportedDoc) -> Option<Value> {
    let patch = next.patch_from(previous);
    match &patch {
        None => assert_eq!(previous.to_value(), next.to_value()),
        Some(patch) => assert_eq!(
            merged(&previous.to_value(), patch),
            next.to_value(),
            "{patch}"
        ),
    }
    patch
}

#[test]
fn patch_from_nothing_changed() {
    assert_eq!(check_patch(&example(), &example()), None);
    assert_eq!(
        check_patch(&ReportedDoc::default(), &ReportedDoc::default()),
        None
    );
}

#[test]
fn patch_from_status_change_is_minimal() {
    let mut next = example();
    if let Some(m) = next.modules.get_mut("sensor") {
        m.runtime_status = RuntimeStatus::Backoff;
        m.restart_count = 1;
        m.last_exit_time_utc = Some("2026-12-01T10:05:00.000Z".into());
        m.status_description = Some("exited with a trap".into());
    }
    let patch = check_patch(&example(), &next);
    assert_eq!(
        patch,
        Some(
            json!({ "modules": { "sensor": { "runtimeStatus": "backoff", "restartCount": 1,
            "lastExitTimeUtc": "2026-12-01T10:05:00.000Z", "statusDescription": "exited with a trap" } } })
        )
    );
}

#[test]
fn patch_from_field_becoming_null() {
    let mut previous = example();
    if let Some(m) = previous.modules.get_mut("sensor") {
        m.status_description = Some("starting".into());
        m.last_exit_time_utc = Some("2026-12-01T09:00:00.000Z".into());
    }
    let mut next = previous.clone();
    next.last_desired_status = None;
    if let Some(m) = next.modules.get_mut("sensor") {
        m.status_description = None;
        m.last_exit_time_utc = None;
    }
    let patch = check_patch(&previous, &next);
    assert_eq!(
        patch,
        Some(json!({ "lastDesiredStatus": null,
            "modules": { "sensor": { "statusDescription": null, "lastExitTimeUtc": null } } }))
    );
}

#[test]
fn patch_from_module_added_and_removed() {
    let mut next = example();
    next.modules.remove("sensor");
    next.modules
        .insert("filter".into(), running(&"1".repeat(64)));
    next.last_desired_version = Some(8);
    let patch = check_patch(&example(), &next).unwrap();
    assert_eq!(patch["modules"]["sensor"], Value::Null);
    assert_eq!(patch["modules"]["filter"]["runtimeStatus"], "running");
    assert_eq!(patch["lastDesiredVersion"], 8);
    assert!(patch.get("lastDesiredStatus").is_none());
    // Down to no module at all, and back up from nothing.
    let empty = ReportedDoc::default();
    assert_eq!(
        check_patch(&example(), &empty).unwrap()["modules"],
        json!({ "sensor": null })
    );
    assert!(check_patch(&empty, &example()).is_some());
}

#[test]
fn patch_from_truncated_description_change_only() {
    let mut previous = example();
    let long = "x".repeat(300);
    if let Some(m) = previous.modules.get_mut("sensor") {
        m.status_description = Some(long.clone());
    }
    // A change past the 256th byte is not seen in the JSON, so nothing is reported.
    let mut next = previous.clone();
    if let Some(m) = next.modules.get_mut("sensor") {
        m.status_description = Some(format!("{long}more"));
    }
    assert_eq!(check_patch(&previous, &next), None);
}

/// A reported document of `n` modules wrapped as `{"wedge": …}`; `worst` fills every field
/// (a 256-byte description, a 20-digit restart count), otherwise a typical running module.
fn sized_reported(n: usize, worst: bool) -> Value {
    let mut doc = ReportedDoc {
        last_desired_version: Some(123_456),
        last_desired_status: Some(DesiredStatusReport::ok()),
        modules: Default::default(),
    };
    for i in 0..n {
        let mut m = running(&format!("{:064x}", 0x9f86_d081_884c_7d65_u64 + i as u64));
        m.restart_count = 3;
        m.last_exit_time_utc = Some("2026-12-01T09:59:58.000Z".into());
        if worst {
            m.restart_count = u64::MAX;
            m.status_description = Some("d".repeat(300));
        }
        doc.modules.insert(format!("sensor-{i:02}"), m);
    }
    json!({ "wedge": doc.to_value() })
}

#[test]
fn twenty_modules_fit_in_a_32k_reported_section() {
    const LIMIT: usize = 32 * 1024;
    let len = |n, worst| {
        serde_json::to_string(&sized_reported(n, worst))
            .unwrap()
            .len()
    };
    for worst in [false, true] {
        assert!(len(20, worst) < LIMIT);
        let largest = (1..=1000).take_while(|&n| len(n, worst) <= LIMIT).last();
        let per_module = len(21, worst) - len(20, worst);
        eprintln!(
            "reported ({}): 20 modules = {} bytes; {per_module} bytes per module; largest N under 32 KiB = {largest:?}",
            if worst { "worst case" } else { "typical" },
            len(20, worst),
        );
        assert!(largest.is_some_and(|n| n >= 20));
    }
}
