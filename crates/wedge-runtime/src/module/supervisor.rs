//! The task that owns a module: starts it, feeds it messages, ticks, configuration and methods
//! one at a time, and restarts it with backoff when it traps.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::Instrument;

use crate::bindings::EdgeModulePre;
use crate::host::HostState;

use super::instance::{Instance, Outcome};
use super::{Control, Delivery, MethodResult, ModuleCtx};

/// First delay before restarting a failed module; doubled after each failure up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Runs `ctx`'s module until its control channel closes.
pub(crate) async fn supervise(
    ctx: Arc<ModuleCtx>,
    pre: EdgeModulePre<HostState>,
    mut inbox: mpsc::Receiver<Delivery>,
    mut control: mpsc::Receiver<Control>,
) {
    let span = tracing::info_span!("module", module = %ctx.name);
    async move {
        let mut backoff = BACKOFF_START;
        loop {
            let failure = match Instance::start(&pre, ctx.clone()).await {
                Outcome::Done(mut instance) => {
                    tracing::info!("started");
                    ctx.stats.call_completed();
                    match serve(&mut instance, &ctx, &mut inbox, &mut control, &mut backoff).await {
                        Exit::Stop => break,
                        Exit::Restart => {
                            tracing::info!("restarting on request");
                            ctx.stats.restarts.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Exit::Trapped(e) => e,
                    }
                }
                Outcome::Refused(e) | Outcome::Trapped(e) => e,
            };
            tracing::error!(error = %failure, restart_in = ?backoff, "module failed");
            ctx.stats.failed(&failure);
            if stopped_while_waiting(backoff, &ctx, &mut control).await {
                break;
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
            ctx.stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        ctx.stats.stopped();
        tracing::info!("stopped");
    }
    .instrument(span)
    .await
}

enum Exit {
    Stop,
    /// Asked to restart: a fresh instance at once, state and counters kept.
    Restart,
    Trapped(String),
}

/// Feeds the running instance until it traps or the module is stopped.
async fn serve(
    instance: &mut Instance,
    ctx: &ModuleCtx,
    inbox: &mut mpsc::Receiver<Delivery>,
    control: &mut mpsc::Receiver<Control>,
    backoff: &mut Duration,
) -> Exit {
    let mut ticker = ctx.spec.tick_ms.map(|ms| {
        let mut ticker = tokio::time::interval(Duration::from_millis(ms));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    loop {
        let outcome = tokio::select! {
            // Control first: configuration and methods must not wait behind a full inbox.
            biased;
            request = control.recv() => match request {
                None => return Exit::Stop,
                Some(Control::Restart { reply }) => {
                    let _ = reply.send(());
                    return Exit::Restart;
                }
                Some(Control::Configure { config, reply }) => {
                    let previous = ctx.set_config(config.clone());
                    let outcome = instance.on_config(&config.to_string()).await;
                    if !matches!(outcome, Outcome::Done(())) {
                        ctx.set_config(previous);
                    }
                    let _ = reply.send(match &outcome {
                        Outcome::Done(()) => Ok(()),
                        Outcome::Refused(e) | Outcome::Trapped(e) => Err(e.clone()),
                    });
                    outcome
                }
                Some(Control::Method { name, payload, reply }) => {
                    let outcome = instance.on_method(&name, &payload).await;
                    let _ = reply.send(match &outcome {
                        Outcome::Done(result) => result.clone(),
                        Outcome::Refused(e) | Outcome::Trapped(e) => error_result(500, e),
                    });
                    match outcome {
                        Outcome::Done(_) => Outcome::Done(()),
                        Outcome::Refused(e) => Outcome::Refused(e),
                        Outcome::Trapped(e) => Outcome::Trapped(e),
                    }
                }
            },
            _ = next_tick(&mut ticker) => instance.on_tick().await,
            Some(delivery) = inbox.recv() => {
                ctx.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                let outcome = instance.on_message(&delivery.input, delivery.message).await;
                // A message that trapped the module counts as handled too: delivering it again
                // would trap it again.
                if let Some(handled) = delivery.handled {
                    let _ = handled.send(());
                }
                outcome
            }
        };
        match outcome {
            Outcome::Done(()) => {
                ctx.stats.call_completed();
                *backoff = BACKOFF_START;
            }
            Outcome::Refused(e) => {
                tracing::warn!(error = %e, "call returned an error");
                ctx.stats.call_refused(&e);
            }
            Outcome::Trapped(e) => return Exit::Trapped(e),
        }
    }
}

/// Waits out a restart delay; true if the module was stopped meanwhile. Configuration that
/// arrives meanwhile becomes active at the next start; methods are answered 503.
async fn stopped_while_waiting(
    delay: Duration,
    ctx: &ModuleCtx,
    control: &mut mpsc::Receiver<Control>,
) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return false,
            request = control.recv() => match request {
                None => return true,
                Some(Control::Configure { config, reply }) => {
                    ctx.set_config(config);
                    let _ = reply.send(Ok(()));
                }
                Some(Control::Method { reply, .. }) => {
                    let _ = reply.send(error_result(503, "module is restarting"));
                }
                Some(Control::Restart { reply }) => {
                    // Restart now rather than at the end of the backoff.
                    let _ = reply.send(());
                    return false;
                }
            },
        }
    }
}

async fn next_tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn error_result(status: u16, message: &str) -> MethodResult {
    MethodResult {
        status,
        payload: serde_json::json!({ "error": message }).to_string(),
    }
}
