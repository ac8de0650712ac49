//! What the host does when the cloud (IoT Hub, or an MQTT broker's config topic) asks: apply
//! desired module configuration (acknowledged in reported properties), answer direct methods,
//! route cloud-to-device messages (`$upstream/c2d`) to module inputs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wedge_hub::iothub::twin::config_ack_patch;
use wedge_hub::{Cloud, HubEvent};
use wedge_runtime::{Runtime, RuntimeError};
use wedge_store::{Meta, Outbox};

use crate::status;

/// How long a module gets to accept a configuration.
const CONFIGURE_DEADLINE: Duration = Duration::from_secs(10);

/// The desired overlays last applied from the cloud, module name to overlay. Kept in the store,
/// so that a restart, offline too, starts every module with the configuration it last accepted
/// rather than the deployment's; the cloud's current desired state is applied on top when it
/// is reachable.
pub struct AppliedDesired {
    meta: Meta,
    overlays: BTreeMap<String, Value>,
}

impl AppliedDesired {
    /// Name of the store's meta document.
    const NAME: &'static str = "applied-desired";

    /// What the store holds (nothing yet on a new data dir).
    ///
    /// # Errors
    /// The store cannot be read or the document is not an object of overlays.
    pub fn load(meta: Meta) -> anyhow::Result<Self> {
        let overlays = match meta.get(Self::NAME)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("the store's `{}` document is damaged", Self::NAME))?,
            None => BTreeMap::new(),
        };
        Ok(AppliedDesired { meta, overlays })
    }

    /// Module name to the overlay it runs with.
    pub fn overlays(&self) -> BTreeMap<String, Value> {
        self.overlays.clone()
    }

    fn get(&self, module: &str) -> Value {
        self.overlays
            .get(module)
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// Records that `module` accepted `overlay`, durably.
    async fn set(&mut self, module: &str, overlay: Value) {
        self.overlays.insert(module.to_string(), overlay);
        let document = serde_json::to_vec(&self.overlays).expect("JSON values serialize");
        if let Err(e) = self.meta.set(Self::NAME, document).await {
            tracing::error!(error = %e, "cannot keep the applied configuration for the next start");
        }
    }
}

/// Serves the hub's events until the connection task ends.
pub async fn serve(
    mut events: mpsc::Receiver<HubEvent>,
    runtime: Arc<Runtime>,
    hub: Arc<dyn Cloud>,
    outbox: Outbox,
    mut applied: AppliedDesired,
) {
    while let Some(event) = events.recv().await {
        match event {
            HubEvent::Desired { version, modules } => {
                apply_desired(&runtime, hub.as_ref(), &mut applied, version, &modules).await;
            }
            HubEvent::Method {
                name,
                payload,
                respond,
            } => {
                let (runtime, hub, outbox) = (runtime.clone(), hub.clone(), outbox.clone());
                // Methods run concurrently: a slow module must not hold up the twin.
                tokio::spawn(async move {
                    let status = || status::document(&runtime, &outbox, Some(hub.as_ref()));
                    let _ = respond.send(method(&runtime, &name, &payload, status).await);
                });
            }
            HubEvent::C2d(message) => {
                if let Err(e) = runtime.deliver_c2d(message).await {
                    tracing::warn!(error = %e, "cloud-to-device message dropped");
                }
            }
        }
    }
}

/// Applies the desired overlays that changed and acknowledges each with the desired `$version`:
/// 200 applied, 400 rejected by the module (its previous config stays active), 404 no such
/// module.
async fn apply_desired(
    runtime: &Runtime,
    hub: &dyn Cloud,
    applied: &mut AppliedDesired,
    version: u64,
    desired: &BTreeMap<String, Value>,
) {
    let running: Vec<String> = runtime.status().into_iter().map(|m| m.name).collect();
    for name in desired.keys().filter(|name| !running.contains(name)) {
        let reason = format!("no module named `{name}` is deployed");
        tracing::warn!(module = %name, version, "{reason}");
        hub.report_raw(config_ack_patch(
            name,
            desired[name].clone(),
            404,
            version,
            Some(&reason),
        ));
    }
    for name in &running {
        let overlay = desired.get(name).cloned().unwrap_or_else(|| json!({}));
        if overlay == applied.get(name) {
            continue;
        }
        let (status, description) =
            match runtime.configure(name, &overlay, CONFIGURE_DEADLINE).await {
                Ok(_) => {
                    applied.set(name, overlay.clone()).await;
                    (200, None)
                }
                Err(RuntimeError::Rejected { reason, .. }) => (400, Some(reason)),
                Err(e) => (500, Some(e.to_string())),
            };
        tracing::info!(module = %name, version, status, "desired configuration");
        hub.report_raw(config_ack_patch(
            name,
            overlay,
            status,
            version,
            description.as_deref(),
        ));
    }
}

/// Answers a direct method named `<module>.<method>`; `wedge.status` and
/// `wedge.restart-module` (`{"module": …}`) are the host's own.
async fn method(
    runtime: &Runtime,
    name: &str,
    payload: &str,
    status: impl FnOnce() -> Value,
) -> (u16, String) {
    let error = |status: u16, message: String| (status, json!({ "error": message }).to_string());
    match name.split_once('.') {
        Some(("wedge", "status")) => (200, status().to_string()),
        Some(("wedge", "restart-module")) => {
            let module = serde_json::from_str::<Value>(payload)
                .ok()
                .and_then(|p| p["module"].as_str().map(String::from));
            let Some(module) = module else {
                return error(400, r#"payload must be {"module": "<name>"}"#.into());
            };
            match runtime.restart(&module, CONFIGURE_DEADLINE).await {
                Ok(()) => (200, json!({ "restarted": module }).to_string()),
                Err(e @ RuntimeError::UnknownModule(_)) => error(404, e.to_string()),
                Err(e) => error(500, e.to_string()),
            }
        }
        Some((module, method)) => match runtime.invoke(module, method, payload).await {
            Ok(result) => (result.status, result.payload),
            Err(e @ RuntimeError::UnknownModule(_)) => error(404, e.to_string()),
            Err(e) => error(500, e.to_string()),
        },
        None => error(
            404,
            format!("method `{name}` must be named `<module>.<method>`"),
        ),
    }
}
