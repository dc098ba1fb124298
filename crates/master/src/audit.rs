//! Self-check of the master's books (REFERENCE §3.4 "resource sanity"), for the simulator and
//! tests: per agent, what tasks, executors and outstanding offers hold must fit the agent's
//! total, no port (or other range) may be held twice, and the allocator must agree with the
//! books about what is free.

use crate::Master;
use mantle_model::{AgentId, Resources};
use std::collections::BTreeMap;

/// Adds `r` to `acc`, or says which range resource `r` shares with what `acc` already holds.
fn add_disjoint(acc: &mut Resources, r: &Resources) -> Result<(), String> {
    for (name, ranges) in r.all_ranges() {
        if let Some(held) = acc.ranges(name) {
            if held.union(ranges).count() != held.count() + ranges.count() {
                return Err(format!("{name} {ranges:?} overlaps {held:?}"));
            }
        }
    }
    acc.add(r);
    Ok(())
}

impl Master {
    /// Checks the books; `Err` describes the first inconsistency found.
    pub fn audit(&self) -> Result<(), String> {
        let mut held: BTreeMap<&AgentId, Resources> = BTreeMap::new();
        for ((framework_id, task_id), t) in &self.tasks {
            if t.released {
                continue;
            }
            let agent = &t.info.agent_id;
            if !self.agents.contains_key(agent) {
                return Err(format!(
                    "task {task_id} of {framework_id} holds resources on unknown agent {agent}"
                ));
            }
            add_disjoint(held.entry(agent).or_default(), &t.resources)
                .map_err(|e| format!("task {task_id} on {agent}: {e}"))?;
        }
        for f in self.frameworks.values() {
            for ((agent, executor_id), (_, resources, _)) in &f.executors {
                if !self.agents.contains_key(agent) {
                    continue;
                }
                add_disjoint(held.entry(agent).or_default(), resources)
                    .map_err(|e| format!("executor {executor_id} on {agent}: {e}"))?;
            }
        }
        for (id, o) in &self.offers {
            let Some(agent) = self.agents.get(&o.agent_id) else {
                return Err(format!("offer {id} is for unknown agent {}", o.agent_id));
            };
            if !agent.offers.contains(id) {
                return Err(format!("offer {id} is missing from agent {}", o.agent_id));
            }
            if agent.conn.is_none() {
                return Err(format!(
                    "offer {id} is outstanding for disconnected agent {}",
                    o.agent_id
                ));
            }
            add_disjoint(held.entry(&agent.id).or_default(), &o.resources)
                .map_err(|e| format!("offer {id} on {}: {e}", o.agent_id))?;
        }
        for (id, a) in &self.agents {
            let used = held.remove(id).unwrap_or_default();
            if !a.total.contains(&used) {
                return Err(format!(
                    "agent {id}: tasks, executors and offers hold {used}, more than its total {}",
                    a.total
                ));
            }
            let free = a.total.minus(&used);
            match self.allocator.available(id) {
                Some(av) if av == free => {}
                Some(av) => {
                    return Err(format!(
                        "agent {id}: allocator says {av} is free, the books say {free}"
                    ))
                }
                None => return Err(format!("agent {id} is unknown to the allocator")),
            }
        }
        Ok(())
    }
}
