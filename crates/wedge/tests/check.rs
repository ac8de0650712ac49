//! `wedge check` end to end: the real binary against a real Mosquitto over TLS (the emulator's
//! broker, with its per-run CA), for a good setup and for each thing an operator gets wrong: a
//! broker certificate for another host, an expired or expiring device certificate, a port
//! nothing listens on, a black-holed address, a data dir that cannot be written, a malformed
//! SAS key. Each must be named on its line, and the exit code must say whether any is an error.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::{Deployment, WEDGE, free_port, module};
use wedge_hub_emulator::{Broker, BrokerOptions};
use wedge_test_artifacts::SENSOR;

const DEVICE: &str = "dev1";
const HUB: &str = "wedge-test.azure-devices.net";
const KEY: &str = "c2VjcmV0LWtleS1mb3Itd2VkZ2UtdGVzdHMtMDEyMzQ1Njc4OQ==";
const DAY: Duration = Duration::from_secs(24 * 3600);

/// What one `wedge check` printed.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The line of check `name` at `level` (`ok`, `warning`, `error`); panics naming what was
    /// printed when there is none.
    fn line(&self, level: &str, name: &str) -> &str {
        let prefix = format!("{level:<7} {name}: ");
        self.stdout
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{}", self.stdout))
    }

    /// The check lines (not the summary).
    fn checks(&self) -> Vec<&str> {
        let lines: Vec<&str> = self.stdout.lines().collect();
        lines[..lines.len() - 1].to_vec()
    }

    fn assert_all_ok(&self) {
        assert!(self.success, "{}\n{}", self.stdout, self.stderr);
        for line in self.checks() {
            assert!(line.starts_with("ok "), "not ok: {line}\n{}", self.stdout);
        }
    }
}

/// Runs `wedge check` on `toml` with a data dir beside it that does not exist yet.
fn check(toml: &str) -> Outcome {
    let deployment = Deployment::new(toml);
    check_in(&deployment, &deployment.dir.path().join("data"), &[])
}

fn check_in(deployment: &Deployment, data_dir: &Path, prefix: &[&str]) -> Outcome {
    let mut command = match prefix {
        [] => Command::new(WEDGE),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(WEDGE);
            command
        }
    };
    let out = command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("check")
        .arg(&deployment.path)
        .output()
        .unwrap();
    Outcome {
        success: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The IoT Hub upstream with a SAS key, through the broker as its gateway, and a module.
fn sas_deployment(broker_port: u16, ca: Option<&Path>, key: &str) -> String {
    let ca = ca
        .map(|ca| format!("ca-file = {ca:?}\n"))
        .unwrap_or_default();
    format!(
        "[upstream]\nkind = \"iothub\"\n\
         connection-string = \"HostName={HUB};DeviceId={DEVICE};GatewayHostName=127.0.0.1;SharedAccessKey={key}\"\n\
         {ca}port = {broker_port}\n\n{}",
        module("sensor", SENSOR, "")
    )
}

fn x509_deployment(broker: &Broker, (cert, key): (&Path, &Path)) -> String {
    format!(
        "[upstream]\nkind = \"iothub\"\n\
         connection-string = \"HostName={HUB};DeviceId={DEVICE};GatewayHostName=127.0.0.1;x509=true\"\n\
         ca-file = {ca:?}\ncert-file = {cert:?}\nkey-file = {key:?}\nport = {port}\n",
        ca = broker.ca_pem_path(),
        port = broker.port(),
    )
}

fn x509_broker() -> Broker {
    Broker::start(BrokerOptions {
        x509_devices: vec![DEVICE.into()],
        ..BrokerOptions::default()
    })
    .unwrap()
}

#[test]
fn a_good_sas_setup_is_all_ok_and_shows_no_secret() {
    let broker = Broker::start(BrokerOptions::default()).unwrap();
    let toml = sas_deployment(broker.port(), Some(&broker.ca_pem_path()), KEY);
    let outcome = check(&toml);
    outcome.assert_all_ok();
    for name in [
        "deployment",
        "module sensor",
        "data dir",
        "data dir free space",
        "upstream connection string",
        "upstream dns",
        "upstream tcp",
        "upstream tls",
        "clock (upstream certificate)",
    ] {
        outcome.line("ok", name);
    }
    let tls = outcome.line("ok", "upstream tls");
    assert!(
        tls.contains(&format!("handshake with 127.0.0.1:{}", broker.port())),
        "{tls}"
    );
    assert!(
        tls.contains("certificate for localhost, 127.0.0.1"),
        "{tls}"
    );
    assert_eq!(
        outcome.stdout.lines().last().unwrap(),
        format!("{} ok, 0 warnings, 0 errors", outcome.checks().len())
    );
    for printed in [&outcome.stdout, &outcome.stderr] {
        assert!(!printed.contains(KEY), "the key was printed:\n{printed}");
        assert!(!printed.contains(KEY.trim_end_matches('=')), "{printed}");
    }

    // `--json` says the same for scripts.
    let deployment = Deployment::new(&toml);
    let out = Command::new(WEDGE)
        .arg("--data-dir")
        .arg(deployment.dir.path().join("data"))
        .args(["check", "--json"])
        .arg(&deployment.path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), outcome.checks().len(), "{json}");
    assert!(checks.iter().all(|c| c["level"] == "ok"), "{json}");
    assert_eq!(json["summary"]["errors"], 0);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));
}

#[test]
fn a_good_x509_setup_is_all_ok() {
    let broker = x509_broker();
    let (cert, key) = broker.device_certificate(DEVICE).unwrap();
    let outcome = check(&x509_deployment(&broker, (&cert, &key)));
    outcome.assert_all_ok();
    let certificate = outcome.line("ok", "device certificate");
    assert!(
        certificate.contains(&format!("CN={DEVICE}")),
        "{certificate}"
    );
    outcome.line("ok", "device key");
    let tls = outcome.line("ok", "upstream tls");
    assert!(
        tls.contains("device certificate presented and not refused"),
        "{tls}"
    );
    outcome.line("ok", "clock (upstream certificate)");
    let key_line = std::fs::read_to_string(&key).unwrap();
    let key_line = key_line.lines().nth(1).unwrap();
    assert!(!outcome.stdout.contains(key_line), "{}", outcome.stdout);
}

#[test]
fn a_good_mqtt_setup_is_all_ok_without_showing_the_password() {
    let password = "correct horse battery staple";
    let broker = Broker::start(BrokerOptions {
        mqtt_users: vec![(DEVICE.into(), password.into())],
        ..BrokerOptions::default()
    })
    .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("password");
    std::fs::write(&file, password).unwrap();
    let outcome = check(&format!(
        "[upstream]\nkind = \"mqtt\"\nhost = \"localhost\"\nport = {port}\nca-file = {ca:?}\n\
         device = \"{DEVICE}\"\nusername = \"{DEVICE}\"\npassword-file = {file:?}\n",
        port = broker.port(),
        ca = broker.ca_pem_path(),
    ));
    outcome.assert_all_ok();
    assert!(
        outcome
            .line("ok", "upstream password")
            .contains(&file.display().to_string())
    );
    // A name, so it is resolved; the certificate has `localhost` too.
    assert!(
        outcome
            .line("ok", "upstream dns")
            .contains("localhost resolves to")
    );
    assert!(!outcome.stdout.contains(password) && !outcome.stderr.contains(password));
}

#[test]
fn a_broker_certificate_for_another_host_is_a_host_mismatch_naming_it() {
    let mut broker = Broker::start(BrokerOptions::default()).unwrap();
    let now = SystemTime::now();
    broker
        .reissue_server_certificate(&["wrong-host.example"], now - DAY..now + 365 * DAY)
        .unwrap();
    let outcome = check(&sas_deployment(
        broker.port(),
        Some(&broker.ca_pem_path()),
        KEY,
    ));
    assert!(!outcome.success, "{}", outcome.stdout);
    let tls = outcome.line("error", "upstream tls");
    assert!(
        tls.contains(
            "certificate host mismatch: the upstream's certificate is for wrong-host.example, not 127.0.0.1"
        ),
        "{tls}"
    );
    assert!(tls.contains("GatewayHostName"), "remedy: {tls}");
    // The rest is fine: the name is the only problem, and the stderr says which check failed.
    outcome.line("ok", "upstream tcp");
    outcome.line("ok", "clock (upstream certificate)");
    assert_eq!(
        outcome.stdout.matches("\nerror ").count(),
        1,
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stderr
            .contains("upstream tls: certificate host mismatch")
    );
}

#[test]
fn a_clock_outside_the_hub_certificate_is_named_with_what_to_do() {
    // A certificate not valid for another day looks, to this device, exactly as its clock
    // being a day behind would.
    let mut broker = Broker::start(BrokerOptions::default()).unwrap();
    let now = SystemTime::now();
    broker
        .reissue_server_certificate(&["127.0.0.1"], now + DAY..now + 365 * DAY)
        .unwrap();
    let outcome = check(&sas_deployment(
        broker.port(),
        Some(&broker.ca_pem_path()),
        KEY,
    ));
    assert!(!outcome.success);
    let tls = outcome.line("error", "upstream tls");
    assert!(tls.contains("not valid yet"), "{tls}");
    let clock = outcome.line("error", "clock (upstream certificate)");
    assert!(
        clock.contains("is before the upstream certificate's validity"),
        "{clock}"
    );
    assert!(clock.contains("set the clock / enable NTP"), "{clock}");
}

#[test]
fn a_server_certificate_of_an_untrusted_ca_is_an_unknown_issuer() {
    let broker = Broker::start(BrokerOptions::default()).unwrap();
    // No `ca-file`: the per-run CA is not among the public roots.
    let outcome = check(&sas_deployment(broker.port(), None, KEY));
    assert!(!outcome.success);
    let tls = outcome.line("error", "upstream tls");
    assert!(tls.contains("unknown issuer"), "{tls}");
    assert!(tls.contains("CN=wedge-hub-emulator test CA"), "{tls}");
    assert!(tls.contains("set `ca-file`"), "{tls}");
}

#[test]
fn an_expired_device_certificate_is_an_error_and_one_expiring_soon_a_warning() {
    let broker = x509_broker();
    let now = SystemTime::now();

    let (cert, key) = broker
        .issue_device_certificate(DEVICE, now - 60 * DAY..now - DAY)
        .unwrap();
    let outcome = check(&x509_deployment(&broker, (&cert, &key)));
    assert!(!outcome.success, "{}", outcome.stdout);
    let line = outcome.line("error", "device certificate");
    assert!(
        line.contains(&format!(
            "the device certificate {} (CN={DEVICE}) expired at",
            cert.display()
        )),
        "{line}"
    );
    // Mosquitto refuses it too, right after the handshake.
    let tls = outcome.line("error", "upstream tls");
    assert!(tls.contains("alert"), "{tls}");

    let (cert, key) = broker
        .issue_device_certificate(DEVICE, now - DAY..now + 10 * DAY + DAY / 2)
        .unwrap();
    let outcome = check(&x509_deployment(&broker, (&cert, &key)));
    assert!(outcome.success, "{}\n{}", outcome.stdout, outcome.stderr);
    let line = outcome.line("warning", "device certificate");
    assert!(line.contains("expires in 10 days"), "{line}");
    assert!(line.contains("renew it"), "{line}");
    outcome.line("ok", "upstream tls");
    assert_eq!(
        outcome.stdout.matches("warning ").count(),
        1,
        "{}",
        outcome.stdout
    );
    assert!(outcome.stdout.ends_with(&format!(
        "{} ok, 1 warning, 0 errors\n",
        outcome.checks().len() - 1
    )));
}

#[test]
fn a_port_nothing_listens_on_is_a_failed_tcp_connect_naming_host_and_port() {
    let port = free_port();
    let started = Instant::now();
    let outcome = check(&sas_deployment(port, None, KEY));
    assert!(!outcome.success);
    let tcp = outcome.line("error", "upstream tcp");
    assert!(
        tcp.contains(&format!("TCP connect to 127.0.0.1:{port} failed")),
        "{tcp}"
    );
    assert!(tcp.contains("refused"), "{tcp}");
    assert!(tcp.contains("nothing listens there"), "{tcp}");
    // What needs a connection is not tried.
    assert!(
        !outcome.stdout.contains("upstream tls"),
        "{}",
        outcome.stdout
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_black_holed_address_is_given_up_on_within_the_timeout() {
    // TEST-NET-1 (RFC 5737): routed nowhere. Depending on the network the connect times out
    // (5 s) or fails at once; either way `wedge check` must end, with the TCP line an error.
    let started = Instant::now();
    let outcome = check(&format!(
        "[upstream]\nkind = \"mqtt\"\nhost = \"192.0.2.1\"\ndevice = \"{DEVICE}\"\n"
    ));
    let elapsed = started.elapsed();
    assert!(!outcome.success);
    let tcp = outcome.line("error", "upstream tcp");
    assert!(
        tcp.contains("TCP connect to 192.0.2.1:8883 failed"),
        "{tcp}"
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn a_server_that_never_answers_the_handshake_is_given_up_on_after_the_timeout() {
    // The kernel completes the TCP handshake for a listening socket nobody accepts on; then
    // nothing ever speaks TLS. The TLS step must end at its 5 s deadline, naming it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let outcome = check(&sas_deployment(port, None, KEY));
    let elapsed = started.elapsed();
    assert!(!outcome.success);
    outcome.line("ok", "upstream tcp");
    let tls = outcome.line("error", "upstream tls");
    assert!(
        tls.contains(&format!(
            "no TLS handshake with 127.0.0.1:{port} within 5 s"
        )),
        "{tls}"
    );
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(20)).contains(&elapsed),
        "took {elapsed:?}"
    );
    drop(silent);
}

#[test]
fn a_malformed_sas_key_is_named_without_showing_it() {
    let key = "this*is*not*base64";
    let outcome = check(&sas_deployment(free_port(), None, key));
    assert!(!outcome.success);
    let line = outcome.line("error", "upstream connection string");
    assert!(
        line.contains("`SharedAccessKey` is not valid base64"),
        "{line}"
    );
    assert!(!outcome.stdout.contains(key) && !outcome.stderr.contains(key));
    // Nothing is dialled with a credential that cannot work.
    assert!(
        !outcome.stdout.contains("upstream tcp"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn a_data_dir_that_cannot_be_written_is_an_error() {
    let deployment = Deployment::new("");
    let data_dir = tempfile::tempdir().unwrap();
    let path: PathBuf = data_dir.path().to_path_buf();
    // Root writes through any mode. Run as root (as here, in CI containers), the check is run
    // as `nobody` through `setpriv`, with the data dir nobody's own but mode 0500, so the
    // assertion still means something; without `setpriv` it is skipped, saying so.
    let root = std::fs::metadata(&path).unwrap().uid() == 0;
    let mut prefix: Vec<&str> = Vec::new();
    if root {
        if Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("running as root without setpriv: root can write a 0500 dir; not asserted");
            return;
        }
        let chown = Command::new("chown")
            .arg("nobody")
            .arg(&path)
            .status()
            .unwrap();
        assert!(chown.success());
        // nobody must read the deployment file.
        std::fs::set_permissions(deployment.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&deployment.path, PermissionsExt::from_mode(0o644)).unwrap();
        prefix = vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
    }
    std::fs::set_permissions(&path, PermissionsExt::from_mode(0o500)).unwrap();
    let outcome = check_in(&deployment, &path, &prefix);
    assert!(!outcome.success, "{}", outcome.stdout);
    let line = outcome.line("error", "data dir");
    assert!(
        line.contains(&format!("{} is not writable", path.display())),
        "{line}"
    );
    assert!(line.contains("Permission denied"), "{line}");
    // The deployment itself (empty, local hub) is fine; only the data dir is named, and the
    // local hub has no upstream to check: deployment, data dir, its version, free space.
    outcome.line("ok", "deployment");
    outcome.line("ok", "data dir version");
    outcome.line("ok", "data dir free space");
    assert_eq!(outcome.checks().len(), 4, "{}", outcome.stdout);
    std::fs::set_permissions(&path, PermissionsExt::from_mode(0o700)).unwrap();
}
