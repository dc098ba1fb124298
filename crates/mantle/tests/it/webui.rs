//! The web UI against a real cluster (master with `--marathon-url`, two agents, `mantle
//! marathon`), in headless Chromium driven over W3C WebDriver by chromedriver: create an app
//! from the form, watch it become healthy on the Services page, scale it, follow a task's
//! stdout until a line printed after the page opened shows up, review the diff of an edit,
//! see a validation error at its field, and take a screenshot that must show real content. Also the master's proxies
//! without a browser: confinement, 503 without a service scheduler, the SSE stream passing
//! through unbuffered.
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver`
//! (`scripts/install-test-deps.sh`); without them the tests fail, they never skip.
//! `MANTLE_CHROMIUM` and `MANTLE_CHROMEDRIVER` name other binaries.

use crate::harness::{free_port, plain, processes_under, Cluster};
use crate::marathon::Scheduler;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const APP: &str = "/webui/ticker";
const TICKER: &str = "while true; do echo tick-$(date +%s%N); sleep 1; done";

/// A binary from `var`, or the first of `candidates` that exists; a clear panic otherwise.
fn binary(var: &str, candidates: &[&str], package: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{var}={} does not exist (unset it to use Debian's {package} from \
             scripts/install-test-deps.sh)",
            p.display()
        );
        return p;
    }
    for c in candidates {
        if Path::new(c).is_file() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "the web UI tests need {package} (looked for {candidates:?}); install it with \
         scripts/install-test-deps.sh (Debian's chromium and chromium-driver), or set {var}"
    );
}

/// Chromium and chromedriver.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let chromium = binary(
        "MANTLE_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        "chromium",
    );
    let chromedriver = binary(
        "MANTLE_CHROMEDRIVER",
        &["/usr/bin/chromedriver"],
        "chromium-driver (chromedriver)",
    );
    (chromium, chromedriver)
}

/// chromedriver on a free 127.0.0.1 port and one Chromium session, both ended on drop
/// (also when the test fails half-way).
struct Browser {
    driver: Child,
    session: String,
    client: reqwest::Client,
    profile: PathBuf,
}

impl Browser {
    async fn start(dir: &Path) -> Browser {
        let (chromium, chromedriver) = browser_binaries();
        let port = free_port("127.0.0.1");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                         "--window-size=1280,1000",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let r = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers");
        let v: Value = r.json().await.unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Browser {
            driver,
            session: format!("{base}/session/{id}"),
            client,
            profile,
        }
    }

    /// One WebDriver command; its `value`, or the WebDriver error as text.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body.unwrap_or(json!({}))),
        };
        let r = req.send().await.map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                v["value"]["error"], v["value"]["message"]
            ))
        }
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .await
            .unwrap();
    }

    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .ok()?;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// The element, waiting up to `secs` for it to appear.
    async fn wait(&self, css: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "{css} did not appear in {secs} s; page:\n{}",
                    self.page().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element; when the page re-renders it between finding and clicking (a
    /// "stale element reference"), finds it again, for up to 10 s.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.wait(css, 10).await;
            match self.cmd("POST", &format!("/element/{e}/click"), None).await {
                Ok(_) => return,
                Err(err) if err.contains("stale element") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("click {css}: {err}"),
            }
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait(css, 10).await;
        self.cmd("POST", &format!("/element/{e}/clear"), None)
            .await
            .unwrap();
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    /// The element's rendered text ("" when it is not there).
    async fn text(&self, css: &str) -> String {
        let Some(e) = self.find(css).await else {
            return String::new();
        };
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
        .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// The page's location and visible text, for failure messages.
    async fn page(&self) -> String {
        let v = self
            .cmd(
                "POST",
                "/execute/sync",
                Some(json!({"script": "return location.href + '\\n' + document.body.innerText", "args": []})),
            )
            .await;
        match v {
            Ok(v) => v.as_str().unwrap_or("").chars().take(4000).collect(),
            Err(e) => format!("(page not readable: {e})"),
        }
    }

    /// Polls `css`'s text until `ok` holds, for up to `secs`.
    async fn until(&self, css: &str, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text(css).await;
            if ok(&t) {
                return t;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: {css} reads {t:?} after {secs} s; page:\n{}",
                    self.page().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None).await.unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Blocking on purpose: this also runs when the test panics. Ending the session closes
        // Chromium; chromedriver is then killed by its pid, and any Chromium process still
        // using this test's profile directory by its pid.
        let rest = self.session.trim_start_matches("http://");
        if let Some((host, path)) = rest.split_once('/') {
            use std::io::Write;
            if let Ok(mut s) = std::net::TcpStream::connect(host) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                );
                let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        for p in processes_under(&self.profile) {
            if let Some(pid) = p.split(':').next().and_then(|x| x.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The `tick-N` values in `text`.
fn ticks(text: &str) -> Vec<u128> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("tick-"))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Width, height and number of distinct pixel values of a PNG (decoded to 8-bit).
fn png_stats(bytes: &[u8]) -> (u32, u32, usize) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG pixels");
    let px = info.color_type.samples();
    let mut colors = std::collections::HashSet::new();
    for p in buf[..info.buffer_size()].chunks(px) {
        colors.insert(p.to_vec());
        if colors.len() > 10_000 {
            break;
        }
    }
    (info.width, info.height, colors.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webui_creates_scales_follows_logs_and_shows_validation_errors_in_chromium() {
    // Fail at once, before any cluster starts, when the browser is missing.
    browser_binaries();
    let marathon_port = free_port("127.0.0.1");
    let marathon_url = format!("http://127.0.0.1:{marathon_port}");
    let cluster = Cluster::start_with(2, &[], &["--marathon-url", &marathon_url]);
    let sched = Scheduler::start(&cluster, marathon_port);
    let master = cluster.master.clone();
    let browser = Browser::start(cluster.dir.path()).await;
    let fail = |what: &str| format!("{what}\n{}", cluster.logs());

    // The Services page, with the scheduler reached through the master's proxy and the
    // event stream open.
    browser.goto(&format!("{master}/#/services")).await;
    browser
        .until("#services", 20, "empty list", |t| {
            t.contains("No services yet")
        })
        .await;
    browser
        .until("#live", 20, "event stream through the proxy", |t| {
            t == "Live"
        })
        .await;

    // Create the app from the form, with a COMMAND health check.
    browser.click("#create-service").await;
    browser.type_into("#f-id", APP).await;
    browser.type_into("#f-cmd", TICKER).await;
    browser.type_into("#f-instances", "1").await;
    browser.type_into("#f-cpus", "0.1").await;
    browser.type_into("#f-mem", "32").await;
    browser
        .click("#f-hc-protocol option[value=\"COMMAND\"]")
        .await;
    browser.type_into("#f-hc-command", "true").await;
    browser.type_into("#f-hc-interval", "1").await;
    browser.click("#editor-submit").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.js("return location.hash").await != "#/app/webui/ticker" {
        assert!(
            Instant::now() < deadline,
            "{}",
            fail(&format!(
                "create did not lead to the app's page:\n{}",
                browser.page().await
            ))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = plain::blocking_get(&format!("{}/v2/apps{APP}", sched.url));
    assert_eq!(code, 200, "the scheduler has the app: {body}");

    // Its instance becomes healthy on the Services page, without a reload.
    browser.click("a[data-nav=\"services\"]").await;
    let row = format!("tr[data-app=\"{APP}\"]");
    browser
        .until(
            &format!("{row} td.healthy"),
            60,
            "first instance healthy",
            |t| t == "1",
        )
        .await;
    browser
        .until(&format!("{row} td.status"), 20, "status running", |t| {
            t == "running"
        })
        .await;
    // The table is redrawn as data arrives: wait for the cell rather than read it once.
    browser
        .until(&format!("{row} td.target"), 10, "target 1", |t| t == "1")
        .await;
    assert!(
        browser
            .text("tr[data-group=\"/webui\"]")
            .await
            .contains("webui/"),
        "the group row is shown"
    );

    // Scale to 2 from the app's page; the Services page follows.
    browser.click(&format!("a[aria-label=\"{APP}\"]")).await;
    browser.type_into("#scale-n", "2").await;
    browser.click("#scale-btn").await;
    browser
        .until("#app-message", 10, "scale accepted", |t| {
            t.contains("Scale to 2: deployment")
        })
        .await;
    browser.click("a[data-nav=\"services\"]").await;
    browser
        .until(
            &format!("{row} td.healthy"),
            60,
            "two instances healthy",
            |t| t == "2",
        )
        .await;
    browser
        .until(&format!("{row} td.target"), 10, "target 2", |t| t == "2")
        .await;
    let app = plain::blocking_get_json(&format!("{}/v2/apps{APP}", sched.url));
    assert_eq!(app["app"]["instances"], 2, "{}", fail("scaled for real"));
    assert_eq!(app["app"]["tasksHealthy"], 2);

    // A task's page: status history, sandbox, and stdout followed live.
    browser.click(&format!("a[aria-label=\"{APP}\"]")).await;
    browser.click("a.task-link").await;
    browser.wait("#log[data-loaded=\"stdout\"]", 20).await;
    let opened = now_ns();
    assert_eq!(
        browser
            .js("return document.getElementById('follow').checked")
            .await,
        true,
        "follow is on by default"
    );
    let log = browser
        .until("#log", 20, "a tick printed after the page opened", |t| {
            ticks(t).iter().any(|n| *n > opened)
        })
        .await;
    assert!(!ticks(&log).is_empty());
    browser
        .until("#task-history", 10, "status history", |t| {
            t.contains("TASK_RUNNING") && t.contains("TASK_STAGING")
        })
        .await;
    browser
        .until("#sandbox", 10, "sandbox listing", |t| {
            t.contains("stdout") && t.contains("stderr")
        })
        .await;
    browser.click("#show-stderr").await;
    browser.wait("#log[data-loaded=\"stderr\"]", 20).await;
    assert!(
        ticks(&browser.text("#log").await).is_empty(),
        "stderr holds no ticks"
    );

    // Editing shows what would change before anything is sent.
    browser.goto(&format!("{master}/#/edit/webui/ticker")).await;
    browser.wait("#f-cmd", 10).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser
        .js("return document.getElementById('f-mem').value")
        .await
        != "32"
    {
        assert!(Instant::now() < deadline, "the form shows the app's mem");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.type_into("#f-mem", "48").await;
    browser.click("#editor-submit").await;
    let diff = browser
        .until("#diff", 10, "diff of the change", |t| !t.is_empty())
        .await;
    assert_eq!(diff.trim(), "/mem: 32 → 48", "only mem changes");
    let app = plain::blocking_get_json(&format!("{}/v2/apps{APP}", sched.url));
    assert_eq!(app["app"]["mem"], 32.0, "nothing is sent before Apply");

    // An invalid definition: Marathon's 422 lands next to the cpus field.
    browser.goto(&format!("{master}/#/new")).await;
    browser.type_into("#f-id", "/webui/bad").await;
    browser.type_into("#f-cmd", "sleep 100").await;
    browser.type_into("#f-cpus", "-1").await;
    browser.click("#editor-submit").await;
    let err = browser
        .until("#field-cpus #f-cpus-error", 10, "cpus error", |t| {
            !t.is_empty()
        })
        .await;
    assert!(err.contains("expected 0.0 or more"), "{err}");
    assert_eq!(
        browser
            .js("return document.getElementById('f-cpus').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    assert_eq!(
        browser.text("#f-mem-error").await,
        "",
        "only cpus is marked"
    );
    let (code, _) = plain::blocking_get(&format!("{}/v2/apps/webui/bad", sched.url));
    assert_eq!(code, 404, "the invalid app was not created");

    // A screenshot of the Services page must show real content, not a blank page.
    browser.goto(&format!("{master}/#/services")).await;
    browser
        .until(&format!("{row} td.healthy"), 20, "row rendered", |t| {
            t == "2"
        })
        .await;
    let shot = browser.screenshot().await;
    let path = cluster.dir.path().join("webui-services.png");
    std::fs::write(&path, &shot).unwrap();
    let (w, h, colors) = png_stats(&shot);
    eprintln!(
        "screenshot {}: {} bytes, {w}x{h}, {colors} colors",
        path.display(),
        shot.len()
    );
    assert!(w >= 800 && h >= 600, "screenshot is {w}x{h}");
    assert!(
        shot.len() > 10_000,
        "screenshot is only {} bytes",
        shot.len()
    );
    assert!(colors > 16, "screenshot has {colors} colors: a blank page?");

    // The cluster page shows both agents with resource bars and the scheduler's share.
    browser.click("a[data-nav=\"cluster\"]").await;
    browser
        .until("#agents", 10, "agents", |t| {
            t.contains("127.0.0.2") && t.contains("127.0.0.3")
        })
        .await;
    browser
        .until("#frameworks", 10, "DRF share", |t| {
            t.contains("marathon") && t.contains("of cpus")
        })
        .await;
    let meters = browser
        .js("return document.querySelectorAll('#agents meter').length")
        .await;
    assert_eq!(meters, 6, "cpus, mem and disk bars for two agents");
    drop(browser);
    drop(sched);
}

/// The proxies' confinement and errors, over plain HTTP: a master without a service
/// scheduler, then one with it, including the SSE stream arriving record by record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webui_assets_and_proxies_without_a_browser() {
    let cluster = Cluster::start(1, &[]);
    let m = &cluster.master;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    for (path, ct) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let r = client.get(format!("{m}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ct, "{path}");
        assert!(r.headers().contains_key("content-security-policy"));
        assert!(r.text().await.unwrap().len() > 500, "{path} has content");
    }
    assert_eq!(plain::blocking_get(&format!("{m}/ui/nope.js")).0, 404);

    // No --marathon-url: 503 that says what to do.
    let (code, body) = plain::blocking_get(&format!("{m}/marathon/v2/apps"));
    assert_eq!(code, 503);
    assert!(body.contains("--marathon-url"), "{body}");

    // Only /marathon/v2/... and no dot segments, whatever the encoding (sent as is).
    for bad in [
        "/marathon/v2/../../master/state",
        "/marathon/v2/%2e%2e/%2e%2e/master/state",
        "/marathon/ping",
        "/marathon/v2/apps/a%2Fb",
    ] {
        let (code, body) = plain::blocking_get(&format!("{m}{bad}"));
        assert_eq!(code, 404, "{bad}: {body}");
    }
    let r = client
        .request(reqwest::Method::OPTIONS, format!("{m}/marathon/v2/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Agents: only known IDs, only three endpoints, only their parameters.
    let state = cluster.state();
    let agent = state["slaves"][0]["id"].as_str().unwrap().to_string();
    let v = plain::blocking_get_json(&format!("{m}/agent/{agent}/state"));
    assert_eq!(v["id"], agent.as_str());
    let (code, _) = plain::blocking_get(&format!("{m}/agent/{agent}/files/browse?path=/etc"));
    assert_eq!(
        code, 400,
        "the agent's own confinement answers through the proxy"
    );
    let (code, body) = plain::blocking_get(&format!("{m}/agent/nosuchagent/state"));
    assert_eq!(code, 404, "{body}");
    let (code, _) = plain::blocking_get(&format!("{m}/agent/a%2Fb/state"));
    assert_eq!(code, 400);
    let (code, _) = plain::blocking_get(&format!("{m}/agent/{agent}/health"));
    assert_eq!(code, 404, "only state and files are proxied");
    let (code, _) = plain::blocking_get(&format!("{m}/agent/../master/state"));
    assert_eq!(code, 404);

    // A master that knows the scheduler: answers and errors pass through unchanged.
    let marathon_port = free_port("127.0.0.1");
    let with = Cluster::start_with(
        1,
        &[],
        &[
            "--marathon-url",
            &format!("http://127.0.0.1:{marathon_port}"),
        ],
    );
    let sched = Scheduler::start(&with, marathon_port);
    let wm = &with.master;
    let r = client
        .post(format!("{wm}/marathon/v2/apps"))
        .header("Content-Type", "application/json")
        .body(r#"{"id": "/x", "cmd": "sleep 1", "cpus": -1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["details"][0]["path"], "/cpus", "{v}");
    let r = client
        .get(format!("{wm}/marathon/v2/apps?id=nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"apps": []}));

    // The event stream: records arrive while the stream stays open.
    let r = client
        .get(format!("{wm}/marathon/v2/events"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = r.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event_stream_attached") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the first record arrives while the stream is open")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    client
        .post(format!("{wm}/marathon/v2/apps"))
        .header("Content-Type", "application/json")
        .body(r#"{"id": "/sse", "cmd": "sleep 100", "cpus": 0.1, "mem": 16, "instances": 0}"#)
        .send()
        .await
        .unwrap();
    while !seen.contains("api_post_event") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("a later event arrives through the proxy")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(sched);
}
