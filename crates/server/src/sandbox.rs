//! Sandbox upkeep: size-based rotation of `stdout`/`stderr` (the `mantle log-writer` process
//! that sits between an executor and its log file, so it outlives an agent restart like the
//! executor does), and garbage collection of finished sandboxes by age and disk headroom
//! (Mesos's `--gc_delay` and `--gc_disk_headroom`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Rotates `path` to `path.1`, `path.1` to `path.2`, ... dropping `path.<keep>`.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let numbered = |i: u32| PathBuf::from(format!("{}.{i}", path.display()));
    if keep == 0 {
        return std::fs::remove_file(path).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        });
    }
    let _ = std::fs::remove_file(numbered(keep));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(numbered(i), numbered(i + 1));
    }
    std::fs::rename(path, numbered(1))
}

/// The built-in executor's own stdout and stderr (and so its tasks', which inherit them) sent
/// through pipes to threads of the executor that write them rotated, as `write_rotating`:
/// two processes fewer per launch than a `mantle log-writer` for each stream. The agent asks
/// for it with `MANTLE_LOG_MAX_SIZE` and `MANTLE_LOG_KEEP`. Dropping it closes the
/// executor's ends and gives the writers up to 2 s to drain what the tasks wrote.
pub struct RotatedOutput {
    /// One per stream: says when its copy has ended.
    copies: Vec<std::sync::mpsc::Receiver<()>>,
}

/// A copy of one output pipe into its file, for a copier thread.
struct Copy {
    input: std::fs::File,
    path: std::path::PathBuf,
    max_size: u64,
    keep: u32,
    done: std::sync::mpsc::Sender<()>,
}

/// Copier threads waiting for their next copy: a standby executor's output is copied by the
/// same threads from one container to the next, instead of two new threads per container.
static IDLE_COPIERS: std::sync::Mutex<Vec<std::sync::mpsc::Sender<Copy>>> =
    std::sync::Mutex::new(Vec::new());

/// Runs `copy` on an idle copier thread, or on a new one.
fn start_copy(copy: Copy) -> std::io::Result<()> {
    let idle = IDLE_COPIERS.lock().ok().and_then(|mut v| v.pop());
    let copy = match idle {
        Some(copier) => match copier.send(copy) {
            Ok(()) => return Ok(()),
            Err(e) => e.0,
        },
        None => copy,
    };
    let (me, jobs) = std::sync::mpsc::channel::<Copy>();
    let _ = me.send(copy);
    std::thread::Builder::new()
        .name("log-copier".into())
        .spawn(move || {
            while let Ok(c) = jobs.recv() {
                let _ = write_rotating(c.input, &c.path, c.max_size, c.keep);
                // Idle again before saying so: the next run then finds this thread.
                match IDLE_COPIERS.lock() {
                    Ok(mut idle) => idle.push(me.clone()),
                    Err(_) => return,
                }
                let _ = c.done.send(());
            }
        })?;
    Ok(())
}

impl RotatedOutput {
    /// `None` when the agent did not ask for rotation (`MANTLE_LOG_MAX_SIZE`, as `var` reads
    /// the executor's settings).
    pub fn from_vars(
        sandbox: &Path,
        var: impl Fn(&str) -> Option<String>,
    ) -> std::io::Result<Option<RotatedOutput>> {
        use std::os::fd::AsRawFd;
        let Some(max_size) = var("MANTLE_LOG_MAX_SIZE")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|m| *m > 0)
        else {
            return Ok(None);
        };
        let keep = var("MANTLE_LOG_KEEP")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(5);
        let mut copies = Vec::new();
        for (fd, name) in [(1, "stdout"), (2, "stderr")] {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (done, ended) = std::sync::mpsc::channel();
            start_copy(Copy {
                input: std::fs::File::from(read),
                path: sandbox.join(name),
                max_size,
                keep,
                done,
            })?;
            copies.push(ended);
            // The copy on fd 1 or 2 is inheritable (dup2 clears close-on-exec); the original
            // end closes when `write` drops.
            nix::unistd::dup2(write.as_raw_fd(), fd)?;
        }
        Ok(Some(RotatedOutput { copies }))
    }
}

impl Drop for RotatedOutput {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            for fd in [1, 2] {
                let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
            }
        }
        // A copy ends when every copy of its pipe's write end is closed; a task's orphaned
        // child may keep one open, so do not wait for ever (its copier then stays with it).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        for ended in self.copies.drain(..) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = ended.recv_timeout(left);
        }
    }
}

/// Copies `input` to `path` until end of input, rotating the file before it would pass
/// `max_size` bytes (keeping `keep` old files). Data is split at the last line end that fits,
/// or anywhere when a line is longer than the room left.
pub fn write_rotating(
    mut input: impl Read,
    path: &Path,
    max_size: u64,
    keep: u32,
) -> std::io::Result<()> {
    let max_size = max_size.max(1);
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    };
    let mut out = open()?;
    let mut size = out.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let room = max_size.saturating_sub(size) as usize;
            if room == 0 {
                drop(out);
                rotate(path, keep)?;
                out = open()?;
                size = 0;
                continue;
            }
            let take = if data.len() <= room {
                data.len()
            } else {
                // Up to the last line end that fits; a fresh file takes what fits.
                match data[..room].iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None if size == 0 => room,
                    None => {
                        drop(out);
                        rotate(path, keep)?;
                        out = open()?;
                        size = 0;
                        continue;
                    }
                }
            };
            out.write_all(&data[..take])?;
            size += take as u64;
            data = &data[take..];
        }
    }
}

/// How old a finished sandbox may get before it is removed, given the disk's usage (0 to 1):
/// Mesos's `gc_delay * max(0, 1 - headroom - usage)`.
pub fn max_age(gc_delay: Duration, headroom: f64, usage: f64) -> Duration {
    let factor = (1.0 - headroom - usage).clamp(0.0, 1.0);
    gc_delay.mul_f64(if factor.is_finite() { factor } else { 0.0 })
}

/// The run directories (`.../executors/<id>/runs/<container>`) under `root`, with the time each
/// was last written to.
pub fn run_dirs(root: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut out = Vec::new();
    let list = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    for agent in list(root) {
        for fw in list(&agent.join("frameworks")) {
            for ex in list(&fw.join("executors")) {
                for run in list(&ex.join("runs")) {
                    // The newest of the directory and its logs: a task that still writes is
                    // never old.
                    let mtime = ["", "stdout", "stderr"]
                        .iter()
                        .filter_map(|f| {
                            let p = if f.is_empty() {
                                run.clone()
                            } else {
                                run.join(f)
                            };
                            std::fs::metadata(p).and_then(|m| m.modified()).ok()
                        })
                        .max()
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    out.push((run, mtime));
                }
            }
        }
    }
    out
}

/// Which of `dirs` to remove at `now`: those not `in_use` and older than `age`.
pub fn to_collect(
    now: SystemTime,
    dirs: &[(PathBuf, SystemTime)],
    in_use: &dyn Fn(&Path) -> bool,
    age: Duration,
) -> Vec<PathBuf> {
    dirs.iter()
        .filter(|(p, _)| !in_use(p))
        .filter(|(_, m)| now.duration_since(*m).unwrap_or(Duration::ZERO) > age)
        .map(|(p, _)| p.clone())
        .collect()
}

/// Drops the clean pages of the regular files under `dir` (at most `max_files` of them, not
/// following symlinks) from the page cache, as `POSIX_FADV_DONTNEED`; dirty pages stay.
/// Returns how many files it advised.
pub fn uncache(dir: &Path, max_files: usize) -> usize {
    use std::os::fd::AsRawFd;
    let mut advised = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if advised >= max_files {
                return advised;
            }
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                dirs.push(e.path());
            } else if t.is_file() {
                let Ok(f) = std::fs::File::open(e.path()) else {
                    continue;
                };
                let dropped = nix::fcntl::posix_fadvise(
                    f.as_raw_fd(),
                    0,
                    0,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                );
                if dropped.is_ok() {
                    advised += 1;
                }
            }
        }
    }
    advised
}

/// Fraction of the filesystem holding `path` that is used.
pub fn disk_usage(path: &Path) -> f64 {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) if s.blocks() > 0 => 1.0 - s.blocks_available() as f64 / s.blocks() as f64,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Bytes of `file` in the page cache, by util-linux's `fincore`.
    fn resident(file: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(file)
            .output()
            .expect("util-linux's fincore");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[test]
    fn uncache_drops_a_sandboxs_written_files_from_the_page_cache() {
        // A disk-backed directory: tmpfs pages cannot be dropped.
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(&base).unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let files = [dir.path().join("stdout"), dir.path().join("a/b/data")];
        for f in &files {
            let mut w = std::fs::File::create(f).unwrap();
            w.write_all(&vec![7u8; 1 << 20]).unwrap();
            w.sync_all().unwrap();
            assert!(
                resident(f) > 0,
                "{} was not cached to begin with",
                f.display()
            );
        }
        assert_eq!(uncache(dir.path(), 100), 2);
        for f in &files {
            assert_eq!(resident(f), 0, "{} is still cached", f.display());
        }
        // The cap holds.
        assert_eq!(uncache(dir.path(), 1), 1);
    }

    #[test]
    fn logs_rotate_by_size_and_keep_so_many() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("stdout");
        // 10 writes of 100 bytes into files of at most 250 bytes, keeping 2 old ones.
        let data: Vec<u8> = (0..10u8)
            .flat_map(|i| std::iter::repeat_n(b'a' + i, 100))
            .collect();
        struct Chunks(Vec<u8>);
        impl Read for Chunks {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(100).min(buf.len());
                let rest = self.0.split_off(n);
                buf[..n].copy_from_slice(&self.0);
                self.0 = rest;
                Ok(n)
            }
        }
        write_rotating(Chunks(data), &path, 250, 2).unwrap();
        let read = |p: &str| std::fs::read(d.path().join(p)).unwrap();
        // Writes without line ends are not split while the file has something: files of
        // two 100-byte writes each, the newest holding the last two.
        assert_eq!(read("stdout").len(), 200);
        assert!(read("stdout").starts_with(b"iiii") && read("stdout").ends_with(b"jjjj"));
        assert!(read("stdout.1").starts_with(b"gggg"));
        assert!(read("stdout.2").starts_with(b"eeee"));
        assert!(!d.path().join("stdout.3").exists());
        // With line ends, files end at one.
        let lines = tempfile::tempdir().unwrap();
        let p2 = lines.path().join("stdout");
        let text: Vec<u8> = (0..20)
            .flat_map(|i| format!("line-{i:03}\n").into_bytes())
            .collect();
        write_rotating(&text[..], &p2, 50, 10).unwrap();
        for f in ["stdout", "stdout.1", "stdout.2"] {
            let t = std::fs::read_to_string(lines.path().join(f)).unwrap();
            assert!(t.ends_with('\n') && t.len() <= 50, "{f}: {t:?}");
        }
    }

    #[test]
    fn sandboxes_age_out_faster_as_the_disk_fills() {
        let week = Duration::from_secs(7 * 86400);
        assert_eq!(max_age(week, 0.1, 0.0), week.mul_f64(0.9));
        assert_eq!(max_age(week, 0.1, 0.5), week.mul_f64(0.4));
        assert_eq!(max_age(week, 0.1, 0.95), Duration::ZERO);
        assert_eq!(max_age(week, 0.1, f64::NAN), Duration::ZERO);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let dirs = vec![
            (PathBuf::from("/old"), SystemTime::UNIX_EPOCH),
            (PathBuf::from("/busy"), SystemTime::UNIX_EPOCH),
            (PathBuf::from("/new"), now),
        ];
        let gone = to_collect(
            now,
            &dirs,
            &|p| p == Path::new("/busy"),
            Duration::from_secs(10),
        );
        assert_eq!(gone, vec![PathBuf::from("/old")]);
    }
}
