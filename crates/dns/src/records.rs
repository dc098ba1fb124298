//! The record set: A, AAAA and SRV records generated from a `ClusterState` with Mesos-DNS's
//! naming (`docs/docs/naming.md`, `records/generator.go`, `records/chains.go`).
//!
//! For a running task `t` of framework `f` on agent `s` in domain `d`:
//! - A `t.f.d` and `t-<hash>-<sid>.f.d` to the task's addresses (the first populated IP
//!   source of `netinfo`, `mesos`, `docker`, `host`), and `t.f.slave.d`,
//!   `t-<hash>-<sid>.f.slave.d` to the agent's;
//! - SRV `_t._tcp.f.slave.d` and `_t._udp.f.slave.d` for each port resource, targeting
//!   `t-<hash>-<sid>.f.slave.d`, and also `_t._tcp.f.d` / `_t._udp.f.d` when the task has no
//!   discovery info;
//! - with discovery info: SRV `_t._<proto>.f.d` per discovery port targeting
//!   `t-<hash>-<sid>.f.d`, plus `_<port name>._t._<proto>.f.d` for named ports.
//!
//! `<hash>` is the first five zbase32 characters of the SHA-1 of the task ID and `<sid>` the
//! lower-cased text after the last `-` of the agent ID, as in Mesos-DNS. Also generated:
//! `leader.d`, `master.d`, `master0.d`, `_leader._tcp.d`, `_leader._udp.d`, `slave.d`,
//! `_slave._tcp.d`, `f.d` for frameworks whose hostname is an IP, and the server's own name.
//!
//! Deviations, each so that nothing from an agent or app is trusted: a task whose latest
//! status says `healthy: false` has no records; a discovery name is used only sanitised
//! (Mesos-DNS also adds records under the raw name); agents and frameworks are addressed only
//! by IP literals (Mesos-DNS resolves hostnames, which a pure generator cannot); and any
//! record whose name would not be a valid DNS name (a label over 63 bytes, a name over
//! 253) is left out rather than served.

use crate::labels::{domain_frag, LabelSpec};
use crate::state::ClusterState;
use mantle_api::mesos::TaskStatus;
use mantle_api::operator::Task;
use mantle_model::TaskState;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Where task addresses come from, tried in order (Mesos-DNS `IPSources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSource {
    /// `container_status.network_infos[].ip_addresses[]` of the latest TASK_RUNNING status.
    NetInfo,
    /// The `MesosContainerizer.NetworkSettings.IPAddress` status label.
    Mesos,
    /// The `Docker.NetworkSettings.IPAddress` status label.
    Docker,
    /// The agent's address.
    Host,
}

impl std::str::FromStr for IpSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "netinfo" => Ok(IpSource::NetInfo),
            "mesos" => Ok(IpSource::Mesos),
            "docker" => Ok(IpSource::Docker),
            "host" => Ok(IpSource::Host),
            other => Err(format!(
                "unknown IP source '{other}' (netinfo, mesos, docker, host)"
            )),
        }
    }
}

impl IpSource {
    fn as_str(self) -> &'static str {
        match self {
            IpSource::NetInfo => "netinfo",
            IpSource::Mesos => "mesos",
            IpSource::Docker => "docker",
            IpSource::Host => "host",
        }
    }
}

/// Mesos-DNS's default `IPSources`.
pub const DEFAULT_IP_SOURCES: [IpSource; 3] = [IpSource::NetInfo, IpSource::Mesos, IpSource::Host];
/// Mesos-DNS's default TTL, in seconds.
pub const DEFAULT_TTL: u32 = 60;

/// What record generation and answering need to know about the server itself.
#[derive(Debug, Clone)]
pub struct Config {
    /// The domain, without trailing dot (`mesos`).
    pub domain: String,
    pub spec: LabelSpec,
    pub ip_sources: Vec<IpSource>,
    pub ttl: u32,
    /// The leading master's address, for `leader.<domain>` (from `--master`).
    pub leader: Option<SocketAddr>,
    /// The DNS server's own address, for `ns1.<domain>`.
    pub listener: Option<IpAddr>,
    /// Upstream resolvers (only reported by `/v1/config`; forwarding is the shell's).
    pub resolvers: Vec<SocketAddr>,
    pub http_listener: Option<SocketAddr>,
    pub dns_port: u16,
}

impl Config {
    /// Defaults for `domain`.
    pub fn new(domain: &str) -> Self {
        Config {
            domain: domain.trim_matches('.').to_ascii_lowercase(),
            spec: LabelSpec::default(),
            ip_sources: DEFAULT_IP_SOURCES.to_vec(),
            ttl: DEFAULT_TTL,
            leader: None,
            listener: None,
            resolvers: Vec::new(),
            http_listener: None,
            dns_port: 53,
        }
    }

    /// `<domain>.`
    pub fn apex(&self) -> String {
        format!("{}.", self.domain)
    }

    /// The primary name server in SOA and NS answers (Mesos-DNS `SOAMname`).
    pub fn mname(&self) -> String {
        format!("ns1.{}.", self.domain)
    }

    /// The SOA mailbox (Mesos-DNS `SOARname`).
    pub fn rname(&self) -> String {
        format!("root.ns1.{}.", self.domain)
    }

    /// `/v1/config`, with Mesos-DNS's field names.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "Masters": self.leader.map(|l| vec![l.to_string()]).unwrap_or_default(),
            "RefreshSeconds": 0,
            "TTL": self.ttl,
            "Port": self.dns_port,
            "Domain": self.domain,
            "Resolvers": self.resolvers.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "Timeout": 5,
            "SOAMname": self.mname(),
            "SOARname": self.rname(),
            "SOARefresh": 60,
            "SOARetry": 600,
            "SOAExpire": 86400,
            "SOAMinttl": self.ttl,
            "Listener": self.listener.map(|l| l.to_string()).unwrap_or_default(),
            "HTTPListener": self.http_listener.map(|l| l.ip().to_string()).unwrap_or_default(),
            "HttpPort": self.http_listener.map(|l| l.port()).unwrap_or(0),
            "DnsOn": true,
            "HttpOn": self.http_listener.is_some(),
            "ExternalOn": !self.resolvers.is_empty(),
            "RecurseOn": !self.resolvers.is_empty(),
            "EnforceRFC952": self.spec == LabelSpec::Rfc952,
            "IPSources": self.ip_sources.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "EnumerationOn": true,
            "SRVRecordDefaultWeight": 1,
            "EventDriven": true,
        })
    }
}

/// An SRV target: `host:port`, with `host` a fully qualified name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SrvTarget {
    pub host: String,
    pub port: u16,
}

/// One generated record, for `/v1/enumerate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnumRecord {
    pub name: String,
    pub host: String,
    pub rtype: &'static str,
}

/// A task's records, for `/v1/enumerate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnumTask {
    pub name: String,
    pub id: String,
    pub records: Vec<EnumRecord>,
}

/// A framework's tasks, for `/v1/enumerate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnumFramework {
    pub tasks: Vec<EnumTask>,
    pub name: String,
}

/// Every record, keyed by lower-case fully qualified name (with trailing dot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSet {
    pub a: BTreeMap<String, BTreeSet<std::net::Ipv4Addr>>,
    pub aaaa: BTreeMap<String, BTreeSet<std::net::Ipv6Addr>>,
    pub srv: BTreeMap<String, BTreeSet<SrvTarget>>,
    pub frameworks: Vec<EnumFramework>,
}

impl RecordSet {
    /// Whether any record has this name.
    pub fn has_name(&self, name: &str) -> bool {
        self.a.contains_key(name) || self.aaaa.contains_key(name) || self.srv.contains_key(name)
    }

    /// Number of records of all types.
    pub fn len(&self) -> usize {
        self.a.values().map(BTreeSet::len).sum::<usize>()
            + self.aaaa.values().map(BTreeSet::len).sum::<usize>()
            + self.srv.values().map(BTreeSet::len).sum::<usize>()
    }

    /// Whether there are no records at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `/v1/enumerate`.
    pub fn enumerate_json(&self) -> Value {
        serde_json::json!({ "frameworks": self.frameworks })
    }

    fn insert_ip(&mut self, name: &str, ip: IpAddr, task: Option<&mut EnumTask>) {
        if !valid_name(name) {
            return;
        }
        let (added, rtype) = match ip {
            IpAddr::V4(v4) => (self.a.entry(name.into()).or_default().insert(v4), "A"),
            IpAddr::V6(v6) => (self.aaaa.entry(name.into()).or_default().insert(v6), "AAAA"),
        };
        if let (true, Some(t)) = (added, task) {
            t.records.push(EnumRecord {
                name: name.into(),
                host: ip.to_string(),
                rtype,
            });
        }
    }

    fn insert_srv(&mut self, name: &str, target: SrvTarget, task: Option<&mut EnumTask>) {
        if !valid_name(name) || !valid_name(&target.host) {
            return;
        }
        let host = format!("{}:{}", target.host, target.port);
        if self.srv.entry(name.into()).or_default().insert(target) {
            if let Some(t) = task {
                t.records.push(EnumRecord {
                    name: name.into(),
                    host,
                    rtype: "SRV",
                });
            }
        }
    }
}

/// Whether `name` (fully qualified, with trailing dot) is a valid DNS name to serve.
pub fn valid_name(name: &str) -> bool {
    let Some(body) = name.strip_suffix('.') else {
        return false;
    };
    !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// Generates the whole record set. Deterministic: the same state and config give the same
/// records (maps are ordered by name, tasks visited in ID order).
pub fn generate(state: &ClusterState, config: &Config) -> RecordSet {
    let mut rs = RecordSet::default();
    let domain = &config.domain;
    let spec = config.spec;
    // Agents: `slave.<domain>` and their addresses for tasks.
    let slave = format!("slave.{domain}.");
    let mut agent_ips: BTreeMap<&mantle_model::AgentId, Vec<IpAddr>> = BTreeMap::new();
    for (id, agent) in &state.agents {
        let Ok(ip) = agent.hostname.parse::<IpAddr>() else {
            continue;
        };
        rs.insert_ip(&slave, ip, None);
        if let Some(port) = agent.port {
            let target = SrvTarget {
                host: slave.clone(),
                port,
            };
            rs.insert_srv(&format!("_slave._tcp.{domain}."), target, None);
        }
        agent_ips.insert(id, vec![ip]);
    }
    // Frameworks whose scheduler host is an IP literal: `<framework>.<domain>`.
    for f in state.frameworks.values() {
        let fname = domain_frag(&f.name, spec);
        if fname.is_empty() {
            continue;
        }
        if let Some(ip) = f.hostname.as_deref().and_then(|h| h.parse::<IpAddr>().ok()) {
            rs.insert_ip(&format!("{fname}.{domain}."), ip, None);
        }
    }
    // This server and the master.
    if let Some(ip) = config.listener {
        rs.insert_ip(&config.mname(), ip, None);
    }
    if let Some(leader) = config.leader {
        for name in ["leader", "master", "master0"] {
            rs.insert_ip(&format!("{name}.{domain}."), leader.ip(), None);
        }
        let target = SrvTarget {
            host: format!("leader.{domain}."),
            port: leader.port(),
        };
        rs.insert_srv(&format!("_leader._tcp.{domain}."), target.clone(), None);
        rs.insert_srv(&format!("_leader._udp.{domain}."), target, None);
    }
    // Tasks, framework by framework.
    let mut frameworks = Vec::new();
    for (fid, f) in &state.frameworks {
        let mut ef = EnumFramework {
            tasks: Vec::new(),
            name: f.name.clone(),
        };
        let fname = domain_frag(&f.name, spec);
        let tasks = state
            .tasks
            .range((fid.clone(), mantle_model::TaskId::new(""))..)
            .take_while(|((tf, _), _)| tf == fid);
        for (_, task) in tasks {
            let Some(slave_ips) = agent_ips.get(&task.agent_id) else {
                continue;
            };
            if task.state != TaskState::Running || fname.is_empty() || unhealthy(task) {
                continue;
            }
            let mut et = EnumTask {
                name: task.name.clone(),
                id: task.task_id.as_str().to_string(),
                records: Vec::new(),
            };
            task_records(&mut rs, config, &fname, task, slave_ips, &mut et);
            ef.tasks.push(et);
        }
        frameworks.push(ef);
    }
    rs.frameworks = frameworks;
    rs
}

/// A task whose latest status carries `healthy: false` (its health check fails).
fn unhealthy(task: &Task) -> bool {
    task.statuses.last().and_then(|s| s.healthy) == Some(false)
}

fn task_records(
    rs: &mut RecordSet,
    config: &Config,
    fname: &str,
    task: &Task,
    slave_ips: &[IpAddr],
    et: &mut EnumTask,
) {
    let spec = config.spec;
    let domain = &config.domain;
    let discovery = Discovery::of(task, spec);
    let task_name = match &discovery {
        Some(d) => d.name.clone(),
        None => spec.label(&task.name),
    };
    let sid = spec.label(
        task.agent_id
            .as_str()
            .rsplit('-')
            .next()
            .unwrap_or_default(),
    );
    if task_name.is_empty() || sid.is_empty() {
        return;
    }
    let canonical = format!("{task_name}-{}-{sid}.{fname}", hash(task.task_id.as_str()));
    let arec = format!("{task_name}.{fname}");
    for ip in task_ips(task, &config.ip_sources, slave_ips) {
        rs.insert_ip(&format!("{arec}.{domain}."), ip, Some(et));
        rs.insert_ip(&format!("{canonical}.{domain}."), ip, Some(et));
    }
    for ip in slave_ips {
        rs.insert_ip(&format!("{arec}.slave.{domain}."), *ip, Some(et));
        rs.insert_ip(&format!("{canonical}.slave.{domain}."), *ip, Some(et));
    }
    let slave_host = format!("{canonical}.slave.{domain}.");
    for port in resource_ports(task) {
        for proto in ["tcp", "udp"] {
            let target = SrvTarget {
                host: slave_host.clone(),
                port,
            };
            let name = format!("_{task_name}._{proto}.{fname}.slave.{domain}.");
            rs.insert_srv(&name, target.clone(), Some(et));
            if discovery.is_none() {
                let name = format!("_{task_name}._{proto}.{fname}.{domain}.");
                rs.insert_srv(&name, target, Some(et));
            }
        }
    }
    let Some(d) = discovery else {
        return;
    };
    let host = format!("{canonical}.{domain}.");
    for p in &d.ports {
        let protos: Vec<String> = match &p.protocol {
            Some(proto) => vec![proto.clone()],
            None => vec!["tcp".into(), "udp".into()],
        };
        for proto in protos {
            let target = SrvTarget {
                host: host.clone(),
                port: p.number,
            };
            let base = format!("_{task_name}._{proto}.{fname}.{domain}.");
            rs.insert_srv(&base, target.clone(), Some(et));
            if let Some(port_name) = &p.name {
                rs.insert_srv(&format!("_{port_name}.{base}"), target, Some(et));
            }
        }
    }
}

/// Mesos-DNS's short task hash: zbase32 of SHA-1, first five characters.
pub fn hash(task_id: &str) -> String {
    const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let digest = sha1_smol::Sha1::from(task_id).digest().bytes();
    // Five characters are the first 25 bits.
    let bits = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    (0..5)
        .map(|i| ZBASE32[((bits >> (27 - 5 * i)) & 0x1f) as usize] as char)
        .collect()
}

/// The ports of a task's `ports` resources, in order.
fn resource_ports(task: &Task) -> Vec<u16> {
    let mut out = Vec::new();
    for r in task.resources.iter().filter(|r| r.name == "ports") {
        for range in r.ranges.iter().flat_map(|rs| rs.range.iter()) {
            // A bogus range from a framework must not make us enumerate billions of ports.
            if range.end < range.begin || range.end - range.begin > 1024 {
                continue;
            }
            for p in range.begin..=range.end {
                if let Ok(p) = u16::try_from(p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

struct DiscoveryPort {
    number: u16,
    name: Option<String>,
    protocol: Option<String>,
}

struct Discovery {
    name: String,
    ports: Vec<DiscoveryPort>,
}

impl Discovery {
    /// The task's `DiscoveryInfo`, with its name and port names and protocols sanitised;
    /// `None` without a (non-empty) name, as Mesos-DNS's `HasDiscoveryInfo`.
    fn of(task: &Task, spec: LabelSpec) -> Option<Discovery> {
        let d = task.extra.get("discovery")?;
        let name = spec.label(d.get("name")?.as_str()?);
        if name.is_empty() {
            return None;
        }
        let ports = d
            .get("ports")
            .and_then(|p| p.get("ports"))
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let number = u16::try_from(p.get("number")?.as_u64()?).ok()?;
                        let label = |key: &str| {
                            p.get(key)
                                .and_then(Value::as_str)
                                .map(|s| spec.label(s))
                                .filter(|s| !s.is_empty())
                        };
                        Some(DiscoveryPort {
                            number,
                            name: label("name"),
                            protocol: label("protocol"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Discovery { name, ports })
    }
}

/// The task's addresses from the first IP source that has any.
fn task_ips(task: &Task, sources: &[IpSource], slave_ips: &[IpAddr]) -> Vec<IpAddr> {
    for source in sources {
        let ips: Vec<IpAddr> = match source {
            IpSource::Host => slave_ips.to_vec(),
            IpSource::NetInfo => latest_running(task).map(netinfo_ips).unwrap_or_default(),
            IpSource::Mesos => latest_running(task)
                .map(|s| label_ips(s, "MesosContainerizer.NetworkSettings.IPAddress"))
                .unwrap_or_default(),
            IpSource::Docker => latest_running(task)
                .map(|s| label_ips(s, "Docker.NetworkSettings.IPAddress"))
                .unwrap_or_default(),
        };
        if !ips.is_empty() {
            return ips;
        }
    }
    Vec::new()
}

/// The TASK_RUNNING status with the latest timestamp (Mesos-DNS `statusIPs`).
fn latest_running(task: &Task) -> Option<&TaskStatus> {
    task.statuses
        .iter()
        .filter(|s| s.state == TaskState::Running)
        .max_by(|a, b| {
            a.timestamp
                .unwrap_or(-1.0)
                .total_cmp(&b.timestamp.unwrap_or(-1.0))
        })
}

fn netinfo_ips(status: &TaskStatus) -> Vec<IpAddr> {
    let infos = status
        .extra
        .get("container_status")
        .and_then(|c| c.get("network_infos"))
        .and_then(Value::as_array);
    let mut out = Vec::new();
    for info in infos.into_iter().flatten() {
        let list = info.get("ip_addresses").and_then(Value::as_array);
        for a in list.into_iter().flatten() {
            if let Some(ip) = a
                .get("ip_address")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            {
                out.push(ip);
            }
        }
    }
    out
}

fn label_ips(status: &TaskStatus, key: &str) -> Vec<IpAddr> {
    let labels = status
        .extra
        .get("labels")
        .and_then(|l| l.get("labels"))
        .and_then(Value::as_array);
    labels
        .into_iter()
        .flatten()
        .filter(|l| l.get("key").and_then(Value::as_str) == Some(key))
        .filter_map(|l| l.get("value").and_then(Value::as_str)?.parse().ok())
        .collect()
}
