//! The deployment file's modules and routes as a deployment document: the base the desired
//! deployment is merged over, so that a module from `wedge.toml` and one from the cloud are
//! handled the same way.

use serde_json::{Value, json};
use wedge_runtime::spec::{DesiredStatus, RestartPolicy, Target, UPSTREAM, WhenFull};

use crate::config::Deployment;

/// `deployment`'s modules and routes in the shape of `desired.wedge`.
pub(crate) fn base_document(deployment: &Deployment) -> Value {
    let modules: serde_json::Map<String, Value> = deployment
        .modules
        .iter()
        .map(|(name, module)| {
            let spec = &module.spec;
            let mut doc = json!({
                "source": module.path.display().to_string(),
                "config": spec.config,
                "limits": {
                    "memory-mb": spec.memory_mb,
                    "cpu-ms-per-call": spec.cpu_ms_per_call,
                    "cpu-ms-per-second": spec.cpu_ms_per_second,
                    "inbox": spec.inbox,
                    "state-kb": spec.state_quota_bytes >> 10,
                    "log-kb": spec.log_bytes >> 10,
                    "sockets": spec.max_sockets,
                },
                "method-timeout-ms": spec.method_timeout_ms,
            });
            let hosts = spec.allowed_hosts.entries();
            if !hosts.is_empty() {
                doc["allowed-hosts"] = json!(hosts);
            }
            let (connect, listen) = spec.sockets.entries();
            if !connect.is_empty() {
                doc["connect"] = json!(connect);
            }
            if !listen.is_empty() {
                doc["listen"] = json!(listen);
            }
            if let Some(http) = &spec.http {
                doc["http-listen"] = json!(http.listen.to_string());
                doc["limits"]["http-body-kb"] = json!(http.body_bytes >> 10);
                doc["limits"]["http-timeout-ms"] = json!(http.timeout_ms);
                doc["limits"]["http-concurrency"] = json!(http.concurrency);
            }
            if spec.kind.is_operator() {
                doc["kind"] = json!(spec.kind);
            }
            if let Some(tick_ms) = spec.tick_ms {
                doc["tick-ms"] = json!(tick_ms);
            }
            if spec.data_dir {
                doc["data-dir"] = json!(true);
            }
            if spec.restart_policy != RestartPolicy::default() {
                doc["restart-policy"] = json!(spec.restart_policy);
            }
            if spec.status != DesiredStatus::default() {
                doc["status"] = json!(spec.status);
            }
            (name.clone(), doc)
        })
        .collect();
    let routes: serde_json::Map<String, Value> = deployment
        .routes
        .iter()
        .map(|(name, route)| {
            let to = match &route.to {
                Target::Module { module, input } => format!("{module}/{input}"),
                Target::Upstream => UPSTREAM.to_string(),
            };
            let mut doc = json!({
                "from": format!("{}/{}", route.from_module, route.from_output),
                "to": to,
            });
            if route.durable {
                doc["durable"] = json!(true);
            }
            if route.when_full != WhenFull::default() {
                doc["when-full"] = json!(route.when_full);
            }
            (name.clone(), doc)
        })
        .collect();
    json!({ "modules": modules, "routes": routes })
}
