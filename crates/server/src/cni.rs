//! The `network/cni` isolator of the `mesos` containerizer: a container whose `ContainerInfo`
//! names networks (`network_infos[].name`) gets a network namespace of its own, joined to
//! each named network by the network's CNI plugin, as Mesos's isolator does
//! (`docs/cni.md`). Without a named network a container stays on the host network.
//!
//! - Networks are CNI network configurations (one plugin: `*.conf`, `*.json`) and
//!   configuration lists (a chain of plugins: `*.conflist`, beyond Mesos, which reads single
//!   plugins only) in `--network-cni-config-dir`, named by their `name`, read from disk at
//!   every launch (a network added, changed or removed there applies to the next container
//!   without a restart); plugins are the executables in `--network-cni-plugins-dir`. A
//!   list's plugins are added in order, each given the result so far (`prevResult`), and
//!   deleted in reverse order, as CNI's libcni runs them.
//! - Per container, under the agent's runtime directory (`/run/mantle/cni/agent-<ip>-<port>/
//!   <container id>/`, as Mesos keeps them under `/var/run/mesos`: namespaces do not outlive
//!   a reboot, and nothing there lies under the `/tmp` that `namespaces/pid` hides): `ns` and
//!   `uts`, the container's network and UTS namespaces kept by bind mounts (as `ip netns`
//!   does), and `networks.json`, each network's configuration as given to its plugin,
//!   recorded before its `ADD`, and the plugin's result once it answered. A detach (`DEL`)
//!   uses that record, so it frees what was allocated even if the configuration has changed
//!   or gone since, after an agent restart, and after an `ADD` that never answered.
//! - The namespace's `lo` is up, and its hostname is `ContainerInfo.hostname`, else the
//!   container id.
//! - As in Mesos, the container gets its own `/etc/hostname` (the hostname), `/etc/hosts`
//!   (`localhost`, and the hostname at the container's first address: IPv4 first, in the
//!   order the networks are named) and, when its plugins' results name DNS servers,
//!   `/etc/resolv.conf` (their `domain`, `search`, `options` and `nameserver`s, merged in
//!   network order; without any it keeps the host's). They are written beside the namespaces
//!   and bound over `/etc/...` in a mount namespace of the container's processes of their
//!   own ([`command_in`]), so nothing changes on the host.
//! - The plugin of network `i` (in the order named) is called with `CNI_IFNAME=eth<i>` and
//!   the network configuration plus `args["org.apache.mesos"].network_info` (the task's
//!   `NetworkInfo`, as Mesos passes it). The IPs of its result become the container's
//!   `network_infos[].ip_addresses`, reported in its tasks' `container_status`.
//!
//! util-linux's `unshare` creates the namespaces (so no thread of the agent ever changes
//! its own) and iproute2's `ip` brings `lo` up.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A network namespace's setup, run by `unshare` inside the new namespaces: `lo` up, then
/// the hostname (`$1`), written where a UTS namespace keeps it.
const SETUP_SCRIPT: &str = r#"ip link set lo up || exit 1
printf %s "$1" > /proc/sys/kernel/hostname || exit 1"#;

/// Where agents keep their containers' namespaces, each in `agent-<ip>-<port>/`.
pub const RUNTIME_DIR: &str = "/run/mantle/cni";

/// How long a plugin may take to answer (Mesos gives none; a hung plugin would hold its
/// container in its launch for ever).
const PLUGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown CNI network '{0}': no configuration in --network-cni-config-dir names it")]
    UnknownNetwork(String),
    #[error("CNI network '{network}': plugin '{plugin}' is not in --network-cni-plugins-dir")]
    NoPlugin { network: String, plugin: String },
    #[error("CNI network '{network}': {command} failed: {message}")]
    Plugin {
        network: String,
        command: &'static str,
        message: String,
    },
    #[error("cannot create the container's network namespace: {0}")]
    Namespace(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CniError + '_ {
    move |source| CniError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a container's `ContainerInfo` asks of this isolator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The `NetworkInfo`s that name a network, in order.
    pub networks: Vec<Value>,
    pub hostname: Option<String>,
}

impl Request {
    /// The networks named in a `mesos` container's `ContainerInfo` (those without a name
    /// are skipped, as Mesos does: they mean the host network) and its hostname. `None` when
    /// it names none: it stays on the host network.
    pub fn of_container(container: &Value) -> Option<Request> {
        let networks: Vec<Value> = container
            .get("network_infos")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|n| n.get("name").and_then(Value::as_str).is_some())
            .cloned()
            .collect();
        if networks.is_empty() {
            return None;
        }
        let hostname = container
            .get("hostname")
            .and_then(Value::as_str)
            .map(str::to_string);
        Some(Request { networks, hostname })
    }
}

/// A container attached to its networks.
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    /// The bind-mounted network namespace (`nsenter --net=`).
    pub netns: PathBuf,
    /// The bind-mounted UTS namespace (`nsenter --uts=`).
    pub utsns: PathBuf,
    /// The container's `network_infos`: each requested `NetworkInfo` with the
    /// `ip_addresses` its plugin gave.
    pub network_infos: Vec<Value>,
}

/// The isolator: where configurations and plugins are, and where containers' namespaces go.
#[derive(Debug, Clone)]
pub struct Cni {
    config_dir: PathBuf,
    plugins_dir: PathBuf,
    root: PathBuf,
}

/// A hostname the kernel and resolvers take: 1 to 63 characters of letters, digits, `-`
/// and `.`, not starting with `-` or `.`.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && !h.starts_with(['-', '.'])
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The IPs of a plugin's result, as `ip_addresses` (CNI 0.3 and later: `ips[].address`;
/// 0.1 and 0.2: `ip4.ip`, `ip6.ip`), without their prefix lengths.
fn ip_addresses(result: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut push = |cidr: &str| {
        let ip = cidr.split('/').next().unwrap_or(cidr);
        if let Ok(addr) = ip.parse::<std::net::IpAddr>() {
            let protocol = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
            out.push(json!({"protocol": protocol, "ip_address": addr.to_string()}));
        }
    };
    if let Some(ips) = result.get("ips").and_then(Value::as_array) {
        for ip in ips {
            if let Some(a) = ip.get("address").and_then(Value::as_str) {
                push(a);
            }
        }
    }
    for old in ["ip4", "ip6"] {
        if let Some(a) = result
            .get(old)
            .and_then(|v| v.get("ip"))
            .and_then(Value::as_str)
        {
            push(a);
        }
    }
    out
}

/// Adds `args["org.apache.mesos"].network_info` to a network configuration (an object, as
/// `config` only returns); `None` when `args` or its Mesos entry is there but not an object.
fn with_network_info(config: &mut Value, info: &Value) -> Option<()> {
    let args = config
        .as_object_mut()?
        .entry("args")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    args.entry("org.apache.mesos")
        .or_insert_with(|| json!({}))
        .as_object_mut()?
        .insert("network_info".into(), info.clone());
    Some(())
}

/// Gives a plugin that declares the `portMappings` capability (as Debian's `portmap` does)
/// the `NetworkInfo`'s port mappings as `runtimeConfig.portMappings`, the way CNI runtimes
/// pass them; others get them only inside `network_info`. `None` when `runtimeConfig` is
/// there but not an object.
fn with_port_mappings(config: &mut Value, info: &Value) -> Option<()> {
    let wanted = config
        .get("capabilities")
        .and_then(|c| c.get("portMappings"))
        .and_then(Value::as_bool)
        == Some(true);
    let mappings: Vec<Value> = info
        .get("port_mappings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            json!({
                "hostPort": m.get("host_port").cloned().unwrap_or(Value::Null),
                "containerPort": m.get("container_port").cloned().unwrap_or(Value::Null),
                "protocol": m.get("protocol").and_then(Value::as_str).unwrap_or("tcp"),
            })
        })
        .collect();
    if !wanted || mappings.is_empty() {
        return Some(());
    }
    config
        .as_object_mut()?
        .entry("runtimeConfig")
        .or_insert_with(|| json!({}))
        .as_object_mut()?
        .insert("portMappings".into(), Value::Array(mappings));
    Some(())
}

/// The container's `/etc/hosts`: `localhost`, and its hostname at its first address (IPv4
/// first; Mesos writes only IPv4) when it has one.
fn hosts_file(hostname: &str, network_infos: &[Value]) -> String {
    let ips: Vec<(String, String)> = network_infos
        .iter()
        .flat_map(|n| n["ip_addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            Some((
                a["protocol"].as_str()?.to_string(),
                a["ip_address"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut out = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n");
    let first = ips
        .iter()
        .find(|(p, _)| p == "IPv4")
        .or_else(|| ips.first());
    if let Some((_, ip)) = first {
        out.push_str(&format!("{ip} {hostname}\n"));
    }
    out
}

/// The container's `/etc/resolv.conf` from its networks' results' `dns` (in network order:
/// servers, search domains and options added up, each once, the last `domain` kept, as
/// Mesos merges them), or `None` when no network names a server (the host's then stays).
fn resolv_conf(results: &[Value]) -> Option<String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty() && !s.contains(['\n', '\r']))
            .map(str::to_string)
            .collect()
    };
    let (mut servers, mut search, mut options, mut domain) =
        (Vec::new(), Vec::new(), Vec::new(), None);
    for dns in results.iter().map(|r| &r["dns"]) {
        let these = strings(&dns["nameservers"]);
        if these.is_empty() {
            continue;
        }
        for (all, more) in [
            (&mut servers, these),
            (&mut search, strings(&dns["search"])),
            (&mut options, strings(&dns["options"])),
        ] {
            for m in more {
                if !all.contains(&m) {
                    all.push(m);
                }
            }
        }
        if let Some(d) = dns["domain"]
            .as_str()
            .filter(|d| !d.is_empty() && !d.contains(['\n', '\r']))
        {
            domain = Some(d.to_string());
        }
    }
    if servers.is_empty() {
        return None;
    }
    let mut out = String::new();
    if let Some(d) = domain {
        out.push_str(&format!("domain {d}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    Some(out)
}

/// Run in a container's namespaces by [`command_in`] (`$1`: its directory, then the
/// program): binds the container's files over `/etc` in a mount namespace of its own (so
/// the host's stay as they are), then execs the program. A file the container lacks, or
/// `/etc` lacks, is left alone.
const ETC_SCRIPT: &str = r#"D="$1"; shift
for f in hosts hostname resolv.conf; do
  if [ -f "$D/$f" ] && [ -e "/etc/$f" ]; then
    PATH=/usr/sbin:/usr/bin:/sbin:/bin mount --bind "$D/$f" "/etc/$f" || { echo "mantle: cannot bind $D/$f over /etc/$f" >&2; exit 125; }
  fi
done
exec "$@""#;

/// `program` and `args` as run in a container's network and UTS namespaces (`netns`,
/// `utsns`: the files of [`Attached`]) with its `/etc` files: util-linux's `nsenter` joins
/// the namespaces, its `unshare` makes a mount namespace (private, so nothing propagates
/// back to the host) in which a shell binds the files, and the program replaces them all.
pub fn command_in(
    netns: &str,
    utsns: &str,
    program: String,
    args: Vec<String>,
) -> (String, Vec<String>) {
    let dir = Path::new(netns)
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut a = vec![
        format!("--net={netns}"),
        format!("--uts={utsns}"),
        "--".to_string(),
        crate::agent::UNSHARE.to_string(),
        "--mount".to_string(),
        "--propagation".to_string(),
        "private".to_string(),
        "--".to_string(),
        "/bin/sh".to_string(),
        "-c".to_string(),
        ETC_SCRIPT.to_string(),
        "mantle-etc".to_string(),
        dir,
        program,
    ];
    a.extend(args);
    (crate::agent::NSENTER.to_string(), a)
}

/// CNI spec versions from 0.4.0 on give `DEL` the `ADD` result as `prevResult`.
fn wants_prev_result(config: &Value) -> bool {
    let v = config
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.1.0");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (0, 4)
}

/// A plugin's failure within a list of several names the plugin.
fn in_chain(e: CniError, plugins: &[Value], config: &Value) -> CniError {
    match e {
        CniError::Plugin {
            network,
            command,
            message,
        } if plugins.len() > 1 => {
            let plugin = config.get("type").and_then(Value::as_str).unwrap_or("");
            CniError::Plugin {
                network,
                command,
                message: format!("plugin '{plugin}': {message}"),
            }
        }
        e => e,
    }
}

/// The plugin configurations of network `name`'s configuration (read from `file`): itself,
/// or each entry of a list's `plugins` with the list's `name` and `cniVersion`.
fn plugins_of(name: &str, file: &Path, config: Value) -> Result<Vec<Value>, CniError> {
    let Some(list) = config.get("plugins") else {
        return Ok(vec![config]);
    };
    let invalid = || {
        CniError::Invalid(format!(
            "CNI network '{name}' ({}): \"plugins\" must be a non-empty list of plugin configurations",
            file.display()
        ))
    };
    let list = list
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(invalid)?;
    list.iter()
        .map(|plugin| {
            let mut plugin = plugin.as_object().cloned().ok_or_else(invalid)?;
            plugin.insert("name".into(), json!(name));
            if let Some(v) = config.get("cniVersion") {
                plugin.insert("cniVersion".into(), v.clone());
            }
            Ok(Value::Object(plugin))
        })
        .collect()
}

impl Cni {
    /// The isolator of an agent whose containers' namespaces go under `root`; both
    /// directories must exist.
    pub fn new(config_dir: &Path, plugins_dir: &Path, root: &Path) -> Result<Cni, CniError> {
        for (dir, flag) in [
            (config_dir, "--network-cni-config-dir"),
            (plugins_dir, "--network-cni-plugins-dir"),
        ] {
            if !dir.is_dir() {
                return Err(CniError::Invalid(format!(
                    "{flag} {} is not a directory",
                    dir.display()
                )));
            }
        }
        // Absolute: executors and plugins get these paths, from other working directories.
        std::fs::create_dir_all(root).map_err(io(root))?;
        let root = std::fs::canonicalize(root).map_err(io(root))?;
        let plugins_dir = std::fs::canonicalize(plugins_dir).map_err(io(plugins_dir))?;
        Ok(Cni {
            config_dir: config_dir.to_path_buf(),
            plugins_dir,
            root,
        })
    }

    fn dir(&self, container_id: &str) -> PathBuf {
        self.root.join(container_id)
    }

    /// The plugin configurations of the network named `name`, in the order they run: one for
    /// a network configuration (`*.conf`, `*.json`), each of its `plugins` for a
    /// configuration list (`*.conflist`, or any file with a `plugins` array), which give each
    /// plugin the list's `name` and `cniVersion`, as CNI's libcni does. Files are read in
    /// name order; the first one naming `name` wins.
    fn config(&self, name: &str) -> Result<Vec<Value>, CniError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.config_dir)
            .map_err(io(&self.config_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "conf" || x == "json" || x == "conflist")
            })
            .collect();
        files.sort();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(v) if v.get("name").and_then(Value::as_str) == Some(name) => {
                    return plugins_of(name, &f, v);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "CNI configuration skipped: not JSON");
                }
            }
        }
        Err(CniError::UnknownNetwork(name.to_string()))
    }

    /// The plugin a configuration names.
    fn plugin(&self, network: &str, config: &Value) -> Result<PathBuf, CniError> {
        let plugin = config.get("type").and_then(Value::as_str).unwrap_or("");
        let path = self.plugins_dir.join(plugin);
        if plugin.is_empty() || plugin.contains('/') || !path.is_file() {
            return Err(CniError::NoPlugin {
                network: network.to_string(),
                plugin: plugin.to_string(),
            });
        }
        Ok(path)
    }

    /// Runs a network's plugin: `command` (`ADD` or `DEL`) with `config` on its stdin.
    fn call(
        &self,
        command: &'static str,
        network: &str,
        config: &Value,
        container_id: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<Value, CniError> {
        use std::io::Write;
        let plugin = self.plugin(network, config)?;
        let failed = |message: String| CniError::Plugin {
            network: network.to_string(),
            command,
            message,
        };
        let mut child = std::process::Command::new(&plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.plugins_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", plugin.display())))?;
        // A plugin that stops reading early says why on its stdout; it is waited for either
        // way, and killed if it does not answer in time.
        let written = child.stdin.take().map(|mut stdin| {
            let body = serde_json::to_vec(config).unwrap_or_default();
            stdin.write_all(&body)
        });
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(PLUGIN_TIMEOUT) {
            Ok(out) => out.map_err(|e| failed(format!("cannot wait for the plugin: {e}")))?,
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(failed(format!(
                    "the plugin did not answer within {} s",
                    PLUGIN_TIMEOUT.as_secs()
                )));
            }
        };
        if let (Some(Err(e)), true) = (written, out.status.success()) {
            return Err(failed(format!("cannot write to the plugin: {e}")));
        }
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            // A plugin's error is a JSON object with `msg` (and maybe `details`).
            let message = match result.get("msg").and_then(Value::as_str) {
                Some(m) => match result.get("details").and_then(Value::as_str) {
                    Some(d) if !d.is_empty() => format!("{m}: {d}"),
                    _ => m.to_string(),
                },
                None => format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            };
            return Err(failed(message));
        }
        Ok(result)
    }

    /// Creates the container's namespaces and attaches it to every requested network. On an
    /// error whatever was done is undone.
    pub fn attach(&self, container_id: &str, request: &Request) -> Result<Attached, CniError> {
        let hostname = request.hostname.as_deref().unwrap_or(container_id);
        if !valid_hostname(hostname) {
            return Err(CniError::Invalid(format!(
                "container.hostname '{hostname}' is not a valid hostname (1 to 63 letters, digits, '-' and '.')"
            )));
        }
        // Every network resolves before anything is created.
        let mut configs: Vec<(String, Value, Vec<Value>)> =
            Vec::with_capacity(request.networks.len());
        for info in &request.networks {
            let name = info.get("name").and_then(Value::as_str).unwrap_or("");
            if configs.iter().any(|(n, _, _)| n == name) {
                return Err(CniError::Invalid(format!(
                    "container.network_infos names network '{name}' more than once"
                )));
            }
            let mut plugins = self.config(name)?;
            for config in &mut plugins {
                self.plugin(name, config)?;
                with_network_info(config, info).ok_or_else(|| {
                    CniError::Invalid(format!(
                        "CNI network '{name}': its configuration's \"args\" is not an object"
                    ))
                })?;
                with_port_mappings(config, info).ok_or_else(|| {
                    CniError::Invalid(format!(
                        "CNI network '{name}': its configuration's \"runtimeConfig\" is not an object"
                    ))
                })?;
            }
            configs.push((name.to_string(), info.clone(), plugins));
        }
        let attached = self.create_namespaces(container_id, hostname)?;
        let added = self
            .add_all(container_id, &attached, hostname, configs)
            .and_then(|added| {
                self.write_etc(container_id, hostname, &added)?;
                Ok(added)
            });
        match added {
            Ok(added) => Ok(Attached {
                network_infos: added.into_iter().map(|(info, _)| info).collect(),
                ..attached
            }),
            Err(e) => {
                if let Err(undo) = self.detach(container_id) {
                    tracing::warn!(container_id, error = %undo, "cannot undo a failed network attach");
                }
                Err(e)
            }
        }
    }

    fn create_namespaces(&self, container_id: &str, hostname: &str) -> Result<Attached, CniError> {
        let dir = self.dir(container_id);
        let created = (|| {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let netns = dir.join("ns");
            let utsns = dir.join("uts");
            for f in [&netns, &utsns] {
                std::fs::File::create(f).map_err(io(f))?;
            }
            let out = std::process::Command::new(crate::agent::UNSHARE)
                .arg(format!("--net={}", netns.display()))
                .arg(format!("--uts={}", utsns.display()))
                .args(["/bin/sh", "-c", SETUP_SCRIPT, "mantle-netns", hostname])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| CniError::Namespace(format!("cannot run unshare: {e}")))?;
            if !out.status.success() {
                return Err(CniError::Namespace(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(Attached {
                netns,
                utsns,
                network_infos: Vec::new(),
            })
        })();
        if created.is_err() {
            self.remove_namespaces(&dir);
        }
        created
    }

    fn add_all(
        &self,
        container_id: &str,
        attached: &Attached,
        hostname: &str,
        configs: Vec<(String, Value, Vec<Value>)>,
    ) -> Result<Vec<(Value, Value)>, CniError> {
        let mut record = Vec::new();
        let mut added = Vec::new();
        for (i, (name, info, plugins)) in configs.into_iter().enumerate() {
            let ifname = format!("eth{i}");
            // Recorded before its ADD, so that a detach frees it even if the ADD half happened
            // (the agent stopped, or the plugin failed midway): to a CNI plugin a DEL of what
            // was never added is no error.
            record.push(json!({"name": name, "ifname": ifname, "plugins": plugins}));
            self.save(container_id, hostname, &record)?;
            // A list's plugins run in order, each given the result so far as `prevResult`;
            // the last one's result is the network's.
            let mut result: Option<Value> = None;
            for config in &plugins {
                let mut config = config.clone();
                if let Some(prev) = &result {
                    config["prevResult"] = prev.clone();
                }
                let answer = self
                    .call(
                        "ADD",
                        &name,
                        &config,
                        container_id,
                        &attached.netns,
                        &ifname,
                    )
                    .map_err(|e| in_chain(e, &plugins, &config))?;
                result = Some(answer);
            }
            let result = result.unwrap_or(Value::Null);
            let mut info = info;
            info["ip_addresses"] = Value::Array(ip_addresses(&result));
            record.pop();
            record.push(json!({
                "name": name, "ifname": ifname, "plugins": plugins, "result": result, "network_info": info,
            }));
            self.save(container_id, hostname, &record)?;
            added.push((info, result));
        }
        Ok(added)
    }

    /// Writes the container's `hostname`, `hosts` and (when its networks name DNS servers)
    /// `resolv.conf` beside its namespaces, for [`command_in`] to bind over `/etc`.
    fn write_etc(
        &self,
        container_id: &str,
        hostname: &str,
        added: &[(Value, Value)],
    ) -> Result<(), CniError> {
        let dir = self.dir(container_id);
        let infos: Vec<Value> = added.iter().map(|(info, _)| info.clone()).collect();
        let results: Vec<Value> = added.iter().map(|(_, r)| r.clone()).collect();
        let mut files = vec![
            ("hostname", format!("{hostname}\n")),
            ("hosts", hosts_file(hostname, &infos)),
        ];
        if let Some(resolv) = resolv_conf(&results) {
            files.push(("resolv.conf", resolv));
        }
        for (name, body) in files {
            let path = dir.join(name);
            std::fs::write(&path, body).map_err(io(&path))?;
        }
        Ok(())
    }

    fn save(&self, container_id: &str, hostname: &str, networks: &[Value]) -> Result<(), CniError> {
        let path = self.dir(container_id).join("networks.json");
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(&json!({"hostname": hostname, "networks": networks}))
            .unwrap_or_default();
        std::fs::write(&tmp, body).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    fn record(&self, container_id: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir(container_id).join("networks.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// A container attached before (by this agent or an earlier run of it), from its record.
    pub fn attached(&self, container_id: &str) -> Option<Attached> {
        let dir = self.dir(container_id);
        let record = self.record(container_id)?;
        let network_infos = record
            .get("networks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| n.get("network_info").cloned())
            .collect();
        Some(Attached {
            netns: dir.join("ns"),
            utsns: dir.join("uts"),
            network_infos,
        })
    }

    /// Detaches the container from its networks (`DEL`, last attached first) and removes its
    /// namespaces. A plugin's failure is returned after everything else was still done.
    pub fn detach(&self, container_id: &str) -> Result<(), CniError> {
        let dir = self.dir(container_id);
        if !dir.exists() {
            return Ok(());
        }
        let netns = dir.join("ns");
        let mut first_error = None;
        if let Some(record) = self.record(container_id) {
            let networks = record
                .get("networks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for n in networks.iter().rev() {
                let name = n.get("name").and_then(Value::as_str).unwrap_or("");
                let ifname = n.get("ifname").and_then(Value::as_str).unwrap_or("eth0");
                // A list's plugins are deleted last first, each given the network's result.
                // (Records of agents before lists were read hold one `config`.)
                let plugins = match n.get("plugins").and_then(Value::as_array) {
                    Some(list) => list.clone(),
                    None => n.get("config").cloned().into_iter().collect(),
                };
                for config in plugins.iter().rev() {
                    let mut config = config.clone();
                    if wants_prev_result(&config) {
                        if let Some(r) = n.get("result").filter(|r| r.is_object()) {
                            config["prevResult"] = r.clone();
                        }
                    }
                    if let Err(e) = self.call("DEL", name, &config, container_id, &netns, ifname) {
                        let e = in_chain(e, &plugins, &config);
                        tracing::warn!(container_id, error = %e, "CNI detach failed");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        self.remove_namespaces(&dir);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn remove_namespaces(&self, dir: &Path) {
        for f in ["ns", "uts"] {
            let path = dir.join(f);
            // Not mounted (never created, or gone with a reboot) is fine.
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a container's network namespace");
            }
        }
    }

    /// Removes this agent's (empty) runtime directory.
    pub fn remove_root(&self) {
        let _ = std::fs::remove_dir(&self.root);
    }

    /// Containers with namespaces under this agent's root (attached, or half attached when
    /// an agent stopped mid-way).
    pub fn containers(&self) -> Vec<String> {
        subdirectories(&self.root)
    }
}

/// The names of the directories in `dir` (none when it cannot be read): the containers an
/// isolator keeps something for, one directory each.
pub(crate) fn subdirectories(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_networks_and_skip_unnamed_ones() {
        assert_eq!(Request::of_container(&json!({"type": "MESOS"})), None);
        assert_eq!(
            Request::of_container(&json!({"network_infos": [{"ip_addresses": []}]})),
            None
        );
        let r = Request::of_container(&json!({
            "type": "MESOS", "hostname": "web",
            "network_infos": [{"name": "a"}, {}, {"name": "b", "labels": {"labels": []}}]
        }));
        assert_eq!(
            r,
            Some(Request {
                networks: vec![
                    json!({"name": "a"}),
                    json!({"name": "b", "labels": {"labels": []}})
                ],
                hostname: Some("web".into()),
            })
        );
    }

    #[test]
    fn results_of_every_cni_version_give_ip_addresses() {
        let v03 = json!({"ips": [{"address": "10.1.0.5/24"}, {"address": "fd00::5/64"}, {"address": "junk"}]});
        assert_eq!(
            ip_addresses(&v03),
            vec![
                json!({"protocol": "IPv4", "ip_address": "10.1.0.5"}),
                json!({"protocol": "IPv6", "ip_address": "fd00::5"}),
            ]
        );
        let v02 = json!({"ip4": {"ip": "192.0.2.7/24"}});
        assert_eq!(
            ip_addresses(&v02),
            vec![json!({"protocol": "IPv4", "ip_address": "192.0.2.7"})]
        );
        assert!(ip_addresses(&json!({})).is_empty());
        let mut c = json!({"name": "n", "args": {"other": 1}});
        assert_eq!(with_network_info(&mut c, &json!({"name": "n"})), Some(()));
        assert_eq!(
            c["args"],
            json!({"other": 1, "org.apache.mesos": {"network_info": {"name": "n"}}})
        );
        assert_eq!(
            with_network_info(&mut json!({"args": "x"}), &json!({})),
            None
        );
        assert_eq!(
            with_network_info(&mut json!({"args": {"org.apache.mesos": []}}), &json!({})),
            None
        );
        assert!(wants_prev_result(&json!({"cniVersion": "0.4.0"})));
        assert!(wants_prev_result(&json!({"cniVersion": "1.0.0"})));
        assert!(!wants_prev_result(&json!({"cniVersion": "0.3.1"})));
        assert!(!wants_prev_result(&json!({})));
    }

    #[test]
    fn etc_files_name_the_first_address_and_merge_dns() {
        let v4 = json!({"ip_addresses": [{"protocol": "IPv4", "ip_address": "10.1.0.5"}]});
        let v6 = json!({"ip_addresses": [{"protocol": "IPv6", "ip_address": "fd00::5"}]});
        let base = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";
        assert_eq!(
            hosts_file("web", &[v6.clone(), v4]),
            format!("{base}10.1.0.5 web\n"),
            "IPv4 first"
        );
        assert_eq!(hosts_file("web", &[v6]), format!("{base}fd00::5 web\n"));
        assert_eq!(hosts_file("web", &[json!({})]), base);

        assert_eq!(resolv_conf(&[json!({}), json!({"dns": {}})]), None);
        assert_eq!(
            resolv_conf(&[json!({"dns": {"search": ["x"], "domain": "d"}})]),
            None,
            "no server, no file: the host's stays"
        );
        let a = json!({"dns": {"nameservers": ["10.0.0.53"], "domain": "a.test", "search": ["a.test"], "options": ["ndots:2"]}});
        let b = json!({"dns": {"nameservers": ["10.0.0.53", "10.0.1.53"], "domain": "b.test", "search": ["b.test", "a.test"]}});
        let junk = json!({"dns": {"nameservers": ["10.0.2.53\nnameserver 6.6.6.6", 7]}});
        assert_eq!(
            resolv_conf(&[a, b, junk]).as_deref(),
            Some(
                "domain b.test\nsearch a.test b.test\noptions ndots:2\nnameserver 10.0.0.53\nnameserver 10.0.1.53\n"
            )
        );
    }

    #[test]
    fn hostnames_are_checked() {
        for ok in ["web", "web-1.prod", "a"] {
            assert!(valid_hostname(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(64), "naïve"] {
            assert!(!valid_hostname(bad), "{bad}");
        }
    }

    /// Debian's plugins (`containernetworking-plugins`, installed by
    /// `scripts/install-test-deps.sh`); these tests need root and fail without either.
    const PLUGINS: &str = "/usr/lib/cni";

    fn isolator(configs: &[(&str, Value)]) -> (tempfile::TempDir, Cni) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the CNI tests create namespaces: run them as root"
        );
        assert!(
            Path::new(PLUGINS).join("loopback").is_file(),
            "{PLUGINS}/loopback is missing: run scripts/install-test-deps.sh"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let conf = tmp.path().join("conf");
        std::fs::create_dir(&conf).expect("mkdir");
        for (file, c) in configs {
            std::fs::write(conf.join(file), c.to_string()).expect("write");
        }
        let cni = Cni::new(&conf, Path::new(PLUGINS), &tmp.path().join("run")).expect("cni");
        (tmp, cni)
    }

    fn run_in(ns: &str, path: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--{ns}={}", path.display()))
            .arg("--")
            .args(args)
            .output()
            .expect("nsenter");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_container_gets_namespaces_its_networks_and_hostname_and_loses_them_on_detach() {
        let (_tmp, cni) = isolator(&[
            (
                "10-lo.conf",
                json!({"cniVersion": "0.4.0", "name": "isolated", "type": "loopback"}),
            ),
            (
                "20-other.json",
                json!({"cniVersion": "0.3.1", "name": "other", "type": "loopback"}),
            ),
            ("notes.txt", json!({"name": "ignored", "type": "loopback"})),
        ]);
        let request = Request {
            networks: vec![
                json!({"name": "isolated", "labels": {"labels": [{"key": "k", "value": "v"}]}}),
            ],
            hostname: Some("web-1".into()),
        };
        let a = cni.attach("c1", &request).expect("attach");
        assert_eq!(
            a.network_infos,
            vec![json!({
                "name": "isolated",
                "labels": {"labels": [{"key": "k", "value": "v"}]},
                "ip_addresses": [
                    {"protocol": "IPv4", "ip_address": "127.0.0.1"},
                    {"protocol": "IPv6", "ip_address": "::1"},
                ],
            })]
        );
        let links = run_in("net", &a.netns, &["ip", "-o", "link"]);
        assert_eq!(links.lines().count(), 1, "only lo: {links}");
        assert!(links.contains("lo:") && links.contains("UP"), "{links}");
        let host_net = std::fs::read_link("/proc/self/ns/net").expect("ns");
        let theirs = run_in("net", &a.netns, &["readlink", "/proc/self/ns/net"]);
        assert_ne!(theirs.trim(), host_net.to_string_lossy());
        assert_eq!(run_in("uts", &a.utsns, &["hostname"]).trim(), "web-1");
        // Its processes see its own /etc files (loopback names no DNS server: the host's
        // resolv.conf stays), bound in a mount namespace of their own.
        let host_etc = |f: &str| std::fs::read(format!("/etc/{f}")).unwrap_or_default();
        let before = (host_etc("hosts"), host_etc("hostname"));
        let (program, args) = command_in(
            &a.netns.display().to_string(),
            &a.utsns.display().to_string(),
            "/bin/sh".into(),
            vec![
                "-c".into(),
                "cat /etc/hostname; getent hosts web-1; hostname; cat /etc/resolv.conf".into(),
            ],
        );
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{out:?}");
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let host_resolv = String::from_utf8_lossy(&host_etc("resolv.conf")).into_owned();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("web-1"), "{out}");
        let hosts = lines.next().unwrap_or_default();
        assert!(
            hosts.starts_with("127.0.0.1") && hosts.ends_with("web-1"),
            "{out}"
        );
        assert_eq!(lines.next(), Some("web-1"), "{out}");
        assert_eq!(lines.collect::<Vec<_>>().join("\n"), host_resolv.trim_end());
        assert_eq!(
            (host_etc("hosts"), host_etc("hostname")),
            before,
            "the host's files stay"
        );
        assert_eq!(cni.attached("c1"), Some(a.clone()));
        assert_eq!(cni.containers(), vec!["c1".to_string()]);

        // Without a hostname the container id is one.
        let b = cni
            .attach(
                "c2",
                &Request {
                    networks: vec![json!({"name": "other"})],
                    hostname: None,
                },
            )
            .expect("attach");
        assert_eq!(run_in("uts", &b.utsns, &["hostname"]).trim(), "c2");

        for id in ["c1", "c2"] {
            cni.detach(id).expect("detach");
            assert!(cni.attached(id).is_none());
        }
        assert!(!a.netns.exists() && !b.netns.exists());
        assert!(cni.containers().is_empty());
        // Twice is fine.
        cni.detach("c1").expect("detach again");
    }

    #[test]
    fn bad_networks_fail_the_attach_and_leave_nothing() {
        let (_tmp, cni) = isolator(&[
            (
                "lo.conf",
                json!({"cniVersion": "0.4.0", "name": "isolated", "type": "loopback"}),
            ),
            (
                "missing.conf",
                json!({"cniVersion": "0.4.0", "name": "missing", "type": "no-such-plugin"}),
            ),
            (
                "escape.conf",
                json!({"cniVersion": "0.4.0", "name": "escape", "type": "../../bin/true"}),
            ),
            (
                "bad.conf",
                json!({"cniVersion": "99.0.0", "name": "bad", "type": "loopback"}),
            ),
        ]);
        let req = |names: &[&str], hostname: Option<&str>| Request {
            networks: names.iter().map(|n| json!({"name": n})).collect(),
            hostname: hostname.map(str::to_string),
        };
        let cases = [
            (req(&["nowhere"], None), "unknown CNI network 'nowhere'"),
            (
                req(&["isolated", "missing"], None),
                "plugin 'no-such-plugin' is not in",
            ),
            (req(&["escape"], None), "plugin '../../bin/true' is not in"),
            (
                req(&["isolated", "bad"], None),
                "CNI network 'bad': ADD failed",
            ),
            (
                req(&["isolated"], Some("no spaces")),
                "container.hostname 'no spaces'",
            ),
        ];
        for (request, expected) in cases {
            let e = cni.attach("c", &request).expect_err(expected).to_string();
            assert!(e.contains(expected), "{e} should say {expected}");
            assert!(
                cni.containers().is_empty(),
                "{expected}: left {:?}",
                cni.containers()
            );
        }
    }

    #[test]
    fn a_configuration_list_chains_real_plugins() {
        // Debian's `tuning` runs only chained: it sets a sysctl of the container's network
        // namespace after `loopback` set up its interface.
        let (_tmp, cni) = isolator(&[(
            "10-tuned.conflist",
            json!({"cniVersion": "1.0.0", "name": "tuned", "plugins": [
                {"type": "loopback"},
                {"type": "tuning", "sysctl": {"net.core.somaxconn": "777"}},
            ]}),
        )]);
        let request = Request {
            networks: vec![json!({"name": "tuned"})],
            hostname: None,
        };
        let a = cni.attach("c1", &request).expect("attach");
        assert_eq!(
            a.network_infos[0]["ip_addresses"][0],
            json!({"protocol": "IPv4", "ip_address": "127.0.0.1"})
        );
        let inside = run_in("net", &a.netns, &["cat", "/proc/sys/net/core/somaxconn"]);
        assert_eq!(inside.trim(), "777");
        let host = std::fs::read_to_string("/proc/sys/net/core/somaxconn").expect("sysctl");
        assert_ne!(host.trim(), "777", "the host's own value is untouched");
        cni.detach("c1").expect("detach");
        assert!(cni.containers().is_empty());
    }

    #[test]
    fn bad_configuration_lists_are_refused_with_their_file() {
        let (_tmp, cni) = isolator(&[
            (
                "empty.conflist",
                json!({"cniVersion": "1.0.0", "name": "empty", "plugins": []}),
            ),
            (
                "strings.conflist",
                json!({"cniVersion": "1.0.0", "name": "strings", "plugins": ["loopback"]}),
            ),
            (
                "gap.conflist",
                json!({"cniVersion": "1.0.0", "name": "gap", "plugins": [
                    {"type": "loopback"}, {"type": "no-such-plugin"},
                ]}),
            ),
        ]);
        for (name, expected) in [
            (
                "empty",
                "empty.conflist): \"plugins\" must be a non-empty list",
            ),
            (
                "strings",
                "strings.conflist): \"plugins\" must be a non-empty list",
            ),
            (
                "gap",
                "CNI network 'gap': plugin 'no-such-plugin' is not in",
            ),
        ] {
            let request = Request {
                networks: vec![json!({ "name": name })],
                hostname: None,
            };
            let e = cni.attach("c", &request).expect_err(name).to_string();
            assert!(e.contains(expected), "{e} should say {expected}");
            assert!(cni.containers().is_empty(), "{name}: nothing is created");
        }
    }

    /// A plugin (a shell script) that logs each call's command, interface, container, plugin
    /// path and namespace to `log`, and its input to `log.stdin`, answers ADD with an address
    /// of the documentation range (never used for traffic), and fails when its configuration
    /// says `"fail": true`.
    const LOGGER: &str = r#"#!/bin/sh
log="$(dirname "$0")/../log"
input=$(cat)
echo "$CNI_COMMAND $CNI_IFNAME $CNI_CONTAINERID $CNI_PATH $CNI_NETNS" >> "$log"
printf '%s\n' "$input" >> "$log.stdin"
case "$input" in *'"fail":true'*)
  [ "$CNI_COMMAND" = ADD ] && { echo '{"code": 11, "msg": "no addresses left", "details": "pool empty"}'; exit 1; };;
esac
[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion": "0.4.0", "ips": [{"address": "192.0.2.10/24"}], "dns": {"nameservers": ["192.0.2.53"], "search": ["example.test"]}}'
exit 0
"#;

    #[test]
    fn plugins_get_the_cni_interface_and_detach_frees_in_reverse_even_a_failed_add() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, _) = isolator(&[]);
        let plugins = tmp.path().join("plugins");
        std::fs::create_dir(&plugins).expect("mkdir");
        let logger = plugins.join("logger");
        std::fs::write(&logger, LOGGER).expect("write");
        std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let conf = tmp.path().join("conf");
        for (name, c) in [
            (
                "first",
                json!({"cniVersion": "0.4.0", "name": "first", "type": "logger"}),
            ),
            (
                "second",
                json!({"cniVersion": "0.3.1", "name": "second", "type": "logger"}),
            ),
            (
                "broken",
                json!({"cniVersion": "0.4.0", "name": "broken", "type": "logger", "fail": true}),
            ),
        ] {
            std::fs::write(conf.join(format!("{name}.conf")), c.to_string()).expect("write");
        }
        std::fs::write(
            conf.join("chain.conflist"),
            json!({"cniVersion": "1.0.0", "name": "chain", "plugins": [
                {"type": "logger", "step": 1},
                {"type": "logger", "step": 2, "capabilities": {"portMappings": true}},
            ]})
            .to_string(),
        )
        .expect("write");
        std::fs::write(
            conf.join("halfway.conflist"),
            json!({"cniVersion": "1.0.0", "name": "halfway", "plugins": [
                {"type": "logger", "step": 1},
                {"type": "logger", "step": 2, "fail": true},
            ]})
            .to_string(),
        )
        .expect("write");
        let cni = Cni::new(&conf, &plugins, &tmp.path().join("run")).expect("cni");
        let plugins = std::fs::canonicalize(&plugins).expect("canonical");
        let log = tmp.path().join("log");
        let take = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let _ = std::fs::remove_file(path);
            text.lines().map(str::to_string).collect::<Vec<_>>()
        };
        let stdin = |lines: &[String]| -> Vec<Value> {
            lines
                .iter()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect()
        };

        let labels = json!({"labels": [{"key": "app", "value": "web"}]});
        let request = Request {
            networks: vec![
                json!({"name": "first", "labels": labels}),
                json!({"name": "second"}),
            ],
            hostname: None,
        };
        let a = cni.attach("c1", &request).expect("attach");
        let ns = a.netns.display().to_string();
        let p = plugins.display();
        assert_eq!(
            take(&log),
            [
                format!("ADD eth0 c1 {p} {ns}"),
                format!("ADD eth1 c1 {p} {ns}")
            ]
        );
        let added = stdin(&take(&tmp.path().join("log.stdin")));
        assert_eq!(
            added[0]["args"]["org.apache.mesos"]["network_info"],
            json!({"name": "first", "labels": labels})
        );
        assert_eq!(added[1]["name"], "second");
        let ip = json!([{"protocol": "IPv4", "ip_address": "192.0.2.10"}]);
        assert_eq!(a.network_infos[0]["ip_addresses"], ip);
        assert_eq!(a.network_infos[1]["ip_addresses"], ip);
        let dir = a.netns.parent().expect("dir");
        let file = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        assert_eq!(file("hostname"), "c1\n");
        assert!(
            file("hosts").ends_with("192.0.2.10 c1\n"),
            "{}",
            file("hosts")
        );
        assert_eq!(
            file("resolv.conf"),
            "search example.test\nnameserver 192.0.2.53\n",
            "the plugins' DNS servers, once"
        );

        cni.detach("c1").expect("detach");
        assert_eq!(
            take(&log),
            [
                format!("DEL eth1 c1 {p} {ns}"),
                format!("DEL eth0 c1 {p} {ns}")
            ]
        );
        let deleted = stdin(&take(&tmp.path().join("log.stdin")));
        // CNI 0.4.0 gives DEL the ADD's result; 0.3.1 does not.
        assert!(deleted[0].get("prevResult").is_none(), "{}", deleted[0]);
        assert_eq!(
            deleted[1]["prevResult"]["ips"][0]["address"],
            "192.0.2.10/24"
        );

        // A failed ADD is undone with a DEL too (it may have half happened), then the rest.
        let request = Request {
            networks: vec![json!({"name": "first"}), json!({"name": "broken"})],
            hostname: None,
        };
        let e = cni.attach("c2", &request).expect_err("broken").to_string();
        assert!(
            e.contains("CNI network 'broken': ADD failed: no addresses left: pool empty"),
            "{e}"
        );
        let calls: Vec<String> = take(&log)
            .iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(calls, ["ADD eth0", "ADD eth1", "DEL eth1", "DEL eth0"]);
        let _ = take(&tmp.path().join("log.stdin"));
        assert!(cni.containers().is_empty());

        let twice = Request {
            networks: vec![json!({"name": "first"}), json!({"name": "first"})],
            hostname: None,
        };
        let e = cni.attach("c3", &twice).expect_err("twice").to_string();
        assert!(e.contains("names network 'first' more than once"), "{e}");
        assert!(take(&log).is_empty(), "nothing was called");

        // A list: its plugins are added in order on the same interface, each after the first
        // given the result so far, and deleted last first, each given the list's result.
        let chain = Request {
            networks: vec![json!({"name": "chain", "labels": labels, "port_mappings": [
                {"host_port": 31000, "container_port": 8080, "protocol": "udp"},
                {"host_port": 31001, "container_port": 9090},
            ]})],
            hostname: None,
        };
        let a = cni.attach("c4", &chain).expect("attach the list");
        assert_eq!(a.network_infos[0]["ip_addresses"], ip);
        let calls = |lines: Vec<String>| -> Vec<String> {
            lines
                .iter()
                .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
                .collect()
        };
        assert_eq!(calls(take(&log)), ["ADD eth0", "ADD eth0"]);
        let added = stdin(&take(&tmp.path().join("log.stdin")));
        for (i, c) in added.iter().enumerate() {
            assert_eq!(c["step"], i + 1);
            assert_eq!(c["name"], "chain", "each plugin gets the list's name");
            assert_eq!(c["cniVersion"], "1.0.0", "and its version");
            assert_eq!(
                c["args"]["org.apache.mesos"]["network_info"]["labels"],
                labels
            );
        }
        assert!(added[0].get("prevResult").is_none(), "{}", added[0]);
        // Only the plugin that declares the capability gets the port mappings as CNI's.
        assert!(added[0].get("runtimeConfig").is_none(), "{}", added[0]);
        assert_eq!(
            added[1]["runtimeConfig"]["portMappings"],
            json!([
                {"hostPort": 31000, "containerPort": 8080, "protocol": "udp"},
                {"hostPort": 31001, "containerPort": 9090, "protocol": "tcp"},
            ])
        );
        assert_eq!(added[1]["prevResult"]["ips"][0]["address"], "192.0.2.10/24");
        cni.detach("c4").expect("detach the list");
        assert_eq!(calls(take(&log)), ["DEL eth0", "DEL eth0"]);
        let deleted = stdin(&take(&tmp.path().join("log.stdin")));
        assert_eq!(deleted[0]["step"], 2);
        assert_eq!(deleted[1]["step"], 1);
        for d in &deleted {
            assert_eq!(d["prevResult"]["ips"][0]["address"], "192.0.2.10/24");
        }

        // A list failing half-way names the plugin, and every plugin of it is deleted.
        let halfway = Request {
            networks: vec![json!({"name": "halfway"})],
            hostname: None,
        };
        let e = cni.attach("c5", &halfway).expect_err("halfway").to_string();
        assert!(
            e.contains("CNI network 'halfway': ADD failed: plugin 'logger': no addresses left"),
            "{e}"
        );
        assert_eq!(
            calls(take(&log)),
            ["ADD eth0", "ADD eth0", "DEL eth0", "DEL eth0"]
        );
        let _ = take(&tmp.path().join("log.stdin"));
        assert!(cni.containers().is_empty());
    }
}
