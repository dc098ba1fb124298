//! `mantle-executor`: the built-in executor as a program of its own. Agents start one for
//! every command task or task group they run (`mantle executor` runs the same code).
//!
//! It holds only what an executor needs (no daemons, no CLI), on a single-threaded runtime,
//! so it starts and exits in a fraction of the time the whole `mantle` binary takes: a cost
//! every launch pays.

#[path = "../logging.rs"]
mod logging;

#[allow(clippy::print_stderr)] // no logger yet; a standby's stderr is the agent's log
fn main() -> std::process::ExitCode {
    // A standby (started by the agent ahead of need) waits here for its container.
    match mantle_server::standby::await_assignment() {
        Ok(true) => {}
        Ok(false) => return std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mantle: standby executor: {e}");
            return std::process::ExitCode::from(125);
        }
    }
    if let Err(code) = join_cgroups() {
        return code;
    }
    logging::init_tracing();
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

/// Moves this process into every cgroup whose `cgroup.procs` file `MANTLE_CGROUP_PROCS` lists
/// (colon-separated; the agent sets it), before anything else runs: writing `0` moves the
/// writer. Exit code 125 when one cannot be joined, as the agent's shell wrapper does.
#[allow(clippy::print_stderr)] // no logger yet, and the agent reads stderr into the sandbox
fn join_cgroups() -> Result<(), std::process::ExitCode> {
    let Some(list) = std::env::var_os("MANTLE_CGROUP_PROCS") else {
        return Ok(());
    };
    for file in std::env::split_paths(&list) {
        if let Err(e) = std::fs::write(&file, "0") {
            eprintln!("mantle: cannot join cgroup {}: {e}", file.display());
            return Err(std::process::ExitCode::from(125));
        }
    }
    // Not for the tasks it starts.
    std::env::remove_var("MANTLE_CGROUP_PROCS");
    Ok(())
}
