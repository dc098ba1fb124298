//! The `docker` containerizer: tasks whose `container.type` is `DOCKER` run as Docker
//! containers through the Engine API (bollard), started by the built-in executor as Mesos's
//! docker executor does. Containers are named `mesos-<container id>` and labelled with the
//! agent that owns them, so a restarted agent finds its own and removes the orphans.

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use mantle_api::mesos::{CommandInfo, TaskInfo};
use std::collections::HashMap;
use std::time::Duration;

/// Label naming the agent a container belongs to (its value: the agent's `--cgroups-root`-like
/// identity, `agent-<ip>-<port>`).
pub const AGENT_LABEL: &str = "mantle.agent";
/// Where the sandbox is mounted inside a container (as in Mesos).
pub const SANDBOX_IN_CONTAINER: &str = "/mnt/mesos/sandbox";

/// The name of the `n`th Docker container an executor runs for its container (`mesos-<id>`
/// for the first, `mesos-<id>-<n>` after).
pub fn container_name(container_id: &str, n: usize) -> String {
    if n == 0 {
        format!("mesos-{container_id}")
    } else {
        format!("mesos-{container_id}-{n}")
    }
}

/// Whether `name` is one of [`container_name`]'s for `container_id`.
pub fn is_of_container(name: &str, container_id: &str) -> bool {
    name.strip_prefix("mesos-")
        .and_then(|r| r.strip_prefix(container_id))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// What a task asks of Docker.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub image: String,
    pub force_pull: bool,
    /// `host_path:container_path[:ro]` binds.
    pub binds: Vec<String>,
    pub privileged: bool,
    pub network: Network,
    /// `container.hostname` (not with HOST networking).
    pub hostname: Option<String>,
    /// `docker.port_mappings`: host ports (from the task's `ports`) published to container ports.
    pub port_mappings: Vec<PortMapping>,
}

/// `DockerInfo.network`: the Docker network the container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// The host's network stack (Mesos's default on Linux).
    Host,
    /// Docker's default `bridge` network.
    Bridge,
    /// Its own network namespace with only a loopback interface.
    None,
    /// A user-defined Docker network, named by the one `container.network_infos[].name`.
    User(String),
}

impl Network {
    /// The Docker `NetworkMode` for it.
    pub fn mode(&self) -> &str {
        match self {
            Network::Host => "host",
            Network::Bridge => "bridge",
            Network::None => "none",
            Network::User(name) => name,
        }
    }
}

/// One `DockerInfo.PortMapping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` (the default), `udp` or `sctp`.
    pub protocol: String,
}

/// The task's Docker spec: `None` for a task that is not a Docker task, an error for one whose
/// container cannot be run as asked.
pub fn spec_of(task: &TaskInfo) -> Option<Result<Spec, String>> {
    let c = task.extra.get("container")?;
    if c.get("type").and_then(|t| t.as_str()) != Some("DOCKER") {
        return None;
    }
    let ports: Vec<(u64, u64)> = task
        .resources
        .iter()
        .filter(|r| r.name == "ports")
        .filter_map(|r| r.ranges.as_ref())
        .flat_map(|r| r.range.iter().map(|r| (r.begin, r.end)))
        .collect();
    Some(parse(c, &ports))
}

/// `c` is the task's `container`; `ports` the ranges of its `ports` resources.
fn parse(c: &serde_json::Value, ports: &[(u64, u64)]) -> Result<Spec, String> {
    let d = c
        .get("docker")
        .ok_or("container.docker is required for a DOCKER container")?;
    let image = d
        .get("image")
        .and_then(|v| v.as_str())
        .filter(|s| !s.trim().is_empty())
        .ok_or("container.docker.image is required")?
        .to_string();
    let network = match d.get("network").and_then(|v| v.as_str()).unwrap_or("HOST") {
        "HOST" => Network::Host,
        "BRIDGE" => Network::Bridge,
        "NONE" => Network::None,
        "USER" => {
            let infos = c
                .get("network_infos")
                .and_then(|v| v.as_array())
                .map(Vec::as_slice)
                .unwrap_or_default();
            match infos {
                [] => return Err("container.network_infos is required with network USER (the Docker network to join)".into()),
                [one] => match one.get("name").and_then(|n| n.as_str()) {
                    // Docker's own modes are asked for as such, never through USER (and
                    // `container:<id>` would join another container's network).
                    Some(name)
                        if ["host", "bridge", "none", "default"].contains(&name)
                            || name.starts_with("container:") =>
                    {
                        return Err(format!(
                            "container.network_infos[0].name {name} is not a user-defined network; use network HOST, BRIDGE or NONE"
                        ))
                    }
                    Some(name) if !name.trim().is_empty() => Network::User(name.to_string()),
                    _ => return Err("container.network_infos[0].name is required with network USER".into()),
                },
                _ => return Err("container.network_infos: a Docker container joins one network only".into()),
            }
        }
        other => {
            return Err(format!(
                "container.docker.network {other} is not one of HOST, BRIDGE, NONE, USER"
            ))
        }
    };
    let hostname =
        match c.get("hostname").and_then(|h| h.as_str()) {
            Some(_) if network == Network::Host => return Err(
                "container.hostname cannot be set with network HOST (the container has the host's)"
                    .into(),
            ),
            Some(h) => Some(h.to_string()),
            None => None,
        };
    let mut port_mappings = Vec::new();
    let mappings = d
        .get("port_mappings")
        .and_then(|v| v.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !mappings.is_empty() && matches!(network, Network::Host | Network::None) {
        return Err(
            "container.docker.port_mappings are only supported with network BRIDGE or USER".into(),
        );
    }
    if !mappings.is_empty() && ports.is_empty() {
        return Err("container.docker.port_mappings need the task to have ports resources holding their host ports".into());
    }
    for (i, m) in mappings.iter().enumerate() {
        let port = |field: &str| -> Result<u16, String> {
            m.get(field)
                .and_then(|v| v.as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or(format!(
                    "container.docker.port_mappings[{i}].{field} must be a port number (1 to 65535)"
                ))
        };
        let host_port = port("host_port")?;
        let container_port = port("container_port")?;
        if !ports
            .iter()
            .any(|(b, e)| (*b..=*e).contains(&u64::from(host_port)))
        {
            return Err(format!(
                "container.docker.port_mappings[{i}].host_port {host_port} is not in the task's ports resources"
            ));
        }
        let protocol = m
            .get("protocol")
            .and_then(|v| v.as_str())
            .unwrap_or("tcp")
            .to_ascii_lowercase();
        if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
            return Err(format!(
                "container.docker.port_mappings[{i}].protocol {protocol} is not tcp, udp or sctp"
            ));
        }
        port_mappings.push(PortMapping {
            host_port,
            container_port,
            protocol,
        });
    }
    let mut binds = Vec::new();
    for (i, v) in c
        .get("volumes")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let container_path = v
            .get("container_path")
            .and_then(|p| p.as_str())
            .filter(|p| p.starts_with('/'))
            .ok_or(format!(
                "container.volumes[{i}].container_path must be an absolute path"
            ))?;
        let host_path = v
            .get("host_path")
            .and_then(|p| p.as_str())
            .filter(|p| p.starts_with('/'))
            .ok_or(format!(
                "container.volumes[{i}].host_path must be an absolute path"
            ))?;
        let ro = match v.get("mode").and_then(|m| m.as_str()).unwrap_or("RW") {
            "RW" => "",
            "RO" => ":ro",
            other => {
                return Err(format!(
                    "container.volumes[{i}].mode {other} is not RW or RO"
                ))
            }
        };
        if [container_path, host_path].iter().any(|p| p.contains(':')) {
            return Err(format!("container.volumes[{i}] paths may not contain ':'"));
        }
        binds.push(format!("{host_path}:{container_path}{ro}"));
    }
    Ok(Spec {
        image,
        force_pull: d
            .get("force_pull_image")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        binds,
        privileged: d
            .get("privileged")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        network,
        hostname,
        port_mappings,
    })
}

/// Connects to the Docker daemon at a unix socket and agrees on an API version.
pub async fn connect(socket: &str) -> Result<Docker, String> {
    let d = Docker::connect_with_unix(socket, 30, bollard::API_DEFAULT_VERSION)
        .map_err(|e| format!("cannot use Docker at {socket}: {e}"))?;
    let d = d
        .negotiate_version()
        .await
        .map_err(|e| format!("Docker at {socket} did not answer: {e}"))?;
    d.ping()
        .await
        .map_err(|e| format!("Docker at {socket} did not answer: {e}"))?;
    Ok(d)
}

/// The container's command: `sh -c <value>` for a shell command (the image's shell), the
/// value and arguments as the entrypoint otherwise, or the image's own when there is none.
fn command_of(c: &CommandInfo) -> (Option<Vec<String>>, Option<Vec<String>>) {
    match (&c.value, c.shell.unwrap_or(true)) {
        (Some(v), true) if !v.is_empty() => (
            Some(vec!["/bin/sh".into(), "-c".into()]),
            Some(vec![v.clone()]),
        ),
        (Some(v), false) if !v.is_empty() => (
            Some(vec![v.clone()]),
            Some(c.arguments.iter().skip(1).cloned().collect()),
        ),
        _ => (None, (!c.arguments.is_empty()).then(|| c.arguments.clone())),
    }
}

/// Everything the executor needs to run one Docker task.
pub struct Launch<'a> {
    pub name: &'a str,
    pub agent_label: &'a str,
    pub spec: &'a Spec,
    pub command: &'a CommandInfo,
    pub env: Vec<(String, String)>,
    pub sandbox: &'a str,
    pub labels: HashMap<String, String>,
    pub cpus: f64,
    pub mem_mb: f64,
    /// The agent's address: published ports listen on it (where the task's ports are
    /// advertised), not on every interface.
    pub host_ip: &'a str,
}

/// The create body's `ExposedPorts` and `HostConfig.PortBindings` for `mappings`, published on
/// `host_ip`.
type Exposed = HashMap<String, HashMap<(), ()>>;
fn port_bindings(mappings: &[PortMapping], host_ip: &str) -> (Exposed, bollard::models::PortMap) {
    let mut exposed = HashMap::new();
    let mut bindings: bollard::models::PortMap = HashMap::new();
    for m in mappings {
        let key = format!("{}/{}", m.container_port, m.protocol);
        exposed.insert(key.clone(), HashMap::new());
        bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(bollard::models::PortBinding {
                host_ip: Some(host_ip.to_string()),
                host_port: Some(m.host_port.to_string()),
            });
    }
    (exposed, bindings)
}

/// Pulls the image when asked (or when it is missing), creates and starts the container.
pub async fn start(docker: &Docker, l: Launch<'_>) -> Result<(), String> {
    let have = docker.inspect_image(&l.spec.image).await.is_ok();
    if l.spec.force_pull || !have {
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&l.spec.image)
            .build();
        let mut pull = docker.create_image(Some(opts), None, None);
        while let Some(step) = pull.next().await {
            if let Err(e) = step {
                return Err(format!("Failed to pull image '{}': {e}", l.spec.image));
            }
        }
    }
    let (entrypoint, cmd) = command_of(l.command);
    let mut labels = l.labels;
    labels.insert(AGENT_LABEL.into(), l.agent_label.into());
    let mut binds = vec![format!("{}:{SANDBOX_IN_CONTAINER}", l.sandbox)];
    binds.extend(l.spec.binds.iter().cloned());
    let mut env: Vec<String> = l.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("MESOS_SANDBOX={SANDBOX_IN_CONTAINER}"));
    let (exposed, bindings) = port_bindings(&l.spec.port_mappings, l.host_ip);
    let body = bollard::models::ContainerCreateBody {
        image: Some(l.spec.image.clone()),
        entrypoint,
        cmd,
        env: Some(env),
        labels: Some(labels),
        working_dir: Some(SANDBOX_IN_CONTAINER.into()),
        hostname: l.spec.hostname.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(bollard::models::HostConfig {
            network_mode: Some(l.spec.network.mode().to_string()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            binds: Some(binds),
            privileged: Some(l.spec.privileged),
            cpu_shares: Some(crate::cgroups::shares_for(l.cpus) as i64),
            memory: Some(crate::cgroups::memory_for(l.mem_mb) as i64),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(l.name).build();
    docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| format!("Failed to create container: {e}"))?;
    if let Err(e) = docker
        .start_container(
            l.name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
    {
        let _ = remove(docker, l.name).await;
        return Err(format!("Failed to start container: {e}"));
    }
    Ok(())
}

/// Copies the container's stdout and stderr until it ends to the executor's own, which are
/// the sandbox's `stdout` and `stderr` (through their rotation, when the agent asked for it),
/// as a command task's output is.
pub async fn follow_logs(docker: Docker, name: String) {
    use tokio::io::AsyncWriteExt;
    let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
    let opts = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .tail("all")
        .build();
    let mut logs = docker.logs(&name, Some(opts));
    while let Some(chunk) = logs.next().await {
        let _ = match chunk {
            Ok(bollard::container::LogOutput::StdErr { message }) => err.write_all(&message).await,
            Ok(other) => out.write_all(&other.into_bytes()).await,
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "container logs ended");
                break;
            }
        };
    }
    let _ = out.flush().await;
    let _ = err.flush().await;
}

/// Runs `sh -c <command>` inside the running container (as `docker exec` does), with `env`
/// and the sandbox as working directory; its exit code, or `None` when it could not be run
/// or did not end within `timeout` (then it is killed).
pub async fn exec(
    docker: &Docker,
    container: &str,
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> Option<i64> {
    let config = bollard::models::ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), command.into()]),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some(SANDBOX_IN_CONTAINER.into()),
        ..Default::default()
    };
    let id = match docker.create_exec(container, config).await {
        Ok(r) => r.id,
        Err(e) => {
            tracing::debug!(%container, error = %e, "cannot create an exec");
            return None;
        }
    };
    let run = async {
        match docker.start_exec(&id, None).await {
            // The output is not kept; its end is the process's end.
            Ok(bollard::exec::StartExecResults::Attached { mut output, .. }) => {
                while let Some(Ok(_)) = output.next().await {}
            }
            Ok(bollard::exec::StartExecResults::Detached) => {}
            Err(e) => {
                tracing::debug!(%container, error = %e, "cannot start an exec");
                return None;
            }
        }
        // Docker records the exit code just after the output ends.
        loop {
            let i = docker.inspect_exec(&id).await.ok()?;
            if i.running != Some(true) {
                return i.exit_code;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(code) => code,
        Err(_) => {
            // Docker has no way to stop an exec; its process is a host process, so kill it.
            if let Some(pid) = docker
                .inspect_exec(&id)
                .await
                .ok()
                .and_then(|i| i.pid)
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p > 0)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            None
        }
    }
}

/// Waits for the container to end; its exit code (or `None` when Docker could not tell).
pub async fn wait(docker: &Docker, name: &str) -> Option<i32> {
    let opts = WaitContainerOptionsBuilder::new()
        .condition("not-running")
        .build();
    let mut w = docker.wait_container(name, Some(opts));
    match w.next().await {
        Some(Ok(r)) => Some(r.status_code as i32),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            Some(code as i32)
        }
        _ => None,
    }
}

/// The host pid of the container's first process, while it runs.
pub async fn pid(docker: &Docker, name: &str) -> Option<i32> {
    let c = docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()?;
    c.state?
        .pid
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// The container's usage from the daemon's one-shot stats (`None` when it does not run or
/// the daemon does not answer): cpu time in user and kernel mode, CFS throttling, memory in
/// use, its RSS (cgroup v1 `rss`, v2 `anon`), peak and limit, and the process count.
/// `cpus_limit` is left 0 for the caller, who knows what the task asked for.
pub async fn usage(docker: &Docker, name: &str) -> Option<crate::cgroups::Usage> {
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let s = docker.stats(name, Some(opts)).next().await?.ok()?;
    let cpu = s.cpu_stats.unwrap_or_default();
    let time = cpu.cpu_usage.unwrap_or_default();
    let throttling = cpu.throttling_data;
    let mem = s.memory_stats.unwrap_or_default();
    let stat = |k: &str| mem.stats.as_ref().and_then(|m| m.get(k).copied());
    let secs = |ns: Option<u64>| ns.unwrap_or(0) as f64 / 1e9;
    Some(crate::cgroups::Usage {
        cpus_user_time_secs: secs(time.usage_in_usermode),
        cpus_system_time_secs: secs(time.usage_in_kernelmode),
        cpus_limit: 0.0,
        cpus_nr_periods: throttling.as_ref().and_then(|t| t.periods),
        cpus_nr_throttled: throttling.as_ref().and_then(|t| t.throttled_periods),
        cpus_throttled_time_secs: throttling
            .as_ref()
            .and_then(|t| t.throttled_time)
            .map(|ns| secs(Some(ns))),
        mem_total_bytes: mem.usage.unwrap_or(0),
        mem_rss_bytes: stat("rss").or_else(|| stat("anon")).unwrap_or(0),
        mem_limit_bytes: mem.limit.unwrap_or(0),
        mem_max_bytes: mem.max_usage.unwrap_or(0),
        processes: s.pids_stats.and_then(|p| p.current).unwrap_or(0),
    })
}

/// Asks the container to stop: SIGTERM, then SIGKILL after `grace`.
pub async fn stop(docker: &Docker, name: &str, grace: Duration) {
    let opts = StopContainerOptionsBuilder::new()
        .t(grace.as_secs().min(i32::MAX as u64) as i32)
        .build();
    let _ = docker.stop_container(name, Some(opts)).await;
}

/// SIGKILLs the container.
pub async fn kill(docker: &Docker, name: &str) {
    let opts = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
    let _ = docker.kill_container(name, Some(opts)).await;
}

/// Removes the container, running or not.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), String> {
    let opts = RemoveContainerOptionsBuilder::new().force(true).build();
    docker
        .remove_container(name, Some(opts))
        .await
        .map_err(|e| e.to_string())
}

/// Names of every container (running or not) labelled as belonging to `agent_label`.
pub async fn containers_of(docker: &Docker, agent_label: &str) -> Result<Vec<String>, String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{AGENT_LABEL}={agent_label}")],
    )]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .into_iter()
        .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn task(container: serde_json::Value) -> TaskInfo {
        serde_json::from_value(
            json!({"name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "a"},
            "resources": [], "command": {"value": "echo hi"}, "container": container}),
        )
        .unwrap()
    }

    #[test]
    fn docker_specs_are_read_and_checked() {
        assert!(spec_of(&task(json!({"type": "MESOS"}))).is_none());
        let s = spec_of(&task(
            json!({"type": "DOCKER", "docker": {"image": "busybox", "force_pull_image": true},
            "volumes": [{"container_path": "/data", "host_path": "/srv/data", "mode": "RO"}]}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(s.image, "busybox");
        assert!(s.force_pull);
        assert_eq!(s.binds, vec!["/srv/data:/data:ro".to_string()]);
        for (c, needle) in [
            (json!({"type": "DOCKER"}), "container.docker is required"),
            (
                json!({"type": "DOCKER", "docker": {"image": " "}}),
                "image is required",
            ),
            (
                json!({"type": "DOCKER", "docker": {"image": "x", "network": "OVERLAY"}}),
                "OVERLAY is not one of HOST, BRIDGE, NONE, USER",
            ),
            (
                json!({"type": "DOCKER", "docker": {"image": "x"}, "volumes": [{"container_path": "rel", "host_path": "/a"}]}),
                "container_path",
            ),
            (
                json!({"type": "DOCKER", "docker": {"image": "x"}, "volumes": [{"container_path": "/a", "host_path": "/b", "mode": "RX"}]}),
                "mode RX",
            ),
        ] {
            let e = spec_of(&task(c)).unwrap().unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    /// A task with `ports` 31000-31009 and this `container`.
    fn task_with_ports(container: serde_json::Value) -> TaskInfo {
        serde_json::from_value(json!({"name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "a"},
            "resources": [{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31009}]}}],
            "command": {"value": "echo hi"}, "container": container}))
        .unwrap()
    }

    #[test]
    fn networks_hostnames_and_port_mappings_are_checked_as_mesos_does() {
        let spec = |c| spec_of(&task_with_ports(c)).unwrap();
        let host = spec(json!({"type": "DOCKER", "docker": {"image": "x"}})).unwrap();
        assert_eq!((host.network.mode(), host.hostname), ("host", None));
        let none = spec(json!({"type": "DOCKER", "hostname": "h1", "docker": {"image": "x", "network": "NONE"}}))
            .unwrap();
        assert_eq!(
            (none.network.mode(), none.hostname.as_deref()),
            ("none", Some("h1"))
        );
        let bridge = spec(
            json!({"type": "DOCKER", "docker": {"image": "x", "network": "BRIDGE",
            "port_mappings": [{"host_port": 31000, "container_port": 80},
                              {"host_port": 31009, "container_port": 53, "protocol": "UDP"}]}}),
        )
        .unwrap();
        assert_eq!(bridge.network, Network::Bridge);
        assert_eq!(
            bridge.port_mappings,
            [
                PortMapping {
                    host_port: 31000,
                    container_port: 80,
                    protocol: "tcp".into()
                },
                PortMapping {
                    host_port: 31009,
                    container_port: 53,
                    protocol: "udp".into()
                },
            ]
        );
        let user = spec(json!({"type": "DOCKER", "network_infos": [{"name": "backend"}],
            "docker": {"image": "x", "network": "USER", "port_mappings": [{"host_port": 31001, "container_port": 8080}]}}))
        .unwrap();
        assert_eq!(user.network.mode(), "backend");
        // The create body publishes each mapping on the agent's address only.
        let (exposed, bindings) = port_bindings(&bridge.port_mappings, "127.0.0.2");
        let mut keys: Vec<&String> = exposed.keys().collect();
        keys.sort();
        assert_eq!(keys, ["53/udp", "80/tcp"]);
        let b = bindings["80/tcp"].as_ref().unwrap();
        assert_eq!(
            (b[0].host_ip.as_deref(), b[0].host_port.as_deref()),
            (Some("127.0.0.2"), Some("31000"))
        );
        for (c, needle) in [
            (
                json!({"hostname": "h", "docker": {"image": "x"}}),
                "container.hostname cannot be set with network HOST",
            ),
            (
                json!({"docker": {"image": "x", "port_mappings": [{"host_port": 31000, "container_port": 80}]}}),
                "port_mappings are only supported with network BRIDGE or USER",
            ),
            (
                json!({"docker": {"image": "x", "network": "NONE", "port_mappings": [{"host_port": 31000, "container_port": 80}]}}),
                "port_mappings are only supported with network BRIDGE or USER",
            ),
            (
                json!({"docker": {"image": "x", "network": "BRIDGE", "port_mappings": [{"host_port": 32000, "container_port": 80}]}}),
                "port_mappings[0].host_port 32000 is not in the task's ports resources",
            ),
            (
                json!({"docker": {"image": "x", "network": "BRIDGE", "port_mappings": [{"host_port": 31000, "container_port": 70000}]}}),
                "port_mappings[0].container_port must be a port number",
            ),
            (
                json!({"docker": {"image": "x", "network": "BRIDGE", "port_mappings": [{"host_port": 31000, "container_port": 80, "protocol": "icmp"}]}}),
                "protocol icmp is not tcp, udp or sctp",
            ),
            (
                json!({"docker": {"image": "x", "network": "USER"}}),
                "network_infos is required with network USER",
            ),
            (
                json!({"network_infos": [{}], "docker": {"image": "x", "network": "USER"}}),
                "network_infos[0].name is required",
            ),
            (
                json!({"network_infos": [{"name": "a"}, {"name": "b"}], "docker": {"image": "x", "network": "USER"}}),
                "joins one network only",
            ),
            (
                json!({"network_infos": [{"name": "container:web"}], "docker": {"image": "x", "network": "USER"}}),
                "is not a user-defined network",
            ),
            (
                json!({"network_infos": [{"name": "host"}], "docker": {"image": "x", "network": "USER"}}),
                "is not a user-defined network",
            ),
        ] {
            let mut c = c;
            c["type"] = json!("DOCKER");
            let e = spec(c).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        // Mappings on a task without ports.
        let e = spec_of(&task(
            json!({"type": "DOCKER", "docker": {"image": "x", "network": "BRIDGE",
            "port_mappings": [{"host_port": 31000, "container_port": 80}]}}),
        ))
        .unwrap()
        .unwrap_err();
        assert!(e.contains("need the task to have ports resources"), "{e}");
    }

    #[test]
    fn container_names_tell_their_executor_container() {
        let id = "0ec1088c-bc1a";
        for n in [0, 2] {
            assert!(is_of_container(&container_name(id, n), id));
        }
        assert!(!is_of_container("mesos-0ec1088c-bc1aX", id));
        assert!(!is_of_container("mesos-0ec1088c", id));
        assert!(!is_of_container("other-0ec1088c-bc1a", id));
    }

    #[test]
    fn commands_become_entrypoints_as_in_mesos() {
        let shell: CommandInfo = serde_json::from_value(json!({"value": "echo hi"})).unwrap();
        assert_eq!(
            command_of(&shell),
            (
                Some(vec!["/bin/sh".into(), "-c".into()]),
                Some(vec!["echo hi".into()])
            )
        );
        let plain: CommandInfo = serde_json::from_value(
            json!({"shell": false, "value": "/bin/echo", "arguments": ["echo", "a"]}),
        )
        .unwrap();
        assert_eq!(
            command_of(&plain),
            (Some(vec!["/bin/echo".into()]), Some(vec!["a".into()]))
        );
        let none: CommandInfo = serde_json::from_value(json!({"shell": false})).unwrap();
        assert_eq!(command_of(&none), (None, None));
    }
}
