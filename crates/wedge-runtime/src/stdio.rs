//! A module's stdout and stderr, turned into log records: one per line, whatever the writes
//! look like. Rust's `eprintln!` writes the text and the newline separately (each write
//! flushed), and a panic message arrives as a header line and message lines; logging per write
//! or per flush would give a record and an empty one, or a panic in pieces. Lines are bounded
//! ([`MAX_LINE`]) and go through the module's rate limit like `log.log` records.
//!
//! A panic (`thread '…' panicked at src/lib.rs:12:5:` and its message) becomes one record, and
//! its first line is kept for the trap's one-line description (`panicked at src/lib.rs:12:5: …`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tracing::{Level, Span};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::module::{ModuleCtx, Source};

/// Longest line kept; the rest of a longer line is dropped and the record says so.
pub(crate) const MAX_LINE: usize = 4 * 1024;

/// What a cut line ends with.
const CUT_MARKER: &str = " [… line cut]";

/// The guest's latest panic (`panicked at <where>: <message>`), shared between its stderr
/// writer and its store.
pub(crate) type PanicSlot = Arc<Mutex<Option<String>>>;

/// A stdout/stderr stream that logs each line at `info` (stdout) or `warn` (stderr), in the
/// span of the module's supervisor (the writer runs on a task of its own).
#[derive(Clone)]
pub(crate) struct LogStream {
    module: Arc<ModuleCtx>,
    source: Source,
    span: Span,
    panic: PanicSlot,
}

impl LogStream {
    /// The stream `source` of `module`; panics seen on it are put in `panic`.
    pub(crate) fn new(module: Arc<ModuleCtx>, source: Source, panic: PanicSlot) -> Self {
        LogStream {
            module,
            source,
            span: Span::current(),
            panic,
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            target: self.clone(),
            lines: Lines::default(),
        })
    }
}

struct LineWriter {
    target: LogStream,
    lines: Lines,
}

impl LineWriter {
    fn log(&mut self, records: Vec<String>) {
        let LogStream {
            module,
            source,
            span,
            panic,
        } = &self.target;
        if let Some(summary) = self.lines.panic_summary.take() {
            *panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
        }
        let level = match source {
            Source::Stderr => Level::WARN,
            _ => Level::INFO,
        };
        span.in_scope(|| {
            for record in records {
                module.log_record(level, *source, &record);
            }
        });
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let records = self.lines.push(buf);
        self.log(records);
        Poll::Ready(Ok(buf.len()))
    }

    /// Logs nothing: a flush comes after every guest write, often in the middle of a line.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let records = self.lines.finish();
        self.log(records);
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let records = self.lines.finish();
        self.log(records);
    }
}

/// Bytes of a stream assembled into records (I/O-free). At most [`MAX_LINE`] bytes of a line
/// and [`MAX_LINE`] bytes of a panic record are held.
#[derive(Default)]
struct Lines {
    /// The line being written.
    line: Vec<u8>,
    /// The line being written was cut: its bytes up to the next newline are dropped.
    cut: bool,
    /// A panic record being assembled.
    panic: Option<Panic>,
    /// Set once a panic's header and first message line are known.
    panic_summary: Option<String>,
}

/// A panic record being assembled: the header (`panicked at <where>:`) and the message lines
/// so far.
struct Panic {
    text: String,
    has_message: bool,
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn truncate_to(text: &mut String, max: usize) {
    let len = wedge_core::truncate(text, max).len();
    text.truncate(len);
}

impl Lines {
    /// Takes `bytes` of the stream; returns the records completed by them.
    fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut records = Vec::new();
        while !bytes.is_empty() {
            let (part, newline) = match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => (&bytes[..end], true),
                None => (bytes, false),
            };
            bytes = &bytes[(part.len() + usize::from(newline)).min(bytes.len())..];
            if !self.cut {
                let room = MAX_LINE - self.line.len();
                self.line.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    let mut text = String::from_utf8_lossy(&self.line).into_owned();
                    text.push_str(CUT_MARKER);
                    self.line.clear();
                    self.cut = true;
                    self.complete(text, &mut records);
                }
            }
            if newline {
                if !self.cut {
                    let text = String::from_utf8_lossy(&self.line).into_owned();
                    self.complete(text, &mut records);
                }
                self.line.clear();
                self.cut = false;
            }
        }
        records
    }

    /// The end of the stream: what is left becomes records.
    fn finish(&mut self) -> Vec<String> {
        let mut records = Vec::new();
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            self.complete(text, &mut records);
        }
        self.cut = false;
        records.extend(self.panic.take().map(|p| p.text));
        records
    }

    /// One complete line: a record of its own, or part of a panic record.
    fn complete(&mut self, line: String, records: &mut Vec<String>) {
        let line = line.trim_end();
        if let Some(panic) = &mut self.panic {
            // Rust's panic hook ends the message with a newline and, on the first panic, a
            // `note:` about RUST_BACKTRACE (which a module cannot set: it is left out).
            if line.is_empty() || line.starts_with("note: ") {
                records.extend(self.panic.take().map(|p| p.text));
                if !line.is_empty() && !line.contains("RUST_BACKTRACE") {
                    records.push(line.to_string());
                }
                return;
            }
            if !panic.has_message {
                // The header and the first message line make one line: what `wedge status`
                // shows as the trap's cause.
                panic.text = format!("{} {line}", panic.text);
                truncate_to(&mut panic.text, MAX_LINE);
                panic.has_message = true;
                self.panic_summary = Some(panic.text.clone());
            } else if panic.text.len() + line.len() < MAX_LINE {
                panic.text.push('\n');
                panic.text.push_str(line);
            } else if !panic.text.ends_with(CUT_MARKER) {
                panic.text.push_str(CUT_MARKER);
            }
            return;
        }
        if line.is_empty() {
            return;
        }
        // `thread '<name>' panicked at src/lib.rs:12:5:`, the message on the next lines.
        match line.find("panicked at ") {
            Some(at) if line.ends_with(':') => {
                self.panic = Some(Panic {
                    text: line[at..].to_string(),
                    has_message: false,
                })
            }
            _ => records.push(line.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(writes: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for write in writes {
            out.extend(lines.push(write));
        }
        out.extend(lines.finish());
        (out, lines.panic_summary)
    }

    #[test]
    fn one_record_per_line_whatever_the_writes() {
        // `eprintln!("a {}", x)`: the pieces and the newline are separate writes.
        let (out, _) = records(&[b"a ", b"1", b"\n", b"two\nthree\r\n\n", b"tail"]);
        assert_eq!(out, ["a 1", "two", "three", "tail"]);
    }

    #[test]
    fn a_long_line_is_cut_once_with_a_marker() {
        let long = vec![b'x'; 3 * MAX_LINE];
        let (out, _) = records(&[&long[..MAX_LINE / 2], &long, b"\nnext\n"]);
        assert_eq!(
            out.len(),
            2,
            "{:?}",
            out.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(out[0].len(), MAX_LINE + CUT_MARKER.len());
        assert!(out[0].ends_with(CUT_MARKER));
        assert_eq!(out[1], "next");
    }

    #[test]
    fn a_panic_is_one_record_and_gives_its_summary() {
        // What Rust's default panic hook writes, in one write and then the note.
        let (out, summary) = records(&[
            b"before\n",
            b"\nthread '<unnamed>' panicked at src/lib.rs:12:5:\nassertion failed\n  left: 1\n",
            b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
            b"after\n",
        ]);
        assert_eq!(
            out,
            [
                "before",
                "panicked at src/lib.rs:12:5: assertion failed\n  left: 1",
                "after"
            ]
        );
        assert_eq!(
            summary.as_deref(),
            Some("panicked at src/lib.rs:12:5: assertion failed")
        );
    }

    #[test]
    fn a_panic_at_the_end_of_the_stream_is_logged() {
        let (out, summary) = records(&[b"thread 'main' panicked at src/a.rs:1:1:\n", b"boom"]);
        assert_eq!(out, ["panicked at src/a.rs:1:1: boom"]);
        assert_eq!(summary.as_deref(), Some("panicked at src/a.rs:1:1: boom"));
    }
}
