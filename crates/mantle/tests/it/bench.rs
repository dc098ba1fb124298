//! `mantle bench launch` as a user runs it: a process that starts its own cluster, prints
//! the latency table, exits 0 and leaves no process behind.

use crate::harness::{processes_under, BIN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `mantle <args> --work-dir <work_dir>`, asserts that it succeeded, and returns its
/// standard output.
fn run_bench(args: &[&str], work_dir: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--work-dir")
        .arg(work_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_launch_prints_a_positive_median_and_leaves_no_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["bench", "launch", "--tasks", "3", "--work-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mantle bench launch did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    let median: f64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("median"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no median figure in:\n{stdout}"));
    assert!(median.is_finite() && median > 0.0, "{median}\n{stdout}");
    assert!(stdout.contains("3 tasks launched"), "{stdout}");
    // Every task really ran on the cluster the bench started (one sandbox per task).
    let runs: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "runs")
        })
        .collect();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let left = processes_under(dir.path());
    assert!(left.is_empty(), "orphans: {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
            out.push(p);
        }
    }
    out
}

#[test]
fn bench_dns_prints_a_positive_p50_and_leaves_no_processes() {
    // Goal: `mantle bench dns` runs end to end and reports a figure; method: run it as a
    // process with 3 tasks and read the median line.
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_bench(&["bench", "dns", "--tasks", "3"], dir.path());
    let median: f64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("median"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no median figure in:\n{stdout}"));
    assert!(median.is_finite() && median > 0.0, "{median}\n{stdout}");
    assert!(stdout.contains("3 tasks resolvable"), "{stdout}");
    let left = processes_under(dir.path());
    assert!(left.is_empty(), "orphans: {left:?}");
}

#[test]
fn bench_launch_with_overlapping_launches_runs_every_task_to_its_end() {
    // Goal: `--concurrency` keeps several launches in flight, packs offers, and every `true`
    // task runs and finishes; method: 12 tasks, 4 at a time, then count the sandboxes and the
    // tasks' FINISHED state in each sandbox's executor output.
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_bench(
        &["bench", "launch", "--tasks", "12", "--concurrency", "4"],
        dir.path(),
    );
    assert!(
        stdout.contains("12 tasks launched up to 4 at a time"),
        "{stdout}"
    );
    let runs: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "runs")
        })
        .collect();
    assert_eq!(runs.len(), 12, "{runs:?}");
    let left = processes_under(dir.path());
    assert!(left.is_empty(), "orphans: {left:?}");
    // A bad window is refused with a message naming the flag.
    let bad = Command::new(BIN)
        .args(["bench", "launch", "--concurrency", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--concurrency"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn bench_updates_carries_every_update_in_order_and_leaves_no_processes() {
    // Goal: `mantle bench updates` runs end to end through a real agent and executor and
    // reports a rate; method: run it as a process with 20 tasks x 11 updates.
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_bench(
        &[
            "bench",
            "updates",
            "--tasks",
            "20",
            "--updates",
            "10",
            "--checkpoint",
        ],
        dir.path(),
    );
    let rate: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("220 updates in order and each once: "))
        .and_then(|rest| rest.strip_suffix(" updates/s"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rate for 220 updates in:\n{stdout}"));
    assert!(rate.is_finite() && rate > 0.0, "{rate}\n{stdout}");
    // The agent logged the updates (its checkpoint is the whole state plus an update log).
    let meta = dir.path().join("agent-1/meta");
    assert!(
        meta.join("agent.json").is_file(),
        "no checkpoint in {meta:?}"
    );
    let left = processes_under(dir.path());
    assert!(left.is_empty(), "orphans: {left:?}");
}

#[test]
fn bench_launch_on_a_cni_network_attaches_and_detaches_every_task() {
    // Goal: `--cni-plugins-dir` puts every task on a (loopback-only) CNI network, so the
    // figures include the attach; method: a plugins directory whose `loopback` logs each call
    // and runs Debian's, 4 tasks 2 at a time, then count the ADDs and DELs.
    assert!(
        std::path::Path::new("/usr/lib/cni/loopback").is_file(),
        "/usr/lib/cni/loopback is missing: run scripts/install-test-deps.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let logger = plugins.join("loopback");
    std::fs::write(
        &logger,
        "#!/bin/sh\necho \"$CNI_COMMAND $CNI_CONTAINERID\" >> \"$(dirname \"$0\")/calls\"\nexec /usr/lib/cni/loopback\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = dir.path().join("work");
    let plugins_dir = plugins.to_str().unwrap();
    let stdout = run_bench(
        &[
            "bench",
            "launch",
            "--tasks",
            "4",
            "--concurrency",
            "2",
            "--cni-plugins-dir",
            plugins_dir,
        ],
        &work,
    );
    assert!(stdout.contains("(each on a CNI network)"), "{stdout}");
    let calls = std::fs::read_to_string(plugins.join("calls")).unwrap_or_default();
    let count = |c: &str| calls.lines().filter(|l| l.starts_with(c)).count();
    assert_eq!((count("ADD "), count("DEL ")), (4, 4), "{calls}");
    let left = processes_under(&work);
    assert!(left.is_empty(), "orphans: {left:?}");
}
