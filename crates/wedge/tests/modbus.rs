//! `modbus-poller` against a real Modbus TCP device (pymodbus's server, installed by `cargo
//! xtask test` under `target/tools/pymodbus`): the register values set in the device arrive at
//! the hub exactly, and the device going away and coming back is survived.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, body, free_port, module, wait_for};
use wedge_test_artifacts::MODBUS_POLLER;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The Python of pymodbus's virtual environment.
fn python() -> PathBuf {
    let tools = std::env::var_os("WEDGE_TOOLS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools"),
        PathBuf::from,
    );
    let python = tools.join("pymodbus/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `cargo xtask test` installs pymodbus",
        python.display()
    );
    python
}

/// A running Modbus TCP device on 127.0.0.1:`port`.
struct Device {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Device {
    fn start(port: u16) -> Device {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/modbus_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        wait_for("the Modbus device to listen", TIMEOUT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Device {
            child,
            stdin,
            stdout,
        }
    }

    /// Sets holding registers from `address` on; returns once the device holds them.
    fn set(&mut self, address: u16, values: &[u16]) {
        let values: Vec<String> = values.iter().map(u16::to_string).collect();
        writeln!(self.stdin, "set {address} {}", values.join(" ")).unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        assert_eq!(answer.trim(), "ok");
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The register readings that reached the hub, in order.
fn readings(host: &Host) -> Vec<Value> {
    host.telemetry().iter().map(body).collect()
}

fn wait_for_reading(host: &Host, expected: &Value) {
    wait_for(&format!("{expected} at the hub"), TIMEOUT, || {
        readings(host).contains(expected).then_some(())
    });
}

/// The registers: -42 (i16), 1013 (u16), 91 × 0.5 and 70 000 (u32 over two registers).
fn set_first(device: &mut Device) {
    device.set(0, &[(-42i16) as u16, 1013, 91]);
    device.set(10, &[1, 4464]);
}

#[test]
fn registers_arrive_exactly_and_the_device_going_away_is_survived() {
    let port = free_port();
    let mut device = Device::start(port);
    set_first(&mut device);
    let config = format!(
        "{{ server = \"127.0.0.1:{port}\", timeout-ms = 500, registers = [
            {{ name = \"temperature\", address = 0, type = \"i16\" }},
            {{ name = \"pressure\", address = 1 }},
            {{ name = \"humidity\", address = 2, scale = 0.5 }},
            {{ name = \"energy\", address = 10, type = \"u32\" }},
        ] }}"
    );
    let host = Host::start(&format!(
        "{}\n[routes]\nup = {{ from = \"modbus/registers\", to = \"$upstream\" }}\n",
        module(
            "modbus",
            MODBUS_POLLER,
            &format!("tick-ms = 50\nconnect = [\"tcp://127.0.0.1:{port}\"]\nconfig = {config}")
        )
    ));
    let first = json!({"temperature": -42, "pressure": 1013, "humidity": 45.5, "energy": 70000});
    wait_for_reading(&host, &first);

    device.set(1, &[990]);
    device.set(10, &[0, 7]);
    let second = json!({"temperature": -42, "pressure": 990, "humidity": 45.5, "energy": 7});
    wait_for_reading(&host, &second);

    // The device goes away: the module says so in its twin and keeps running.
    drop(device);
    wait_for("the module to report the device down", TIMEOUT, || {
        let twin = host.request(&json!({"op": "twin-get"})).unwrap();
        let properties = &twin["reported"]["wedge"]["modules"]["modbus"]["properties"];
        (properties["connected"] == false).then(|| properties["last-error"].clone())
    });

    // It comes back (all registers 0 at first): polling resumes on the same module instance.
    let mut device = Device::start(port);
    let zeros = json!({"temperature": 0, "pressure": 0, "humidity": 0, "energy": 0});
    wait_for_reading(&host, &zeros);
    set_first(&mut device);
    let after = readings(&host).len();
    wait_for("the first values again", TIMEOUT, || {
        readings(&host)[after..].contains(&first).then_some(())
    });

    let status = host.module_status("modbus");
    assert_eq!(
        (status["state"].as_str(), status["restarts"].as_u64()),
        (Some("running"), Some(0)),
        "{status}"
    );
    // Every reading is a state the device was in (between the two `set`s of a change too):
    // one read covers all four registers, so nothing is torn or invented.
    let states = [
        first.clone(),
        json!({"temperature": -42, "pressure": 990, "humidity": 45.5, "energy": 70000}),
        second,
        zeros,
        json!({"temperature": -42, "pressure": 1013, "humidity": 45.5, "energy": 0}),
    ];
    for reading in readings(&host) {
        assert!(states.contains(&reading), "unexpected reading {reading}");
    }
}
