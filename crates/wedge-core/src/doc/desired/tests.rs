use serde_json::{Value, json};

use super::*;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn example() -> Value {
    json!({
        "modules": {
            "sensor": {
                "source": "oci://registry.example.com/wedge/sensor:1.2.0",
                "sha256": SHA,
                "config": { "temperature": { "min": 20, "max": 35 } },
                "allowed-hosts": ["https://api.example.com"],
                "tick-ms": 500,
                "limits": {
                    "memory-mb": 64, "cpu-ms-per-call": 1000, "inbox": 1024, "state-kb": 1024, "log-kb": 64,
                    "cpu-ms-per-second": 250, "sockets": 1024, "http-body-kb": 1024, "http-timeout-ms": 30000, "http-concurrency": 16
                },
                "method-timeout-ms": 30000,
                "data-dir": false,
                "restart-policy": "always",
                "status": "running"
            }
        },
        "routes": { "uplink": { "from": "sensor/readings", "to": "$upstream", "durable": false } }
    })
}

/// The example with `edit` applied as a merge patch.
fn example_with(edit: Value) -> Value {
    crate::json::merged(&example(), &edit)
}

#[track_caller]
fn error(value: Value) -> String {
    match DeploymentDoc::from_value(&value) {
        Ok(doc) => panic!("accepted: {doc:?}"),
        Err(err) => err.to_string(),
    }
}

fn all_limits() -> Limits {
    let (memory_mb, cpu_ms_per_call, inbox, state_kb) =
        (Some(64), Some(1000), Some(1024), Some(1024));
    Limits {
        memory_mb,
        cpu_ms_per_call,
        inbox,
        state_kb,
        log_kb: Some(64),
        sockets: Some(1024),
        cpu_ms_per_second: Some(250),
        http_body_kb: Some(1024),
        http_timeout_ms: Some(30_000),
        http_concurrency: Some(16),
    }
}

#[test]
fn parses_the_example() {
    let doc = DeploymentDoc::from_value(&example()).unwrap();
    let sensor = &doc.modules["sensor"];
    assert_eq!(
        sensor.source,
        "oci://registry.example.com/wedge/sensor:1.2.0"
    );
    assert_eq!(sensor.sha256.as_deref(), Some(SHA));
    assert_eq!(
        sensor.config,
        json!({ "temperature": { "min": 20, "max": 35 } })
    );
    assert_eq!(sensor.allowed_hosts, ["https://api.example.com"]);
    assert_eq!(sensor.tick_ms, Some(500));
    assert_eq!(sensor.limits, all_limits());
    assert_eq!(sensor.method_timeout_ms, Some(30000));
    assert!(!sensor.data_dir);
    assert_eq!(sensor.restart_policy, RestartPolicy::Always);
    assert_eq!(sensor.status, DesiredStatus::Running);
    let uplink = &doc.routes["uplink"];
    assert_eq!(uplink, &RouteDoc::new("sensor/readings", "$upstream"));
    assert_eq!(
        uplink.source(),
        Some(RouteSource::Module {
            module: "sensor",
            output: "readings"
        })
    );
    assert_eq!(uplink.sink(), Some(RouteSink::Upstream));
}

#[test]
fn defaults_and_empty_document() {
    assert_eq!(
        DeploymentDoc::from_value(&json!({})).unwrap(),
        DeploymentDoc::default()
    );
    let doc = DeploymentDoc::from_value(&json!({ "modules": { "m": { "source": "x" } } })).unwrap();
    assert_eq!(doc.modules["m"], ModuleDoc::new("x"));
    assert_eq!(doc.modules["m"].config, json!({}));
    assert!(doc.routes.is_empty());
}

#[test]
fn enums_use_kebab_case() {
    let value = example_with(json!({ "modules": { "sensor": {
        "restart-policy": "on-failure", "status": "stopped", "data-dir": true } } }));
    let doc = DeploymentDoc::from_value(&value).unwrap();
    assert_eq!(
        doc.modules["sensor"].restart_policy,
        RestartPolicy::OnFailure
    );
    assert_eq!(doc.modules["sensor"].status, DesiredStatus::Stopped);
    assert!(doc.modules["sensor"].data_dir);
    let never = example_with(json!({ "modules": { "sensor": { "restart-policy": "never" } } }));
    let doc = DeploymentDoc::from_value(&never).unwrap();
    assert_eq!(doc.modules["sensor"].restart_policy, RestartPolicy::Never);
    assert_eq!(
        doc.to_value()["modules"]["sensor"]["restart-policy"],
        "never"
    );
}

#[test]
fn to_value_round_trips_and_skips_defaults() {
    let doc = DeploymentDoc::from_value(&example()).unwrap();
    assert_eq!(DeploymentDoc::from_value(&doc.to_value()).unwrap(), doc);
    let value = doc.to_value();
    let sensor = value["modules"]["sensor"].as_object().unwrap();
    for skipped in ["data-dir", "restart-policy", "status"] {
        assert!(!sensor.contains_key(skipped), "{skipped} written");
    }
    assert!(
        !value["routes"]["uplink"]
            .as_object()
            .unwrap()
            .contains_key("durable")
    );
    let minimal = DeploymentDoc::from_value(&json!({ "modules": { "m": { "source": "x" } } }));
    assert_eq!(
        minimal.unwrap().to_value(),
        json!({ "modules": { "m": { "source": "x" } } })
    );
    assert_eq!(DeploymentDoc::default().to_value(), json!({}));
}

#[test]
fn dollar_keys_are_ignored_except_in_config() {
    let value = json!({
        "$version": 7, "$metadata": { "$lastUpdated": "2026-12-01T10:00:00Z" },
        "modules": {
            "$metadata": {},
            "sensor": {
                "$lastUpdated": "x", "source": "s",
                "limits": { "$lastUpdated": "x", "inbox": 4 },
                "config": { "$keep": 1, "a": { "$too": 2 } }
            }
        },
        "routes": { "$version": 1, "r": { "$lastUpdated": "x", "from": "sensor/o", "to": "$upstream" } }
    });
    let doc = DeploymentDoc::from_value(&value).unwrap();
    assert_eq!(doc.modules.len(), 1);
    assert_eq!(doc.modules["sensor"].limits.inbox, Some(4));
    assert_eq!(
        doc.modules["sensor"].config,
        json!({ "$keep": 1, "a": { "$too": 2 } })
    );
    assert_eq!(doc.routes.len(), 1);
}

#[test]
fn serde_errors_name_the_path() {
    let zero = example_with(json!({ "modules": { "sensor": { "tick-ms": "x" } } }));
    assert_eq!(
        error(zero),
        r#"modules.sensor.tick-ms: invalid type: string "x", expected u64"#
    );
    let missing = json!({ "modules": { "sensor": { "sha256": SHA } } });
    assert_eq!(error(missing), "modules.sensor: missing field `source`");
    let negative = example_with(json!({ "modules": { "sensor": { "limits": { "inbox": -1 } } } }));
    assert_eq!(
        error(negative),
        "modules.sensor.limits.inbox: invalid value: integer `-1`, expected u64"
    );
    let policy =
        example_with(json!({ "modules": { "sensor": { "restart-policy": "sometimes" } } }));
    assert_eq!(
        error(policy),
        "modules.sensor.restart-policy: unknown variant `sometimes`, \
         expected one of `always`, `on-failure`, `never`"
    );
    let host = example_with(json!({ "modules": { "sensor": { "allowed-hosts": ["a", 3] } } }));
    assert_eq!(
        error(host),
        "modules.sensor.allowed-hosts[1]: invalid type: integer `3`, expected a string"
    );
    let not_module = json!({ "modules": { "sensor": "oci://x" } });
    assert_eq!(
        error(not_module),
        r#"modules.sensor: invalid type: string "oci://x", expected a module object"#
    );
    let route = json!({ "routes": { "r": { "from": "a/b" } } });
    assert_eq!(error(route), "routes.r: missing field `to`");
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let top = DeploymentDoc::from_value(&json!({ "module": {} })).unwrap_err();
    assert_eq!(
        (top.path(), top.to_string().starts_with("module: unknown")),
        ("module", true)
    );
    assert!(
        top.message()
            .starts_with("unknown field `module`, expected"),
        "{top}"
    );
    let value = example_with(json!({ "modules": { "sensor": { "colour": "red" } } }));
    let err = DeploymentDoc::from_value(&value).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("modules.sensor.colour: unknown field `colour`"),
        "{err}"
    );
    let value = example_with(json!({ "modules": { "sensor": { "limits": { "disk-mb": 1 } } } }));
    let err = DeploymentDoc::from_value(&value).unwrap_err();
    assert!(
        err.message().starts_with("unknown field `disk-mb`"),
        "{err}"
    );
    assert!(err.path().starts_with("modules.sensor.limits"), "{err}");
}

#[test]
fn the_document_must_be_an_object() {
    for value in [json!(null), json!([]), json!("x"), json!(1)] {
        let err = DeploymentDoc::from_value(&value).unwrap_err();
        assert_eq!(err.to_string(), ".: expected a deployment object");
    }
}

#[test]
fn numbers_must_be_positive() {
    for (field, patch) in [
        ("limits.memory-mb", json!({ "limits": { "memory-mb": 0 } })),
        (
            "limits.cpu-ms-per-call",
            json!({ "limits": { "cpu-ms-per-call": 0 } }),
        ),
        ("limits.inbox", json!({ "limits": { "inbox": 0 } })),
        ("limits.state-kb", json!({ "limits": { "state-kb": 0 } })),
        ("tick-ms", json!({ "tick-ms": 0 })),
        ("method-timeout-ms", json!({ "method-timeout-ms": 0 })),
    ] {
        let value = example_with(json!({ "modules": { "sensor": patch } }));
        assert_eq!(
            error(value),
            format!("modules.sensor.{field}: must be greater than 0")
        );
    }
}

#[test]
fn module_names() {
    let long = format!("a{}", "b".repeat(63));
    for good in ["a", "sensor", "a-1_b", long.as_str()] {
        assert!(is_valid_module_name(good), "{good}");
    }
    let too_long = format!("{long}c");
    for bad in [
        "",
        "Bad Name",
        "1abc",
        "-a",
        "_a",
        "a.b",
        "a/b",
        "é",
        "aB",
        "wedge",
        too_long.as_str(),
    ] {
        assert!(!is_valid_module_name(bad), "{bad}");
    }
    let value = json!({ "modules": { "Bad Name": { "source": "x" } } });
    assert_eq!(error(value), format!("modules.Bad Name: {NAME_RULE}"));
}

#[test]
fn errors_stay_on_one_line() {
    let value = json!({ "modules": { "bad\nname": { "source": "x" } } });
    let err = DeploymentDoc::from_value(&value).unwrap_err();
    assert!(!err.to_string().contains('\n'), "{err}");
    assert_eq!(err.path(), "modules.bad\\nname");
    let value = json!({ "modules": { "m": { "source": "x", "a\nb": 1 } } });
    assert!(!error(value).contains('\n'));
}

#[test]
fn sha256_format() {
    let upper = SHA.to_uppercase();
    let short = &SHA[..63];
    let long = format!("{SHA}0");
    let not_hex = format!("{}g", &SHA[..63]);
    for bad in [upper.as_str(), short, long.as_str(), not_hex.as_str(), ""] {
        let value = example_with(json!({ "modules": { "sensor": { "sha256": bad } } }));
        assert_eq!(
            error(value),
            "modules.sensor.sha256: expected 64 lowercase hex digits"
        );
    }
}

#[test]
fn config_must_be_an_object() {
    for config in [json!([]), json!("x"), json!(3), json!(null)] {
        let mut value = example();
        value["modules"]["sensor"]["config"] = config;
        assert_eq!(error(value), "modules.sensor.config: must be an object");
    }
}

#[test]
fn source_and_hosts_are_not_checked_here() {
    let value = example_with(json!({ "modules": { "sensor": {
        "source": "", "allowed-hosts": ["not a url", ""] } } }));
    assert!(DeploymentDoc::from_value(&value).is_ok());
}

fn two_modules(routes: Value) -> Value {
    json!({ "modules": { "a": { "source": "x" }, "b": { "source": "y" } }, "routes": routes })
}

#[test]
fn route_endpoints() {
    let ok = [
        ("a/out", "b/in"),
        ("a/out", "$upstream"),
        ("$upstream/c2d", "a/in"),
    ];
    for (from, to) in ok {
        let value = two_modules(json!({ "r": { "from": from, "to": to } }));
        assert!(DeploymentDoc::from_value(&value).is_ok(), "{from} -> {to}");
    }
    let from_msg = "routes.r1.from: expected `module/output` or `$upstream/c2d`";
    for from in [
        "a",
        "a/",
        "/out",
        "a/out/x",
        "$upstream",
        "$upstream/c2d/x",
        "$upstream/x",
        "",
    ] {
        let value = two_modules(json!({ "r1": { "from": from, "to": "b/in" } }));
        assert_eq!(error(value), from_msg, "{from:?}");
    }
    let to_msg = "routes.r1.to: expected `module/input` or `$upstream`";
    for to in [
        "b",
        "b/",
        "/in",
        "b/in/x",
        "$upstream/c2d",
        "$upstream/",
        "$edge/in",
        "",
    ] {
        let value = two_modules(json!({ "r1": { "from": "a/out", "to": to } }));
        assert_eq!(error(value), to_msg, "{to:?}");
    }
}

#[test]
fn routes_name_modules_of_the_document() {
    let value = two_modules(json!({ "r1": { "from": "a/out", "to": "nope/in" } }));
    assert_eq!(error(value), "routes.r1.to: unknown module `nope`");
    let value = two_modules(json!({ "r1": { "from": "nope/out", "to": "b/in" } }));
    assert_eq!(error(value), "routes.r1.from: unknown module `nope`");
}

#[test]
fn durable_and_c2d_rules() {
    let value =
        two_modules(json!({ "r1": { "from": "a/out", "to": "$upstream", "durable": true } }));
    assert_eq!(
        error(value),
        "routes.r1.durable: only a route to a module input can be durable"
    );
    let value = two_modules(json!({ "r1": { "from": "$upstream/c2d", "to": "$upstream" } }));
    assert_eq!(
        error(value),
        "routes.r1.to: a route from `$upstream/c2d` cannot lead back to `$upstream`"
    );
    let value =
        two_modules(json!({ "r1": { "from": "$upstream/c2d", "to": "a/in", "durable": true } }));
    let doc = DeploymentDoc::from_value(&value).unwrap();
    assert!(doc.routes["r1"].durable);
    assert_eq!(doc.to_value()["routes"]["r1"]["durable"], true);
}

fn modules_with_routes(names: &[&str], routes: &[(&str, &str)]) -> Value {
    let modules: Map<String, Value> = names
        .iter()
        .map(|n| (n.to_string(), json!({ "source": "x" })))
        .collect();
    let routes: Map<String, Value> = routes
        .iter()
        .enumerate()
        .map(|(i, (a, b))| {
            (
                format!("r{i}"),
                json!({ "from": format!("{a}/out"), "to": format!("{b}/in") }),
            )
        })
        .collect();
    json!({ "modules": modules, "routes": routes })
}

#[test]
fn route_cycles_are_refused() {
    let two = modules_with_routes(&["a", "b"], &[("b", "a"), ("a", "b")]);
    assert_eq!(error(two), "routes: a cycle between modules: a -> b -> a");
    let three = modules_with_routes(&["x", "m", "c"], &[("x", "m"), ("m", "c"), ("c", "x")]);
    assert_eq!(
        error(three),
        "routes: a cycle between modules: c -> x -> m -> c"
    );
    let selfloop = modules_with_routes(&["a"], &[("a", "a")]);
    assert_eq!(error(selfloop), "routes: a cycle between modules: a -> a");
    // A cycle reached through a module outside it.
    let tail = modules_with_routes(&["a", "p", "q"], &[("a", "p"), ("p", "q"), ("q", "p")]);
    assert_eq!(error(tail), "routes: a cycle between modules: p -> q -> p");
}

#[test]
fn acyclic_routes_are_accepted() {
    // A diamond and a long chain: shared descendants are not cycles.
    let diamond = modules_with_routes(
        &["a", "b", "c", "d"],
        &[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")],
    );
    assert!(DeploymentDoc::from_value(&diamond).is_ok());
    let names: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let chain: Vec<(&str, &str)> = names.windows(2).map(|w| (w[0], w[1])).collect();
    assert!(DeploymentDoc::from_value(&modules_with_routes(&names, &chain)).is_ok());
    let mut ring = chain.clone();
    ring.push((names[299], names[0]));
    let err = error(modules_with_routes(&names, &ring));
    assert!(
        err.starts_with("routes: a cycle between modules: m000 -> m001 -> "),
        "{err}"
    );
    assert!(err.ends_with("m298 -> m299 -> m000"), "{err}");
}

/// A realistic desired document of `n` modules, wrapped as the twin's `{"wedge": …}`.
fn sized_desired(n: usize) -> Value {
    let mut doc = DeploymentDoc::default();
    let name = |i: usize| format!("sensor-{i:02}");
    for i in 0..n {
        let mut module = ModuleDoc::new(format!(
            "oci://myregistry.azurecr.io/wedge/{}:1.0.0",
            name(i)
        ));
        module.sha256 = Some(format!("{:064x}", 0x9f86_d081_884c_7d65_u64 + i as u64));
        module.config = json!({ "unit": "celsius", "interval-s": 10,
            "threshold": { "min": 20, "max": 35 }, "label": "boiler room 3" });
        module.allowed_hosts = vec!["https://ingest.example.com".into()];
        module.tick_ms = Some(1000);
        module.limits = all_limits();
        module.restart_policy = RestartPolicy::OnFailure;
        doc.modules.insert(name(i), module);
        let up = RouteDoc::new(format!("{}/readings", name(i)), UPSTREAM);
        doc.routes.insert(format!("{}-up", name(i)), up);
        // The first module takes cloud-to-device messages: a ring of modules would be a cycle.
        let from = match i {
            0 => UPSTREAM_C2D.to_string(),
            _ => format!("{}/readings", name(i - 1)),
        };
        doc.routes.insert(
            format!("{}-in", name(i)),
            RouteDoc::new(from, format!("{}/input", name(i))),
        );
    }
    let value = doc.to_value();
    assert_eq!(DeploymentDoc::from_value(&value).unwrap(), doc);
    json!({ "wedge": value })
}

fn compact_len(value: &Value) -> usize {
    serde_json::to_string(value).unwrap().len()
}

#[test]
fn twenty_modules_fit_in_a_32k_desired_section() {
    const LIMIT: usize = 32 * 1024;
    assert!(compact_len(&sized_desired(20)) < LIMIT);
    let largest = (1..=1000)
        .take_while(|&n| compact_len(&sized_desired(n)) <= LIMIT)
        .last();
    let per_module = compact_len(&sized_desired(21)) - compact_len(&sized_desired(20));
    eprintln!(
        "desired: 20 modules = {} bytes; {per_module} bytes per module; largest N under 32 KiB = {largest:?}",
        compact_len(&sized_desired(20)),
    );
    assert!(largest.is_some_and(|n| n >= 20));
}

/// The README's example deployment is a valid document: the documentation stays true.
#[test]
fn the_readme_example_is_valid() {
    let readme = include_str!("../../../../../README.md");
    let section = &readme[readme
        .find("## Deployments from the cloud")
        .expect("the README has the section")..];
    let start = section.find("```json\n").expect("a JSON block") + "```json\n".len();
    let end = start + section[start..].find("```").expect("the block ends");
    let example: Value = serde_json::from_str(&section[start..end]).expect("the example is JSON");
    let doc = DeploymentDoc::from_value(&example).unwrap();
    assert_eq!(doc.modules.len(), 2);
    assert_eq!(doc.routes.len(), 3);
}
