"""A real OpenSSH server for tests: Debian's sshd on a free loopback port, logging in as the
current user with a throwaway key, which a test can stop and start again on the same port.

    with ssh_server(tmp_path) as server:
        run(f"rsync -e '{server.ssh_command} -p {server.port}' ...")
        server.stop()   # the daemon and every session it serves are killed
        server.start()  # listening again on the same port
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.services import free_port

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT_S = 10.0


def _ppids() -> dict[int, int]:
    """Every process's parent, read from /proc."""
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        out[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return out


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, parent in _ppids().items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class SshServer:
    """One sshd (see the module docstring); ``ssh_command`` logs in without prompts."""

    def __init__(self, root: Path) -> None:
        if not SSHD.exists():
            raise RuntimeError(
                f"{SSHD} is missing: the rsync tests need a real OpenSSH server "
                "(scripts/test.sh installs openssh-server; as root: apt-get install -y "
                "openssh-server rsync)"
            )
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.log = root / "sshd.log"
        self.config = root / "sshd_config"
        host_key, client_key = root / "host_ed25519", root / "client_ed25519"
        for key in (host_key, client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "balsam-test", "-f", key],
                check=True,
                stdin=subprocess.DEVNULL,
            )
        authorized = root / "authorized_keys"
        authorized.write_text(client_key.with_suffix(".pub").read_text())
        self.config.write_text(
            f"ListenAddress 127.0.0.1\n"
            f"Port {self.port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {root / 'sshd.pid'}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "X11Forwarding no\n"
        )
        self.ssh_command = (
            f"ssh -i {client_key} -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the daemon and return once its port accepts connections."""
        if self.running:
            raise RuntimeError(f"sshd on port {self.port} is already running")
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._accepts():
            try:
                # the poll interval doubles as a check that sshd did not exit
                code = self._process.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
                self.stop()
                raise RuntimeError(
                    f"sshd did not accept connections on port {self.port} within "
                    f"{START_TIMEOUT_S} s; its log:\n{self.log.read_text()}"
                ) from None
            raise RuntimeError(f"sshd exited with {code}; its log:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Kill the daemon and every session it serves (transfers in flight are cut)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # sessions run in sessions of their own: freeze the tree until it stops growing
        # (a stopped process cannot fork), then kill it whole
        tree = {process.pid}
        while True:
            _signal(tree, signal.SIGSTOP)
            grown = tree | _descendants(process.pid)
            for pid in tree - {process.pid}:
                grown |= _descendants(pid)
            if grown == tree:
                break
            tree = grown
        _signal(tree, signal.SIGKILL)
        process.wait(timeout=10)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


@contextmanager
def ssh_server(root: Path) -> Iterator[SshServer]:
    """A started :class:`SshServer` with its keys and config under ``root``; stopped at exit."""
    server = SshServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
