//! `mantle-executor`: the built-in executor as a program of its own, one per command task or
//! task group an agent runs, started ahead as a standby (see `mantle_server::standby`; a
//! standby serves one container after another) or at launch (`mantle executor` runs the same
//! code).
//!
//! It holds only what an executor needs (no daemons, no CLI), on a single-threaded runtime,
//! so it starts and exits in a fraction of the time the whole `mantle` binary takes: a cost
//! every launch pays.

#[path = "../logging.rs"]
mod logging;

fn main() -> std::process::ExitCode {
    let line = match mantle_server::standby::take_line() {
        Ok(l) => l,
        Err(e) => {
            report_early(&e);
            return std::process::ExitCode::from(125);
        }
    };
    if line.is_none() {
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
    let Some(line) = line else {
        let vars = mantle_server::executor::Vars::default();
        return exit(runtime.block_on(mantle_server::executor::run_with(client, vars, None)));
    };
    // A standby (started by the agent ahead of need) has everything ready that does not
    // depend on its container, and serves containers one after another.
    let mut control = {
        let _runtime = runtime.enter();
        match mantle_server::standby::Control::start(line) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "standby executor: cannot read its control line");
                return std::process::ExitCode::from(125);
            }
        }
    };
    for run in 1..=mantle_server::standby::MAX_RUNS {
        let Some(assignment) = runtime.block_on(control.next_assignment()) else {
            return std::process::ExitCode::SUCCESS;
        };
        let vars = match mantle_server::standby::enter(&assignment) {
            Ok(env) => mantle_server::executor::Vars::new(env),
            Err(e) => {
                tracing::error!(error = %e, "standby executor");
                return std::process::ExitCode::from(125);
            }
        };
        let outcome = runtime.block_on(mantle_server::executor::run_with(
            client.clone(),
            vars,
            Some(control.link()),
        ));
        if run == mantle_server::standby::MAX_RUNS
            || !matches!(outcome, Ok(mantle_server::executor::Outcome::Finished))
        {
            return exit(outcome);
        }
        // Free again: out of the container, then say so. Either failing, exiting ends the
        // container as well (the agent sees the exit).
        if let Err(e) = mantle_server::standby::leave(&mut control, &assignment) {
            tracing::warn!(error = %e, "standby executor cannot serve again");
            return std::process::ExitCode::SUCCESS;
        }
        if runtime.block_on(control.released()).is_err() {
            return std::process::ExitCode::SUCCESS;
        }
    }
    std::process::ExitCode::SUCCESS
}

fn exit(outcome: anyhow::Result<mantle_server::executor::Outcome>) -> std::process::ExitCode {
    match outcome {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "executor failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Before the logger: to stderr (the agent's log), and never a panic if that fails.
fn report_early(e: &mantle_server::standby::StandbyError) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "mantle: standby executor: {e}");
}

/// Moves this process into every cgroup whose `cgroup.procs` file `MANTLE_CGROUP_PROCS` lists
/// (colon-separated; the agent sets it), before anything else runs: writing `0` moves the
/// writer. Exit code 125 when one cannot be joined, as the agent's shell wrapper does.
#[allow(clippy::print_stderr)] // no logger yet, and the agent reads stderr into the sandbox
fn join_cgroups() -> Result<(), std::process::ExitCode> {
    let Some(list) = std::env::var_os("MANTLE_CGROUP_PROCS") else {
        return Ok(());
    };
    if let Err(e) = mantle_server::standby::join_cgroups(&list) {
        eprintln!("mantle: {e}");
        return Err(std::process::ExitCode::from(125));
    }
    // Not for the tasks it starts.
    std::env::remove_var("MANTLE_CGROUP_PROCS");
    Ok(())
}
