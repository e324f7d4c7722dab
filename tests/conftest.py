"""Session fixtures: the whole local topology, started once, on free ports.

Three real nats-server processes (central, eu-west, us-east), a mock provider, and
every Cordon process as a real child process: exactly what `make run` runs.
Plus one bare JetStream server for tests of the NATS plumbing alone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS

from cordon_dev.procs import free_port, nats_server_binary, port_is_free, spawn, stop_group
from cordon_dev.stack import DevStack
from tests.helpers import eventually, policy_status, publish_pack, published_revision

# Fixtures that start real servers (NATS, the topology, PostgreSQL): a test using one is
# in the `servers` lane; the rest is the fast lane (`make test-fast`, `-m "not servers"`).
SERVER_FIXTURES = frozenset(
    {
        "stack",
        "endpoints",
        "fronted",
        "jetstream_url",
        "bare_nats",
        "wan_stack",
        "pg_stack",
        "postgres_dsn",
        "one_region",
        "provider_url",  # the mock provider in a process of its own (tests/cordon_sdk)
    }
)
# Under `make test` (pytest-xdist, --dist loadgroup) the tests of one whole topology run
# on one worker, which starts it once; everything else is shared out between workers.
# The shared topology's tests are many: its files are dealt into two halves, each half
# on one worker with a topology of its own (tests on a worker run one at a time, so an
# outage drill only ever stops its own half's servers).
TOPOLOGY_GROUPS = {
    "stack": "stack",
    "endpoints": "stack",
    "fronted": "stack",
    "wan_stack": "wan",
    "pg_stack": "pg",
    "one_region": "one-region",
}
# A fixture choosing its topology by parameter (tests/aggregator/test_views.py).
BY_PARAMETER = {"view": {"sqlite": "stack", "postgresql": "pg"}}
STACK_HALVES = 2


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = {item.nodeid: _topologies(item) for item in items}
    halves = _stack_halves([item for item in items if "stack" in groups[item.nodeid]])
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if (fixtures & SERVER_FIXTURES or groups[item.nodeid]) and not item.get_closest_marker(
            "servers"
        ):
            item.add_marker(pytest.mark.servers)
        for group in sorted(groups[item.nodeid]):
            if group == "stack":  # dealt by file, so module fixtures start once
                group = f"stack-{halves[item.path]}"
            item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "loadgroup", False):  # an xdist worker, under --dist loadgroup
        for item in items:
            _name_its_group(item)
    # The longest group first (a one-minute partition drill), then the shared topology:
    # each worker starts on one, and the short tests fill in around them.
    items.sort(key=_group_rank)


def _name_its_group(item: pytest.Item) -> None:
    """What pytest-xdist's loadgroup does, done so it works: the scheduler groups tests
    by a `@<group>` suffix of their node ids, which xdist 3.8 sets on `item._nodeid`, an
    attribute pytest 9 no longer reads (its node id is `item._id`). Without this every
    worker that drew one of a topology's tests started that topology for itself."""
    names = sorted({str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args})
    if not names or "@" in item.nodeid.rsplit("]", 1)[-1]:
        return  # no group, or xdist named it already
    suffixed = f"{item.nodeid}@{'_'.join(names)}"
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # an older pytest: xdist's own suffix takes
        return
    item._id = coerce_node_id(suffixed)  # type: ignore[attr-defined]


# Files of the shared topology that take far longer than their number of tests says
# (seconds, measured with --durations=0 on 2026-12-06, each topology started once per
# run): the halves are balanced by them.
SLOW_STACK_FILES = {
    "tests/gateway/records/test_outage.py": 77.0,
    "tests/aggregator/test_views.py": 20.0,
    "tests/replicator/test_status.py": 19.0,
    "tests/gateway/upstream/test_failover.py": 18.0,
    "tests/gateway/http/test_stream_policy.py": 14.0,
    "tests/security/test_hostile_input.py": 13.0,
    "tests/gateway/policy/test_pack_refusal.py": 13.0,
    "tests/gateway/ledger/test_sealer.py": 11.0,
    "tests/cordon_cli/test_audit_views.py": 9.5,
    "tests/cordon_dev/test_baseline.py": 9.0,
    "tests/test_residency.py": 9.0,
    "tests/gateway/records/test_fail_open.py": 8.0,
    "tests/security/test_api_fuzz.py": 7.0,
}


def _stack_halves(items: list[pytest.Item]) -> dict[Path, int]:
    """Each file of the shared topology to a half, heaviest first to the lighter half
    (a file's weight: its measured seconds, else a second per test), so the two workers
    that run them finish together rather than one waiting on the other."""
    tests: dict[Path, int] = {}
    for item in items:
        tests[item.path] = tests.get(item.path, 0) + 1
    root = Path(__file__).resolve().parent.parent

    def weight(path: Path) -> float:
        return SLOW_STACK_FILES.get(str(path.relative_to(root)), float(tests[path]))

    load = [0.0] * STACK_HALVES
    halves: dict[Path, int] = {}
    for path in sorted(tests, key=lambda p: (-weight(p), str(p))):
        half = load.index(min(load))
        halves[path] = half
        load[half] += weight(path)
    return halves


def _topologies(item: pytest.Item) -> set[str]:
    fixtures = set(getattr(item, "fixturenames", ()))
    found = {TOPOLOGY_GROUPS[name] for name in fixtures & TOPOLOGY_GROUPS.keys()}
    params = getattr(getattr(item, "callspec", None), "params", {})
    for name, choice in BY_PARAMETER.items():
        if name in params:
            found.add(choice[str(params[name])])
    return found


GROUP_ORDER = ("wan", "stack-0", "stack-1", "pg")


def _group_rank(item: pytest.Item) -> int:
    names = [str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args]
    return min((GROUP_ORDER.index(n) for n in names if n in GROUP_ORDER), default=len(GROUP_ORDER))


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI cancelling the run, `kill`) unwinds like Ctrl-C, so the session
    # fixtures below stop every child process. A SIGKILL cannot be caught: children
    # then die with us by their parent-death signal (cordon_dev.procs).
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("cordon"))
    try:  # `finally`, not `except Exception`: Ctrl-C during start must stop them too
        dev.start()
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="session")
def endpoints(stack: DevStack) -> dict[str, Any]:
    described: dict[str, Any] = json.loads((stack.root / "endpoints.json").read_text())
    return described


@pytest.fixture
def fronted(stack: DevStack, endpoints: dict[str, Any]) -> dict[str, Any]:
    """The stack's endpoints, its gateways enforcing the baseline pack that declares the
    dev tool server: tests sharing the stack publish packs of their own, so an MCP test
    puts the baseline back first when a region's pack no longer fronts it."""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    auth = {"authorization": f"Bearer {endpoints['api_key']}"}
    urls = [u for region in endpoints["mcp"].values() for u in region.values()]
    if all(httpx.post(url, json=ping, headers=auth).status_code == 200 for url in urls):
        return endpoints
    revision = published_revision(publish_pack(endpoints, stack.baseline_pack))
    admin = endpoints["tokens"]["admin"]
    for gateway in endpoints["gateways"].values():
        eventually(lambda g=gateway: policy_status(g, admin)["active_revision"] >= revision)
    return endpoints


ONE_REGION = "eu-west"


@pytest.fixture(scope="session")
def one_region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """A one-region topology of its own, for the outage drills of replicas that buffer in
    a local log (a region-mode sidecar, the in-process SDK): stopping its NATS disturbs
    no other topology's tests, and its tests share a worker (`one-region` group)."""
    dev = DevStack(tmp_path_factory.mktemp("one-region"), regions=(ONE_REGION,))
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def jetstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    store = tmp_path_factory.mktemp("jetstream")
    server = spawn(
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while port_is_free("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_group(server, timeout=5)


@pytest.fixture
async def bare_nats(jetstream_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(jetstream_url, connect_timeout=5)
    yield client
    await client.close()
