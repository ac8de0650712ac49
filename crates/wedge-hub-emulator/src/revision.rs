//! Waiting for an emulator's state to reach a condition: the state bumps a revision on every
//! change, and a waiter re-checks after each bump, with a deadline.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::watch;
use tokio::time::Instant;

/// Re-checks `done` after every change `revision` announces until it holds or `timeout`
/// passes; `who` names the emulator in the error when it stops.
pub(crate) async fn wait_until(
    revision: &watch::Sender<u64>,
    who: &str,
    timeout: Duration,
    done: impl Fn() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut changes = revision.subscribe();
    loop {
        // Mark the current revision seen *before* checking, so no change is missed.
        changes.borrow_and_update();
        if done() {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("{who} stopped"),
            Err(_) => bail!("timed out after {timeout:?}"),
        }
    }
}
