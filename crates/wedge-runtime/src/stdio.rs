//! A module's stdout and stderr, turned into log lines tagged with the module's name. This is
//! how a Rust guest's panic message reaches the operator.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use wedge_core::truncate;

/// Longest line kept; a longer one is split.
const MAX_LINE: usize = 4 * 1024;

/// A stdout/stderr stream that logs each line at `info` (stdout) or `warn` (stderr).
#[derive(Clone)]
pub(crate) struct LogStream {
    module: String,
    stream: &'static str,
}

impl LogStream {
    pub(crate) fn new(module: &str, stream: &'static str) -> Self {
        LogStream {
            module: module.to_string(),
            stream,
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
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    target: LogStream,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = truncate(text.trim_end(), MAX_LINE);
        let LogStream { module, stream } = &self.target;
        if *stream == "stderr" {
            tracing::warn!(target: "wedge::module", module = %module, stream, "{text}");
        } else {
            tracing::info!(target: "wedge::module", module = %module, stream, "{text}");
        }
    }

    fn flush_lines(&mut self, all: bool) {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            self.emit(&line);
        }
        if all || self.buf.len() > MAX_LINE {
            let rest = std::mem::take(&mut self.buf);
            if !rest.is_empty() {
                self.emit(&rest);
            }
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(buf);
        self.flush_lines(false);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_lines(true);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_lines(true);
    }
}
