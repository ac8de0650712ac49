//! What the host does when the cloud (IoT Hub, or an MQTT broker's config topic) asks: apply
//! the desired deployment (through the reconciler, latest first), answer direct methods, route
//! cloud-to-device messages (`$upstream/c2d`) to module inputs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use wedge_hub::{Cloud, HubEvent};
use wedge_runtime::{Runtime, RuntimeError};
use wedge_store::Outbox;

use crate::reconcile::Reconciler;
use crate::status;

/// How long a module gets to restart on request.
const RESTART_DEADLINE: Duration = Duration::from_secs(10);

/// Serves the hub's events until the connection task ends. Desired deployments go to their own
/// task, one at a time with the latest winning, so that a slow download never holds up
/// methods or cloud-to-device messages.
pub(crate) async fn serve(
    mut events: mpsc::Receiver<HubEvent>,
    runtime: Arc<Runtime>,
    reconciler: Arc<Reconciler>,
    hub: Arc<dyn Cloud>,
    outbox: Outbox,
) {
    let (desired_tx, desired_rx) = watch::channel(None);
    let applying = tokio::spawn(apply_latest(desired_rx, reconciler));
    while let Some(event) = events.recv().await {
        match event {
            HubEvent::Desired { version, desired } => {
                desired_tx.send_replace(Some((version, desired)));
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
    applying.abort();
}

/// Applies the latest desired deployment each time one arrives; those that arrive while one is
/// applied are skipped but for the newest.
async fn apply_latest(
    mut desired: watch::Receiver<Option<(u64, Value)>>,
    reconciler: Arc<Reconciler>,
) {
    while desired.changed().await.is_ok() {
        let Some((version, document)) = desired.borrow_and_update().clone() else {
            continue;
        };
        if reconciler.applied().desired() == (Some(version), document.clone()) {
            continue; // what the host started with: nothing to do
        }
        reconciler.apply(Some(version), &document).await;
    }
}

/// Answers a direct method named `<module>.<method>`; `wedge.status` and
/// `wedge.restart-module` (`{"module": …}`) are the host's own.
pub(crate) async fn method(
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
            match runtime.restart(&module, RESTART_DEADLINE).await {
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
