//! Logging for the binary: text or JSON lines on stdout, level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::cli::LogFormat;

/// `RUST_LOG` could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid RUST_LOG: {0}")]
pub struct InvalidFilter(String);

/// Installs the global subscriber. Without `RUST_LOG` the level is `info`.
///
/// # Errors
///
/// If `RUST_LOG` is set but not a valid filter.
pub fn init(format: LogFormat) -> Result<(), InvalidFilter> {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_default();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(&directives)
        .map_err(|e| InvalidFilter(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    Ok(())
}
