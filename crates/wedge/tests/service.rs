//! `wedge run` as a systemd service, against the protocol itself: a socket the test listens
//! on stands for systemd's `$NOTIFY_SOCKET`, so `READY=1` is checked to come only once the
//! modules run and the control socket answers, and `WATCHDOG=1` to keep coming; SIGHUP with a
//! changed deployment file applies the difference without restarting what did not change, and
//! a broken file is refused while the running deployment stays. The unit file passes
//! `systemd-analyze verify`.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Host, WEDGE, module, wait_for};
use wedge_test_artifacts::{COUNTER, ECHO, FS_PROBE};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `wedge run` started the way systemd starts it: `$NOTIFY_SOCKET` (and `$WATCHDOG_USEC`)
/// set, the notifications received here.
struct Service {
    dir: tempfile::TempDir,
    child: Child,
    notify: UnixDatagram,
}

impl Service {
    fn start(toml: &str, watchdog: Option<Duration>) -> Service {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wedge.toml"), toml).unwrap();
        let socket = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log = std::fs::File::create(dir.path().join("wedge.log")).unwrap();
        let mut command = Command::new(WEDGE);
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("run")
            .arg(dir.path().join("wedge.toml"))
            .env("NOTIFY_SOCKET", &socket)
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(log);
        match watchdog {
            Some(interval) => command.env("WATCHDOG_USEC", interval.as_micros().to_string()),
            None => command.env_remove("WATCHDOG_USEC"),
        };
        let child = command.spawn().unwrap();
        Service { dir, child, notify }
    }

    fn deployment(&self) -> PathBuf {
        self.dir.path().join("wedge.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wedge.log")).unwrap_or_default()
    }

    /// The next notification, waiting up to `timeout`; panics if wedge exits meanwhile.
    fn next(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("wedge run exited with {status}:\n{}", self.log());
            }
            match self.notify.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
        None
    }

    /// Waits for a notification holding the line `line`; returns the whole datagram.
    fn expect(&mut self, line: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while let Some(message) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if message.lines().any(|l| l == line) {
                return message;
            }
        }
        panic!("no `{line}` within {timeout:?}:\n{}", self.log());
    }

    fn modules(&self) -> Vec<Value> {
        support::request(&self.data_dir(), &json!({"op": "status"})).unwrap()["modules"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn module(&self, name: &str) -> Option<Value> {
        self.modules().into_iter().find(|m| m["name"] == name)
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        support::stop(&mut self.child);
    }
}

#[test]
fn ready_only_once_the_modules_run_then_the_watchdog_is_fed() {
    // The probe reports to the twin at the end of an `init` that takes 300 ms: if that report
    // is not on disk when READY=1 arrives, READY came before the module ran.
    let toml = format!(
        "{}{}",
        module("probe", FS_PROBE, "config = { init-ms = 300 }"),
        module("counter", COUNTER, "tick-ms = 50"),
    );
    let mut service = Service::start(&toml, Some(Duration::from_millis(400)));
    let ready = service.expect("READY=1", TIMEOUT);
    let twin: Value =
        serde_json::from_slice(&std::fs::read(service.data_dir().join("twin.json")).unwrap())
            .unwrap();
    assert!(
        twin["reported"]["wedge"]["modules"]["probe"]["properties"]["read"].is_string(),
        "READY=1 before the probe's init reported: {twin}"
    );
    assert!(ready.contains("STATUS=running 2 module(s)"), "{ready}");
    // The control socket answers at READY, and both modules run.
    for name in ["probe", "counter"] {
        let status = service.module(name).unwrap();
        assert_eq!(status["state"], "running", "{status}");
        assert!(status["starts"].as_u64() >= Some(1), "{status}");
    }
    // Pings at about half the interval: 5 within 2 s leaves room for a loaded machine.
    let start = Instant::now();
    for _ in 0..5 {
        service.expect("WATCHDOG=1", Duration::from_secs(2));
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn without_a_watchdog_nothing_is_pinged() {
    let mut service = Service::start(&module("echo", ECHO, ""), None);
    service.expect("READY=1", TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(message) = service.next(deadline.saturating_duration_since(Instant::now())) {
        assert!(!message.contains("WATCHDOG=1"), "{message}");
    }
}

/// The module's start count and last start: what changes when it is restarted.
fn incarnation(service: &Service, name: &str) -> (Value, Value) {
    let status = service.module(name).unwrap();
    (status["starts"].clone(), status["last-start"].clone())
}

#[test]
fn sighup_applies_the_changed_file_as_a_diff() {
    let before = format!(
        "{}{}{}",
        module("steady", COUNTER, "tick-ms = 50"),
        module("tuned", ECHO, "config = { level = 1 }"),
        module("dropped", ECHO, ""),
    );
    let mut service = Service::start(&before, None);
    service.expect("READY=1", TIMEOUT);
    let steady = incarnation(&service, "steady");
    let tuned = incarnation(&service, "tuned");

    let after = format!(
        "{}{}{}",
        module("steady", COUNTER, "tick-ms = 50"),
        module("tuned", ECHO, "config = { level = 2 }"),
        module("added", ECHO, ""),
    );
    std::fs::write(service.deployment(), after).unwrap();
    service.hangup();
    service.expect("RELOADING=1", TIMEOUT);
    service.expect("READY=1", TIMEOUT);

    let names: Vec<Value> = service
        .modules()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert_eq!(names, [json!("added"), json!("steady"), json!("tuned")]);
    assert_eq!(
        incarnation(&service, "steady"),
        steady,
        "an unchanged module was restarted"
    );
    // A new configuration goes through `on-config`: same instance, new config.
    assert_eq!(incarnation(&service, "tuned"), tuned);
    assert_eq!(service.module("tuned").unwrap()["config"]["level"], 2);
    assert_eq!(service.module("added").unwrap()["state"], "running");
    assert!(service.log().contains("deployment file reloaded"));
}

#[test]
fn a_broken_file_on_sighup_is_refused_and_the_deployment_stays() {
    let toml = format!(
        "{}{}",
        module("steady", COUNTER, "tick-ms = 50"),
        module("echo", ECHO, "config = { level = 1 }"),
    );
    let mut service = Service::start(&toml, None);
    service.expect("READY=1", TIMEOUT);
    let before: Vec<(Value, Value)> = ["steady", "echo"]
        .iter()
        .map(|m| incarnation(&service, m))
        .collect();
    let cases = [
        // Not TOML: the error names the file, line and column.
        ("[modules.echo\npath = 1\n".to_string(), "wedge.toml:1:"),
        // A module file that does not exist.
        (
            format!(
                "{}[modules.ghost]\npath = \"/nonexistent/ghost.wasm\"\n",
                module("steady", COUNTER, "tick-ms = 50")
            ),
            "ghost",
        ),
        // What a running host cannot change: the upstream (here the local hub, named).
        (
            format!("{toml}[upstream]\nkind = \"local\"\n[outbox]\nmax-kb = 128\n"),
            "[outbox] changed",
        ),
    ];
    for (n, (text, named)) in cases.iter().enumerate() {
        std::fs::write(service.deployment(), text).unwrap();
        service.hangup();
        service.expect("READY=1", TIMEOUT);
        let refusals = wait_for("the refusal in the log", TIMEOUT, || {
            let log = service.log();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains("deployment file not reloaded"))
                .map(String::from)
                .collect();
            (lines.len() > n).then_some(lines)
        });
        assert!(refusals[n].contains(named), "{named}: {}", refusals[n]);
        assert!(refusals[n].contains("the running deployment stays"));
        let now: Vec<(Value, Value)> = ["steady", "echo"]
            .iter()
            .map(|m| incarnation(&service, m))
            .collect();
        assert_eq!(now, before, "{named}: modules changed");
        assert_eq!(service.modules().len(), 2);
        assert_eq!(service.module("echo").unwrap()["config"]["level"], 1);
    }
    assert!(!service.log().contains("deployment file reloaded"));
}

/// `packaging/wedge.service`, checked by systemd's own verifier in a scratch root holding
/// the binary where the unit runs it from.
#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let Some(analyze) = support::systemd::which("systemd-analyze") else {
        // The CI installs Debian's `systemd` (xtask); a developer machine may not have it.
        eprintln!("systemd-analyze not installed: skipped");
        return;
    };
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/wedge.service");
    let root = tempfile::tempdir().unwrap();
    let installed = root.path().join("lib/systemd/system/wedge.service");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(&unit, &installed).unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::copy(WEDGE, root.path().join("usr/bin/wedge")).unwrap();
    support::systemd::prepare_root(root.path());
    let out = Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg(&installed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify:\n{stderr}");
    // verify also exits 0 on some warnings: none about this unit may be printed.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("wedge.service"))
        .collect();
    assert!(about_unit.is_empty(), "{stderr}");
}

/// The soft and hard "Max open files" of process `pid`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut words = line["Max open files".len()..].split_whitespace();
    (
        words.next().unwrap().to_string(),
        words.next().unwrap().to_string(),
    )
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_one() {
    // As systemd starts a service: a soft limit far below the hard one.
    let host = Host::start_with(&module("echo", ECHO, ""), None, "ulimit -Sn 256");
    let (soft, hard) = open_file_limits(host.pid());
    assert_eq!(soft, hard, "soft {soft}, hard {hard}");
    assert_ne!(soft, "256");
}
