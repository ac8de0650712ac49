//! What the host does when the cloud (IoT Hub, or an MQTT broker's config topic) asks: apply
//! the desired deployment (through the reconciler, latest first), answer direct methods, route
//! cloud-to-device messages (`$upstream/c2d`) to module inputs. The link hands these over
//! without waiting for the host, so none of this can hold up telemetry or keep-alives.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use wedge_core::SendError;
use wedge_hub::{Cloud, Desired, HubEvents, MethodCall};
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
    events: HubEvents,
    runtime: Arc<Runtime>,
    reconciler: Arc<Reconciler>,
    hub: Arc<dyn Cloud>,
    outbox: Outbox,
) {
    let HubEvents {
        desired,
        mut methods,
        c2d,
    } = events;
    let applying = tokio::spawn(apply_latest(desired, reconciler));
    let delivering = tokio::spawn(deliver_c2d(c2d, runtime.clone()));
    // Methods run concurrently (a slow module must not hold up others); the link bounds how
    // many are unanswered, so this spawns a bounded number of tasks.
    while let Some(call) = methods.recv().await {
        let (runtime, hub, outbox) = (runtime.clone(), hub.clone(), outbox.clone());
        tokio::spawn(answer(call, runtime, hub, outbox));
    }
    // The MQTT upstream has neither methods nor C2D: desired deployments go on arriving.
    let _ = delivering.await;
    let _ = applying.await;
}

/// How long a C2D message a full destination refused waits before it is offered again: from
/// 20 ms doubling to 1 s while the destination stays full.
const C2D_RETRY_START: Duration = Duration::from_millis(20);
const C2D_RETRY_CAP: Duration = Duration::from_secs(1);

/// Delivers cloud-to-device messages along the `$upstream/c2d` routes, in order, each
/// acknowledged to the hub only once a route took it (at least once). A full destination is
/// waited for, the messages behind it with it (the link holds at most its queue's worth, and
/// the hub holds the rest); a message no route can ever take (no route, too large, invalid) is
/// logged, acknowledged and dropped, since the hub would only send it again.
async fn deliver_c2d(mut c2d: mpsc::Receiver<wedge_hub::C2d>, runtime: Arc<Runtime>) {
    while let Some(message) = c2d.recv().await {
        let mut wait = C2D_RETRY_START;
        loop {
            match runtime.deliver_c2d(message.message.clone()).await {
                Ok(()) => break,
                Err(SendError::Full) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(C2D_RETRY_CAP);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cloud-to-device message dropped");
                    break;
                }
            }
        }
        message.accepted();
    }
}

async fn answer(call: MethodCall, runtime: Arc<Runtime>, hub: Arc<dyn Cloud>, outbox: Outbox) {
    let status = || status::document(&runtime, &outbox, Some(hub.as_ref()));
    let (code, payload) = method(&runtime, &call.name, &call.payload, status).await;
    call.answer(code, payload);
}

/// Applies the latest desired deployment each time one arrives; those that arrive while one is
/// applied are skipped but for the newest.
async fn apply_latest(mut desired: watch::Receiver<Option<Desired>>, reconciler: Arc<Reconciler>) {
    while desired.changed().await.is_ok() {
        let Some(Desired {
            version,
            deployment,
        }) = desired.borrow_and_update().clone()
        else {
            continue;
        };
        if reconciler.applied().desired() == (Some(version), deployment.clone()) {
            continue; // what the host started with: nothing to do
        }
        reconciler.apply(Some(version), &deployment).await;
    }
}

/// Answers a direct method named `<module>.<method>`; `wedge.status`, `wedge.get-logs` (see
/// `get_logs.rs`) and `wedge.restart-module` (`{"module": …}`) are the host's own.
pub(crate) async fn method(
    runtime: &Runtime,
    name: &str,
    payload: &str,
    status: impl FnOnce() -> Value,
) -> (u16, String) {
    let error = |status: u16, message: String| (status, json!({ "error": message }).to_string());
    match name.split_once('.') {
        Some(("wedge", "status")) => (200, status().to_string()),
        Some(("wedge", "get-logs")) => crate::get_logs::get_logs(runtime, payload),
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
