//! A real Mosquitto broker per test, with per-run TLS, passwords (or client certificates) and
//! per-identity ACLs.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::certs::{
    CLIENTS_DIR, client_paths, write_device_certificate, write_foreign_client,
    write_server_certificate, write_tls_files,
};
use crate::identity::Identity;
use crate::tls::{client_tls_config, client_tls_config_with_cert};

/// The username the broker reserves for the hub's service side (see
/// [`Broker::service_credentials`]); it may read and write every topic.
pub const SERVICE_USER: &str = "hub-service";
/// The broker users of the gateway in front of the emulated DPS and hub (`gateway/`): DPS
/// connections may use `$dps/registrations/#`, hub connections `$iothub/#` and
/// `devices/{client id}/#`.
pub(crate) const GATEWAY_DPS_USER: &str = "wedge-gateway-dps";
pub(crate) const GATEWAY_HUB_USER: &str = "wedge-gateway-hub";

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
    /// Devices that authenticate with an X.509 client certificate, by device id (IoT Hub's
    /// `x509=true`). When non-empty, the TLS listener requires a client certificate signed by
    /// the per-run CA from every client (`require_certificate true`) and takes the username
    /// from its common name (`use_identity_as_username true`), ignoring any username and
    /// password sent. Each device gets a certificate with CN = its id
    /// ([`Broker::device_certificate`]) and ACL entries under that name; the service side
    /// gets one with CN = [`SERVICE_USER`], which [`Broker::service_tls_config`] presents.
    /// Password users (`users`, `mqtt_users`) cannot connect to such a listener, so they must
    /// be empty, and `tls` must be on. Off (empty) by default.
    pub x509_devices: Vec<String>,
    /// Log only errors, warnings and notices, not every packet. For benchmarks: the per-packet
    /// log costs Mosquitto about a third of a core, taken from whoever is measured. Off (log
    /// everything, which failing tests print) by default.
    pub quiet: bool,
    /// Add the broker users of the gateway that checks SAS tokens and client certificates
    /// itself ([`crate::DpsEmulator`]). Off by default.
    pub gateway: bool,
    /// Client certificates to issue (CN = each name, signed by the per-run CA) without making
    /// the listener require them: for the gateway, which checks them itself
    /// ([`Broker::device_certificate`] hands them out).
    pub certificates: Vec<String>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            users: Vec::new(),
            mqtt_users: Vec::new(),
            tls: true,
            port: None,
            x509_devices: Vec::new(),
            quiet: false,
            gateway: false,
            certificates: Vec::new(),
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
    /// Whether the listener requires client certificates ([`BrokerOptions::x509_devices`]).
    client_certificates: bool,
    /// Mosquitto's `log_type` lines.
    log_types: &'static str,
    identities: Vec<Identity>,
    service_password: String,
    /// The password of both gateway users, when [`BrokerOptions::gateway`].
    gateway_password: Option<String>,
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
        let client_certificates = !options.x509_devices.is_empty();
        if client_certificates && !options.tls {
            bail!("client certificates (x509_devices) need the TLS listener (tls: true)");
        }
        if client_certificates && !(options.users.is_empty() && options.mqtt_users.is_empty()) {
            bail!(
                "a listener requiring client certificates takes usernames from them and ignores \
                 passwords: password users cannot connect, so leave users and mqtt_users empty"
            );
        }
        let identities = options
            .users
            .iter()
            .map(|(user, _)| user)
            .chain(&options.x509_devices)
            .map(|user| {
                if user == SERVICE_USER {
                    bail!("{SERVICE_USER:?} is reserved for the emulator");
                }
                let identity = Identity::from_username(user)?;
                if options.x509_devices.contains(user) && identity.key() != *user {
                    bail!("x509 device {user:?} must be a bare device id");
                }
                Ok(identity)
            })
            .collect::<Result<Vec<_>>>()?;
        let service_password = random_secret();
        let mut users = options.users.clone();
        users.extend(options.mqtt_users.iter().cloned());
        users.push((SERVICE_USER.to_owned(), service_password.clone()));
        let gateway_password = options.gateway.then(random_secret);
        for user in [GATEWAY_DPS_USER, GATEWAY_HUB_USER] {
            users.extend(gateway_password.clone().map(|pw| (user.to_owned(), pw)));
        }
        write_password_file(&mosquitto_passwd, &dir.path().join("passwd"), &users)?;
        // Device users are known by their username, X.509 devices by their certificate's CN
        // (the device id), which Mosquitto then uses as the username.
        let acl_users: Vec<&str> = options
            .users
            .iter()
            .map(|(user, _)| user.as_str())
            .chain(options.x509_devices.iter().map(String::as_str))
            .collect();
        write_acl(
            &dir.path().join("acl"),
            &acl_users,
            &identities,
            &options.mqtt_users,
            options.gateway,
        )?;
        let mut clients = Vec::new();
        if client_certificates {
            clients.extend(options.x509_devices.iter().cloned());
            clients.push(SERVICE_USER.to_owned());
        }
        clients.extend(options.certificates.iter().cloned());
        write_tls_files(dir.path(), &clients)?;

        let mut broker = Broker {
            mosquitto,
            dir,
            port: options.port.unwrap_or(0),
            tls: options.tls,
            client_certificates,
            log_types: if options.quiet {
                "log_type error\nlog_type warning\nlog_type notice"
            } else {
                "log_type all"
            },
            identities,
            service_password,
            gateway_password,
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

    /// The server certificate and key (PEM) the listener presents.
    pub(crate) fn server_pem_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }

    /// The password of the gateway's broker users, when the broker has them.
    pub(crate) fn gateway_password(&self) -> Option<&str> {
        self.gateway_password.as_deref()
    }

    /// Whether the listener requires client certificates (see [`BrokerOptions::x509_devices`]).
    pub fn requires_client_certificates(&self) -> bool {
        self.client_certificates
    }

    /// `(certificate, key)` PEM files of X.509 device `device`, signed by the per-run CA with
    /// CN = `device`; `None` unless it is one of [`BrokerOptions::x509_devices`].
    pub fn device_certificate(&self, device: &str) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = client_paths(&self.dir.path().join(CLIENTS_DIR), device);
        (device != SERVICE_USER && cert.is_file() && key.is_file()).then_some((cert, key))
    }

    /// `(certificate, key)` PEM files of a client certificate with CN = `device` from a CA of
    /// its own, which this broker does not trust: the TLS handshake fails with it.
    pub fn foreign_device_certificate(&self, device: &str) -> Result<(PathBuf, PathBuf)> {
        write_foreign_client(self.dir.path(), device)
    }

    /// `(certificate, key)` PEM files of a client certificate with CN = `device`, signed by
    /// the per-run CA and valid over `validity` (already expired, expiring soon, not yet
    /// valid). The broker checks it like any other: an expired one is refused at the handshake.
    pub fn issue_device_certificate(
        &self,
        device: &str,
        validity: Range<SystemTime>,
    ) -> Result<(PathBuf, PathBuf)> {
        write_device_certificate(self.dir.path(), device, validity)
    }

    /// Gives the broker a new server certificate, signed by the per-run CA, for `names` (DNS
    /// names or IP addresses: e.g. one the clients do not dial) and valid over `validity`,
    /// and restarts Mosquitto so that it serves it.
    pub fn reissue_server_certificate(
        &mut self,
        names: &[&str],
        validity: Range<SystemTime>,
    ) -> Result<()> {
        write_server_certificate(self.dir.path(), names, validity)?;
        self.restart()
    }

    /// The TLS configuration of the service side: trusting the per-run CA and, when the
    /// listener requires client certificates, presenting the service certificate.
    pub fn service_tls_config(&self) -> Result<rustls::ClientConfig> {
        if !self.client_certificates {
            return client_tls_config(&self.ca_pem());
        }
        let (cert, key) = client_paths(&self.dir.path().join(CLIENTS_DIR), SERVICE_USER);
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        client_tls_config_with_cert(&self.ca_pem(), &read(&cert)?, &read(&key)?)
    }

    /// The identities of the configured device/module users, in option order.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// `(username, password)` of the service user, which may use every topic. A listener
    /// requiring client certificates ignores them and knows the service by its certificate
    /// ([`Broker::service_tls_config`]).
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
             # Keep all that is queued for an offline persistent session (the default drops\n\
             # past 1000): a test consumer reconnecting after a device must see everything.\n\
             # Not 0: Debian's Mosquitto 2.0.11 then queues nothing at all for such a session.\n\
             max_queued_messages 100000000\n\
             # No window of in-flight messages to a client. Mosquitto 2.0.11's window misbehaves:\n\
             # it sends a new window for each acknowledgement, and messages queued behind a full\n\
             # window can stay queued after the acknowledgements arrive. IoT Hub has no such\n\
             # window; it holds at most 50 cloud-to-device messages per device.\n\
             max_inflight_messages 0\n\
             log_dest stderr\n\
             {log_types}\n\
             connection_messages true\n\
             allow_anonymous false\n\
             password_file {dir}/passwd\n\
             acl_file {dir}/acl\n\
             listener {} 127.0.0.1\n",
            self.port,
            log_types = self.log_types,
        );
        if self.tls {
            conf.push_str(&format!(
                "cafile {dir}/ca.pem\n\
                 certfile {dir}/server.pem\n\
                 keyfile {dir}/server.key\n"
            ));
            if self.client_certificates {
                // The client's certificate must chain to `cafile`, and its CN is the username
                // (passwords are not checked): IoT Hub's X.509 authentication, as closely as a
                // broker gets.
                conf.push_str(
                    "require_certificate true\n\
                     use_identity_as_username true\n",
                );
            } else {
                conf.push_str("require_certificate false\n");
            }
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
    users: &[&str],
    identities: &[Identity],
    mqtt_users: &[(String, String)],
    gateway: bool,
) -> Result<()> {
    let mut acl = File::create(path)?;
    writeln!(
        acl,
        "user {SERVICE_USER}\ntopic readwrite #\ntopic readwrite $iothub/#\ntopic readwrite $dps/#\n"
    )?;
    if gateway {
        // `pattern` lines hold for every user: `%c` is the client id, which IoT Hub requires to
        // be the device id (the gateway checks it).
        writeln!(
            acl,
            "user {GATEWAY_DPS_USER}\ntopic readwrite $dps/registrations/#\n\n\
             user {GATEWAY_HUB_USER}\ntopic readwrite $iothub/#\npattern readwrite devices/%c/#\n"
        )?;
    }
    for (user, identity) in users.iter().zip(identities) {
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

#[cfg(test)]
mod tests;
