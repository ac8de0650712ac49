//! A real Mosquitto broker per test, with per-run TLS, passwords and per-identity ACLs.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::certs::write_tls_files;
use crate::identity::Identity;

/// The username the broker reserves for the hub's service side (see
/// [`Broker::service_credentials`]); it may read and write every topic.
pub const SERVICE_USER: &str = "hub-service";

/// How long Mosquitto gets to open its listener.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at a free port: another process may take the port between our probe and
/// Mosquitto's bind.
const PORT_ATTEMPTS: usize = 5;

/// What to start a [`Broker`] with.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Device/module users as `(username, password)`. Each username must parse as an
    /// [`Identity`] (`dev1`, or IoT Hub's `{hub}/{device}[/{module}]/?api-version=...`); the
    /// ACL limits it to its own `devices/{device}[/modules/{module}]/#` topics and `$iothub/#`.
    pub users: Vec<(String, String)>,
    /// Users of the generic MQTT upstream as `(username, password)`: each may use the
    /// `wedge/{username}/#` topics (wedge's default topic tree, the username as the device).
    pub mqtt_users: Vec<(String, String)>,
    /// Serve MQTT over TLS (as IoT Hub does) rather than plain TCP.
    pub tls: bool,
    /// Listen on this port rather than a free one (e.g. to replace a stopped broker).
    pub port: Option<u16>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            users: Vec::new(),
            mqtt_users: Vec::new(),
            tls: true,
            port: None,
        }
    }
}

/// A running `mosquitto` child process listening on 127.0.0.1, killed on drop.
///
/// All its files (config, password file, ACL, certificates, log) live in a temporary
/// directory it owns, so a restart reuses exactly the same setup.
#[derive(Debug)]
pub struct Broker {
    mosquitto: PathBuf,
    dir: TempDir,
    port: u16,
    tls: bool,
    identities: Vec<Identity>,
    service_password: String,
    child: Option<Child>,
}

impl Broker {
    /// Writes the broker's files and starts Mosquitto, returning once it accepts connections.
    pub fn start(options: BrokerOptions) -> Result<Broker> {
        let mosquitto_passwd = find_program("mosquitto_passwd")?;
        let mosquitto = find_program("mosquitto")?;
        let dir = tempfile::Builder::new()
            .prefix("wedge-hub-emulator-")
            .tempdir()?;
        let identities = options
            .users
            .iter()
            .map(|(user, _)| {
                if user == SERVICE_USER {
                    bail!("{SERVICE_USER:?} is reserved for the emulator");
                }
                Identity::from_username(user)
            })
            .collect::<Result<Vec<_>>>()?;
        let service_password = random_secret();
        let mut users = options.users.clone();
        users.extend(options.mqtt_users.iter().cloned());
        users.push((SERVICE_USER.to_owned(), service_password.clone()));
        write_password_file(&mosquitto_passwd, &dir.path().join("passwd"), &users)?;
        write_acl(
            &dir.path().join("acl"),
            &options.users,
            &identities,
            &options.mqtt_users,
        )?;
        write_tls_files(dir.path())?;

        let mut broker = Broker {
            mosquitto,
            dir,
            port: options.port.unwrap_or(0),
            tls: options.tls,
            identities,
            service_password,
            child: None,
        };
        if options.port.is_some() {
            broker.spawn_and_wait()?;
            return Ok(broker);
        }
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            broker.port = free_port()?;
            match broker.spawn_and_wait() {
                Ok(()) => return Ok(broker),
                Err(e) if broker.log().contains("Address already in use") => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// The loopback port Mosquitto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the listener speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Path of the per-run CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The per-run CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_pem_path()).unwrap_or_default()
    }

    /// The identities of the configured device/module users, in option order.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// `(username, password)` of the service user, which may use every topic.
    pub fn service_credentials(&self) -> (&str, &str) {
        (SERVICE_USER, &self.service_password)
    }

    /// Everything Mosquitto logged so far (all log types, including "not authorised" and
    /// denied publish/subscribe lines): print it when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops Mosquitto as a service manager would (SIGTERM: it saves its persistence file) and
    /// waits for it to exit. Safe to call when already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let terminated = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            // Mosquitto exits promptly on SIGTERM; never wait on it for ever.
            let deadline = Instant::now() + START_TIMEOUT;
            while terminated && Instant::now() < deadline {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops Mosquitto and starts it again on the same port with the same files, as a
    /// broker outage would look to connected clients (their sessions are gone).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn_and_wait()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(&conf, self.config())?;
        // Append: a restart's log follows the previous run's, which helps reconnect tests.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting mosquitto")?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls until the listener accepts a TCP connection, or Mosquitto exits, or time is up.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!("mosquitto exited with {status}; log:\n{}", self.log());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                bail!(
                    "mosquitto did not listen on port {} within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let mut conf = format!(
            "# Generated by wedge-hub-emulator.\n\
             # Run as root, Mosquitto would switch to user `mosquitto` and then fail to read\n\
             # the root-owned files below; staying root is fine for a loopback test broker.\n\
             user root\n\
             # Persistent sessions survive a restart, as the real hub's do: the emulator's\n\
             # subscriptions (and messages queued for it) are there before any device reconnects.\n\
             persistence true\n\
             persistence_location {dir}/\n\
             log_dest stderr\n\
             log_type all\n\
             connection_messages true\n\
             allow_anonymous false\n\
             password_file {dir}/passwd\n\
             acl_file {dir}/acl\n\
             listener {} 127.0.0.1\n",
            self.port
        );
        if self.tls {
            conf.push_str(&format!(
                "cafile {dir}/ca.pem\n\
                 certfile {dir}/server.pem\n\
                 keyfile {dir}/server.key\n\
                 require_certificate false\n"
            ));
        }
        conf
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds a Mosquitto program on `PATH` or in Debian's install locations: `mosquitto` lives
/// in `/usr/sbin`, which a non-root `PATH` often lacks.
fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "`{name}` is not installed: run `apt-get install mosquitto` \
                 (`cargo xtask test` installs it)"
            )
        })
}

fn write_password_file(program: &Path, path: &Path, users: &[(String, String)]) -> Result<()> {
    for (i, (user, password)) in users.iter().enumerate() {
        if user.contains(':') || user.contains('\n') || password.contains('\n') {
            bail!("username {user:?} or its password cannot go in a Mosquitto password file");
        }
        let mut command = Command::new(program);
        // `-c` creates the file on the first user; later users are added to it.
        if i == 0 {
            command.arg("-c");
        }
        let out = command
            .arg("-b")
            .arg(path)
            .arg(user)
            .arg(password)
            .output()?;
        if !out.status.success() {
            bail!(
                "mosquitto_passwd failed for {user:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// Device users get their own subtree and `$iothub/#`; generic MQTT users `wedge/{user}/#`; the
/// service user gets everything. `#` does not match topics starting with `$` in Mosquitto's ACL
/// check, hence the separate `$iothub/#` line for the service.
fn write_acl(
    path: &Path,
    users: &[(String, String)],
    identities: &[Identity],
    mqtt_users: &[(String, String)],
) -> Result<()> {
    let mut acl = File::create(path)?;
    writeln!(
        acl,
        "user {SERVICE_USER}\ntopic readwrite #\ntopic readwrite $iothub/#\n"
    )?;
    for ((user, _), identity) in users.iter().zip(identities) {
        writeln!(
            acl,
            "user {user}\ntopic readwrite {}/#\ntopic readwrite $iothub/#\n",
            identity.topic_prefix()
        )?;
    }
    for (user, _) in mqtt_users {
        if user.contains(['/', '+', '#']) || user.contains(char::is_whitespace) {
            bail!("MQTT username {user:?} cannot be a topic level");
        }
        writeln!(acl, "user {user}\ntopic readwrite wedge/{user}/#\n")?;
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// An unguessable-enough password for the service user; it only guards a loopback broker.
fn random_secret() -> String {
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{a:016x}{b:016x}")
}
