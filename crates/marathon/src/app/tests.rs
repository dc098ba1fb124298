use super::*;
use serde_json::{json, Value};

const V: &str = "2024-01-01T00:00:00.000Z";

#[test]
fn defaults_follow_marathon() {
    let a = parse(&json!({"id": "web", "cmd": "sleep 10"}), "/", V).expect("valid");
    assert_eq!(a.id, "/web");
    assert_eq!(a.instances, 1);
    assert_eq!(a.cpus, 1.0);
    assert_eq!(a.mem, 128.0);
    assert_eq!(a.backoff_factor, 1.15);
    assert_eq!(a.upgrade_strategy.minimum_health_capacity, 1.0);
    assert_eq!(a.upgrade_strategy.maximum_over_capacity, 1.0);
    assert_eq!(a.port_definitions.len(), 1, "one port by default");
    assert_eq!(a.kill_selection, "YOUNGEST_FIRST");
    let out = a.to_json();
    assert_eq!(out["id"], "/web");
    assert_eq!(out["versionInfo"]["lastConfigChangeAt"], V);
    assert!(
        out.get("args").is_none(),
        "absent optional fields are not emitted"
    );
}

#[test]
fn every_bad_field_is_named() {
    let body = json!({
        "id": "Bad_Id", "cmd": "x", "cpus": -1, "mem": "lots", "instances": -2,
        "constraints": [["hostname", "SOMETIMES"], ["rack", "LIKE", "("], "nope"],
        "upgradeStrategy": {"minimumHealthCapacity": 2},
        "healthChecks": [{"protocol": "SMTP"}],
    });
    let errs = parse(&body, "/", V).expect_err("invalid");
    let paths: Vec<&str> = errs.iter().map(|v| v.path.as_str()).collect();
    for p in [
        "/id",
        "/cpus",
        "/mem",
        "/instances",
        "/constraints/0",
        "/constraints/1",
        "/constraints/2",
        "/upgradeStrategy/minimumHealthCapacity",
        "/healthChecks/0/protocol",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    let body = violations_body(&errs);
    assert_eq!(body["message"], "Object is not valid");
    assert!(body["details"][0]["errors"][0].is_string());
}

#[test]
fn cmd_args_and_container_rules() {
    assert!(parse(&json!({"id": "a"}), "/", V).is_err());
    assert!(parse(&json!({"id": "a", "cmd": "x", "args": ["y"]}), "/", V).is_err());
    assert!(parse(&json!({"id": "a", "args": ["sleep", "1"]}), "/", V).is_ok());
    let d = parse(
        &json!({"id": "a", "container": {"type": "DOCKER", "docker": {"image": "nginx"}}}),
        "/",
        V,
    )
    .expect("docker app");
    assert_eq!(
        d.container
            .and_then(|c| c.docker)
            .map(|d| d.image)
            .as_deref(),
        Some("nginx")
    );
    assert!(parse(&json!({"id": "a", "container": {"type": "DOCKER"}}), "/", V).is_err());
}

#[test]
fn scale_is_not_a_config_change() {
    let a = parse(&json!({"id": "a", "cmd": "x"}), "/", V).expect("valid");
    let mut b = a.clone();
    b.instances = 7;
    b.version = "other".into();
    assert!(a.same_config(&b));
    b.cmd = Some("y".into());
    assert!(!a.same_config(&b));
}

#[test]
fn non_objects_and_odd_values_never_panic() {
    for body in [json!(null), json!([]), json!("x"), json!(1)] {
        assert!(parse(&body, "/", V).is_err());
    }
    let weird = json!({"id": "a", "cmd": "x", "cpus": 1e308, "instances": 1.5, "ports": [70000],
                       "env": {"A": [1]}, "labels": 3, "portDefinitions": [{"port": -1}]});
    assert!(parse(&weird, "/", V).is_err());
}

/// Asserts that `body` is refused with a violation at `path`.
fn assert_refused_at(body: &Value, path: &str) {
    let errs = parse(body, "/", V).expect_err("invalid");
    assert!(
        errs.iter().any(|v| v.path == path),
        "{body}: no violation at {path}: {errs:?}"
    );
}

#[test]
fn bridge_networking_takes_its_ports_from_the_port_mappings() {
    let a = parse(
        &json!({"id": "web", "cmd": "x", "networks": [{"mode": "container/bridge"}],
            "container": {"type": "DOCKER", "docker": {"image": "nginx"},
                "portMappings": [{"containerPort": 80, "name": "http"},
                                 {"containerPort": 53, "hostPort": 31053, "protocol": "udp,tcp"}]}}),
        "/",
        V,
    )
    .expect("valid");
    assert!(a.port_definitions.is_empty(), "no default port definition");
    assert_eq!(a.network(), Network::Bridge);
    let specs = a.port_specs();
    assert_eq!(specs.len(), 2);
    assert_eq!(
        (
            specs[0].requested,
            specs[0].host_port,
            specs[0].name.as_deref()
        ),
        (80, None, Some("http"))
    );
    assert_eq!(specs[1].host_port, Some(31053));
    assert_eq!(specs[1].protocols, ["udp", "tcp"]);
    // Container networking: only mappings with a host port need one.
    let user = parse(
        &json!({"id": "db", "cmd": "x", "networks": [{"mode": "container", "name": "backend"}],
            "container": {"type": "DOCKER", "docker": {"image": "pg"},
                "portMappings": [{"containerPort": 5432}, {"containerPort": 9187, "hostPort": 0}]}}),
        "/",
        V,
    )
    .expect("valid");
    assert_eq!(user.network(), Network::Container(Some("backend".into())));
    // Every mapping gets a host port (any, when none is given), so indexes line up.
    assert_eq!(user.port_count(), 2);
    for (body, path) in [
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container"}]}),
            "/networks/0/name",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container/bridge"}], "portDefinitions": [{"port": 0}]}),
            "/portDefinitions",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "docker": {"image": "x"}, "portMappings": [{"containerPort": 70000}]}}),
            "/container/portMappings/0/containerPort",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "docker": {"image": "x"}, "portMappings": [{"containerPort": 80, "protocol": "icmp"}]}}),
            "/container/portMappings/0/protocol",
        ),
    ] {
        assert_refused_at(&body, path);
    }
}

#[test]
fn container_networking_needs_a_container_and_its_mappings_are_unique() {
    // A `mesos` container may join a network (the agent's CNI isolator attaches it).
    for networks in [
        json!([{"mode": "container", "name": "isolated"}]),
        json!([{"mode": "container/bridge"}]),
    ] {
        let body = json!({"id": "a", "cmd": "x", "networks": networks,
            "container": {"type": "MESOS", "portMappings": [{"containerPort": 80}]}});
        assert!(parse(&body, "/", V).is_ok(), "{body}");
    }
    // A MESOS container may join several container networks.
    let body = json!({"id": "a", "cmd": "x",
        "networks": [{"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}],
        "container": {"type": "MESOS", "portMappings": [
            {"containerPort": 80, "hostPort": 31000, "networkNames": ["b"]}, {"containerPort": 81}]}});
    assert!(parse(&body, "/", V).is_ok(), "{body}");
    // Without a container it is a MESOS one with one port mapping, as Marathon normalizes it.
    let a = parse(
        &json!({"id": "a", "cmd": "x", "networks": [{"mode": "container", "name": "isolated"}]}),
        "/",
        V,
    )
    .expect("valid");
    let c = a.container.expect("a container");
    assert_eq!(c.kind, "MESOS");
    assert_eq!(
        c.port_mappings,
        [json!({"containerPort": 0, "name": "default"})]
    );
    for (body, path) in [
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}],
                "container": {"type": "DOCKER", "docker": {"image": "x"}}}),
            "/networks/1",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container", "name": "a"}, {"mode": "host"}],
                "container": {"type": "MESOS"}}),
            "/networks/1",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container", "name": "a"}],
                "container": {"type": "MESOS", "portMappings": [{"containerPort": 80, "networkNames": ["b"]}]}}),
            "/container/portMappings/0/networkNames",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}],
                "container": {"type": "MESOS", "portMappings": [{"containerPort": 80, "hostPort": 31000}]}}),
            "/container/portMappings/0/networkNames",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container", "name": "a"}],
                "container": {"type": "MESOS", "portMappings": [{"containerPort": 80, "networkNames": "a"}]}}),
            "/container/portMappings/0/networkNames",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "docker": {"image": "x"},
                    "portMappings": [{"containerPort": 80, "hostPort": 31000}, {"containerPort": 81, "hostPort": 31000}]}}),
            "/container/portMappings/1/hostPort",
        ),
        (
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "docker": {"image": "x"},
                    "portMappings": [{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}]}}),
            "/container/portMappings/1/name",
        ),
    ] {
        assert_refused_at(&body, path);
    }
}

#[test]
fn marathon_1_4_networking_fields_are_migrated() {
    let a = parse(
        &json!({"id": "web", "cmd": "x",
            "container": {"type": "DOCKER", "docker": {"image": "nginx", "network": "BRIDGE",
                "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}]}}}),
        "/",
        V,
    )
    .expect("valid");
    assert_eq!(a.network(), Network::Bridge);
    assert_eq!(a.port_count(), 1);
    assert!(a.port_definitions.is_empty());
    let out = a.to_json();
    assert_eq!(out["networks"], json!([{"mode": "container/bridge"}]));
    assert_eq!(out["container"]["portMappings"][0]["containerPort"], 80);
    assert!(out["container"]["docker"].get("network").is_none(), "{out}");
    assert!(
        out["container"]["docker"].get("portMappings").is_none(),
        "{out}"
    );
    let user = parse(
        &json!({"id": "db", "cmd": "x", "ipAddress": {"networkName": "backend"},
            "container": {"type": "DOCKER", "docker": {"image": "pg", "network": "USER"}}}),
        "/",
        V,
    )
    .expect("valid");
    assert_eq!(user.network(), Network::Container(Some("backend".into())));
    let host = parse(
        &json!({"id": "h", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "x", "network": "HOST"}}}),
        "/",
        V,
    )
    .expect("valid");
    assert_eq!(host.network(), Network::Host);
    assert_eq!(host.port_count(), 1, "the default port definition");
}

#[test]
fn marathon_1_4_ip_per_task_becomes_a_container_network() {
    let a = parse(
        &json!({"id": "a", "cmd": "x", "ipAddress": {"networkName": "isolated",
            "labels": {"tier": "web"},
            "discovery": {"ports": [{"number": 8080, "name": "http", "protocol": "tcp"}]}}}),
        "/",
        V,
    )
    .expect("valid");
    assert_eq!(
        a.networks,
        [json!({"mode": "container", "name": "isolated", "labels": {"tier": "web"}})]
    );
    let c = a.container.expect("a MESOS container");
    assert_eq!(c.kind, "MESOS");
    assert_eq!(
        c.port_mappings,
        [json!({"containerPort": 8080, "name": "http", "protocol": "tcp"})]
    );
    // Without a network name the network is refused at its name, as any unnamed one.
    let errs =
        parse(&json!({"id": "a", "cmd": "x", "ipAddress": {}}), "/", V).expect_err("unnamed");
    assert!(
        errs.iter().any(|v| v.path == "/networks/0/name"),
        "{errs:?}"
    );
    // Given networks win.
    let a = parse(
        &json!({"id": "a", "cmd": "x", "ipAddress": {"networkName": "isolated"},
            "networks": [{"mode": "host"}]}),
        "/",
        V,
    )
    .expect("valid");
    assert_eq!(a.networks, [json!({"mode": "host"})]);
}
