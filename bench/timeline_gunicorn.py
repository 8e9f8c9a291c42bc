"""gunicorn.conf.py with the timeline probes (bench/timeline.py) in the worker.

Run from the procwire tree under test, whose ``gunicorn.conf.py`` it reads;
the probes are loaded by path from this checkout, so that a tree exported
by ``--procwire-rev`` is measured with today's probes.
``BENCH_TIMELINE_FILE`` names the file the worker writes its events to
when it exits; with ``BENCH_TIMELINE_CLUSTER`` set, the cluster probes
instead, and each worker writes ``<file>.<its pid>``.
"""

import importlib.util
import os
import sys
from pathlib import Path

exec(compile(Path("gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"))

_spec = importlib.util.spec_from_file_location("procwire_bench_timeline", Path(__file__).with_name("timeline.py"))
assert _spec is not None and _spec.loader is not None
timeline = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = timeline  # dataclasses look their module up
_spec.loader.exec_module(timeline)

_post_worker_init = post_worker_init  # noqa: F821 (defined by gunicorn.conf.py)
_worker_exit = worker_exit  # noqa: F821
_missing: list[str] = []


def post_worker_init(worker):
    _post_worker_init(worker)
    if os.environ.get("BENCH_TIMELINE_CLUSTER"):
        _missing.extend(timeline.install_cluster())
    else:
        _missing.extend(timeline.install())


def worker_exit(server, worker):
    path = os.environ["BENCH_TIMELINE_FILE"]
    if os.environ.get("BENCH_TIMELINE_CLUSTER"):  # several workers: a file each
        path = f"{path}.{os.getpid()}"
    timeline.dump(path, _missing)
    _worker_exit(server, worker)
