"""The launcher's exec chain, run in a gevent-patched child like the worker."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.server import ROOT

SCRIPT = """
from gevent import monkey; monkey.patch_all()
import json, os, sys
from app.processes.environment import Environment
from app.processes.launcher import LaunchSpec, launch
from app.processes.reaper import reaper
fields = json.loads(sys.argv[1])
spec = LaunchSpec(**{**fields, "env": Environment.of(fields["env"])})
watches = []
launched = launch(spec, lambda pid: watches.append(reaper.watch(pid)))
output = b""
from gevent.os import nb_read
while chunk := nb_read(launched.stdout, 65536):
    output += chunk
watches[0].wait_reaped()
status = watches[0].result.status
print(json.dumps({"output": output.decode(), "code": os.waitstatus_to_exitcode(status)}))
"""


def launch_in_child(**spec: object) -> dict:
    spec.setdefault("env", {"PATH": "/usr/bin:/bin"})
    spec.setdefault("cwd", None)
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(spec)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_resource_limits_are_set_before_exec() -> None:
    result = launch_in_child(
        argv=["sh", "-c", "ulimit -n; ulimit -t; ulimit -v"],
        executable="/bin/sh",
        rlimits={"nofile": 64, "cpu": 7, "as": 512 * 1024 * 1024},
    )
    assert result["output"].split() == ["64", "7", str(512 * 1024)]


def test_running_as_another_user() -> None:
    result = launch_in_child(argv=["sh", "-c", "id -u; id -g; id -G"], executable="/bin/sh", user="nobody")
    uid, gid, groups = result["output"].splitlines()
    assert uid == "65534"
    assert gid == str(__import__("pwd").getpwnam("nobody").pw_gid)
    assert "0" not in groups.split()  # root's groups are dropped


def test_without_wrappers_argv0_is_kept() -> None:
    result = launch_in_child(argv=["my-name", "-c", 'echo "$0"'], executable="/bin/sh")
    assert result["output"] == "my-name\n"


STOLEN_STATUS = """
from gevent import monkey; monkey.patch_all()
import json, os, time
import gevent
from gevent.monkey import get_original
from app.processes.environment import Environment
from app.processes.launcher import LaunchSpec, launch
from app.processes.reaper import reaper
watches = []
spec = LaunchSpec(argv=["/bin/true"], executable="/bin/true", env=Environment.of({}), cwd=None)
launched = launch(spec, lambda pid: watches.append(reaper.watch(pid)))
get_original("os", "waitpid")(launched.pid, 0)  # someone else reaps it, before the hub looks
reaped = watches[0].wait_reaped(5)
cpu = time.process_time()
gevent.sleep(0.3)
print(json.dumps({"reaped": reaped, "code": os.waitstatus_to_exitcode(watches[0].result.status),
                  "cpu": time.process_time() - cpu}))
"""


def test_a_status_reaped_elsewhere_is_reported_lost_without_spinning() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", STOLEN_STATUS], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["reaped"] and result["code"] == 255
    assert result["cpu"] < 0.1  # the pidfd stays readable: its watcher must be gone
    assert "reaped elsewhere" in completed.stderr
