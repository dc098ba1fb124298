"""Drives Mantle's service scheduler with marathon-python 0.13.0, a third-party Marathon client.

Usage: marathon_client.py URL STEP [ARGS...]; each step asserts and prints JSON facts on stdout.
"""
import collections
import collections.abc
import json
import sys
import time

# marathon-python 0.13.0 still uses collections.Iterable, removed in Python 3.10.
collections.Iterable = collections.abc.Iterable

from marathon import MarathonClient, MarathonApp  # noqa: E402
from marathon.exceptions import NotFoundError, MarathonHttpError  # noqa: E402
from marathon.models.app import MarathonHealthCheck, PortDefinition, ReadinessCheck  # noqa: E402
from marathon.models.container import (  # noqa: E402
    MarathonContainer, MarathonContainerPortMapping, MarathonDockerContainer)
from marathon.models.group import MarathonGroup  # noqa: E402

APP = "/prod/web"
CMD = "exec python3 -m http.server $PORT0 --bind $HOST"


def wait(what, pred, timeout=60, step=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def healthy_tasks(c):
    app = c.get_app(APP)
    return [t for t in app.tasks if t.state == "TASK_RUNNING"
            and t.health_check_results and all(h.alive for h in t.health_check_results)]


def settled(c, n):
    app = c.get_app(APP)
    return (not app.deployments and app.tasks_running == n and app.tasks_healthy == n
            and len(app.tasks) == n)


def main():
    url, step, *args = sys.argv[1:]
    c = MarathonClient(url)
    facts = {}
    if step == "create":
        assert c.ping().strip() in (b'"pong"', b"pong"), c.ping()
        info = c.get_info()
        assert info.name == "marathon", info.name
        app = MarathonApp(cmd=CMD, instances=3, cpus=0.1, mem=32,
                          health_checks=[MarathonHealthCheck(protocol="HTTP", path="/", grace_period_seconds=10,
                                                             interval_seconds=1, timeout_seconds=2,
                                                             max_consecutive_failures=3)])
        created = c.create_app(APP, app)
        assert created, "create_app did not get a 201"
        assert created.id == APP
        assert len(created.deployments) == 1
        # A second create of the same id conflicts.
        try:
            c.create_app(APP, MarathonApp(cmd="sleep 1"))
            raise AssertionError("duplicate create accepted")
        except MarathonHttpError as e:
            assert e.status_code == 409, e.status_code
        # An invalid app is refused with 422 naming the field, and nothing is stored.
        try:
            c.create_app("/bad", MarathonApp(cmd="sleep 1", cpus=-1))
            raise AssertionError("invalid app accepted")
        except MarathonHttpError as e:
            assert e.status_code == 422, e.status_code
            assert any(d["path"] == "/cpus" for d in e.error_details), e.error_details
        assert all(a.id != "/bad" for a in c.list_apps())
        wait("3 healthy instances", lambda: settled(c, 3))
        assert c.list_deployments() == []
    elif step == "bridge":
        # A Docker app on bridge networking, in the client's own (Marathon 1.4) terms:
        # docker.network and docker.portMappings. ARGS: the image.
        docker = MarathonDockerContainer(image=args[0], network="BRIDGE", port_mappings=[
            MarathonContainerPortMapping(name="http", container_port=80, host_port=0)])
        app = MarathonApp(cmd="mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www",
                          instances=1, cpus=0.1, mem=64,
                          container=MarathonContainer(type="DOCKER", docker=docker),
                          health_checks=[MarathonHealthCheck(protocol="MESOS_HTTP", port_index=0,
                                                             path="/index.html", grace_period_seconds=60,
                                                             interval_seconds=1, max_consecutive_failures=3)])
        c.create_app("/bridged-py", app)
        wait("the bridged app is healthy", lambda: c.get_app("/bridged-py").tasks_healthy == 1)
        got = c.get_app("/bridged-py")
        facts = {"host_port": got.tasks[0].ports[0]}
        c.delete_app("/bridged-py")
    elif step == "snapshot":
        app = c.get_app(APP)
        facts = {"tasks": sorted(t.id for t in app.tasks), "instances": app.instances,
                 "versions": sorted(c.list_versions(APP)), "running": app.tasks_running}
    elif step == "wait":
        n = int(args[0])
        wait(f"{n} healthy instances", lambda: settled(c, n))
    elif step == "scale":
        before = {t.id for t in c.get_app(APP).tasks}
        c.scale_app(APP, instances=5)
        wait("5 healthy instances", lambda: settled(c, 5))
        after = {t.id for t in c.get_app(APP).tasks}
        assert before <= after, "scaling up restarted tasks"
    elif step == "kill":
        victim = c.list_tasks(APP)[0].id
        c.kill_task(APP, victim)
        wait("replacement", lambda: settled(c, 5) and victim not in {t.id for t in c.get_app(APP).tasks})
        facts = {"killed": victim}
    elif step == "update":
        # A rolling deployment: with minimumHealthCapacity 1 there is never a moment with fewer than
        # 5 healthy instances, and never more than 10 live ones (maximumOverCapacity 1).
        old_cfg = c.get_app(APP).version_info.last_config_change_at
        c.update_app(APP, MarathonApp(cmd=CMD + " # v2", instances=5))
        lowest, highest, seen_deploying = 99, 0, False
        deadline = time.time() + 90
        while time.time() < deadline:
            app = c.get_app(APP)
            healthy = sum(1 for t in app.tasks if t.health_check_results and all(h.alive for h in t.health_check_results))
            lowest = min(lowest, healthy)
            highest = max(highest, len(app.tasks))
            seen_deploying = seen_deploying or bool(app.deployments)
            if not app.deployments and app.version_info.last_config_change_at != old_cfg and settled(c, 5):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("rolling deployment did not finish")
        assert seen_deploying
        assert lowest >= 5, f"healthy dropped to {lowest}"
        assert highest <= 10, f"{highest} tasks at once"
        assert c.get_app(APP).cmd.endswith("# v2")
        facts = {"lowest_healthy": lowest, "highest_live": highest}
    elif step == "rollback":
        versions = sorted(c.list_versions(APP))
        first = versions[0]
        c.rollback_app(APP, first)
        wait("rolled back", lambda: c.get_app(APP).cmd == CMD and settled(c, 3), timeout=90)
    elif step == "delete":
        c.delete_app(APP)
        def gone():
            try:
                c.get_app(APP)
                return False
            except NotFoundError:
                return True
        wait("app deleted", gone)
        assert c.list_tasks() == []
    elif step == "groups":
        # A group with a dependency: web starts only after db runs; then scaleBy, a multi-app
        # PUT /v2/apps, a group update that drops db, and a group delete.
        def small(id, n, deps=None):
            return MarathonApp(id=id, cmd="sleep 1000", instances=n, cpus=0.05, mem=16,
                               dependencies=deps or [])

        def running(app_id):
            try:
                return c.get_app(app_id).tasks_running
            except NotFoundError:
                return -1

        def group_settled(want):
            return not c.list_deployments() and all(running(a) == n for a, n in want.items())

        r = c.create_group(MarathonGroup(id="/shop", apps=[small("web", 2, ["/shop/db"]), small("db", 1)]))
        assert r["deploymentId"] and r["version"], r
        wait("group running", lambda: group_settled({"/shop/web": 2, "/shop/db": 1}))
        db_started = max(t.started_at for t in c.get_app("/shop/db").tasks)
        web_staged = min(t.staged_at for t in c.get_app("/shop/web").tasks)
        assert web_staged >= db_started, f"web staged {web_staged} before db ran {db_started}"
        g = c.get_group("/shop")
        assert sorted(a.id for a in g.apps) == ["/shop/db", "/shop/web"], g.apps
        assert any(x.id == "/shop" for x in c.list_groups()), c.list_groups()
        try:
            c.create_group(MarathonGroup(id="/shop", apps=[small("other", 1)]))
            raise AssertionError("duplicate group accepted")
        except MarathonHttpError as e:
            assert e.status_code == 409, e.status_code
        c.scale_group("/shop", 2)
        wait("group scaled", lambda: group_settled({"/shop/web": 4, "/shop/db": 2}))
        r = c.update_apps([MarathonApp(id="/shop/web", instances=1), small("/solo", 1)])
        assert r["deploymentId"], r
        wait("apps updated", lambda: group_settled({"/shop/web": 1, "/solo": 1}))
        c.update_group("/shop", MarathonGroup(id="/shop", apps=[small("web", 1)]))
        wait("db dropped", lambda: group_settled({"/shop/web": 1, "/shop/db": -1}))
        c.delete_group("/shop")
        c.delete_app("/solo")
        wait("groups deleted", lambda: group_settled({"/shop/web": -1, "/solo": -1}))
        assert not any(t.app_id.startswith("/shop") for t in c.list_tasks()), c.list_tasks()
        facts = {"web_staged": str(web_staged), "db_started": str(db_started)}
    elif step == "readiness":
        # The task serves its sandbox; /ready answers 404 until the task creates the file
        # 3 s after starting, so the deployment must wait with ready=false, then finish.
        cmd = "(sleep 3; touch ready) & exec python3 -m http.server $PORT0 --bind $HOST"
        c.create_app("/gated", MarathonApp(
            cmd=cmd, instances=1, cpus=0.05, mem=32,
            port_definitions=[PortDefinition(port=0, name="http")],
            readiness_checks=[ReadinessCheck(port_name="http", path="/ready", interval_seconds=2,
                                             timeout_seconds=1)]))
        seen_not_ready = False
        deadline = time.time() + 60
        while time.time() < deadline:
            deps = c.list_deployments()
            mine = [d for d in deps if "/gated" in d.affected_apps]
            if not mine:
                break
            for a in mine[0].current_actions:
                for r in a.readiness_check_results or []:
                    if r["ready"] is False and r["taskId"].startswith("gated."):
                        seen_not_ready = True
            time.sleep(0.2)
        else:
            raise AssertionError("the gated deployment did not finish")
        assert seen_not_ready, "never saw the task running but not ready"
        app = c.get_app("/gated")
        assert app.tasks_running == 1, app.tasks_running
        assert app.readiness_checks[0].path == "/ready"
        c.delete_app("/gated")
        wait("gated deleted", lambda: all(a.id != "/gated" for a in c.list_apps()))
        facts = {"seen_not_ready": seen_not_ready}
    elif step == "mesos_health":
        # Health checks run by the executor next to the task. MESOS_HTTP: the task becomes
        # healthy. COMMAND: healthy until the task creates "sick" 4 s after starting, then
        # unhealthy, then killed after 2 failures in a row and replaced.
        http = MarathonApp(cmd="exec python3 -m http.server $PORT0 --bind $HOST", instances=1,
                           cpus=0.05, mem=32, health_checks=[MarathonHealthCheck(
                               protocol="MESOS_HTTP", path="/", grace_period_seconds=10,
                               interval_seconds=1, timeout_seconds=1, max_consecutive_failures=3,
                               delay_seconds=0)])
        cmd_app = MarathonApp(cmd="(sleep 4; touch sick) & exec sleep 1000", instances=1,
                              cpus=0.05, mem=16, backoff_seconds=0.1, health_checks=[MarathonHealthCheck(
                                  protocol="COMMAND", command="test ! -e sick",
                                  grace_period_seconds=2, interval_seconds=1, timeout_seconds=1,
                                  max_consecutive_failures=2, delay_seconds=0)])
        c.create_app("/mh/http", http)
        c.create_app("/mh/cmd", cmd_app)
        wait("MESOS_HTTP healthy", lambda: c.get_app("/mh/http").tasks_healthy == 1)
        wait("COMMAND healthy", lambda: c.get_app("/mh/cmd").tasks_healthy == 1)
        first = c.get_app("/mh/cmd").tasks[0].id
        wait("COMMAND unhealthy", lambda: c.get_app("/mh/cmd").tasks_unhealthy >= 1, step=0.1)
        wait("unhealthy task replaced", lambda: any(t.id != first and t.state == "TASK_RUNNING"
                                                    for t in c.get_app("/mh/cmd").tasks))
        failure = c.get_app("/mh/cmd").last_task_failure
        assert failure is not None and failure.task_id == first, failure
        assert failure.state == "TASK_KILLED", failure.state
        c.delete_group("/mh")
        wait("health apps deleted", lambda: not any(a.id.startswith("/mh/") for a in c.list_apps()))
        facts = {"replaced": first}
    else:
        raise SystemExit(f"unknown step {step}")
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
