"""Run N command tasks on a Mantle master through the third-party pymesos client.

Usage: pymesos_scheduler.py MASTER_ADDR N      (MASTER_ADDR is e.g. 127.0.0.1:5050)

Registers the framework "pymesos-test" with pymesos's MesosSchedulerDriver
(v1 scheduler HTTP API, JSON), launches N shell command tasks of cpus 0.1 /
mem 32 from whatever the offers hold, declines offers it does not need, and
waits until every task reached TASK_FINISHED (pymesos acknowledges updates
itself). On success prints one JSON line {"finished": N, "launched": N, ...}
and exits 0. Any other terminal state, a driver error or the 60 s timeout
prints a diagnostic and exits 1.
"""
import getpass
import json
import sys
import threading
import time

from pymesos import MesosSchedulerDriver, Scheduler

TIMEOUT = 60.0
TASK_CPUS = 0.1
TASK_MEM = 32.0
EPS = 1e-6
BAD_STATES = {
    "TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_KILLED", "TASK_DROPPED",
    "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE", "TASK_UNKNOWN",
}


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def offered(offer, name):
    return sum(r.get("scalar", {}).get("value", 0.0)
               for r in offer.get("resources", []) if r.get("name") == name)


class TestScheduler(Scheduler):
    def __init__(self, n):
        self.n = n
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.failure = None
        self.launched = []          # task ids, in launch order
        self.finished = set()
        self.states = {}            # task id -> last state seen
        self.agents = set()
        self.offers = 0
        self.declined = 0

    def fail(self, msg):
        with self.lock:
            if self.failure is None:
                self.failure = msg
        self.done.set()

    def registered(self, driver, framework_id, master_info):
        print("registered: framework %s, master %s" % (framework_id["value"], master_info),
              file=sys.stderr)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                self.offers += 1
                cpus, mem = offered(offer, "cpus"), offered(offer, "mem")
                tasks = []
                while (len(self.launched) < self.n
                       and cpus + EPS >= TASK_CPUS and mem + EPS >= TASK_MEM):
                    task_id = "pymesos-task-%d" % len(self.launched)
                    self.launched.append(task_id)
                    cpus -= TASK_CPUS
                    mem -= TASK_MEM
                    tasks.append({
                        "name": task_id,
                        "task_id": {"value": task_id},
                        "agent_id": offer["agent_id"],
                        "resources": [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM)],
                        "command": {"shell": True,
                                    "value": "echo hello-$MESOS_TASK_ID; sleep 0.2"},
                    })
                if not tasks:
                    self.declined += 1
                # Still short of tasks: ask to be offered these again soon.
                refuse = 1.0 if len(self.launched) < self.n else 30.0
            if tasks:
                driver.launchTasks(offer["id"], tasks)
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": refuse})

    def statusUpdate(self, driver, status):
        task_id = status["task_id"]["value"]
        state = status["state"]
        with self.lock:
            self.states[task_id] = state
            if "agent_id" in status:
                self.agents.add(status["agent_id"]["value"])
            if state == "TASK_FINISHED":
                self.finished.add(task_id)
                if len(self.finished) == self.n:
                    self.done.set()
        if state in BAD_STATES:
            self.fail("task %s reached %s: %s" % (
                task_id, state, status.get("message", status.get("reason", ""))))

    def error(self, driver, message):
        self.fail("driver error: %s" % message)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    master, n = sys.argv[1], int(sys.argv[2])
    sched = TestScheduler(n)
    framework = {"user": getpass.getuser(), "name": "pymesos-test"}
    driver = MesosSchedulerDriver(sched, framework, master)
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
        ok = sched.failure is None and len(sched.finished) == n
        result = {
            "finished": len(sched.finished), "launched": len(sched.launched),
            "offers": sched.offers, "declined": sched.declined,
            "agents": sorted(sched.agents),
        }
        if not ok:
            result["error"] = sched.failure or "timeout after %ss" % TIMEOUT
            result["missing"] = {t: sched.states.get(t, "NOT_LAUNCHED")
                                 for t in ["pymesos-task-%d" % i for i in range(n)]
                                 if t not in sched.finished}
    print(json.dumps(result, sort_keys=True))
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
