use serde_json::{Value, json};

use super::*;
use crate::doc::desired::{DesiredStatus, RestartPolicy, RouteDoc};

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn rfc7396_appendix_a() {
    let cases = [
        (r#"{"a":"b"}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
        (r#"{"a":"b"}"#, r#"{"b":"c"}"#, r#"{"a":"b","b":"c"}"#),
        (r#"{"a":"b"}"#, r#"{"a":null}"#, r#"{}"#),
        (r#"{"a":"b","b":"c"}"#, r#"{"a":null}"#, r#"{"b":"c"}"#),
        (r#"{"a":["b"]}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
        (r#"{"a":"c"}"#, r#"{"a":["b"]}"#, r#"{"a":["b"]}"#),
        (
            r#"{"a":{"b":"c"}}"#,
            r#"{"a":{"b":"d","c":null}}"#,
            r#"{"a":{"b":"d"}}"#,
        ),
        (r#"{"a":[{"b":"c"}]}"#, r#"{"a":[1]}"#, r#"{"a":[1]}"#),
        (r#"["a","b"]"#, r#"["c","d"]"#, r#"["c","d"]"#),
        (r#"{"a":"b"}"#, r#"["c"]"#, r#"["c"]"#),
        (r#"{"a":"foo"}"#, r#"null"#, r#"null"#),
        (r#"{"a":"foo"}"#, r#""bar""#, r#""bar""#),
        (r#"{"e":null}"#, r#"{"a":1}"#, r#"{"e":null,"a":1}"#),
        (r#"[1,2]"#, r#"{"a":"b","c":null}"#, r#"{"a":"b"}"#),
        (
            r#"{}"#,
            r#"{"a":{"bb":{"ccc":null}}}"#,
            r#"{"a":{"bb":{}}}"#,
        ),
    ];
    for (original, patch, result) in cases {
        let (original, patch, result) = (parse(original), parse(patch), parse(result));
        assert_eq!(merged(&original, &patch), result, "{original} + {patch}");
        let mut target = original.clone();
        merge_patch(&mut target, &patch);
        assert_eq!(target, result);
    }
}

#[test]
fn rfc7396_section_3_example() {
    let target = json!({
        "title": "Goodbye!",
        "author": { "givenName": "John", "familyName": "Doe" },
        "tags": ["example", "sample"],
        "content": "This will be unchanged"
    });
    let patch = json!({
        "title": "Hello!", "phoneNumber": "+01-123-456-7890",
        "author": { "familyName": null }, "tags": ["example"]
    });
    let expected = json!({
        "title": "Hello!",
        "author": { "givenName": "John" },
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890"
    });
    assert_eq!(merged(&target, &patch), expected);
}

#[test]
fn merged_leaves_the_base_alone() {
    let base = json!({ "a": { "b": 1 } });
    let _ = merged(&base, &json!({ "a": { "b": null } }));
    assert_eq!(base, json!({ "a": { "b": 1 } }));
}

#[test]
fn patch_between_reproduces_the_target() {
    let pairs = [
        (json!({}), json!({})),
        (json!({ "a": 1 }), json!({ "a": 1 })),
        (json!({ "a": 1 }), json!({ "a": 2 })),
        (json!({ "a": 1, "b": 2 }), json!({ "b": 2 })),
        (
            json!({ "a": { "x": 1, "y": 2 } }),
            json!({ "a": { "x": 1, "y": 3, "z": [1] } }),
        ),
        (json!({ "a": { "x": 1 } }), json!({ "a": "flat" })),
        (json!({ "a": "flat" }), json!({ "a": { "x": { "y": 1 } } })),
        (json!([1]), json!({ "a": 1 })),
        (json!({ "a": 1 }), json!([1])),
        (json!("x"), json!("x")),
    ];
    for (from, to) in pairs {
        match patch_between(&from, &to) {
            None => assert_eq!(from, to),
            Some(patch) => {
                assert_ne!(from, to);
                assert_eq!(merged(&from, &patch), to, "{from} -> {to} via {patch}");
            }
        }
    }
    let patch = patch_between(
        &json!({ "a": { "x": 1, "y": 2 }, "b": 1 }),
        &json!({ "a": { "x": 1 }, "b": 1 }),
    );
    assert_eq!(patch, Some(json!({ "a": { "y": null } })));
}

fn base() -> Value {
    json!({
        "modules": {
            "sensor": { "source": "oci://r/sensor:1", "tick-ms": 500 },
            "filter": { "source": "oci://r/filter:1" }
        },
        "routes": { "uplink": { "from": "filter/out", "to": "$upstream" } }
    })
}

#[test]
fn effective_merges_the_twin_over_the_base() {
    let desired = json!({
        "$version": 12,
        "modules": { "filter": { "tick-ms": 100 }, "alarm": { "source": "oci://r/alarm:1" } },
        "routes": { "s2f": { "from": "sensor/readings", "to": "filter/in" },
                    "f2a": { "from": "filter/alerts", "to": "alarm/in", "durable": true } }
    });
    let doc = DeploymentDoc::effective(&base(), &desired).unwrap();
    assert_eq!(
        doc.modules.keys().collect::<Vec<_>>(),
        ["alarm", "filter", "sensor"]
    );
    assert_eq!(doc.modules["filter"].tick_ms, Some(100));
    assert_eq!(doc.modules["filter"].source, "oci://r/filter:1");
    assert_eq!(doc.routes.len(), 3);
}

#[test]
fn effective_null_removes_and_absent_sides_are_empty() {
    let desired = json!({ "modules": { "sensor": null }, "routes": { "uplink": null } });
    let doc = DeploymentDoc::effective(&base(), &desired).unwrap();
    assert_eq!(doc.modules.keys().collect::<Vec<_>>(), ["filter"]);
    assert!(doc.routes.is_empty());
    let base_only = DeploymentDoc::effective(&base(), &Value::Null).unwrap();
    assert_eq!(base_only, DeploymentDoc::from_value(&base()).unwrap());
    let twin_only = DeploymentDoc::effective(&Value::Null, &base()).unwrap();
    assert_eq!(twin_only, base_only);
    assert_eq!(
        DeploymentDoc::effective(&Value::Null, &Value::Null),
        Ok(DeploymentDoc::default())
    );
}

#[test]
fn effective_validates_the_whole() {
    // Removing a module that a base route names breaks the route.
    let desired = json!({ "modules": { "filter": null } });
    let err = DeploymentDoc::effective(&base(), &desired).unwrap_err();
    assert_eq!(
        err.to_string(),
        "routes.uplink.from: unknown module `filter`"
    );
    // A cycle across the two documents.
    let desired = json!({ "routes": {
        "a": { "from": "sensor/o", "to": "filter/i" }, "b": { "from": "filter/o", "to": "sensor/i" } } });
    let err = DeploymentDoc::effective(&base(), &desired).unwrap_err();
    assert_eq!(
        err.to_string(),
        "routes: a cycle between modules: filter -> sensor -> filter"
    );
}

#[test]
fn diff_categories() {
    let running = DeploymentDoc::from_value(&json!({ "modules": {
        "gone": { "source": "g" },
        "same": { "source": "s", "config": { "k": 1 } },
        "bin": { "source": "b", "config": { "k": 1 } },
        "sha": { "source": "h", "sha256": "a".repeat(64) },
        "set": { "source": "t", "tick-ms": 5 },
        "cfg": { "source": "c", "config": { "k": 1 } },
        "both": { "source": "o", "config": { "k": 1 } }
    } }))
    .unwrap();
    let mut desired = running.clone();
    desired.modules.remove("gone");
    desired.modules.insert("new".into(), ModuleDoc::new("n"));
    let modules = &mut desired.modules;
    let edit = |m: Option<&mut ModuleDoc>, f: &dyn Fn(&mut ModuleDoc)| f(m.unwrap());
    edit(modules.get_mut("bin"), &|m| {
        m.source = "b2".into();
        m.config = json!({ "k": 2 });
        m.tick_ms = Some(1);
    });
    edit(modules.get_mut("sha"), &|m| m.sha256 = Some("b".repeat(64)));
    edit(modules.get_mut("set"), &|m| m.tick_ms = Some(6));
    edit(modules.get_mut("cfg"), &|m| m.config = json!({ "k": 2 }));
    edit(modules.get_mut("both"), &|m| {
        m.status = DesiredStatus::Stopped;
        m.config = json!({});
    });
    let diff = desired.diff(&running);
    assert_eq!(diff.added, ["new"]);
    assert_eq!(diff.removed, ["gone"]);
    assert_eq!(diff.binary_changed, ["bin", "sha"]);
    assert_eq!(diff.settings_changed, ["both", "set"]);
    assert_eq!(diff.config_changed, ["bin", "both", "cfg"]);
    assert!(!diff.routes_changed);
    assert!(!diff.is_empty());
    assert!(running.diff(&running).is_empty());
}

#[test]
fn diff_sees_every_setting_and_routes() {
    let running =
        DeploymentDoc::from_value(&json!({ "modules": { "m": { "source": "s" } } })).unwrap();
    let edits: [&dyn Fn(&mut ModuleDoc); 7] = [
        &|m| m.allowed_hosts.push("h".into()),
        &|m| m.tick_ms = Some(1),
        &|m| m.limits.inbox = Some(1),
        &|m| m.method_timeout_ms = Some(1),
        &|m| m.data_dir = true,
        &|m| m.restart_policy = RestartPolicy::Never,
        &|m| m.status = DesiredStatus::Stopped,
    ];
    for edit in edits {
        let mut desired = running.clone();
        if let Some(m) = desired.modules.get_mut("m") {
            edit(m);
        }
        let diff = desired.diff(&running);
        assert_eq!(diff.settings_changed, ["m"]);
        assert!(diff.binary_changed.is_empty() && diff.config_changed.is_empty());
    }
    let mut desired = running.clone();
    desired
        .routes
        .insert("r".into(), RouteDoc::new("m/o", "$upstream"));
    let diff = desired.diff(&running);
    assert!(diff.routes_changed);
    assert_eq!(
        diff,
        Diff {
            routes_changed: true,
            ..Diff::default()
        }
    );
}

#[test]
fn odd_values_anywhere_give_errors_not_panics() {
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(""),
        json!("a/b/c"),
        json!("$upstream"),
        json!([]),
        json!([null, {}]),
        json!({}),
        json!({ "$version": 1 }),
        json!({ "a": { "b": { "c": [1, { "d": null }] } } }),
    ];
    let doc = json!({
        "modules": {
            "a": { "source": "s", "sha256": "0".repeat(64), "config": {}, "allowed-hosts": ["h"],
                   "tick-ms": 1, "limits": { "memory-mb": 1, "cpu-ms-per-call": 1, "inbox": 1,
                   "state-kb": 1 }, "method-timeout-ms": 1, "data-dir": true,
                   "restart-policy": "never", "status": "stopped" },
            "b": { "source": "s" }
        },
        "routes": { "r": { "from": "a/o", "to": "b/i", "durable": true } }
    });
    let mut paths: Vec<Vec<&str>> = vec![vec![], vec!["modules"], vec!["routes"]];
    for key in [
        "source",
        "sha256",
        "config",
        "allowed-hosts",
        "tick-ms",
        "limits",
    ] {
        paths.push(vec!["modules", "a", key]);
    }
    for key in [
        "method-timeout-ms",
        "data-dir",
        "restart-policy",
        "status",
        "new",
    ] {
        paths.push(vec!["modules", "a", key]);
    }
    for key in ["memory-mb", "cpu-ms-per-call", "inbox", "state-kb"] {
        paths.push(vec!["modules", "a", "limits", key]);
    }
    for key in ["from", "to", "durable"] {
        paths.push(vec!["routes", "r", key]);
    }
    paths.extend([
        vec!["modules", "a"],
        vec!["routes", "r"],
        vec!["modules", "Bad"],
    ]);
    for path in &paths {
        for value in &odd {
            let mut patch = value.clone();
            for key in path.iter().rev() {
                patch = json!({ *key: patch });
            }
            let whole = merged(&doc, &patch);
            let parsed = DeploymentDoc::from_value(&whole);
            if !patch.is_null() {
                // (A null twin section means "none", not "remove everything".)
                assert_eq!(DeploymentDoc::effective(&doc, &patch), parsed);
            }
            if let Err(err) = parsed {
                assert!(!err.to_string().contains('\n') && !err.path().is_empty());
            }
        }
    }
}

/// Every upstream's desired document goes through `effective`: a module overlay that is not an
/// object (which RFC 7396 would let replace the file's whole table) is refused, module named.
#[test]
fn an_overlay_config_that_is_not_an_object_is_refused() {
    let base =
        json!({"modules": {"filter": {"source": "file:///f.wasm", "config": {"threshold": 20}}}});
    for config in [json!("threshold=25"), json!(25), json!([1]), json!(false)] {
        let desired = json!({"modules": {"filter": {"config": config}}});
        let err = DeploymentDoc::effective(&base, &desired).unwrap_err();
        assert_eq!(err.path(), "modules.filter.config", "{config}: {err}");
    }
    let reset = DeploymentDoc::effective(&base, &json!({"modules": {"filter": {"config": null}}}));
    assert_eq!(reset.unwrap().modules["filter"].config, json!({}));
}
