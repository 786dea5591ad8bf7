"""Multi-node serial mode, node side: one MPI rank per node runs the jobs the pilot sends it.

Started by the pilot as ``mpiexec -n NODES -ppn 1 python -m balsam_mq.launcher.serial_worker``.
Rank 0 is the hub: it reads the pilot's commands (JSON lines) on stdin, passes each to
the rank of its node over mpi4py, and writes the ranks' reports to stdout as lines
starting with ``@@balsam``. Every rank runs its jobs as local bash processes (in their
own process groups) and polls them. End of stdin (the pilot gone) or an ``exit``
command stops every rank, terminating the jobs still running.

Commands: ``{"op": "run", "node": i, "spec": {...LaunchSpec...}}``,
``{"op": "kill", "node": i, "job_id": n, "grace": s}``, ``{"op": "exit"}``.
Reports: ``{"op": "hello", "nodes": [{"hostname", "cores", "gpus"}...]}``,
``{"op": "done", "job_id": n, "rc": int | null, "error": str?}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from balsam_mq.launcher.runs import LaunchSpec
from balsam_mq.orphans import die_with_parent

PREFIX = "@@balsam "
# the workers' own MPI launch must not leak into jobs (a job would think it is rank N)
MPI_VARIABLES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCAL", "PALS_", "MPIR_")
CMD, REPORT = 1, 2
POLL_S = 0.01


class LocalJobs:
    """This node's running jobs."""

    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.kill_at: dict[int, float] = {}

    def start(self, spec: LaunchSpec) -> dict[str, Any] | None:
        try:
            os.makedirs(spec.cwd, exist_ok=True)
            with open(spec.output_path, "ab") as out:
                self.procs[spec.job_id] = subprocess.Popen(
                    ["bash", "-c", spec.script],
                    cwd=spec.cwd,
                    env={**job_base_env(), **spec.env},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
        except OSError as exc:
            return {"op": "done", "job_id": spec.job_id, "rc": None, "error": repr(exc)}
        return None

    def kill(self, job_id: int, grace: float) -> None:
        proc = self.procs.get(job_id)
        if proc is None or job_id in self.kill_at:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        self.kill_at[job_id] = time.monotonic() + grace

    def poll(self) -> list[dict[str, Any]]:
        done = []
        now = time.monotonic()
        for job_id, proc in list(self.procs.items()):
            rc = proc.poll()
            if rc is None:
                if self.kill_at.get(job_id, now + 1) <= now:
                    _signal_group(proc.pid, signal.SIGKILL)
                continue
            _signal_group(proc.pid, signal.SIGKILL)  # leftovers of the job's group
            del self.procs[job_id]
            self.kill_at.pop(job_id, None)
            done.append({"op": "done", "job_id": job_id, "rc": rc})
        return done

    def stop_all(self, grace: float = 2.0) -> None:
        for job_id in list(self.procs):
            self.kill(job_id, grace)
        deadline = time.monotonic() + grace + 1
        while self.procs and time.monotonic() < deadline:
            self.poll()
            time.sleep(POLL_S)


def job_base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(MPI_VARIABLES)}


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _node_info(cores: int | None) -> dict[str, Any]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {
        "hostname": socket.gethostname(),
        "cores": cores or os.cpu_count() or 1,
        "gpus": [g for g in visible.split(",") if g.strip()] if visible not in ("", "-1") else [],
    }


def _emit(report: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(report) + "\n")
    sys.stdout.flush()


def _handle(jobs: LocalJobs, msg: dict[str, Any]) -> dict[str, Any] | None:
    if msg["op"] == "run":
        return jobs.start(LaunchSpec.from_json(msg["spec"]))
    if msg["op"] == "kill":
        jobs.kill(int(msg["job_id"]), float(msg.get("grace", 5.0)))
    return None


def hub(comm: Any, cores: int | None) -> None:
    """Rank 0: the pilot's side of the MPI world."""
    from mpi4py import MPI

    nodes = comm.gather(_node_info(cores), root=0)
    _emit({"op": "hello", "nodes": nodes})
    jobs = LocalJobs()
    stdin = sys.stdin.fileno()
    buffer = b""
    running = True
    while running:
        readable, _, _ = select.select([stdin], [], [], POLL_S)
        if readable:
            chunk = os.read(stdin, 1 << 16)
            if not chunk:  # the pilot is gone
                running = False
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                msg = json.loads(line)
                if msg["op"] == "exit":
                    running = False
                    continue
                node = int(msg.get("node", 0))
                if node == 0:
                    report = _handle(jobs, msg)
                    if report:
                        _emit(report)
                else:
                    comm.send(msg, dest=node, tag=CMD)
        while comm.Iprobe(source=MPI.ANY_SOURCE, tag=REPORT):
            _emit(comm.recv(source=MPI.ANY_SOURCE, tag=REPORT))
        for report in jobs.poll():
            _emit(report)
    for rank in range(1, comm.Get_size()):
        comm.send({"op": "exit"}, dest=rank, tag=CMD)
    jobs.stop_all()
    comm.Barrier()


def worker(comm: Any, cores: int | None) -> None:
    """Ranks 1..N-1: run what the hub passes on, report each exit."""
    comm.gather(_node_info(cores), root=0)
    jobs = LocalJobs()
    running = True
    while running:
        while comm.Iprobe(source=0, tag=CMD):
            msg = comm.recv(source=0, tag=CMD)
            if msg["op"] == "exit":
                running = False
                break
            report = _handle(jobs, msg)
            if report:
                comm.send(report, dest=0, tag=REPORT)
        for report in jobs.poll():
            comm.send(report, dest=0, tag=REPORT)
        time.sleep(POLL_S)
    jobs.stop_all()
    comm.Barrier()


def main(argv: list[str]) -> int:
    from mpi4py import MPI

    cores = int(argv[0]) if argv and argv[0].isdigit() and int(argv[0]) > 0 else None
    comm = MPI.COMM_WORLD
    if comm.Get_rank() == 0:
        hub(comm, cores)
    else:
        worker(comm, cores)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
