//! `wedge logs`: a module's recent log records, from the running host's memory.

use std::path::Path;
use std::time::{Duration, SystemTime};

use wedge_host::control::Request;
use wedge_runtime::{LogLevel, LogLine, LogPage, LogQuery};

use crate::client;

/// How often `--follow` asks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Arguments of `wedge logs`.
#[derive(clap::Args)]
pub struct Args {
    /// The module.
    module: String,
    /// Only records of the last DURATION (`30s`, `10m`, `2h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only the last N records.
    #[arg(long)]
    tail: Option<usize>,
    /// Only records at LEVEL or more severe: trace, debug, info, warn, error.
    #[arg(long, value_parser = parse_level)]
    level: Option<LogLevel>,
    /// Keep printing new records as they come.
    #[arg(long, short)]
    follow: bool,
    /// One JSON object per record.
    #[arg(long)]
    json: bool,
}

fn parse_level(text: &str) -> Result<LogLevel, String> {
    serde_json::from_value(serde_json::Value::from(text.to_ascii_lowercase()))
        .map_err(|_| format!("`{text}` is not one of trace, debug, info, warn, error"))
}

/// Prints the records, then with `--follow` the new ones until interrupted.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let mut query = LogQuery {
        level: args.level,
        since: args.since.map(|ago| SystemTime::now() - ago),
        after: None,
        tail: args.tail,
    };
    loop {
        let request = Request::Logs {
            module: args.module.clone(),
            query: query.clone(),
        };
        let page: LogPage = serde_json::from_value(client::call(data_dir, &request).await?)?;
        for line in &page.lines {
            print(line, args.json)?;
        }
        if !args.follow {
            return Ok(());
        }
        query.after = Some(page.last_seq);
        query.tail = None;
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

fn print(line: &LogLine, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string(line)?);
    } else {
        let level = serde_json::to_value(line.level)?;
        out!(
            "{}  {:<5}  {:<6}  {}",
            humantime::format_rfc3339_millis(line.time),
            level.as_str().unwrap_or("?"),
            line.stream,
            line.text
        );
    }
    Ok(())
}
