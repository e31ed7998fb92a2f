//! Logging: one line per event on stderr, as text or JSON, filtered by `--log`.

use tracing_subscriber::EnvFilter;

use crate::LogFormat;

/// Starts logging in `format` with `filter` (checked when the settings were parsed). Only the
/// first call in a process takes effect.
pub(crate) fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    // A second call (tests build several registries in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
