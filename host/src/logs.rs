//! Guest stdout and stderr, turned into host log lines tagged with the object's ID.
//!
//! Each complete line a guest writes becomes one `tracing` event (target `guest`, level INFO
//! for stdout and WARN for stderr), so guest output interleaves cleanly with the host's own
//! log and can be filtered with `RUST_LOG=guest=off`. Lines are cut at 16 KiB so that a guest
//! cannot make the host buffer without bound.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
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

/// The object an instance is bound to, as its output streams and outbound requests see it:
/// the object's ID, set once the instance is bound. An instance started ahead
/// ([`crate::prestart`]) runs its start code before that; output it writes then is dropped,
/// requests it makes are refused, both are noted, and the host discards the instance.
#[derive(Default)]
pub struct LogOwner {
    object: OnceLock<Arc<str>>,
    used_unbound: AtomicBool,
}

impl LogOwner {
    /// Binds the streams to `object` (once; later calls are ignored).
    pub fn bind(&self, object: Arc<str>) {
        let _ = self.object.set(object);
    }

    /// Whether the instance is bound to its object.
    pub fn is_bound(&self) -> bool {
        self.object.get().is_some()
    }

    /// Notes a use (output, a request) that needed the object before the instance was bound.
    pub fn note_unbound_use(&self) {
        self.used_unbound.store(true, Ordering::Relaxed);
    }

    /// Whether anything (an import, output, a request) needed the object before the instance
    /// was bound.
    pub fn used_unbound(&self) -> bool {
        self.used_unbound.load(Ordering::Relaxed)
    }
}

/// A guest output stream that writes to the host log.
#[derive(Clone)]
pub struct GuestLog {
    owner: Arc<LogOwner>,
    stream: Stream,
}

impl GuestLog {
    pub fn new(owner: Arc<LogOwner>, stream: Stream) -> Self {
        Self { owner, stream }
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
        let Some(object) = self.log.owner.object.get() else {
            self.log.owner.note_unbound_use();
            self.line.clear();
            return;
        };
        let object = &**object;
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
        if this.log.owner.object.get().is_none() && !buf.is_empty() {
            this.log.owner.note_unbound_use();
            return Poll::Ready(Ok(buf.len()));
        }
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
    use std::sync::Arc;

    use tokio::io::AsyncWriteExt;
    use wasmtime_wasi::cli::StdoutStream;

    use super::{GuestLog, LogOwner, Stream};

    /// An instance started ahead has no object yet: what it writes then is dropped and noted
    /// (the host discards such an instance), never logged under another object's ID.
    #[tokio::test]
    async fn output_before_binding_is_noted_not_logged() {
        let owner = Arc::new(LogOwner::default());
        let log = GuestLog::new(owner.clone(), Stream::Stdout);
        let mut out = Box::into_pin(log.async_stream());
        out.write_all(b"").await.unwrap();
        assert!(!owner.used_unbound());
        out.write_all(b"partial line").await.unwrap();
        assert!(owner.used_unbound());
        owner.bind("00ff".into());
        out.write_all(b"after binding\n").await.unwrap();
        assert!(owner.used_unbound(), "the mark stays");
        let bound = Arc::new(LogOwner::default());
        bound.bind("00ff".into());
        let mut out = Box::into_pin(GuestLog::new(bound.clone(), Stream::Stderr).async_stream());
        out.write_all(b"a line\n").await.unwrap();
        assert!(!bound.used_unbound());
    }

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
