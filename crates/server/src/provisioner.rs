//! Images for the `mesos` containerizer (Mesos's provisioner with its `docker` image
//! provider, `--image-providers docker`): a container whose `ContainerInfo.mesos.image` names
//! a Docker image runs its tasks in a root filesystem of its own made from that image.
//!
//! - Images come from `--docker-registry`, a directory of `docker save` archives (Mesos's
//!   local registry) named `<repository>:<tag>.tar` (or `<repository>.tar` for an image named
//!   without a tag; the tag is `latest` then). No remote registry is read.
//! - The store (`--docker-store-dir`) keeps each image, by its configuration's digest, as one
//!   flattened root filesystem: its layers extracted in order, each layer's whiteouts
//!   (`.wh.<name>`, and `.wh..wh..opq` for a directory whose lower contents go) applied
//!   before its files, no entry landing outside it. It is made once and shared, read-only.
//! - Per container (`<work dir>/provisioner/<container id>/`): an overlay mount of the image
//!   (`rootfs`, with the container's own `upper` and `work` directories, so a container's
//!   writes stay its own), private to the agent's mount namespace, holding the sandbox at
//!   `/mnt/mesos/sandbox` (a bind mount), `/proc`, the host's `/dev`, and copies of the
//!   host's (or the container's CNI) `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`;
//!   and `image.json`, the image's runtime configuration (`Env`, `Entrypoint`, `Cmd`,
//!   `WorkingDir`).
//! - The built-in executor runs the container's tasks and `COMMAND` checks with their root
//!   there (util-linux's `nsenter --root --wd=/mnt/mesos/sandbox`), with `MESOS_SANDBOX` set
//!   to `/mnt/mesos/sandbox` and the image's environment under the task's.
//! - `destroy` detaches the mounts (lazily, with everything under them) and removes the
//!   container's directory only once nothing is mounted there any more.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// Where the sandbox is inside an image container (Mesos's path).
pub const SANDBOX_INSIDE: &str = "/mnt/mesos/sandbox";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Invalid(String),
    #[error("image '{image}' is not in the registry: no {tried}")]
    NotFound { image: String, tried: String },
    #[error("image archive {archive}: {message}")]
    Archive { archive: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The image a `mesos` container asks for: `ContainerInfo.mesos.image`'s Docker name, or
/// `None` without an image. An image of another type (APPC) is an error.
pub fn image_of(container: &Value) -> Option<Result<String, ProvisionError>> {
    let image = container.get("mesos")?.get("image")?;
    let kind = image.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "DOCKER" {
        return Some(Err(ProvisionError::Invalid(format!(
            "container.mesos.image: type '{kind}' is not supported; only DOCKER images run here"
        ))));
    }
    match image
        .get("docker")
        .and_then(|d| d.get("name"))
        .and_then(Value::as_str)
    {
        Some(n) if !n.is_empty() => Some(Ok(n.to_string())),
        _ => Some(Err(ProvisionError::Invalid(
            "container.mesos.image.docker.name is missing".into(),
        ))),
    }
}

/// The strings of a JSON array (others skipped); none for anything else.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// An image's runtime configuration, as a container's processes need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
}

impl ImageConfig {
    fn from_docker(config: &Value) -> ImageConfig {
        let c = &config["config"];
        ImageConfig {
            env: strings(&c["Env"])
                .into_iter()
                .filter_map(|e| {
                    e.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect(),
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            working_dir: c["WorkingDir"]
                .as_str()
                .filter(|w| !w.is_empty())
                .map(str::to_string),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "env": self.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
            "working_dir": self.working_dir,
        })
    }

    /// What a task without a command of its own runs (`shell: false`, no `value`), as Mesos
    /// runs it: the entrypoint with the task's `arguments`, else with the image's `Cmd`;
    /// without an entrypoint, `Cmd`'s program with the task's arguments, else all of `Cmd`.
    pub fn argv(&self, arguments: &[String]) -> Vec<String> {
        match (self.entrypoint.is_empty(), self.cmd.first()) {
            (false, _) if !arguments.is_empty() => {
                self.entrypoint.iter().chain(arguments).cloned().collect()
            }
            (false, _) => self.entrypoint.iter().chain(&self.cmd).cloned().collect(),
            (true, Some(program)) if !arguments.is_empty() => {
                std::iter::once(program).chain(arguments).cloned().collect()
            }
            (true, Some(_)) => self.cmd.clone(),
            (true, None) => arguments.to_vec(),
        }
    }

    /// Read back from a container's `image.json`.
    pub fn from_json(v: &Value) -> ImageConfig {
        ImageConfig {
            env: v["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect(),
            entrypoint: strings(&v["entrypoint"]),
            cmd: strings(&v["cmd"]),
            working_dir: v["working_dir"].as_str().map(str::to_string),
        }
    }

    /// The image configuration beside a container's root filesystem (`rootfs`), as the
    /// provisioner wrote it.
    pub fn of_rootfs(rootfs: &Path) -> ImageConfig {
        rootfs
            .parent()
            .and_then(|d| std::fs::read_to_string(d.join("image.json")).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| ImageConfig::from_json(&v))
            .unwrap_or_default()
    }
}

/// An archive as last read: its path, size and modification time.
type ArchiveKey = (PathBuf, u64, std::time::SystemTime);

/// The provisioner of one agent.
#[derive(Debug)]
pub struct Provisioner {
    registry: PathBuf,
    store: PathBuf,
    runtime: PathBuf,
    /// Serialises making images in the store.
    making: Mutex<()>,
    /// Images already in the store, by their archive's (path, size, modification time): an
    /// archive is read again only when it changed.
    known: Mutex<HashMap<ArchiveKey, (PathBuf, ImageConfig)>>,
}

/// A relative path from an archive, as components that stay inside: `None` for an absolute
/// one, one with `..`, or an empty one.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// `root` joined with `rel` when no directory on the way is a symbolic link (so that a
/// removal never follows one out of `root`).
fn under(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        p.push(c);
        if i + 1 < parts.len() {
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                _ => return None,
            }
        }
    }
    Some(p)
}

/// Makes `rel` (an absolute path inside the container) a real directory under `rootfs`,
/// never following a link: each component on the way that is a link or not a directory (the
/// image may have put one there) is replaced by a directory, which changes only the
/// container's own layer. Returns its path.
fn real_dir(rootfs: &Path, rel: &str) -> Result<PathBuf, ProvisionError> {
    let mut p = rootfs.to_path_buf();
    for c in Path::new(rel).components() {
        let Component::Normal(n) = c else {
            continue;
        };
        p.push(n);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&p).map_err(io(&p))?;
                std::fs::create_dir(&p).map_err(io(&p))?;
            }
            Err(_) => std::fs::create_dir(&p).map_err(io(&p))?,
        }
    }
    Ok(p)
}

/// A path from `/proc/self/mountinfo`, which writes a space, tab, newline and backslash as
/// `\` and three octal digits.
fn unescape_mount(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |j: usize| {
            b.get(j)
                .filter(|c| (b'0'..=b'7').contains(c))
                .map(|c| c - b'0')
        };
        if b[i] == b'\\' {
            if let (Some(x), Some(y), Some(z)) = (octal(i + 1), octal(i + 2), octal(i + 3)) {
                out.push(x.wrapping_mul(64).wrapping_add(y * 8).wrapping_add(z));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// An error and its causes, on one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Applies one layer (a tar stream read by `open`, twice) to `rootfs`: its whiteouts first,
/// then its entries.
fn apply_layer<R: Read>(
    rootfs: &Path,
    mut open: impl FnMut() -> std::io::Result<R>,
    label: &str,
) -> Result<(), ProvisionError> {
    let bad = |message: String| ProvisionError::Archive {
        archive: label.to_string(),
        message,
    };
    let mut whiteouts = Vec::new();
    let mut archive = tar::Archive::new(open().map_err(|e| bad(e.to_string()))?);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
            {
                return Err(bad(format!(
                    "whiteout '{}' leaves the image",
                    path.display()
                )));
            }
            let dir = path.parent().and_then(inside).unwrap_or_default();
            whiteouts.push((dir, hidden.to_string()));
        }
    }
    for (dir, hidden) in whiteouts {
        if hidden == ".wh..opq" {
            // Opaque: what lower layers put in this directory goes; never through a link.
            let d = if dir.as_os_str().is_empty() {
                Some(rootfs.to_path_buf())
            } else {
                under(rootfs, &dir)
            };
            let Some(d) = d.filter(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
            else {
                continue;
            };
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    remove_any(&e.path());
                }
            }
        } else if !matches!(hidden.as_str(), "" | "." | "..") && !hidden.contains('/') {
            // Every directory on the way must be a real one inside; the name itself goes
            // (a link is removed, not followed).
            if let Some(target) = under(rootfs, &dir.join(&hidden)) {
                remove_any(&target);
            }
        }
    }
    let mut archive = tar::Archive::new(open().map_err(|e| bad(e.to_string()))?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".wh."))
        {
            continue;
        }
        if inside(&path).is_none() {
            if path.components().all(|c| matches!(c, Component::CurDir)) {
                continue; // the layer's root directory itself
            }
            return Err(bad(format!("entry '{}' leaves the image", path.display())));
        }
        // What a lower layer has at this name is replaced (a directory stays one when the
        // entry is one too), as Docker applies layers: a link or file is never written through.
        if let Some(target) = under(rootfs, &path) {
            if let Ok(m) = std::fs::symlink_metadata(&target) {
                if !(m.is_dir() && entry.header().entry_type().is_dir()) {
                    remove_any(&target);
                }
            }
        }
        let unpacked = entry
            .unpack_in(rootfs)
            .map_err(|e| bad(format!("entry '{}': {}", path.display(), with_causes(&e))))?;
        if !unpacked {
            return Err(bad(format!("entry '{}' leaves the image", path.display())));
        }
    }
    Ok(())
}

impl Provisioner {
    /// The provisioner of an agent with work dir `work_dir`: images from `registry` (a
    /// directory), kept in `store`.
    pub fn new(
        registry: &Path,
        store: &Path,
        work_dir: &Path,
    ) -> Result<Provisioner, ProvisionError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(ProvisionError::Invalid(
                "--image-providers docker mounts root filesystems: run the agent as root".into(),
            ));
        }
        let text = registry.to_string_lossy();
        if text.contains("://") || !registry.is_dir() {
            return Err(ProvisionError::Invalid(format!(
                "--docker-registry {text}: must be a directory of `docker save` archives (no remote registry is read)"
            )));
        }
        let runtime = work_dir.join("provisioner");
        for d in [store, runtime.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(d).map_err(io(d))?;
            // Images hold setuid programs: nobody else may reach them through here.
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(io(d))?;
        }
        // Images half made when an agent stopped.
        if let Ok(rd) = std::fs::read_dir(store) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(Provisioner {
            registry: registry.to_path_buf(),
            store: store.to_path_buf(),
            runtime: std::fs::canonicalize(&runtime).map_err(io(&runtime))?,
            making: Mutex::new(()),
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The archive of image `name` in the registry.
    fn archive(&self, name: &str) -> Result<PathBuf, ProvisionError> {
        let bad = || {
            ProvisionError::Invalid(format!(
                "image name '{name}' is not a valid Docker image name"
            ))
        };
        if name.contains("..") || name.starts_with('/') || name.contains('\0') || name.contains('@')
        {
            return Err(bad());
        }
        let last = name.rsplit('/').next().unwrap_or(name);
        let mut tried = Vec::new();
        let mut candidates = Vec::new();
        if last.contains(':') {
            candidates.push(format!("{name}.tar"));
        } else {
            candidates.push(format!("{name}:latest.tar"));
            candidates.push(format!("{name}.tar"));
        }
        for c in candidates {
            let p = self.registry.join(&c);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p.display().to_string());
        }
        Err(ProvisionError::NotFound {
            image: name.to_string(),
            tried: tried.join(" nor "),
        })
    }

    /// Reads `file` out of the archive at `path`.
    fn read_member(path: &Path, file: &str) -> Result<Option<Vec<u8>>, ProvisionError> {
        let f = std::fs::File::open(path).map_err(io(path))?;
        let mut archive = tar::Archive::new(f);
        let bad = |e: std::io::Error| ProvisionError::Archive {
            archive: path.display().to_string(),
            message: format!("not a `docker save` archive: {e}"),
        };
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let p = entry.path().map_err(bad)?.into_owned();
            if inside(&p).as_deref() == Some(Path::new(file)) {
                let mut out = Vec::new();
                entry.read_to_end(&mut out).map_err(bad)?;
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// The flattened root filesystem and configuration of image `name`, made in the store the
    /// first time.
    pub fn image(&self, name: &str) -> Result<(PathBuf, ImageConfig), ProvisionError> {
        let archive = self.archive(name)?;
        let meta = std::fs::metadata(&archive).map_err(io(&archive))?;
        let key = (
            archive.clone(),
            meta.len(),
            meta.modified().map_err(io(&archive))?,
        );
        let known = |k: &_| {
            self.known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(k)
                .cloned()
        };
        if let Some((rootfs, config)) = known(&key) {
            if rootfs
                .parent()
                .is_some_and(|d| d.join("complete").is_file())
            {
                return Ok((rootfs, config));
            }
        }
        let made = self.make_image(&archive)?;
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, made.clone());
        Ok(made)
    }

    fn make_image(&self, archive: &Path) -> Result<(PathBuf, ImageConfig), ProvisionError> {
        let archive = archive.to_path_buf();
        let label = archive.display().to_string();
        let bad = |message: String| ProvisionError::Archive {
            archive: label.clone(),
            message,
        };
        let manifest: Value = match Self::read_member(&archive, "manifest.json")? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json: {e}")))?
            }
            None => return Err(bad("no manifest.json: not a `docker save` archive".into())),
        };
        let entry = &manifest[0];
        let config_file = entry["Config"]
            .as_str()
            .ok_or_else(|| bad("manifest.json names no Config".into()))?
            .to_string();
        let layers: Vec<String> = entry["Layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let config_bytes = Self::read_member(&archive, &config_file)?
            .ok_or_else(|| bad(format!("{config_file} is missing")))?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("{config_file}: {e}")))?;
        // The image is its configuration (which names its layers' digests).
        let digest = sha1_smol::Sha1::from(&config_bytes).digest().to_string();
        let dir = self.store.join(&digest);
        let rootfs = dir.join("rootfs");
        let image = ImageConfig::from_docker(&config);
        if dir.join("complete").is_file() {
            return Ok((rootfs, image));
        }
        let _making = self
            .making
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if dir.join("complete").is_file() {
            return Ok((rootfs, image));
        }
        // Made aside, then moved in: a store never holds half an image under its name.
        let _ = std::fs::remove_dir_all(&dir);
        let tmp = self.store.join(format!("{digest}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        let made = (|| {
            let layer_dir = tmp.join("layers");
            let root = tmp.join("rootfs");
            std::fs::create_dir_all(&layer_dir).map_err(io(&layer_dir))?;
            std::fs::create_dir_all(&root).map_err(io(&root))?;
            // The archive's layer tars, taken out once.
            let f = std::fs::File::open(&archive).map_err(io(&archive))?;
            let mut outer = tar::Archive::new(f);
            let mut found: HashMap<String, PathBuf> = HashMap::new();
            for (i, e) in outer.entries().map_err(|e| bad(e.to_string()))?.enumerate() {
                let mut e = e.map_err(|e| bad(e.to_string()))?;
                let p = e.path().map_err(|e| bad(e.to_string()))?.into_owned();
                let Some(rel) = inside(&p) else { continue };
                let rel = rel.to_string_lossy().into_owned();
                if layers.contains(&rel) {
                    let out = layer_dir.join(format!("{i}.tar"));
                    let mut w = std::fs::File::create(&out).map_err(io(&out))?;
                    std::io::copy(&mut e, &mut w).map_err(io(&out))?;
                    found.insert(rel, out);
                }
            }
            for l in &layers {
                let path = found
                    .get(l)
                    .ok_or_else(|| bad(format!("layer {l} is missing")))?
                    .clone();
                apply_layer(&root, || open_layer(&path), &format!("{label}: {l}"))?;
            }
            let _ = std::fs::remove_dir_all(&layer_dir);
            std::fs::write(tmp.join("complete"), b"").map_err(io(&tmp))?;
            std::fs::rename(&tmp, &dir).map_err(io(&dir))
        })();
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        made?;
        Ok((rootfs, image))
    }

    fn dir(&self, container_id: &str) -> PathBuf {
        self.runtime.join(container_id)
    }

    /// Mounts container `container_id`'s root filesystem from image `name`, with `sandbox` at
    /// [`SANDBOX_INSIDE`] and `etc` (a directory holding `hosts`, `hostname`,
    /// `resolv.conf`; default the host's `/etc`) copied in. Returns the root filesystem; on
    /// an error nothing is left.
    pub fn provision(
        &self,
        container_id: &str,
        name: &str,
        sandbox: &Path,
        etc: Option<&Path>,
    ) -> Result<PathBuf, ProvisionError> {
        let (image_root, config) = self.image(name)?;
        let dir = self.dir(container_id);
        let made = self.mount(&dir, &image_root, &config, sandbox, etc);
        if made.is_err() {
            self.destroy(container_id);
        }
        made
    }

    fn mount(
        &self,
        dir: &Path,
        image_root: &Path,
        config: &ImageConfig,
        sandbox: &Path,
        etc: Option<&Path>,
    ) -> Result<PathBuf, ProvisionError> {
        use nix::mount::{mount, MsFlags};
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let failed = |what: &str, e: nix::Error| ProvisionError::Io {
            path: rootfs.display().to_string(),
            source: std::io::Error::other(format!("{what}: {e}")),
        };
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            image_root.display(),
            upper.display(),
            work.display()
        );
        // A private mount first (the directory bound onto itself), so that neither the
        // overlay nor anything mounted under it propagates to other mount namespaces.
        mount(
            Some(&rootfs),
            &rootfs,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| failed("cannot bind the root filesystem's directory", e))?;
        let private = || {
            mount(
                None::<&str>,
                &rootfs,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| failed("cannot make the root filesystem private", e))
        };
        private()?;
        mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| failed("cannot mount the image's overlay", e))?;
        private()?;
        // Mount targets are made real directories first: a link in the image (`dev -> ..`,
        // `etc -> /etc`) must never take a mount or a write outside.
        let mut targets = HashMap::new();
        for d in [SANDBOX_INSIDE, "/proc", "/dev", "/tmp", "/etc"] {
            targets.insert(d, real_dir(&rootfs, d)?);
        }
        if let Some(w) = &config.working_dir {
            real_dir(&rootfs, w)?;
        }
        let inner = |d: &str| targets.get(d).cloned().unwrap_or_default();
        mount(
            Some(sandbox),
            &inner(SANDBOX_INSIDE),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| failed("cannot bind the sandbox", e))?;
        mount(
            Some("proc"),
            &inner("/proc"),
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| failed("cannot mount /proc", e))?;
        mount(
            Some("/dev"),
            &inner("/dev"),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| failed("cannot bind /dev", e))?;
        // Copies of shared mounts (the sandbox's filesystem, /dev and what is under it on a
        // systemd host) join their source's peer group: made private, so that unmounting them
        // here never unmounts the host's.
        mount(
            None::<&str>,
            &rootfs,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| failed("cannot make the root filesystem's mounts private", e))?;
        let source = etc.unwrap_or(Path::new("/etc"));
        for f in ["hosts", "hostname", "resolv.conf"] {
            let target = inner("/etc").join(f);
            // A link in the image (resolv.conf often is one) is replaced, not followed.
            if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_file()) {
                remove_any(&target);
            }
            // The container's own file, else the host's; never written through a link.
            let body =
                std::fs::read(source.join(f)).or_else(|_| std::fs::read(Path::new("/etc").join(f)));
            if let Ok(body) = body {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&target)
                    .map_err(io(&target))?;
                out.write_all(&body).map_err(io(&target))?;
            }
        }
        let image = dir.join("image.json");
        std::fs::write(&image, config.to_json().to_string()).map_err(io(&image))?;
        Ok(rootfs)
    }

    /// Unmounts everything mounted in container `container_id`'s directory (its root
    /// filesystem and all under it) and removes the directory; nothing is removed while
    /// anything is still mounted there, so a removal never reaches a sandbox or `/dev`.
    pub fn destroy(&self, container_id: &str) {
        let dir = self.dir(container_id);
        if container_id.is_empty() || container_id.contains('/') || !dir.exists() {
            return;
        }
        // Deepest first; a mount stacked on another shows up again until both are gone.
        for _ in 0..8 {
            let mounts = mounts_under(&dir);
            if mounts.is_empty() {
                break;
            }
            for m in mounts {
                if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                    tracing::warn!(container_id, mount = %m.display(), error = %e, "cannot unmount in a container's root filesystem");
                }
            }
        }
        let left = mounts_under(&dir);
        if !left.is_empty() {
            tracing::warn!(container_id, mounts = ?left, "a container's root filesystem is still mounted; left in place");
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(container_id, error = %e, "cannot remove a container's provisioner directory");
            }
        }
    }

    /// Containers with a directory here (provisioned, or half provisioned when an agent
    /// stopped mid-way).
    pub fn containers(&self) -> Vec<String> {
        crate::cni::subdirectories(&self.runtime)
    }
}

fn open_layer(path: &Path) -> std::io::Result<Box<dyn Read>> {
    // Layers may be gzipped (older `docker save`, OCI archives).
    let mut f = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = std::fs::File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A tar of `entries` (path, contents or `None` for a directory, symlink target), with
    /// raw names so that hostile paths stay as written.
    /// A layer entry: its path, its contents (`None`: a directory), a symlink's target.
    type Member<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);

    fn tar_of(entries: &[Member]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            let data = data.unwrap_or(b"");
            match (link, path.ends_with('/')) {
                (Some(l), _) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name(l).unwrap();
                }
                (None, true) => h.set_entry_type(tar::EntryType::Directory),
                (None, false) => h.set_entry_type(tar::EntryType::Regular),
            }
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A `docker save` archive of `layers` with `config`, named `file` in `registry`.
    fn save(registry: &Path, file: &str, layers: &[Vec<u8>], config: Value) {
        let mut members: Vec<(String, Vec<u8>)> = Vec::new();
        let mut names = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let name = format!("layer{i}/layer.tar");
            members.push((name.clone(), l.clone()));
            names.push(name);
        }
        let config_name = format!("{}.json", file.len());
        members.push((config_name.clone(), config.to_string().into_bytes()));
        let manifest = json!([{"Config": config_name, "RepoTags": [file], "Layers": names}]);
        members.push(("manifest.json".into(), manifest.to_string().into_bytes()));
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, &name, data.as_slice()).unwrap();
        }
        let path = registry.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b.into_inner().unwrap()).unwrap();
    }

    fn provisioner() -> (tempfile::TempDir, Provisioner) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the provisioner mounts root filesystems: run the tests as root"
        );
        let d = tempfile::tempdir().unwrap();
        let registry = d.path().join("registry");
        std::fs::create_dir(&registry).unwrap();
        let p =
            Provisioner::new(&registry, &d.path().join("store"), &d.path().join("work")).unwrap();
        (d, p)
    }

    #[test]
    fn layers_are_flattened_in_order_with_their_whiteouts() {
        let (d, p) = provisioner();
        let base = tar_of(&[
            ("./", None, None),
            ("bin/", None, None),
            ("bin/tool", Some(b"v1"), None),
            ("bin/gone", Some(b"x"), None),
            ("data/", None, None),
            ("data/old-1", Some(b"x"), None),
            ("data/old-2", Some(b"x"), None),
            ("etc/", None, None),
            ("etc/resolv.conf", None, Some("../run/resolv.conf")),
            ("replaced", Some(b"a file"), None),
        ]);
        let top = tar_of(&[
            ("bin/tool", Some(b"v2"), None),
            ("bin/.wh.gone", Some(b""), None),
            ("data/new", Some(b"n"), None),
            ("data/.wh..wh..opq", Some(b""), None),
            ("replaced/", None, None),
            ("replaced/inner", Some(b"i"), None),
        ]);
        let config = json!({"config": {
            "Env": ["PATH=/bin", "GREETING=hi=there"], "Entrypoint": ["/bin/tool"],
            "Cmd": ["--serve"], "WorkingDir": "/data",
        }});
        save(
            &d.path().join("registry"),
            "team/app:1.tar",
            &[base, top],
            config,
        );
        let (root, image) = p.image("team/app:1").unwrap();
        let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_default();
        assert_eq!(read("bin/tool"), "v2", "the upper layer wins");
        assert!(!root.join("bin/gone").exists(), "whited out");
        let mut data: Vec<_> = std::fs::read_dir(root.join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        data.sort();
        assert_eq!(
            data,
            ["new"],
            "an opaque directory keeps only its own layer's files"
        );
        assert_eq!(
            read("replaced/inner"),
            "i",
            "a file replaced by a directory"
        );
        assert!(std::fs::symlink_metadata(root.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            image,
            ImageConfig {
                env: vec![
                    ("PATH".into(), "/bin".into()),
                    ("GREETING".into(), "hi=there".into())
                ],
                entrypoint: vec!["/bin/tool".into()],
                cmd: vec!["--serve".into()],
                working_dir: Some("/data".into()),
            }
        );
        // Made once: the store's copy is reused.
        let again = p.image("team/app:1").unwrap();
        assert_eq!(again.0, root);
        assert_eq!(ImageConfig::from_json(&image.to_json()), image);

        // Without a tag, `latest`.
        save(
            &d.path().join("registry"),
            "plain:latest.tar",
            &[tar_of(&[("hello", Some(b"x"), None)])],
            json!({}),
        );
        assert!(p.image("plain").unwrap().0.join("hello").is_file());
    }

    #[test]
    fn a_task_without_a_command_runs_the_image_as_mesos_does() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let both = ImageConfig {
            entrypoint: v(&["/srv"]),
            cmd: v(&["--default"]),
            ..ImageConfig::default()
        };
        assert_eq!(both.argv(&[]), v(&["/srv", "--default"]));
        assert_eq!(
            both.argv(&v(&["--port", "80"])),
            v(&["/srv", "--port", "80"])
        );
        let cmd_only = ImageConfig {
            cmd: v(&["/bin/app", "--default"]),
            ..ImageConfig::default()
        };
        assert_eq!(cmd_only.argv(&[]), v(&["/bin/app", "--default"]));
        assert_eq!(
            cmd_only.argv(&v(&["--port", "80"])),
            v(&["/bin/app", "--port", "80"])
        );
        assert!(ImageConfig::default().argv(&[]).is_empty());
    }

    #[test]
    fn links_in_an_image_never_take_a_removal_a_mount_or_a_write_outside() {
        let (d, p) = provisioner();
        // A host directory that whiteouts through a link would empty.
        let victim = d.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"k").unwrap();
        let victim_link = victim.display().to_string();
        let lower = tar_of(&[
            ("x", None, Some(victim_link.as_str())),
            ("y", None, Some(victim_link.as_str())),
            ("dev", None, Some("..")),
            ("proc", None, Some("/usr")),
            ("mnt", None, Some("/")),
            ("etc", None, Some("/etc")),
            ("tmp", None, Some("../../../..")),
            ("file", Some(b"lower"), None),
        ]);
        let upper = tar_of(&[
            ("x/.wh..wh..opq", Some(b""), None),
            ("y/.wh.keep", Some(b""), None),
            (".wh...", Some(b""), None),
            ("file", Some(b"upper"), None),
        ]);
        save(
            &d.path().join("registry"),
            "links:1.tar",
            &[lower, upper],
            json!({}),
        );
        let (root, _) = p.image("links:1").unwrap();
        assert!(victim.join("keep").exists(), "whiteouts stayed inside");
        assert_eq!(std::fs::read(root.join("file")).unwrap(), b"upper");

        let host_hosts = std::fs::read("/etc/hosts").unwrap();
        let sandbox = d.path().join("sandbox");
        std::fs::create_dir(&sandbox).unwrap();
        let rootfs = p.provision("c1", "links:1", &sandbox, None).unwrap();
        for dir in ["dev", "proc", "mnt", "etc", "tmp"] {
            let m = std::fs::symlink_metadata(rootfs.join(dir)).unwrap();
            assert!(
                m.is_dir(),
                "{dir} became a directory of the container's own"
            );
        }
        assert!(rootfs.join("dev/null").exists());
        assert!(rootfs.join("proc/self").exists());
        assert!(rootfs.join("mnt/mesos/sandbox").is_dir());
        assert_eq!(
            std::fs::read("/etc/hosts").unwrap(),
            host_hosts,
            "host /etc untouched"
        );
        assert!(
            !Path::new("/mesos").exists(),
            "nothing was mounted at the host's root"
        );
        p.destroy("c1");
        assert!(p.containers().is_empty());
        assert!(Path::new("/dev/null").exists() && Path::new("/dev/pts").is_dir());
        assert!(Path::new("/usr/bin").is_dir());
        assert!(mounts_under(d.path()).is_empty(), "nothing stays mounted");
        assert_eq!(unescape_mount("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape_mount("/a\\0x"), PathBuf::from("/a\\0x"));
    }

    #[test]
    fn bad_images_are_refused_and_leave_nothing() {
        let (d, p) = provisioner();
        let registry = d.path().join("registry");
        save(
            &registry,
            "evil:1.tar",
            &[tar_of(&[("../../escaped", Some(b"x"), None)])],
            json!({}),
        );
        std::fs::write(registry.join("junk:1.tar"), b"not a tar at all").unwrap();
        save(
            &registry,
            "wh:1.tar",
            &[tar_of(&[("../.wh.passwd", Some(b""), None)])],
            json!({}),
        );
        for (name, expected) in [
            ("evil:1", "leaves the image"),
            ("wh:1", "leaves the image"),
            ("junk:1", "not a `docker save` archive"),
            ("missing:2", "image 'missing:2' is not in the registry"),
            ("../etc/passwd", "not a valid Docker image name"),
        ] {
            let e = p.image(name).expect_err(name).to_string();
            assert!(e.contains(expected), "{name}: {e} should say {expected}");
        }
        assert!(!d.path().join("escaped").exists());
        let store: Vec<_> = std::fs::read_dir(d.path().join("store")).unwrap().collect();
        assert!(store.is_empty(), "nothing half made is left: {store:?}");
        assert!(image_of(&json!({"mesos": {"image": {"type": "APPC"}}}))
            .unwrap()
            .is_err());
        assert!(image_of(&json!({"type": "MESOS"})).is_none());
    }

    #[test]
    fn a_container_gets_its_own_writable_root_with_the_sandbox_and_loses_it_on_destroy() {
        let (d, p) = provisioner();
        save(
            &d.path().join("registry"),
            "app:1.tar",
            &[tar_of(&[
                ("bin/", None, None),
                ("bin/tool", Some(b"v1"), None),
            ])],
            json!({"config": {"Env": ["A=1"]}}),
        );
        let sandbox = d.path().join("sandbox");
        std::fs::create_dir(&sandbox).unwrap();
        std::fs::write(sandbox.join("fetched"), b"f").unwrap();
        let rootfs = p.provision("c1", "app:1", &sandbox, None).unwrap();
        let inner = |f: &str| rootfs.join(f);
        assert_eq!(std::fs::read(inner("bin/tool")).unwrap(), b"v1");
        assert_eq!(
            std::fs::read(inner("mnt/mesos/sandbox/fetched")).unwrap(),
            b"f"
        );
        assert!(inner("proc/self/status").exists(), "/proc is mounted");
        assert!(inner("dev/null").exists(), "/dev is bound");
        assert_eq!(
            std::fs::read(inner("etc/hostname")).ok(),
            std::fs::read("/etc/hostname").ok()
        );
        assert_eq!(
            ImageConfig::of_rootfs(&rootfs).env,
            vec![("A".to_string(), "1".to_string())]
        );
        // Writes stay the container's own: the image is untouched.
        std::fs::write(inner("bin/tool"), b"changed").unwrap();
        let (image_root, _) = p.image("app:1").unwrap();
        assert_eq!(std::fs::read(image_root.join("bin/tool")).unwrap(), b"v1");
        // A task's output through /mnt/mesos/sandbox lands in the sandbox.
        std::fs::write(inner("mnt/mesos/sandbox/out"), b"o").unwrap();
        assert_eq!(std::fs::read(sandbox.join("out")).unwrap(), b"o");
        assert_eq!(p.containers(), vec!["c1".to_string()]);

        p.destroy("c1");
        assert!(p.containers().is_empty());
        assert!(!rootfs.exists());
        assert!(sandbox.join("fetched").exists(), "the sandbox stays");
        assert!(std::path::Path::new("/dev/null").exists());
        p.destroy("c1");

        // An unknown image leaves no directory behind.
        assert!(p.provision("c2", "nothing:1", &sandbox, None).is_err());
        assert!(p.containers().is_empty());
    }
}
