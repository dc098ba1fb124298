//! `mantle-executor`: the built-in executor as a program of its own, one per command task or
//! task group an agent runs, started ahead as a standby (see `mantle_server::standby`) or at
//! launch (`mantle executor` runs the same code).
//!
//! It holds only what an executor needs (no daemons, no CLI), on a single-threaded runtime,
//! so it starts and exits in a fraction of the time the whole `mantle` binary takes: a cost
//! every launch pays.

#[path = "../logging.rs"]
mod logging;

fn main() -> std::process::ExitCode {
    let standby = std::env::var_os(mantle_server::standby::STANDBY_ENV).is_some();
    if !standby {
        if let Err(code) = join_cgroups() {
            return code;
        }
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
    let client = match mantle_server::executor::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the executor's HTTP client");
            return std::process::ExitCode::FAILURE;
        }
    };
    if standby {
        // A standby (started by the agent ahead of need) gets everything ready that does not
        // depend on its container (the runtime, the client and its two connections: the
        // SUBSCRIBE stream and the calls), then waits for its container. The runtime has no
        // threads of its own, so the process is single-threaded while the environment is set.
        runtime.block_on(mantle_server::executor::warm_up(&client, 2));
        match mantle_server::standby::await_assignment() {
            Ok(true) => {}
            Ok(false) => return std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "standby executor");
                return std::process::ExitCode::from(125);
            }
        }
        if let Err(code) = join_cgroups() {
            return code;
        }
    }
    match runtime.block_on(mantle_server::executor::run_with(client)) {
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
