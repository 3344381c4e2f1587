//! Logging: `tracing` events written to standard error, as text for people or as one JSON
//! object per line for log collectors (`--log-format json`). `RUST_LOG` chooses what is
//! written (`tracing_subscriber::EnvFilter` directives), `info` when unset.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// Errors of setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG={directives:?} is not a valid filter: {reason}")]
    Filter { directives: String, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

/// Command-line options of logging (flatten into a subcommand).
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "RECORDING_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The filter for a `RUST_LOG` value (`None` or blank: [`DEFAULT_FILTER`]).
pub fn filter(rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let directives = rust_log
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_FILTER);
    EnvFilter::try_new(directives).map_err(|e| TelemetryError::Filter {
        directives: directives.to_owned(),
        reason: e.to_string(),
    })
}

/// A subscriber writing `format` lines that pass `filter` to `writer`; `ansi` colours text
/// lines (for a terminal only: log collectors would store the escape codes).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi && format == LogFormat::Text);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Installs the process-wide subscriber: `format` lines to standard error, filtered by
/// `RUST_LOG`, coloured only when standard error is a terminal.
pub fn init(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref())?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr, ansi))
        .map_err(|_| TelemetryError::AlreadyInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn capture(format: LogFormat, rust_log: Option<&str>, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(format, filter(rust_log).unwrap(), buffer.clone(), false);
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_carry_level_target_message_and_fields() {
        let out = capture(LogFormat::Json, None, || {
            tracing::info!(tenant = "contoso", "consent granted");
            tracing::debug!("not shown at the default filter");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "consent granted");
        assert_eq!(line["tenant"], "contoso");
        assert_eq!(line["target"], "recording_operator::telemetry::tests");
        assert!(line["timestamp"].is_string(), "{line}");
    }

    #[test]
    fn text_lines_are_not_json() {
        let out = capture(LogFormat::Text, Some("debug"), || {
            tracing::debug!(tenant = "contoso", "checking");
        });
        assert!(out.contains("DEBUG"), "{out}");
        assert!(out.contains("checking tenant=\"contoso\""), "{out}");
        assert!(serde_json::from_str::<serde_json::Value>(out.trim()).is_err());
    }

    #[test]
    fn rust_log_selects_targets() {
        let out = capture(
            LogFormat::Text,
            Some("warn,recording_operator=trace"),
            || {
                tracing::trace!("kept by the target directive");
            },
        );
        assert!(out.contains("kept by the target directive"), "{out}");
    }

    #[test]
    fn a_bad_rust_log_is_named() {
        let err = filter(Some("info,[")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("RUST_LOG=\"info,[\" is not a valid filter"),
            "{err}"
        );
        assert!(filter(Some("  ")).is_ok());
    }
}
