//! `wedge run`: the host process.

use std::hash::{BuildHasher, RandomState};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;
use wedge_hub::Drain;
use wedge_hub::iothub::connection_string::ConnectionString;
use wedge_hub::iothub::session::{ClientIdentity, IotHub, IotHubOptions};
use wedge_hub::local::LocalHub;
use wedge_hub::mqtt::{MqttUpstream, MqttUpstreamOptions};
use wedge_hub::{Cloud, HubEvent};
use wedge_runtime::deployment::{MqttSpec, TopicTemplate, UpstreamSpec};
use wedge_runtime::{Deployment, EngineCtx, Runtime, Upstream};
use wedge_store::{Outbox, Store};

use crate::cloud;
use crate::control::server::{self, Host};

/// Arguments of `wedge run`.
#[derive(clap::Args)]
pub struct Args {
    /// The deployment file (`wedge.toml`).
    deployment: PathBuf,
}

/// Runs the deployment on the local hub until SIGINT or SIGTERM.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("WEDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let shutdown = shutdown_signal()?;
    let deployment = Deployment::load(&args.deployment)?;
    // The store first: it refuses a data dir another host has open, or one it cannot use,
    // before anything else touches the directory.
    let store = Store::open(data_dir)?;
    let (listener, socket) = server::bind(data_dir).await?;
    let engine = EngineCtx::new()?.with_cache(data_dir.join("compiled"));
    let outbox = store.outbox(deployment.outbox);
    let drain = Drain {
        outbox: outbox.clone(),
        id_prefix: store_id(&store).await?,
    };
    let ctx = HostCtx {
        engine,
        store,
        outbox,
        data_dir,
    };
    let host = match &deployment.upstream {
        UpstreamSpec::Local => {
            let local = Arc::new(LocalHub::open(data_dir)?);
            local.clone().forward(drain);
            let runtime = ctx.runtime(local.clone());
            runtime.start(&deployment, &local.desired_modules()).await?;
            Host {
                runtime,
                outbox: ctx.outbox,
                local: Some(local),
                cloud: None,
            }
        }
        UpstreamSpec::IotHub {
            connection_string,
            ca_file,
            cert_file,
            key_file,
            port,
        } => {
            let text = connection_string
                .read()
                .map_err(|e| anyhow::anyhow!("upstream connection string: {e}"))?;
            let connection =
                ConnectionString::parse(&text).context("upstream connection string")?;
            let mut options = IotHubOptions::new(connection);
            options.ca_file = ca_file.clone();
            options.client_identity =
                cert_file
                    .clone()
                    .zip(key_file.clone())
                    .map(|(cert_file, key_file)| ClientIdentity {
                        cert_file,
                        key_file,
                    });
            options.port = port.unwrap_or(options.port);
            let (hub, events) = IotHub::start(options, drain)?;
            ctx.cloud_host(&deployment, Arc::new(hub), events).await?
        }
        UpstreamSpec::Mqtt(spec) => {
            let (broker, events) = MqttUpstream::start(mqtt_options(spec)?, drain)?;
            ctx.cloud_host(&deployment, Arc::new(broker), events)
                .await?
        }
    };
    let runtime = host.runtime.clone();
    tracing::info!(
        deployment = %args.deployment.display(),
        data_dir = %data_dir.display(),
        modules = deployment.modules.len(),
        upstream = host.cloud.as_ref().map_or("local", |c| c.kind()),
        "wedge is running"
    );

    let control = tokio::spawn(server::serve(listener, Arc::new(host)));
    shutdown.await;
    tracing::info!("shutting down");
    control.abort();
    runtime.shutdown().await;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// What every host is built from.
struct HostCtx<'a> {
    engine: EngineCtx,
    store: Store,
    outbox: Outbox,
    data_dir: &'a Path,
}

impl HostCtx<'_> {
    fn runtime(&self, upstream: Arc<dyn Upstream>) -> Arc<Runtime> {
        Arc::new(Runtime::new(
            self.engine.clone(),
            upstream,
            self.store.clone(),
            self.outbox.clone(),
            self.data_dir.to_path_buf(),
        ))
    }

    /// A host whose upstream is a cloud: modules start at once with the configuration last
    /// applied from the cloud (kept in the store, so this works offline), and the cloud's
    /// desired configuration is applied as it arrives.
    async fn cloud_host(
        self,
        deployment: &Deployment,
        cloud: Arc<dyn Cloud>,
        events: mpsc::Receiver<HubEvent>,
    ) -> anyhow::Result<Host> {
        let runtime = self.runtime(cloud.clone());
        let applied = cloud::AppliedDesired::load(self.store.meta())?;
        runtime.start(deployment, &applied.overlays()).await?;
        tokio::spawn(cloud::serve(
            events,
            runtime.clone(),
            cloud.clone(),
            self.outbox.clone(),
            applied,
        ));
        Ok(Host {
            runtime,
            outbox: self.outbox,
            local: None,
            cloud: Some(cloud),
        })
    }
}

/// The data dir's identity, the prefix of message ids: made once, kept in the store.
async fn store_id(store: &Store) -> anyhow::Result<String> {
    const NAME: &str = "store-id";
    let meta = store.meta();
    if let Some(id) = meta.get(NAME)? {
        return String::from_utf8(id).context("the store id is not text");
    }
    let id = format!("{:016x}", RandomState::new().hash_one(SystemTime::now()));
    meta.set(NAME, id.clone().into_bytes()).await?;
    Ok(id)
}

/// The MQTT upstream's options from the deployment, with its password read.
fn mqtt_options(spec: &MqttSpec) -> anyhow::Result<MqttUpstreamOptions> {
    let password = spec
        .password
        .as_ref()
        .map(|source| source.read())
        .transpose()
        .map_err(|e| anyhow::anyhow!("upstream password: {e}"))?;
    let credentials = spec
        .username
        .clone()
        .map(|user| (user, password.unwrap_or_default()));
    let topic = |template: &TopicTemplate| {
        template
            .render(&spec.device, "", "")
            .context("upstream topic")
    };
    Ok(MqttUpstreamOptions {
        host: spec.host.clone(),
        port: spec.port.unwrap_or(if spec.tls { 8883 } else { 1883 }),
        tls: spec.tls,
        ca_file: spec.ca_file.clone(),
        device: spec.device.clone(),
        client_id: spec
            .client_id
            .clone()
            .unwrap_or_else(|| format!("wedge-{}", spec.device)),
        credentials,
        telemetry_topic: spec.telemetry_topic.clone(),
        config_topic: spec.config_topic.as_ref().map(topic).transpose()?,
        reported_topic: spec.reported_topic.as_ref().map(topic).transpose()?,
    })
}

/// Resolves at the first SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when it is awaited: call it first, so that a service manager stopping wedge while it
/// starts still gets a clean shutdown once the modules are up.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
