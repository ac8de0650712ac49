//! `wedge status`: the modules of the running host.

use std::path::Path;

use wedge_host::control::Request;

use crate::client;

/// Arguments of `wedge status`.
#[derive(clap::Args)]
pub struct Args {
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Refresh the table every second until interrupted.
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

/// How often `--watch` refreshes.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Prints one line per module (state, messages in and out, errors, restarts, messages
/// its inbox dropped, log lines suppressed by its rate limit, last error), then the upstream link and the outbox.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    loop {
        let status = client::call(data_dir, &Request::Status).await?;
        if args.json {
            out!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        if args.watch {
            // Clear the screen and go home, as `watch` does.
            out!(
                "\x1b[2J\x1b[H{}",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            );
        }
        table(&status)?;
        if !args.watch {
            return Ok(());
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

fn table(status: &serde_json::Value) -> anyhow::Result<()> {
    out!(
        "{:<16} {:<9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>10}  LAST ERROR",
        "MODULE",
        "STATE",
        "IN",
        "OUT",
        "ERRORS",
        "RESTARTS",
        "DROPPED",
        "LOGS-SUPPR"
    );
    for m in status["modules"].as_array().into_iter().flatten() {
        let count = |key: &str| m[key].as_u64().unwrap_or(0);
        out!(
            "{:<16} {:<9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>10}  {}",
            m["name"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            count("messages-in"),
            count("messages-out"),
            count("errors"),
            count("restarts"),
            count("dropped"),
            count("logs-suppressed"),
            m["last-error"].as_str().unwrap_or("-"),
        );
    }
    // The HTTP triggers' counts, one line each: the table would be too wide with them.
    for m in status["modules"].as_array().into_iter().flatten() {
        let http = &m["http"];
        if http.is_object() {
            let count = |key: &str| http[key].as_u64().unwrap_or(0);
            out!(
                "http {}: {} in flight; answered 2xx {}, 5xx {}, other {}; refused 413 {}, 503 {}; \
                 timed out {}; failed {}",
                m["name"].as_str().unwrap_or("?"),
                count("in-flight"),
                count("ok"),
                count("server-errors"),
                count("other"),
                count("too-large"),
                count("busy"),
                count("timed-out"),
                count("failed"),
            );
        }
    }
    let upstream = &status["upstream"];
    let link = &upstream["link"];
    let connection = match (link["connected"].as_bool(), link["last-error"].as_str()) {
        (None, _) => String::new(),
        (Some(true), _) => " connected".into(),
        // "retrying in 37 s: …" or "unreachable, checking about every second: …".
        (Some(false), _) if link["retry"]["summary"].is_string() => {
            format!(
                " disconnected, {}",
                link["retry"]["summary"].as_str().unwrap_or("?")
            )
        }
        (Some(false), Some(error)) => format!(" disconnected: {error}"),
        (Some(false), None) => " connecting".into(),
    };
    out!(
        "\nupstream {}{connection}",
        upstream["kind"].as_str().unwrap_or("?")
    );
    if let Some(line) = identity(&upstream["identity"]) {
        out!("identity {line}");
    }
    let outbox = &status["outbox"];
    let oldest = match outbox["oldest-age-ms"].as_u64() {
        Some(ms) => format!(", oldest {:.1} s", ms as f64 / 1000.0),
        None => String::new(),
    };
    out!(
        "outbox   {} messages, {} bytes{oldest}; dropped {}, expired {}",
        outbox["depth"].as_u64().unwrap_or(0),
        outbox["bytes"].as_u64().unwrap_or(0),
        outbox["dropped"].as_u64().unwrap_or(0),
        outbox["expired"].as_u64().unwrap_or(0),
    );
    Ok(())
}

/// Where a DPS identity came from and when: `dps: hub h, device d (registration r), provisioned
/// 2026-12-01T15:00:00Z, kept from an earlier start`; or what provisioning is doing.
fn identity(identity: &serde_json::Value) -> Option<String> {
    let source = identity["source"].as_str()?;
    let registration = identity["registration-id"].as_str().unwrap_or("?");
    let Some(hub) = identity["hub"].as_str() else {
        let error = identity["error"].as_str().unwrap_or("provisioning");
        return Some(format!("{source} (registration {registration}): {error}"));
    };
    let when = identity["provisioned-at-unix-ms"]
        .as_u64()
        .map(|ms| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_seconds(at).to_string()
        })
        .unwrap_or_else(|| "?".into());
    let kept = if identity["from-store"].as_bool() == Some(true) {
        ", kept from an earlier start"
    } else {
        ""
    };
    Some(format!(
        "{source}: hub {hub}, device {} (registration {registration}), provisioned {when}{kept}",
        identity["device-id"].as_str().unwrap_or("?")
    ))
}
