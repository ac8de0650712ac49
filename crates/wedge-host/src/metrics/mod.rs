//! The metrics listener (`[metrics] listen` in wedge.toml): `/metrics` in the OpenMetrics text
//! format that Prometheus scrapes, `/healthz` and `/readyz`. Nothing is counted here: every
//! request reads what the runtime, the outbox and the upstream link keep anyway
//! (`collector.rs`), so a host without the listener pays nothing.

mod collector;
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wedge_hub::{Cloud, LinkStatus};
use wedge_runtime::{ModuleStatus, Runtime};
use wedge_store::Outbox;

pub(crate) use server::{bind, serve};

/// What the endpoints read at each request.
pub(crate) struct Sources {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) outbox: Outbox,
    pub(crate) cloud: Option<Arc<dyn Cloud>>,
    /// When the host started: before its first connection the upstream is offline since then.
    pub(crate) started: Instant,
    /// How long the upstream may be offline before `/readyz` says so.
    pub(crate) offline_grace: Duration,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field(
                "upstream",
                &self.cloud.as_ref().map_or("local", |c| c.kind()),
            )
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// `Ok` when the device does what it should, else the reasons, one per line.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        let link = self.cloud.as_ref().map(|c| (c.kind(), c.status()));
        readiness(
            &self.runtime.status(),
            link.as_ref().map(|(kind, link)| (*kind, link)),
            self.started.elapsed(),
            self.offline_grace,
        )
    }
}

/// Ready: every module is in its desired state, and the upstream (a cloud; the local hub is
/// always there) is connected or has been offline for less than `grace`, counted from the
/// lost connection, or from the start (`up_for` ago) if it never connected.
fn readiness(
    modules: &[ModuleStatus],
    upstream: Option<(&str, &LinkStatus)>,
    up_for: Duration,
    grace: Duration,
) -> Result<(), String> {
    use wedge_core::DesiredStatus;
    use wedge_core::doc::RuntimeStatus;
    let mut reasons = Vec::new();
    for module in modules {
        let wanted = match module.desired {
            DesiredStatus::Running => RuntimeStatus::Running,
            DesiredStatus::Stopped => RuntimeStatus::Stopped,
        };
        if module.state != wanted {
            let error = module
                .last_error
                .as_deref()
                .map(|e| format!(": {}", wedge_core::truncate(e, 200)))
                .unwrap_or_default();
            reasons.push(format!(
                "module `{}` is {}, desired {}{error}",
                module.name,
                json_name(&module.state),
                json_name(&module.desired),
            ));
        }
    }
    if let Some((kind, link)) = upstream.filter(|(_, link)| !link.connected) {
        let offline_for = link
            .offline
            .current_ms
            .map_or(up_for, Duration::from_millis);
        if offline_for >= grace {
            let error = link
                .last_error
                .as_deref()
                .map(|e| format!(": {}", wedge_core::truncate(e, 200)))
                .unwrap_or_default();
            reasons.push(format!(
                "upstream {kind} not connected for {:.1} s{error}",
                offline_for.as_secs_f64()
            ));
        }
    }
    match reasons.is_empty() {
        true => Ok(()),
        false => Err(reasons.join("\n")),
    }
}

/// A state as `wedge status` shows it (`running`, `backoff`, ...).
fn json_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wedge_core::DesiredStatus;
    use wedge_core::doc::RuntimeStatus;

    const GRACE: Duration = Duration::from_secs(30);
    const LONG_AGO: Duration = Duration::from_secs(60);

    fn module(state: RuntimeStatus, desired: DesiredStatus) -> ModuleStatus {
        ModuleStatus {
            name: "filter".into(),
            state,
            desired,
            sha256: String::new(),
            messages_in: 0,
            messages_out: 0,
            errors: 0,
            queued: 0,
            dropped: 0,
            restarts: 0,
            starts: 1,
            methods: 0,
            memory_bytes: 0,
            logs_suppressed: 0,
            network_denied: 0,
            last_start: None,
            last_exit: None,
            last_error: Some("wasm trap: unreachable".into()),
            config: serde_json::Value::Null,
            operator_metrics: Vec::new(),
        }
    }

    #[test]
    fn modules_must_be_as_desired() {
        use DesiredStatus::{Running, Stopped};
        let ready = |state, desired| readiness(&[module(state, desired)], None, LONG_AGO, GRACE);
        assert_eq!(ready(RuntimeStatus::Running, Running), Ok(()));
        assert_eq!(ready(RuntimeStatus::Stopped, Stopped), Ok(()));
        assert_eq!(
            ready(RuntimeStatus::Backoff, Running),
            Err("module `filter` is backoff, desired running: wasm trap: unreachable".into())
        );
        assert!(ready(RuntimeStatus::Running, Stopped).is_err());
        assert!(ready(RuntimeStatus::Failed, Running).is_err());
    }

    #[test]
    fn the_upstream_may_be_offline_for_the_grace() {
        let mut link = LinkStatus {
            last_error: Some("connection refused".into()),
            ..LinkStatus::default()
        };
        // Never connected: offline since the start.
        assert_eq!(
            readiness(&[], Some(("mqtt", &link)), GRACE / 2, GRACE),
            Ok(())
        );
        assert_eq!(
            readiness(&[], Some(("mqtt", &link)), LONG_AGO, GRACE),
            Err("upstream mqtt not connected for 60.0 s: connection refused".into())
        );
        // Lost a while after the start: the grace counts from the loss.
        link.offline.current_ms = Some(1_000);
        assert_eq!(
            readiness(&[], Some(("mqtt", &link)), LONG_AGO, GRACE),
            Ok(())
        );
        link.offline.current_ms = Some(31_000);
        assert!(readiness(&[], Some(("mqtt", &link)), LONG_AGO, GRACE).is_err());
        link.connected = true;
        assert_eq!(
            readiness(&[], Some(("mqtt", &link)), LONG_AGO, GRACE),
            Ok(())
        );
    }
}
