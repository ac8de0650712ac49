//! `wedge tail`: telemetry received by the local hub.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use wedge_hub::local::TELEMETRY_FILE;
use wedge_hub::telemetry_record::TelemetryRecord;

/// How often the file is checked for new lines when following.
const POLL: Duration = Duration::from_millis(200);

/// Arguments of `wedge tail`.
#[derive(clap::Args)]
pub struct Args {
    /// Print the stored JSON lines as they are.
    #[arg(long)]
    json: bool,
    /// Stop at the end of the file instead of waiting for more.
    #[arg(long)]
    no_follow: bool,
    /// How many of the latest messages to show first.
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: usize,
}

/// Prints the last messages, then new ones as they arrive.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(TELEMETRY_FILE);
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "no telemetry yet at {} (is `wedge run` using this data dir?)",
            path.display()
        )
    })?;
    let mut reader = BufReader::new(file);
    let mut backlog = std::collections::VecDeque::new();
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        if line.ends_with('\n') {
            backlog.push_back(std::mem::take(&mut line));
            if backlog.len() > args.lines {
                backlog.pop_front();
            }
        }
    }
    for line in &backlog {
        print_line(line, args.json)?;
    }
    if args.no_follow {
        return Ok(());
    }
    loop {
        // A partial line (a writer mid-append) stays in `line` until its newline arrives.
        let position = reader.stream_position()?;
        if reader.read_line(&mut line)? == 0 {
            if std::fs::metadata(&path)?.len() < position {
                reader.seek(SeekFrom::Start(0))?; // truncated: start over
            }
            tokio::time::sleep(POLL).await;
            continue;
        }
        if line.ends_with('\n') {
            print_line(&line, args.json)?;
            line.clear();
        }
    }
}

fn print_line(line: &str, json: bool) -> std::io::Result<()> {
    let line = line.trim_end();
    if json {
        out!("{line}");
        return Ok(());
    }
    match serde_json::from_str::<TelemetryRecord>(line) {
        Ok(r) => {
            let properties: Vec<String> = r
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out!(
                "{}  {}/{}  {}  {}",
                r.enqueued_time,
                r.module,
                r.output,
                r.body,
                properties.join(" ")
            );
        }
        Err(_) => out!("{line}"),
    }
    Ok(())
}
