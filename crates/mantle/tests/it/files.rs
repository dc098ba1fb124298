//! Sandbox files over HTTP, on the agent and proxied through the master by sandbox path:
//! browse, windowed reads with an empty read at end of file, downloads, and a corpus of paths
//! that try to leave the sandbox (none may return a byte from outside).

use crate::harness::{launch, sandbox_of, task, Cluster, Scheduler};
use serde_json::{json, Value};

#[tokio::test]
async fn sandboxes_are_browsable_through_agent_and_master_and_never_leak() {
    let cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "files-test"}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // The task writes a known stdout and plants a symlink to /etc in its own sandbox.
    let cmd = "ln -s /etc etc-link; ln -s /etc/passwd passwd-link; printf 'line-1\\nline-2\\n'";
    assert_eq!(
        s.call(launch(&offer, vec![task(&offer, "files", cmd, 0.1)]))
            .await
            .0,
        202
    );
    s.await_state("files", "TASK_FINISHED", 15).await;
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "files");
    let agent = format!("http://127.0.0.2:{}", cluster.agent_port);
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let r = client.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap().to_vec();
            (status, headers, body)
        }
    };
    let enc = |p: &str| {
        percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC).to_string()
    };

    for base in [&agent, &cluster.master] {
        // Browse lists the sandbox.
        let (code, _, body) = get(format!("{base}/files/browse?path={}", enc(&sandbox))).await;
        assert_eq!(code, 200, "{base}");
        let list: Value = serde_json::from_slice(&body).unwrap();
        let names: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(names.contains(&"stdout".to_string()), "{base}: {names:?}");
        // A window, then the end of the file.
        let stdout = enc(&format!("{sandbox}/stdout"));
        let (code, _, body) =
            get(format!("{base}/files/read?path={stdout}&offset=2&length=5")).await;
        assert_eq!(code, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, json!({"data": "ne-1\n", "offset": 2}), "{base}");
        let (_, _, body) = get(format!("{base}/files/read?path={stdout}&offset=-1")).await;
        let size = serde_json::from_slice::<Value>(&body).unwrap()["offset"]
            .as_u64()
            .unwrap();
        assert_eq!(size, 14);
        let (_, _, body) = get(format!("{base}/files/read?path={stdout}&offset={size}")).await;
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"data": "", "offset": 14})
        );
        // Download: the bytes as an attachment.
        let (code, headers, body) = get(format!("{base}/files/download?path={stdout}")).await;
        assert_eq!(code, 200);
        assert_eq!(body, b"line-1\nline-2\n");
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(
            headers["content-disposition"],
            "attachment; filename=\"stdout\""
        );

        // Paths that try to leave: refused, and never a byte of what is outside.
        let sandbox_root = sandbox.split("/slaves/").next().unwrap().to_string() + "/slaves";
        let agent_part = sandbox
            .split("/slaves/")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let corpus: Vec<String> = vec![
            "/etc/passwd".into(),
            format!("{sandbox}/../../../../../../../../etc/passwd"),
            format!("{sandbox}/etc-link/passwd"),
            format!("{sandbox}/passwd-link"),
            format!("{sandbox}/etc-link"),
            format!("{sandbox_root}/{agent_part}/../../../../../etc/passwd"),
            format!("{sandbox}/stdout\0/../../etc/passwd"),
            format!("{sandbox}/%2e%2e/%2e%2e/etc/passwd"),
            format!("{sandbox}/..%2f..%2f..%2fetc/passwd"),
            "../../../../etc/passwd".into(),
            "/proc/self/environ".into(),
        ];
        for op in ["read", "browse", "download"] {
            for bad in &corpus {
                let url = format!("{base}/files/{op}?path={}&offset=0", enc(bad));
                let (code, _, body) = get(url).await;
                let text = String::from_utf8_lossy(&body);
                assert!(
                    (400..500).contains(&code),
                    "{base} {op} {bad:?}: {code} {text}"
                );
                assert!(
                    !text.contains("root:"),
                    "{base} {op} {bad:?} leaked: {text}"
                );
                assert!(
                    !text.contains("passwd\""),
                    "{base} {op} {bad:?} listed: {text}"
                );
            }
        }
        // Raw (not re-encoded) climbing in the query string itself.
        let (code, _, body) = get(format!(
            "{base}/files/read?path=%2E%2E%2F%2E%2E%2Fetc%2Fpasswd&offset=0"
        ))
        .await;
        assert!((400..500).contains(&code), "{code}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"));
    }
    // The master answers paths that name no sandbox or an unknown agent with 404.
    let (code, _, _) = get(format!(
        "{}/files/read?path=/tmp/x&offset=0",
        cluster.master
    ))
    .await;
    assert_eq!(code, 404);
    let (code, _, body) = get(format!(
        "{}/files/read?path={}&offset=0",
        cluster.master,
        enc("/w/slaves/no-such-agent/frameworks/f/executors/e/runs/r/stdout")
    ))
    .await;
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("no-such-agent"));
    let (code, _, _) = get(format!("{}/files/read", cluster.master)).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn logs_rotate_by_size_and_finished_sandboxes_are_collected() {
    let cluster = Cluster::start(
        1,
        &[
            "--sandbox-log-max-size",
            "1000",
            "--sandbox-log-keep",
            "2",
            "--gc-delay",
            "2",
            "--disk-watch-interval",
            "0.5",
        ],
    );
    let mut s =
        Scheduler::subscribe(&cluster.master, json!({"user": "root", "name": "gc-test"})).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // 60 lines of 100 bytes, one write each, then a pause so the sandbox can be looked at.
    let cmd = "for i in $(seq 1 60); do printf '%099d\\n' $i; done; sleep 1";
    assert_eq!(
        s.call(launch(&offer, vec![task(&offer, "chatty", cmd, 0.1)]))
            .await
            .0,
        202
    );
    s.await_state("chatty", "TASK_RUNNING", 15).await;
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "chatty");
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let size = |f: &str| {
        std::fs::metadata(format!("{sandbox}/{f}"))
            .map(|m| m.len())
            .ok()
    };
    assert!(
        size("stdout").is_some_and(|n| n <= 1000),
        "{:?}",
        size("stdout")
    );
    assert!(
        size("stdout.1").is_some_and(|n| n > 0 && n <= 1000),
        "{:?}",
        size("stdout.1")
    );
    assert!(size("stdout.2").is_some(), "two old files are kept");
    assert!(size("stdout.3").is_none(), "no more than two are kept");
    // The newest lines are in the current file.
    let current = std::fs::read_to_string(format!("{sandbox}/stdout")).unwrap();
    assert!(current.lines().any(|l| l.ends_with("60")), "{current}");
    s.await_state("chatty", "TASK_FINISHED", 15).await;
    // Finished, and older than the 2 s delay: its sandbox goes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::path::Path::new(&sandbox).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the finished sandbox was not collected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
