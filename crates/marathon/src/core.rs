//! The service scheduler's core: a deterministic state machine over API commands, master
//! events, health results and the current time. It never does I/O; everything it wants done
//! (calls to the master, writes to the store, events for `/v2/events`) is queued as
//! [`Effect`]s that the shell drains with [`Core::drain`] and carries out in order, store
//! writes first, so intent is durable before it is acted on.

use crate::app::{self, AppDefinition, Network, Violation};
use crate::deploy::{self, Action, Deployment, Part};
use crate::path;
use crate::placement::{self, Candidate, Rejection, Strategy};
use crate::time::iso_millis;
use mantle_api::convert::{attributes_from_wire, resources_from_wire, resources_to_wire};
use mantle_api::mesos::{
    Capability, CommandInfo, DurationInfo, Environment, Filters, FrameworkInfo, KillPolicy, Offer,
    TaskInfo, TaskStatus, Variable,
};
use mantle_api::scheduler::{
    Accept, Acknowledge, Call, CallType, Decline, Event, EventType, Kill, Launch, Operation,
    Reconcile, ReconcileTask, Roles, Subscribe,
};
use mantle_model::{AgentId, FrameworkId, Now, Resources, TaskId, TaskState};
use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// How long declined offers stay away when nothing needs launching (Marathon's
/// `--decline_offer_duration` default).
pub const DECLINE_IDLE: f64 = 120.0;
/// How long declined offers stay away while launches wait (short, so backoffs are met).
pub const DECLINE_BUSY: f64 = 1.0;
/// How long a kill may take before it is sent again (Marathon's `--kill_retry_timeout`).
pub const KILL_RETRY_MS: u64 = 10_000;
/// While instances wait and no offer comes, REVIVE is sent again this often (Marathon's
/// `--min_revive_offers_interval`): a REVIVE lost with a failed POST would otherwise leave
/// the framework suppressed, and its deployments stuck, for ever.
pub const REVIVE_REPEAT_MS: u64 = 5_000;
/// Marathon's `failover_timeout` default: one week.
pub const FAILOVER_TIMEOUT: f64 = 604_800.0;

/// One task of an app, as the scheduler records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub task_id: String,
    pub app_id: String,
    /// The app version the task was launched from.
    pub version: String,
    /// `versionInfo.lastConfigChangeAt` of that version: tasks of other configs are replaced.
    pub config_version: String,
    pub agent_id: String,
    pub host: String,
    pub attributes: BTreeMap<String, String>,
    pub ports: Vec<u32>,
    pub state: TaskState,
    pub staged_at: String,
    pub started_at: Option<String>,
    /// `None` until a health check has an opinion (or when the app has none).
    pub healthy: Option<bool>,
    /// A kill was sent on purpose (scale down, replacement, API): no backoff when it ends.
    pub kill_requested: bool,
    #[serde(default)]
    pub health_failures: u32,
    #[serde(default)]
    pub last_health_failure: Option<String>,
    #[serde(default)]
    pub last_health_success: Option<String>,
    /// The readiness checks' verdict (`None` until one answered, or when the app has none).
    #[serde(default)]
    pub ready: Option<bool>,
    /// Monotonic millis when it became RUNNING (for health grace periods); not persisted.
    #[serde(skip)]
    pub running_since_ms: Option<u64>,
    /// Wall-clock millis since which the task is TASK_UNREACHABLE (Mesos's `unreachable_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since_ms: Option<i64>,
    /// Unreachable for longer than the app's `inactiveAfterSeconds`: no longer counted, so a
    /// replacement is launched; it counts again if the task comes back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inactive: bool,
    /// The task's own addresses from its statuses' `container_status.network_infos` (a
    /// container on a network of its own), as Marathon's `ipAddresses`; empty: the host's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<Value>,
}

impl Instance {
    /// Where the scheduler probes the task's port `idx` (Marathon-level health and readiness
    /// checks): on a `container` network whose address the task reported, that address at
    /// the container port, as Marathon does; else its host at the host port.
    fn probe_at(
        &self,
        app: &AppDefinition,
        specs: &[crate::app::PortSpec],
        idx: usize,
    ) -> Option<(String, u32)> {
        let host_port = *self.ports.get(idx)?;
        if matches!(app.network(), Network::Container(_)) {
            let ips = || self.ip_addresses.iter();
            let ip = ips()
                .find(|a| a.get("protocol").and_then(Value::as_str) == Some("IPv4"))
                .or_else(|| ips().next())
                .and_then(|a| a.get("ipAddress").and_then(Value::as_str));
            if let Some(ip) = ip {
                let port = specs
                    .get(idx)
                    .map_or(host_port, |s| s.port_inside(host_port));
                return Some((ip.to_string(), port));
            }
        }
        Some((self.host.clone(), host_port))
    }

    /// Marathon's `ipAddresses`: the task's own, else its host's.
    fn ip_addresses(&self) -> Value {
        if self.ip_addresses.is_empty() {
            json!([{"ipAddress": self.host, "protocol": "IPv4"}])
        } else {
            Value::Array(self.ip_addresses.clone())
        }
    }

    fn live(&self) -> bool {
        !self.state.is_terminal() && !self.kill_requested && !self.inactive
    }
    fn running(&self) -> bool {
        self.state == TaskState::Running
    }
}

/// A write the shell must make durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    FrameworkId(String),
    App(AppDefinition),
    DeleteApp(String),
    Version(AppDefinition),
    DeleteVersions(String),
    Instance(Instance),
    DeleteInstance(String),
    Deployment(Deployment),
    DeleteDeployment(String),
}

/// Something for the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Make durable (all writes of one step in one transaction, before the other effects).
    Store(Write),
    /// Send a call to the master.
    Call(Call),
    /// Publish on `/v2/events`.
    Event(Value),
}

/// Why an API command was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    NotFound(String),
    Conflict {
        message: String,
        deployments: Vec<String>,
    },
    Invalid(Vec<Violation>),
    BadRequest(String),
}

/// What the core starts from: everything the store holds.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub framework_id: Option<String>,
    pub apps: Vec<AppDefinition>,
    pub versions: Vec<AppDefinition>,
    pub instances: Vec<Instance>,
    pub deployments: Vec<Deployment>,
}

/// Static configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub framework_name: String,
    pub role: String,
    pub user: String,
    pub hostname: String,
    pub webui_url: Option<String>,
    pub strategy: Strategy,
    pub seed: u64,
    /// Milliseconds between periodic reconciliations in `tick` (Marathon's
    /// `--reconciliation_interval`); 0 leaves them to the caller.
    pub reconciliation_interval_ms: u64,
    /// Milliseconds a task may stay STAGING before it is killed and replaced (Marathon's
    /// `--task_launch_timeout`); 0 never.
    pub task_launch_timeout_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct Backoff {
    failures: u32,
    until_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct QueueStats {
    processed: u64,
    rejections: BTreeMap<Rejection, u64>,
    last_processed: Option<String>,
    /// The latest offers the app could not use, newest last (`lastUnusedOffers`).
    last_unused: std::collections::VecDeque<Value>,
}

/// How many unused offers `/v2/queue` remembers per app.
const LAST_UNUSED_OFFERS: usize = 10;

/// An offer as `/v2/queue`'s `lastUnusedOffers` shows it (Marathon's `Offer` shape).
fn unused_offer_json(offer: &Offer, free: &Resources, reason: Rejection, stamp: &str) -> Value {
    let mut resources: Vec<Value> = free
        .scalars()
        .map(|(name, v)| {
            json!({"name": name, "scalar": v as f64 / 1000.0, "ranges": [], "set": [], "role": "*"})
        })
        .collect();
    for (name, r) in free.all_ranges() {
        let ranges: Vec<Value> = r
            .pieces()
            .iter()
            .map(|(b, e)| json!({"begin": b, "end": e}))
            .collect();
        resources.push(json!({"name": name, "ranges": ranges, "set": [], "role": "*"}));
    }
    json!({
        "offer": {
            "id": offer.id.as_str(),
            "agentId": offer.agent_id.as_str(),
            "hostname": offer.hostname,
            "resources": resources,
            "attributes": [],
        },
        "timestamp": stamp,
        "reason": [reason.as_str()],
    })
}

/// The scheduler's whole state.
#[derive(Debug)]
pub struct Core {
    config: Config,
    framework_id: Option<String>,
    connected: bool,
    suppressed: bool,
    apps: BTreeMap<String, AppDefinition>,
    versions: BTreeMap<String, BTreeMap<String, AppDefinition>>,
    instances: BTreeMap<String, Instance>,
    deployments: BTreeMap<String, Deployment>,
    backoff: BTreeMap<String, Backoff>,
    last_failure: BTreeMap<String, Value>,
    queue_stats: BTreeMap<String, QueueStats>,
    last_version_ms: i64,
    /// Counts finished deployment parts, so convergence knows when a step was released.
    progress: u64,
    /// When each pending kill was last sent (monotonic millis; not persisted, so a restarted
    /// scheduler sends pending kills again at its first tick).
    kill_sent: BTreeMap<String, u64>,
    /// The monotonic millis of the latest input that carried a time.
    last_tick_ms: u64,
    /// Monotonic millis of the last REVIVE sent or offer received (not persisted).
    last_offer_or_revive_ms: u64,
    /// When `reconcile_all` last ran, and when the latest SUBSCRIBED arrived (monotonic).
    last_reconcile_ms: u64,
    subscribed_ms: u64,
    rng: ChaCha8Rng,
    out: Vec<Effect>,
}

fn wall_ms(now: Now) -> i64 {
    (now.wall_secs * 1000.0) as i64
}

fn mono_ms(now: Now) -> u64 {
    now.mono.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Core {
    pub fn new(config: Config, snapshot: Snapshot) -> Core {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut core = Core {
            config,
            framework_id: snapshot.framework_id,
            connected: false,
            suppressed: false,
            apps: BTreeMap::new(),
            versions: BTreeMap::new(),
            instances: BTreeMap::new(),
            deployments: BTreeMap::new(),
            backoff: BTreeMap::new(),
            last_failure: BTreeMap::new(),
            queue_stats: BTreeMap::new(),
            last_version_ms: 0,
            progress: 0,
            kill_sent: BTreeMap::new(),
            last_tick_ms: 0,
            last_offer_or_revive_ms: 0,
            last_reconcile_ms: 0,
            subscribed_ms: 0,
            rng,
            out: Vec::new(),
        };
        for a in snapshot.apps {
            core.apps.insert(a.id.clone(), a);
        }
        for v in snapshot.versions {
            core.versions
                .entry(v.id.clone())
                .or_default()
                .insert(v.version.clone(), v);
        }
        for i in snapshot.instances {
            core.instances.insert(i.task_id.clone(), i);
        }
        for d in snapshot.deployments {
            core.deployments.insert(d.id.clone(), d);
        }
        // Versions stay strictly increasing across restarts, even if the clock went back.
        core.last_version_ms = core
            .versions
            .values()
            .flat_map(|v| v.keys())
            .filter_map(|v| crate::time::parse_iso(v))
            .max()
            .unwrap_or(0);
        core
    }

    /// Effects queued since the last drain, in order.
    pub fn drain(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// A fresh version timestamp, strictly after every earlier one.
    fn next_version(&mut self, now: Now) -> String {
        let ms = wall_ms(now).max(self.last_version_ms + 1);
        self.last_version_ms = ms;
        iso_millis(ms)
    }

    fn event(&mut self, kind: &str, now: Now, mut body: Value) {
        if let Some(m) = body.as_object_mut() {
            m.insert("eventType".into(), json!(kind));
            m.insert("timestamp".into(), json!(iso_millis(wall_ms(now))));
        }
        self.out.push(Effect::Event(body));
    }

    fn store(&mut self, w: Write) {
        self.out.push(Effect::Store(w));
    }

    fn call(&mut self, mut call: Call) {
        call.framework_id = self.framework_id.clone().map(FrameworkId::new);
        self.out.push(Effect::Call(call));
    }

    // ----- reads -----

    pub fn framework_id(&self) -> Option<&str> {
        self.framework_id.as_deref()
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The SUBSCRIBE call for the master (with the stored framework id, to fail over).
    pub fn subscribe_call(&self) -> Call {
        let info = FrameworkInfo {
            user: self.config.user.clone(),
            name: self.config.framework_name.clone(),
            id: self.framework_id.clone().map(FrameworkId::new),
            failover_timeout: Some(FAILOVER_TIMEOUT),
            checkpoint: Some(true),
            role: None,
            roles: vec![self.config.role.clone()],
            hostname: Some(self.config.hostname.clone()),
            principal: None,
            webui_url: self.config.webui_url.clone(),
            capabilities: ["MULTI_ROLE", "PARTITION_AWARE", "TASK_KILLING_STATE"]
                .iter()
                .map(|k| Capability {
                    kind: (*k).to_string(),
                })
                .collect(),
            extra: Default::default(),
        };
        Call {
            subscribe: Some(Subscribe {
                framework_info: info,
                suppressed_roles: Vec::new(),
            }),
            ..Call::new(
                CallType::Subscribe,
                self.framework_id.clone().map(FrameworkId::new),
            )
        }
    }

    pub fn apps(&self) -> impl Iterator<Item = &AppDefinition> + '_ {
        self.apps.values()
    }

    pub fn app(&self, id: &str) -> Option<&AppDefinition> {
        self.apps.get(id)
    }

    pub fn instances(&self) -> impl Iterator<Item = &Instance> + '_ {
        self.instances.values()
    }

    pub fn instances_of<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.values().filter(move |i| i.app_id == app_id)
    }

    pub fn instance(&self, task_id: &str) -> Option<&Instance> {
        self.instances.get(task_id)
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> + '_ {
        self.deployments.values()
    }

    pub fn deployments_of<'a>(
        &'a self,
        app_id: &'a str,
    ) -> impl Iterator<Item = &'a Deployment> + 'a {
        self.deployments.values().filter(move |d| d.affects(app_id))
    }

    /// Versions of an app, newest first.
    pub fn versions(&self, app_id: &str) -> Option<Vec<String>> {
        self.apps.get(app_id)?;
        Some(
            self.versions
                .get(app_id)
                .map(|v| v.keys().rev().cloned().collect())
                .unwrap_or_default(),
        )
    }

    pub fn version(&self, app_id: &str, version: &str) -> Option<&AppDefinition> {
        self.versions.get(app_id)?.get(version)
    }

    pub fn last_task_failure(&self, app_id: &str) -> Option<&Value> {
        self.last_failure.get(app_id)
    }

    /// How many more instances the app needs launched right now.
    pub fn waiting(&self, app_id: &str) -> usize {
        self.apps.get(app_id).map_or(0, |a| self.needed(a))
    }

    /// Launch delay left for an app, in seconds, and whether it is overdue.
    pub fn delay(&self, app_id: &str, now: Now) -> (f64, bool) {
        let until = self.backoff.get(app_id).map_or(0, |b| b.until_ms);
        let left = until.saturating_sub(mono_ms(now));
        (left as f64 / 1000.0, left == 0)
    }

    /// `/v2/queue` rows: apps with instances waiting to launch.
    pub fn queue_json(&self, now: Now) -> Value {
        let mut rows = Vec::new();
        for app in self.apps.values() {
            let count = self.needed(app);
            if count == 0 {
                continue;
            }
            let (left, overdue) = self.delay(&app.id, now);
            let stats = self.queue_stats.get(&app.id).cloned().unwrap_or_default();
            let summary: Vec<Value> = Rejection::ALL
                .iter()
                .map(|r| {
                    json!({
                        "reason": r.as_str(),
                        "declined": stats.rejections.get(r).copied().unwrap_or(0),
                        "processed": stats.processed,
                    })
                })
                .collect();
            let declined: u64 = stats.rejections.values().sum();
            rows.push(json!({
                "count": count,
                "delay": {"timeLeftSeconds": left.ceil() as u64, "overdue": overdue},
                "since": stats.last_processed.clone().unwrap_or_else(|| app.version.clone()),
                "processedOffersSummary": {
                    "processedOffersCount": stats.processed,
                    "unusedOffersCount": declined,
                    "lastUnusedOfferAt": stats.last_processed,
                    "lastUsedOfferAt": null,
                    "rejectSummaryLastOffers": summary,
                    "rejectSummaryLaunchAttempt": summary,
                },
                "lastUnusedOffers": stats.last_unused.iter().cloned().collect::<Vec<_>>(),
                "app": self.app_json(app, &[]),
            }));
        }
        json!({ "queue": rows })
    }

    // ----- rendering -----

    /// An app as GET /v2/apps renders it, with `embed` extras (`apps.tasks`,
    /// `apps.deployments`, `apps.lastTaskFailure`, `apps.counts`, ...).
    pub fn app_json(&self, app: &AppDefinition, embed: &[String]) -> Value {
        let mut v = app.to_json();
        let has = |k: &str| {
            embed
                .iter()
                .any(|e| e == k || e == &format!("apps.{k}") || e == &format!("app.{k}"))
        };
        let mut staged = 0;
        let mut running = 0;
        let mut healthy = 0;
        let mut unhealthy = 0;
        for i in self.instances_of(&app.id) {
            match i.state {
                TaskState::Staging | TaskState::Starting => staged += 1,
                TaskState::Running => running += 1,
                _ => {}
            }
            match i.healthy {
                Some(true) => healthy += 1,
                Some(false) => unhealthy += 1,
                None => {}
            }
        }
        if let Some(m) = v.as_object_mut() {
            m.insert("tasksStaged".into(), json!(staged));
            m.insert("tasksRunning".into(), json!(running));
            m.insert("tasksHealthy".into(), json!(healthy));
            m.insert("tasksUnhealthy".into(), json!(unhealthy));
            let deps: Vec<Value> = self
                .deployments_of(&app.id)
                .map(|d| json!({"id": d.id}))
                .collect();
            m.insert("deployments".into(), Value::Array(deps));
            if has("tasks") {
                let tasks: Vec<Value> = self
                    .instances_of(&app.id)
                    .map(|i| self.task_json(i))
                    .collect();
                m.insert("tasks".into(), Value::Array(tasks));
            }
            if has("lastTaskFailure") || has("failures") {
                if let Some(f) = self.last_failure.get(&app.id) {
                    m.insert("lastTaskFailure".into(), f.clone());
                }
            }
        }
        v
    }

    /// A task as `/v2/tasks` and `/v2/apps/{id}/tasks` render it.
    pub fn task_json(&self, i: &Instance) -> Value {
        self.task_json_with(i, false)
    }

    /// `with_service_ports`: only `/v2/tasks` fills `servicePorts` (Marathon 1.10).
    pub fn task_json_with(&self, i: &Instance, with_service_ports: bool) -> Value {
        let app = self.apps.get(&i.app_id);
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!(i.task_id));
        m.insert("appId".into(), json!(i.app_id));
        m.insert("host".into(), json!(i.host));
        m.insert("ports".into(), json!(i.ports));
        let service_ports: Vec<u32> = if with_service_ports {
            app.map(|a| match a.network() {
                Network::Host => a.port_definitions.iter().map(|p| p.port).collect(),
                _ => a.port_mappings().iter().map(|m| m.service_port).collect(),
            })
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        m.insert("servicePorts".into(), json!(service_ports));
        m.insert("slaveId".into(), json!(i.agent_id));
        m.insert("stagedAt".into(), json!(i.staged_at));
        if let Some(s) = &i.started_at {
            m.insert("startedAt".into(), json!(s));
        }
        m.insert("state".into(), json!(i.state.as_str()));
        m.insert("version".into(), json!(i.version));
        m.insert("ipAddresses".into(), i.ip_addresses());
        m.insert("localVolumes".into(), json!([]));
        let mut results = Vec::new();
        if app.is_some_and(|a| !a.health_checks.is_empty()) && i.healthy.is_some() {
            let mut r = serde_json::Map::new();
            r.insert("alive".into(), json!(i.healthy == Some(true)));
            r.insert("consecutiveFailures".into(), json!(i.health_failures));
            if let Some(t) = &i.last_health_success {
                r.insert("firstSuccess".into(), json!(t));
                r.insert("lastSuccess".into(), json!(t));
            }
            if let Some(t) = &i.last_health_failure {
                r.insert("lastFailure".into(), json!(t));
            }
            r.insert("instanceId".into(), json!(i.task_id));
            results.push(Value::Object(r));
        }
        m.insert("healthCheckResults".into(), Value::Array(results));
        m.insert("role".into(), json!("*"));
        Value::Object(m)
    }

    /// A deployment as `/v2/deployments` shows it, with the readiness results of the
    /// current step's new tasks.
    pub fn deployment_json(&self, d: &Deployment) -> Value {
        let mut v = d.to_json();
        if let Some(actions) = v.get_mut("currentActions").and_then(Value::as_array_mut) {
            for a in actions {
                let Some(app) = a
                    .get("app")
                    .and_then(Value::as_str)
                    .and_then(|id| self.apps.get(id))
                else {
                    continue;
                };
                let results: Vec<Value> = self
                    .instances_of(&app.id)
                    .filter(|i| {
                        i.config_version == app.version_info.last_config_change_at
                            && i.running()
                            && !i.kill_requested
                    })
                    .flat_map(|i| {
                        app.readiness_checks.iter().map(move |c| {
                            json!({"name": c.name, "taskId": i.task_id,
                                   "ready": i.ready == Some(true), "lastResponse": null})
                        })
                    })
                    .collect();
                a["readinessCheckResults"] = Value::Array(results);
            }
        }
        v
    }

    /// The `plan` of deployment events: Marathon 1.8+'s `{id, steps, version}` plus the
    /// 1.5-1.7 `original`/`target` group snapshots, which marathon-python needs to parse
    /// `deployment_info` and `deployment_step_success`.
    fn plan_json(&self, d: &Deployment) -> Value {
        let group = |apps: Vec<Value>| json!({"id": "/", "apps": apps, "groups": [], "pods": [], "dependencies": [], "version": d.version});
        let full = d.to_json();
        json!({
            "id": d.id,
            "steps": full["steps"],
            "version": d.version,
            "original": group(d.parts.iter().filter_map(|p| p.original.as_ref().map(AppDefinition::to_json)).collect()),
            "target": group(d.parts.iter().filter_map(|p| p.target.as_ref().map(AppDefinition::to_json)).collect()),
        })
    }

    /// Whether an earlier step of a deployment holds `app_id` back.
    fn held(&self, app_id: &str) -> bool {
        self.deployments_of(app_id).any(|d| d.holds(app_id))
    }

    /// Whether a deployment is stopping `app_id`.
    fn stopping(&self, app_id: &str) -> bool {
        self.deployments_of(app_id).any(|d| {
            d.parts
                .iter()
                .any(|p| p.app_id == app_id && p.action == Action::Stop)
        })
    }

    // ----- API commands -----

    fn locked(&self, app_id: &str) -> Vec<String> {
        self.deployments_of(app_id).map(|d| d.id.clone()).collect()
    }

    fn conflict(ids: Vec<String>) -> ApiError {
        let first = ids.first().cloned().unwrap_or_default();
        ApiError::Conflict {
            message: format!(
                "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{first}'."
            ),
            deployments: ids,
        }
    }

    /// Marathon's 404 for an unknown app.
    pub fn no_app(id: &str) -> ApiError {
        ApiError::NotFound(format!("App '{id}' does not exist"))
    }

    /// 409 when a deployment holds the app and the change is not forced.
    fn check_unlocked(&self, app_id: &str, force: bool) -> Result<(), ApiError> {
        let locked = self.locked(app_id);
        if locked.is_empty() || force {
            Ok(())
        } else {
            Err(Self::conflict(locked))
        }
    }

    /// Cancels running deployments of `app_id` without rollback (for `force`).
    fn drop_deployments(&mut self, app_id: &str, now: Now) {
        let ids = self.locked(app_id);
        for id in ids {
            if let Some(d) = self.deployments.remove(&id) {
                self.store(Write::DeleteDeployment(id));
                self.event(
                    "deployment_failed",
                    now,
                    json!({"id": d.id, "plan": self.plan_json(&d)}),
                );
            }
        }
    }

    /// Assigns service ports (10000+) to port definitions that asked for any (`port: 0`), and
    /// to port mappings without one (`servicePort` 0 or missing).
    fn assign_service_ports(&self, def: &mut AppDefinition) {
        let used: BTreeSet<u32> = self
            .apps
            .values()
            .filter(|a| a.id != def.id)
            .flat_map(|a| {
                a.port_definitions
                    .iter()
                    .map(|p| p.port)
                    .chain(a.port_mappings().into_iter().map(|m| m.service_port))
            })
            .collect();
        let mut next = 10_000u32;
        let mut take = || {
            while used.contains(&next) {
                next += 1;
            }
            next += 1;
            next - 1
        };
        if !def.require_ports {
            for pd in def.port_definitions.iter_mut().filter(|p| p.port == 0) {
                pd.port = take();
            }
        }
        if def.network() != Network::Host {
            let mappings = def.container.as_mut().map(|c| c.port_mappings.iter_mut());
            for m in mappings.into_iter().flatten() {
                let given = m.get("servicePort").and_then(Value::as_u64).unwrap_or(0);
                if let (0, Some(obj)) = (given, m.as_object_mut()) {
                    obj.insert("servicePort".into(), json!(take()));
                }
            }
        }
    }

    /// POST /v2/apps.
    pub fn create_app(
        &mut self,
        body: &Value,
        now: Now,
    ) -> Result<(AppDefinition, Deployment), ApiError> {
        let version = self.next_version(now);
        let mut def = app::parse(body, "/", &version).map_err(ApiError::Invalid)?;
        if self.apps.contains_key(&def.id) {
            return Err(ApiError::Conflict {
                message: format!("An app with id [{}] already exists.", def.id),
                deployments: Vec::new(),
            });
        }
        self.assign_service_ports(&mut def);
        let d = self.start_deployment(Action::Start, None, Some(def.clone()), &version, now);
        self.set_app(def.clone());
        self.event(
            "api_post_event",
            now,
            json!({"clientIp": "127.0.0.1", "uri": format!("/v2/apps{}", def.id), "appDefinition": def.to_json()}),
        );
        self.converge(now);
        Ok((def, d))
    }

    /// Makes `def` the app's current definition and records it as a version.
    fn set_app(&mut self, def: AppDefinition) {
        self.store(Write::App(def.clone()));
        self.store(Write::Version(def.clone()));
        self.versions
            .entry(def.id.clone())
            .or_default()
            .insert(def.version.clone(), def.clone());
        self.apps.insert(def.id.clone(), def);
    }

    fn start_deployment(
        &mut self,
        action: Action,
        original: Option<AppDefinition>,
        target: Option<AppDefinition>,
        version: &str,
        now: Now,
    ) -> Deployment {
        let app_id = target
            .as_ref()
            .or(original.as_ref())
            .map(|a| a.id.clone())
            .unwrap_or_default();
        let part = Part {
            app_id,
            action,
            original,
            target,
            step: 0,
            done: false,
        };
        self.start_plan(vec![part], version, now)
    }

    /// Records a deployment of already ordered parts and announces it.
    fn start_plan(&mut self, parts: Vec<Part>, version: &str, now: Now) -> Deployment {
        let d = Deployment {
            id: self.uuid(),
            version: version.to_string(),
            parts,
        };
        self.store(Write::Deployment(d.clone()));
        self.deployments.insert(d.id.clone(), d.clone());
        let plan = self.plan_json(&d);
        self.event(
            "deployment_info",
            now,
            json!({"plan": plan, "currentStep": {"actions": d.actions_json()}}),
        );
        d
    }

    /// PUT /v2/apps/{id} (`partial`: merge into the current definition, as Marathon's PUT
    /// does by default; PATCH too). Creates the app when it does not exist.
    /// Returns the deployment and whether the app was created.
    pub fn update_app(
        &mut self,
        id: &str,
        body: &Value,
        force: bool,
        partial: bool,
        now: Now,
    ) -> Result<(Deployment, bool), ApiError> {
        let Some(obj) = body.as_object() else {
            return Err(ApiError::Invalid(vec![Violation {
                path: "/".into(),
                errors: vec!["error.expected.jsobject".into()],
            }]));
        };
        let Some(current) = self.apps.get(id).cloned() else {
            let mut body = body.clone();
            if let Some(m) = body.as_object_mut() {
                m.insert("id".into(), json!(id));
            }
            let (_, d) = self.create_app(&body, now)?;
            return Ok((d, true));
        };
        let version = self.next_version(now);
        // Rollback: `{"version": "..."}` restores that version's definition.
        let requested_version = obj.get("version").and_then(Value::as_str);
        let mut def = if let (Some(v), true) = (
            requested_version,
            obj.len() <= 2 && obj.keys().all(|k| k == "version" || k == "id"),
        ) {
            let Some(old) = self.version(id, v).cloned() else {
                return Err(ApiError::NotFound(format!(
                    "Version '{v}' of app '{id}' does not exist"
                )));
            };
            let mut d = old;
            d.version = version.clone();
            d
        } else {
            let merged = if partial {
                Self::merged(&current, obj, id)
            } else {
                let mut m = obj.clone();
                m.insert("id".into(), json!(id));
                m.remove("version");
                m.remove("versionInfo");
                Value::Object(m)
            };
            if let Some(given) = obj.get("id").and_then(Value::as_str) {
                if path::canonical(given, "/") != id {
                    return Err(ApiError::Invalid(vec![Violation {
                        path: "/id".into(),
                        errors: vec!["The id in the body does not match the id in the path".into()],
                    }]));
                }
            }
            app::parse(&merged, "/", &version).map_err(ApiError::Invalid)?
        };
        self.check_unlocked(id, force)?;
        self.drop_deployments(id, now);
        self.assign_service_ports(&mut def);
        let scale_only = current.same_config(&def);
        if scale_only {
            def.version_info = crate::app::VersionInfo {
                last_scaling_at: version.clone(),
                last_config_change_at: current.version_info.last_config_change_at.clone(),
            };
        } else {
            def.version_info.last_config_change_at = version.clone();
            def.version_info.last_scaling_at = version.clone();
            self.backoff.remove(id);
        }
        let action = if scale_only {
            Action::Scale
        } else {
            Action::Restart
        };
        let d = self.start_deployment(action, Some(current), Some(def.clone()), &version, now);
        self.set_app(def.clone());
        self.event(
            "api_post_event",
            now,
            json!({"clientIp": "127.0.0.1", "uri": format!("/v2/apps{id}"), "appDefinition": def.to_json()}),
        );
        self.converge(now);
        Ok((d, false))
    }

    /// The current definition merged with a partial body (Marathon's PUT and PATCH).
    fn merged(current: &AppDefinition, body: &serde_json::Map<String, Value>, id: &str) -> Value {
        let mut merged = current.to_json();
        if let Some(m) = merged.as_object_mut() {
            for (k, v) in body {
                m.insert(k.clone(), v.clone());
            }
            m.insert("id".into(), json!(id));
            m.remove("version");
            m.remove("versionInfo");
            // A change in Marathon 1.4's terms (`container.docker.network`) names the network
            // the app's current `networks` would otherwise override.
            let legacy_network = body
                .get("container")
                .and_then(|c| c.get("docker"))
                .and_then(|d| d.get("network"))
                .and_then(Value::as_str)
                .filter(|_| !body.contains_key("networks"));
            if legacy_network.is_some() {
                m.remove("networks");
            }
            // Port definitions are for host networking: off it, the current ones (an app
            // stored before it left the host network may hold the default one) are not carried
            // into a change that does not name them.
            let host = match legacy_network {
                Some(n) => n == "HOST",
                None => m
                    .get("networks")
                    .and_then(Value::as_array)
                    .and_then(|n| n.first())
                    .is_none_or(|n| n.get("mode").and_then(Value::as_str) == Some("host")),
            };
            if !host && !body.contains_key("portDefinitions") && !body.contains_key("ports") {
                m.remove("portDefinitions");
                m.remove("ports");
            }
        }
        merged
    }

    /// Apps under a group (all apps for `/`).
    pub fn apps_under<'a>(
        &'a self,
        group_id: &'a str,
    ) -> impl Iterator<Item = &'a AppDefinition> + 'a {
        self.apps
            .values()
            .filter(move |a| crate::group::contains(group_id, &a.id))
    }

    /// Applies changes to many apps as one deployment: each app goes to its target
    /// definition (`None`: removed), in steps ordered by `dependencies`. Unchanged apps are
    /// left out; a change that touches nothing still gets an (immediately finished)
    /// deployment, as Marathon. Refused as a whole, with nothing written, on a lock or a
    /// dependency cycle.
    fn apply_targets(
        &mut self,
        targets: Vec<(String, Option<AppDefinition>)>,
        version: &str,
        force: bool,
        now: Now,
    ) -> Result<Deployment, ApiError> {
        let mut parts = Vec::new();
        for (id, target) in targets {
            let current = self.apps.get(&id).cloned();
            let action = match (&current, &target) {
                (None, None) => continue,
                (Some(_), None) => Action::Stop,
                (None, Some(_)) => Action::Start,
                (Some(c), Some(t)) if c.same_config(t) => {
                    if c.instances == t.instances {
                        continue;
                    }
                    Action::Scale
                }
                (Some(_), Some(_)) => Action::Restart,
            };
            let target = target.map(|mut t| {
                t.version = version.to_string();
                t.version_info = crate::app::VersionInfo {
                    last_scaling_at: version.to_string(),
                    last_config_change_at: match (&current, action) {
                        (Some(c), Action::Scale) => c.version_info.last_config_change_at.clone(),
                        _ => version.to_string(),
                    },
                };
                t
            });
            parts.push(Part {
                app_id: id,
                action,
                original: current,
                target,
                step: 0,
                done: false,
            });
        }
        if !force {
            let mut locked: Vec<String> =
                parts.iter().flat_map(|p| self.locked(&p.app_id)).collect();
            locked.sort();
            locked.dedup();
            if !locked.is_empty() {
                return Err(Self::conflict(locked));
            }
        }
        deploy::order(&mut parts).map_err(|cycle| {
            ApiError::Invalid(vec![Violation {
                path: "/".into(),
                errors: vec![format!(
                    "Dependency graph has cyclic dependencies: {}",
                    cycle.join(", ")
                )],
            }])
        })?;
        for p in &parts {
            self.drop_deployments(&p.app_id, now);
        }
        for p in parts.iter_mut() {
            if let Some(t) = p.target.as_mut() {
                self.assign_service_ports(t);
                if p.action != Action::Scale {
                    self.backoff.remove(&p.app_id);
                }
                self.set_app(t.clone());
            }
        }
        let d = self.start_plan(parts, version, now);
        self.event(
            "group_change_success",
            now,
            json!({"groupId": "/", "version": version}),
        );
        self.converge(now);
        Ok(d)
    }

    /// PUT /v2/apps with an array: creates or partially updates each app, one deployment.
    pub fn update_apps(
        &mut self,
        body: &Value,
        force: bool,
        now: Now,
    ) -> Result<Deployment, ApiError> {
        let Some(list) = body.as_array() else {
            return Err(ApiError::Invalid(vec![Violation {
                path: "/".into(),
                errors: vec!["error.expected.jsarray".into()],
            }]));
        };
        let version = self.next_version(now);
        let mut targets = Vec::new();
        let mut errs = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let (Some(obj), Some(raw)) = (item.as_object(), item.get("id").and_then(Value::as_str))
            else {
                errs.push(Violation {
                    path: format!("/{i}/id"),
                    errors: vec!["error.path.missing".into()],
                });
                continue;
            };
            let id = path::canonical(raw, "/");
            let body = match self.apps.get(&id) {
                Some(c) => Self::merged(c, obj, &id),
                None => item.clone(),
            };
            match app::parse(&body, "/", &version) {
                Ok(def) if targets.iter().any(|(t, _)| t == &def.id) => errs.push(Violation {
                    path: format!("/{i}/id"),
                    errors: vec![format!("app {} is given more than once", def.id)],
                }),
                Ok(def) => targets.push((def.id.clone(), Some(def))),
                Err(v) => errs.extend(v.into_iter().map(|mut v| {
                    v.path = format!("/{i}{}", v.path);
                    v
                })),
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::Invalid(errs));
        }
        self.apply_targets(targets, &version, force, now)
    }

    /// POST /v2/groups: creates a group with its apps and subgroups.
    pub fn create_group(&mut self, body: &Value, now: Now) -> Result<Deployment, ApiError> {
        let Some(raw) = body.get("id").and_then(Value::as_str) else {
            return Err(ApiError::Invalid(vec![Violation {
                path: "/id".into(),
                errors: vec!["error.path.missing".into()],
            }]));
        };
        let id = path::canonical(raw, "/");
        if id == "/" || self.apps_under(&id).next().is_some() || self.apps.contains_key(&id) {
            return Err(ApiError::Conflict {
                message: format!("Group {id} is already created. Use PUT to change this group."),
                deployments: Vec::new(),
            });
        }
        if !path::is_valid_app_id(&id) {
            return Err(ApiError::Invalid(vec![Violation {
                path: "/id".into(),
                errors: vec![format!("'{raw}' is not a valid group id")],
            }]));
        }
        let version = self.next_version(now);
        let flat = crate::group::flatten(body, &id, &version).map_err(ApiError::Invalid)?;
        if let Some(a) = flat.apps.iter().find(|a| self.apps.contains_key(&a.id)) {
            return Err(ApiError::Conflict {
                message: format!("An app with id [{}] already exists.", a.id),
                deployments: Vec::new(),
            });
        }
        let targets = flat
            .apps
            .into_iter()
            .map(|a| (a.id.clone(), Some(a)))
            .collect();
        self.apply_targets(targets, &version, false, now)
    }

    /// PUT /v2/groups/{id} (and PUT /v2/groups/{id}/versions/{v}): a rollback to `version`,
    /// a `scaleBy` of every app under it, or the group's new tree, where apps it no longer
    /// lists are stopped. Creates the group when it does not exist; says whether it did.
    pub fn update_group(
        &mut self,
        id: &str,
        body: &Value,
        force: bool,
        now: Now,
    ) -> Result<(Deployment, bool), ApiError> {
        let id = path::canonical(id, "/");
        let Some(obj) = body.as_object() else {
            return Err(ApiError::Invalid(vec![Violation {
                path: "/".into(),
                errors: vec!["error.expected.jsobject".into()],
            }]));
        };
        let existed = id == "/" || self.apps_under(&id).next().is_some();
        let current: Vec<AppDefinition> = self.apps_under(&id).cloned().collect();
        let version = self.next_version(now);
        let targets: Vec<(String, Option<AppDefinition>)> =
            if let Some(v) = obj.get("version").and_then(Value::as_str) {
                if !existed {
                    return Err(ApiError::NotFound(format!("Group '{id}' does not exist")));
                }
                // Each app as it was at `v`; apps created since are stopped.
                current
                    .iter()
                    .map(|a| {
                        let then = self
                            .versions
                            .get(&a.id)
                            .and_then(|vs| vs.range(..=v.to_string()).next_back())
                            .map(|(_, d)| d.clone());
                        (a.id.clone(), then)
                    })
                    .collect()
            } else if let Some(f) = obj.get("scaleBy") {
                let Some(f) = f.as_f64().filter(|f| f.is_finite() && *f >= 0.0) else {
                    return Err(ApiError::Invalid(vec![Violation {
                        path: "/scaleBy".into(),
                        errors: vec!["error.expected.positive.number".into()],
                    }]));
                };
                if !existed {
                    return Err(ApiError::NotFound(format!("Group '{id}' does not exist")));
                }
                current
                    .iter()
                    .map(|a| {
                        let mut t = a.clone();
                        t.instances =
                            (f64::from(a.instances) * f).ceil().min(f64::from(u32::MAX)) as u32;
                        (a.id.clone(), Some(t))
                    })
                    .collect()
            } else {
                let flat = crate::group::flatten(body, &id, &version).map_err(ApiError::Invalid)?;
                let kept = |a: &AppDefinition| {
                    let parent = path::parent(&a.id);
                    flat.keep_apps_of.contains(&parent)
                        || flat
                            .keep_groups_of
                            .iter()
                            .any(|g| crate::group::contains(g, &a.id) && parent != *g)
                };
                let mut targets: Vec<(String, Option<AppDefinition>)> = current
                    .iter()
                    .filter(|a| !kept(a) && !flat.apps.iter().any(|n| n.id == a.id))
                    .map(|a| (a.id.clone(), None))
                    .collect();
                targets.extend(flat.apps.into_iter().map(|a| (a.id.clone(), Some(a))));
                targets
            };
        let d = self.apply_targets(targets, &version, force, now)?;
        Ok((d, !existed))
    }

    /// DELETE /v2/groups/{id}: stops and removes every app under it.
    pub fn delete_group(
        &mut self,
        id: &str,
        force: bool,
        now: Now,
    ) -> Result<Deployment, ApiError> {
        let id = path::canonical(id, "/");
        if id != "/" && self.apps_under(&id).next().is_none() {
            return Err(ApiError::NotFound(format!("Group '{id}' does not exist")));
        }
        let targets = self.apps_under(&id).map(|a| (a.id.clone(), None)).collect();
        let version = self.next_version(now);
        self.apply_targets(targets, &version, force, now)
    }

    /// GET /v2/groups/{id}: the tree under `id`, or `None` when no app lies under it.
    pub fn group_json(&self, id: &str, embed: &[String]) -> Option<Value> {
        let id = path::canonical(id, "/");
        let version = self
            .apps_under(&id)
            .map(|a| a.version.clone())
            .max()
            .unwrap_or_default();
        crate::group::tree(&id, self.apps.values(), &version, &|a| {
            self.app_json(a, embed)
        })
    }

    /// DELETE /v2/apps/{id}.
    pub fn delete_app(&mut self, id: &str, force: bool, now: Now) -> Result<Deployment, ApiError> {
        let Some(current) = self.apps.get(id).cloned() else {
            return Err(Self::no_app(id));
        };
        self.check_unlocked(id, force)?;
        self.drop_deployments(id, now);
        let version = self.next_version(now);
        let d = self.start_deployment(Action::Stop, Some(current), None, &version, now);
        self.converge(now);
        Ok(d)
    }

    /// POST /v2/apps/{id}/restart: a new version with the same config, so every task is
    /// replaced by a rolling deployment.
    pub fn restart_app(&mut self, id: &str, force: bool, now: Now) -> Result<Deployment, ApiError> {
        let Some(current) = self.apps.get(id).cloned() else {
            return Err(Self::no_app(id));
        };
        self.check_unlocked(id, force)?;
        self.drop_deployments(id, now);
        let version = self.next_version(now);
        let mut def = current.clone();
        def.version = version.clone();
        def.version_info.last_config_change_at = version.clone();
        def.version_info.last_scaling_at = version.clone();
        let d = self.start_deployment(
            Action::Restart,
            Some(current),
            Some(def.clone()),
            &version,
            now,
        );
        self.set_app(def);
        self.converge(now);
        Ok(d)
    }

    /// Kills tasks (DELETE /v2/apps/{id}/tasks[/{taskId}], POST /v2/tasks/delete). With
    /// `scale`, the apps' instance counts shrink (a scale deployment each); otherwise the
    /// tasks are replaced. `wipe` forgets the instances at once.
    pub fn kill_tasks(
        &mut self,
        task_ids: &[String],
        scale: bool,
        wipe: bool,
        force: bool,
        now: Now,
    ) -> Result<Vec<Deployment>, ApiError> {
        let mut killed: Vec<String> = Vec::new();
        let mut per_app: BTreeMap<String, u32> = BTreeMap::new();
        for t in task_ids {
            let Some(i) = self.instances.get(t).cloned() else {
                continue;
            };
            if i.state.is_terminal() {
                continue;
            }
            *per_app.entry(i.app_id).or_default() += 1;
            killed.push(i.task_id);
        }
        let mut deployments = Vec::new();
        if scale {
            for app_id in per_app.keys() {
                self.check_unlocked(app_id, force)?;
            }
            for (app_id, n) in per_app {
                let Some(current) = self.apps.get(&app_id).cloned() else {
                    continue;
                };
                self.drop_deployments(&app_id, now);
                let version = self.next_version(now);
                let mut def = current.clone();
                def.instances = def.instances.saturating_sub(n);
                def.version = version.clone();
                def.version_info.last_scaling_at = version.clone();
                let d = self.start_deployment(
                    Action::Scale,
                    Some(current),
                    Some(def.clone()),
                    &version,
                    now,
                );
                self.set_app(def);
                deployments.push(d);
            }
        }
        for t in killed {
            self.kill(&t);
            if wipe {
                self.instances.remove(&t);
                self.store(Write::DeleteInstance(t));
            }
        }
        self.converge(now);
        Ok(deployments)
    }

    /// DELETE /v2/deployments/{id}: rolls back (a new deployment to the original), or with
    /// `force` just stops it where it is.
    pub fn cancel_deployment(
        &mut self,
        id: &str,
        force: bool,
        now: Now,
    ) -> Result<Option<Deployment>, ApiError> {
        let Some(d) = self.deployments.remove(id) else {
            return Err(ApiError::NotFound(format!(
                "DeploymentPlan {id} does not exist"
            )));
        };
        self.store(Write::DeleteDeployment(id.to_string()));
        self.event(
            "deployment_failed",
            now,
            json!({"id": d.id, "plan": self.plan_json(&d)}),
        );
        if force {
            return Ok(None);
        }
        let version = self.next_version(now);
        let mut parts = Vec::new();
        for p in &d.parts {
            match (&p.original, &p.target) {
                (None, Some(target)) => {
                    // Undo a create: remove the app.
                    let current = self.apps.get(&p.app_id).cloned().unwrap_or(target.clone());
                    parts.push(Part {
                        app_id: p.app_id.clone(),
                        action: Action::Stop,
                        original: Some(current),
                        target: None,
                        step: 0,
                        done: false,
                    });
                }
                (Some(orig), _) => {
                    let current = self.apps.get(&orig.id).cloned();
                    let mut def = orig.clone();
                    def.version = version.clone();
                    let action = match &current {
                        Some(c) if c.same_config(&def) => Action::Scale,
                        Some(_) => Action::Restart,
                        None => Action::Start,
                    };
                    // Back to the original config: its tasks count as current again, so
                    // only the tasks the cancelled deployment started are replaced.
                    if action == Action::Start {
                        def.version_info.last_config_change_at = version.clone();
                    }
                    def.version_info.last_scaling_at = version.clone();
                    self.set_app(def.clone());
                    parts.push(Part {
                        app_id: p.app_id.clone(),
                        action,
                        original: current,
                        target: Some(def),
                        step: 0,
                        done: false,
                    });
                }
                (None, None) => {}
            }
        }
        // The original definitions were ordered once; a cycle cannot appear by going back.
        let _ = deploy::order(&mut parts);
        let rollback = (!parts.is_empty()).then(|| self.start_plan(parts, &version, now));
        self.converge(now);
        Ok(rollback)
    }

    /// DELETE /v2/queue/{id}/delay.
    pub fn reset_delay(&mut self, app_id: &str, now: Now) -> Result<(), ApiError> {
        if !self.apps.contains_key(app_id) {
            return Err(ApiError::NotFound(format!(
                "Application {app_id} not found in tasks queue."
            )));
        }
        self.backoff.remove(app_id);
        self.converge(now);
        Ok(())
    }

    // ----- master events -----

    /// The event stream to the master closed.
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    pub fn on_event(&mut self, event: Event, now: Now) {
        self.last_tick_ms = self.last_tick_ms.max(mono_ms(now));
        match event.kind {
            EventType::Subscribed => {
                if let Some(s) = event.subscribed {
                    let id = s.framework_id.as_str().to_string();
                    if self.framework_id.as_deref() != Some(&id) {
                        self.framework_id = Some(id.clone());
                        self.store(Write::FrameworkId(id));
                    }
                    self.connected = true;
                    self.suppressed = false;
                    self.subscribed_ms = mono_ms(now);
                    self.reconcile_all();
                    self.converge(now);
                }
            }
            EventType::Offers => {
                if let Some(o) = event.offers {
                    self.on_offers(o.offers, now);
                }
            }
            EventType::Update => {
                if let Some(u) = event.update {
                    self.on_status(u.status, now);
                }
            }
            EventType::Error => {
                self.connected = false;
            }
            _ => {}
        }
    }

    /// Explicit reconciliation of every known task plus an implicit one (to hear of tasks
    /// we do not know, which are then killed).
    pub fn reconcile_all(&mut self) {
        self.last_reconcile_ms = self.last_tick_ms;
        let tasks: Vec<ReconcileTask> = self
            .instances
            .values()
            .filter(|i| !i.state.is_terminal())
            .map(|i| ReconcileTask {
                task_id: TaskId::new(i.task_id.clone()),
                agent_id: Some(AgentId::new(i.agent_id.clone())),
            })
            .collect();
        if !tasks.is_empty() {
            self.call(Call {
                reconcile: Some(Reconcile { tasks }),
                ..Call::new(CallType::Reconcile, None)
            });
        }
        self.call(Call {
            reconcile: Some(Reconcile { tasks: Vec::new() }),
            ..Call::new(CallType::Reconcile, None)
        });
    }

    fn on_status(&mut self, s: TaskStatus, now: Now) {
        let task_id = s.task_id.as_str().to_string();
        if let (Some(uuid), Some(agent)) = (&s.uuid, &s.agent_id) {
            self.call(Call {
                acknowledge: Some(Acknowledge {
                    agent_id: agent.clone(),
                    task_id: s.task_id.clone(),
                    uuid: uuid.clone(),
                }),
                ..Call::new(CallType::Acknowledge, None)
            });
        }
        let Some(mut inst) = self.instances.get(&task_id).cloned() else {
            // A task we have no record of: kill it unless it is already gone.
            if !s.state.is_terminal() {
                self.call(Call {
                    kill: Some(Kill {
                        task_id: s.task_id.clone(),
                        agent_id: s.agent_id.clone(),
                        kill_policy: None,
                    }),
                    ..Call::new(CallType::Kill, None)
                });
            }
            return;
        };
        let before = inst.state;
        inst.state = s.state;
        if s.state == TaskState::Unreachable {
            if inst.unreachable_since_ms.is_none() {
                inst.unreachable_since_ms = Some(unreachable_time_ms(&s).unwrap_or(wall_ms(now)));
            }
        } else if inst.unreachable_since_ms.take().is_some() && inst.inactive {
            // Back from an unreachable agent after its replacement was launched: it counts
            // again, and the surplus is killed by the usual scale-down rules.
            inst.inactive = false;
        }
        let own: Vec<Value> = s
            .extra
            .get("container_status")
            .and_then(|c| c.get("network_infos"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| n.get("ip_addresses").and_then(Value::as_array))
            .flatten()
            .filter_map(|a| {
                let ip = a.get("ip_address").and_then(Value::as_str)?;
                let protocol = a.get("protocol").and_then(Value::as_str).unwrap_or("IPv4");
                Some(json!({"ipAddress": ip, "protocol": protocol}))
            })
            .collect();
        if !own.is_empty() {
            inst.ip_addresses = own;
        }
        if s.state == TaskState::Running && inst.started_at.is_none() {
            inst.started_at = Some(iso_millis(wall_ms(now)));
        }
        if s.state == TaskState::Running && inst.running_since_ms.is_none() {
            inst.running_since_ms = Some(mono_ms(now));
        }
        if let Some(h) = s.healthy {
            if inst.healthy != Some(h) {
                self.event(
                    "health_status_changed_event",
                    now,
                    json!({"appId": inst.app_id, "instanceId": inst.task_id, "taskId": inst.task_id, "version": inst.version, "alive": h}),
                );
            }
            inst.healthy = Some(h);
        }
        if before != s.state {
            self.event(
                "status_update_event",
                now,
                json!({
                    "slaveId": inst.agent_id, "taskId": inst.task_id, "taskStatus": s.state.as_str(),
                    "message": s.message.clone().unwrap_or_default(), "appId": inst.app_id,
                    "host": inst.host, "ipAddresses": inst.ip_addresses(),
                    "ports": inst.ports, "version": inst.version,
                }),
            );
            self.event(
                "instance_changed_event",
                now,
                json!({"instanceId": inst.task_id, "condition": condition(s.state), "runSpecId": inst.app_id,
                       "agentId": inst.agent_id, "host": inst.host, "runSpecVersion": inst.version}),
            );
        }
        // TASK_UNKNOWN is not terminal for Mesos, but the master knows neither the task nor
        // its agent: Marathon's `Condition.Unknown` is terminal, and the instance is replaced.
        if s.state.is_terminal() || s.state == TaskState::Unknown {
            let failed = matches!(s.state, TaskState::Failed | TaskState::Error)
                || (!inst.kill_requested
                    && matches!(
                        s.state,
                        TaskState::Lost
                            | TaskState::Killed
                            | TaskState::Finished
                            | TaskState::Dropped
                            | TaskState::Gone
                            | TaskState::Unknown
                    ));
            if failed {
                self.note_failure(&inst, &s, now);
            }
            self.instances.remove(&task_id);
            self.kill_sent.remove(&task_id);
            self.store(Write::DeleteInstance(task_id));
        } else {
            self.store(Write::Instance(inst.clone()));
            self.instances.insert(task_id, inst);
        }
        // Only a TASK_UNREACHABLE can be due at once (a short strategy or an old
        // `unreachable_time`); the others wait for `tick`, so most updates scan nothing.
        if s.state == TaskState::Unreachable {
            self.expire_unreachable(now);
        }
        self.converge(now);
    }

    /// Applies the apps' unreachable strategies: an instance unreachable past
    /// `inactiveAfterSeconds` stops counting (so it is replaced), and past
    /// `expungeAfterSeconds` it is forgotten; should it come back, it is then a task we do
    /// not know, and is killed.
    fn expire_unreachable(&mut self, now: Now) {
        let now_ms = wall_ms(now);
        let mut changed = Vec::new();
        let mut expunged = Vec::new();
        for i in self.instances.values() {
            let Some(since) = i.unreachable_since_ms else {
                continue;
            };
            if i.state != TaskState::Unreachable {
                continue;
            }
            let Some((inactive_ms, expunge_ms)) = self
                .apps
                .get(&i.app_id)
                .and_then(|a| a.unreachable_strategy.timeouts_ms())
            else {
                continue;
            };
            let gone_ms = u64::try_from(now_ms.saturating_sub(since)).unwrap_or(0);
            if gone_ms >= expunge_ms {
                expunged.push(i.clone());
            } else if gone_ms >= inactive_ms && !i.inactive {
                changed.push(i.task_id.clone());
            }
        }
        for t in changed {
            if let Some(i) = self.instances.get_mut(&t) {
                i.inactive = true;
                let i = i.clone();
                self.event(
                    "instance_changed_event",
                    now,
                    json!({"instanceId": i.task_id, "condition": "UnreachableInactive",
                           "runSpecId": i.app_id, "agentId": i.agent_id, "host": i.host,
                           "runSpecVersion": i.version}),
                );
                self.store(Write::Instance(i));
                self.progress += 1;
            }
        }
        for i in expunged {
            self.instances.remove(&i.task_id);
            self.kill_sent.remove(&i.task_id);
            self.store(Write::DeleteInstance(i.task_id.clone()));
            self.event(
                "instance_changed_event",
                now,
                json!({"instanceId": i.task_id, "condition": "Gone", "runSpecId": i.app_id,
                       "agentId": i.agent_id, "host": i.host, "runSpecVersion": i.version}),
            );
            self.progress += 1;
        }
    }

    fn note_failure(&mut self, inst: &Instance, s: &TaskStatus, now: Now) {
        let Some(app) = self.apps.get(&inst.app_id).cloned() else {
            return;
        };
        let b = self.backoff.entry(app.id.clone()).or_default();
        b.failures = b.failures.saturating_add(1);
        let exp = i32::try_from(b.failures - 1).unwrap_or(i32::MAX);
        let delay =
            (app.backoff_seconds * app.backoff_factor.powi(exp)).min(app.max_launch_delay_seconds);
        b.until_ms = mono_ms(now) + (delay.max(0.0) * 1000.0) as u64;
        self.last_failure.insert(
            app.id.clone(),
            json!({
                "appId": app.id, "host": inst.host, "message": s.message.clone().unwrap_or_default(),
                "state": s.state.as_str(), "taskId": inst.task_id, "timestamp": iso_millis(wall_ms(now)),
                "version": inst.version, "slaveId": inst.agent_id,
            }),
        );
    }

    /// Records a Marathon-level health check result for a task (probed by the shell).
    pub fn health_result(&mut self, task_id: &str, ok: bool, now: Now) {
        let Some(app) = self
            .instances
            .get(task_id)
            .and_then(|i| self.apps.get(&i.app_id))
            .cloned()
        else {
            return;
        };
        let Some(check) = app
            .health_checks
            .iter()
            .find(|h| h.is_marathon_level())
            .cloned()
        else {
            return;
        };
        let Some(inst) = self.instances.get_mut(task_id) else {
            return;
        };
        if !inst.running() || inst.kill_requested {
            return;
        }
        let stamp = iso_millis(wall_ms(now));
        let before = inst.healthy;
        let mut kill = false;
        if ok {
            inst.health_failures = 0;
            inst.healthy = Some(true);
            inst.last_health_success = Some(stamp);
        } else {
            let in_grace = inst.running_since_ms.is_some_and(|t| {
                mono_ms(now).saturating_sub(t) < check.grace_period_seconds * 1000
            }) && inst.healthy != Some(true);
            inst.last_health_failure = Some(stamp);
            if !in_grace {
                inst.health_failures += 1;
                inst.healthy = Some(false);
                kill = check.max_consecutive_failures > 0
                    && inst.health_failures >= check.max_consecutive_failures;
            }
        }
        let changed = before != inst.healthy;
        let snapshot = inst.clone();
        if changed {
            self.event(
                "health_status_changed_event",
                now,
                json!({"appId": snapshot.app_id, "instanceId": snapshot.task_id, "taskId": snapshot.task_id,
                       "version": snapshot.version, "alive": snapshot.healthy == Some(true)}),
            );
        }
        if !ok && !kill {
            self.event(
                "failed_health_check_event",
                now,
                json!({"appId": snapshot.app_id, "instanceId": snapshot.task_id, "taskId": snapshot.task_id, "healthCheck": check.to_json()}),
            );
        }
        if kill {
            self.event(
                "unhealthy_instance_kill_event",
                now,
                json!({"appId": snapshot.app_id, "taskId": snapshot.task_id, "instanceId": snapshot.task_id,
                       "version": snapshot.version, "reason": "health check failures", "host": snapshot.host, "slaveId": snapshot.agent_id}),
            );
            self.kill(task_id);
        }
        self.converge(now);
    }

    /// What the shell should probe: (task id, host, port, check) for running tasks of apps
    /// with a Marathon-level HTTP/TCP check.
    /// Running tasks of the current config whose readiness checks have not passed yet:
    /// (task id, host, port of the check's `portName`, check).
    pub fn readiness_targets(&self) -> Vec<(String, String, u32, crate::app::ReadinessCheck)> {
        let mut out = Vec::new();
        for i in self
            .instances
            .values()
            .filter(|i| i.running() && !i.kill_requested && i.ready != Some(true))
        {
            let Some(app) = self.apps.get(&i.app_id) else {
                continue;
            };
            if i.config_version != app.version_info.last_config_change_at {
                continue;
            }
            if app.readiness_checks.is_empty() {
                continue;
            }
            let specs = app.port_specs();
            for check in &app.readiness_checks {
                let at = specs
                    .iter()
                    .position(|p| p.name.as_deref() == Some(check.port_name.as_str()))
                    .and_then(|idx| i.probe_at(app, &specs, idx));
                if let Some((host, port)) = at {
                    out.push((i.task_id.clone(), host, port, check.clone()));
                }
            }
        }
        out
    }

    /// A readiness probe's verdict for a task; once ready, a task stays ready.
    pub fn readiness_result(&mut self, task_id: &str, ok: bool, now: Now) {
        let Some(i) = self.instances.get_mut(task_id) else {
            return;
        };
        if i.ready == Some(true) || i.ready == Some(ok) {
            return;
        }
        i.ready = Some(ok);
        let snapshot = i.clone();
        self.store(Write::Instance(snapshot));
        self.converge(now);
    }

    pub fn health_targets(&self) -> Vec<(String, String, u32, crate::app::HealthCheck)> {
        let mut out = Vec::new();
        for i in self
            .instances
            .values()
            .filter(|i| i.running() && !i.kill_requested)
        {
            let Some(app) = self.apps.get(&i.app_id) else {
                continue;
            };
            let Some(check) = app.health_checks.iter().find(|h| h.is_marathon_level()) else {
                continue;
            };
            let at = match (check.port, check.port_index) {
                (Some(p), _) => Some((i.host.clone(), p)),
                (None, idx) => {
                    // Port specs matter only to a task with an address of its own.
                    let specs = if i.ip_addresses.is_empty() {
                        Vec::new()
                    } else {
                        app.port_specs()
                    };
                    i.probe_at(app, &specs, idx.unwrap_or(0) as usize)
                }
            };
            if let Some((host, port)) = at {
                out.push((i.task_id.clone(), host, port, check.clone()));
            }
        }
        out
    }

    fn kill(&mut self, task_id: &str) {
        let Some(inst) = self.instances.get_mut(task_id) else {
            return;
        };
        inst.kill_requested = true;
        let inst = inst.clone();
        let at = self.last_tick_ms;
        self.kill_call(task_id, at);
        if inst.state == TaskState::Unreachable {
            // Nothing will answer while its agent is away (the master carries the kill out
            // if it returns): Marathon expunges an unreachable instance it kills.
            self.instances.remove(task_id);
            self.kill_sent.remove(task_id);
            self.store(Write::DeleteInstance(task_id.to_string()));
            self.progress += 1;
        } else {
            self.store(Write::Instance(inst));
        }
    }

    /// Sends (or resends) the KILL of an instance.
    fn kill_call(&mut self, task_id: &str, now_ms: u64) {
        let Some(inst) = self.instances.get(task_id).cloned() else {
            return;
        };
        self.kill_sent.insert(task_id.to_string(), now_ms);
        let grace = self
            .apps
            .get(&inst.app_id)
            .and_then(|a| a.task_kill_grace_period_seconds)
            .map(|g| KillPolicy {
                grace_period: Some(DurationInfo {
                    nanoseconds: (g * 1e9) as i64,
                }),
            });
        self.call(Call {
            kill: Some(Kill {
                task_id: TaskId::new(inst.task_id.clone()),
                agent_id: Some(AgentId::new(inst.agent_id.clone())),
                kill_policy: grace,
            }),
            ..Call::new(CallType::Kill, None)
        });
    }

    /// Periodic work: launch delays that ran out may need offers again, and kills that have
    /// not taken effect are sent again (Marathon's `--kill_retry_timeout`): a KILL can be lost
    /// with a connection or a master restart, and nothing else would repeat it; reconciliation
    /// runs every `reconciliation_interval_ms`, and tasks still STAGING `task_launch_timeout_ms`
    /// after they were staged are killed and replaced (`core/timers.rs`).
    pub fn tick(&mut self, now: Now) {
        let now_ms = mono_ms(now);
        let due: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.kill_requested && !i.state.is_terminal())
            .filter(|i| {
                self.kill_sent
                    .get(&i.task_id)
                    .is_none_or(|t| now_ms.saturating_sub(*t) >= KILL_RETRY_MS)
            })
            .map(|i| i.task_id.clone())
            .collect();
        if self.connected {
            for t in due {
                self.kill_call(&t, now_ms);
            }
        }
        self.expire_unreachable(now);
        self.reconcile_if_due(now);
        self.kill_overdue(now);
        self.converge(now);
    }

    // ----- the control loop -----

    fn ready(&self, app: &AppDefinition, i: &Instance) -> bool {
        if !i.running() {
            return false;
        }
        // Tasks of the current config must also pass the readiness checks, if any.
        if !app.readiness_checks.is_empty()
            && i.config_version == app.version_info.last_config_change_at
            && i.ready != Some(true)
        {
            return false;
        }
        if app.health_checks.is_empty() {
            return true;
        }
        i.healthy == Some(true)
    }

    /// Instances to launch for `app` now (ignoring the launch delay).
    fn needed(&self, app: &AppDefinition) -> usize {
        if self.stopping(&app.id) || self.held(&app.id) {
            return 0;
        }
        let target = app.instances as usize;
        let cfg = &app.version_info.last_config_change_at;
        let live: Vec<&Instance> = self.instances_of(&app.id).filter(|i| i.live()).collect();
        // Instances being killed still run until their end is reported: like Marathon, count
        // them against the over-capacity bound (a kill stuck behind a partition must not let
        // replacements pile up).
        let occupying = self
            .instances_of(&app.id)
            .filter(|i| !i.state.is_terminal() && !i.inactive)
            .count();
        let new = live.iter().filter(|i| &i.config_version == cfg).count();
        let old = live.len() - new;
        if old == 0 && occupying == live.len() {
            return target.saturating_sub(new);
        }
        let max_total =
            target + (target as f64 * app.upgrade_strategy.maximum_over_capacity).floor() as usize;
        let room = max_total.saturating_sub(occupying);
        let mut n = target.saturating_sub(new).min(room);
        if n == 0 && new < target && !self.can_kill_old(app) {
            // minimumHealthCapacity 1 with maximumOverCapacity 0 cannot move without going
            // over: allow one extra instance so the deployment makes progress.
            n = usize::from(occupying <= target);
        }
        n
    }

    fn can_kill_old(&self, app: &AppDefinition) -> bool {
        let target = app.instances as usize;
        let min_healthy =
            (target as f64 * app.upgrade_strategy.minimum_health_capacity).ceil() as usize;
        let cfg = &app.version_info.last_config_change_at;
        let ready = self
            .instances_of(&app.id)
            .filter(|i| i.live() && self.ready(app, i))
            .count();
        let old_unready = self
            .instances_of(&app.id)
            .any(|i| i.live() && &i.config_version != cfg && !self.ready(app, i));
        old_unready || ready > min_healthy
    }

    /// Brings every app towards its target: kills surplus or outdated instances within the
    /// upgrade strategy's bounds, finishes deployments, and revives or suppresses offers.
    fn converge(&mut self, now: Now) {
        self.last_tick_ms = self.last_tick_ms.max(mono_ms(now));
        // A finished step releases the next one, so go round while parts finish.
        for _ in 0..16 {
            let progress = self.progress;
            let apps: Vec<AppDefinition> = self.apps.values().cloned().collect();
            for app in &apps {
                self.converge_app(app);
            }
            self.converge_stops(now);
            let finished: Vec<String> = self
                .deployments
                .values()
                .filter(|d| d.parts.iter().all(|p| p.done))
                .map(|d| d.id.clone())
                .collect();
            for id in finished {
                self.finish_deployment(&id, now);
            }
            if self.progress == progress {
                break;
            }
        }
        // Offers are wanted exactly when some app waits for instances.
        let wanted = self.apps.values().any(|a| self.needed(a) > 0);
        if self.connected {
            let now_ms = mono_ms(now);
            let silent = now_ms.saturating_sub(self.last_offer_or_revive_ms) >= REVIVE_REPEAT_MS;
            if wanted && (self.suppressed || silent) {
                self.suppressed = false;
                self.last_offer_or_revive_ms = now_ms;
                self.call(Call {
                    revive: Some(Roles {
                        roles: vec![self.config.role.clone()],
                    }),
                    ..Call::new(CallType::Revive, None)
                });
            } else if !wanted && !self.suppressed {
                self.suppressed = true;
                self.call(Call {
                    suppress: Some(Roles {
                        roles: vec![self.config.role.clone()],
                    }),
                    ..Call::new(CallType::Suppress, None)
                });
            }
        }
    }

    /// Stop parts of the current steps: kill what runs, then forget the app.
    fn converge_stops(&mut self, now: Now) {
        let stops: Vec<String> = self
            .deployments
            .values()
            .flat_map(|d| {
                let current = d.current_step();
                d.parts
                    .iter()
                    .filter(move |p| p.action == Action::Stop && !p.done && p.step <= current)
                    .map(|p| p.app_id.clone())
            })
            .collect();
        for app_id in stops {
            let live: Vec<String> = self
                .instances_of(&app_id)
                .filter(|i| !i.state.is_terminal())
                .map(|i| i.task_id.clone())
                .collect();
            for t in &live {
                if self.instances.get(t).is_some_and(|i| !i.kill_requested) {
                    self.kill(t);
                }
            }
            if live.is_empty() {
                if self.apps.remove(&app_id).is_some() {
                    self.versions.remove(&app_id);
                    self.backoff.remove(&app_id);
                    self.last_failure.remove(&app_id);
                    self.queue_stats.remove(&app_id);
                    self.store(Write::DeleteApp(app_id.clone()));
                    self.store(Write::DeleteVersions(app_id.clone()));
                    self.event("app_terminated_event", now, json!({"appId": app_id}));
                }
                self.mark_done(&app_id);
            }
        }
    }

    /// Marks the parts of `app_id` in the current steps of their deployments as done.
    fn mark_done(&mut self, app_id: &str) {
        let mut changed = Vec::new();
        for d in self.deployments.values_mut() {
            let current = d.current_step();
            let mut hit = false;
            for p in d
                .parts
                .iter_mut()
                .filter(|p| p.app_id == app_id && !p.done && p.step <= current)
            {
                p.done = true;
                hit = true;
            }
            if hit {
                changed.push(d.clone());
            }
        }
        for d in changed {
            self.progress += 1;
            self.store(Write::Deployment(d));
        }
    }

    fn converge_app(&mut self, app: &AppDefinition) {
        if self.stopping(&app.id) || self.held(&app.id) {
            return;
        }
        let target = app.instances as usize;
        let cfg = app.version_info.last_config_change_at.clone();
        let min_healthy =
            (target as f64 * app.upgrade_strategy.minimum_health_capacity).ceil() as usize;
        let live: Vec<Instance> = self
            .instances_of(&app.id)
            .filter(|i| i.live())
            .cloned()
            .collect();
        let (new, old): (Vec<Instance>, Vec<Instance>) =
            live.into_iter().partition(|i| i.config_version == cfg);
        // Outdated instances: unready ones go at once; ready ones while enough stay ready, or
        // once the new config alone has every instance ready.
        let new_ready = new.iter().filter(|i| self.ready(app, i)).count();
        let mut ready_total = new_ready + old.iter().filter(|i| self.ready(app, i)).count();
        let mut old = old;
        old.sort_by_key(|i| self.ready(app, i));
        for i in &old {
            if !self.ready(app, i) {
                self.kill(&i.task_id);
            } else if ready_total > min_healthy || new_ready >= target {
                ready_total -= 1;
                self.kill(&i.task_id);
            }
        }
        // Surplus current instances (scale down), by kill selection; unready first.
        if new.len() > target {
            let mut victims = new.clone();
            victims.sort_by(|a, b| {
                let ra = self.ready(app, a);
                let rb = self.ready(app, b);
                ra.cmp(&rb).then_with(|| {
                    if app.kill_selection == "OLDEST_FIRST" {
                        a.staged_at.cmp(&b.staged_at)
                    } else {
                        b.staged_at.cmp(&a.staged_at)
                    }
                })
            });
            for v in victims.iter().take(new.len() - target) {
                self.kill(&v.task_id);
            }
        }
        // Deployments of this app finish when the target is reached.
        let live_now: Vec<&Instance> = self
            .instances_of(&app.id)
            .filter(|i| !i.state.is_terminal() && !i.inactive)
            .collect();
        let done = live_now.len() == target
            && live_now
                .iter()
                .all(|i| i.config_version == cfg && !i.kill_requested && self.ready(app, i));
        if done {
            self.mark_done(&app.id);
        }
    }

    fn finish_deployment(&mut self, id: &str, now: Now) {
        if let Some(d) = self.deployments.remove(id) {
            self.store(Write::DeleteDeployment(id.to_string()));
            let plan = self.plan_json(&d);
            self.event(
                "deployment_step_success",
                now,
                json!({"plan": plan, "currentStep": {"actions": d.actions_json()}}),
            );
            self.event("deployment_success", now, json!({"id": d.id, "plan": plan}));
        }
    }

    // ----- offers -----

    fn on_offers(&mut self, offers: Vec<Offer>, now: Now) {
        self.last_offer_or_revive_ms = mono_ms(now);
        struct Slot {
            offer: Offer,
            free: Resources,
            attrs: BTreeMap<String, String>,
            role: String,
            tasks: Vec<TaskInfo>,
        }
        let mut slots: Vec<Slot> = Vec::new();
        for o in offers {
            let free = resources_from_wire(&o.resources, "offer").unwrap_or_default();
            let attrs = attributes_from_wire(&o.attributes)
                .map(|a| {
                    a.into_iter()
                        .map(|x| (x.name.clone(), attr_text(&x.value)))
                        .collect()
                })
                .unwrap_or_default();
            let role = o
                .allocation_info
                .as_ref()
                .and_then(|a| a.role.clone())
                .unwrap_or_else(|| self.config.role.clone());
            slots.push(Slot {
                offer: o,
                free,
                attrs,
                role,
                tasks: Vec::new(),
            });
        }
        let apps: Vec<AppDefinition> = self.apps.values().cloned().collect();
        let now_ms = mono_ms(now);
        for app in &apps {
            let mut need = self.needed(app);
            if need == 0 {
                continue;
            }
            if self
                .backoff
                .get(&app.id)
                .is_some_and(|b| b.until_ms > now_ms)
            {
                continue;
            }
            if let Some(roles) = &app.accepted_resource_roles {
                if !roles.is_empty() && !roles.iter().any(|r| r == "*" || r == &self.config.role) {
                    continue;
                }
            }
            let stamp = iso_millis(wall_ms(now));
            // Where the app runs, indexed once and updated per launch.
            let mut placed = placement::Placements::new(app);
            for i in self
                .instances_of(&app.id)
                .filter(|i| !i.state.is_terminal() && !i.kill_requested)
            {
                placed.add(&i.host, &i.attributes);
            }
            let strategy = self.config.strategy;
            let mut load: Vec<usize> = slots
                .iter()
                .map(|s| placed.on_host(&s.offer.hostname))
                .collect();
            let mut cpus: Vec<i64> = slots.iter().map(|s| s.free.scalar_millis("cpus")).collect();
            let mut ord = placement::order(strategy, &load, &cpus);
            // Within one batch an offer that refuses the app keeps refusing it (its resources
            // only shrink and the app's counts only grow), except under GROUP_BY, which
            // evens out; so refusals are final otherwise and each offer is tried once.
            let refusals_final = !app.constraints.iter().any(|c| c.operator == "GROUP_BY");
            let mut refused = vec![false; slots.len()];
            while need > 0 {
                let mut chosen = None;
                let mut reasons = Vec::new();
                for &idx in &ord {
                    if refused[idx] {
                        continue;
                    }
                    let s = &slots[idx];
                    let cand = Candidate {
                        hostname: &s.offer.hostname,
                        attributes: &s.attrs,
                        free: &s.free,
                    };
                    match placement::fit_indexed(app, &cand, &placed) {
                        Ok(claim) => {
                            chosen = Some((idx, claim));
                            break;
                        }
                        Err(r) => {
                            reasons.push((idx, r));
                            refused[idx] = refusals_final;
                        }
                    }
                }
                let stats = self.queue_stats.entry(app.id.clone()).or_default();
                stats.processed += slots.len() as u64;
                stats.last_processed = Some(stamp.clone());
                for (idx, r) in reasons {
                    *stats.rejections.entry(r).or_default() += 1;
                    let s = &slots[idx];
                    stats
                        .last_unused
                        .push_back(unused_offer_json(&s.offer, &s.free, r, &stamp));
                    if stats.last_unused.len() > LAST_UNUSED_OFFERS {
                        stats.last_unused.pop_front();
                    }
                }
                let Some((idx, claim)) = chosen else { break };
                let slot = &mut slots[idx];
                slot.free.subtract(&claim.resources);
                let task_id = format!("{}.instance-{}._app.1", path::safe_id(&app.id), self.uuid());
                let info = build_task(
                    app,
                    &task_id,
                    &slot.offer,
                    &slot.role,
                    &claim.resources,
                    &claim.ports,
                );
                let inst = Instance {
                    task_id: task_id.clone(),
                    app_id: app.id.clone(),
                    version: app.version.clone(),
                    config_version: app.version_info.last_config_change_at.clone(),
                    agent_id: slot.offer.agent_id.as_str().to_string(),
                    host: slot.offer.hostname.clone(),
                    attributes: slot.attrs.clone(),
                    ports: claim.ports.clone(),
                    state: TaskState::Staging,
                    staged_at: stamp.clone(),
                    started_at: None,
                    healthy: None,
                    kill_requested: false,
                    health_failures: 0,
                    last_health_failure: None,
                    last_health_success: None,
                    ready: None,
                    running_since_ms: None,
                    unreachable_since_ms: None,
                    inactive: false,
                    ip_addresses: Vec::new(),
                };
                slot.tasks.push(info);
                placed.add(&inst.host, &inst.attributes);
                cpus[idx] = slot.free.scalar_millis("cpus");
                let on_host = placed.on_host(&inst.host);
                let moved: Vec<usize> = (0..slots.len())
                    .filter(|j| *j == idx || slots[*j].offer.hostname == inst.host)
                    .collect();
                for j in moved {
                    load[j] = on_host;
                    placement::reposition(&mut ord, strategy, &load, &cpus, j);
                }
                self.store(Write::Instance(inst.clone()));
                self.instances.insert(task_id, inst);
                need -= 1;
            }
        }
        let waiting = self.apps.values().any(|a| self.needed(a) > 0);
        for s in slots {
            if s.tasks.is_empty() {
                let refuse = if waiting { DECLINE_BUSY } else { DECLINE_IDLE };
                self.call(Call {
                    decline: Some(Decline {
                        offer_ids: vec![s.offer.id.clone()],
                        filters: Some(Filters {
                            refuse_seconds: Some(refuse),
                        }),
                    }),
                    ..Call::new(CallType::Decline, None)
                });
            } else {
                self.call(Call {
                    accept: Some(Accept {
                        offer_ids: vec![s.offer.id.clone()],
                        operations: vec![Operation {
                            kind: "LAUNCH".into(),
                            launch: Some(Launch {
                                task_infos: s.tasks,
                            }),
                            launch_group: None,
                        }],
                        filters: Some(Filters {
                            refuse_seconds: Some(DECLINE_BUSY),
                        }),
                    }),
                    ..Call::new(CallType::Accept, None)
                });
            }
        }
        self.converge(now);
    }
}

/// An attribute's value as constraints compare it (text form).
/// Mesos's `TaskStatus.unreachable_time`, in wall-clock millis.
fn unreachable_time_ms(s: &TaskStatus) -> Option<i64> {
    let ns = s
        .extra
        .get("unreachable_time")?
        .get("nanoseconds")?
        .as_i64()?;
    Some(ns / 1_000_000)
}

fn attr_text(v: &mantle_model::AttributeValue) -> String {
    use mantle_model::AttributeValue;
    match v {
        AttributeValue::Text(t) => t.clone(),
        AttributeValue::Scalar(x) => format!("{x}"),
        AttributeValue::Ranges(r) => r
            .pieces()
            .iter()
            .map(|(b, e)| format!("{b}-{e}"))
            .collect::<Vec<_>>()
            .join(","),
        AttributeValue::Set(items) => items.join(","),
    }
}

/// Marathon's instance condition for a Mesos state.
fn condition(s: TaskState) -> &'static str {
    match s {
        TaskState::Staging => "Staging",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Killing => "Killing",
        TaskState::Finished => "Finished",
        TaskState::Failed => "Failed",
        TaskState::Killed => "Killed",
        TaskState::Error => "Error",
        TaskState::Lost | TaskState::Dropped => "Dropped",
        TaskState::Unreachable => "Unreachable",
        TaskState::Gone | TaskState::GoneByOperator => "Gone",
        TaskState::Unknown => "Unknown",
    }
}

fn var(name: impl Into<String>, value: impl Into<String>) -> Variable {
    Variable {
        name: name.into(),
        value: Some(value.into()),
        extra: Default::default(),
    }
}

/// Scala's `Double.toString` for the values Marathon puts in env (`0.1`, `128.0`).
fn double(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Label keys as env names: runs of other characters become `_`, then upper case.
fn sanitize_label_key(k: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in k.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_uppercase());
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// The Mesos TaskInfo Marathon would build for one instance.
pub fn build_task(
    app: &AppDefinition,
    task_id: &str,
    offer: &Offer,
    role: &str,
    resources: &Resources,
    ports: &[u32],
) -> TaskInfo {
    let specs = app.port_specs();
    let mut env: Vec<Variable> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        env.push(var(format!("PORT{i}"), p.to_string()));
        if let Some(name) = specs.get(i).and_then(|d| d.name.as_ref()) {
            env.push(var(
                format!("PORT_{}", name.to_uppercase().replace('-', "_")),
                p.to_string(),
            ));
        }
        // The port asked for (a definition's port, a mapping's container port) names the host
        // port it got.
        if let Some(requested) = specs.get(i).map(|d| d.requested).filter(|p| *p != 0) {
            env.push(var(format!("PORT_{requested}"), p.to_string()));
        }
    }
    if let Some(p) = ports.first() {
        env.push(var("PORT", p.to_string()));
    }
    if !ports.is_empty() {
        env.push(var(
            "PORTS",
            ports
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ));
    }
    env.push(var("HOST", offer.hostname.clone()));
    env.push(var("MARATHON_APP_ID", app.id.clone()));
    env.push(var("MARATHON_APP_VERSION", app.version.clone()));
    env.push(var("MARATHON_APP_RESOURCE_CPUS", double(app.cpus)));
    env.push(var("MARATHON_APP_RESOURCE_MEM", double(app.mem)));
    env.push(var("MARATHON_APP_RESOURCE_DISK", double(app.disk)));
    env.push(var("MARATHON_APP_RESOURCE_GPUS", app.gpus.to_string()));
    if let Some(img) = app
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .map(|d| d.image.clone())
    {
        env.push(var("MARATHON_APP_DOCKER_IMAGE", img));
    }
    let labels: Vec<(String, &String)> = app
        .labels
        .iter()
        .filter(|(k, v)| k.len() < 493 && v.len() < 512)
        .map(|(k, v)| (sanitize_label_key(k), v))
        .collect();
    env.push(var(
        "MARATHON_APP_LABELS",
        labels
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
            .join(" "),
    ));
    for (k, v) in &labels {
        env.push(var(format!("MARATHON_APP_LABEL_{k}"), (*v).clone()));
    }
    // The app's own env comes last and wins.
    env.retain(|v| !app.env.contains_key(&v.name));
    env.extend(app.env.iter().map(|(k, v)| var(k, v)));
    let environment = Some(Environment { variables: env });
    let command = match (&app.cmd, &app.args) {
        (Some(cmd), _) => CommandInfo {
            shell: Some(true),
            value: Some(cmd.clone()),
            arguments: Vec::new(),
            environment,
            user: app.user.clone(),
            extra: Default::default(),
        },
        (None, Some(args)) => CommandInfo {
            shell: Some(false),
            value: args.first().cloned(),
            arguments: args.clone(),
            environment,
            user: app.user.clone(),
            extra: Default::default(),
        },
        (None, None) => CommandInfo {
            shell: Some(false),
            value: None,
            arguments: Vec::new(),
            environment,
            user: app.user.clone(),
            extra: Default::default(),
        },
    };
    let mut command = command;
    if !app.fetch.is_empty() {
        let uris: Vec<Value> = app
            .fetch
            .iter()
            .map(|f| json!({"value": f.uri, "extract": f.extract, "executable": f.executable, "cache": f.cache}))
            .collect();
        command.extra.insert("uris".into(), Value::Array(uris));
    }
    let name = path::task_name(&app.id);
    let mut extra: serde_json::Map<String, Value> = serde_json::Map::new();
    let labels: Vec<Value> = app
        .labels
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    if !labels.is_empty() {
        extra.insert("labels".into(), json!({ "labels": labels }));
    }
    let port_list: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let spec = specs.get(i);
            let protocol = spec
                .and_then(|d| d.protocols.first().cloned())
                .unwrap_or_else(|| "tcp".into());
            let mut v = json!({"number": p, "protocol": protocol});
            if let (Some(n), Some(m)) = (spec.and_then(|d| d.name.clone()), v.as_object_mut()) {
                m.insert("name".into(), json!(n));
            }
            v
        })
        .collect();
    extra.insert(
        "discovery".into(),
        json!({"visibility": "FRAMEWORK", "name": name, "ports": {"ports": port_list}}),
    );
    if let Some(c) = app.container.as_ref().filter(|c| c.kind == "MESOS") {
        let mut container = json!({"type": "MESOS"});
        // A Docker image for the `mesos` containerizer, as Marathon asks for one (the agent
        // says plainly when it cannot run images).
        if let Some(d) = &c.docker {
            container["mesos"] = json!({"image": {"type": "DOCKER", "docker": {"name": d.image}}});
        }
        // A network of its own is joined through the agent's CNI isolator, as Marathon asks
        // Mesos: `container/bridge` is Mesos's `mesos-bridge` network; the port mappings and
        // the network's labels go with it for its plugins.
        // The networks it joins, each with its labels: every `container` network, or Mesos's
        // `mesos-bridge` for `container/bridge`.
        let networks: Vec<(String, Option<&Value>)> = match app.network() {
            Network::Host => Vec::new(),
            Network::Bridge => vec![("mesos-bridge".to_string(), None)],
            Network::Container(_) => app
                .networks
                .iter()
                .filter_map(|n| {
                    let name = n.get("name").and_then(Value::as_str)?;
                    Some((name.to_string(), n.get("labels")))
                })
                .collect(),
        };
        let infos: Vec<Value> = networks
            .iter()
            .map(|(name, labels)| {
                let mut info = json!({ "name": name });
                let mappings = wire_port_mappings(&specs, ports, Some(name));
                if !mappings.is_empty() {
                    info["port_mappings"] = json!(mappings);
                }
                let labels: Vec<Value> = labels
                    .and_then(|l| l.as_object())
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some(json!({"key": k, "value": v.as_str()?})))
                    .collect();
                if !labels.is_empty() {
                    info["labels"] = json!({ "labels": labels });
                }
                info
            })
            .collect();
        if !infos.is_empty() {
            container["network_infos"] = json!(infos);
        }
        if container.as_object().is_some_and(|o| o.len() > 1) {
            extra.insert("container".into(), container);
        }
    }
    if let Some(c) = app.container.as_ref().filter(|c| c.kind == "DOCKER") {
        if let Some(d) = &c.docker {
            let mut container = json!({"type": c.kind, "docker": {"image": d.image, "network": "HOST", "force_pull_image": d.force_pull_image, "privileged": d.privileged}});
            let network = app.network();
            if network != Network::Host {
                // Each mapping with a host port is published from the host port it got (0 as
                // the container port: the same port), once per protocol.
                let mappings = wire_port_mappings(&specs, ports, None);
                container["docker"]["port_mappings"] = json!(mappings);
            }
            match network {
                Network::Host => {}
                Network::Bridge => container["docker"]["network"] = json!("BRIDGE"),
                Network::Container(name) => {
                    container["docker"]["network"] = json!("USER");
                    container["network_infos"] = json!([{ "name": name }]);
                }
            }
            extra.insert("container".into(), container);
        }
    }
    if let Some(h) = app.health_checks.iter().find(|h| !h.is_marathon_level()) {
        // A check run by the executor inside a container's own network reaches the
        // container's port; with host networking, the host port.
        let check_ports: Vec<u32> = specs
            .iter()
            .zip(ports)
            .map(|(spec, host)| spec.port_inside(*host))
            .collect();
        extra.insert("health_check".into(), mesos_health_check(h, &check_ports));
    }
    TaskInfo {
        name,
        task_id: TaskId::new(task_id),
        agent_id: offer.agent_id.clone(),
        resources: resources_to_wire(resources, Some(role)),
        executor: None,
        command: Some(command),
        kill_policy: app.task_kill_grace_period_seconds.map(|g| KillPolicy {
            grace_period: Some(DurationInfo {
                nanoseconds: (g * 1e9) as i64,
            }),
        }),
        data: None,
        extra: extra.into_iter().collect(),
    }
}

/// A Mesos `HealthCheck` for MESOS_HTTP/MESOS_TCP/COMMAND checks, run by the executor.
fn mesos_health_check(h: &crate::app::HealthCheck, ports: &[u32]) -> Value {
    let port = h
        .port
        .or_else(|| ports.get(h.port_index.unwrap_or(0) as usize).copied())
        .unwrap_or(0);
    let mut v = json!({
        "delay_seconds": h.delay_seconds, "interval_seconds": h.interval_seconds,
        "timeout_seconds": h.timeout_seconds, "consecutive_failures": h.max_consecutive_failures,
        "grace_period_seconds": h.grace_period_seconds,
    });
    if let Some(m) = v.as_object_mut() {
        match h.protocol.as_str() {
            "MESOS_HTTP" | "MESOS_HTTPS" => {
                m.insert("type".into(), json!("HTTP"));
                m.insert(
                    "http".into(),
                    json!({"port": port, "path": h.path.clone().unwrap_or_else(|| "/".into()),
                           "scheme": if h.protocol == "MESOS_HTTPS" { "https" } else { "http" }}),
                );
            }
            "MESOS_TCP" => {
                m.insert("type".into(), json!("TCP"));
                m.insert("tcp".into(), json!({ "port": port }));
            }
            _ => {
                m.insert("type".into(), json!("COMMAND"));
                m.insert(
                    "command".into(),
                    json!({"shell": true, "value": h.command.clone().unwrap_or_default()}),
                );
            }
        }
    }
    v
}

mod timers;

/// Mesos's `port_mappings` for an app's port specs and the host ports they got: one per
/// mapping and protocol, from its host port to its container port (0: the host port); with
/// `network`, only the mappings of that network (those naming it, or naming none).
fn wire_port_mappings(specs: &[app::PortSpec], ports: &[u32], network: Option<&str>) -> Vec<Value> {
    specs
        .iter()
        .zip(ports)
        .filter(|(spec, _)| {
            network.is_none_or(|n| {
                spec.network_names.is_empty() || spec.network_names.iter().any(|x| x == n)
            })
        })
        .flat_map(|(spec, host)| {
            let inside = spec.port_inside(*host);
            spec.protocols.iter().map(move |protocol| {
                json!({"host_port": host, "container_port": inside, "protocol": protocol})
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
