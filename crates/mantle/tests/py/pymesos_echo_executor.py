"""Custom executor for pymesos_executor_test.py, built on pymesos's MesosExecutorDriver.

Started by the agent with the MESOS_* environment of the v1 executor API
(MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, ...).
On LAUNCH it reports TASK_RUNNING. Every framework message is answered with
b"echo:" + data; the message b"finish" additionally makes it report
TASK_FINISHED and stop a moment later. Framework message data is base64 on
the wire and pymesos passes it through untouched, so it is (de)coded here.

Note: when the driver stops or loses its connection (without MESOS_CHECKPOINT
or MESOS_LOCAL set), pymesos SIGKILLs its own process group (os.killpg(0)).
"""
import sys
import threading
import time

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


class EchoExecutor(Executor):
    def __init__(self):
        self.task_id = None

    def registered(self, driver, executor_info, framework_info, agent_info):
        print("echo executor registered on agent %s" % agent_info.get("id"), file=sys.stderr)

    def launchTask(self, driver, task):
        self.task_id = task["task_id"]
        driver.sendStatusUpdate({"task_id": self.task_id, "state": "TASK_RUNNING"})

    def frameworkMessage(self, driver, message):
        data = decode_data(message)
        driver.sendFrameworkMessage(encode_data(b"echo:" + data))
        if data == b"finish":
            driver.sendStatusUpdate({"task_id": self.task_id, "state": "TASK_FINISHED",
                                     "message": "finished on request"})
            # Give the agent time to forward (and the scheduler to ack) the update.
            threading.Thread(target=lambda: (time.sleep(1.0), driver.stop()),
                             daemon=True).start()

    def shutdown(self, driver):
        driver.stop()


if __name__ == "__main__":
    MesosExecutorDriver(EchoExecutor()).run()
