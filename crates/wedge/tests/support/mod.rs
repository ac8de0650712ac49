//! Test harness: a real `wedge run` process on a temporary data dir, driven through its CLI and
//! control socket, with real guest components from `modules/`.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod files;
pub mod http_server;
pub mod iothub;
pub mod metrics;
pub mod mqtt;
pub mod process;
pub mod systemd;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The wedge binary under test.
pub const WEDGE: &str = env!("CARGO_BIN_EXE_wedge");

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port free a moment ago: bound to port 0, then let go, for a listener the host
/// under test opens.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A deployment file in a fresh temporary directory.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Deployment {
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wedge.toml");
        std::fs::write(&path, toml).unwrap();
        Deployment { dir, path }
    }
}

/// A running `wedge run`. Killed (SIGTERM, then SIGKILL) on drop.
pub struct Host {
    pub deployment: Deployment,
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Child,
    /// Shell commands run before `wedge run` (limits, umask), empty for none.
    shell: String,
}

impl Host {
    /// Starts `wedge run` on `toml` and waits until its control socket answers.
    pub fn start(toml: &str) -> Host {
        Host::start_with(toml, None, "")
    }

    /// As [`Host::start`], with `data_dir` (default: beside the deployment) and `shell`
    /// commands run first in the shell that starts `wedge run` (`umask 000; ulimit -n 64`).
    pub fn start_with(toml: &str, data_dir: Option<PathBuf>, shell: &str) -> Host {
        let deployment = Deployment::new(toml);
        let data_dir = data_dir.unwrap_or_else(|| deployment.dir.path().join("data"));
        let log = deployment.dir.path().join("wedge.log");
        let child = spawn_with(&deployment.path, &data_dir, &log, shell);
        let mut host = Host {
            deployment,
            data_dir,
            log,
            child,
            shell: shell.to_string(),
        };
        host.wait_ready();
        host
    }

    fn wait_ready(&mut self) {
        wait_for("the control socket", Duration::from_secs(60), || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("wedge run exited with {status}:\n{}", self.log());
            }
            self.request(&json!({"op": "status"})).ok()
        });
    }

    /// Kills the host with SIGKILL: no shutdown of any kind, as a power cut would look to its
    /// files.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `wedge run` again on the same deployment and data dir (after [`Host::kill`]),
    /// returning once its control socket answers.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_with(
            &self.deployment.path,
            &self.data_dir,
            &self.log,
            &self.shell,
        );
        self.wait_ready();
    }

    /// The process id of `wedge run`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the host logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one control request; `Err` is the host's error message.
    pub fn request(&self, request: &Value) -> Result<Value, String> {
        self::request(&self.data_dir, request)
    }

    /// Calls `method` of `module` through the control socket; returns its JSON answer.
    pub fn call(&self, module: &str, method: &str, payload: &Value) -> Value {
        let request = json!({"op": "call", "module": module, "method": method, "payload": payload.to_string()});
        let answer = self.request(&request).unwrap();
        serde_json::from_str(answer["payload"].as_str().unwrap()).unwrap()
    }

    /// Writes `deployment` to a file and runs `wedge deploy` on it; `Err` is its stderr.
    pub fn deploy(&self, deployment: &Value) -> Result<Value, String> {
        let file = self.deployment.dir.path().join("deployment.json");
        std::fs::write(&file, deployment.to_string()).unwrap();
        let out = self.cli(&["deploy", file.to_str().unwrap()]);
        match out.status.success() {
            true => Ok(serde_json::from_slice(&out.stdout).unwrap()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// Waits until the upstream link reports a connection error; returns the link's status
    /// (`connected`, `last-error`, ...).
    pub fn wait_for_link_error(&self, timeout: Duration) -> Value {
        wait_for("a connection error in wedge status", timeout, || {
            let link = self.request(&json!({"op": "status"})).unwrap()["upstream"]["link"].clone();
            link["last-error"].is_string().then_some(link)
        })
    }

    /// The status entry of `module`.
    pub fn module_status(&self, module: &str) -> Value {
        let status = self.request(&json!({"op": "status"})).unwrap();
        status["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == module)
            .unwrap_or_else(|| panic!("no module {module} in {status}"))
            .clone()
    }

    /// Runs the wedge CLI against this host's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(WEDGE)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// Telemetry the local hub has stored, parsed.
    pub fn telemetry(&self) -> Vec<Value> {
        telemetry(&self.data_dir)
    }
}

/// Sends one control request to the host on `data_dir`; `Err` is the host's error message.
pub fn request(data_dir: &Path, request: &Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(data_dir.join("wedge.sock")).map_err(|e| e.to_string())?;
    writeln!(stream, "{request}").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
    match (answer.get("ok"), answer.get("error")) {
        (Some(ok), _) => Ok(ok.clone()),
        (_, Some(error)) => Err(error.as_str().unwrap_or_default().to_string()),
        _ => Err(format!("malformed answer {answer}")),
    }
}

/// The demo's sensor as module `sensor`: a reading every 20 ms, 20-35 °C.
pub fn sensor() -> String {
    module(
        "sensor",
        wedge_test_artifacts::SENSOR,
        "tick-ms = 20\nconfig = { temperature = { min = 20.0, max = 35.0 } }",
    )
}

/// `wedge run` on `deployment`, logging to `log` (appended to: restarts continue it).
pub fn spawn(deployment: &Path, data_dir: &Path, log: &Path) -> Child {
    spawn_with(deployment, data_dir, log, "")
}

/// As [`spawn`], with `shell` commands run first (`exec` keeps the pid: it is wedge's).
pub fn spawn_with(deployment: &Path, data_dir: &Path, log: &Path, shell: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = match shell {
        "" => Command::new(WEDGE),
        shell => {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("{shell}\nexec \"$0\" \"$@\""))
                .arg(WEDGE);
            command
        }
    };
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("run")
        .arg(deployment)
        .env("WEDGE_LOG", "info,wedge_runtime=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Runs `wedge run` on `toml` (with `extra_files` beside it), which must refuse to start;
/// returns its stderr.
pub fn run_refused(toml: &str, extra_files: &[(&str, &[u8])]) -> String {
    let deployment = Deployment::new(toml);
    for (name, bytes) in extra_files {
        std::fs::write(deployment.dir.path().join(name), bytes).unwrap();
    }
    let out = Command::new(WEDGE)
        .arg("--data-dir")
        .arg(deployment.dir.path().join("data"))
        .arg("run")
        .arg(&deployment.path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "wedge run accepted:\n{toml}");
    String::from_utf8(out.stderr).unwrap()
}

/// Telemetry stored in `data_dir`, one JSON value per complete line.
pub fn telemetry(data_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(data_dir.join("telemetry.jsonl")).unwrap_or_default();
    // The host may be appending a line right now: only lines with their newline are whole.
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The body of a telemetry record, parsed as JSON.
pub fn body(record: &Value) -> Value {
    serde_json::from_str(record["body"].as_str().unwrap()).unwrap()
}

impl Drop for Host {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops a `wedge run` as a service manager does: SIGTERM, up to 10 s to exit, then SIGKILL.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `[modules.NAME]` table for a component built from `modules/`.
pub fn module(name: &str, wasm: &str, extra: &str) -> String {
    format!("[modules.{name}]\npath = {wasm:?}\n{extra}\n")
}
