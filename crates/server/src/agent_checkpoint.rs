//! The agent's checkpoint on disk: a whole checkpoint (`meta/agent.json`) and a log of the
//! status update records taken since (`meta/updates.<generation>.log`, one JSON record per
//! line).
//!
//! A whole checkpoint is written (temporary file, fsync, rename, fsync of the directory)
//! when anything but the update streams changed: an executor, task, framework or pid came or
//! went. Otherwise the step's journal records are appended to the log with one `fdatasync`,
//! so an update costs its own size, not the agent's (group commit: one sync per step however
//! many updates it took). Each whole checkpoint starts a new generation and a new, empty log;
//! the checkpoint names its generation, so a log is only ever replayed onto the checkpoint it
//! follows. A log that grows past `LOG_COMPACT_BYTES` is folded into a new whole checkpoint.
//!
//! A crash while appending leaves at most a torn last line, which was never acknowledged
//! (acknowledgements wait for the sync): recovery drops it. Any other unreadable line stops
//! recovery (strict, as `--recover reconnect` is).

use mantle_agent::{Agent, Checkpoint, JournalEntry};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use tracing::warn;

/// Past this size the log is folded into a new whole checkpoint.
pub const LOG_COMPACT_BYTES: u64 = 16 * 1024 * 1024;

/// What a previous run left: the core's checkpoint (the log replayed onto it) and the
/// executors' pids by container.
pub struct Recovered {
    pub core: Checkpoint,
    pub pids: BTreeMap<String, i32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointFile {
    core: Checkpoint,
    pids: BTreeMap<String, i32>,
    /// Names the log that follows this checkpoint (absent in checkpoints written before
    /// there was a log: no log follows them).
    #[serde(default)]
    generation: u64,
}

pub struct CheckpointStore {
    dir: PathBuf,
    generation: u64,
    /// The open log of the current generation; `None` until a whole checkpoint has been
    /// written by this run, and after a failed write (the next write is whole).
    log: Option<std::fs::File>,
    log_len: u64,
    /// The structure and pids of the last whole checkpoint, serialized.
    structure: Vec<u8>,
    /// `Agent::changes` and the pids at the last successful write: while both stay the same
    /// there is nothing to write, and the structure is not even serialized.
    written: Option<(u64, BTreeMap<String, i32>)>,
}

impl CheckpointStore {
    pub fn new(dir: PathBuf) -> Self {
        CheckpointStore {
            dir,
            generation: 0,
            log: None,
            log_len: 0,
            structure: Vec::new(),
            written: None,
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("agent.json")
    }

    fn log_path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("updates.{generation}.log"))
    }

    /// Reads what a previous run left, if anything.
    pub fn read(&mut self) -> anyhow::Result<Option<Recovered>> {
        let path = self.file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        let unreadable = |what: &std::path::Path, e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "the checkpoint {} is unreadable ({e}); move {} away or start with --recover cleanup",
                what.display(),
                self.dir.display()
            )
        };
        let file: CheckpointFile =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(&path, &e))?;
        self.generation = file.generation;
        let mut core = file.core;
        let log = self.log_path(file.generation);
        match std::fs::read(&log) {
            Ok(bytes) => {
                for entry in parse_log(&bytes).map_err(|e| unreadable(&log, &e))? {
                    core.apply(entry);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot read {}: {e}", log.display()),
        }
        Ok(Some(Recovered {
            core,
            pids: file.pids,
        }))
    }

    /// Makes the agent's state durable: a whole checkpoint, or the journal appended to the
    /// log. On error nothing taken since the last successful write may be counted as durable;
    /// the next write is a whole checkpoint, which holds it all.
    pub fn write(
        &mut self,
        agent: &mut Agent,
        pids: &BTreeMap<String, i32>,
    ) -> std::io::Result<()> {
        let unchanged = |w: &(u64, BTreeMap<String, i32>)| w.0 == agent.changes() && w.1 == *pids;
        if self.log.is_some() && self.written.as_ref().is_some_and(unchanged) {
            return Ok(());
        }
        let changes = agent.changes();
        let all_pids = pids;
        let journal = agent.take_journal();
        let core = agent.checkpoint_structure();
        // Only the executors the checkpoint holds (those of checkpointing frameworks).
        let pids: BTreeMap<String, i32> = pids
            .iter()
            .filter(|(c, _)| core.executors.iter().any(|e| &e.container_id == *c))
            .map(|(c, p)| (c.clone(), *p))
            .collect();
        let pids = &pids;
        let structure = match serde_json::to_vec(&(core, pids)) {
            Ok(s) => s,
            Err(e) => {
                // The journal is taken: only a whole checkpoint may follow.
                self.log = None;
                self.written = None;
                return Err(std::io::Error::other(e));
            }
        };
        let whole =
            self.log.is_none() || structure != self.structure || self.log_len > LOG_COMPACT_BYTES;
        let result = if whole {
            self.write_whole(agent, pids, structure)
        } else if journal.is_empty() {
            Ok(())
        } else {
            self.append(&journal)
        };
        match &result {
            Ok(()) => self.written = Some((changes, all_pids.clone())),
            Err(_) => {
                self.log = None;
                self.written = None;
            }
        }
        result
    }

    fn write_whole(
        &mut self,
        agent: &Agent,
        pids: &BTreeMap<String, i32>,
        structure: Vec<u8>,
    ) -> std::io::Result<()> {
        self.log = None;
        let generation = self.generation + 1;
        std::fs::create_dir_all(&self.dir)?;
        // The new generation's log exists (empty) before the checkpoint naming it does.
        let log_path = self.log_path(generation);
        std::fs::File::create(&log_path)?;
        let log = std::fs::OpenOptions::new().append(true).open(&log_path)?;
        #[derive(serde::Serialize)]
        struct Ref<'a> {
            core: &'a Checkpoint,
            pids: &'a BTreeMap<String, i32>,
            generation: u64,
        }
        let bytes = serde_json::to_vec(&Ref {
            core: &agent.checkpoint(),
            pids,
            generation,
        })
        .map_err(std::io::Error::other)?;
        let tmp = self.dir.join("agent.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.file())?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let old = self.log_path(self.generation);
        if let Err(e) = std::fs::remove_file(&old) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(file = %old.display(), error = %e, "cannot remove an old update log");
            }
        }
        self.generation = generation;
        self.log = Some(log);
        self.log_len = 0;
        self.structure = structure;
        Ok(())
    }

    fn append(&mut self, journal: &[JournalEntry]) -> std::io::Result<()> {
        let Some(log) = self.log.as_mut() else {
            return Err(std::io::Error::other("no update log open"));
        };
        let mut buf = Vec::with_capacity(256 * journal.len());
        for entry in journal {
            serde_json::to_writer(&mut buf, entry).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        log.write_all(&buf)?;
        log.sync_data()?;
        self.log_len += buf.len() as u64;
        Ok(())
    }
}

/// The records of a log. A last line with no newline after it is a torn append and is
/// dropped; any other line that does not parse is an error.
fn parse_log(bytes: &[u8]) -> Result<Vec<JournalEntry>, String> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            warn!(
                line = line_no,
                "dropping a torn last record of the update log"
            );
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            continue;
        }
        let entry = serde_json::from_slice(line).map_err(|e| format!("line {line_no}: {e}"))?;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(n: u32) -> JournalEntry {
        JournalEntry::Ack {
            framework_id: mantle_model::FrameworkId::new("F"),
            task_id: mantle_model::TaskId::new(format!("t{n}")),
            uuid: format!("u{n}"),
        }
    }

    fn line(e: &JournalEntry) -> String {
        serde_json::to_string(e).unwrap() + "\n"
    }

    #[test]
    fn a_log_drops_a_torn_last_record_and_refuses_a_damaged_one_before_it() {
        let whole = line(&ack(1)) + &line(&ack(2));
        assert_eq!(parse_log(whole.as_bytes()).unwrap(), vec![ack(1), ack(2)]);
        let torn = line(&ack(1)) + &line(&ack(2))[..10];
        assert_eq!(parse_log(torn.as_bytes()).unwrap(), vec![ack(1)]);
        let damaged = line(&ack(1)) + "{\"ack\":\n" + &line(&ack(2));
        let e = parse_log(damaged.as_bytes()).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert_eq!(parse_log(b"").unwrap(), vec![]);
    }

    /// An agent with one running task on the built-in executor, connected as `conn` 1.
    fn agent_with_a_task() -> Agent {
        use mantle_api::internal::MasterToAgent;
        let now = mantle_model::Now::at(std::time::Duration::ZERO);
        let mut a = Agent::new(
            mantle_agent::Config {
                hostname: "127.0.0.2".into(),
                port: 5051,
                resources: mantle_model::Resources::parse("cpus:2;mem:1024").unwrap(),
                attributes: vec![],
                sandbox_root: "/w/slaves".into(),
                status_update_retry_min: std::time::Duration::from_secs(10),
                seed: 1,
            },
            now,
        );
        a.from_master(
            now,
            MasterToAgent::Registered {
                agent_id: mantle_model::AgentId::new("A1"),
                stream_id: "s".into(),
            },
        );
        let framework = serde_json::from_value(
            serde_json::json!({"user": "u", "name": "f", "id": {"value": "F"}, "checkpoint": true}),
        )
        .unwrap();
        let task = serde_json::from_value(serde_json::json!({"name": "t",
            "task_id": {"value": "t1"}, "agent_id": {"value": "A1"}, "resources": [],
            "command": {"value": "sleep 1"}}))
        .unwrap();
        a.from_master(now, MasterToAgent::RunTask { framework, task });
        a.executor_subscribe(
            now,
            1,
            &exec_call(mantle_api::executor::CallType::Subscribe, None),
        )
        .unwrap();
        a.take_outputs();
        a
    }

    fn exec_call(
        kind: mantle_api::executor::CallType,
        state_uuid: Option<(&str, u8)>,
    ) -> mantle_api::executor::Call {
        use base64::Engine;
        mantle_api::executor::Call {
            executor_id: mantle_model::ExecutorId::new("t1"),
            framework_id: mantle_model::FrameworkId::new("F"),
            kind,
            subscribe: None,
            update: state_uuid.map(|(state, n)| mantle_api::executor::CallUpdate {
                status: serde_json::from_value(serde_json::json!({
                    "task_id": {"value": "t1"}, "state": state,
                    "uuid": base64::engine::general_purpose::STANDARD.encode([n; 16])}))
                .unwrap(),
            }),
            message: None,
        }
    }

    #[test]
    fn updates_are_appended_to_the_log_and_a_restart_reads_them_back() {
        use mantle_api::executor::CallType;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meta");
        let mut a = agent_with_a_task();
        // The pid of the task's executor (pids of containers it does not hold are dropped).
        let container = a.checkpoint().executors[0].container_id.clone();
        let pids = BTreeMap::from([(container.clone(), 42)]);
        let mut store = CheckpointStore::new(dir.clone());
        store.write(&mut a, &pids).unwrap();
        let whole = std::fs::read(dir.join("agent.json")).unwrap();
        let now = mantle_model::Now::at(std::time::Duration::from_secs(1));
        for n in 1..=3 {
            a.executor_call(now, exec_call(CallType::Update, Some(("TASK_RUNNING", n))))
                .unwrap();
            store.write(&mut a, &pids).unwrap();
        }
        assert_eq!(
            std::fs::read(dir.join("agent.json")).unwrap(),
            whole,
            "updates alone do not rewrite the whole checkpoint"
        );
        let log = std::fs::read_to_string(dir.join("updates.1.log")).unwrap();
        assert_eq!(log.lines().count(), 3, "{log}");
        let recovered = CheckpointStore::new(dir.clone()).read().unwrap().unwrap();
        let mut want = a.checkpoint();
        want.sort_updates();
        let mut got = recovered.core;
        got.sort_updates();
        assert_eq!(got, want);
        assert_eq!(got.updates.len(), 3);
        assert_eq!(recovered.pids, pids);

        // A new pid is a change of structure: a whole checkpoint of a new generation, whose
        // log starts empty, and the old log is gone.
        let pids2 = BTreeMap::from([(container, 43)]);
        store.write(&mut a, &pids2).unwrap();
        assert!(!dir.join("updates.1.log").exists());
        assert_eq!(std::fs::read(dir.join("updates.2.log")).unwrap().len(), 0);
        let again = CheckpointStore::new(dir.clone()).read().unwrap().unwrap();
        let mut got = again.core;
        got.sort_updates();
        assert_eq!(got, want);
        assert_eq!(again.pids, pids2);
    }
}
