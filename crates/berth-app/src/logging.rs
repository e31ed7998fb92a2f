//! Logging: one line per event on stderr, as text or JSON, filtered by `--log`.

use std::time::Duration;

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

/// A duration as the request log writes it: milliseconds, to the microsecond (`0.111`, not
/// `0.11072499999999999`).
pub fn millis(elapsed: Duration) -> f64 {
    elapsed.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_logged_to_the_microsecond() {
        assert_eq!(millis(Duration::from_nanos(110_724_999)).to_string(), "110.724");
        assert_eq!(millis(Duration::from_nanos(110_725)).to_string(), "0.11");
        assert_eq!(millis(Duration::from_secs(2)).to_string(), "2000");
    }
}
