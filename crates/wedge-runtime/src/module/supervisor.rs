//! The task that owns a module: starts it, feeds it messages, ticks, configuration and methods
//! one at a time, swaps its binary when the deployment changes it, and restarts it after a
//! failure as its restart policy says, with a growing delay.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::Instrument;
use wedge_core::doc::RuntimeStatus;
use wedge_core::{DesiredStatus, RestartPolicy};

use crate::ModuleImage;

use super::instance::{Instance, Outcome};
use super::run::RunTask;
use super::{Control, InboxReceiver, MethodResult, ModuleCtx, Update};

/// First delay before restarting a failed module; doubled after each failure up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Runs `ctx`'s module until its control channel closes.
pub(crate) async fn supervise(
    ctx: Arc<ModuleCtx>,
    mut image: ModuleImage,
    mut inbox: InboxReceiver,
    mut control: mpsc::Receiver<Control>,
) {
    let span = tracing::info_span!("module", module = %ctx.name);
    async move {
        let mut backoff = BACKOFF_START;
        loop {
            if ctx.spec().status == DesiredStatus::Stopped {
                inbox.set_failing(true);
                ctx.stats.exited(RuntimeStatus::Stopped, None);
                tracing::info!("stopped as desired");
                match wait(&ctx, &mut control, &mut image, None, "stopped").await {
                    Wake::Stop => break,
                    Wake::Start | Wake::Updated => continue,
                }
            }
            ctx.stats.starting(image.sha256());
            let exit = match timed(&ctx, Instance::start(&image, ctx.clone())).await {
                Outcome::Done(mut instance) => {
                    ctx.stats.up();
                    tracing::info!(sha256 = image.sha256(), "started");
                    let mut run = RunTask::spawn(&image, &ctx);
                    let exit = serve(
                        &mut instance,
                        &mut run,
                        (&image, &ctx),
                        &mut inbox,
                        &mut control,
                        &mut backoff,
                    )
                    .await;
                    if let Some(run) = run {
                        // Its sockets closed before anything starts again.
                        run.stop().await;
                    }
                    exit
                }
                Outcome::Refused(e) | Outcome::Trapped(e) => Exit::Failed(e),
                Outcome::Exited => Exit::Clean,
            };
            let policy = ctx.spec().restart_policy;
            let (state, error, delay) = match exit {
                Exit::Stop => {
                    ctx.stats.exited(RuntimeStatus::Stopped, None);
                    break;
                }
                Exit::Restart => {
                    tracing::info!("restarting on request");
                    ctx.stats.restarted();
                    continue;
                }
                Exit::Update(update) => {
                    apply(&ctx, &mut image, *update);
                    backoff = BACKOFF_START;
                    continue;
                }
                Exit::Failed(e) => match policy {
                    RestartPolicy::Never => (RuntimeStatus::Failed, Some(e), None),
                    RestartPolicy::Always | RestartPolicy::OnFailure => {
                        (RuntimeStatus::Backoff, Some(e), Some(backoff))
                    }
                },
                Exit::Clean => match policy {
                    RestartPolicy::Always => (RuntimeStatus::Backoff, None, Some(backoff)),
                    RestartPolicy::OnFailure | RestartPolicy::Never => {
                        (RuntimeStatus::Stopped, None, None)
                    }
                },
            };
            match (&error, delay) {
                (Some(e), Some(delay)) => {
                    tracing::error!(error = %e, restart_in = ?delay, "module failed");
                }
                (Some(e), None) => {
                    tracing::error!(error = %e, "module failed; restart-policy `never`");
                }
                (None, Some(delay)) => tracing::info!(restart_in = ?delay, "module exited"),
                (None, None) => tracing::info!("module exited; not restarted (restart-policy)"),
            }
            // Not taking messages until it starts and handles one: see `WhenFull::Adaptive`.
            inbox.set_failing(true);
            ctx.stats.exited(state, error.as_deref());
            let why = match state {
                RuntimeStatus::Failed => "failed",
                RuntimeStatus::Stopped => "stopped",
                _ => "restarting",
            };
            let until = delay.map(|delay| Instant::now() + delay);
            match wait(&ctx, &mut control, &mut image, until, why).await {
                Wake::Stop => break,
                Wake::Updated => backoff = BACKOFF_START,
                Wake::Start => {
                    if delay.is_some() {
                        backoff = (backoff * 2).min(BACKOFF_CAP);
                    }
                    ctx.stats.restarted();
                }
            }
        }
        tracing::info!("stopped");
    }
    .instrument(span)
    .await
}

fn apply(ctx: &ModuleCtx, image: &mut ModuleImage, update: Update) {
    ctx.set_spec(update.spec);
    ctx.set_config(update.config);
    if let Some(new) = update.image {
        tracing::info!(
            from = image.sha256(),
            to = new.sha256(),
            "replacing the binary"
        );
        *image = new;
    }
    let _ = update.reply.send(());
}

enum Exit {
    Stop,
    /// Asked to restart: a fresh instance at once, state and counters kept.
    Restart,
    /// New settings or binary: a fresh instance at once.
    Update(Box<Update>),
    /// Trapped, over a limit, refused to start, or exited with an error.
    Failed(String),
    /// Exited with status 0.
    Clean,
}

/// Feeds the running instance until it ends or the module is stopped; watches its `run`
/// loop, if it has one, which ends the module as a call would when it ends.
async fn serve(
    instance: &mut Instance,
    run: &mut Option<RunTask>,
    (image, ctx): (&ModuleImage, &Arc<ModuleCtx>),
    inbox: &mut InboxReceiver,
    control: &mut mpsc::Receiver<Control>,
    backoff: &mut Duration,
) -> Exit {
    let mut ticker = ctx.spec().tick_ms.map(|ms| {
        let mut ticker = tokio::time::interval(Duration::from_millis(ms));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    loop {
        let wake_at = instance.wake_at();
        let outcome = tokio::select! {
            // Control first: configuration and methods must not wait behind a full inbox.
            biased;
            request = control.recv() => match request {
                None => return Exit::Stop,
                Some(Control::Restart { reply }) => {
                    let _ = reply.send(());
                    return Exit::Restart;
                }
                Some(Control::Update(update)) => return Exit::Update(update),
                Some(Control::Configure { config, reply }) => {
                    let previous = ctx.set_config(config.clone());
                    let outcome = timed(ctx, instance.on_config(&config)).await;
                    if !matches!(outcome, Outcome::Done(())) {
                        ctx.set_config(previous);
                    } else if let Some(old) = run.take() {
                        // `run` got its configuration from `init`: a new one needs a new loop.
                        tracing::info!("restarting `run` with the new configuration");
                        old.stop().await;
                        *run = RunTask::spawn(image, ctx);
                    }
                    let _ = reply.send(match &outcome {
                        Outcome::Done(()) => Ok(()),
                        Outcome::Refused(e) | Outcome::Trapped(e) => Err(e.clone()),
                        Outcome::Exited => Err("the module exited".into()),
                    });
                    outcome
                }
                Some(Control::Method { name, payload, reply }) => {
                    let outcome = timed(ctx, instance.on_method(&name, &payload)).await;
                    let _ = reply.send(match &outcome {
                        Outcome::Done(result) => result.clone(),
                        Outcome::Refused(e) | Outcome::Trapped(e) => error_result(500, e),
                        Outcome::Exited => error_result(500, "the module exited"),
                    });
                    outcome.map(drop)
                }
            },
            ended = run_ended(run) => {
                *run = None;
                match ended {
                    Outcome::Done(()) | Outcome::Exited => {
                        tracing::info!("`run` returned");
                        return Exit::Clean;
                    }
                    Outcome::Refused(e) | Outcome::Trapped(e) => return Exit::Failed(e),
                }
            }
            _ = next_tick(&mut ticker) => timed(ctx, instance.on_tick()).await,
            _ = wake(wake_at) => timed(ctx, instance.on_wake()).await,
            delivery = inbox.recv() => {
                ctx.stats.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let outcome = timed(ctx, instance.on_message(&delivery.input, delivery.message)).await;
                // A message that trapped the module counts as handled too: delivering it again
                // would trap it again.
                if let Some(handled) = delivery.handled {
                    let _ = handled.send(());
                }
                // It takes messages again: a full inbox pushes back rather than drops.
                if matches!(outcome, Outcome::Done(()) | Outcome::Refused(_)) {
                    inbox.set_failing(false);
                }
                outcome
            }
        };
        match outcome {
            Outcome::Done(()) => *backoff = BACKOFF_START,
            Outcome::Refused(e) => {
                tracing::warn!(error = %e, "call returned an error");
                ctx.stats.call_refused(&e);
            }
            Outcome::Trapped(e) => return Exit::Failed(e),
            Outcome::Exited => return Exit::Clean,
        }
    }
}

enum Wake {
    Stop,
    /// The delay is over, or a restart was asked for.
    Start,
    /// New settings or binary arrived.
    Updated,
}

/// Waits while the module has no instance: until `until` (a restart delay) or, with `None`,
/// until asked to start. Configuration that arrives meanwhile becomes active at the next start;
/// methods are answered 503; an update or restart request starts the module at once.
async fn wait(
    ctx: &ModuleCtx,
    control: &mut mpsc::Receiver<Control>,
    image: &mut ModuleImage,
    until: Option<Instant>,
    why: &str,
) -> Wake {
    loop {
        let request = match until {
            Some(until) => tokio::select! {
                _ = tokio::time::sleep_until(until) => return Wake::Start,
                request = control.recv() => request,
            },
            None => control.recv().await,
        };
        match request {
            None => return Wake::Stop,
            Some(Control::Configure { config, reply }) => {
                ctx.set_config(config);
                let _ = reply.send(Ok(()));
            }
            Some(Control::Method { reply, .. }) => {
                let _ = reply.send(error_result(503, &format!("module is {why}")));
            }
            Some(Control::Restart { reply }) => {
                let _ = reply.send(());
                return Wake::Start;
            }
            Some(Control::Update(update)) => {
                apply(ctx, image, *update);
                return Wake::Updated;
            }
        }
    }
}

/// Awaits a call into the module, observing how long it took in the module's histogram.
async fn timed<T>(ctx: &ModuleCtx, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let outcome = call.await;
    ctx.stats.called(started.elapsed());
    outcome
}

/// Resolves when the `run` loop ends; never without one.
async fn run_ended(run: &mut Option<RunTask>) -> Outcome<()> {
    match run {
        Some(run) => run.finished().await,
        None => std::future::pending().await,
    }
}

/// Resolves at `at`; never without it.
async fn wake(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
