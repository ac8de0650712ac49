//! What the host reports about its modules, edgeAgent style, under `reported.wedge.modules`:
//! `runtimeStatus`, `sha256`, `restartCount`, `lastStartTimeUtc`, `lastExitTimeUtc`,
//! `statusDescription`. Only what changed is sent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wedge_core::doc::{ModuleReport, ReportedDoc};
use wedge_runtime::{ModuleStatus, Runtime};

/// Where reported patches go (`{"wedge": …}`, merged into the reported section).
pub(crate) type Reporter = Arc<dyn Fn(Value) + Send + Sync>;

/// Reports at most this often: a module in a crash loop changes state many times a second.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Reports every change of the modules' health until the runtime is gone.
pub(crate) async fn report_modules(runtime: Arc<Runtime>, report: Reporter) {
    let mut changes = runtime.changes();
    let mut previous = ReportedDoc::default();
    loop {
        let current = ReportedDoc {
            modules: runtime
                .status()
                .iter()
                .map(|m| (m.name.clone(), module_report(m)))
                .collect(),
            ..ReportedDoc::default()
        };
        if let Some(patch) = current.patch_from(&previous) {
            report(json!({ "wedge": patch }));
            previous = current;
        }
        tokio::time::sleep(MIN_INTERVAL).await;
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// One module as reported.
pub(crate) fn module_report(status: &ModuleStatus) -> ModuleReport {
    let time = |t: Option<std::time::SystemTime>| {
        t.map(|t| humantime::format_rfc3339_millis(t).to_string())
    };
    ModuleReport {
        runtime_status: status.state,
        sha256: Some(status.sha256.clone()),
        restart_count: status.restarts,
        last_start_time_utc: time(status.last_start),
        last_exit_time_utc: time(status.last_exit),
        status_description: status.last_error.clone(),
    }
}
