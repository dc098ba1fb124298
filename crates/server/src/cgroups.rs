//! Linux control groups for the `mesos` containerizer: one cgroup per container (an executor
//! and its tasks), on cgroup v1 (a hierarchy per controller) or v2 (one unified tree).
//!
//! Layout: `<mount>/<root>/<container_id>` in every hierarchy used, where `<root>` is the
//! agent's `--cgroups-root` (by default unique per agent address, so several agents on one
//! machine never touch each other's containers). Everything here is plain file I/O on cgroupfs;
//! the agent shell decides when to call it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// USER_HZ, the unit of `cpuacct.stat` (100 on every Linux ABI Mantle targets).
const USER_HZ: f64 = 100.0;
/// CFS period used with `--cgroups-enable-cfs` (Mesos: 100 ms).
const CFS_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota (Mesos: 1 ms).
const MIN_CFS_QUOTA_US: u64 = 1_000;
/// Smallest memory limit (Mesos: 32 MB).
const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;
/// Smallest cpu.shares value the kernel accepts.
const MIN_SHARES: u64 = 2;
const CPU_SHARES_PER_CPU: f64 = 1024.0;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups isolation needs the cpu, cpuacct, memory, pids and freezer cgroup v1 hierarchies or a cgroup v2 tree with the cpu, memory and pids controllers; this host has {0}")]
    Unsupported(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("processes of container {0} survived being killed")]
    Unkillable(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which cgroup version the host gives Mantle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One mount per controller: cpu, cpuacct, memory, pids, freezer.
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
        freezer: PathBuf,
    },
    /// The unified hierarchy.
    V2 { mount: PathBuf },
}

/// What a container may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub cpus: f64,
    pub mem_mb: f64,
}

/// Knobs of the cgroups isolator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Path under each hierarchy's mount, e.g. `mantle/agent-127.0.0.2-5051`.
    pub root: String,
    /// Enforce the cpu limit as a CFS quota (a hard cap) as well as with shares.
    pub enable_cfs: bool,
    /// `pids.max` of each container, when set.
    pub pids_max: Option<u64>,
    /// Turn on the kernel's `favordynmods` (see [`favor_dynamic_changes`]).
    pub favor_dynmods: bool,
}

/// Usage and limits of one container, in the units of Mesos's `ResourceStatistics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cpus_user_time_secs: f64,
    pub cpus_system_time_secs: f64,
    pub cpus_limit: f64,
    pub cpus_nr_periods: Option<u64>,
    pub cpus_nr_throttled: Option<u64>,
    pub cpus_throttled_time_secs: Option<f64>,
    pub mem_total_bytes: u64,
    pub mem_rss_bytes: u64,
    pub mem_limit_bytes: u64,
    /// Highest memory use seen (`memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub mem_max_bytes: u64,
    pub processes: u64,
}

impl Usage {
    /// Adds `other`'s usage to this one (the limits too: the sum of containers' limits);
    /// `cpus_limit` stays as it is.
    pub fn add(&mut self, other: &Usage) {
        fn opt<T: std::ops::Add<Output = T> + Default + Copy>(
            a: Option<T>,
            b: Option<T>,
        ) -> Option<T> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
            }
        }
        self.cpus_user_time_secs += other.cpus_user_time_secs;
        self.cpus_system_time_secs += other.cpus_system_time_secs;
        self.cpus_nr_periods = opt(self.cpus_nr_periods, other.cpus_nr_periods);
        self.cpus_nr_throttled = opt(self.cpus_nr_throttled, other.cpus_nr_throttled);
        self.cpus_throttled_time_secs = opt(
            self.cpus_throttled_time_secs,
            other.cpus_throttled_time_secs,
        );
        self.mem_total_bytes += other.mem_total_bytes;
        self.mem_rss_bytes += other.mem_rss_bytes;
        self.mem_limit_bytes += other.mem_limit_bytes;
        self.mem_max_bytes += other.mem_max_bytes;
        self.processes += other.processes;
    }
}

/// The cgroups of one agent.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
    settings: Settings,
}

/// Mount points of cgroup filesystems, from `/proc/self/mountinfo` text:
/// (fstype, mount point, super options).
fn mounts(mountinfo: &str) -> Vec<(String, PathBuf, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let _source = r.next()?;
            let options = r.next().unwrap_or("");
            Some((
                fstype.to_string(),
                PathBuf::from(mount_point.replace("\\040", " ")),
                options.to_string(),
            ))
        })
        .collect()
}

/// Picks a layout from mountinfo text and a way to read a v2 mount's controllers.
pub fn detect_layout(
    mountinfo: &str,
    controllers_of: impl Fn(&Path) -> Option<String>,
) -> Result<Layout, CgroupError> {
    let ms = mounts(mountinfo);
    for (fstype, point, _) in &ms {
        if fstype == "cgroup2" {
            if let Some(c) = controllers_of(point) {
                let have: Vec<&str> = c.split_whitespace().collect();
                if ["cpu", "memory", "pids"].iter().all(|x| have.contains(x)) {
                    return Ok(Layout::V2 {
                        mount: point.clone(),
                    });
                }
            }
        }
    }
    let v1 = |name: &str| {
        ms.iter()
            .find(|(t, _, o)| t == "cgroup" && o.split(',').any(|x| x == name))
            .map(|(_, p, _)| p.clone())
    };
    match (
        v1("cpu"),
        v1("cpuacct"),
        v1("memory"),
        v1("pids"),
        v1("freezer"),
    ) {
        (Some(cpu), Some(cpuacct), Some(memory), Some(pids), Some(freezer)) => Ok(Layout::V1 {
            cpu,
            cpuacct,
            memory,
            pids,
            freezer,
        }),
        _ => {
            let found: Vec<String> = ms
                .iter()
                .filter(|(t, _, _)| t.starts_with("cgroup"))
                .map(|(t, p, o)| format!("{t} at {} ({o})", p.display()))
                .collect();
            Err(CgroupError::Unsupported(if found.is_empty() {
                "no cgroup mounts".into()
            } else {
                found.join(", ")
            }))
        }
    }
}

/// cgroup v2 `cpu.weight` for v1-style shares (the kernel's and systemd's conversion).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// cpu.shares for `cpus` (Mesos: 1024 per cpu, at least 2).
pub fn shares_for(cpus: f64) -> u64 {
    ((cpus * CPU_SHARES_PER_CPU) as u64).max(MIN_SHARES)
}

/// CFS quota for `cpus` per 100 ms period (at least 1 ms).
pub fn quota_for(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64) as u64).max(MIN_CFS_QUOTA_US)
}

/// Memory limit for `mem_mb` (at least 32 MB).
pub fn memory_for(mem_mb: f64) -> u64 {
    ((mem_mb * 1024.0 * 1024.0) as u64).max(MIN_MEMORY_BYTES)
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(io(path))
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io(path))
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `cpu.stat`, ...).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Where the agent mounts the hierarchy that turns `favordynmods` on.
pub const FAVOR_DYNMODS_MOUNT: &str = "/run/mantle/cgroup-favordynmods";

/// Whether some cgroup mount in `mountinfo` text has `favordynmods` on (which turns it on for
/// the whole kernel).
pub fn favors_dynmods(mountinfo: &str) -> bool {
    mounts(mountinfo)
        .iter()
        .filter(|(fstype, _, _)| fstype == "cgroup" || fstype == "cgroup2")
        .any(|(_, _, opts)| opts.split(',').any(|o| o == "favordynmods"))
}

/// Turns on the kernel's `favordynmods` (Linux 6.0 and later), unless some cgroup mount has it
/// already: then moving a process into a cgroup no longer waits for an RCU grace period
/// (milliseconds, and every launch moves its executor into its container), at the cost of
/// slightly dearer forks and exits. The kernel keeps one such setting for all hierarchies, on
/// while any mount asks for it, so Mantle mounts a hierarchy of its own with no controllers
/// (`name=mantle`) at [`FAVOR_DYNMODS_MOUNT`] and leaves it there; existing v1 hierarchies
/// cannot be remounted with it. Returns whether it is on.
pub fn favor_dynamic_changes() -> Result<bool, CgroupError> {
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    if favors_dynmods(&mountinfo) {
        return Ok(true);
    }
    let at = Path::new(FAVOR_DYNMODS_MOUNT);
    std::fs::create_dir_all(at).map_err(io(at))?;
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some("cgroup"),
        at,
        Some("cgroup"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("none,name=mantle,favordynmods"),
    )
    .map_err(|e| io(at)(std::io::Error::from(e)))?;
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    Ok(favors_dynmods(&mountinfo))
}

impl Cgroups {
    /// Detects the host's cgroups and checks that `settings.root` can be created in them.
    pub fn new(settings: Settings) -> Result<Self, CgroupError> {
        if settings.favor_dynmods {
            match favor_dynamic_changes() {
                Ok(true) => tracing::debug!("cgroups favordynmods is on"),
                Ok(false) => tracing::warn!("cgroups favordynmods did not turn on; launches wait for the kernel when they join their cgroups"),
                Err(e) => tracing::warn!(error = %e, "cannot turn on cgroups favordynmods (Linux 6.0 and later); launches wait for the kernel when they join their cgroups"),
            }
        }
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let layout = detect_layout(&mountinfo, |p| {
            std::fs::read_to_string(p.join("cgroup.controllers")).ok()
        })?;
        let cg = Cgroups { layout, settings };
        for dir in cg.roots() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        if let Layout::V2 { mount } = &cg.layout {
            // Each level down to the containers' parent must hand the controllers on.
            let mut dir = mount.clone();
            for part in Path::new(&cg.settings.root).components() {
                write(&dir.join("cgroup.subtree_control"), "+cpu +memory +pids")?;
                dir = dir.join(part);
            }
            write(&dir.join("cgroup.subtree_control"), "+cpu +memory +pids")?;
        }
        Ok(cg)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every hierarchy used: its mount and a controller it has (`""` for the unified one).
    fn hierarchies(&self) -> Vec<(&Path, &'static str)> {
        match &self.layout {
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
                freezer,
            } => {
                let mut v = vec![
                    (cpu.as_path(), "cpu"),
                    (cpuacct.as_path(), "cpuacct"),
                    (memory.as_path(), "memory"),
                ];
                // The pids hierarchy only when a limit is set (`cgroups/pids`), as Mesos:
                // every hierarchy costs a launch a directory and a move.
                if self.settings.pids_max.is_some() {
                    v.push((pids.as_path(), "pids"));
                }
                v.push((freezer.as_path(), "freezer"));
                v.dedup_by(|a, b| a.0 == b.0);
                v
            }
            Layout::V2 { mount } => vec![(mount.as_path(), "")],
        }
    }

    /// The agent's root directory in every hierarchy used.
    fn roots(&self) -> Vec<PathBuf> {
        self.hierarchies()
            .into_iter()
            .map(|(m, _)| m.join(&self.settings.root))
            .collect()
    }

    /// The agent's root in the v1 pids hierarchy when this run does not use it: a run with
    /// `cgroups/pids` before a restart without it may have left containers' directories there,
    /// which [`Cgroups::containers`] lists and [`Cgroups::destroy`] removes.
    fn unused_pids_root(&self) -> Option<PathBuf> {
        match &self.layout {
            Layout::V1 { pids, .. } if self.settings.pids_max.is_none() => {
                Some(pids.join(&self.settings.root))
            }
            _ => None,
        }
    }

    /// The `cgroup.procs` files of a process's own cgroups in every hierarchy used, from its
    /// `/proc/<pid>/cgroup` text; `None` when one is missing there.
    pub fn own_procs_files(&self, proc_cgroup: &str) -> Option<Vec<String>> {
        self.hierarchies()
            .into_iter()
            .map(|(mount, controller)| {
                let path = proc_cgroup.lines().find_map(|line| {
                    let mut parts = line.splitn(3, ':');
                    let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                    let found = if controller.is_empty() {
                        controllers.is_empty()
                    } else {
                        controllers.split(',').any(|c| c == controller)
                    };
                    found.then_some(path)
                })?;
                let dir = mount.join(path.trim_start_matches('/'));
                Some(dir.join("cgroup.procs").to_string_lossy().into_owned())
            })
            .collect()
    }

    /// The container's directory in every hierarchy used.
    pub fn dirs(&self, container_id: &str) -> Vec<PathBuf> {
        self.roots()
            .into_iter()
            .map(|r| r.join(container_id))
            .collect()
    }

    /// The directory holding `cgroup.procs` for listing and for the memory files.
    fn memory_dir(&self, container_id: &str) -> PathBuf {
        match &self.layout {
            Layout::V1 { memory, .. } => memory.join(&self.settings.root).join(container_id),
            Layout::V2 { mount } => mount.join(&self.settings.root).join(container_id),
        }
    }

    /// Creates the container's cgroups with `limits`.
    pub fn create(&self, container_id: &str, limits: Limits) -> Result<(), CgroupError> {
        for d in self.dirs(container_id) {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        if let Some(max) = self.settings.pids_max {
            let file = match &self.layout {
                Layout::V1 { pids, .. } => pids
                    .join(&self.settings.root)
                    .join(container_id)
                    .join("pids.max"),
                Layout::V2 { mount } => mount
                    .join(&self.settings.root)
                    .join(container_id)
                    .join("pids.max"),
            };
            write(&file, &max.to_string())?;
        }
        self.update(container_id, limits)
    }

    /// Sets the container's cpu and memory limits.
    pub fn update(&self, container_id: &str, limits: Limits) -> Result<(), CgroupError> {
        let shares = shares_for(limits.cpus);
        let memory = memory_for(limits.mem_mb);
        match &self.layout {
            Layout::V1 { cpu, memory: m, .. } => {
                let c = cpu.join(&self.settings.root).join(container_id);
                write(&c.join("cpu.shares"), &shares.to_string())?;
                if self.settings.enable_cfs {
                    write(&c.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                    write(
                        &c.join("cpu.cfs_quota_us"),
                        &quota_for(limits.cpus).to_string(),
                    )?;
                }
                let d = m.join(&self.settings.root).join(container_id);
                // Raising the limit can't fail on usage; lowering it may (EBUSY), in which
                // case the old, larger limit stays: Mesos does the same.
                if let Err(e) = write(&d.join("memory.limit_in_bytes"), &memory.to_string()) {
                    tracing::warn!(container_id, error = %e, "could not set the memory limit");
                }
            }
            Layout::V2 { mount } => {
                let d = mount.join(&self.settings.root).join(container_id);
                write(&d.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
                if self.settings.enable_cfs {
                    write(
                        &d.join("cpu.max"),
                        &format!("{} {CFS_PERIOD_US}", quota_for(limits.cpus)),
                    )?;
                }
                write(&d.join("memory.max"), &memory.to_string())?;
                // No swap, as with v1's memory limit on hosts without swap accounting.
                let _ = write(&d.join("memory.swap.max"), "0");
            }
        }
        Ok(())
    }

    /// Paths of the container's `cgroup.procs` files: writing a pid to each moves it in.
    pub fn procs_files(&self, container_id: &str) -> Vec<String> {
        self.dirs(container_id)
            .into_iter()
            .map(|d| d.join("cgroup.procs").to_string_lossy().into_owned())
            .collect()
    }

    /// Pids in the container.
    pub fn pids(&self, container_id: &str) -> Vec<i32> {
        std::fs::read_to_string(self.memory_dir(container_id).join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// How many times the kernel's OOM killer has killed in the container.
    pub fn oom_kills(&self, container_id: &str) -> u64 {
        let d = self.memory_dir(container_id);
        match &self.layout {
            Layout::V1 { .. } => std::fs::read_to_string(d.join("memory.oom_control"))
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
            Layout::V2 { .. } => std::fs::read_to_string(d.join("memory.events"))
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
        }
    }

    /// Usage and limits, for `/monitor/statistics` and limitation messages.
    pub fn usage(&self, container_id: &str) -> Usage {
        let r = &self.settings.root;
        let text = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let num = |p: PathBuf| text(p).trim().parse::<u64>().ok();
        let mut u = Usage {
            processes: self.pids(container_id).len() as u64,
            ..Usage::default()
        };
        match &self.layout {
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
                ..
            } => {
                let acct = text(cpuacct.join(r).join(container_id).join("cpuacct.stat"));
                u.cpus_user_time_secs = keyed(&acct, "user").unwrap_or(0) as f64 / USER_HZ;
                u.cpus_system_time_secs = keyed(&acct, "system").unwrap_or(0) as f64 / USER_HZ;
                let c = cpu.join(r).join(container_id);
                u.cpus_limit = num(c.join("cpu.shares")).unwrap_or(0) as f64 / CPU_SHARES_PER_CPU;
                let stat = text(c.join("cpu.stat"));
                u.cpus_nr_periods = keyed(&stat, "nr_periods");
                u.cpus_nr_throttled = keyed(&stat, "nr_throttled");
                u.cpus_throttled_time_secs =
                    keyed(&stat, "throttled_time").map(|ns| ns as f64 / 1e9);
                let m = memory.join(r).join(container_id);
                u.mem_total_bytes = num(m.join("memory.usage_in_bytes")).unwrap_or(0);
                u.mem_limit_bytes = num(m.join("memory.limit_in_bytes")).unwrap_or(0);
                u.mem_max_bytes = num(m.join("memory.max_usage_in_bytes")).unwrap_or(0);
                u.mem_rss_bytes = keyed(&text(m.join("memory.stat")), "total_rss").unwrap_or(0);
            }
            Layout::V2 { mount } => {
                let d = mount.join(r).join(container_id);
                let stat = text(d.join("cpu.stat"));
                u.cpus_user_time_secs = keyed(&stat, "user_usec").unwrap_or(0) as f64 / 1e6;
                u.cpus_system_time_secs = keyed(&stat, "system_usec").unwrap_or(0) as f64 / 1e6;
                u.cpus_nr_periods = keyed(&stat, "nr_periods");
                u.cpus_nr_throttled = keyed(&stat, "nr_throttled");
                u.cpus_throttled_time_secs =
                    keyed(&stat, "throttled_usec").map(|us| us as f64 / 1e6);
                let weight = num(d.join("cpu.weight")).unwrap_or(100);
                // Invert shares_to_weight (approximately) to report cpus as v1 does.
                u.cpus_limit =
                    ((weight.saturating_sub(1)) * 262_142 / 9999 + 2) as f64 / CPU_SHARES_PER_CPU;
                u.mem_total_bytes = num(d.join("memory.current")).unwrap_or(0);
                u.mem_limit_bytes = num(d.join("memory.max")).unwrap_or(0);
                u.mem_max_bytes = num(d.join("memory.peak")).unwrap_or(u.mem_total_bytes);
                u.mem_rss_bytes = keyed(&text(d.join("memory.stat")), "anon").unwrap_or(0);
            }
        }
        u
    }

    fn freeze(&self, container_id: &str, frozen: bool) {
        let (file, value) = match &self.layout {
            Layout::V1 { freezer, .. } => (
                freezer
                    .join(&self.settings.root)
                    .join(container_id)
                    .join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Layout::V2 { mount } => (
                mount
                    .join(&self.settings.root)
                    .join(container_id)
                    .join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
        };
        let _ = std::fs::write(file, value);
    }

    /// Kills every process in the container: freeze it (so nothing forks meanwhile), SIGKILL
    /// each process, thaw it so the signals land, until it is empty.
    pub async fn kill_all(&self, container_id: &str) -> Result<(), CgroupError> {
        if let Layout::V2 { mount } = &self.layout {
            let kill = mount
                .join(&self.settings.root)
                .join(container_id)
                .join("cgroup.kill");
            if kill.exists() {
                let _ = std::fs::write(&kill, "1");
            }
        }
        for _ in 0..100 {
            let pids = self.pids(container_id);
            if pids.is_empty() {
                return Ok(());
            }
            self.freeze(container_id, true);
            for pid in self.pids(container_id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            self.freeze(container_id, false);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.pids(container_id).is_empty() {
            Ok(())
        } else {
            Err(CgroupError::Unkillable(container_id.to_string()))
        }
    }

    /// Kills everything in the container and removes its cgroups.
    pub async fn destroy(&self, container_id: &str) -> Result<(), CgroupError> {
        self.kill_all(container_id).await?;
        let left = self.unused_pids_root().map(|r| r.join(container_id));
        for d in self.dirs(container_id).into_iter().chain(left) {
            // An exited process may linger in the cgroup for a moment until it is reaped.
            let mut last = Ok(());
            for _ in 0..50 {
                // Off the runtime's threads: removing a cgroup waits for the kernel's cgroup
                // lock, which a launch joining its own cgroup also takes.
                let dir = d.clone();
                let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir(&dir))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                last = match removed {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
                if last.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            last.map_err(io(&d))?;
        }
        Ok(())
    }

    /// Removes this agent's (empty) root directories, and their parents while those are empty.
    pub fn remove_root(&self) {
        let depth = Path::new(&self.settings.root).components().count();
        for mut dir in self.roots().into_iter().chain(self.unused_pids_root()) {
            for _ in 0..depth {
                if std::fs::remove_dir(&dir).is_err() {
                    break;
                }
                if !dir.pop() {
                    break;
                }
            }
        }
    }

    /// Container ids that have a cgroup under this agent's root (in the first hierarchy used,
    /// or in the pids hierarchy a previous run used).
    pub fn containers(&self) -> Vec<String> {
        let roots = self
            .roots()
            .into_iter()
            .take(1)
            .chain(self.unused_pids_root());
        let mut ids: Vec<String> = roots
            .flat_map(|root| {
                std::fs::read_dir(root)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
32 25 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 25 0:29 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 25 0:30 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
35 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_uses_v1_when_v2_has_no_controllers() {
        let l = detect_layout(HYBRID, |_| Some("hugetlb".into())).unwrap();
        assert!(
            matches!(l, Layout::V1 { ref memory, .. } if memory == Path::new("/sys/fs/cgroup/memory"))
        );
    }

    #[test]
    fn a_v2_host_with_the_controllers_uses_v2() {
        let info = "35 25 0:31 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = detect_layout(info, |_| Some("cpuset cpu io memory hugetlb pids".into())).unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                mount: "/sys/fs/cgroup".into()
            }
        );
    }

    #[test]
    fn a_host_without_cgroups_is_refused_with_what_it_has() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n";
        let e = detect_layout(info, |_| None).unwrap_err().to_string();
        assert!(e.contains("no cgroup mounts"), "{e}");
        let e = detect_layout(
            "35 25 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            |_| Some("memory".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cgroup2 at /sys/fs/cgroup"), "{e}");
    }

    #[test]
    fn favordynmods_is_found_on_any_cgroup_mount_only() {
        assert!(!favors_dynmods(HYBRID));
        let on = format!(
            "{HYBRID}40 25 0:40 / /run/mantle/cgroup-favordynmods rw,nosuid - cgroup cgroup rw,favordynmods,name=mantle\n"
        );
        assert!(favors_dynmods(&on));
        // Not a cgroup mount, so not the kernel's cgroup setting.
        let other = "41 25 0:41 / /x rw - tmpfs tmpfs rw,favordynmods\n";
        assert!(!favors_dynmods(other));
    }

    fn settings(pids_max: Option<u64>) -> Settings {
        Settings {
            root: "mantle/agent-1".into(),
            enable_cfs: false,
            pids_max,
            favor_dynmods: false,
        }
    }

    #[test]
    fn a_process_own_cgroups_are_found_in_every_hierarchy_used() {
        let cg = Cgroups {
            layout: detect_layout(HYBRID, |_| None).unwrap(),
            settings: settings(None),
        };
        let own = "13:pids:/user.slice\n6:memory:/user.slice/session-1.scope\n\
                   4:cpu:/\n5:cpuacct:/\n3:freezer:/x\n1:name=systemd:/y\n0::/z\n";
        assert_eq!(
            cg.own_procs_files(own).unwrap(),
            [
                "/sys/fs/cgroup/cpu/cgroup.procs",
                "/sys/fs/cgroup/cpuacct/cgroup.procs",
                "/sys/fs/cgroup/memory/user.slice/session-1.scope/cgroup.procs",
                "/sys/fs/cgroup/freezer/x/cgroup.procs",
            ]
        );
        // A hierarchy the process is not listed in: no way back.
        assert_eq!(cg.own_procs_files("4:cpu:/\n5:cpuacct:/\n"), None);
        let v2 = Cgroups {
            layout: Layout::V2 {
                mount: "/sys/fs/cgroup".into(),
            },
            settings: settings(Some(10)),
        };
        assert_eq!(
            v2.own_procs_files("0::/system.slice/mantle.service\n")
                .unwrap(),
            ["/sys/fs/cgroup/system.slice/mantle.service/cgroup.procs"]
        );
    }

    /// On the host's real cgroups (root): a container made by a run with `cgroups/pids` is
    /// listed, and wholly removed, by a later run without it.
    #[tokio::test]
    async fn a_run_without_pids_removes_what_a_run_with_pids_left() {
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|u| u.split_whitespace().nth(1).map(str::to_string))
            })
            .flatten()
            .unwrap();
        assert_eq!(uid, "0", "this test uses the host's cgroups and needs root");
        let root = format!("mantle-test/{}-pids-left", std::process::id());
        let with = |pids_max| Settings {
            root: root.clone(),
            enable_cfs: false,
            pids_max,
            favor_dynmods: false,
        };
        let before = Cgroups::new(with(Some(64))).expect("cgroups on this host");
        let limits = Limits {
            cpus: 0.1,
            mem_mb: 32.0,
        };
        before.create("left", limits).unwrap();
        let made = before.dirs("left");
        assert!(made.iter().all(|d| d.is_dir()), "{made:?}");
        // A later run without `cgroups/pids` (on v1 the pids hierarchy is then not used; the
        // container is a cgroup in every other hierarchy too, and the unused one goes with them).
        let after = Cgroups::new(with(None)).unwrap();
        if let Layout::V1 { pids, .. } = after.layout() {
            assert!(made.iter().any(|d| d.starts_with(pids)));
            assert!(!after.dirs("left").iter().any(|d| d.starts_with(pids)));
        }
        assert_eq!(after.containers(), ["left"]);
        after.destroy("left").await.unwrap();
        let kept: Vec<_> = made.iter().filter(|d| d.exists()).collect();
        assert!(kept.is_empty(), "left behind: {kept:?}");
        assert!(after.containers().is_empty());
        after.remove_root();
        let roots: Vec<_> = made
            .iter()
            .filter_map(|d| d.parent())
            .filter(|r| r.exists())
            .collect();
        assert!(roots.is_empty(), "roots left behind: {roots:?}");
    }

    #[test]
    fn limits_convert_as_mesos_does() {
        assert_eq!(shares_for(0.5), 512);
        assert_eq!(shares_for(0.0), 2);
        assert_eq!(quota_for(0.25), 25_000);
        assert_eq!(quota_for(0.001), 1_000);
        assert_eq!(memory_for(64.0), 64 << 20);
        assert_eq!(memory_for(1.0), 32 << 20);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
