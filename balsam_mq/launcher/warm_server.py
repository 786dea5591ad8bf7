"""The warm pool's server process and its workers: the server imports the runtime once,
forks workers, hands each job to a free one and passes its result back; a worker runs
jobs one after another (``launcher/warm_pool.py`` tells what a job shares with the jobs
before it, and the protocol).

    python -m balsam_mq.launcher.warm_server [WORKER_JOBS]
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from collections import deque
from typing import Any

from balsam_mq import heap
from balsam_mq.launcher.runs import open_output
from balsam_mq.orphans import die_with_parent

PREFIX = "@@warm "
WORKER_JOBS = 5000  # jobs a worker runs before it is replaced (see above)
_PRELOAD = (
    "dill",
    "balsam_mq.domain",
    "balsam_mq.domain.serialization",
    "balsam_mq.launcher.python_runner",
    "balsam_mq.sdk.app",
    "balsam_mq.sdk.job",
    "balsam_mq.site.workdir",
    "balsam_mq.sdk.definition",
)

# --- a worker (a forked child of the server) ---------------------------------------------


def _worker(sock: socket.socket) -> None:
    """Run jobs sent on ``sock`` until it closes; exit with the status of the last word."""
    code = 0
    try:
        os.setsid()  # a group of its own: killing a job kills what it started
        die_with_parent()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        stderr = os.dup(2)
        classes: dict[Any, type] = {}
        reader = sock.makefile("rb")
        for line in reader:
            rc, payload = _run_job(json.loads(line), classes, devnull, stderr)
            sock.sendall(f"{rc} ".encode() + json.dumps(payload).encode() + b"\n")
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _run_job(
    request: dict[str, Any], classes: dict[Any, type], devnull: int, stderr: int
) -> tuple[int, dict[str, Any]]:
    from balsam_mq.launcher.python_runner import run_spec

    try:
        out = open_output(request["output"])  # the launcher leaves the workdir to make here
    except OSError as exc:  # the workdir cannot be made, or job.out opened: the job's error
        from balsam_mq.domain.serialization import serialize_exception

        serialized, text = serialize_exception(exc)
        return 1, {"exception": serialized, "traceback": text}
    environ = _environ_items()
    path = list(sys.path)
    cwd = os.getcwd()
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    rc: int = 1
    payload: dict[str, Any] = {}
    try:
        os.chdir(request["cwd"])
        os.environ.update(request["env"])
        sys.path.insert(0, request["cwd"])  # as `python -m` in the workdir has it
        rc, payload = run_spec(request["spec"], classes=classes)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(devnull, 1)
        os.dup2(stderr, 2)
        os.chdir(cwd)
        _restore_environ(environ)
        sys.path[:] = path
    return rc, payload


def _environ_items() -> dict[bytes, bytes]:
    """The process environment as bytes (a copy of the dict ``os.environ`` keeps, when
    it keeps one: CPython does, encoded)."""
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return dict(data)
    return dict(os.environb)


def _restore_environ(before: dict[bytes, bytes]) -> None:
    """Put the environment back as ``before``, touching only the variables that differ
    (each change is a ``putenv``/``unsetenv``)."""
    now = _environ_items()
    if now == before:
        return
    for key in [k for k in now if k not in before]:
        del os.environb[key]
    for key, value in before.items():
        if now.get(key) != value:
            os.environb[key] = value


# --- the server (its own process) ------------------------------------------------------


def _emit(*words: object) -> None:
    sys.stdout.buffer.write(PREFIX.encode() + b" ".join(_bytes(w) for w in words) + b"\n")
    sys.stdout.buffer.flush()


def _bytes(word: object) -> bytes:
    return word if isinstance(word, bytes) else str(word).encode()


class _Server:
    def __init__(self, worker_jobs: int = WORKER_JOBS) -> None:
        self.worker_jobs = worker_jobs
        self.sockets: dict[int, socket.socket] = {}  # worker pid -> the server's end
        self.served: dict[int, int] = {}  # worker pid -> jobs it answered
        self.buffers: dict[int, bytes] = {}
        self.running: dict[int, int] = {}  # worker pid -> job id
        self.idle: deque[int] = deque()
        self.waiting: deque[tuple[int, bytes]] = deque()  # (job id, request) for a worker

    def fork_worker(self) -> int:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            for other in self.sockets.values():
                other.close()
            _worker(theirs)
        theirs.close()
        self.sockets[pid] = ours
        self.served[pid] = 0
        self.buffers[pid] = b""
        return pid

    def dispatch(self) -> None:
        while self.waiting:
            pid = self.idle.popleft() if self.idle else self.fork_worker()
            job_id, request = self.waiting[0]
            try:
                self.sockets[pid].sendall(request + b"\n")
            except OSError:  # it died while idle: its end-of-file is read later
                continue
            self.waiting.popleft()
            self.running[pid] = job_id

    def kill(self, job_id: int, signum: int) -> None:
        for queued in [w for w in self.waiting if w[0] == job_id]:  # not started: it ends
            self.waiting.remove(queued)
            _emit("done", job_id, -signum, b"{}")
        for pid, running in self.running.items():
            if running == job_id:
                # the worker and what its job started; a worker just forked may not have
                # made its group yet
                for send in (os.kill, os.killpg):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        send(pid, signum)

    def from_worker(self, pid: int) -> None:
        try:
            chunk = self.sockets[pid].recv(1 << 16)
        except OSError:  # killed before it read what it was sent
            chunk = b""
        if not chunk:  # the worker exited: its job (if any) ends with its status
            self.sockets.pop(pid).close()
            self.buffers.pop(pid, None)
            self.served.pop(pid, None)
            with contextlib.suppress(ValueError):
                self.idle.remove(pid)
            _, status = os.waitpid(pid, 0)
            job_id = self.running.pop(pid, None)
            if job_id is not None:
                _emit("done", job_id, os.waitstatus_to_exitcode(status), b"{}")
            return
        self.buffers[pid] += chunk
        while b"\n" in self.buffers[pid]:
            line, self.buffers[pid] = self.buffers[pid].split(b"\n", 1)
            rc, payload = line.split(b" ", 1)
            job_id = self.running.pop(pid, None)
            self.served[pid] += 1
            if self.served[pid] < self.worker_jobs:
                self.idle.append(pid)
            else:  # retired: its end of file comes next, and it exits (see above)
                with contextlib.suppress(OSError):
                    self.sockets[pid].shutdown(socket.SHUT_WR)
            if job_id is not None:
                _emit("done", job_id, rc, payload)

    def stop_all(self) -> None:
        for pid in self.sockets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)


def serve(worker_jobs: int = WORKER_JOBS) -> int:
    import importlib

    die_with_parent()
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    server = _Server(worker_jobs)
    heap.settle()  # before the first worker is forked
    stdin = sys.stdin.fileno()
    buffer = b""
    _emit("ready", os.getpid())
    open_input = True
    while open_input or server.sockets:
        fds = [*server.sockets.values(), *([stdin] if open_input else [])]
        readable, _, _ = select.select(fds, [], [])
        for item in readable:
            if item == stdin:
                chunk = os.read(stdin, 1 << 16)
                if not chunk:
                    open_input = False  # the launcher is gone or done: stop what runs
                    server.stop_all()
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    op, job_id, rest = line.split(b" ", 2)
                    if op == b"kill":
                        server.kill(int(job_id), int(rest))
                    else:
                        server.waiting.append((int(job_id), rest))
                server.dispatch()
            else:
                pid = next(p for p, s in server.sockets.items() if s is item)
                server.from_worker(pid)
                server.dispatch()
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]) if len(sys.argv) > 1 else WORKER_JOBS))
