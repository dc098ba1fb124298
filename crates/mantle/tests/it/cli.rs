//! `mantle app`, `mantle deployment` and `mantle task` as processes against a real cluster
//! (master, agents and `mantle marathon`): the marathon-python scenario driven through the
//! CLI, with the server's state checked over HTTP after each step, and bad input.

use crate::harness::{free_port, plain, task_ports, Cluster, BIN};
use crate::marathon::Scheduler;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WEB: &str = "/prod/web";
const CMD: &str = "echo web-started; exec python3 -m http.server $PORT0 --bind $HOST";

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

struct Ctx {
    cluster: Cluster,
    sched: Scheduler,
    dir: PathBuf,
}

impl Ctx {
    fn start(agents: usize) -> Ctx {
        let cluster = Cluster::start(agents, &[]);
        let sched = Scheduler::start(&cluster, free_port("127.0.0.1"));
        let dir = cluster.dir.path().join("cli");
        std::fs::create_dir_all(&dir).unwrap();
        Ctx {
            cluster,
            sched,
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("MANTLE_MARATHON", &self.sched.url)
            .env("MANTLE_MASTER_URL", &self.cluster.master)
            .env_remove("MANTLE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `mantle ARGS` to its end (killed after 180 s).
    fn run(&self, args: &[&str]) -> Out {
        let mut child = self.command(args).spawn().unwrap();
        let stdout = reader(child.stdout.take().unwrap());
        let stderr = reader(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mantle {args:?} did not finish\n{}", self.cluster.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = Out {
            ok: status.success(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        assert!(!out.stderr.contains("panicked"), "mantle {args:?}: {out}");
        out
    }

    /// Runs `mantle ARGS` and expects success.
    fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args);
        assert!(
            out.ok,
            "mantle {args:?} failed: {out}\n{}",
            self.cluster.logs()
        );
        out
    }

    /// Runs `mantle ARGS` and expects a non-zero exit with `needle` on stderr.
    fn fails(&self, args: &[&str], needle: &str) -> Out {
        let out = self.run(args);
        assert!(!out.ok, "mantle {args:?} should fail: {out}");
        assert!(
            out.stderr.starts_with("error: ") && !out.stderr.contains("acktrace"),
            "one clear message: {out}"
        );
        assert!(
            out.stderr.contains(needle),
            "mantle {args:?}: stderr lacks {needle:?}: {out}"
        );
        out
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn get(&self, path: &str) -> Value {
        plain::blocking_get_json(&format!("{}{path}", self.sched.url))
    }

    fn app(&self, id: &str) -> Value {
        self.get(&format!("/v2/apps{id}"))["app"].clone()
    }

    fn deployment_ids(&self) -> Vec<String> {
        self.get("/v2/deployments")
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn task_ids(&self, id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self.app(id)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Asserts the app is settled: no deployment, `n` tasks, all running and healthy.
    fn assert_settled(&self, id: &str, n: u64) {
        let app = self.app(id);
        assert_eq!(app["deployments"], serde_json::json!([]), "{app}");
        assert_eq!(app["instances"], n, "{app}");
        assert_eq!(app["tasksRunning"], n, "{app}");
        assert_eq!(app["tasks"].as_array().unwrap().len() as u64, n, "{app}");
        if app["healthChecks"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
        {
            assert_eq!(app["tasksHealthy"], n, "{app}");
        }
    }

    fn wait_for(&self, what: &str, secs: u64, mut pred: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !pred() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Lines of a child's pipe, as they come.
fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line matching `pred` until `secs` pass; returns it, or everything seen.
fn await_line(
    rx: &mpsc::Receiver<String>,
    secs: u64,
    mut pred: impl FnMut(&str) -> bool,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l) => return Ok(l),
            Ok(l) => seen.push(l),
            Err(_) => return Err(seen),
        }
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn tick_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("tick-"))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

fn web_json(cmd: &str, instances: u32) -> String {
    serde_json::json!({
        "id": WEB, "instances": instances, "cpus": 0.1, "mem": 32, "cmd": cmd,
        "healthChecks": [{"protocol": "HTTP", "path": "/", "gracePeriodSeconds": 10,
                          "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}]
    })
    .to_string()
}

#[test]
fn cli_drives_apps_deployments_and_tasks_through_their_whole_life() {
    let _ports = task_ports();
    let ctx = Ctx::start(2);
    let web = ctx.file("web.json", &web_json(CMD, 3));

    // add: waits with progress until 3 instances are healthy.
    let out = ctx.ok(&["app", "add", &web]);
    assert!(
        out.stderr.contains("deploying /prod/web: "),
        "progress lines on stderr: {out}"
    );
    assert!(
        out.stdout.contains("finished") && out.stdout.contains("/prod/web: 3/3 healthy"),
        "{out}"
    );
    ctx.assert_settled(WEB, 3);
    let first_tasks = ctx.task_ids(WEB);

    // list and show.
    let out = ctx.ok(&["app", "list"]);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("/prod/web "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("3/3"), "{row}");
    let listed: Value = serde_json::from_str(&ctx.ok(&["app", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["id"], WEB);
    assert_eq!(listed[0]["instances"], 3);
    let out = ctx.ok(&["app", "show", "prod/web"]);
    assert!(out.stdout.contains("/prod/web: 3/3 healthy"), "{out}");
    for t in &first_tasks {
        assert!(
            out.stdout.contains(t.as_str()),
            "show lists task {t}: {out}"
        );
    }
    let shown: Value =
        serde_json::from_str(&ctx.ok(&["app", "show", WEB, "--json"]).stdout).unwrap();
    assert_eq!(shown["cmd"], CMD);

    // scale to 5: nothing restarted.
    let out = ctx.ok(&["app", "scale", WEB, "5"]);
    assert!(out.stdout.contains("/prod/web: 5/5 healthy"), "{out}");
    ctx.assert_settled(WEB, 5);
    let five = ctx.task_ids(WEB);
    assert!(
        first_tasks.iter().all(|t| five.contains(t)),
        "scaling up restarted tasks"
    );

    // task list --app: the service scheduler's tasks; plain task list: the master's.
    let out = ctx.ok(&["task", "list", "--app", WEB]);
    for t in &five {
        assert!(out.stdout.contains(t.as_str()), "{out}");
    }
    assert_eq!(out.stdout.matches("healthy").count(), 5, "{out}");
    let tasks: Value =
        serde_json::from_str(&ctx.ok(&["task", "list", "--app", WEB, "--json"]).stdout).unwrap();
    let mut json_ids: Vec<String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    json_ids.sort();
    assert_eq!(json_ids, five);
    let out = ctx.ok(&["task", "list"]);
    assert!(out.stdout.contains("FRAMEWORK"), "master listing: {out}");
    assert!(out.stdout.contains(five[0].as_str()), "{out}");

    // task kill: the task is replaced.
    let victim = five[0].clone();
    let out = ctx.ok(&["task", "kill", &victim]);
    assert!(out.stdout.contains(&format!("killed {victim}")), "{out}");
    ctx.wait_for("the killed task to be replaced", 60, || {
        let ids = ctx.task_ids(WEB);
        let app = ctx.app(WEB);
        !ids.contains(&victim) && ids.len() == 5 && app["tasksHealthy"] == 5
    });

    // update: a rolling deployment of a new cmd, with progress while old instances remain.
    let old_cfg = ctx.app(WEB)["versionInfo"]["lastConfigChangeAt"].clone();
    let v2 = ctx.file(
        "v2.json",
        &serde_json::json!({"cmd": format!("{CMD} # v2")}).to_string(),
    );
    let out = ctx.ok(&["app", "update", WEB, &v2]);
    assert!(out.stderr.contains(" old"), "rolling progress: {out}");
    assert!(out.stdout.contains("/prod/web: 5/5 healthy"), "{out}");
    ctx.assert_settled(WEB, 5);
    let app = ctx.app(WEB);
    assert_eq!(app["cmd"], format!("{CMD} # v2"));
    assert_ne!(app["versionInfo"]["lastConfigChangeAt"], old_cfg);
    assert!(
        ctx.task_ids(WEB).iter().all(|t| !five.contains(t)),
        "every task replaced"
    );

    // versions (newest first) and rollback to the first.
    let out = ctx.ok(&["app", "versions", WEB]);
    let versions: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    let server: Vec<String> = ctx.get("/v2/apps/prod/web/versions")["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, server);
    assert!(versions.len() >= 3, "{versions:?}");
    let first = versions.last().unwrap().clone();
    let out = ctx.ok(&["app", "rollback", WEB, &first]);
    assert!(out.stdout.contains("/prod/web: 3/3 healthy"), "{out}");
    ctx.assert_settled(WEB, 3);
    assert_eq!(ctx.app(WEB)["cmd"], CMD);

    // deployment list: nothing running now.
    let out = ctx.ok(&["deployment", "list"]);
    assert_eq!(
        out.stdout.trim(),
        "ID  APPS  ACTIONS  STEP  VERSION",
        "{out}"
    );
    let none: Value =
        serde_json::from_str(&ctx.ok(&["deployment", "list", "--json"]).stdout).unwrap();
    assert_eq!(none, serde_json::json!([]));

    // restart --detach prints the deployment id; deployment list shows it; watch follows it.
    let before_restart = ctx.task_ids(WEB);
    let out = ctx.ok(&["app", "restart", WEB, "--detach"]);
    let id = out.stdout.trim().to_string();
    assert!(ctx.deployment_ids().contains(&id), "{id} runs: {out}");
    let out = ctx.ok(&["deployment", "list"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RestartApplication") && l.contains(WEB)),
        "{out}"
    );
    let out = ctx.ok(&["deployment", "watch", &id]);
    assert!(out.stderr.contains("deploying /prod/web: "), "{out}");
    assert!(
        out.stdout.contains(&format!("deployment {id} finished")),
        "{out}"
    );
    assert!(ctx.deployment_ids().is_empty());
    ctx.assert_settled(WEB, 3);
    assert!(ctx
        .task_ids(WEB)
        .iter()
        .all(|t| !before_restart.contains(t)));

    // task log: a task's stdout through its agent, and --follow sees later lines.
    let ticker = ctx.file(
        "ticker.json",
        &serde_json::json!({"id": "/prod/ticker", "instances": 1, "cpus": 0.1, "mem": 32,
            "cmd": "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.5; done",
            "constraints": [["hostname", "UNIQUE"]]})
        .to_string(),
    );
    let out = ctx.ok(&["app", "add", &ticker]);
    assert!(out.stdout.contains("/prod/ticker: 1/1 running"), "{out}");
    let tick_task = ctx.task_ids("/prod/ticker")[0].clone();
    ctx.wait_for("a tick", 10, || {
        tick_numbers(&ctx.ok(&["task", "log", &tick_task]).stdout).len() >= 2
    });
    let out = ctx.ok(&["task", "log", &tick_task]);
    let ticks = tick_numbers(&out.stdout);
    assert_eq!(ticks[0], 0, "{out}");
    let last = *ticks.last().unwrap();
    let mut follow = ctx
        .command(&["task", "log", &tick_task, "--follow"])
        .spawn()
        .unwrap();
    let rx = lines(follow.stdout.take().unwrap());
    let later = await_line(&rx, 20, |l| {
        tick_numbers(l).first().is_some_and(|n| *n >= last + 5)
    });
    let still_running = follow.try_wait().unwrap().is_none();
    kill(follow);
    later.unwrap_or_else(|seen| panic!("--follow saw no new tick after tick-{last}: {seen:?}"));
    assert!(still_running, "--follow keeps running");
    let web_task = ctx.task_ids(WEB)[0].clone();
    let out = ctx.ok(&["task", "log", &web_task]);
    assert!(out.stdout.contains("web-started"), "{out}");
    let out = ctx.ok(&["task", "log", &web_task, "--stderr"]);
    assert!(
        out.stdout.contains("GET / HTTP/1.1"),
        "health checks in stderr: {out}"
    );

    // deployment cancel: scaling beyond what UNIQUE allows on 2 agents never finishes;
    // cancelling rolls it back to 1 instance, and a watcher of it fails.
    let out = ctx.ok(&["app", "scale", "/prod/ticker", "3", "--detach"]);
    let stuck = out.stdout.trim().to_string();
    let mut watcher = ctx
        .command(&["deployment", "watch", &stuck])
        .spawn()
        .unwrap();
    let watch_err = lines(watcher.stderr.take().unwrap());
    let watch_out = reader(watcher.stdout.take().unwrap());
    await_line(&watch_err, 30, |l| {
        l == "deploying /prod/ticker: 2/3 running"
    })
    .unwrap_or_else(|seen| panic!("watch progress: {seen:?}"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(ctx.deployment_ids().contains(&stuck), "cannot finish");
    assert_eq!(ctx.app("/prod/ticker")["tasksRunning"], 2);
    let out = ctx.ok(&["deployment", "cancel", &stuck]);
    assert!(
        out.stdout
            .contains(&format!("cancelled deployment {stuck}")),
        "{out}"
    );
    assert!(out.stdout.contains("/prod/ticker: 1/1 running"), "{out}");
    ctx.assert_settled("/prod/ticker", 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = watcher.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "watch did not notice the cancel");
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = watch_err.try_iter().collect();
    assert!(!status.success(), "watching a cancelled deployment fails");
    assert!(
        rest.iter().any(|l| l.contains("cancelled or overridden")),
        "{rest:?} {}",
        watch_out.join().unwrap()
    );

    // remove: waits until the app and its tasks are gone.
    for id in [WEB, "/prod/ticker"] {
        let out = ctx.ok(&["app", "remove", id]);
        assert!(out.stdout.contains(&format!("removed {id}")), "{out}");
        let (code, _) = plain::blocking_get(&format!("{}/v2/apps{id}", ctx.sched.url));
        assert_eq!(code, 404);
    }
    assert_eq!(ctx.get("/v2/tasks")["tasks"], serde_json::json!([]));
    let out = ctx.ok(&["app", "list"]);
    assert_eq!(out.stdout.lines().count(), 1, "only the header: {out}");
}

#[test]
fn cli_reports_bad_input_clearly() {
    let ctx = Ctx::start(1);
    let no_apps = |ctx: &Ctx| assert_eq!(ctx.get("/v2/apps")["apps"], serde_json::json!([]));

    // Files: missing, not JSON, not an object.
    let missing = ctx.dir.join("missing.json");
    ctx.fails(
        &["app", "add", &missing.to_string_lossy()],
        "cannot read app definition",
    );
    let bad = ctx.file("bad.json", "{\"id\": \"/x\", ");
    ctx.fails(&["app", "add", &bad], "bad.json is not valid JSON");
    let arr = ctx.file("arr.json", "[1]");
    ctx.fails(&["app", "add", &arr], "must hold a JSON object");
    no_apps(&ctx);

    // 422: every violation at its path.
    let neg = ctx.file(
        "neg.json",
        r#"{"id": "/bad", "cmd": "sleep 100", "cpus": -1, "mem": 32}"#,
    );
    let out = ctx.fails(&["app", "add", &neg], "/cpus: ");
    assert!(out.stderr.contains("invalid"), "{out}");
    no_apps(&ctx);

    // 404 for unknown apps, tasks and deployments.
    for args in [
        &["app", "show", "/nope"][..],
        &["app", "scale", "/nope", "2"],
        &["app", "remove", "/nope"],
        &["app", "versions", "/nope"],
        &["app", "restart", "/nope"],
        &["app", "rollback", "/nope", "2020-01-01T00:00:00.000Z"],
    ] {
        ctx.fails(args, "App '/nope' does not exist");
    }
    no_apps(&ctx);
    ctx.fails(&["deployment", "watch", "no-such-id"], "is not running");
    ctx.fails(&["deployment", "cancel", "no-such-id"], "is not running");
    ctx.fails(
        &["task", "kill", "prod_nope.instance-0000._app.1"],
        "not a live task",
    );
    ctx.fails(
        &["task", "kill", "plain"],
        "not a task id of the service scheduler",
    );
    ctx.fails(
        &["task", "log", "no-such-task"],
        "knows no task no-such-task",
    );

    // Unreachable server: which URL, and how to set it.
    let dead = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let out = ctx.fails(&["app", "list", "--marathon", &dead], &dead);
    assert!(out.stderr.contains("--marathon URL"), "{out}");
    assert!(out.stderr.contains("MANTLE_MARATHON"), "{out}");
    let out = ctx.fails(&["task", "log", "x", "--master", &dead], &dead);
    assert!(out.stderr.contains("--master URL"), "{out}");

    // 409: a deployment that cannot finish (UNIQUE on one agent) locks the app; --force
    // overrides it.
    let pinned = ctx.file(
        "pinned.json",
        r#"{"id": "/pinned", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 2,
            "constraints": [["hostname", "UNIQUE"]]}"#,
    );
    let out = ctx.ok(&["app", "add", &pinned, "--detach"]);
    let stuck = out.stdout.trim().to_string();
    assert_eq!(ctx.deployment_ids(), vec![stuck.clone()]);
    let out = ctx.fails(&["app", "scale", "/pinned", "1"], &stuck);
    assert!(out.stderr.contains("--force"), "{out}");
    assert_eq!(ctx.app("/pinned")["instances"], 2, "nothing changed");
    let out = ctx.ok(&["app", "scale", "/pinned", "1", "--force"]);
    assert!(out.stdout.contains("/pinned: 1/1 running"), "{out}");
    ctx.assert_settled("/pinned", 1);
    // A bad version for rollback is a 404 of the server.
    ctx.fails(
        &["app", "rollback", "/pinned", "1999-01-01T00:00:00.000Z"],
        "does not exist",
    );
    // task kill --scale shrinks the app instead of replacing the task.
    let task = ctx.task_ids("/pinned")[0].clone();
    let out = ctx.ok(&["task", "kill", &task, "--scale"]);
    assert!(out.stdout.contains("/pinned: 0/0 running"), "{out}");
    ctx.assert_settled("/pinned", 0);
    let out = ctx.ok(&["app", "remove", "/pinned"]);
    assert!(out.stdout.contains("removed /pinned"), "{out}");
    no_apps(&ctx);
}
