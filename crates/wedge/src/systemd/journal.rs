//! Logs when stderr is the journal. systemd sets `$JOURNAL_STREAM` to the device and inode of
//! the stream it connected stderr to; when stderr is still that stream (not redirected by a
//! wrapper), records go out without ANSI colours and without a timestamp (the journal stamps
//! each line itself), each line prefixed with its syslog priority (`<3>` error … `<7>`
//! debug), which journald reads as the record's priority (`SyslogLevelPrefix=`, on by
//! default), so `journalctl -p warning` works.
//!
//! Why stderr rather than journald's native socket (`tracing-journald`): one path for every
//! way wedge runs (a terminal, a container, a service manager other than systemd), `--log-format
//! json` keeps working for collectors, and nothing more to open under a sandboxed unit.

use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is the journal stream `$JOURNAL_STREAM` names (`DEVICE:INODE`).
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(stderr)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The text format for the journal: syslog priority prefix, no time, no colours.
pub struct JournalFormat {
    inner: Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl JournalFormat {
    pub fn new() -> Self {
        JournalFormat {
            inner: Format::default().without_time().with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // sd-daemon(3) priorities.
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.inner.format_event(ctx, writer, event)
    }
}
