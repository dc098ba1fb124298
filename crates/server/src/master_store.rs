//! The master's registry on disk: a redb database of JSON records under `--work-dir`
//! (`registry.redb`), holding what `mantle_master::registry` describes (admitted,
//! unreachable and gone agents, frameworks, tasks, unacknowledged master-generated updates). Each step's writes go in one transaction,
//! committed (durably: redb fsyncs on commit) before the step's other effects are carried out.

use mantle_master::registry::{Snapshot, Write};
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const AGENTS: TableDefinition<&str, &str> = TableDefinition::new("agents");
const FRAMEWORKS: TableDefinition<&str, &str> = TableDefinition::new("frameworks");
const TASKS: TableDefinition<&str, &str> = TableDefinition::new("tasks");
/// Master-generated updates awaiting acknowledgement, keyed like tasks.
const UPDATES: TableDefinition<&str, &str> = TableDefinition::new("updates");

/// Errors of the registry; any of them stops the master (as Mesos aborts when its registrar
/// fails), since what it acknowledged could otherwise be lost.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry: {0}")]
    Db(String),
    #[error("registry holds a record that does not parse ({table}/{key}): {error}")]
    Corrupt {
        table: &'static str,
        key: String,
        error: String,
    },
}

fn db<E: std::fmt::Display>(e: E) -> RegistryError {
    RegistryError::Db(e.to_string())
}

fn task_key(framework_id: &str, task_id: &str) -> String {
    format!("{framework_id}\u{0}{task_id}")
}

/// The open registry.
pub struct Registry {
    db: Database,
}

impl Registry {
    /// Opens (or creates) the registry at `path`.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        let database = Database::create(path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        for t in [AGENTS, FRAMEWORKS, TASKS, UPDATES] {
            txn.open_table(t).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(Registry { db: database })
    }

    /// Everything, to recover the master from.
    pub fn load(&self) -> Result<Snapshot, RegistryError> {
        fn all<T: serde::de::DeserializeOwned>(
            txn: &redb::ReadTransaction,
            def: TableDefinition<&str, &str>,
            name: &'static str,
        ) -> Result<Vec<T>, RegistryError> {
            let table = txn.open_table(def).map_err(db)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                let parsed =
                    serde_json::from_str(v.value()).map_err(|e| RegistryError::Corrupt {
                        table: name,
                        key: k.value().to_string(),
                        error: e.to_string(),
                    })?;
                out.push(parsed);
            }
            Ok(out)
        }
        let txn = self.db.begin_read().map_err(db)?;
        Ok(Snapshot {
            agents: all(&txn, AGENTS, "agents")?,
            frameworks: all(&txn, FRAMEWORKS, "frameworks")?,
            tasks: all(&txn, TASKS, "tasks")?,
            updates: all(&txn, UPDATES, "updates")?,
        })
    }

    /// Applies one step's writes atomically and durably.
    pub fn apply(&self, writes: &[Write]) -> Result<(), RegistryError> {
        if writes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut agents = txn.open_table(AGENTS).map_err(db)?;
            let mut frameworks = txn.open_table(FRAMEWORKS).map_err(db)?;
            let mut tasks = txn.open_table(TASKS).map_err(db)?;
            let mut updates = txn.open_table(UPDATES).map_err(db)?;
            for w in writes {
                match w {
                    Write::Agent(a) => {
                        agents.insert(a.id.as_str(), enc(a)?.as_str()).map_err(db)?;
                    }
                    Write::RemoveAgent(id) => {
                        agents.remove(id.as_str()).map_err(db)?;
                    }
                    Write::Framework(f) => {
                        let id = f.info.id.as_ref().map(|i| i.as_str()).unwrap_or_default();
                        frameworks.insert(id, enc(f)?.as_str()).map_err(db)?;
                    }
                    Write::RemoveFramework(id) => {
                        frameworks.remove(id.as_str()).map_err(db)?;
                    }
                    Write::Task(t) => {
                        let k = task_key(t.framework_id.as_str(), t.info.task_id.as_str());
                        tasks.insert(k.as_str(), enc(t)?.as_str()).map_err(db)?;
                    }
                    Write::RemoveTask(f, t) => {
                        let k = task_key(f.as_str(), t.as_str());
                        tasks.remove(k.as_str()).map_err(db)?;
                    }
                    Write::Update(u) => {
                        let k = task_key(u.framework_id.as_str(), u.status.task_id.as_str());
                        updates.insert(k.as_str(), enc(u)?.as_str()).map_err(db)?;
                    }
                    Write::RemoveUpdate(f, t) => {
                        let k = task_key(f.as_str(), t.as_str());
                        updates.remove(k.as_str()).map_err(db)?;
                    }
                }
            }
        }
        txn.commit().map_err(db)
    }
}

fn enc<T: serde::Serialize>(v: &T) -> Result<String, RegistryError> {
    serde_json::to_string(v).map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mantle_master::registry::{AgentRecord, AgentStanding};
    use mantle_model::AgentId;

    #[test]
    fn writes_survive_reopening_and_removals_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registry.redb");
        let agent = |id: &str| AgentRecord {
            id: AgentId::new(id),
            hostname: "127.0.0.2".into(),
            port: 5051,
            resources: vec![],
            attributes: vec![],
            version: "t".into(),
            registered_time: 1.0,
            standing: AgentStanding::Admitted,
        };
        {
            let r = Registry::open(&path).expect("open");
            r.apply(&[Write::Agent(agent("a")), Write::Agent(agent("b"))])
                .expect("apply");
            r.apply(&[Write::RemoveAgent(AgentId::new("a"))])
                .expect("apply");
        }
        let r = Registry::open(&path).expect("reopen");
        let snap = r.load().expect("load");
        assert_eq!(snap.agents, vec![agent("b")]);
    }

    #[test]
    fn pending_master_updates_survive_reopening_until_removed() {
        use mantle_api::mesos::TaskStatus;
        use mantle_master::registry::UpdateRecord;
        use mantle_model::{FrameworkId, TaskId, TaskState};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registry.redb");
        let update = |task: &str, seq: u64| {
            let mut status = TaskStatus::new(TaskId::new(task), TaskState::Unreachable);
            status.uuid = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
            UpdateRecord {
                framework_id: FrameworkId::new("f"),
                seq,
                status,
            }
        };
        {
            let r = Registry::open(&path).expect("open");
            r.apply(&[
                Write::Update(update("t1", 0)),
                Write::Update(update("t2", 1)),
            ])
            .expect("apply");
        }
        {
            let r = Registry::open(&path).expect("reopen");
            assert_eq!(
                r.load().expect("load").updates,
                vec![update("t1", 0), update("t2", 1)]
            );
            r.apply(&[Write::RemoveUpdate(
                FrameworkId::new("f"),
                TaskId::new("t1"),
            )])
            .expect("apply");
        }
        let r = Registry::open(&path).expect("reopen");
        assert_eq!(r.load().expect("load").updates, vec![update("t2", 1)]);
    }
}
