//! Tracing setup: human-readable by default, JSON lines with `SEATGATE_LOG_FORMAT=json`.
//! The filter comes from `RUST_LOG` (default `info`).

use std::io::Write;

use tracing_subscriber::{fmt, fmt::MakeWriter, EnvFilter};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// Like [`init`], with another filter when `RUST_LOG` is unset (the demo prints its own
/// timeline and keeps the service's log to warnings).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(Redacting(std::io::stderr));
    // A second init (tests, demo) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A writer maker whose lines are redacted ([`crate::redact::line`]) before they reach
/// `M`'s writer: every log line of the process, the dependencies' included, goes through it.
#[derive(Clone)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactedLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine {
            inner: self.0.make_writer(),
            buf: Vec::new(),
        }
    }
}

/// One event's formatted line, written out redacted when the formatter is done with it.
pub struct RedactedLine<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Write for RedactedLine<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RedactedLine<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = crate::redact::line(&String::from_utf8_lossy(&self.buf));
        let _ = self.inner.write_all(line.as_bytes());
        let _ = self.inner.flush();
    }
}

/// Log lines written to memory, for tests that read what the service logged.
#[derive(Clone, Default)]
pub struct CapturedLines(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLines {
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for CapturedLines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLines {
    type Writer = CapturedLines;
    fn make_writer(&'a self) -> CapturedLines {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_prints_a_secret_its_own_way_is_written_redacted() {
        let buf = CapturedLines::default();
        let subscriber = fmt()
            .with_writer(Redacting(buf.clone()))
            .with_ansi(false)
            .finish();
        crate::redact::hide("webhook-token-0123456789");
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                route = ?("WebhookWithToken", "webhook-token-0123456789"),
                url = "postgres://seatgate:db-secret@db/seatgate",
                "a dependency's line"
            );
        });
        let text = buf.text();
        assert!(text.contains("a dependency's line"), "{text}");
        assert!(!text.contains("webhook-token-0123456789"), "{text}");
        assert!(!text.contains("db-secret"), "{text}");
        assert!(text.contains("postgres://seatgate:[redacted]@db"), "{text}");
    }
}
