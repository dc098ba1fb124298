//! Logging set-up shared by the `mantle` and `mantle-executor` binaries.

/// Logs to stderr, filtered by `MANTLE_LOG` (default `info`); in colour only on a terminal
/// (not into a log file or a sandbox's `stderr`).
pub(crate) fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANTLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A log that cannot be written (a full disk under a sandbox) is lost, not a panic:
        // the subscriber would report it with `eprintln!`, which panics on that same stderr.
        .log_internal_errors(false)
        .init();
}
