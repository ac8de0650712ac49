//! Hostile desired state on the local twin: a module configuration that is not an object,
//! sent over the control socket or written into `twin.json` by hand, is refused naming the
//! module, and nothing accepted before is lost; desired versions only go up.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, module, wait_for};
use wedge_test_artifacts::FILTER;

const TIMEOUT: Duration = Duration::from_secs(30);

fn filter_host() -> Host {
    Host::start(&module(
        "filter",
        FILTER,
        "config = { threshold = 20, field = \"temperature\" }",
    ))
}

fn twin(host: &Host) -> Value {
    host.request(&json!({"op": "twin-get"})).unwrap()
}

/// Per RFC 7396 a patch that is not an object replaces the whole configuration, the file's
/// table included: refused, with the module named, and neither applied nor kept. `null`
/// deletes the overlay, which is a reset to the deployment file's table.
#[test]
fn a_config_patch_that_is_not_an_object_is_refused_and_not_kept() {
    let mut host = filter_host();
    let before = host.module_status("filter")["config"].clone();
    for patch in [json!("threshold=25"), json!(25), json!([1, 2]), json!(true)] {
        let error = host
            .request(&json!({"op": "twin-set", "module": "filter", "patch": patch}))
            .expect_err(&format!("accepted {patch}"));
        assert!(
            error.contains("filter") && error.contains("object"),
            "{patch}: {error}"
        );
    }
    assert_eq!(host.module_status("filter")["config"], before);
    assert_eq!(
        twin(&host)["desired"]["wedge"],
        json!({}),
        "a refused patch was kept"
    );
    // An object still works, and survives a restart.
    host.request(&json!({"op": "twin-set", "module": "filter", "patch": {"threshold": 25}}))
        .unwrap();
    host.restart();
    assert_eq!(host.module_status("filter")["config"]["threshold"], 25);
    assert_eq!(host.module_status("filter")["state"], "running");
    // `null` deletes the overlay (RFC 7396): back to the file's table.
    host.request(&json!({"op": "twin-set", "module": "filter", "patch": null}))
        .unwrap();
    assert_eq!(host.module_status("filter")["config"], before);
}

/// `twin.json` edited by hand so that a module's config is a string: the host starts the
/// deployment file's modules, says which module and field are wrong, and reports the refusal.
#[test]
fn a_hand_edited_twin_with_a_bad_config_is_refused_at_start() {
    let mut host = filter_host();
    host.kill();
    let path = host.data_dir.join("twin.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["desired"]["wedge"] = json!({"modules": {"filter": {"config": "threshold=25"}}});
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    host.restart();
    let filter = host.module_status("filter");
    assert_eq!(filter["state"], "running");
    assert_eq!(filter["config"]["threshold"], 20, "{filter}");
    let status = wait_for("the refusal reported", TIMEOUT, || {
        let status = twin(&host)["reported"]["wedge"]["lastDesiredStatus"].clone();
        (status["code"] == 400).then_some(status)
    });
    let description = status["description"].as_str().unwrap();
    assert!(
        description.contains("modules.filter.config") && description.contains("object"),
        "{description}"
    );
}

/// Desired versions only go up: a refused patch and a rollback do not reuse a number, and a
/// twin file that lost its history (replaced, restored from a backup) continues after the last
/// version applied instead of starting again below it.
#[test]
fn desired_versions_are_monotonic() {
    let mut host = filter_host();
    let set = |host: &Host, threshold: u64| {
        host.request(
            &json!({"op": "twin-set", "module": "filter", "patch": {"threshold": threshold}}),
        )
        .unwrap();
        reported_version(host)
    };
    let first = set(&host, 21);
    // Refused by the module's own check (`filter` wants a number): rolled back.
    let refused =
        host.request(&json!({"op": "twin-set", "module": "filter", "patch": {"threshold": "x"}}));
    assert!(refused.is_err(), "{refused:?}");
    let refused = reported_version(&host);
    assert!(refused > first, "the refusal reused version {first}");
    let second = set(&host, 22);
    assert!(second > refused, "version {second} after {refused}");

    host.kill();
    // The twin file is replaced by an older one with a lower version.
    std::fs::write(
        host.data_dir.join("twin.json"),
        serde_json::to_vec(&json!({
            "desired": {"$version": 1, "wedge": {"modules": {"filter": {"config": {"threshold": 30}}}}},
            "reported": {"$version": 1, "wedge": {}},
        }))
        .unwrap(),
    )
    .unwrap();
    host.restart();
    assert_eq!(host.module_status("filter")["config"]["threshold"], 30);
    let after = wait_for("a version after the last applied", TIMEOUT, || {
        Some(reported_version(&host)).filter(|v| *v > second)
    });
    let next = set(&host, 31);
    assert!(next > after, "version {next} after {after}");
}

/// The desired version the host last reported applying (or refusing).
fn reported_version(host: &Host) -> u64 {
    twin(host)["reported"]["wedge"]["lastDesiredVersion"]
        .as_u64()
        .unwrap_or(0)
}
