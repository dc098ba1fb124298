//! The fetcher: puts a command's `uris` into the sandbox before its executor starts, as the
//! Mesos fetcher does. Sources: absolute local paths, `file://` and `http://` URIs. Archives
//! (`.tar`, `.tar.gz`, `.tgz`, `.zip`) are extracted next to the download unless `extract` is
//! false; no entry may land outside the sandbox, and links are refused. `executable` sets the
//! mode to 0755 (and, as in Mesos, skips extraction). `cache` keeps a copy per URI under the
//! agent's cache directory and reuses it.
//!
//! The cache holds at most `--fetcher-cache-size` bytes, as Mesos's: to make room for a new
//! download the least recently used entries are evicted, never one being copied out; a
//! download that cannot fit (bigger than the cache, or the room is held by entries in use)
//! goes to the sandbox uncached. The cache starts empty with every agent start (as Mesos's
//! fetcher clears it on recovery), and a cache that fails (a copy in or out) never fails the
//! fetch: the URI is fetched from its source.

use mantle_api::mesos::CommandUri;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unsupported URI '{0}': use an absolute path, file:// or http://")]
    Scheme(String),
    #[error("output_file '{0}' must be a plain relative path inside the sandbox")]
    OutputFile(String),
    #[error("cannot name the download of '{0}'; set output_file")]
    NoName(String),
    #[error("'{uri}': {source}")]
    Io { uri: String, source: std::io::Error },
    #[error("'{uri}': {message}")]
    Download { uri: String, message: String },
    #[error("archive '{archive}': entry '{entry}' {why}")]
    Unsafe {
        archive: String,
        entry: String,
        why: &'static str,
    },
    #[error("archive '{archive}': {message}")]
    Archive { archive: String, message: String },
}

/// Fetches into sandboxes, sharing one download cache.
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache_dir: PathBuf,
    cache_size: u64,
    books: std::sync::Arc<std::sync::Mutex<Books>>,
    client: reqwest::Client,
}

/// The cache's books: its entries by file name, the bytes they hold, and a use counter.
#[derive(Debug, Default)]
struct Books {
    entries: std::collections::HashMap<String, Entry>,
    total: u64,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    /// The counter at its last use: the smallest is evicted first.
    last_used: u64,
    /// Fetches copying it out (or the one copying it in): it is not evicted meanwhile.
    users: usize,
    /// Copied in completely: it may be copied out.
    ready: bool,
}

impl Books {
    /// Takes a ready entry for copying out, as its latest use.
    fn take(&mut self, key: &str) -> bool {
        self.clock += 1;
        match self.entries.get_mut(key) {
            Some(e) if e.ready => {
                e.users += 1;
                e.last_used = self.clock;
                true
            }
            _ => false,
        }
    }

    fn put_back(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.users = e.users.saturating_sub(1);
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.total -= e.size;
        }
    }

    /// Makes room for `size` bytes under `key` within `limit` (evicting the least recently
    /// used entries nobody uses) and books them, not ready yet: the evicted keys, or `None`
    /// when it cannot fit or `key` is already there (then nothing changes).
    fn reserve(&mut self, key: &str, size: u64, limit: u64) -> Option<Vec<String>> {
        if size > limit || self.entries.contains_key(key) {
            return None;
        }
        let mut idle: Vec<(u64, String, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.users == 0)
            .map(|(k, e)| (e.last_used, k.clone(), e.size))
            .collect();
        idle.sort();
        let mut victims = Vec::new();
        let mut freed = 0;
        for (_, k, s) in idle {
            if self.total - freed + size <= limit {
                break;
            }
            freed += s;
            victims.push(k);
        }
        if self.total - freed + size > limit {
            return None;
        }
        for k in &victims {
            self.forget(k);
        }
        self.clock += 1;
        self.entries.insert(
            key.to_string(),
            Entry {
                size,
                last_used: self.clock,
                users: 1,
                ready: false,
            },
        );
        self.total += size;
        Some(victims)
    }
}

/// Where a URI's bytes come from.
enum Source {
    Local(PathBuf),
    Http(String),
}

fn source(uri: &str) -> Result<Source, FetchError> {
    if let Some(rest) = uri.strip_prefix("file://") {
        if rest.starts_with('/') {
            return Ok(Source::Local(PathBuf::from(rest)));
        }
        return Err(FetchError::Scheme(uri.into()));
    }
    if uri.starts_with('/') {
        return Ok(Source::Local(PathBuf::from(uri)));
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(Source::Http(uri.into()));
    }
    Err(FetchError::Scheme(uri.into()))
}

/// The file name a URI is saved under: `output_file`, else its last path segment.
fn file_name(u: &CommandUri) -> Result<PathBuf, FetchError> {
    if let Some(out) = &u.output_file {
        let p = Path::new(out);
        let plain = !out.is_empty()
            && !out.contains('\0')
            && p.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(FetchError::OutputFile(out.clone()));
        }
        return Ok(p.to_path_buf());
    }
    let path = u.value.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    let last = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    if last.is_empty() || last == "." || last == ".." || last.contains(['/', '\0']) {
        return Err(FetchError::NoName(u.value.clone()));
    }
    Ok(PathBuf::from(last.as_ref()))
}

fn archive_kind(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
        Some("tgz")
    } else if n.ends_with(".tar") {
        Some("tar")
    } else if n.ends_with(".zip") {
        Some("zip")
    } else {
        None
    }
}

/// Checks an archive entry's path: relative, no `..`, nothing but plain components.
fn entry_path(archive: &str, raw: &Path) -> Result<PathBuf, FetchError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(FetchError::Unsafe {
                    archive: archive.into(),
                    entry: raw.display().to_string(),
                    why: "would land outside the sandbox",
                })
            }
        }
    }
    Ok(out)
}

/// Makes sure no directory on the way from `root` to `path` is a symlink, so a write cannot
/// be redirected outside `root`.
fn no_links_between(archive: &str, root: &Path, rel: &Path) -> Result<(), FetchError> {
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for c in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(FetchError::Unsafe {
                archive: archive.into(),
                entry: rel.display().to_string(),
                why: "goes through a symlink",
            });
        }
    }
    Ok(())
}

/// Extracts a tar stream into `dir`, refusing links and anything outside it.
fn extract_tar(archive: &str, reader: impl Read, dir: &Path) -> Result<(), FetchError> {
    let bad = |message: String| FetchError::Archive {
        archive: archive.into(),
        message,
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(true);
    let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let rel = entry_path(archive, &raw)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(FetchError::Unsafe {
                archive: archive.into(),
                entry: raw.display().to_string(),
                why: "is a link (links are not extracted)",
            });
        }
        if !(kind.is_file() || kind.is_dir() || kind == tar::EntryType::Continuous) {
            // Devices, fifos and metadata records are skipped.
            continue;
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        no_links_between(archive, dir, &rel)?;
        // unpack_in re-checks containment (and answers false for an escaping entry).
        let inside = entry.unpack_in(dir).map_err(|e| bad(e.to_string()))?;
        if !inside {
            return Err(FetchError::Unsafe {
                archive: archive.into(),
                entry: raw.display().to_string(),
                why: "would land outside the sandbox",
            });
        }
    }
    Ok(())
}

/// Extracts a zip file into `dir`, refusing links and anything outside it.
fn extract_zip(archive: &str, file: std::fs::File, dir: &Path) -> Result<(), FetchError> {
    let bad = |message: String| FetchError::Archive {
        archive: archive.into(),
        message,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let name = f.name().to_string();
        let rel = entry_path(archive, Path::new(&name))?;
        if f.is_symlink() {
            return Err(FetchError::Unsafe {
                archive: archive.into(),
                entry: name,
                why: "is a link (links are not extracted)",
            });
        }
        if f.enclosed_name().is_none() {
            return Err(FetchError::Unsafe {
                archive: archive.into(),
                entry: name,
                why: "would land outside the sandbox",
            });
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        no_links_between(archive, dir, &rel)?;
        let target = dir.join(&rel);
        let io = |e: std::io::Error| bad(format!("{}: {e}", rel.display()));
        if f.is_dir() {
            std::fs::create_dir_all(&target).map_err(io)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut out = std::fs::File::create(&target).map_err(io)?;
        std::io::copy(&mut f, &mut out).map_err(io)?;
        if let Some(mode) = f.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o777));
        }
    }
    Ok(())
}

/// Extracts `path` (an archive of `kind`) into `dir`.
pub fn extract(path: &Path, kind: &str, dir: &Path) -> Result<(), FetchError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = std::fs::File::open(path).map_err(|source| FetchError::Io {
        uri: name.clone(),
        source,
    })?;
    match kind {
        "tgz" => extract_tar(&name, flate2::read::GzDecoder::new(file), dir),
        "tar" => extract_tar(&name, file, dir),
        _ => extract_zip(&name, file, dir),
    }
}

/// Passes `r` on, removing `partial` first when it is an error.
async fn discard_on_error<T>(r: Result<T, FetchError>, partial: &Path) -> Result<T, FetchError> {
    if r.is_err() {
        let _ = tokio::fs::remove_file(partial).await;
    }
    r
}

impl Fetcher {
    /// A fetcher whose cache lies in `cache_dir` (emptied now) and holds up to `cache_size`
    /// bytes.
    pub fn new(cache_dir: PathBuf, cache_size: u64) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        if let Err(e) = std::fs::remove_dir_all(&cache_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %cache_dir.display(), error = %e, "cannot empty the fetcher cache");
            }
        }
        Fetcher {
            cache_dir,
            cache_size,
            books: Default::default(),
            client,
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        // The books hold no invariant a panicking holder could break half-way.
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Copies the cached `key` to `dest`; false (and the entry dropped, when it was there
    /// but unreadable) when it must be fetched from its source.
    async fn copy_out(&self, key: &str, dest: &Path) -> bool {
        if !self.books().take(key) {
            return false;
        }
        let copied = tokio::fs::copy(self.cache_dir.join(key), dest).await;
        let mut books = self.books();
        books.put_back(key);
        match copied {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(key, error = %e, "fetcher cache entry unreadable; fetching again");
                books.forget(key);
                let _ = std::fs::remove_file(dest);
                false
            }
        }
    }

    /// Keeps a copy of `fetched` as `key` if it fits (evicting what it must); a failure
    /// leaves it uncached.
    async fn copy_in(&self, key: &str, fetched: &Path) {
        let Ok(size) = tokio::fs::metadata(fetched).await.map(|m| m.len()) else {
            return;
        };
        let Some(victims) = self.books().reserve(key, size, self.cache_size) else {
            tracing::info!(
                key,
                size,
                limit = self.cache_size,
                "download not cached: no room"
            );
            return;
        };
        for v in victims {
            tracing::info!(key = %v, "evicted from the fetcher cache");
            let _ = tokio::fs::remove_file(self.cache_dir.join(v)).await;
        }
        let cached = self.cache_dir.join(key);
        let tmp = cached.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        let stored = async {
            tokio::fs::create_dir_all(&self.cache_dir).await?;
            tokio::fs::copy(fetched, &tmp).await?;
            tokio::fs::rename(&tmp, &cached).await
        }
        .await;
        let mut books = self.books();
        match stored {
            Ok(()) => {
                if let Some(e) = books.entries.get_mut(key) {
                    e.ready = true;
                }
                books.put_back(key);
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot keep a download in the fetcher cache");
                books.forget(key);
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }

    /// The cache's entries and the bytes they hold.
    pub fn cache_usage(&self) -> (usize, u64) {
        let books = self.books();
        (books.entries.len(), books.total)
    }

    /// Fetches every URI into `sandbox`, in order; the first failure stops it.
    pub async fn fetch_all(&self, uris: &[CommandUri], sandbox: &Path) -> Result<(), FetchError> {
        for u in uris {
            self.fetch(u, sandbox).await?;
        }
        Ok(())
    }

    async fn fetch(&self, u: &CommandUri, sandbox: &Path) -> Result<(), FetchError> {
        let io = |source| FetchError::Io {
            uri: u.value.clone(),
            source,
        };
        let src = source(&u.value)?;
        let name = file_name(u)?;
        let dest = sandbox.join(&name);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let key = sha1_smol::Sha1::from(u.value.as_bytes())
            .digest()
            .to_string();
        let cache = u.cache == Some(true);
        // A copy cut short (a full disk, a dropped download) is removed, not left behind: it is
        // of no use, and on a full disk it would keep the agent from checkpointing the failure.
        if !(cache && self.copy_out(&key, &dest).await) {
            let fetched = match src {
                Source::Local(path) => tokio::fs::copy(&path, &dest).await.map(drop).map_err(io),
                Source::Http(url) => self.download(&url, &dest).await,
            };
            discard_on_error(fetched, &dest).await?;
            if cache {
                self.copy_in(&key, &dest).await;
            }
        }
        use std::os::unix::fs::PermissionsExt;
        if u.executable == Some(true) {
            tokio::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(io)?;
            return Ok(());
        }
        let kind = archive_kind(&name.to_string_lossy());
        if let (Some(kind), true) = (kind, u.extract.unwrap_or(true)) {
            let (archive, dir) = (dest.clone(), sandbox.to_path_buf());
            tokio::task::spawn_blocking(move || extract(&archive, kind, &dir))
                .await
                .map_err(|e| FetchError::Archive {
                    archive: name.display().to_string(),
                    message: e.to_string(),
                })??;
        }
        Ok(())
    }

    async fn download(&self, url: &str, dest: &Path) -> Result<(), FetchError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let fail = |message: String| FetchError::Download {
            uri: url.into(),
            message,
        };
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let mut out = tokio::fs::File::create(dest)
            .await
            .map_err(|source| FetchError::Io {
                uri: url.into(),
                source,
            })?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fail(e.to_string()))?;
            out.write_all(&chunk)
                .await
                .map_err(|source| FetchError::Io {
                    uri: url.into(),
                    source,
                })?;
        }
        out.flush().await.map_err(|source| FetchError::Io {
            uri: url.into(),
            source,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            // Write the raw name so that hostile paths are not normalised away.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn extract_bytes(bytes: &[u8], dir: &Path) -> Result<(), FetchError> {
        extract_tar("t.tar", bytes, dir)
    }

    #[test]
    fn a_tar_is_extracted_with_its_modes() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_with(&[
            ("bin/", tar::EntryType::Directory, b"", None),
            ("bin/hi.sh", tar::EntryType::Regular, b"echo hi\n", None),
        ]);
        extract_bytes(&t, d.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let md = std::fs::metadata(d.path().join("bin/hi.sh")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn hostile_tar_entries_are_refused_and_nothing_lands_outside() {
        let outer = tempfile::tempdir().unwrap();
        let d = outer.path().join("sandbox");
        std::fs::create_dir(&d).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            tar_with(&[("../evil", tar::EntryType::Regular, b"x", None)]),
            tar_with(&[("a/../../evil", tar::EntryType::Regular, b"x", None)]),
            tar_with(&[("/tmp/evil-abs", tar::EntryType::Regular, b"x", None)]),
            tar_with(&[("ln", tar::EntryType::Symlink, b"", Some(".."))]),
            tar_with(&[("hard", tar::EntryType::Link, b"", Some("../evil"))]),
        ];
        for (i, t) in cases.iter().enumerate() {
            let e = extract_bytes(t, &d).unwrap_err();
            assert!(matches!(e, FetchError::Unsafe { .. }), "case {i}: {e}");
        }
        assert!(!outer.path().join("evil").exists());
        assert!(!Path::new("/tmp/evil-abs").exists());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_planted_in_the_sandbox_is_not_followed() {
        let outer = tempfile::tempdir().unwrap();
        let d = outer.path().join("sandbox");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::symlink(outer.path(), d.join("up")).unwrap();
        let t = tar_with(&[("up/evil", tar::EntryType::Regular, b"x", None)]);
        assert!(matches!(
            extract_bytes(&t, &d),
            Err(FetchError::Unsafe { .. })
        ));
        assert!(!outer.path().join("evil").exists());
    }

    #[test]
    fn zip_entries_are_extracted_and_escapes_refused() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let make = |name: &str| {
            let path = d.path().join(format!("{}.zip", name.len()));
            let f = std::fs::File::create(&path).unwrap();
            let mut z = zip::ZipWriter::new(f);
            let opts: zip::write::SimpleFileOptions =
                zip::write::SimpleFileOptions::default().unix_permissions(0o755);
            z.start_file(name, opts).unwrap();
            z.write_all(b"zipped\n").unwrap();
            z.finish().unwrap();
            path
        };
        let sandbox = d.path().join("sb");
        std::fs::create_dir(&sandbox).unwrap();
        extract(&make("dir/file.txt"), "zip", &sandbox).unwrap();
        assert_eq!(
            std::fs::read_to_string(sandbox.join("dir/file.txt")).unwrap(),
            "zipped\n"
        );
        let e = extract(&make("../../zip-evil"), "zip", &sandbox).unwrap_err();
        assert!(matches!(e, FetchError::Unsafe { .. }), "{e}");
        assert!(!d.path().join("zip-evil").exists());
    }

    #[tokio::test]
    async fn the_cache_keeps_to_its_size_evicting_the_least_recently_used() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let put = |name: &str, fill: u8, len: usize| {
            std::fs::write(src.join(name), vec![fill; len]).unwrap();
        };
        for name in ["a", "b", "c"] {
            put(name, b'1', 100);
        }
        put("big", b'1', 300);
        let cache_dir = d.path().join("cache");
        std::fs::create_dir(&cache_dir).unwrap();
        std::fs::write(cache_dir.join("left-from-before"), b"x").unwrap();
        let f = Fetcher::new(cache_dir.clone(), 250);
        assert!(!cache_dir.exists(), "emptied at start");
        let sandbox = d.path().join("sandbox");
        std::fs::create_dir(&sandbox).unwrap();
        let fetch = |name: &str| {
            let uri = CommandUri {
                value: src.join(name).display().to_string(),
                cache: Some(true),
                ..CommandUri::default()
            };
            let (f, sandbox, name) = (f.clone(), sandbox.clone(), name.to_string());
            async move {
                f.fetch_all(&[uri], &sandbox).await.unwrap();
                std::fs::read(sandbox.join(&name)).unwrap()[0]
            }
        };
        let cached = || std::fs::read_dir(&cache_dir).unwrap().count();

        assert_eq!(fetch("a").await, b'1');
        assert_eq!(fetch("b").await, b'1');
        assert_eq!((cached(), f.cache_usage()), (2, (2, 200)));
        // From the cache (the source changed since), and so the most recently used.
        for name in ["a", "b", "c"] {
            put(name, b'2', 100);
        }
        assert_eq!(fetch("a").await, b'1');
        // c needs room: b, the least recently used, goes.
        assert_eq!(fetch("c").await, b'2');
        assert_eq!((cached(), f.cache_usage()), (2, (2, 200)));
        assert_eq!(fetch("a").await, b'1', "a stayed");
        assert_eq!(fetch("c").await, b'2', "c is cached");
        assert_eq!(fetch("b").await, b'2', "b was evicted: fetched again");
        // Bigger than the whole cache: fetched, never cached, nothing evicted for it.
        assert_eq!(fetch("big").await, b'1');
        assert_eq!(std::fs::metadata(sandbox.join("big")).unwrap().len(), 300);
        assert_eq!(f.cache_usage(), (2, 200));
        assert_eq!(cached(), 2);

        // An entry gone from disk behind the fetcher's back is fetched from its source.
        for e in std::fs::read_dir(&cache_dir).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        put("a", b'3', 100);
        assert_eq!(fetch("a").await, b'3');
    }

    #[test]
    fn entries_in_use_are_never_evicted() {
        let mut b = Books::default();
        assert_eq!(b.reserve("a", 100, 250), Some(vec![]));
        assert_eq!(b.reserve("b", 100, 250), Some(vec![]));
        // a is still being copied in (and then out): only b may go.
        b.entries.get_mut("b").unwrap().users = 0;
        assert_eq!(b.reserve("c", 100, 250), Some(vec!["b".to_string()]));
        // Now a and c are in use: d cannot fit, and nothing is evicted for it.
        assert_eq!(b.reserve("d", 100, 250), None);
        assert_eq!((b.entries.len(), b.total), (2, 200));
        assert_eq!(b.reserve("a", 10, 250), None, "already there");
        assert!(!b.take("a"), "not ready: never copied out");
    }

    #[test]
    fn names_and_schemes_are_checked() {
        let u = |v: &str, out: Option<&str>| CommandUri {
            value: v.into(),
            output_file: out.map(String::from),
            ..CommandUri::default()
        };
        assert_eq!(
            file_name(&u("http://h/x/app%20one.tgz?sig=1", None)).unwrap(),
            PathBuf::from("app one.tgz")
        );
        assert!(file_name(&u("http://h/dir/", None)).is_err());
        assert!(file_name(&u("http://h/a", Some("../x"))).is_err());
        assert!(file_name(&u("http://h/a", Some("/etc/x"))).is_err());
        assert_eq!(
            file_name(&u("http://h/a", Some("sub/x"))).unwrap(),
            PathBuf::from("sub/x")
        );
        assert!(matches!(source("ftp://h/x"), Err(FetchError::Scheme(_))));
        assert!(matches!(source("relative/x"), Err(FetchError::Scheme(_))));
        assert!(matches!(source("file:///a/b"), Ok(Source::Local(_))));
    }
}
