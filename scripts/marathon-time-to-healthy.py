#!/usr/bin/env python3
"""Time from POST /v2/apps (N instances, HTTP health check) to all N healthy, against a running
service scheduler (e.g. `mantle local`). Standard library only.

    scripts/marathon-time-to-healthy.py [--url http://127.0.0.1:8080] [--instances 10] [--runs 3]
"""
import argparse
import json
import statistics
import time
import urllib.request


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--instances", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    times = []
    for run in range(a.runs):
        app_id = f"/bench/web{run}"
        app = {"id": app_id, "instances": a.instances, "cpus": 0.01, "mem": 16,
               "cmd": "exec python3 -m http.server $PORT0 --bind $HOST",
               "healthChecks": [{"protocol": "HTTP", "path": "/", "intervalSeconds": 1,
                                 "timeoutSeconds": 1, "gracePeriodSeconds": 30}]}
        start = time.monotonic()
        status, _ = call("POST", f"{a.url}/v2/apps", app)
        assert status == 201, status
        while True:
            _, body = call("GET", f"{a.url}/v2/apps{app_id}")
            if body["app"]["tasksHealthy"] == a.instances:
                break
            if time.monotonic() - start > 120:
                raise SystemExit(f"not healthy after 120 s: {body['app']['tasksHealthy']}")
            time.sleep(0.05)
        times.append(time.monotonic() - start)
        call("DELETE", f"{a.url}/v2/apps{app_id}")
        time.sleep(2)
    print(f"POST /v2/apps ({a.instances} instances) to all healthy: "
          f"median {statistics.median(times):.2f} s, runs {', '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
