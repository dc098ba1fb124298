//! `mantle-executor`: the built-in executor as a program of its own. Agents start one for
//! every command task or task group they run (`mantle executor` runs the same code).
//!
//! It holds only what an executor needs (no daemons, no CLI), on a single-threaded runtime,
//! so it starts and exits in a fraction of the time the whole `mantle` binary takes: a cost
//! every launch pays.

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANTLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the executor's runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mantle_server::executor::run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "executor failed");
            std::process::ExitCode::FAILURE
        }
    }
}
