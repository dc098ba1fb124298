//! The fetcher with real downloads: archives over HTTP from a server in the test, local
//! executables, the per-URI cache, and failures that end tasks with a reason while the agent
//! stays up.

use crate::harness::{launch, plain, sandbox_of, task, Cluster, Scheduler};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny HTTP/1.0 file server on 127.0.0.1; answers 404 for unknown paths and counts hits.
struct Files {
    url: String,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(files: BTreeMap<String, Vec<u8>>) -> Files {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(BTreeMap::new()));
    let counted = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let reply = match files.get(&path) {
                    Some(body) => {
                        let mut r =
                            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                                .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                };
                let _ = sock.write_all(&reply).await;
            });
        }
    });
    Files { url, hits, task }
}

/// A .tar.gz made by the system's `tar` from `dir`'s contents.
fn tgz_of(dir: &std::path::Path) -> Vec<u8> {
    let out = dir.with_extension("tgz");
    let status = std::process::Command::new("tar")
        .args(["czf"])
        .arg(&out)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

fn with_uris(mut t: Value, uris: Value) -> Value {
    t["command"]["uris"] = uris;
    t
}

#[tokio::test]
async fn uris_are_fetched_extracted_cached_and_failures_have_reasons() {
    let work = tempfile::tempdir().unwrap();
    // An archive with an executable script inside a directory.
    let app = work.path().join("app");
    std::fs::create_dir_all(app.join("bin")).unwrap();
    std::fs::write(
        app.join("bin/hello.sh"),
        "#!/bin/sh\necho hello-from-archive\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        app.join("bin/hello.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let tgz = tgz_of(&app);
    // A local script without its executable bit: `executable: true` sets it.
    let tool = work.path().join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho tool-ran\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();
    // An archive whose entry climbs out (built by hand: `tar` itself refuses to write one).
    let evil = {
        let mut h = [0u8; 512];
        h[..9].copy_from_slice(b"../escape");
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(b"00000000002");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut t = h.to_vec();
        let mut data = [0u8; 512];
        data[..2].copy_from_slice(b"x\n");
        t.extend_from_slice(&data);
        t.extend_from_slice(&[0u8; 1024]);
        t
    };
    let files = serve(BTreeMap::from([
        ("/app.tgz".to_string(), tgz),
        ("/evil.tar".to_string(), evil),
    ]))
    .await;

    let cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "fetcher-test"}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let app_uri = format!("{}/app.tgz", files.url);
    let good = with_uris(
        task(&offer, "fetched", "./bin/hello.sh && ./tool.sh", 0.1),
        json!([{"value": app_uri, "cache": true},
               {"value": format!("file://{}", tool.display()), "executable": true}]),
    );
    let missing = with_uris(
        task(&offer, "missing", "true", 0.1),
        json!([{"value": format!("{}/nope.tgz", files.url)}]),
    );
    let scheme = with_uris(
        task(&offer, "scheme", "true", 0.1),
        json!([{"value": "ftp://127.0.0.1/x.tgz"}]),
    );
    let hostile = with_uris(
        task(&offer, "hostile", "true", 0.1),
        json!([{"value": format!("{}/evil.tar", files.url)}]),
    );
    assert_eq!(
        s.call(launch(&offer, vec![good, missing, scheme, hostile]))
            .await
            .0,
        202
    );
    // The four tasks' terminal updates, in whatever order they come.
    let ended = s
        .await_ends(&["fetched", "missing", "scheme", "hostile"], 30)
        .await;
    assert_eq!(
        ended["fetched"]["state"], "TASK_FINISHED",
        "{:?}",
        ended["fetched"]
    );
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "fetched");
    let out = std::fs::read_to_string(format!("{sandbox}/stdout")).unwrap();
    assert!(out.contains("hello-from-archive"), "{out}");
    assert!(out.contains("tool-ran"), "{out}");
    assert!(std::path::Path::new(&sandbox).join("app.tgz").exists());

    for (id, needle) in [
        ("missing", "HTTP 404"),
        ("scheme", "unsupported URI 'ftp://127.0.0.1/x.tgz'"),
        ("hostile", "would land outside the sandbox"),
    ] {
        let st = &ended[id];
        assert_eq!(st["state"], "TASK_FAILED", "{id}: {st}");
        assert_eq!(st["reason"], "REASON_CONTAINER_LAUNCH_FAILED", "{id}: {st}");
        assert_eq!(st["source"], "SOURCE_AGENT", "{id}: {st}");
        let m = st["message"].as_str().unwrap();
        assert!(m.contains("Failed to fetch all URIs"), "{id}: {m}");
        assert!(m.contains(needle), "{id}: {m}");
    }
    let hostile_sandbox = sandbox_of(&cluster, "127.0.0.2", "hostile");
    let above = std::path::Path::new(&hostile_sandbox).parent().unwrap();
    assert!(
        !above.join("escape").exists(),
        "an entry escaped the sandbox"
    );

    // The cached archive is used again without another download, even with the server gone.
    assert_eq!(files.hits.lock().unwrap().get("/app.tgz"), Some(&1));
    files.task.abort();
    let offer = loop {
        let o = s.next("OFFERS", 15).await["offers"]["offers"][0].clone();
        if o["resources"].as_array().is_some() {
            break o;
        }
    };
    let again = with_uris(
        task(&offer, "cached", "./bin/hello.sh", 0.1),
        json!([{"value": app_uri, "cache": true}]),
    );
    assert_eq!(s.call(launch(&offer, vec![again])).await.0, 202);
    s.await_state("cached", "TASK_FINISHED", 20).await;
    // The agent stayed up throughout.
    let state = plain::blocking_get_json(&format!("http://127.0.0.2:{}/state", cluster.agent_port));
    assert!(state["id"].is_string(), "{state}");
}
