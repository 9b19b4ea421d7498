//! Guest stdout and stderr, turned into host log lines tagged with the object's ID.
//!
//! Each complete line a guest writes becomes one `tracing` event (target `guest`, level INFO
//! for stdout and WARN for stderr), so guest output interleaves cleanly with the host's own
//! log and can be filtered with `RUST_LOG=guest=off`. Lines are cut at 16 KiB so that a guest
//! cannot make the host buffer without bound.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const MAX_LINE: usize = 16 * 1024;

/// Longest error text (which a guest may have written) that goes into one host log line.
const MAX_ERROR_TEXT: usize = 2 * 1024;

/// `text` (an error that may carry a guest's own message) made fit for one host log line:
/// control characters (a line break would forge a log line of the host's) escaped, and cut
/// at 2 KiB, marked.
pub fn log_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ERROR_TEXT) + 16);
    for c in text.chars() {
        if out.len() >= MAX_ERROR_TEXT {
            out.push_str("... (cut)");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Which guest stream.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A guest output stream that writes to the host log.
#[derive(Clone)]
pub struct GuestLog {
    object: Arc<str>,
    stream: Stream,
}

impl GuestLog {
    pub fn new(object: Arc<str>, stream: Stream) -> Self {
        Self { object, stream }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        let object = &*self.log.object;
        if text.trim().is_empty() {
            self.line.clear();
            return;
        }
        match self.log.stream {
            Stream::Stdout => tracing::info!(target: "guest", object, "{text}"),
            Stream::Stderr => tracing::warn!(target: "guest", object, "{text}"),
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        for &byte in buf {
            this.line.push(byte);
            if byte == b'\n' || this.line.len() >= MAX_LINE {
                this.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.line.is_empty() {
            this.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_text_is_one_bounded_log_line() {
        assert_eq!(super::log_safe("plain: ok"), "plain: ok");
        assert_eq!(
            super::log_safe("a\nINFO forged\r\x1b[31m"),
            "a\\nINFO forged\\r\\u{1b}[31m"
        );
        let long = super::log_safe(&"x".repeat(100_000));
        assert!(long.len() < 2 * 1024 + 16 && long.ends_with("... (cut)"));
    }
}
