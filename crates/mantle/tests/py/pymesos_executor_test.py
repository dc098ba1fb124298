"""Framework messages through a custom pymesos executor on a Mantle cluster.

Usage: pymesos_executor_test.py MASTER_ADDR      (MASTER_ADDR is e.g. 127.0.0.1:5050)

A pymesos MesosSchedulerDriver launches one task with a custom ExecutorInfo
that runs pymesos_echo_executor.py (with this interpreter). On TASK_RUNNING it
sends the framework message b"ping"; on receiving b"echo:ping" it sends
b"finish"; the executor then reports TASK_FINISHED. On success prints one JSON
line {"echo": "echo:ping", "state": "TASK_FINISHED"} and exits 0; on any other
terminal state, a driver error or the 60 s timeout it prints why and exits 1.
"""
import getpass
import json
import os
import shlex
import sys
import threading
import time

from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data

TIMEOUT = 60.0
EXECUTOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               "pymesos_echo_executor.py")
EXECUTOR_ID = {"value": "pymesos-echo-executor"}
TASK_ID = {"value": "pymesos-echo-task"}


def resources():
    return [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32.0}}]


def offered(offer, name):
    return sum(r.get("scalar", {}).get("value", 0.0)
               for r in offer.get("resources", []) if r.get("name") == name)


class EchoScheduler(Scheduler):
    def __init__(self):
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.launched = False
        self.pinged = False
        self.echo = None
        self.state = None
        self.failure = None

    def fail(self, msg):
        with self.lock:
            if self.failure is None:
                self.failure = msg
        self.done.set()

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                # Executor and task each need cpus 0.1 / mem 32.
                use = (not self.launched and offered(offer, "cpus") >= 0.2 - 1e-6
                       and offered(offer, "mem") >= 64.0 - 1e-6)
                self.launched = self.launched or use
            if not use:
                driver.declineOffer(offer["id"], {"refuse_seconds": 30.0})
                continue
            command = "%s %s" % (shlex.quote(sys.executable), shlex.quote(EXECUTOR_SCRIPT))
            task = {
                "name": "pymesos-echo",
                "task_id": TASK_ID,
                "agent_id": offer["agent_id"],
                "resources": resources(),
                "executor": {
                    "executor_id": EXECUTOR_ID,
                    "name": "pymesos echo executor",
                    "command": {"value": command},
                    "resources": resources(),
                },
            }
            driver.launchTasks(offer["id"], [task])

    def statusUpdate(self, driver, status):
        state = status["state"]
        with self.lock:
            if self.state != "TASK_FINISHED":  # ignore late duplicates
                self.state = state
            ping = state == "TASK_RUNNING" and not self.pinged
            self.pinged = self.pinged or ping
        if ping:
            driver.sendFrameworkMessage(status.get("executor_id", EXECUTOR_ID),
                                        status["agent_id"], encode_data(b"ping"))
        elif state == "TASK_FINISHED":
            self.done.set()
        elif state not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            self.fail("task reached %s: %s" % (state, status.get("message", "")))

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        data = decode_data(message)
        print("framework message from %s: %r" % (executor_id["value"], data), file=sys.stderr)
        if data == b"echo:ping":
            with self.lock:
                self.echo = data.decode()
            driver.sendFrameworkMessage(executor_id, agent_id, encode_data(b"finish"))

    def error(self, driver, message):
        self.fail("driver error: %s" % message)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sched = EchoScheduler()
    framework = {"user": getpass.getuser(), "name": "pymesos-executor-test"}
    driver = MesosSchedulerDriver(sched, framework, sys.argv[1])
    deadline = time.time() + TIMEOUT
    try:
        driver.start()
        # Short waits: pymesos reports an aborted I/O thread via interrupt_main().
        while not sched.done.wait(0.2) and time.time() < deadline:
            pass
    except BaseException as e:  # KeyboardInterrupt carrying the driver's failure
        sched.fail("pymesos driver aborted: %r" % (e,))
    finally:
        driver.stop()
        stopper = threading.Thread(target=driver.join, daemon=True)
        stopper.start()
        stopper.join(15)

    with sched.lock:
        result = {"echo": sched.echo, "state": sched.state}
        ok = (sched.failure is None and sched.echo == "echo:ping"
              and sched.state == "TASK_FINISHED")
        if not ok:
            result["error"] = sched.failure or "timeout after %ss (launched=%s, pinged=%s)" % (
                TIMEOUT, sched.launched, sched.pinged)
    print(json.dumps(result, sort_keys=True))
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
