//! The app definition: Marathon's JSON in, validated into [`AppDefinition`], and back out with
//! exactly the fields Marathon emits.
//!
//! Parsing walks the JSON by hand instead of deriving `Deserialize`, so that every problem is
//! reported at its own JSON path (`/cpus`, `/constraints/0`, ...) in one 422 answer, the way
//! Marathon's validators do, instead of stopping at the first type error.

use crate::path;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One field's problems, as in Marathon's `{"path": "/cpus", "errors": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub path: String,
    pub errors: Vec<String>,
}

/// Constraint operators Marathon knows.
pub const OPERATORS: [&str; 7] = [
    "UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub field: String,
    pub operator: String,
    pub value: Option<String>,
}

impl Constraint {
    pub fn to_json(&self) -> Value {
        let mut v = vec![json!(self.field), json!(self.operator)];
        if let Some(x) = &self.value {
            v.push(json!(x));
        }
        Value::Array(v)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinition {
    pub port: u32,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// An app's network mode (`networks[0].mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Host,
    /// `container/bridge`: Docker's bridge network, or for a MESOS container Mesos's
    /// `mesos-bridge` CNI network.
    Bridge,
    /// `container`: the named network (a Docker user-defined one, or a CNI network of the
    /// agents for a MESOS container).
    Container(Option<String>),
}

/// One `container.portMappings` entry, one protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// 0: the same as the host port.
    pub container_port: u32,
    /// `None`: no host port (container networking only); `Some(0)`: any.
    pub host_port: Option<u32>,
    pub service_port: u32,
    /// `tcp`, `udp`, or both (`udp,tcp`).
    pub protocols: Vec<String>,
    pub name: Option<String>,
    /// The container networks it applies to (`networkNames`); empty: all of them.
    pub network_names: Vec<String>,
}

/// A host port a task needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The port the app asked for: a port definition's (service) port, or a mapping's container
    /// port; when non-zero, `PORT_<requested>` names the host port in the task's environment.
    pub requested: u32,
    /// A fixed host port (`requirePorts`, or a mapping's non-zero `hostPort`); `None`: any.
    pub host_port: Option<u32>,
    /// With container networking, the port inside the container it maps to (0: the same).
    pub container_port: Option<u32>,
    pub name: Option<String>,
    /// `tcp`, `udp`, or both.
    pub protocols: Vec<String>,
    /// A mapping's container networks (`networkNames`); empty: all of them.
    pub network_names: Vec<String>,
}

impl PortSpec {
    /// The port inside the container for host port `host`: the mapping's container port, or
    /// the host port itself (no mapping, or container port 0).
    pub fn port_inside(&self, host: u32) -> u32 {
        self.container_port.filter(|p| *p != 0).unwrap_or(host)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchUri {
    pub uri: String,
    pub extract: bool,
    pub executable: bool,
    pub cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    pub minimum_health_capacity: f64,
    pub maximum_over_capacity: f64,
}

/// What to do with instances whose agent is unreachable (Marathon's `unreachableStrategy`).
/// In JSON either the string `"disabled"` or `{inactiveAfterSeconds, expungeAfterSeconds}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UnreachableStrategy {
    /// Unreachable instances are kept (and counted) until they come back or end.
    Disabled(Disabled),
    /// After `inactive_after_seconds` unreachable, an instance stops counting and is replaced;
    /// after `expunge_after_seconds` it is forgotten (and killed if it ever comes back).
    #[serde(rename_all = "camelCase")]
    Enabled {
        inactive_after_seconds: u64,
        expunge_after_seconds: u64,
    },
}

/// The `"disabled"` JSON string.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Disabled {
    #[serde(rename = "disabled")]
    Disabled,
}

impl UnreachableStrategy {
    /// Marathon 1.10's default (its RAML): replace at once, forget at once.
    pub const DEFAULT: UnreachableStrategy = UnreachableStrategy::Enabled {
        inactive_after_seconds: 0,
        expunge_after_seconds: 0,
    };

    /// `(inactive after, expunge after)` in milliseconds, or `None` when disabled.
    pub fn timeouts_ms(&self) -> Option<(u64, u64)> {
        match *self {
            UnreachableStrategy::Disabled(_) => None,
            UnreachableStrategy::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => Some((
                inactive_after_seconds.saturating_mul(1000),
                expunge_after_seconds.saturating_mul(1000),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub grace_period_seconds: u64,
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    pub max_consecutive_failures: u32,
    #[serde(default)]
    pub ignore_http1xx: bool,
    #[serde(default = "default_delay")]
    pub delay_seconds: u64,
}

fn default_delay() -> u64 {
    15
}

/// A Marathon readiness check: during a deployment a new task counts as ready (may replace
/// an old one) only once its HTTP endpoint answers one of `httpStatusCodesForReady`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheck {
    pub name: String,
    pub protocol: String,
    pub path: String,
    pub port_name: String,
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    pub http_status_codes_for_ready: Vec<u16>,
    pub preserve_last_response: bool,
}

impl HealthCheck {
    /// Marathon's JSON for a health check (`command` nests as `{"value": ...}`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "gracePeriodSeconds".into(),
            json!(self.grace_period_seconds),
        );
        m.insert("intervalSeconds".into(), json!(self.interval_seconds));
        m.insert(
            "maxConsecutiveFailures".into(),
            json!(self.max_consecutive_failures),
        );
        m.insert("timeoutSeconds".into(), json!(self.timeout_seconds));
        m.insert("delaySeconds".into(), json!(self.delay_seconds));
        m.insert("protocol".into(), json!(self.protocol));
        if let Some(p) = &self.path {
            m.insert("path".into(), json!(p));
        }
        if let Some(p) = self.port_index {
            m.insert("portIndex".into(), json!(p));
        }
        if let Some(p) = self.port {
            m.insert("port".into(), json!(p));
        }
        if let Some(c) = &self.command {
            m.insert("command".into(), json!({ "value": c }));
        }
        if self.protocol.contains("HTTP") {
            m.insert("ignoreHttp1xx".into(), json!(self.ignore_http1xx));
        }
        Value::Object(m)
    }

    /// Whether the check is one the scheduler itself runs (Marathon-level HTTP/HTTPS/TCP).
    pub fn is_marathon_level(&self) -> bool {
        matches!(self.protocol.as_str(), "HTTP" | "HTTPS" | "TCP")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    pub image: String,
    #[serde(default)]
    pub force_pull_image: bool,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub parameters: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Docker>,
    #[serde(default)]
    pub volumes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub last_scaling_at: String,
    pub last_config_change_at: String,
}

/// A validated app definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppDefinition {
    pub id: String,
    pub cmd: Option<String>,
    pub args: Option<Vec<String>>,
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
    pub instances: u32,
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    pub gpus: u32,
    pub executor: String,
    pub constraints: Vec<Constraint>,
    pub fetch: Vec<FetchUri>,
    pub store_urls: Vec<String>,
    pub backoff_seconds: f64,
    pub backoff_factor: f64,
    pub max_launch_delay_seconds: f64,
    pub container: Option<Container>,
    pub health_checks: Vec<HealthCheck>,
    pub readiness_checks: Vec<ReadinessCheck>,
    pub dependencies: Vec<String>,
    pub upgrade_strategy: UpgradeStrategy,
    pub labels: BTreeMap<String, String>,
    pub accepted_resource_roles: Option<Vec<String>>,
    pub require_ports: bool,
    pub port_definitions: Vec<PortDefinition>,
    pub kill_selection: String,
    pub unreachable_strategy: UnreachableStrategy,
    pub task_kill_grace_period_seconds: Option<f64>,
    pub networks: Vec<Value>,
    pub version: String,
    pub version_info: VersionInfo,
}

impl AppDefinition {
    /// Whether `other` differs from `self` only in fields that need no restart.
    pub fn same_config(&self, other: &AppDefinition) -> bool {
        let mut a = self.clone();
        let mut b = other.clone();
        a.instances = 0;
        b.instances = 0;
        a.version = String::new();
        b.version = String::new();
        a.version_info = b.version_info.clone();
        a == b
    }

    /// Number of host ports a task of this app needs.
    pub fn port_count(&self) -> usize {
        self.port_specs().len()
    }

    /// The app's network (its first `networks` entry; Marathon does not mix modes).
    pub fn network(&self) -> Network {
        let Some(first) = self.networks.first() else {
            return Network::Host;
        };
        match first
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("container")
        {
            "host" => Network::Host,
            "container/bridge" => Network::Bridge,
            _ => Network::Container(
                first
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
        }
    }

    /// The container's port mappings (`container.portMappings`).
    pub fn port_mappings(&self) -> Vec<PortMapping> {
        let raw = self.container.as_ref().map(|c| c.port_mappings.as_slice());
        raw.unwrap_or_default()
            .iter()
            .map(|m| {
                let int = |k: &str| {
                    m.get(k)
                        .and_then(Value::as_u64)
                        .and_then(|p| u32::try_from(p).ok())
                };
                PortMapping {
                    container_port: int("containerPort").unwrap_or(0),
                    host_port: int("hostPort"),
                    service_port: int("servicePort").unwrap_or(0),
                    protocols: m
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("tcp")
                        .split(',')
                        .map(|p| p.trim().to_string())
                        .collect(),
                    name: m.get("name").and_then(Value::as_str).map(str::to_string),
                    network_names: m
                        .get("networkNames")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                }
            })
            .collect()
    }

    /// One entry per host port a task needs, in the order of the task's `ports` (and of
    /// `PORT0`, `PORT1`, ...): the port definitions with host networking, the port mappings
    /// with container networking.
    pub fn port_specs(&self) -> Vec<PortSpec> {
        if self.network() == Network::Host {
            return self
                .port_definitions
                .iter()
                .map(|d| PortSpec {
                    requested: d.port,
                    host_port: self.require_ports.then_some(d.port),
                    container_port: None,
                    name: d.name.clone(),
                    protocols: d.protocol.split(',').map(str::to_string).collect(),
                    network_names: Vec::new(),
                })
                .collect();
        }
        self.port_mappings()
            .into_iter()
            .map(|m| {
                // A missing `hostPort` is 0, any free port. (Marathon gives a mapping on a
                // named network no host port then; here every mapping has one, so `portIndex`,
                // `PORT<i>` and the task's `ports` always line up.)
                PortSpec {
                    requested: m.container_port,
                    host_port: m.host_port.filter(|p| *p != 0),
                    container_port: Some(m.container_port),
                    name: m.name,
                    protocols: m.protocols,
                    network_names: m.network_names,
                }
            })
            .collect()
    }

    /// The app as Marathon 1.10 renders it (without the status fields GET adds): optional
    /// fields only when set, empty collections omitted except the ones Marathon always writes.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("id", json!(self.id));
        if let Some(r) = self
            .accepted_resource_roles
            .as_ref()
            .filter(|r| !r.is_empty())
        {
            put("acceptedResourceRoles", json!(r));
        }
        if let Some(a) = &self.args {
            put("args", json!(a));
        }
        put("backoffFactor", json!(self.backoff_factor));
        put("backoffSeconds", number(self.backoff_seconds));
        if let Some(c) = &self.cmd {
            put("cmd", json!(c));
        }
        if !self.constraints.is_empty() {
            put(
                "constraints",
                Value::Array(self.constraints.iter().map(Constraint::to_json).collect()),
            );
        }
        if let Some(c) = &self.container {
            put("container", serde_json::to_value(c).unwrap_or(Value::Null));
        }
        put("cpus", json!(self.cpus));
        if !self.dependencies.is_empty() {
            put("dependencies", json!(self.dependencies));
        }
        put("disk", json!(self.disk));
        if !self.env.is_empty() {
            put("env", json!(self.env));
        }
        put("executor", json!(self.executor));
        if !self.fetch.is_empty() {
            put(
                "fetch",
                serde_json::to_value(&self.fetch).unwrap_or(Value::Null),
            );
        }
        if !self.health_checks.is_empty() {
            put(
                "healthChecks",
                Value::Array(
                    self.health_checks
                        .iter()
                        .map(HealthCheck::to_json)
                        .collect(),
                ),
            );
        }
        put("instances", json!(self.instances));
        put("labels", json!(self.labels));
        put(
            "maxLaunchDelaySeconds",
            number(self.max_launch_delay_seconds),
        );
        put("mem", json!(self.mem));
        put("gpus", json!(self.gpus));
        put("networks", json!(self.networks));
        put(
            "portDefinitions",
            serde_json::to_value(&self.port_definitions).unwrap_or(Value::Null),
        );
        if !self.readiness_checks.is_empty() {
            put("readinessChecks", json!(self.readiness_checks));
        }
        put("requirePorts", json!(self.require_ports));
        if let Some(t) = self.task_kill_grace_period_seconds {
            put("taskKillGracePeriodSeconds", number(t));
        }
        put(
            "upgradeStrategy",
            serde_json::to_value(&self.upgrade_strategy).unwrap_or(Value::Null),
        );
        if let Some(u) = &self.user {
            put("user", json!(u));
        }
        put("version", json!(self.version));
        put(
            "versionInfo",
            serde_json::to_value(&self.version_info).unwrap_or(Value::Null),
        );
        put("killSelection", json!(self.kill_selection));
        put(
            "unreachableStrategy",
            serde_json::to_value(self.unreachable_strategy).unwrap_or(Value::Null),
        );
        put("role", json!("*"));
        Value::Object(m)
    }
}

/// Integral values as JSON integers (Marathon writes `"backoffSeconds": 1`).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// Collects violations while reading a JSON object.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    prefix: String,
    errs: &'a mut Vec<Violation>,
}

fn push(errs: &mut Vec<Violation>, path: String, msg: impl Into<String>) {
    let msg = msg.into();
    if let Some(v) = errs.iter_mut().find(|v| v.path == path) {
        v.errors.push(msg);
    } else {
        errs.push(Violation {
            path,
            errors: vec![msg],
        });
    }
}

impl<'a> Reader<'a> {
    fn path(&self, key: &str) -> String {
        format!("{}/{}", self.prefix, key)
    }
    fn err(&mut self, key: &str, msg: impl Into<String>) {
        let p = self.path(key);
        push(self.errs, p, msg);
    }
    fn present(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    fn f64(&mut self, key: &str, default: f64) -> f64 {
        match self.present(key) {
            None => default,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => x,
                _ => {
                    self.err(key, "error.expected.jsnumber");
                    default
                }
            },
            Some(_) => {
                self.err(key, "error.expected.jsnumber");
                default
            }
        }
    }
    fn int(&mut self, key: &str, default: i64) -> i64 {
        match self.present(key) {
            None => default,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(x) => x,
                None => match n.as_f64() {
                    Some(x) if x.fract() == 0.0 && x.abs() < 9e15 => x as i64,
                    _ => {
                        self.err(key, "error.expected.jsnumber");
                        default
                    }
                },
            },
            Some(_) => {
                self.err(key, "error.expected.jsnumber");
                default
            }
        }
    }
    fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.present(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(key, "error.expected.jsboolean");
                default
            }
        }
    }
    fn string(&mut self, key: &str) -> Option<String> {
        match self.present(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err(key, "error.expected.jsstring");
                None
            }
        }
    }
    fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        match self.present(key) {
            None => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    match it {
                        Value::String(s) => out.push(s.clone()),
                        _ => self.err(&format!("{key}/{i}"), "error.expected.jsstring"),
                    }
                }
                Some(out)
            }
            Some(_) => {
                self.err(key, "error.expected.jsarray");
                None
            }
        }
    }
    fn string_map(&mut self, key: &str) -> BTreeMap<String, String> {
        match self.present(key) {
            None => BTreeMap::new(),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        Value::Number(n) => {
                            out.insert(k.clone(), n.to_string());
                        }
                        Value::Bool(b) => {
                            out.insert(k.clone(), b.to_string());
                        }
                        _ => self.err(&format!("{key}/{k}"), "error.expected.jsstring"),
                    }
                }
                out
            }
            Some(_) => {
                self.err(key, "error.expected.jsobject");
                BTreeMap::new()
            }
        }
    }
    fn array(&mut self, key: &str) -> Vec<&'a Value> {
        match self.present(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(_) => {
                self.err(key, "error.expected.jsarray");
                Vec::new()
            }
        }
    }
    fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.present(key) {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.err(key, "error.expected.jsobject");
                None
            }
        }
    }
    fn sub<'b>(&'b mut self, obj: &'b Map<String, Value>, prefix: String) -> Reader<'b> {
        Reader {
            obj,
            prefix,
            errs: self.errs,
        }
    }
}

/// Parses and validates an app definition. `base` resolves relative ids; `version` is the
/// timestamp this definition gets. Returns every violation at once on failure.
pub fn parse(body: &Value, base: &str, version: &str) -> Result<AppDefinition, Vec<Violation>> {
    let mut errs = Vec::new();
    let body = &with_legacy_networking_migrated(body);
    let Value::Object(obj) = body else {
        return Err(vec![Violation {
            path: "/".into(),
            errors: vec!["error.expected.jsobject".into()],
        }]);
    };
    let mut r = Reader {
        obj,
        prefix: String::new(),
        errs: &mut errs,
    };
    let raw_id = r.string("id");
    let id = match &raw_id {
        None => {
            r.err("id", "error.path.missing");
            String::new()
        }
        Some(s) => {
            let id = path::canonical(s, base);
            if !path::is_valid_app_id(&id) {
                r.err(
                    "id",
                    format!(
                        "'{}' contains invalid characters (allowed: lowercase letters, digits, hyphens, '.', '..')",
                        s
                    ),
                );
            }
            id
        }
    };
    let cmd = r.string("cmd").filter(|s| !s.is_empty());
    let args = r.strings("args").filter(|a| !a.is_empty());
    let user = r.string("user");
    let env = r.string_map("env");
    let instances = r.int("instances", 1);
    if instances < 0 {
        r.err("instances", format!("got {instances}, expected 0 or more"));
    }
    let cpus = r.f64("cpus", 1.0);
    let mem = r.f64("mem", 128.0);
    let disk = r.f64("disk", 0.0);
    let gpus = r.int("gpus", 0);
    for (key, v) in [("cpus", cpus), ("mem", mem), ("disk", disk)] {
        if v < 0.0 {
            r.err(key, format!("got {v}, expected 0.0 or more"));
        }
    }
    if gpus < 0 {
        r.err("gpus", format!("got {gpus}, expected 0 or more"));
    }
    let executor = r.string("executor").unwrap_or_default();
    let mut constraints = Vec::new();
    for (i, c) in r.array("constraints").into_iter().enumerate() {
        let p = format!("constraints/{i}");
        let parts: Option<Vec<String>> = c.as_array().and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        });
        match parts {
            Some(parts) if (2..=3).contains(&parts.len()) => {
                match validate_constraint(&parts) {
                    Ok(c) => constraints.push(c),
                    Err(e) => r.err(&p, e),
                }
            }
            _ => r.err(
                &p,
                "Each constraint must be an array of two or three strings: [field, operator, value]",
            ),
        }
    }
    let mut fetch = Vec::new();
    for (i, uri) in r
        .strings("uris")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if uri.is_empty() {
            r.err(&format!("uris/{i}"), "URI must not be empty");
            continue;
        }
        let extract = is_archive(&uri);
        fetch.push(FetchUri {
            uri,
            extract,
            executable: false,
            cache: false,
            output_file: None,
        });
    }
    for (i, f) in r.array("fetch").into_iter().enumerate() {
        let p = format!("/fetch/{i}");
        let Some(m) = f.as_object() else {
            push(r.errs, p, "error.expected.jsobject");
            continue;
        };
        let mut s = r.sub(m, p.clone());
        let uri = s.string("uri");
        let extract = s.bool("extract", uri.as_deref().is_some_and(is_archive));
        let executable = s.bool("executable", false);
        let cache = s.bool("cache", false);
        let output_file = s.string("outputFile");
        match uri {
            Some(u) if !u.is_empty() => fetch.push(FetchUri {
                uri: u,
                extract,
                executable,
                cache,
                output_file,
            }),
            _ => s.err("uri", "error.path.missing"),
        }
    }
    let store_urls = r.strings("storeUrls").unwrap_or_default();
    let backoff_seconds = r.f64("backoffSeconds", 1.0);
    let backoff_factor = r.f64("backoffFactor", 1.15);
    let max_launch_delay_seconds = r.f64("maxLaunchDelaySeconds", 300.0);
    if backoff_seconds < 0.0 {
        r.err(
            "backoffSeconds",
            format!("got {backoff_seconds}, expected 0.0 or more"),
        );
    }
    if backoff_factor < 1.0 {
        r.err(
            "backoffFactor",
            format!("got {backoff_factor}, expected 1.0 or more"),
        );
    }
    if max_launch_delay_seconds < 0.0 {
        r.err(
            "maxLaunchDelaySeconds",
            format!("got {max_launch_delay_seconds}, expected 0.0 or more"),
        );
    }
    let mut container = r.object("container").and_then(|m| {
        let mut s = r.sub(m, "/container".into());
        parse_container(&mut s)
    });
    // Container networking without a container is a MESOS container with one port mapping,
    // as Marathon normalizes it.
    let off_host = r
        .present("networks")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .is_some_and(|n| n.get("mode").and_then(Value::as_str) != Some("host"));
    if container.is_none() && off_host && r.present("container").is_none() {
        container = Some(Container {
            kind: "MESOS".into(),
            docker: None,
            volumes: Vec::new(),
            port_mappings: vec![json!({"containerPort": 0, "name": "default"})],
        });
    }
    let mut health_checks = Vec::new();
    for (i, h) in r.array("healthChecks").into_iter().enumerate() {
        let p = format!("/healthChecks/{i}");
        let Some(m) = h.as_object() else {
            push(r.errs, p, "error.expected.jsobject");
            continue;
        };
        let mut s = r.sub(m, p);
        if let Some(h) = parse_health_check(&mut s) {
            health_checks.push(h);
        }
    }
    let mut readiness_checks = Vec::new();
    for (i, h) in r.array("readinessChecks").into_iter().enumerate() {
        let p = format!("/readinessChecks/{i}");
        let Some(m) = h.as_object() else {
            push(r.errs, p, "error.expected.jsobject");
            continue;
        };
        let mut s = r.sub(m, p);
        if let Some(c) = parse_readiness_check(&mut s) {
            readiness_checks.push(c);
        }
    }
    let dependencies: Vec<String> = r
        .strings("dependencies")
        .unwrap_or_default()
        .into_iter()
        .map(|d| path::canonical(&d, &path::parent(&id)))
        .collect();
    let upgrade_strategy = match r.object("upgradeStrategy") {
        None => UpgradeStrategy {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        },
        Some(m) => {
            let mut s = r.sub(m, "/upgradeStrategy".into());
            let min = s.f64("minimumHealthCapacity", 1.0);
            let max = s.f64("maximumOverCapacity", 1.0);
            if !(0.0..=1.0).contains(&min) {
                s.err(
                    "minimumHealthCapacity",
                    format!("got {min}, expected between 0.0 and 1.0"),
                );
            }
            if !(0.0..=1.0).contains(&max) {
                s.err(
                    "maximumOverCapacity",
                    format!("got {max}, expected between 0.0 and 1.0"),
                );
            }
            UpgradeStrategy {
                minimum_health_capacity: min,
                maximum_over_capacity: max,
            }
        }
    };
    let labels = r.string_map("labels");
    let accepted_resource_roles = r.strings("acceptedResourceRoles");
    let require_ports = r.bool("requirePorts", false);
    let mut port_definitions = Vec::new();
    if let Some(ports) = r.present("ports") {
        match ports.as_array() {
            Some(items) => {
                for (i, p) in items.iter().enumerate() {
                    match p.as_u64().filter(|p| *p <= 65535) {
                        Some(port) => port_definitions.push(PortDefinition {
                            port: port as u32,
                            protocol: "tcp".into(),
                            name: None,
                            labels: BTreeMap::new(),
                        }),
                        None => r.err(
                            &format!("ports/{i}"),
                            "must be a port number between 0 and 65535",
                        ),
                    }
                }
            }
            None => r.err("ports", "error.expected.jsarray"),
        }
    }
    let explicit_port_defs = r.present("portDefinitions").is_some();
    if explicit_port_defs {
        port_definitions.clear();
    }
    for (i, pd) in r.array("portDefinitions").into_iter().enumerate() {
        let p = format!("/portDefinitions/{i}");
        let Some(m) = pd.as_object() else {
            push(r.errs, p, "error.expected.jsobject");
            continue;
        };
        let mut s = r.sub(m, p);
        let port = s.int("port", 0);
        if !(0..=65535).contains(&port) {
            s.err("port", format!("got {port}, expected between 0 and 65535"));
        }
        let protocol = s.string("protocol").unwrap_or_else(|| "tcp".into());
        if !matches!(protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp") {
            s.err(
                "protocol",
                "Invalid protocol. Only 'udp', 'tcp' and 'udp,tcp' are allowed.",
            );
        }
        let name = s.string("name");
        let labels = s.string_map("labels");
        port_definitions.push(PortDefinition {
            port: port.clamp(0, 65535) as u32,
            protocol,
            name,
            labels,
        });
    }
    // The network mode decides which of portDefinitions and container.portMappings count.
    let host_networking = match r.present("networks").and_then(Value::as_array) {
        Some(n) if !n.is_empty() => {
            n[0].get("mode")
                .and_then(Value::as_str)
                .unwrap_or("container")
                == "host"
        }
        _ => true,
    };
    if !host_networking
        && (explicit_port_defs || r.present("ports").is_some())
        && !port_definitions.is_empty()
    {
        r.err(
            "portDefinitions",
            "port definitions are for host networking; with container networking use container.portMappings",
        );
    }
    if r.present("ports").is_none() && !explicit_port_defs && host_networking {
        // Marathon gives every app one port by default (with host networking).
        port_definitions.push(PortDefinition {
            port: 0,
            protocol: "tcp".into(),
            name: Some("default".into()),
            labels: BTreeMap::new(),
        });
    }
    if require_ports && port_definitions.iter().any(|p| p.port == 0) {
        r.err(
            "portDefinitions",
            "Ports must be non-zero when requirePorts is true",
        );
    }
    let kill_selection = r
        .string("killSelection")
        .unwrap_or_else(|| "YOUNGEST_FIRST".into());
    if !matches!(kill_selection.as_str(), "YOUNGEST_FIRST" | "OLDEST_FIRST") {
        r.err(
            "killSelection",
            "error.expected.jsstring: YOUNGEST_FIRST or OLDEST_FIRST",
        );
    }
    let unreachable_strategy = match r.present("unreachableStrategy") {
        Some(Value::String(s)) if s == "disabled" => {
            UnreachableStrategy::Disabled(Disabled::Disabled)
        }
        Some(Value::Object(m)) => {
            let mut s = r.sub(m, "/unreachableStrategy".into());
            let inactive = s.int("inactiveAfterSeconds", 0);
            let expunge = s.int("expungeAfterSeconds", 0);
            if inactive < 0 {
                s.err(
                    "inactiveAfterSeconds",
                    format!("got {inactive}, expected 0 or more"),
                );
            }
            if expunge < inactive {
                s.err(
                    "expungeAfterSeconds",
                    "expungeAfterSeconds must be greater than or equal to inactiveAfterSeconds",
                );
            }
            UnreachableStrategy::Enabled {
                inactive_after_seconds: inactive.max(0) as u64,
                expunge_after_seconds: expunge.max(0) as u64,
            }
        }
        None => UnreachableStrategy::DEFAULT,
        Some(_) => {
            r.err(
                "unreachableStrategy",
                "error.expected.jsobject or the string \"disabled\"",
            );
            UnreachableStrategy::DEFAULT
        }
    };
    let grace = r
        .present("taskKillGracePeriodSeconds")
        .map(|_| r.f64("taskKillGracePeriodSeconds", 0.0));
    if grace.is_some_and(|g| g < 0.0) {
        r.err("taskKillGracePeriodSeconds", "must be 0 or more");
    }
    let networks: Vec<Value> = match r.array("networks") {
        v if v.is_empty() => vec![json!({"mode": "host"})],
        v => v.into_iter().cloned().collect(),
    };
    for (i, n) in networks.iter().enumerate() {
        let mode = n.get("mode").and_then(Value::as_str).unwrap_or("container");
        if mode != "host" && mode != "container/bridge" && mode != "container" {
            push(
                r.errs,
                format!("/networks/{i}/mode"),
                "error.expected.jsstring: host, container or container/bridge",
            );
        }
        // Several networks are container networks of a MESOS container, as in Marathon.
        if i > 0 {
            let all_container = networks.iter().all(|n| {
                n.get("mode").and_then(Value::as_str).unwrap_or("container") == "container"
            });
            let mesos = container.as_ref().is_some_and(|c| c.kind == "MESOS");
            if !all_container {
                push(
                    r.errs,
                    format!("/networks/{i}"),
                    "host and container/bridge networking cannot be combined with other networks",
                );
            } else if !mesos {
                push(
                    r.errs,
                    format!("/networks/{i}"),
                    "a DOCKER container joins one network; several container networks need a MESOS container",
                );
            }
        }
        if mode == "container"
            && n.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            push(
                r.errs,
                format!("/networks/{i}/name"),
                "a container network needs the name of the network to join",
            );
        }
    }
    // A mapping's `networkNames` name the app's container networks; with several, a mapping
    // with a host port names exactly one (Marathon's rule).
    let container_networks: Vec<&str> = networks
        .iter()
        .filter(|n| n.get("mode").and_then(Value::as_str).unwrap_or("container") == "container")
        .filter_map(|n| n.get("name").and_then(Value::as_str))
        .collect();
    for (i, m) in container
        .iter()
        .flat_map(|c| c.port_mappings.iter())
        .enumerate()
    {
        let at = format!("/container/portMappings/{i}/networkNames");
        let names: Vec<&str> = match m.get("networkNames") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                push(r.errs, at, "error.expected.jsarray");
                continue;
            }
        };
        for n in &names {
            if !container_networks.contains(n) {
                push(
                    r.errs,
                    at.clone(),
                    format!("'{n}' is not one of the app's container networks"),
                );
            }
        }
        let host_port = m
            .get("hostPort")
            .and_then(Value::as_u64)
            .is_some_and(|p| p != 0);
        if container_networks.len() > 1 && host_port && names.len() != 1 {
            push(
                r.errs,
                at,
                "with several container networks, a mapping with a hostPort names exactly one of them",
            );
        }
    }
    // Shape checks that span fields.
    let port_names: Vec<&str> = if host_networking {
        port_definitions
            .iter()
            .filter_map(|p| p.name.as_deref())
            .collect()
    } else {
        container
            .iter()
            .flat_map(|c| c.port_mappings.iter())
            .filter_map(|m| m.get("name").and_then(Value::as_str))
            .collect()
    };
    for (i, c) in readiness_checks.iter().enumerate() {
        if !port_names.contains(&c.port_name.as_str()) {
            push(
                r.errs,
                format!("/readinessChecks/{i}/portName"),
                format!("No port definition named '{}'", c.port_name),
            );
        }
    }
    if (cmd.is_some() && args.is_some()) || (cmd.is_none() && args.is_none() && container.is_none())
    {
        push(
            r.errs,
            "/".into(),
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
        );
    }
    if errs.is_empty() {
        Ok(AppDefinition {
            id,
            cmd,
            args,
            user,
            env,
            instances: instances.max(0) as u32,
            cpus,
            mem,
            disk,
            gpus: gpus.max(0) as u32,
            executor,
            constraints,
            fetch,
            store_urls,
            backoff_seconds,
            backoff_factor,
            max_launch_delay_seconds,
            container,
            health_checks,
            readiness_checks,
            dependencies,
            upgrade_strategy,
            labels,
            accepted_resource_roles,
            require_ports,
            port_definitions,
            kill_selection,
            unreachable_strategy,
            task_kill_grace_period_seconds: grace,
            networks,
            version: version.to_string(),
            version_info: VersionInfo {
                last_scaling_at: version.to_string(),
                last_config_change_at: version.to_string(),
            },
        })
    } else {
        Err(errs)
    }
}

fn is_archive(uri: &str) -> bool {
    [
        ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip",
    ]
    .iter()
    .any(|s| uri.ends_with(s))
}

fn validate_constraint(parts: &[String]) -> Result<Constraint, String> {
    let field = parts[0].clone();
    let operator = parts[1].to_uppercase();
    let value = parts.get(2).cloned();
    if field.is_empty() {
        return Err("Missing field".into());
    }
    match operator.as_str() {
        "UNIQUE" => {
            if value.is_some() {
                return Err("Value specified but not used".into());
            }
        }
        "CLUSTER" | "IS" => {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err("Missing value".into());
            }
        }
        "GROUP_BY" => {
            if let Some(v) = &value {
                if v.parse::<u32>().is_err() {
                    return Err("Value was specified but is not a number".into());
                }
            }
        }
        "MAX_PER" => match &value {
            Some(v) if v.parse::<u32>().is_ok() => {}
            _ => return Err("Value was specified but is not a number".into()),
        },
        "LIKE" | "UNLIKE" => match &value {
            Some(v) => {
                if regex::Regex::new(&format!("^(?:{v})$")).is_err() {
                    return Err(format!("'{v}' is not a valid regular expression."));
                }
            }
            None => return Err("A regular expression value must be provided".into()),
        },
        _ => {
            return Err(format!(
                "Constraint operator must be one of the following: [{}]",
                OPERATORS.join(", ")
            ))
        }
    }
    Ok(Constraint {
        field,
        operator,
        value,
    })
}

/// The app with Marathon 1.4's networking fields moved to the 1.5 API, as Marathon migrates
/// them (clients such as marathon-python still send them): `container.docker.network`
/// becomes `networks` (`BRIDGE`: `container/bridge`; `USER`: `container` on
/// `ipAddress.networkName`; `HOST`: `host`) unless `networks` is given, and
/// `container.docker.portMappings` becomes `container.portMappings` unless that is given;
/// without a Docker network, IP-per-task (`ipAddress`) becomes a `container` network named
/// `ipAddress.networkName` and `ipAddress.discovery.ports` the port mappings.
fn with_legacy_networking_migrated(body: &Value) -> Value {
    let mut body = body.clone();
    let Some(app) = body.as_object_mut() else {
        return body;
    };
    let network_name = app
        .get("ipAddress")
        .and_then(|i| i.get("networkName"))
        .cloned();
    let has_networks = app
        .get("networks")
        .and_then(Value::as_array)
        .is_some_and(|n| !n.is_empty());
    // IP-per-task (`ipAddress`) without a Docker network: a container network (its name and
    // labels), with `ipAddress.discovery.ports` as the port mappings.
    let docker_network = app
        .get("container")
        .and_then(|c| c.get("docker"))
        .and_then(|d| d.get("network"))
        .is_some_and(|n| !n.is_null());
    let ip_address = app.get("ipAddress").filter(|v| v.is_object()).cloned();
    if let (Some(ip), false, false) = (ip_address, has_networks, docker_network) {
        let mut network = json!({"mode": "container"});
        for key in ["name", "labels"] {
            let from = if key == "name" { "networkName" } else { key };
            if let Some(v) = ip.get(from).filter(|v| !v.is_null()) {
                network[key] = v.clone();
            }
        }
        app.insert("networks".into(), json!([network]));
        let ports: Vec<Value> = ip
            .get("discovery")
            .and_then(|d| d.get("ports"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let mut m = json!({"containerPort": p.get("number")?});
                for key in ["name", "protocol", "labels"] {
                    if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
                        m[key] = v.clone();
                    }
                }
                Some(m)
            })
            .collect();
        if !ports.is_empty() {
            let container = app
                .entry("container")
                .or_insert_with(|| json!({"type": "MESOS"}));
            if let Some(c) = container.as_object_mut() {
                c.entry("portMappings").or_insert_with(|| json!(ports));
            }
        }
        return body;
    }
    let Some(container) = app.get_mut("container").and_then(Value::as_object_mut) else {
        return body;
    };
    let Some(docker) = container.get_mut("docker").and_then(Value::as_object_mut) else {
        return body;
    };
    let network = docker.remove("network");
    let mappings = docker.remove("portMappings");
    if let Some(mappings) = mappings.filter(|m| !m.is_null()) {
        container.entry("portMappings").or_insert(mappings);
    }
    let networks = match network.as_ref().and_then(Value::as_str) {
        Some("BRIDGE") => Some(json!([{"mode": "container/bridge"}])),
        Some("USER") => Some(match network_name {
            Some(name) => json!([{"mode": "container", "name": name}]),
            None => json!([{"mode": "container"}]),
        }),
        Some("HOST") => Some(json!([{"mode": "host"}])),
        _ => None,
    };
    if let (Some(networks), false) = (networks, has_networks) {
        app.insert("networks".into(), networks);
    }
    body
}

fn parse_container(s: &mut Reader<'_>) -> Option<Container> {
    let kind = s.string("type").unwrap_or_else(|| "MESOS".into());
    if kind != "MESOS" && kind != "DOCKER" {
        s.err("type", "error.expected.jsstring: MESOS or DOCKER");
        return None;
    }
    let docker = match s.object("docker") {
        None => None,
        Some(m) => {
            let mut d = s.sub(m, "/container/docker".into());
            let image = d.string("image");
            let force_pull_image = d.bool("forcePullImage", false);
            let privileged = d.bool("privileged", false);
            let parameters: Vec<Value> = d.array("parameters").into_iter().cloned().collect();
            match image {
                Some(image) if !image.is_empty() => Some(Docker {
                    image,
                    force_pull_image,
                    privileged,
                    parameters,
                }),
                _ => {
                    d.err("image", "must not be empty");
                    None
                }
            }
        }
    };
    if kind == "DOCKER" && docker.is_none() {
        s.err("docker", "docker must not be empty");
    }
    let volumes: Vec<Value> = s.array("volumes").into_iter().cloned().collect();
    let port_mappings: Vec<Value> = s.array("portMappings").into_iter().cloned().collect();
    let mut host_ports = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, m) in port_mappings.iter().enumerate() {
        let p = format!("{}/portMappings/{i}", s.prefix);
        if let Some(port) = m
            .get("hostPort")
            .and_then(Value::as_u64)
            .filter(|p| *p != 0)
        {
            if !host_ports.insert(port) {
                push(
                    s.errs,
                    format!("{p}/hostPort"),
                    format!("host port {port} is mapped twice"),
                );
            }
        }
        if let Some(name) = m.get("name").and_then(Value::as_str) {
            if !names.insert(name.to_string()) {
                push(
                    s.errs,
                    format!("{p}/name"),
                    format!("port name '{name}' is used twice"),
                );
            }
        }
        let Some(obj) = m.as_object() else {
            push(s.errs, p, "error.expected.jsobject");
            continue;
        };
        let mut m = s.sub(obj, p);
        for key in ["containerPort", "hostPort", "servicePort"] {
            if m.present(key).is_some() {
                let port = m.int(key, 0);
                if !(0..=65535).contains(&port) {
                    m.err(key, format!("got {port}, expected between 0 and 65535"));
                }
            }
        }
        let protocol = m.string("protocol").unwrap_or_else(|| "tcp".into());
        if !matches!(protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp") {
            m.err(
                "protocol",
                "Invalid protocol. Only 'udp', 'tcp' and 'udp,tcp' are allowed.",
            );
        }
    }
    Some(Container {
        kind,
        docker,
        volumes,
        port_mappings,
    })
}

fn parse_health_check(s: &mut Reader<'_>) -> Option<HealthCheck> {
    let protocol = s.string("protocol").unwrap_or_else(|| "HTTP".into());
    let known = [
        "HTTP",
        "HTTPS",
        "TCP",
        "COMMAND",
        "MESOS_HTTP",
        "MESOS_HTTPS",
        "MESOS_TCP",
    ];
    if !known.contains(&protocol.as_str()) {
        s.err(
            "protocol",
            format!("error.expected.jsstring: one of {}", known.join(", ")),
        );
        return None;
    }
    let path = s.string("path");
    let port_index = s.present("portIndex").map(|_| s.int("portIndex", 0));
    let port = s.present("port").map(|_| s.int("port", 0));
    let command = match s.present("command") {
        None => None,
        Some(Value::Object(m)) => m.get("value").and_then(Value::as_str).map(str::to_string),
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => {
            s.err("command", "error.expected.jsobject");
            None
        }
    };
    if protocol == "COMMAND" && command.is_none() {
        s.err(
            "command",
            "Health check with protocol COMMAND must have a command",
        );
    }
    let grace = s.int("gracePeriodSeconds", 300);
    let interval = s.int("intervalSeconds", 60);
    let timeout = s.int("timeoutSeconds", 20);
    let max_failures = s.int("maxConsecutiveFailures", 3);
    let delay = s.int("delaySeconds", 15);
    let ignore = s.bool("ignoreHttp1xx", false);
    for (k, v) in [
        ("gracePeriodSeconds", grace),
        ("maxConsecutiveFailures", max_failures),
        ("delaySeconds", delay),
    ] {
        if v < 0 {
            s.err(k, format!("got {v}, expected 0 or more"));
        }
    }
    for (k, v) in [("intervalSeconds", interval), ("timeoutSeconds", timeout)] {
        if v <= 0 {
            s.err(k, format!("got {v}, expected 1 or more"));
        }
    }
    if port_index.is_some_and(|p| p < 0) || port.is_some_and(|p| !(0..=65535).contains(&p)) {
        s.err("portIndex", "must be a valid port index or port");
    }
    Some(HealthCheck {
        protocol,
        path,
        port_index: port_index.map(|p| p.max(0) as u32),
        port: port.map(|p| p.clamp(0, 65535) as u32),
        command,
        grace_period_seconds: grace.max(0) as u64,
        interval_seconds: interval.max(1) as u64,
        timeout_seconds: timeout.max(1) as u64,
        max_consecutive_failures: max_failures.max(0) as u32,
        ignore_http1xx: ignore,
        delay_seconds: delay.max(0) as u64,
    })
}

fn parse_readiness_check(s: &mut Reader<'_>) -> Option<ReadinessCheck> {
    let protocol = s.string("protocol").unwrap_or_else(|| "HTTP".into());
    if protocol != "HTTP" && protocol != "HTTPS" {
        s.err("protocol", "error.expected.jsstring: one of HTTP, HTTPS");
        return None;
    }
    let interval = s.int("intervalSeconds", 30);
    let timeout = s.int("timeoutSeconds", 10);
    for (k, v) in [("intervalSeconds", interval), ("timeoutSeconds", timeout)] {
        if v <= 0 {
            s.err(k, format!("got {v}, expected 1 or more"));
        }
    }
    if timeout >= interval && interval > 0 {
        s.err("timeoutSeconds", "must be lower than intervalSeconds");
    }
    let codes = match s.present("httpStatusCodesForReady") {
        None => vec![200],
        Some(Value::Array(items)) => {
            let codes: Vec<u16> = items
                .iter()
                .filter_map(|c| c.as_u64().and_then(|c| u16::try_from(c).ok()))
                .filter(|c| (100..600).contains(c))
                .collect();
            if codes.len() != items.len() || codes.is_empty() {
                s.err(
                    "httpStatusCodesForReady",
                    "must be a non-empty list of HTTP status codes",
                );
            }
            codes
        }
        Some(_) => {
            s.err("httpStatusCodesForReady", "error.expected.jsarray");
            Vec::new()
        }
    };
    Some(ReadinessCheck {
        name: s.string("name").unwrap_or_else(|| "readinessCheck".into()),
        protocol,
        path: s.string("path").unwrap_or_else(|| "/".into()),
        port_name: s.string("portName").unwrap_or_else(|| "http-api".into()),
        interval_seconds: interval.max(1) as u64,
        timeout_seconds: timeout.max(1) as u64,
        http_status_codes_for_ready: codes,
        preserve_last_response: s.bool("preserveLastResponse", false),
    })
}

/// Marathon's 422 body for a list of violations.
pub fn violations_body(v: &[Violation]) -> Value {
    json!({
        "message": "Object is not valid",
        "details": v,
    })
}

#[cfg(test)]
mod tests;
