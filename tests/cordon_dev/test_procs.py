"""Child processes never outlive what started them, and a port in TIME_WAIT is free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from cordon_dev.procs import free_port, port_is_free, spawn, stop_group
from tests.helpers import eventually


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: it only waits for its parent to read its status
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_port_whose_connections_linger_in_time_wait_is_free() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its side of the port goes to TIME_WAIT
        client.close()
        assert not port_is_free("127.0.0.1", port)  # still listening
    assert port_is_free("127.0.0.1", port)


def test_children_die_with_a_parent_killed_outright() -> None:
    # Cordon runs on Linux (dev VMs, CI, Kubernetes), where PR_SET_PDEATHSIG exists.
    # A middle process spawns a grandchild the way DevStack does, then is SIGKILLed:
    # nothing can clean up after it, yet the grandchild must not be left behind.
    code = (
        "import sys, time\n"
        "from cordon_dev.procs import spawn\n"
        "child = spawn(['sleep', '300'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    middle = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert middle.stdout is not None
    grandchild = int(middle.stdout.readline())
    assert _alive(grandchild)
    middle.send_signal(signal.SIGKILL)
    middle.wait(5)
    eventually(lambda: not _alive(grandchild), timeout=5)


def test_stopping_a_child_stops_its_whole_process_group() -> None:
    shell = spawn(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE)
    assert shell.stdout is not None
    inner = int(shell.stdout.readline())
    stop_group(shell, timeout=5)
    deadline = time.monotonic() + 5
    while _alive(inner) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(inner)


def test_free_port_never_hands_out_a_port_it_handed_out_lately() -> None:
    # A plan picks all its servers' ports before starting any: a port that is still
    # bindable because nothing listens on it yet must not be handed out twice.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_each_xdist_worker_draws_ports_from_its_own_slice() -> None:
    code = "from cordon_dev.procs import free_port\nprint(*[free_port() for _ in range(50)])\n"

    def drawn(worker: str) -> set[int]:
        env = {**os.environ, "PYTEST_XDIST_WORKER": worker}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
        )
        return {int(port) for port in out.stdout.split()}

    first, second = drawn("gw0"), drawn("gw1")
    assert len(first) == len(second) == 50
    assert max(first) < min(second)
