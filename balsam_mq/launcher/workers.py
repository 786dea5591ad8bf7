"""Multi-node serial mode, pilot side: an Executor whose jobs run on per-node MPI workers.

The pilot starts ``serial_worker`` with one rank per node through the site's app-run
launcher (mpiexec or srun), learns the nodes from the hub's hello, then sends each job
to the worker of its node and awaits the worker's report of its exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

from balsam_mq.errors import ConfigError
from balsam_mq.launcher.nodes import Node, gpu_ids_from
from balsam_mq.launcher.platform import AppRun, launcher_argv
from balsam_mq.launcher.runs import Launch, LaunchSpec
from balsam_mq.launcher.serial_worker import PREFIX

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The MPI workers exited while jobs were running on them."""


class RemoteRun:
    def __init__(self, workers: MpiWorkers, job_id: int, node: int) -> None:
        self._workers = workers
        self.job_id = job_id
        self.node = node
        self.exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.payload: dict[str, Any] | None = None  # read from the result file

    async def wait(self) -> int:
        return await asyncio.shield(self.exit)

    async def kill(self, grace: float) -> None:
        if self.exit.done():
            return
        await self._workers.send(
            {"op": "kill", "node": self.node, "job_id": self.job_id, "grace": grace}
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.exit), grace + 5)


class MpiWorkers:
    """Example::

    workers = MpiWorkers(hosts=["nid01", "nid02"], app_run="mpich")
    nodes = await workers.start()          # one Node per worker rank
    run = await workers.launch(spec, node_index=1)
    code = await run.wait()
    await workers.close()
    """

    makes_workdirs = False  # made by the launcher, on the shared file system

    def __init__(
        self,
        *,
        count: int,
        hosts: list[str] | None = None,
        app_run: str = "local",
        mpiexec: str = "mpiexec",
        cores_per_node: int | None = None,
        gpus_per_node: int | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.count = count
        self.hosts = hosts
        self.app_run = app_run
        self.mpiexec = mpiexec
        self.cores_per_node = cores_per_node
        self.gpus_per_node = gpus_per_node
        self.start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._stdout: asyncio.StreamReader | None = None
        self._reader: asyncio.Task[None] | None = None
        self._runs: dict[int, RemoteRun] = {}
        self._write_lock = asyncio.Lock()

    def argv(self) -> list[str]:
        """One worker rank per node, unbound: its jobs may use every core of the node."""
        hosts = tuple(self.hosts) if self.hosts else ("localhost",) * self.count
        flavour = "mpich" if self.app_run == "local" else self.app_run
        unbound = {"openmpi": {"bind-to": "none"}, "srun": {"cpu-bind": "none"}}
        run = AppRun(
            hosts=hosts,
            threads_per_rank=self.cores_per_node or 1,
            launch_params=unbound.get(flavour, {}),
        )
        prefix = launcher_argv(flavour, run, mpiexec_exe=self.mpiexec)
        worker = [sys.executable, "-m", "balsam_mq.launcher.serial_worker"]
        return [*prefix, *worker, str(self.cores_per_node or 0)]

    async def start(self) -> list[Node]:
        argv = self.argv()
        log.info("starting serial-mode workers: %s", " ".join(argv))
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._stdout = self._process.stdout
        try:
            hello = await asyncio.wait_for(self._hello(), self.start_timeout)
        except (TimeoutError, ConfigError):
            await self.close()
            raise
        self._reader = asyncio.create_task(self._read())
        nodes = []
        for i, info in enumerate(hello["nodes"]):
            gpus = (
                gpu_ids_from({}, self.gpus_per_node)
                if self.gpus_per_node is not None
                else tuple(info.get("gpus", ()))
            )
            nodes.append(Node(i, str(info["hostname"]), int(info["cores"]), gpus))
        return nodes

    async def _hello(self) -> dict[str, Any]:
        while True:
            report = await self._next_report()
            if report is None:
                raise ConfigError(f"serial-mode workers exited before starting: {self.argv()}")
            if report.get("op") == "hello":
                return report

    async def _next_report(self) -> dict[str, Any] | None:
        assert self._stdout is not None
        while True:
            line = await self._stdout.readline()
            if not line:
                return None
            text = line.decode(errors="replace").rstrip("\n")
            if text.startswith(PREFIX):
                report: dict[str, Any] = json.loads(text[len(PREFIX) :])
                return report
            log.debug("serial workers: %s", text)

    async def _read(self) -> None:
        try:
            while (report := await self._next_report()) is not None:
                if report.get("op") != "done":
                    continue
                run = self._runs.pop(int(report["job_id"]), None)
                if run is None or run.exit.done():
                    continue
                if report.get("rc") is None:
                    run.exit.set_exception(WorkerLost(report.get("error", "job did not start")))
                else:
                    run.exit.set_result(int(report["rc"]))
        finally:
            for run in self._runs.values():
                if not run.exit.done():
                    run.exit.set_exception(WorkerLost("the serial-mode workers exited"))
            self._runs.clear()

    async def send(self, message: dict[str, Any]) -> None:
        if self._process is None or self._process.stdin is None:
            raise WorkerLost("serial-mode workers are not running")
        async with self._write_lock:
            self._process.stdin.write((json.dumps(message) + "\n").encode())
            await self._process.stdin.drain()

    async def launch(self, spec: LaunchSpec, node_index: int) -> Launch:
        if self._reader is None or self._reader.done():
            raise WorkerLost("serial-mode workers are not running")
        run = RemoteRun(self, spec.job_id, node_index)
        self._runs[spec.job_id] = run
        try:
            spec.write_run_spec()
            await self.send({"op": "run", "node": node_index, "spec": spec.to_json()})
        except Exception:
            self._runs.pop(spec.job_id, None)
            raise
        return run

    async def close(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            process.stdin.write(b'{"op": "exit"}\n')
            await process.stdin.drain()
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
