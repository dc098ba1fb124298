//! The service scheduler's durable store: redb tables of JSON values. Every step's writes go
//! in one transaction, committed before the step's calls to the master are sent.

use mantle_marathon::core::{Instance, Snapshot, Write};
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const APPS: TableDefinition<&str, &str> = TableDefinition::new("apps");
const VERSIONS: TableDefinition<&str, &str> = TableDefinition::new("versions");
const INSTANCES: TableDefinition<&str, &str> = TableDefinition::new("instances");
const DEPLOYMENTS: TableDefinition<&str, &str> = TableDefinition::new("deployments");

/// Errors of the store (all fatal for the step that hit them).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(String),
    #[error("store holds a record that does not parse ({table}/{key}): {error}")]
    Corrupt {
        table: &'static str,
        key: String,
        error: String,
    },
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

pub struct Store {
    db: Database,
}

fn version_key(app: &str, version: &str) -> String {
    format!("{app}\u{0}{version}")
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let database = Database::create(path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        for t in [META, APPS, VERSIONS, INSTANCES, DEPLOYMENTS] {
            txn.open_table(t).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(Store { db: database })
    }

    /// Everything, to start the core from.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut snap = Snapshot::default();
        let meta = txn.open_table(META).map_err(db)?;
        snap.framework_id = meta
            .get("framework_id")
            .map_err(db)?
            .map(|v| v.value().to_string());
        fn all<T: serde::de::DeserializeOwned>(
            txn: &redb::ReadTransaction,
            def: TableDefinition<&str, &str>,
            name: &'static str,
        ) -> Result<Vec<T>, StoreError> {
            let table = txn.open_table(def).map_err(db)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                let parsed = serde_json::from_str(v.value()).map_err(|e| StoreError::Corrupt {
                    table: name,
                    key: k.value().to_string(),
                    error: e.to_string(),
                })?;
                out.push(parsed);
            }
            Ok(out)
        }
        snap.apps = all(&txn, APPS, "apps")?;
        snap.versions = all(&txn, VERSIONS, "versions")?;
        snap.instances = all::<Instance>(&txn, INSTANCES, "instances")?;
        snap.deployments = all(&txn, DEPLOYMENTS, "deployments")?;
        Ok(snap)
    }

    /// Applies one step's writes atomically and durably.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            let mut apps = txn.open_table(APPS).map_err(db)?;
            let mut versions = txn.open_table(VERSIONS).map_err(db)?;
            let mut instances = txn.open_table(INSTANCES).map_err(db)?;
            let mut deployments = txn.open_table(DEPLOYMENTS).map_err(db)?;
            for w in writes {
                match w {
                    Write::FrameworkId(id) => {
                        meta.insert("framework_id", id.as_str()).map_err(db)?;
                    }
                    Write::App(a) => {
                        apps.insert(a.id.as_str(), enc(a).as_str()).map_err(db)?;
                    }
                    Write::DeleteApp(id) => {
                        apps.remove(id.as_str()).map_err(db)?;
                    }
                    Write::Version(a) => {
                        let k = version_key(&a.id, &a.version);
                        versions.insert(k.as_str(), enc(a).as_str()).map_err(db)?;
                    }
                    Write::DeleteVersions(id) => {
                        let lo = format!("{id}\u{0}");
                        let hi = format!("{id}\u{1}");
                        let keys: Vec<String> = versions
                            .range(lo.as_str()..hi.as_str())
                            .map_err(db)?
                            .filter_map(Result::ok)
                            .map(|(k, _)| k.value().to_string())
                            .collect();
                        for k in keys {
                            versions.remove(k.as_str()).map_err(db)?;
                        }
                    }
                    Write::Instance(i) => {
                        instances
                            .insert(i.task_id.as_str(), enc(i).as_str())
                            .map_err(db)?;
                    }
                    Write::DeleteInstance(id) => {
                        instances.remove(id.as_str()).map_err(db)?;
                    }
                    Write::Deployment(d) => {
                        deployments
                            .insert(d.id.as_str(), enc(d).as_str())
                            .map_err(db)?;
                    }
                    Write::DeleteDeployment(id) => {
                        deployments.remove(id.as_str()).map_err(db)?;
                    }
                }
            }
        }
        txn.commit().map_err(db)
    }
}

/// Serializes a record. Records are plain data, so this cannot fail in practice; an
/// (impossible) failure stores `null`, which `load` then reports as corrupt.
fn enc<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mantle_marathon::app::parse;
    use serde_json::json;

    #[test]
    fn writes_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.redb");
        let a = parse(
            &json!({"id": "/a", "cmd": "x"}),
            "/",
            "2024-01-01T00:00:00.000Z",
        )
        .expect("app");
        let mut b = a.clone();
        b.version = "2024-01-02T00:00:00.000Z".into();
        {
            let s = Store::open(&path).expect("open");
            s.apply(&[
                Write::FrameworkId("fw".into()),
                Write::App(a.clone()),
                Write::Version(a.clone()),
                Write::Version(b.clone()),
            ])
            .expect("apply");
        }
        let s = Store::open(&path).expect("reopen");
        let snap = s.load().expect("load");
        assert_eq!(snap.framework_id.as_deref(), Some("fw"));
        assert_eq!(snap.apps, vec![a.clone()]);
        assert_eq!(snap.versions.len(), 2);
        s.apply(&[
            Write::DeleteApp("/a".into()),
            Write::DeleteVersions("/a".into()),
        ])
        .expect("delete");
        let snap = s.load().expect("load");
        assert!(snap.apps.is_empty() && snap.versions.is_empty());
    }
}
