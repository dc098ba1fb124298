//! Read views for `/master/state`, `/master/frameworks`, `/master/slaves`, `/master/tasks`
//! in Mesos's JSON shapes (`src/master/readonly_handler.cpp`, `src/common/http.cpp`).
//!
//! These endpoints render resources as objects of name to value (`{"cpus": 1.0, "ports":
//! "[31000-32000]"}`) and IDs as plain strings, unlike the v1 API.

use crate::{Agent, Framework, Master, Task, MESOS_VERSION};
pub use mantle_api::resources_json;
use mantle_model::{AttributeValue, Resources};
use serde_json::{json, Map, Value};

/// A borrowed view of the master for rendering.
pub struct StateView<'a> {
    pub(crate) master: &'a Master,
}

fn task_json(t: &Task) -> Value {
    let statuses: Vec<Value> = t
        .statuses
        .iter()
        .map(|s| {
            let mut v = json!({"state": s.state, "timestamp": s.timestamp.unwrap_or(0.0)});
            if let Some(h) = s.healthy {
                v["healthy"] = json!(h);
            }
            v
        })
        .collect();
    let mut v = json!({
        "id": t.info.task_id.as_str(),
        "name": t.info.name,
        "framework_id": t.framework_id.as_str(),
        "executor_id": t.executor_id.as_ref().map(|e| e.as_str()).unwrap_or(""),
        "slave_id": t.info.agent_id.as_str(),
        "agent_id": t.info.agent_id.as_str(),
        "state": t.state,
        "resources": resources_json(&t.resources),
        "role": t.role,
        "statuses": statuses,
    });
    for key in ["labels", "discovery", "container", "health_check"] {
        if let Some(x) = t.info.extra.get(key) {
            v[key] = x.clone();
        }
    }
    if let Some(h) = t.statuses.last().and_then(|s| s.healthy) {
        v["healthy"] = json!(h);
    }
    v
}

impl StateView<'_> {
    fn used_by(&self, f: &Framework) -> (Resources, Resources) {
        let m = self.master;
        let mut used = Resources::new();
        for tid in &f.tasks {
            if let Some(t) = m.tasks.get(&(f.id.clone(), tid.clone())) {
                if !t.released {
                    used.add(&t.resources);
                }
            }
        }
        for (_, r, _) in f.executors.values() {
            used.add(r);
        }
        let mut offered = Resources::new();
        for o in &f.offers {
            if let Some(o) = m.offers.get(o) {
                offered.add(&o.resources);
            }
        }
        (used, offered)
    }

    fn framework_json(&self, f: &Framework) -> Value {
        let m = self.master;
        let (used, offered) = self.used_by(f);
        let tasks: Vec<Value> = f
            .tasks
            .iter()
            .filter_map(|id| m.tasks.get(&(f.id.clone(), id.clone())))
            .map(task_json)
            .collect();
        let completed: Vec<Value> = f.completed_tasks.iter().map(task_json).collect();
        let offers: Vec<Value> = f
            .offers
            .iter()
            .filter_map(|id| m.offers.get(id))
            .map(|o| {
                json!({"id": o.id.as_str(), "framework_id": o.framework_id.as_str(),
                       "slave_id": o.agent_id.as_str(), "resources": resources_json(&o.resources)})
            })
            .collect();
        let executors: Vec<Value> = f
            .executors
            .iter()
            .map(|((agent, id), (info, r, _))| {
                json!({"executor_id": id.as_str(), "name": info.name.clone().unwrap_or_default(),
                       "framework_id": f.id.as_str(), "slave_id": agent.as_str(), "resources": resources_json(r)})
            })
            .collect();
        let capabilities: Vec<&str> = f
            .info
            .capabilities
            .iter()
            .map(|c| c.kind.as_str())
            .collect();
        let mut v = json!({
            "id": f.id.as_str(),
            "name": f.info.name,
            "pid": Value::Null,
            "used_resources": resources_json(&used),
            "offered_resources": resources_json(&offered),
            "resources": resources_json(&used.plus(&offered)),
            "capabilities": capabilities,
            "hostname": f.info.hostname.clone().unwrap_or_default(),
            "webui_url": f.info.webui_url.clone().unwrap_or_default(),
            "active": f.active,
            "connected": f.conn.is_some(),
            "recovered": f.recovered,
            "user": f.info.user,
            "failover_timeout": f.info.failover_timeout.unwrap_or(0.0),
            "checkpoint": f.info.checkpoint.unwrap_or(false),
            "registered_time": f.registered_time,
            "unregistered_time": f.unregistered_time.unwrap_or(0.0),
            "roles": f.roles,
            "role": f.roles.first().cloned().unwrap_or_else(|| "*".into()),
            "tasks": tasks,
            "unreachable_tasks": m
                .unreachable_tasks
                .iter()
                .filter(|((fid, _), _)| fid == &f.id)
                .map(|(_, t)| task_json(t))
                .collect::<Vec<_>>(),
            "completed_tasks": completed,
            "offers": offers,
            "executors": executors,
        });
        if let Some(t) = f.reregistered_time {
            v["reregistered_time"] = json!(t);
        }
        if let Some(p) = &f.info.principal {
            v["principal"] = json!(p);
        }
        if let Some(obj) = v.as_object_mut() {
            obj.remove("pid");
        }
        // TASK_* counters, as Mesos summarises per framework.
        let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for s in [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_KILLING",
            "TASK_FINISHED",
            "TASK_KILLED",
            "TASK_FAILED",
            "TASK_LOST",
            "TASK_ERROR",
            "TASK_UNREACHABLE",
        ] {
            counts.insert(s, 0);
        }
        for t in f
            .tasks
            .iter()
            .filter_map(|id| m.tasks.get(&(f.id.clone(), id.clone())))
        {
            *counts.entry(t.state.as_str()).or_default() += 1;
        }
        for t in &f.completed_tasks {
            *counts.entry(t.state.as_str()).or_default() += 1;
        }
        for (k, n) in counts {
            v[k] = json!(n);
        }
        v
    }

    fn agent_json(&self, a: &Agent) -> Value {
        let m = self.master;
        let mut used = Resources::new();
        for key in &a.tasks {
            if let Some(t) = m.tasks.get(key) {
                if !t.released {
                    used.add(&t.resources);
                }
            }
        }
        for f in m.frameworks.values() {
            for ((agent, _), (_, r, _)) in &f.executors {
                if agent == &a.id {
                    used.add(r);
                }
            }
        }
        let mut offered = Resources::new();
        for o in &a.offers {
            if let Some(o) = m.offers.get(o) {
                offered.add(&o.resources);
            }
        }
        let mut attrs = Map::new();
        for at in &a.attributes {
            let v = match &at.value {
                AttributeValue::Text(t) => json!(t),
                AttributeValue::Scalar(s) => json!(s),
                AttributeValue::Ranges(r) => json!(r.to_string()),
                AttributeValue::Set(s) => json!(format!("{{{}}}", s.join(","))),
            };
            attrs.insert(at.name.clone(), v);
        }
        let mut v = json!({
            "id": a.id.as_str(),
            "pid": format!("slave(1)@{}:{}", a.hostname, a.port),
            "hostname": a.hostname,
            "port": a.port,
            "registered_time": a.registered_time,
            "resources": resources_json(&a.total),
            "used_resources": resources_json(&used),
            "offered_resources": resources_json(&offered),
            "reserved_resources": {},
            "unreserved_resources": resources_json(&a.total),
            "attributes": Value::Object(attrs),
            "active": a.conn.is_some(),
            "deactivated": false,
            "version": a.version,
            "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "TASK_LABELS_PROPAGATION"],
        });
        if let Some(t) = a.reregistered_time {
            v["reregistered_time"] = json!(t);
        }
        v
    }

    fn master_fields(&self) -> Value {
        let m = self.master;
        let c = &m.config;
        json!({
            "version": MESOS_VERSION,
            "mantle_version": env!("CARGO_PKG_VERSION"),
            "build_user": "mantle",
            "start_time": m.start_time,
            "elected_time": m.start_time,
            "id": m.master_id,
            "pid": format!("master@{}:{}", c.ip, c.port),
            "hostname": c.hostname,
            "leader": format!("master@{}:{}", c.ip, c.port),
            "leader_info": serde_json::to_value(m.master_info()).unwrap_or(Value::Null),
            "activated_slaves": m.agents.values().filter(|a| a.conn.is_some()).count(),
            "deactivated_slaves": m.agents.values().filter(|a| a.conn.is_none()).count(),
            "unreachable_slaves": m.unreachable_agents.len(),
            "flags": {
                "allocation_interval": format!("{}secs", c.allocation_interval.as_secs_f64()),
                "hostname": c.hostname,
                "ip": c.ip.to_string(),
                "port": c.port.to_string(),
                "agent_ping_timeout": format!("{}secs", c.agent_ping_timeout.as_secs_f64()),
                "max_agent_ping_timeouts": c.max_agent_ping_timeouts.to_string(),
                "agent_reregister_timeout": format!("{}secs", c.agent_reregister_timeout.as_secs_f64()),
                "registry": "redb",
            },
        })
    }

    /// `/master/state`.
    pub fn state(&self) -> Value {
        let m = self.master;
        let mut v = self.master_fields();
        v["slaves"] = json!(m
            .agents
            .values()
            .map(|a| self.agent_json(a))
            .collect::<Vec<_>>());
        v["recovered_slaves"] = json!([]);
        v["frameworks"] = json!(m
            .frameworks
            .values()
            .map(|f| self.framework_json(f))
            .collect::<Vec<_>>());
        v["completed_frameworks"] = json!(m
            .completed_frameworks
            .iter()
            .map(|f| self.framework_json(f))
            .collect::<Vec<_>>());
        v["orphan_tasks"] = json!([]);
        v["unregistered_frameworks"] = json!([]);
        v
    }

    /// `/master/frameworks`.
    pub fn frameworks(&self) -> Value {
        let m = self.master;
        json!({
            "frameworks": m.frameworks.values().map(|f| self.framework_json(f)).collect::<Vec<_>>(),
            "completed_frameworks": m.completed_frameworks.iter().map(|f| self.framework_json(f)).collect::<Vec<_>>(),
            "unregistered_frameworks": [],
        })
    }

    /// `/master/slaves`.
    pub fn slaves(&self) -> Value {
        json!({
            "slaves": self.master.agents.values().map(|a| self.agent_json(a)).collect::<Vec<_>>(),
            "recovered_slaves": [],
        })
    }

    /// `/master/tasks`: active then completed tasks of every framework.
    pub fn tasks(&self) -> Value {
        let m = self.master;
        let mut out: Vec<Value> = m.tasks.values().map(task_json).collect();
        for f in m.frameworks.values().chain(m.completed_frameworks.iter()) {
            out.extend(f.completed_tasks.iter().map(task_json));
        }
        json!({ "tasks": out })
    }

    /// Total, offered and used resources of the whole cluster, plus counts, for tests
    /// checking that accounting did not change.
    pub fn accounting(&self) -> String {
        let m = self.master;
        let mut total = Resources::new();
        let mut free = Resources::new();
        for a in m.agents.values() {
            total.add(&a.total);
            if let Some(av) = m.allocator.available(&a.id) {
                free.add(&av);
            }
        }
        format!(
            "total={total} free={free} offers={} tasks={} frameworks={}",
            m.offers.len(),
            m.tasks.len(),
            m.frameworks.len()
        )
    }
}
