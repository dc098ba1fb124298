//! `mantle local` starts a cluster, a task launches on it through the v1 API, and SIGTERM
//! stops every process it started (checked in /proc: nothing runs from its work dir).

use crate::harness::{free_port, launch, processes_under, task, Scheduler, BIN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mantle_local_runs_a_task_and_stops_without_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let master_port = free_port("127.0.0.1");
    let agent_port = free_port("127.0.0.2");
    let marathon_port = free_port("127.0.0.1");
    let dns_port = free_port("127.0.0.1");
    let dns_http_port = free_port("127.0.0.1");
    let mut child = Command::new(BIN)
        .args([
            "local",
            "--agents",
            "2",
            "--master-port",
            &master_port.to_string(),
            "--agent-port",
            &agent_port.to_string(),
            "--marathon-port",
            &marathon_port.to_string(),
            "--dns-port",
            &dns_port.to_string(),
            "--dns-http-port",
            &dns_http_port.to_string(),
        ])
        .args([
            "--agent-resources",
            "cpus:1;mem:512;disk:100;ports:[31000-31010]",
            "--work-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // stdout is read as it comes, so the test can wait for the banner `mantle local` prints
    // once every process answered (a SIGTERM before it stops the start-up, printing nothing).
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let printed = printed.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                printed
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let master = format!("http://127.0.0.1:{master_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", master_port)).is_ok()
            && crate::harness::plain::blocking_get_json(&format!("{master}/master/slaves"))
                ["slaves"]
                .as_array()
                .is_some_and(|a| a.len() == 2);
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "local cluster did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The service scheduler is part of the local cluster and registered as a framework.
    let marathon = format!("http://127.0.0.1:{marathon_port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", marathon_port)).is_err() {
        assert!(Instant::now() < deadline, "marathon did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        crate::harness::plain::blocking_get(&format!("{marathon}/ping")).0,
        200
    );
    while !crate::harness::plain::blocking_get_json(&format!("{master}/master/frameworks"))
        ["frameworks"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["name"] == "marathon"))
    {
        assert!(
            Instant::now() < deadline,
            "marathon did not register with the master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The master reaches the scheduler for the web UI (mantle local passes --marathon-url).
    let (code, body) = crate::harness::plain::blocking_get(&format!("{master}/marathon/v2/info"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        crate::harness::plain::blocking_get(&format!("{master}/")).0,
        200
    );
    // The DNS server is part of the local cluster too.
    while std::net::TcpStream::connect(("127.0.0.1", dns_http_port)).is_err()
        || crate::harness::plain::blocking_get_json(&format!(
            "http://127.0.0.1:{dns_http_port}/v1/config"
        ))["Masters"]
            != serde_json::json!([format!("127.0.0.1:{master_port}")])
    {
        assert!(Instant::now() < deadline, "mantle dns did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut s = Scheduler::subscribe(
        &master,
        serde_json::json!({"user": "root", "name": "local-test"}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    assert_eq!(
        s.call(launch(&offer, vec![task(&offer, "long", "sleep 600", 0.1)]))
            .await
            .0,
        202
    );
    s.await_state("long", "TASK_RUNNING", 20).await;
    assert!(
        !processes_under(dir.path()).is_empty(),
        "the cluster runs from its work dir"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !printed.lock().unwrap().contains("Press Ctrl-C") {
        assert!(
            Instant::now() < deadline,
            "mantle local did not print its banner: {}",
            printed.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "mantle local did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    reader.join().unwrap();
    let out = printed.lock().unwrap().clone();
    assert!(
        out.contains(&format!("127.0.0.1:{master_port}")),
        "prints where things are: {out}"
    );
    assert!(
        out.contains(&format!("web UI     http://127.0.0.1:{master_port}/")),
        "prints the web UI's URL: {out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = processes_under(dir.path());
    assert!(left.is_empty(), "orphans: {left:?}");
}
