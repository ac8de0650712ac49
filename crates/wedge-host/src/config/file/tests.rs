//! Tests of `wedge.toml` parsing: good files resolve, every bad one names file, line and field.

use super::module::{COMPONENT_HEADER, CORE_MODULE_HEADER};
use super::*;
use wedge_runtime::spec::{C2D_OUTPUT, DEFAULT_MEMORY_MB, Target, UPSTREAM};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.wasm"), COMPONENT_HEADER).unwrap();
        std::fs::write(dir.path().join("core.wasm"), CORE_MODULE_HEADER).unwrap();
        std::fs::write(dir.path().join("text.wasm"), "hello").unwrap();
        Fixture { dir }
    }

    fn parse(&self, text: &str) -> Result<Deployment, String> {
        Deployment::parse(&self.dir.path().join("wedge.toml"), text).map_err(|e| e.to_string())
    }
}

const GOOD: &str = r#"
[modules.sensor]
path = "good.wasm"
tick-ms = 500
config = { temperature = { min = 1.5, max = 2 } }

[modules.filter]
path = "good.wasm"
allowed-hosts = ["http://127.0.0.1:8080"]

[routes]
readings = { from = "sensor/readings", to = "filter/input" }
alerts = { from = "filter/alerts", to = "$upstream" }
"#;

#[test]
fn a_good_file_gives_resolved_modules_and_routes() {
    let fx = Fixture::new();
    let d = fx.parse(GOOD).unwrap();
    assert_eq!(d.upstream, UpstreamSpec::Local);
    let sensor = &d.modules["sensor"];
    assert_eq!(sensor.path, fx.dir.path().join("good.wasm"));
    assert_eq!(sensor.spec.tick_ms, Some(500));
    assert_eq!(sensor.spec.config["temperature"]["min"], 1.5);
    assert_eq!(sensor.spec.memory_mb, DEFAULT_MEMORY_MB);
    assert!(
        d.modules["filter"]
            .spec
            .allowed_hosts
            .allows("http", "127.0.0.1", 8080)
    );
    assert_eq!(d.routes["alerts"].to, Target::Upstream);
    assert_eq!(
        d.routes["readings"].to,
        Target::Module {
            module: "filter".into(),
            input: "input".into()
        }
    );
}

fn assert_error(text: &str, expected: &[&str]) {
    let err = Fixture::new().parse(text).unwrap_err();
    for needle in expected {
        assert!(err.contains(needle), "`{err}` should contain `{needle}`");
    }
}

#[test]
fn unknown_field_names_line_and_field() {
    assert_error(
        "[modules.sensor]\npath = \"good.wasm\"\ntick = 5\n",
        &["wedge.toml:3:1", "unknown field `tick`", "tick-ms"],
    );
}

#[test]
fn missing_wasm_file_names_the_path() {
    assert_error(
        "[modules.sensor]\npath = \"nope.wasm\"\n",
        &["wedge.toml:2:8", "modules.sensor.path", "nope.wasm"],
    );
}

#[test]
fn core_module_and_garbage_are_not_components() {
    assert_error(
        "[modules.a]\npath = \"core.wasm\"\n",
        &[
            "modules.a.path",
            "core WebAssembly module, not a component",
            "wasm32-wasip2",
        ],
    );
    assert_error(
        "[modules.a]\npath = \"text.wasm\"\n",
        &["modules.a.path", "not a WebAssembly component"],
    );
}

#[test]
fn route_to_unknown_module_is_refused() {
    assert_error(
        "[modules.a]\npath = \"good.wasm\"\n[routes]\nr = { from = \"a/out\", to = \"ghost/in\" }\n",
        &["wedge.toml:4:28", "routes.r.to", "unknown module `ghost`"],
    );
    assert_error(
        "[modules.a]\npath = \"good.wasm\"\n[routes]\nr = { from = \"a\", to = \"$upstream\" }\n",
        &["routes.r.from", "expected `module/output`"],
    );
}

#[test]
fn iothub_upstream_takes_one_connection_string_source() {
    let fx = Fixture::new();
    let d = fx
        .parse("[upstream]\nkind = \"iothub\"\nconnection-string-env = \"HUB\"\nca-file = \"ca.pem\"\n")
        .unwrap();
    assert_eq!(
        d.upstream,
        UpstreamSpec::IotHub {
            identity: HubIdentity::ConnectionString(SecretSource::Env("HUB".into())),
            ca_file: Some(fx.dir.path().join("ca.pem")),
            cert_file: None,
            key_file: None,
            port: None,
        }
    );
    let err = fx
        .parse("[upstream]\nkind = \"iothub\"\nconnection-string = \"x\"\nconnection-string-env = \"HUB\"\n")
        .unwrap_err();
    assert!(
        err.contains("wedge.toml:1:1") && err.contains("only one of"),
        "{err}"
    );
    let err = fx.parse("[upstream]\nkind = \"iothub\"\n").unwrap_err();
    assert!(err.contains("give one of `connection-string`"), "{err}");
    let secret = format!("{:?}", SecretSource::Inline("SharedAccessKey=abc".into()));
    assert!(!secret.contains("abc"), "{secret}");
}

#[test]
fn iothub_dps_section_gives_the_provisioning_settings() {
    let fx = Fixture::new();
    let d = fx
        .parse("[upstream]\nkind = \"iothub\"\nport = 9000\n[upstream.dps]\nid-scope = \"0ne00000A0A\"\ngroup-key-file = \"keys/group.key\"\nglobal-endpoint = \"127.0.0.1:8884\"\npayload = { site = \"hall 7\" }\nmodel-id = \"dtmi:x:y;1\"\n")
        .unwrap();
    let UpstreamSpec::IotHub {
        identity: HubIdentity::Dps(dps),
        port,
        ..
    } = d.upstream
    else {
        panic!("{:?}", d.upstream)
    };
    assert_eq!(port, Some(9000));
    assert_eq!(dps.id_scope, "0ne00000A0A");
    assert_eq!(dps.registration_id, None);
    assert_eq!(
        dps.attestation,
        crate::config::DpsAttestationSpec::GroupKey(SecretSource::File(
            fx.dir.path().join("keys/group.key")
        ))
    );
    assert_eq!((dps.host.as_str(), dps.port), ("127.0.0.1", 8884));
    assert_eq!(
        dps.payload,
        Some(serde_json::json!({"site": "hall 7", "modelId": "dtmi:x:y;1"}))
    );
    // The public endpoint by default.
    let d = fx
        .parse("[upstream]\nkind = \"iothub\"\n[upstream.dps]\nid-scope = \"s\"\nregistration-id = \"dev-1\"\nsymmetric-key-env = \"KEY\"\n")
        .unwrap();
    let UpstreamSpec::IotHub {
        identity: HubIdentity::Dps(dps),
        ..
    } = d.upstream
    else {
        panic!()
    };
    assert_eq!(
        (dps.host.as_str(), dps.port),
        ("global.azure-devices-provisioning.net", 8883)
    );
}

#[test]
fn iothub_dps_errors_name_the_line_and_field() {
    for (fields, expected) in [
        ("", "upstream.dps: needs an attestation"),
        (
            "symmetric-key-file = \"a\"\ngroup-key-file = \"b\"",
            "upstream.dps: give one attestation",
        ),
        (
            "symmetric-key = \"a2V5\"\nsymmetric-key-env = \"K\"",
            "give only one of `symmetric-key`",
        ),
        (
            "cert-file = \"d.pem\"",
            "upstream.dps.cert-file: needs `key-file`",
        ),
        (
            "group-key-file = \"g\"\nregistration-id = \"-bad id\"",
            "upstream.dps.registration-id: `-bad id` is not a DPS registration id",
        ),
        (
            "group-key-file = \"g\"\nglobal-endpoint = \"h:0\"",
            "upstream.dps.global-endpoint: `0` is not a port",
        ),
        (
            "group-key-file = \"g\"\nmodel-id = \"thermostat\"",
            "upstream.dps.model-id: must be a DTDL model id",
        ),
        (
            "group-key-file = \"g\"\nidscope = \"x\"",
            "unknown field `idscope`",
        ),
    ] {
        let err = Fixture::new()
            .parse(&format!(
                "\n[upstream]\nkind = \"iothub\"\n[upstream.dps]\nid-scope = \"0ne1\"\n{fields}\n"
            ))
            .unwrap_err();
        assert!(
            err.contains("wedge.toml:") && err.contains(expected),
            "`{err}` should contain `{expected}`"
        );
        assert!(!err.contains("a2V5"), "{err}");
    }
    for (upstream, expected) in [
        (
            "connection-string-env = \"HUB\"",
            "upstream.dps: give either a connection string or an `[upstream.dps]` section",
        ),
        (
            "cert-file = \"d.pem\"\nkey-file = \"d.key\"",
            "upstream.cert-file: with DPS the device certificate goes in `[upstream.dps]`",
        ),
    ] {
        let err = Fixture::new()
            .parse(&format!(
                "\n[upstream]\nkind = \"iothub\"\n{upstream}\n[upstream.dps]\nid-scope = \"s\"\ngroup-key-file = \"g\"\n"
            ))
            .unwrap_err();
        assert!(
            err.contains("wedge.toml:2:1: ") && err.contains(expected),
            "`{err}` should contain `{expected}`"
        );
    }
    let err = Fixture::new()
        .parse("[upstream]\nkind = \"iothub\"\n[upstream.dps]\nid-scope = \"0ne/1\"\ngroup-key-file = \"g\"\n")
        .unwrap_err();
    assert!(err.contains("upstream.dps.id-scope"), "{err}");
}

#[test]
fn iothub_x509_takes_a_certificate_and_key_relative_to_the_file() {
    let fx = Fixture::new();
    let d = fx
        .parse("[upstream]\nkind = \"iothub\"\nconnection-string = \"HostName=h;DeviceId=d;x509=true\"\ncert-file = \"certs/dev.pem\"\nkey-file = \"/secure/dev.key\"\n")
        .unwrap();
    let UpstreamSpec::IotHub {
        cert_file,
        key_file,
        ..
    } = d.upstream
    else {
        panic!("{:?}", d.upstream)
    };
    assert_eq!(cert_file, Some(fx.dir.path().join("certs/dev.pem")));
    assert_eq!(key_file, Some(PathBuf::from("/secure/dev.key")));
    // From the environment or a file, the connection string is only known at start.
    fx.parse("[upstream]\nkind = \"iothub\"\nconnection-string-env = \"HUB\"\ncert-file = \"dev.pem\"\nkey-file = \"dev.key\"\n")
        .unwrap();
}

#[test]
fn iothub_certificate_and_key_go_together_and_only_with_x509() {
    for (fields, expected) in [
        (
            "connection-string = \"HostName=h;DeviceId=d;x509=true\"\ncert-file = \"dev.pem\"",
            "upstream.cert-file: needs `key-file`",
        ),
        (
            "connection-string-file = \"hub.conn\"\nkey-file = \"dev.key\"",
            "upstream.key-file: needs `cert-file`",
        ),
        (
            "connection-string = \"HostName=h;DeviceId=d;x509=true\"",
            "upstream.connection-string: `x509=true` authenticates with a device certificate: set `cert-file` and `key-file`",
        ),
        (
            "connection-string = \"HostName=h;DeviceId=d;SharedAccessKey=a2V5\"\ncert-file = \"dev.pem\"\nkey-file = \"dev.key\"",
            "upstream.cert-file: a device certificate needs a connection string with `x509=true`",
        ),
    ] {
        let err = Fixture::new()
            .parse(&format!("\n[upstream]\nkind = \"iothub\"\n{fields}\n"))
            .unwrap_err();
        assert!(
            err.contains("wedge.toml:2:1: ") && err.contains(expected),
            "`{err}` should contain `{expected}`"
        );
        assert!(!err.contains("a2V5"), "{err}");
    }
}

#[test]
fn mqtt_upstream_has_defaults_and_checks_its_topics() {
    let fx = Fixture::new();
    let d = fx
        .parse("[upstream]\nkind = \"mqtt\"\nhost = \"broker\"\ndevice = \"dev1\"\nusername = \"u\"\npassword-env = \"PW\"\nconfig-topic = \"wedge/{device}/config\"\n")
        .unwrap();
    let UpstreamSpec::Mqtt(mqtt) = d.upstream else {
        panic!("{:?}", d.upstream)
    };
    assert!(mqtt.tls);
    assert_eq!(mqtt.password, Some(SecretSource::Env("PW".into())));
    assert_eq!(
        mqtt.telemetry_topic.render("dev1", "m", "o").unwrap(),
        "wedge/dev1/m/o"
    );
    assert_eq!(
        mqtt.config_topic.unwrap().render("dev1", "", "").unwrap(),
        "wedge/dev1/config"
    );
    for (extra, expected) in [
        (
            "telemetry-topic = \"a/{serial}\"",
            "upstream.telemetry-topic: topic template `a/{serial}`: unknown placeholder",
        ),
        ("reported-topic = \"a/{module}\"", "upstream.reported-topic"),
        ("config-topic = \"a/#\"", "upstream.config-topic"),
        ("password = \"p\"", "a password needs a `username`"),
    ] {
        let err = fx
            .parse(&format!(
                "[upstream]\nkind = \"mqtt\"\nhost = \"b\"\ndevice = \"d\"\n{extra}\n"
            ))
            .unwrap_err();
        assert!(
            err.contains("wedge.toml:1:1") && err.contains(expected),
            "{err}"
        );
    }
}

#[test]
fn cloud_to_device_routes_start_at_the_hub() {
    let fx = Fixture::new();
    let d = fx
        .parse("[modules.a]\npath = \"good.wasm\"\n[routes]\nc = { from = \"$upstream/c2d\", to = \"a/commands\" }\n")
        .unwrap();
    assert_eq!(
        (
            d.routes["c"].from_module.as_str(),
            d.routes["c"].from_output.as_str()
        ),
        (UPSTREAM, C2D_OUTPUT)
    );
    let err = fx
        .parse("[routes]\nc = { from = \"$upstream/c2d\", to = \"$upstream\" }\n")
        .unwrap_err();
    assert!(
        err.contains("routes.c.to") && err.contains("back to it"),
        "{err}"
    );
    let err = fx
        .parse("[routes]\nc = { from = \"$upstream/x\", to = \"$upstream\" }\n")
        .unwrap_err();
    assert!(err.contains("`$upstream/c2d`"), "{err}");
}

#[test]
fn bad_values_are_refused() {
    assert_error(
        "[modules.A]\npath = \"good.wasm\"\n",
        &["modules.A", "module name"],
    );
    assert_error(
        "[modules.a]\npath = \"good.wasm\"\ntick-ms = 0\n",
        &["wedge.toml:3:11", "modules.a.tick-ms", "greater than 0"],
    );
    assert_error(
        "[modules.a]\npath = \"good.wasm\"\nallowed-hosts = [\"example.com\"]\n",
        &["modules.a.allowed-hosts", "no scheme"],
    );
    assert_error(
        "[upstream]\nkind = \"carrier-pigeon\"\n",
        &["wedge.toml:", "carrier-pigeon"],
    );
    assert_error("[modules.a\n", &["wedge.toml:1:"]);
}

#[test]
fn durable_routes_lead_to_module_inputs() {
    let fx = Fixture::new();
    let d = fx
        .parse("[modules.a]\npath = \"good.wasm\"\n[modules.b]\npath = \"good.wasm\"\n[routes]\nr = { from = \"a/out\", to = \"b/in\", durable = true }\n")
        .unwrap();
    assert!(d.routes["r"].durable);
    let err = fx
        .parse("[modules.a]\npath = \"good.wasm\"\n[routes]\nr = { from = \"a/out\", to = \"$upstream\", durable = true }\n")
        .unwrap_err();
    assert!(
        err.contains("routes.r.durable") && err.contains("always durable"),
        "{err}"
    );
}

#[test]
fn paths_are_absolute_when_the_file_is_named_relatively() {
    let fx = Fixture::new();
    let cwd = std::env::current_dir().unwrap();
    let relative = pathdiff(fx.dir.path(), &cwd).join("wedge.toml");
    assert!(relative.is_relative());
    let d = Deployment::parse(&relative, GOOD).unwrap();
    let path = &d.modules["sensor"].path;
    assert!(path.is_absolute(), "{}", path.display());
    assert!(path.is_file(), "{}", path.display());
}

/// `target` relative to `from` (both absolute), with `..` as needed.
fn pathdiff(target: &Path, from: &Path) -> PathBuf {
    let (target, from): (Vec<_>, Vec<_>) =
        (target.components().collect(), from.components().collect());
    let common = target.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &target[common..] {
        out.push(part);
    }
    out
}

#[test]
fn metrics_are_off_unless_a_listen_address_is_given() {
    let fx = Fixture::new();
    assert_eq!(fx.parse(GOOD).unwrap().metrics, None);
    let on = fx
        .parse("[metrics]\nlisten = \"127.0.0.1:9600\"\noffline-grace-s = 5\n")
        .unwrap();
    let metrics = on.metrics.unwrap();
    assert_eq!(metrics.listen, "127.0.0.1:9600".parse().unwrap());
    assert_eq!(metrics.offline_grace, std::time::Duration::from_secs(5));
    let default = fx.parse("[metrics]\nlisten = \"[::1]:9600\"\n").unwrap();
    assert_eq!(
        default.metrics.unwrap().offline_grace,
        crate::config::DEFAULT_OFFLINE_GRACE
    );
    assert_error(
        "[metrics]\nlisten = \"localhost:9600\"\n",
        &[
            "wedge.toml:2:10",
            "metrics.listen",
            "`localhost:9600`",
            "IP address",
        ],
    );
    assert_error(
        "[metrics]\nlisten = \"127.0.0.1\"\n",
        &["wedge.toml:2:10", "metrics.listen"],
    );
    assert_error(
        "[metrics]\nport = 9600\n",
        &["wedge.toml:2:1", "unknown field `port`"],
    );
}
