//! `mantle marathon`: the shell around the service scheduler core.
//!
//! - one actor task owns the [`Core`]; HTTP handlers send it closures and get answers back;
//! - after every step the actor commits the step's store writes (redb) in one transaction,
//!   then sends the step's calls to the master and publishes its events;
//! - a master link subscribes over the v1 scheduler API (like any third-party framework),
//!   feeds events to the actor and reconnects with the stored framework id;
//! - a health checker probes Marathon-level HTTP/TCP checks and reports results;
//! - the HTTP API is dispatched by hand on the normalised path, so `//`, trailing slashes and
//!   app ids with any number of segments work the way Marathon's do.

use crate::clock::Clock;
use crate::marathon_store::Store;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use mantle_api::recordio::Decoder;
use mantle_api::scheduler::{Call, Event, EventType};
use mantle_marathon::core::{ApiError, Config, Core, Effect, Instance, Write};
use mantle_marathon::deploy::Deployment;
use mantle_marathon::path;
use mantle_marathon::placement::Strategy;
use mantle_model::Now;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

/// Marathon version we report (the API shapes follow 1.10).
pub const MARATHON_VERSION: &str = "1.10.26";
/// Largest request body accepted.
const MAX_BODY: usize = 4 << 20;

/// Options of `mantle marathon`.
#[derive(Debug, Clone)]
pub struct MarathonOptions {
    pub master: String,
    pub http_address: SocketAddr,
    pub work_dir: PathBuf,
    pub strategy: Strategy,
    /// Milliseconds between periodic reconciliations (`--reconciliation-interval`).
    pub reconciliation_interval_ms: u64,
    /// Milliseconds before a task still STAGING is killed and replaced
    /// (`--task-launch-timeout`).
    pub task_launch_timeout_ms: u64,
}

/// Marathon's `--reconciliation_interval` default: 10 minutes.
pub const RECONCILIATION_INTERVAL_MS: u64 = 600_000;
/// Marathon's `--task_launch_timeout` default: 5 minutes.
pub const TASK_LAUNCH_TIMEOUT_MS: u64 = 300_000;

type HealthTarget = (String, String, u32, mantle_marathon::app::HealthCheck);
type ReadinessTarget = (String, String, u32, mantle_marathon::app::ReadinessCheck);
type Job = Box<dyn FnOnce(&mut Core, Now) -> Response + Send>;

enum Msg {
    Api(Job, oneshot::Sender<Response>),
    Master(Box<Event>),
    Disconnected,
    Health(String, bool),
    HealthTargets(oneshot::Sender<Vec<HealthTarget>>),
    ReadinessTargets(oneshot::Sender<Vec<ReadinessTarget>>),
    Readiness(String, bool),
    SubscribeCall(oneshot::Sender<Call>),
    Tick,
}

#[derive(Clone)]
struct AppState {
    tx: mpsc::UnboundedSender<Msg>,
    events: broadcast::Sender<Value>,
    clock: Clock,
    leader: String,
    master: String,
}

impl AppState {
    async fn ask(&self, job: impl FnOnce(&mut Core, Now) -> Response + Send + 'static) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Api(Box::new(job), tx)).is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "scheduler is stopping");
        }
        rx.await
            .unwrap_or_else(|_| error(StatusCode::SERVICE_UNAVAILABLE, "scheduler is stopping"))
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "message": message.into() }))
}

fn api_error(e: ApiError) -> Response {
    match e {
        ApiError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        ApiError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        ApiError::Conflict {
            message,
            deployments,
        } => {
            let mut body = json!({ "message": message });
            if !deployments.is_empty() {
                body["deployments"] =
                    Value::Array(deployments.iter().map(|d| json!({ "id": d })).collect());
            }
            json_response(StatusCode::CONFLICT, &body)
        }
        ApiError::Invalid(v) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &mantle_marathon::app::violations_body(&v),
        ),
    }
}

fn deployment_result(d: &Deployment, status: StatusCode) -> Response {
    let mut r = json_response(status, &json!({"version": d.version, "deploymentId": d.id}));
    if let Ok(v) = d.id.parse() {
        r.headers_mut().insert("Marathon-Deployment-Id", v);
    }
    r
}

/// Runs the service scheduler until `shutdown` resolves.
pub async fn run(
    o: MarathonOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.work_dir)?;
    let store = Store::open(&o.work_dir.join("marathon.redb"))?;
    let snapshot = store.load()?;
    info!(
        apps = snapshot.apps.len(),
        instances = snapshot.instances.len(),
        framework_id = ?snapshot.framework_id,
        "service scheduler state loaded"
    );
    let config = Config {
        framework_name: "marathon".into(),
        role: "*".into(),
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        hostname: o.http_address.ip().to_string(),
        webui_url: Some(format!("http://{}", o.http_address)),
        strategy: o.strategy,
        reconciliation_interval_ms: o.reconciliation_interval_ms,
        task_launch_timeout_ms: o.task_launch_timeout_ms,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x6d61_6e74_6c65),
    };
    let core = Core::new(config, snapshot);
    let clock = Clock::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(1024);
    let (calls_tx, calls_rx) = mpsc::unbounded_channel::<Call>();
    let stream_id = Arc::new(Mutex::new(None::<String>));
    let master = o.master.trim_end_matches('/').to_string();
    tokio::spawn(actor(core, store, clock, rx, calls_tx, events.clone()));
    tokio::spawn(master_link(master.clone(), tx.clone(), stream_id.clone()));
    tokio::spawn(call_sender(master.clone(), calls_rx, stream_id));
    tokio::spawn(health_checker(tx.clone()));
    tokio::spawn(readiness_checker(tx.clone()));
    {
        let tx = tx.clone();
        // The core's tick also reconciles and kills overdue launches when they are due.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(Msg::Tick).is_err() {
                    return;
                }
            }
        });
    }
    let state = AppState {
        tx,
        events,
        clock,
        leader: o.http_address.to_string(),
        master,
    };
    let app = Router::new()
        .fallback(dispatch)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(|r, n| {
            crate::http::refuse_oversized(MAX_BODY, r, n)
        }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(o.http_address).await?;
    info!(addr = %o.http_address, "service scheduler listening");
    tokio::select! {
        r = axum::serve(crate::http::nodelay(listener), app) => r?,
        _ = shutdown => info!("service scheduler stopping"),
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn actor(
    mut core: Core,
    store: Store,
    clock: Clock,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    calls: mpsc::UnboundedSender<Call>,
    events: broadcast::Sender<Value>,
) {
    while let Some(msg) = rx.recv().await {
        let now = clock.now();
        let mut reply = None;
        match msg {
            Msg::Api(job, tx) => reply = Some((job(&mut core, now), tx)),
            Msg::Master(e) => core.on_event(*e, now),
            Msg::Disconnected => core.disconnected(),
            Msg::Health(task, ok) => core.health_result(&task, ok, now),
            Msg::SubscribeCall(tx) => {
                let _ = tx.send(core.subscribe_call());
            }
            Msg::HealthTargets(tx) => {
                let _ = tx.send(core.health_targets());
            }
            Msg::ReadinessTargets(tx) => {
                let _ = tx.send(core.readiness_targets());
            }
            Msg::Readiness(task, ok) => core.readiness_result(&task, ok, now),
            Msg::Tick => core.tick(now),
        }
        let effects = core.drain();
        let writes: Vec<Write> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Store(w) => Some(w.clone()),
                _ => None,
            })
            .collect();
        let stored = store.apply(&writes);
        if let Err(e) = &stored {
            warn!(error = %e, "store write failed; not acting on this step");
        }
        if stored.is_ok() {
            for e in effects {
                match e {
                    Effect::Call(c) => {
                        let _ = calls.send(c);
                    }
                    Effect::Event(v) => {
                        let _ = events.send(v);
                    }
                    Effect::Store(_) => {}
                }
            }
        }
        if let Some((resp, tx)) = reply {
            let resp = match stored {
                Ok(()) => resp,
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("store failure: {e}"),
                ),
            };
            let _ = tx.send(resp);
        }
    }
}

/// Subscribes to the master and feeds its events to the actor, reconnecting forever.
async fn master_link(
    master: String,
    tx: mpsc::UnboundedSender<Msg>,
    stream_id: Arc<Mutex<Option<String>>>,
) {
    let client = reqwest::Client::new();
    let mut delay = Duration::from_millis(200);
    loop {
        // The core's SUBSCRIBE carries the framework id it holds now, so a re-subscription
        // fails over and keeps our tasks.
        let (ctx, crx) = oneshot::channel();
        if tx.send(Msg::SubscribeCall(ctx)).is_err() {
            return;
        }
        let Ok(subscribe) = crx.await else { return };
        match subscribe_once(&client, &master, &subscribe, &tx, &stream_id).await {
            Ok(()) => {
                delay = Duration::from_millis(200);
                info!("master event stream ended; re-subscribing");
            }
            Err(e) => debug!(error = %e, "subscribe failed"),
        }
        if let Ok(mut s) = stream_id.lock() {
            *s = None;
        }
        if tx.send(Msg::Disconnected).is_err() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(3));
    }
}

async fn subscribe_once(
    client: &reqwest::Client,
    master: &str,
    subscribe: &Call,
    tx: &mpsc::UnboundedSender<Msg>,
    stream_id: &Arc<Mutex<Option<String>>>,
) -> anyhow::Result<()> {
    let resp = client
        .post(format!("{master}/api/v1/scheduler"))
        .header("Accept", "application/json")
        .json(subscribe)
        .send()
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!("SUBSCRIBE answered {status}: {body}");
    }
    let id = resp
        .headers()
        .get("Mesos-Stream-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Ok(mut s) = stream_id.lock() {
        *s = id;
    }
    let mut body = resp.bytes_stream();
    let mut decoder = Decoder::new(64 << 20);
    let mut silence = Duration::from_secs(60);
    loop {
        let chunk = match tokio::time::timeout(silence, body.next()).await {
            Err(_) => anyhow::bail!("no heartbeat from the master for {silence:?}"),
            Ok(None) => return Ok(()),
            Ok(Some(c)) => c?,
        };
        decoder.feed(&chunk);
        while let Some(record) = decoder.next_record()? {
            let event: Event = match serde_json::from_slice(&record) {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "undecodable event from the master");
                    continue;
                }
            };
            if let Some(s) = &event.subscribed {
                silence =
                    Duration::from_secs_f64((s.heartbeat_interval_seconds * 3.0).clamp(5.0, 300.0));
            }
            if event.kind == EventType::Error {
                warn!(error = ?event.error, "master sent ERROR");
            }
            if tx.send(Msg::Master(Box::new(event))).is_err() {
                return Ok(());
            }
        }
    }
}

/// Sends the core's calls to the master, in order, with the current stream id.
async fn call_sender(
    master: String,
    mut rx: mpsc::UnboundedReceiver<Call>,
    stream_id: Arc<Mutex<Option<String>>>,
) {
    let client = reqwest::Client::new();
    let url = format!("{master}/api/v1/scheduler");
    while let Some(call) = rx.recv().await {
        let id = stream_id.lock().ok().and_then(|s| s.clone());
        let Some(id) = id else {
            debug!(kind = ?call.kind, "not connected; dropping call (reconciliation repairs it)");
            continue;
        };
        let sent = client
            .post(&url)
            .header("Mesos-Stream-Id", id)
            .json(&call)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                warn!(kind = ?call.kind, %status, %body, "master refused a call");
            }
            Err(e) => warn!(kind = ?call.kind, error = %e, "call to the master failed"),
        }
    }
}

/// Probes readiness checks of tasks that are not ready yet, at each check's interval; a
/// task is ready when every check answers one of its ready status codes.
async fn readiness_checker(tx: mpsc::UnboundedSender<Msg>) {
    let client = reqwest::Client::new();
    let mut last: BTreeMap<(String, String), Instant> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (rtx, rrx) = oneshot::channel();
        if tx.send(Msg::ReadinessTargets(rtx)).is_err() {
            return;
        }
        let Ok(targets) = rrx.await else { return };
        last.retain(|k, _| targets.iter().any(|t| t.0 == k.0 && t.3.name == k.1));
        // All checks of a task are probed together; the task is ready when all pass.
        let mut by_task: BTreeMap<String, Vec<ReadinessTarget>> = BTreeMap::new();
        for t in targets {
            by_task.entry(t.0.clone()).or_default().push(t);
        }
        for (task, checks) in by_task {
            let due = checks.iter().any(|c| {
                last.get(&(task.clone(), c.3.name.clone()))
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(c.3.interval_seconds))
            });
            if !due {
                continue;
            }
            for c in &checks {
                last.insert((task.clone(), c.3.name.clone()), Instant::now());
            }
            let client = client.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut ok = true;
                for (_, host, port, check) in &checks {
                    let scheme = if check.protocol == "HTTPS" {
                        "https"
                    } else {
                        "http"
                    };
                    let url = format!("{scheme}://{host}:{port}{}", check.path);
                    let timeout = Duration::from_secs(check.timeout_seconds.max(1));
                    let status = client
                        .get(&url)
                        .timeout(timeout)
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    ok &= status.is_ok_and(|s| check.http_status_codes_for_ready.contains(&s));
                }
                let _ = tx.send(Msg::Readiness(task, ok));
            });
        }
    }
}

/// Probes Marathon-level HTTP/HTTPS/TCP health checks at each check's interval.
async fn health_checker(tx: mpsc::UnboundedSender<Msg>) {
    let client = reqwest::Client::new();
    let mut last: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rtx, rrx) = oneshot::channel();
        if tx.send(Msg::HealthTargets(rtx)).is_err() {
            return;
        }
        let Ok(targets) = rrx.await else { return };
        last.retain(|k, _| targets.iter().any(|t| &t.0 == k));
        for (task, host, port, check) in targets {
            let due = last
                .get(&task)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(check.interval_seconds));
            if !due {
                continue;
            }
            last.insert(task.clone(), Instant::now());
            let client = client.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let timeout = Duration::from_secs(check.timeout_seconds.max(1));
                let ok = match check.protocol.as_str() {
                    "TCP" => tokio::time::timeout(
                        timeout,
                        tokio::net::TcpStream::connect((host.as_str(), port as u16)),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok()),
                    _ => {
                        let scheme = if check.protocol == "HTTPS" {
                            "https"
                        } else {
                            "http"
                        };
                        let p = check.path.clone().unwrap_or_else(|| "/".into());
                        let url = format!("{scheme}://{host}:{port}{p}");
                        match client.get(&url).timeout(timeout).send().await {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                (200..400).contains(&s)
                                    || (check.ignore_http1xx && (100..200).contains(&s))
                            }
                            Err(_) => false,
                        }
                    }
                };
                let _ = tx.send(Msg::Health(task, ok));
            });
        }
    }
}

// ----- HTTP -----

struct Req {
    method: Method,
    segs: Vec<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, key: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect()
    }
    /// Boolean query values are case-insensitive; anything but `true` is false.
    fn flag(&self, key: &str, default: bool) -> bool {
        self.q(key)
            .map_or(default, |v| v.eq_ignore_ascii_case("true"))
    }
    /// `scale`, `wipe` and `force` of the task-kill endpoints; scale and wipe exclude each other.
    fn kill_flags(&self) -> Result<(bool, bool, bool), Response> {
        let scale = self.flag("scale", false);
        let wipe = self.flag("wipe", false);
        if scale && wipe {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "You cannot use scale and wipe at the same time.",
            ));
        }
        Ok((scale, wipe, self.flag("force", false)))
    }

    fn json(&self) -> Result<Value, Response> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(json_response(
                StatusCode::BAD_REQUEST,
                &json!({"message": "Please specify data in JSON format", "details": "No content to map due to end-of-input"}),
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"message": "Invalid JSON", "details": e.to_string()}),
            )
        })
    }
}

async fn dispatch(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|x| !x.is_empty())
        .map(percent_decode)
        .collect();
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let req = Req {
        method,
        segs,
        query,
        headers,
        body,
    };
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let m = req.method.clone();
    let mut resp = match (m.as_str(), segs.as_slice()) {
        ("GET", ["ping"]) => ping(&req),
        ("GET", ["v2", "info"]) => info_json(&s).await,
        ("GET", ["v2", "leader"]) => json_response(StatusCode::OK, &json!({ "leader": s.leader })),
        ("DELETE", ["v2", "leader"]) => {
            json_response(StatusCode::OK, &json!({"message": "Leadership abdicated"}))
        }
        ("GET", ["metrics"]) => metrics(&s).await,
        ("GET", ["v2", "apps"]) => list_apps(&s, &req).await,
        ("POST", ["v2", "apps"]) => create_app(&s, &req).await,
        ("GET", ["v2", "tasks"]) => list_tasks(&s, &req).await,
        ("POST", ["v2", "tasks", "delete"]) => delete_tasks(&s, &req).await,
        ("GET", ["v2", "deployments"]) => {
            s.ask(|c, _| {
                let list: Vec<Value> = c.deployments().map(|d| c.deployment_json(d)).collect();
                json_response(StatusCode::OK, &Value::Array(list))
            })
            .await
        }
        ("DELETE", ["v2", "deployments", id]) => cancel_deployment(&s, &req, id).await,
        ("GET", ["v2", "queue"]) => {
            s.ask(|c, now| json_response(StatusCode::OK, &c.queue_json(now)))
                .await
        }
        ("DELETE", ["v2", "queue", rest @ .., "delay"]) if !rest.is_empty() => {
            let id = path::canonical(&rest.join("/"), "/");
            s.ask(move |c, now| match c.reset_delay(&id, now) {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => api_error(e),
            })
            .await
        }
        ("PUT" | "PATCH", ["v2", "apps"]) => update_apps(&s, &req).await,
        (_, ["v2", "groups", rest @ ..]) => groups(&s, &req, rest).await,
        ("GET", ["v2", "events"]) => events(&s, &req),
        (_, ["v2", "apps", rest @ ..]) if !rest.is_empty() => app_routes(&s, &req, rest).await,
        _ => error(StatusCode::NOT_FOUND, "URI not found"),
    };
    resp.headers_mut().insert(
        "X-Marathon-Leader",
        format!("http://{}", s.leader)
            .parse()
            .unwrap_or_else(|_| header::HeaderValue::from_static("")),
    );
    resp
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn ping(req: &Req) -> Response {
    let wants_json = req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/plain"));
    if wants_json {
        json_response(StatusCode::OK, &json!("pong"))
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            "pong",
        )
            .into_response()
    }
}

async fn info_json(s: &AppState) -> Response {
    let leader = s.leader.clone();
    let master = s.master.clone();
    s.ask(move |c, _| {
        let timers = (
            c.config().reconciliation_interval_ms,
            c.config().task_launch_timeout_ms,
        );
        info_body(c.framework_id(), leader, master, timers)
    })
    .await
}

/// `timers`: the reconciliation interval and the task launch timeout, in milliseconds.
fn info_body(fid: Option<&str>, leader: String, master: String, timers: (u64, u64)) -> Response {
    let port: u16 = leader
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    json_response(
        StatusCode::OK,
        &json!({
            "name": "marathon",
            "version": MARATHON_VERSION,
            "buildref": "mantle",
            "elected": true,
            "leader": leader,
            "frameworkId": fid,
            "marathon_config": {
                "access_control_allow_origin": null, "checkpoint": true, "decline_offer_duration": 120000,
                "default_network_name": null, "env_vars_prefix": null, "executor": "//cmd",
                "failover_timeout": 604800, "features": [], "framework_name": "marathon", "ha": false,
                "hostname": leader.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default(),
                "launch_token": 100, "launch_token_refresh_interval": 30000,
                "leader_proxy_connection_timeout_ms": 5000, "leader_proxy_read_timeout_ms": 10000,
                "local_port_max": 20000, "local_port_min": 10000, "master": master,
                "max_instances_per_offer": 5, "mesos_bridge_name": "mesos-bridge",
                "mesos_heartbeat_failure_threshold": 5, "mesos_heartbeat_interval": 15000,
                "mesos_leader_ui_url": format!("{master}/"), "mesos_role": "*", "mesos_user": null,
                "new_group_enforce_role": "off", "min_revive_offers_interval": 5000,
                "offer_matching_timeout": 3000, "on_elected_prepare_timeout": 180000,
                "reconciliation_initial_delay": 15000, "reconciliation_interval": timers.0,
                "scale_apps_initial_delay": 15000, "scale_apps_interval": 300000, "store_cache": true,
                "task_launch_confirm_timeout": 300000, "task_launch_timeout": timers.1,
                "task_lost_expunge_initial_delay": 300000, "task_lost_expunge_interval": 30000,
                "task_reservation_timeout": 20000, "webui_url": null, "maintenance_mode": false
            },
            "zookeeper_config": {
                "zk": null, "zk_compression": false, "zk_compression_threshold": 65536,
                "zk_connection_timeout": 10000, "zk_max_node_size": 1024000, "zk_max_versions": 50,
                "zk_session_timeout": 10000, "zk_timeout": 10000
            },
            "http_config": {"http_port": port, "https_port": 8443}
        }),
    )
}

async fn metrics(s: &AppState) -> Response {
    s.ask(|c, _| {
        let apps = c.apps().count();
        let tasks = c
            .instances()
            .filter(|i| i.state == mantle_model::TaskState::Running)
            .count();
        let deployments = c.deployments().count();
        json_response(
            StatusCode::OK,
            &json!({
                "version": "4.0.0",
                "counters": {},
                "gauges": {
                    "marathon.apps.active.gauge": {"value": apps},
                    "marathon.instances.running.gauge": {"value": tasks},
                    "marathon.deployments.active.gauge": {"value": deployments},
                },
                "histograms": {}, "meters": {}, "timers": {}
            }),
        )
    })
    .await
}

/// `label` selectors: `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`.
fn label_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).map(String::as_str) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==") {
                labels.get(k.trim()).map(String::as_str) == Some(v.trim())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                let set: Vec<&str> = v
                    .trim()
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .map(str::trim)
                    .collect();
                !labels
                    .get(k.trim())
                    .is_some_and(|x| set.contains(&x.as_str()))
            } else if let Some((k, v)) = term.split_once(" in ") {
                let set: Vec<&str> = v
                    .trim()
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .map(str::trim)
                    .collect();
                labels
                    .get(k.trim())
                    .is_some_and(|x| set.contains(&x.as_str()))
            } else {
                labels.contains_key(term)
            }
        })
}

async fn list_apps(s: &AppState, req: &Req) -> Response {
    let mut embed = req.all("embed");
    embed.extend(["counts".to_string(), "deployments".to_string()]);
    let id = req.q("id").map(str::to_lowercase);
    let cmd = req.q("cmd").map(str::to_lowercase);
    let label = req.q("label").map(str::to_string);
    s.ask(move |c, _| {
        let apps: Vec<Value> = c
            .apps()
            .filter(|a| id.as_ref().is_none_or(|f| a.id.to_lowercase().contains(f)))
            .filter(|a| {
                cmd.as_ref()
                    .is_none_or(|f| a.cmd.as_ref().is_some_and(|x| x.to_lowercase().contains(f)))
            })
            .filter(|a| label.as_ref().is_none_or(|l| label_matches(l, &a.labels)))
            .map(|a| c.app_json(a, &embed))
            .collect();
        json_response(StatusCode::OK, &json!({ "apps": apps }))
    })
    .await
}

async fn create_app(s: &AppState, req: &Req) -> Response {
    let body = match req.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    s.ask(move |c, now| match c.create_app(&body, now) {
        Ok((def, d)) => {
            let mut v = c.app_json(&def, &[]);
            if let Some(m) = v.as_object_mut() {
                m.insert("deployments".into(), json!([{ "id": d.id }]));
                m.insert("tasksStaged".into(), json!(0));
                m.insert("tasksRunning".into(), json!(0));
                m.insert("tasksHealthy".into(), json!(0));
                m.insert("tasksUnhealthy".into(), json!(0));
            }
            let mut r = json_response(StatusCode::CREATED, &v);
            if let Ok(l) = format!("/v2/apps{}", def.id).parse() {
                r.headers_mut().insert(header::LOCATION, l);
            }
            if let Ok(h) = d.id.parse() {
                r.headers_mut().insert("Marathon-Deployment-Id", h);
            }
            r
        }
        Err(e) => api_error(e),
    })
    .await
}

async fn app_routes(s: &AppState, req: &Req, rest: &[&str]) -> Response {
    let m = req.method.as_str();
    let n = rest.len();
    let id_of = |parts: &[&str]| path::canonical(&parts.join("/"), "/");
    // Suffixes first: app ids may not end in restart/tasks/versions.
    if n >= 2 && rest[n - 1] == "restart" && m == "POST" {
        let id = id_of(&rest[..n - 1]);
        let force = req.flag("force", false);
        return s
            .ask(move |c, now| match c.restart_app(&id, force, now) {
                Ok(d) => deployment_result(&d, StatusCode::OK),
                Err(e) => api_error(e),
            })
            .await;
    }
    if n >= 2 && rest[n - 1] == "tasks" {
        let id = id_of(&rest[..n - 1]);
        return match m {
            "GET" => {
                s.ask(move |c, _| {
                    if c.app(&id).is_none() {
                        return api_error(Core::no_app(&id));
                    }
                    let tasks: Vec<Value> = c.instances_of(&id).map(|i| c.task_json(i)).collect();
                    json_response(StatusCode::OK, &json!({ "tasks": tasks }))
                })
                .await
            }
            "DELETE" => {
                let (scale, wipe, force) = match req.kill_flags() {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let host = req.q("host").map(str::to_string);
                s.ask(move |c, now| {
                    if c.app(&id).is_none() {
                        return api_error(Core::no_app(&id));
                    }
                    let ids: Vec<String> = c
                        .instances_of(&id)
                        .filter(|i| host.as_deref().is_none_or(|h| h == "*" || h == i.host))
                        .map(|i| i.task_id.clone())
                        .collect();
                    kill_response(c, &ids, scale, wipe, force, now, false)
                })
                .await
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
    }
    if n >= 3 && rest[n - 2] == "tasks" && m == "DELETE" {
        let id = id_of(&rest[..n - 2]);
        let task = rest[n - 1].to_string();
        let (scale, wipe, force) = match req.kill_flags() {
            Ok(f) => f,
            Err(r) => return r,
        };
        return s
            .ask(move |c, now| {
                if c.app(&id).is_none() {
                    return api_error(Core::no_app(&id));
                }
                if c.instance(&task).is_none_or(|i| i.app_id != id) {
                    return api_error(ApiError::NotFound(format!("Task '{task}' does not exist")));
                }
                kill_response(
                    c,
                    std::slice::from_ref(&task),
                    scale,
                    wipe,
                    force,
                    now,
                    true,
                )
            })
            .await;
    }
    if n >= 2 && rest[n - 1] == "versions" && m == "GET" {
        let id = id_of(&rest[..n - 1]);
        return s
            .ask(move |c, _| match c.versions(&id) {
                Some(v) => json_response(StatusCode::OK, &json!({ "versions": v })),
                None => api_error(Core::no_app(&id)),
            })
            .await;
    }
    if n >= 3 && rest[n - 2] == "versions" && m == "GET" {
        let id = id_of(&rest[..n - 2]);
        let v = rest[n - 1].to_string();
        return s
            .ask(move |c, _| match c.version(&id, &v) {
                Some(a) => json_response(StatusCode::OK, &a.to_json()),
                None => api_error(ApiError::NotFound(format!(
                    "App '{id}' does not exist in version {v}"
                ))),
            })
            .await;
    }
    let id = id_of(rest);
    match m {
        "GET" => {
            let mut embed = req.all("embed");
            embed.extend(["counts", "tasks", "lastTaskFailure", "deployments"].map(String::from));
            s.ask(move |c, _| match c.app(&id) {
                Some(a) => json_response(StatusCode::OK, &json!({ "app": c.app_json(a, &embed) })),
                None => api_error(Core::no_app(&id)),
            })
            .await
        }
        "PUT" | "PATCH" => {
            let body = match req.json() {
                Ok(b) => b,
                Err(r) => return r,
            };
            let force = req.flag("force", false);
            let patch = m == "PATCH";
            let partial = patch || req.flag("partialUpdate", true);
            s.ask(move |c, now| {
                if patch && c.app(&id).is_none() {
                    return api_error(Core::no_app(&id));
                }
                match c.update_app(&id, &body, force, partial, now) {
                    Ok((d, created)) => {
                        let status = if created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        };
                        deployment_result(&d, status)
                    }
                    Err(e) => api_error(e),
                }
            })
            .await
        }
        "DELETE" => {
            let force = req.flag("force", true);
            s.ask(move |c, now| match c.delete_app(&id, force, now) {
                Ok(d) => deployment_result(&d, StatusCode::OK),
                Err(e) => api_error(e),
            })
            .await
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn kill_response(
    c: &mut Core,
    ids: &[String],
    scale: bool,
    wipe: bool,
    force: bool,
    now: Now,
    single: bool,
) -> Response {
    let before: Vec<Value> = ids
        .iter()
        .filter_map(|t| c.instance(t))
        .map(|i| c.task_json(i))
        .collect();
    match c.kill_tasks(ids, scale, wipe, force, now) {
        Ok(deployments) if scale => match deployments.first() {
            Some(d) => deployment_result(d, StatusCode::OK),
            None => json_response(
                StatusCode::OK,
                &json!({"version": null, "deploymentId": null}),
            ),
        },
        Ok(_) => {
            if single {
                json_response(StatusCode::OK, &json!({ "task": before.first() }))
            } else {
                json_response(StatusCode::OK, &json!({ "tasks": before }))
            }
        }
        Err(e) => api_error(e),
    }
}

async fn list_tasks(s: &AppState, req: &Req) -> Response {
    let mut statuses = req.all("status");
    statuses.extend(req.all("status[]"));
    s.ask(move |c, _| {
        let tasks: Vec<Value> = c
            .instances()
            .filter(|i: &&Instance| {
                statuses.is_empty()
                    || statuses.iter().any(|st| match st.as_str() {
                        "running" => i.state == mantle_model::TaskState::Running,
                        "staging" => matches!(
                            i.state,
                            mantle_model::TaskState::Staging | mantle_model::TaskState::Starting
                        ),
                        _ => false,
                    })
            })
            .map(|i| c.task_json_with(i, true))
            .collect();
        json_response(StatusCode::OK, &json!({ "tasks": tasks }))
    })
    .await
}

async fn delete_tasks(s: &AppState, req: &Req) -> Response {
    let body = match req.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(ids) = body.get("ids").and_then(Value::as_array) else {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"message": "Object is not valid", "details": [{"path": "/ids", "errors": ["error.path.missing"]}]}),
        );
    };
    let mut list = Vec::new();
    for v in ids {
        match v.as_str() {
            Some(t) if path::app_of_task(t).is_some() => list.push(t.to_string()),
            Some(t) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid task id '{t}'. [taskId {t} no valid identifier]"),
                )
            }
            None => return error(StatusCode::BAD_REQUEST, "Task ids must be strings"),
        }
    }
    let (scale, wipe, force) = match req.kill_flags() {
        Ok(f) => f,
        Err(r) => return r,
    };
    s.ask(move |c, now| kill_response(c, &list, scale, wipe, force, now, false))
        .await
}

async fn cancel_deployment(s: &AppState, req: &Req, id: &str) -> Response {
    let force = req.flag("force", false);
    let id = id.to_string();
    s.ask(move |c, now| match c.cancel_deployment(&id, force, now) {
        Ok(None) => StatusCode::ACCEPTED.into_response(),
        Ok(Some(d)) => deployment_result(&d, StatusCode::OK),
        Err(e) => api_error(e),
    })
    .await
}

/// `PUT /v2/apps` with an array: create or update many apps in one deployment.
async fn update_apps(s: &AppState, req: &Req) -> Response {
    let body = match req.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let force = req.flag("force", false);
    s.ask(move |c, now| match c.update_apps(&body, force, now) {
        Ok(d) => deployment_result(&d, StatusCode::OK),
        Err(e) => api_error(e),
    })
    .await
}

/// `/v2/groups[/{id}]`: groups are the tree of app paths. GET renders it (and
/// `/versions`); POST creates a group, PUT changes, scales (`scaleBy`) or rolls it back
/// (`version`, or `PUT .../versions/{v}`), DELETE removes every app under it.
async fn groups(s: &AppState, req: &Req, segs: &[&str]) -> Response {
    let (id_segs, version) = match segs {
        [rest @ .., "versions", v] if req.method == Method::PUT => (rest, Some(v.to_string())),
        _ => (segs, None),
    };
    let (id_segs, list_versions) = match id_segs {
        [rest @ .., "versions"] if req.method == Method::GET => (rest, true),
        _ => (id_segs, false),
    };
    let id = path::canonical(&id_segs.join("/"), "/");
    let force = req.flag("force", false);
    match req.method.as_str() {
        "GET" => {
            let embed = req.all("embed");
            s.ask(move |c, _| {
                let missing =
                    || api_error(ApiError::NotFound(format!("Group '{id}' does not exist")));
                if list_versions {
                    if id != "/" && c.apps_under(&id).next().is_none() {
                        return missing();
                    }
                    let mut versions: Vec<String> = c
                        .apps_under(&id)
                        .filter_map(|a| c.versions(&a.id))
                        .flatten()
                        .collect();
                    versions.sort();
                    versions.dedup();
                    versions.reverse();
                    return json_response(StatusCode::OK, &json!(versions));
                }
                match c.group_json(&id, &embed) {
                    Some(g) => json_response(StatusCode::OK, &g),
                    None => missing(),
                }
            })
            .await
        }
        "POST" => {
            let mut body = match req.json() {
                Ok(b) => b,
                Err(r) => return r,
            };
            // POST /v2/groups/{id}: the body's id is relative to the path.
            if let Some(m) = body.as_object_mut() {
                let given = m.get("id").and_then(Value::as_str).unwrap_or("");
                if id != "/" || given.is_empty() {
                    let full = if given.is_empty() {
                        id.clone()
                    } else {
                        path::canonical(given, &id)
                    };
                    m.insert("id".into(), json!(full));
                }
            }
            s.ask(move |c, now| match c.create_group(&body, now) {
                Ok(d) => {
                    let group = body.get("id").and_then(Value::as_str).unwrap_or("/");
                    let mut r = deployment_result(&d, StatusCode::CREATED);
                    if let Ok(l) = format!("/v2/groups{group}").parse() {
                        r.headers_mut().insert(header::LOCATION, l);
                    }
                    r
                }
                Err(e) => api_error(e),
            })
            .await
        }
        "PUT" => {
            let body = match version {
                Some(v) => json!({ "version": v }),
                None => match req.json() {
                    Ok(b) => b,
                    Err(r) => return r,
                },
            };
            s.ask(move |c, now| match c.update_group(&id, &body, force, now) {
                Ok((d, created)) => deployment_result(
                    &d,
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                ),
                Err(e) => api_error(e),
            })
            .await
        }
        "DELETE" => {
            s.ask(move |c, now| match c.delete_group(&id, force, now) {
                Ok(d) => deployment_result(&d, StatusCode::OK),
                Err(e) => api_error(e),
            })
            .await
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    }
}

/// `/v2/events`: Server-Sent Events, `event:` line then one-line `data:`, CRLF framing.
fn events(s: &AppState, req: &Req) -> Response {
    let accept = req
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    if !accept {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "The event stream needs the header 'Accept: text/event-stream'",
        );
    }
    let types = req.all("event_type");
    let mut rx = s.events.subscribe();
    let now = s.clock.now();
    let attached = json!({"remoteAddress": "127.0.0.1", "eventType": "event_stream_attached",
                          "timestamp": mantle_marathon::time::iso_millis((now.wall_secs * 1000.0) as i64)});
    let (tx, out) = mpsc::channel::<Bytes>(64);
    let wanted = move |v: &Value| {
        types.is_empty()
            || v.get("eventType")
                .and_then(Value::as_str)
                .is_some_and(|t| types.iter().any(|x| x == t))
    };
    tokio::spawn(async move {
        if wanted(&attached) && tx.send(sse(&attached)).await.is_err() {
            return;
        }
        let mut beat = tokio::time::interval(Duration::from_secs(10));
        beat.tick().await;
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(v) => {
                        if wanted(&v) && tx.send(sse(&v)).await.is_err() {
                            return;
                        }
                    }
                    // A consumer too slow to keep up is disconnected, as Marathon does.
                    Err(_) => return,
                },
                _ = beat.tick() => {
                    if tx.send(Bytes::from_static(b"\r\n")).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = tokio_stream_from(out);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream;charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "stream"))
}

fn sse(v: &Value) -> Bytes {
    let kind = v
        .get("eventType")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    Bytes::from(format!("event: {kind}\r\ndata: {v}\r\n\r\n"))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}
