//! What a service manager asks of a running host: is it ready (the modules run and the
//! control socket answers), is it healthy (for a watchdog), and reload the deployment file.
//! The host only answers; talking to systemd is the binary's business.

use std::path::Path;
use std::time::Duration;

use crate::Host;
use crate::base::base_document;
use crate::config::Deployment;

/// How long the store's writer gets to answer the health check. A writer stuck longer than
/// this (a hung disk) is not healthy: no telemetry or state is being made durable.
const STORE_DEADLINE: Duration = Duration::from_secs(5);

impl Host {
    /// Returns once every module's first start has come to an end: its `init` returned, or it
    /// failed (and waits to be restarted, or its policy says never), or it is stopped as
    /// desired. A failing module does not hold readiness back: the host is up and `wedge
    /// status` says what failed; a manager that waited for it would only restart the host
    /// over and over. The control socket answers from [`Host::start`] on.
    pub async fn ready(&self) {
        let mut changes = self.runtime.changes();
        while !self.runtime.settled() {
            if changes.changed().await.is_err() {
                return; // the runtime is gone: nothing more will settle
            }
        }
    }

    /// Whether the host is doing its work: each of its own tasks (control socket, telemetry
    /// writer, status reporter, cloud events, metrics) and each module's supervisor still
    /// runs, and the store's writer commits within [`STORE_DEADLINE`]. What a watchdog is fed
    /// from: a blind timer would keep feeding a host whose parts are dead.
    ///
    /// # Errors
    /// What is not working, in a sentence.
    pub async fn health(&self) -> Result<(), String> {
        let ended: Vec<&str> = self
            .tasks()
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(name, _)| *name)
            .collect();
        if !ended.is_empty() {
            return Err(format!("{} ended", ended.join(", ")));
        }
        self.runtime.alive()?;
        match tokio::time::timeout(STORE_DEADLINE, self.store.flush()).await {
            Err(_) => Err(format!(
                "the store's writer did not commit within {STORE_DEADLINE:?}"
            )),
            Ok(Err(wedge_store::StoreError::Closed)) => Err("the store's writer ended".into()),
            // It answered: it is alive. A failed commit (a full disk) is logged where it
            // happens, and a restart would not make room.
            Ok(_) => Ok(()),
        }
    }

    /// Reads the deployment file at `path` again and applies its modules and routes as a
    /// diff, the way a desired deployment is applied: the desired deployment last applied
    /// (the local twin's, or the cloud's) is merged over the new file, modules whose entry did
    /// not change keep running untouched, and a refusal changes nothing. With a cloud
    /// upstream this reloads the file's own modules and routes, the base the cloud's
    /// deployment is merged over; what the cloud asked for stays as it was.
    ///
    /// What the host was started with and cannot change while it runs (`[upstream]`,
    /// `[outbox]`, `[sources]`, `[metrics]`) must be as it was: a file that changes them is
    /// refused whole, naming them (a restart applies them).
    ///
    /// # Errors
    /// Why the file was refused; the running deployment stays.
    pub async fn reload(&self, path: &Path) -> Result<(), String> {
        let mut running = self.deployment.lock().await;
        let next = Deployment::load(path).map_err(|e| e.to_string())?;
        let fixed = [
            ("[upstream]", running.upstream != next.upstream),
            ("[outbox]", running.outbox != next.outbox),
            ("[sources]", running.sources != next.sources),
            ("[metrics]", running.metrics != next.metrics),
        ];
        let changed: Vec<&str> = fixed.iter().filter(|(_, c)| *c).map(|(t, _)| *t).collect();
        if !changed.is_empty() {
            return Err(format!(
                "{}: {} changed, which a running host cannot change: restart wedge to apply it (nothing was changed)",
                path.display(),
                changed.join(", ")
            ));
        }
        let status = self.reconciler.rebase(base_document(&next)).await;
        if status.code != 200 {
            return Err(format!(
                "{}: {} (nothing was changed)",
                path.display(),
                status.description
            ));
        }
        *running = next;
        Ok(())
    }
}
