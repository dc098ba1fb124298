//! The agent's `/state` in Mesos's JSON shape (`src/slave/http.cpp`): frameworks, their
//! executors with sandbox `directory`, and tasks.

use crate::{Agent, Executor, Task};
use mantle_api::resources_from_wire;
use serde_json::{json, Value};

fn res_json(list: &[mantle_api::mesos::Resource]) -> Value {
    mantle_api::resources_json(&resources_from_wire(list, "resources").unwrap_or_default())
}

fn task_json(framework_id: &str, executor_id: &str, agent_id: &str, t: &Task) -> Value {
    json!({
        "id": t.info.task_id.as_str(),
        "name": t.info.name,
        "framework_id": framework_id,
        "executor_id": executor_id,
        "slave_id": agent_id,
        "state": t.state,
        "resources": res_json(&t.info.resources),
        "statuses": t.statuses.iter().map(|s| json!({"state": s.state, "timestamp": s.timestamp.unwrap_or(0.0)})).collect::<Vec<_>>(),
    })
}

impl Agent {
    fn executor_json(&self, framework_id: &str, e: &Executor) -> Value {
        let agent_id = self.agent_id.as_ref().map(|a| a.as_str()).unwrap_or("");
        let eid = e.info.executor_id.as_str();
        json!({
            "id": eid,
            "name": e.info.name.clone().unwrap_or_default(),
            "source": e.info.extra.get("source").cloned().unwrap_or(json!("")),
            "container": e.container_id,
            "directory": e.directory,
            "resources": res_json(&e.info.resources),
            "role": e.role,
            "type": e.info.kind.clone().unwrap_or_else(|| "CUSTOM".into()),
            "tasks": e.tasks.values().map(|t| task_json(framework_id, eid, agent_id, t)).collect::<Vec<_>>(),
            "queued_tasks": [],
            "completed_tasks": e.completed.iter().map(|t| task_json(framework_id, eid, agent_id, t)).collect::<Vec<_>>(),
        })
    }

    /// `/state`.
    pub fn state(&self) -> Value {
        let mut frameworks = Vec::new();
        for (fid, info) in &self.frameworks {
            let executors: Vec<Value> = self
                .executors
                .iter()
                .filter(|((f, _), _)| f == fid)
                .map(|(_, e)| self.executor_json(fid.as_str(), e))
                .collect();
            let completed: Vec<Value> = self
                .completed_executors
                .iter()
                .filter(|((f, _), _)| f == fid)
                .map(|(_, e)| self.executor_json(fid.as_str(), e))
                .collect();
            frameworks.push(json!({
                "id": fid.as_str(),
                "name": info.name,
                "user": info.user,
                "failover_timeout": info.failover_timeout.unwrap_or(0.0),
                "checkpoint": info.checkpoint.unwrap_or(false),
                "hostname": info.hostname.clone().unwrap_or_default(),
                "role": info.effective_roles().first().cloned().unwrap_or_else(|| "*".into()),
                "executors": executors,
                "completed_executors": completed,
            }));
        }
        let c = &self.config;
        let mut attrs = serde_json::Map::new();
        for a in &c.attributes {
            let v = match &a.value {
                mantle_model::AttributeValue::Text(t) => json!(t),
                mantle_model::AttributeValue::Scalar(s) => json!(s),
                mantle_model::AttributeValue::Ranges(r) => json!(r.to_string()),
                mantle_model::AttributeValue::Set(s) => json!(format!("{{{}}}", s.join(","))),
            };
            attrs.insert(a.name.clone(), v);
        }
        json!({
            "version": "1.11.0",
            "mantle_version": env!("CARGO_PKG_VERSION"),
            "start_time": self.start_time,
            "id": self.agent_id.as_ref().map(|a| a.as_str()).unwrap_or(""),
            "pid": format!("slave(1)@{}:{}", c.hostname, c.port),
            "hostname": c.hostname,
            "resources": mantle_api::resources_json(&c.resources),
            "unreserved_resources": mantle_api::resources_json(&c.resources),
            "reserved_resources": {},
            "attributes": Value::Object(attrs),
            "flags": {"port": c.port.to_string(), "hostname": c.hostname},
            "frameworks": frameworks,
            "completed_frameworks": [],
        })
    }
}
