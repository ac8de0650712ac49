//! Test support: a real OCI registry — Debian's `docker-registry` (the CNCF distribution
//! registry 2.8) — started on a free loopback port, and pushing Wasm (and other) artifacts to
//! it with oci-client.
//!
//! The registry speaks plain http on 127.0.0.1, as wedge-source allows for loopback
//! registries. Basic auth (htpasswd, bcrypt) works over plain http with this registry, so
//! [`Registry::start_with_auth`] needs no TLS.
//!
//! `cargo xtask test` installs the package (`apt-get install docker-registry`).
#![deny(missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, WASM_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;

/// The registry binary of Debian's `docker-registry` package.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// The config media type of a Wasm OCI artifact (CNCF TAG Runtime's Wasm OCI artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";

/// How long the registry may take to answer `GET /v2/` after it is started.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running registry, killed (and its storage deleted) on drop.
pub struct Registry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    // Storage, config and log; removed after the child is killed (fields drop in order).
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts an anonymous registry on a free loopback port and waits until it answers.
    pub fn start() -> anyhow::Result<Registry> {
        Self::spawn(None)
    }

    /// Starts a registry that requires basic auth (htpasswd) for `user` with `password`.
    pub fn start_with_auth(user: &str, password: &str) -> anyhow::Result<Registry> {
        anyhow::ensure!(
            !user.is_empty() && !user.contains(':'),
            "user must be non-empty, without ':'"
        );
        Self::spawn(Some((user.to_string(), password.to_string())))
    }

    fn spawn(credentials: Option<(String, String)>) -> anyhow::Result<Registry> {
        if !Path::new(REGISTRY_BINARY).exists() {
            bail!(
                "{REGISTRY_BINARY} is missing: run `apt-get install -y docker-registry` \
                 (`cargo xtask test` does)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("wedge-test-registry-")
            .tempdir()?;
        if let Some((user, password)) = &credentials {
            // Cost 4 (the minimum): the registry checks the hash on every request.
            let hash = bcrypt::hash(password, 4)?;
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))?;
        }
        // A free port: bind :0, read it, release it, start the registry on it. Another
        // process may take it in between; then try once more with a new one.
        let mut last_error = None;
        for _ in 0..2 {
            let port = free_port()?;
            let config = write_config(dir.path(), port, credentials.is_some())?;
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path)?;
            let mut child = Command::new(REGISTRY_BINARY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {REGISTRY_BINARY}"))?;
            match wait_until_up(&mut child, port) {
                Ok(()) => {
                    return Ok(Registry {
                        child,
                        port,
                        credentials,
                        dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let race = log.contains("address already in use");
                    last_error = Some(e.context(format!("registry log:\n{log}")));
                    if !race {
                        break;
                    }
                }
            }
        }
        Err(last_error.expect("tried at least once"))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:PORT/{repo_and_tag}`, a module source for wedge.
    pub fn oci_source(&self, repo_and_tag: &str) -> String {
        format!("oci://{}/{repo_and_tag}", self.host())
    }

    /// The registry's storage, config and log directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a Docker-style `config.json` at `path` with `user:password` for this registry,
    /// as wedge reads credentials.
    pub fn write_docker_config(
        &self,
        path: &Path,
        user: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let doc = serde_json::json!({ "auths": { self.host(): { "auth": auth } } });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Pushes `wasm` as a Wasm OCI artifact to `repo:tag`: config of media type
    /// [`WASM_CONFIG_MEDIA_TYPE`], one layer of media type
    /// `application/vnd.wasm.content.layer.v1+wasm`. Returns the manifest digest
    /// (`sha256:…`).
    pub async fn push_wasm(&self, repo: &str, tag: &str, wasm: &[u8]) -> anyhow::Result<String> {
        let layer = ImageLayer::new(wasm.to_vec(), WASM_LAYER_MEDIA_TYPE.to_string(), None);
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer.sha256_digest()],
        });
        let config = Config::new(
            serde_json::to_vec(&config)?,
            WASM_CONFIG_MEDIA_TYPE.to_string(),
            None,
        );
        self.push(repo, tag, layer, config).await
    }

    /// Pushes an artifact whose only layer has `media_type` (with an empty OCI image config),
    /// for the "not a Wasm artifact" case. Returns the manifest digest.
    pub async fn push_other(
        &self,
        repo: &str,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> anyhow::Result<String> {
        let layer = ImageLayer::new(bytes.to_vec(), media_type.to_string(), None);
        let config = Config::oci_v1(b"{}".to_vec(), None);
        self.push(repo, tag, layer, config).await
    }

    async fn push(
        &self,
        repo: &str,
        tag: &str,
        layer: ImageLayer,
        config: Config,
    ) -> anyhow::Result<String> {
        let reference: oci_client::Reference = format!("{}/{repo}:{tag}", self.host())
            .parse()
            .with_context(|| format!("bad repository or tag {repo:?}:{tag:?}"))?;
        let client = self.client()?;
        let auth = self.auth();
        let layers = [layer];
        let manifest = OciImageManifest::build(&layers, &config, None);
        client
            .push(&reference, &layers, config, &auth, Some(manifest))
            .await
            .with_context(|| format!("cannot push {reference}"))?;
        let digest = client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .with_context(|| format!("cannot read back the digest of {reference}"))?;
        Ok(digest)
    }

    fn client(&self) -> anyhow::Result<oci_client::Client> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![self.host()]),
            ..ClientConfig::default()
        };
        Ok(oci_client::Client::try_from(config)?)
    }

    fn auth(&self) -> RegistryAuth {
        match &self.credentials {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host())
            .field("auth", &self.credentials.is_some())
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn write_config(dir: &Path, port: u16, htpasswd: bool) -> anyhow::Result<PathBuf> {
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage)?;
    let mut config = format!(
        "version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: wedge-test-registry-{port}
",
        storage = storage.display()
    );
    if htpasswd {
        config.push_str(&format!(
            "auth:
  htpasswd:
    realm: wedge-test
    path: {}
",
            dir.join("htpasswd").display()
        ));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Polls `GET /v2/` until it answers 200 (or 401 with auth on), the child exits, or the
/// deadline passes.
fn wait_until_up(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the registry exited: {status}");
        }
        if let Some(status) = get_v2_status(addr)
            && (status == 200 || status == 401)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the registry did not answer on {addr} within {START_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status code of `GET /v2/`, or None if nothing answered.
fn get_v2_status(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(host: &str) -> Option<u16> {
        get_v2_status(host.parse().unwrap())
    }

    #[test]
    fn starts_answers_and_stops_on_drop() {
        let registry = Registry::start().unwrap();
        let host = registry.host();
        assert_eq!(status(&host), Some(200));
        let dir = registry.dir().to_path_buf();
        drop(registry);
        assert_eq!(status(&host), None);
        assert!(!dir.exists());
    }

    #[test]
    fn with_auth_refuses_anonymous_requests() {
        let registry = Registry::start_with_auth("wedge", "pw").unwrap();
        assert_eq!(status(&registry.host()), Some(401));
    }

    #[tokio::test]
    async fn pushes_return_the_manifest_digest() {
        let registry = Registry::start_with_auth("wedge", "pw").unwrap();
        let digest = registry.push_wasm("a/b", "1", b"wasm").await.unwrap();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        let other = registry
            .push_other("a/c", "1", b"tar", "application/vnd.oci.image.layer.v1.tar")
            .await
            .unwrap();
        assert_ne!(digest, other);
    }
}
