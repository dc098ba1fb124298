//! `mantle task log ID`: finds the task's agent through the master, its sandbox through the
//! agent's `/state`, and reads `stdout` or `stderr` through the agent's `/files/read`.

use crate::http::{encode_segment, Api};
use crate::marathon::POLL;
use crate::s;
use serde_json::Value;
use std::io::Write;

/// Most bytes asked for in one `/files/read` (the agent's own cap).
const CHUNK: u64 = 65536;

/// Where a task's output lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// `http://host:port` of the agent.
    pub agent: String,
    pub directory: String,
}

/// The task's framework, agent and executor ids from `/master/tasks`; a command task's
/// executor has the task's id.
pub fn task_location(tasks: &Value, task_id: &str) -> Option<(String, String, String)> {
    let t = tasks["tasks"]
        .as_array()?
        .iter()
        .rev()
        .find(|t| t["id"] == task_id)?;
    let executor = match s(&t["executor_id"]) {
        e if e.is_empty() => task_id.to_string(),
        e => e,
    };
    Some((s(&t["framework_id"]), s(&t["slave_id"]), executor))
}

/// `http://hostname:port` of agent `agent_id` from `/master/slaves`.
pub fn agent_url(slaves: &Value, agent_id: &str) -> Option<String> {
    let a = slaves["slaves"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == agent_id)?;
    let host = a["hostname"].as_str()?;
    let port = a["port"].as_u64()?;
    Some(format!("http://{host}:{port}"))
}

/// The sandbox directory of executor `executor_id` of `framework_id` in an agent's `/state`,
/// preferring a live executor over completed runs (the newest of those).
pub fn executor_directory(state: &Value, framework_id: &str, executor_id: &str) -> Option<String> {
    let f = state["frameworks"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == framework_id)?;
    for key in ["executors", "completed_executors"] {
        if let Some(e) = f[key]
            .as_array()
            .and_then(|l| l.iter().rev().find(|e| e["id"] == executor_id))
        {
            return e["directory"].as_str().map(str::to_string);
        }
    }
    None
}

/// Finds the sandbox of `task_id` via the master at `master`.
pub async fn locate(master: &str, task_id: &str) -> anyhow::Result<Sandbox> {
    let m = Api::new(
        master,
        "the master",
        "--master URL or the MANTLE_MASTER_URL environment variable",
    )?;
    let tasks = m.get("/master/tasks").await?.into_ok()?;
    let Some((framework, agent_id, executor)) = task_location(&tasks, task_id) else {
        anyhow::bail!(
            "not found: the master at {} knows no task {task_id} (see mantle task list)",
            m.base()
        );
    };
    let slaves = m.get("/master/slaves").await?.into_ok()?;
    let Some(agent) = agent_url(&slaves, &agent_id) else {
        anyhow::bail!("task {task_id} ran on agent {agent_id}, which the master no longer knows");
    };
    let a = Api::new(
        &agent,
        "the task's agent",
        "--master URL (the agent address comes from the master)",
    )?;
    let state = a.get("/state").await?.into_ok()?;
    let Some(directory) = executor_directory(&state, &framework, &executor) else {
        anyhow::bail!(
            "the agent at {agent} has no sandbox for task {task_id} (executor {executor})"
        );
    };
    Ok(Sandbox { agent, directory })
}

/// Prints the task's `stdout` (or `stderr`) to `out`; with `follow`, keeps polling for new
/// bytes until the process is interrupted.
pub async fn log(
    master: &str,
    task_id: &str,
    stderr: bool,
    follow: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let sb = locate(master, task_id).await?;
    let file = format!(
        "{}/{}",
        sb.directory.trim_end_matches('/'),
        if stderr { "stderr" } else { "stdout" }
    );
    let agent = Api::new(
        &sb.agent,
        "the task's agent",
        "--master URL (the agent address comes from the master)",
    )?;
    let path = encode_segment(&file);
    let mut offset: u64 = 0;
    loop {
        // The size first, so that the offset advances by exactly the bytes asked for even
        // when the agent replaces invalid UTF-8 in `data`.
        let r = agent
            .get(&format!("/files/read?path={path}&offset=-1"))
            .await?;
        if r.status == 404 {
            anyhow::bail!("{file} does not exist on the agent at {}", sb.agent);
        }
        let size = r.into_ok()?["offset"].as_u64().unwrap_or(0);
        if size < offset {
            // Truncated: start over.
            offset = 0;
        }
        while offset < size {
            let len = (size - offset).min(CHUNK);
            let v = agent
                .get(&format!(
                    "/files/read?path={path}&offset={offset}&length={len}"
                ))
                .await?
                .into_ok()?;
            let data = v["data"].as_str().unwrap_or("");
            out.write_all(data.as_bytes())?;
            out.flush()?;
            offset += len;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_agent_and_sandbox() {
        let tasks = json!({"tasks": [{"id": "t1", "framework_id": "f", "slave_id": "s1", "executor_id": ""}]});
        assert_eq!(
            task_location(&tasks, "t1"),
            Some(("f".into(), "s1".into(), "t1".into()))
        );
        assert_eq!(task_location(&tasks, "t2"), None);
        let slaves = json!({"slaves": [{"id": "s1", "hostname": "127.0.0.2", "port": 5051}]});
        assert_eq!(
            agent_url(&slaves, "s1").as_deref(),
            Some("http://127.0.0.2:5051")
        );
        let state = json!({"frameworks": [{"id": "f", "executors": [],
            "completed_executors": [{"id": "t1", "directory": "/old"}, {"id": "t1", "directory": "/new"}]}]});
        assert_eq!(
            executor_directory(&state, "f", "t1").as_deref(),
            Some("/new")
        );
    }
}
