"""Start-up of a Python job's process: ``python -m balsam_mq.launcher.python_runner SPEC``.

Every ``run()`` job that does not run in a warm worker (MPI ranks, jobs on other nodes,
``warm_pool: false``) starts an interpreter that loads the app's module and class; this
prints how long that process takes from start to exit for a one-line ``run()``, over
``--runs`` runs (min / median / max), and which libraries it loaded.

    python bench/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP_MODULE = """
from balsam_mq import ApplicationDefinition


class Add(ApplicationDefinition):
    site = "bench"

    def run(self, x, y):
        return x + y
"""

REPORT = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps({
    "modules": len(sys.modules),
    "aio_pika": "aio_pika" in sys.modules,
    "pymongo": "pymongo" in sys.modules,
}), file=sys.stderr))
import runpy
sys.argv = ["python_runner", sys.argv[1]]
runpy.run_module("balsam_mq.launcher.python_runner", run_name="__main__")
"""


def write_spec(tmp: Path) -> Path:
    """A spec as the launcher writes it for one ``Add(x=1, y=2)`` job."""
    (tmp / "benchapps.py").write_text(APP_MODULE)
    sys.path.insert(0, str(tmp))
    from benchapps import Add  # type: ignore[import-not-found]

    from balsam_mq.domain import Job
    from balsam_mq.domain.serialization import serialize_app, serialize_parameters

    job = Job(id=1, app_id=1, site_id=1, workdir="w")
    spec = {
        "job_id": 1,
        "app_id": 1,
        "app_version": "2026-01-01T00:00:00",
        "app_name": "Add",
        "serialized_class": serialize_app(Add, what="Add"),
        "parameters": serialize_parameters({"x": 1, "y": 2}, what="parameters"),
        "defaults": {},
        "job": job.model_dump(mode="json"),
        "result_file": str(tmp / "result.json"),
    }
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        spec = write_spec(tmp)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])}
        times, report = [], {}
        for _ in range(runs):
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", REPORT, str(spec)],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(time.perf_counter() - t0)
            report = json.loads(done.stderr.strip().splitlines()[-1])
            assert json.loads((tmp / "result.json").read_text())["result"], done.stderr
        ms = sorted(t * 1000 for t in times)
        print(f"python runner, one add() job, {runs} runs: start to exit (ms)")
        print(f"  {ms[0]:.0f} / {statistics.median(ms):.0f} / {ms[-1]:.0f}  (min / median / max)")
        print(
            f"  modules loaded: {report['modules']}; aio_pika: {report['aio_pika']}; "
            f"pymongo: {report['pymongo']}"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    main(p.parse_args().runs)
