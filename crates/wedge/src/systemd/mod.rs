//! Talking to systemd (or any manager speaking its protocol) when `wedge run` is a service:
//! readiness and reloads over `$NOTIFY_SOCKET`, the watchdog fed from the host's health, and
//! logs the journal reads well ([`journal`]). Outside a service every call here does nothing:
//! `sd_notify` without `$NOTIFY_SOCKET` is a no-op.

pub mod journal;

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use wedge_host::Host;

/// Tells the manager the start is done (`READY=1`), with a one-line status for `systemctl
/// status`.
pub fn ready(modules: usize) {
    let status = format!("running {modules} module(s)");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells the manager a reload began (`RELOADING=1`); [`ready`] ends it.
pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

/// Tells the manager the host is stopping (`STOPPING=1`), so a slow shutdown is not taken
/// for a hang.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// With a watchdog asked for (`$WATCHDOG_USEC`, for this process if `$WATCHDOG_PID` is
/// set), a task that checks the host's health at half the interval (what `sd_watchdog_enabled`
/// advises) and sends `WATCHDOG=1` only while it is healthy: a host whose parts died stops
/// feeding the watchdog and is restarted by the manager. Each change of health is logged
/// once and shown as the unit's status.
pub fn watchdog(host: Arc<Host>) -> Option<JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()?;
    let period = (interval / 2).max(Duration::from_millis(10));
    tracing::info!(
        ?interval,
        "feeding the service manager's watchdog while healthy"
    );
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_healthy = true;
        loop {
            ticker.tick().await;
            match host.health().await {
                Ok(()) => {
                    if !was_healthy {
                        tracing::info!("healthy again: feeding the watchdog");
                        send(&[NotifyState::Status("healthy")]);
                    }
                    send(&[NotifyState::Watchdog]);
                    was_healthy = true;
                }
                Err(why) => {
                    if was_healthy {
                        tracing::error!("unhealthy, not feeding the watchdog: {why}");
                        let status = format!("unhealthy: {why}");
                        send(&[NotifyState::Status(&status)]);
                    }
                    was_healthy = false;
                }
            }
        }
    }))
}
