"""`cordon nats exporter` over a real nats-server: the series prometheus-nats-exporter
would serve (`-varz -jsz=all`), with its names, labels and the server's figures, and
every NATS name and label deploy/prometheus and deploy/grafana read among them, so the
same alerts and dashboards serve `make run` and Kubernetes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import yaml
from nats.js.api import AckPolicy, ConsumerConfig, ExternalStream, StreamConfig, StreamSource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cordon.nats.exporter import (
    JSZ_METRICS,
    MonitoredServer,
    NatsExporterCollector,
    metric_names,
    parse_server,
)
from cordon_dev.procs import free_port, nats_server_binary, spawn, stop_group, wait_for_http

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[3]
NAME = "exporter-test"
Sample = tuple[str, dict[str, str], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A JetStream server with its monitoring port: (client URL, monitoring URL)."""
    port, monitor = free_port(), free_port()
    store = tmp_path_factory.mktemp("exporter-js")
    argv = [nats_server_binary(), "-js", "-n", NAME, "-a", "127.0.0.1", "-p", str(port)]
    proc = spawn([*argv, "-m", str(monitor), "-sd", str(store)], subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true", 10, proc)
        yield f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{monitor}"
    finally:
        stop_group(proc, timeout=5)


# A JetStream API prefix no server answers: a source over it is never heard from.
NOWHERE = "$JS.nowhere.API"


async def _traffic(url: str) -> None:
    """ORDERS: 7 messages; ALL sources ORDERS; `reader` took 2 and acknowledged 1;
    SILENT sources a SUMMARY behind an API no server answers (a region out of reach)."""
    client = await nats.connect(url, connect_timeout=5)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    await js.add_stream(StreamConfig(name="ALL", sources=[StreamSource(name="ORDERS")]))
    away = StreamSource(name="SUMMARY", external=ExternalStream(api=NOWHERE))
    await js.add_stream(StreamConfig(name="SILENT", sources=[away]))
    for i in range(7):
        await js.publish("orders.new", f"order {i}".encode())
    config = ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT)
    await js.add_consumer("ORDERS", config)
    subscription = await js.pull_subscribe("orders.>", durable="reader", stream="ORDERS")
    first, _ = await subscription.fetch(2, timeout=5)
    await first.ack_sync()
    for _ in range(100):  # the source copies ORDERS into ALL
        if (await js.stream_info("ALL")).state.messages == 7:
            break
        await asyncio.sleep(0.05)
    await client.close()


def _wait_until_the_client_is_gone(monitor: str) -> None:
    """The server counts a closed client's connection until it has read the close: a
    scrape at once may still see it (a loaded machine once did)."""
    deadline = time.monotonic() + 10
    while json.loads(urllib.request.urlopen(f"{monitor}/varz", timeout=5).read())["connections"]:
        assert time.monotonic() < deadline, "the test's client never left the server"
        time.sleep(0.02)


def _scrape(monitor: str) -> list[Sample]:
    """One scrape, as Prometheus gets it (exposition text, parsed)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NatsExporterCollector([parse_server(f"{NAME},{monitor}")]))
    text = generate_latest(registry).decode()
    families = text_string_to_metric_families(text)
    return [(s.name, s.labels, s.value) for f in families for s in f.samples]


@pytest.fixture(scope="module")
def scraped(server: tuple[str, str]) -> list[Sample]:
    """The scrape just after the traffic."""
    asyncio.run(_traffic(server[0]))
    _wait_until_the_client_is_gone(server[1])
    return _scrape(server[1])


def _one(samples: list[Sample], name: str, **labels: str) -> float:
    found = [v for n, ls, v in samples if n == name and labels.items() <= ls.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_server_figures_carry_the_exporters_varz_names(scraped: list[Sample]) -> None:
    assert _one(scraped, "gnatsd_varz_connections", server_id=NAME) == 0  # the client left
    assert _one(scraped, "gnatsd_varz_in_msgs", server_id=NAME) >= 7
    assert _one(scraped, "gnatsd_varz_slow_consumers", server_id=NAME) == 0
    assert _one(scraped, "gnatsd_varz_jetstream_stats_storage", server_id=NAME) > 0
    assert _one(scraped, "gnatsd_varz_server_name", server_id=NAME, value=NAME) == 1
    assert _one(scraped, "gnatsd_varz_start", server_id=NAME) > 1.7e12  # epoch ms
    assert {ls["server_id"] for n, ls, _ in scraped if n.startswith("gnatsd_varz_")} == {NAME}


def test_streams_consumers_and_sources_carry_the_exporters_jsz_names(
    scraped: list[Sample],
) -> None:
    stream = {"server_id": NAME, "server_name": NAME, "account": "$G", "stream_name": "ORDERS"}
    assert _one(scraped, "jetstream_stream_total_messages", **stream) == 7
    assert _one(scraped, "jetstream_stream_last_seq", **stream) == 7
    assert _one(scraped, "jetstream_stream_consumer_count", **stream) == 1
    assert _one(scraped, "jetstream_stream_total_bytes", **stream) > 0
    assert _one(scraped, "jetstream_stream_total_messages", stream_leader=NAME, stream_name="ALL")
    consumer = {**stream, "consumer_name": "reader", "is_consumer_leader": "true"}
    assert _one(scraped, "jetstream_consumer_num_pending", **consumer) == 5
    assert _one(scraped, "jetstream_consumer_num_ack_pending", **consumer) == 1
    assert _one(scraped, "jetstream_consumer_num_redelivered", **consumer) == 0
    assert _one(scraped, "jetstream_consumer_delivered_stream_seq", **consumer) == 2
    source = {"stream_name": "ALL", "source_name": "ORDERS", "is_stream_leader": "true"}
    assert _one(scraped, "jetstream_stream_source_lag", **source) == 0
    assert _one(scraped, "jetstream_server_total_streams", server_id=NAME) == 3
    for name, value_labels, _ in scraped:  # each series has exactly the exporter's labels
        if name in JSZ_METRICS:
            assert tuple(sorted(value_labels)) == tuple(sorted(JSZ_METRICS[name][1])), name


def test_a_source_reports_how_long_since_it_was_last_heard_from(
    server: tuple[str, str], scraped: list[Sample]
) -> None:
    """`jetstream_stream_source_active_duration_ns` (CordonNatsSourceSilent): the source
    consumer's idle heartbeats (every second) count, so a source with nothing to send
    stays near 0; one never reached is -1 (it is never "heard from")."""
    active = "jetstream_stream_source_active_duration_ns"
    source = {"stream_name": "ALL", "source_name": "ORDERS", "source_api": ""}
    assert 0 <= _one(scraped, active, is_stream_leader="true", **source) < 10e9
    away = {"stream_name": "SILENT", "source_name": "SUMMARY", "source_api": NOWHERE}
    assert _one(scraped, active, is_stream_leader="true", **away) == -1
    time.sleep(4)  # nothing is published to ORDERS any more
    later = _scrape(server[1])
    assert 0 <= _one(later, active, **source) < 4e9  # a heartbeat came since the last message
    assert _one(later, active, **away) == -1


def test_every_declared_name_is_served_by_a_real_server(scraped: list[Sample]) -> None:
    served = {name for name, _, _ in scraped}
    no_mirror = {n for n in metric_names() if "_mirror_" not in n}  # no stream mirrors here
    assert no_mirror <= served, no_mirror - served


def _asked() -> list[str]:
    """Every NATS query of deploy/prometheus/rules.yml and deploy/grafana/dashboards."""
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    exprs = [rule["expr"] for group in groups["groups"] for rule in group["rules"]]
    for board in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"):
        exprs += [t["expr"] for p in json.loads(board.read_text())["panels"] for t in p["targets"]]
    return [e for e in exprs if re.search(r"\b(gnatsd_varz|jetstream)_", e)]


def test_the_alerts_and_dashboards_ask_for_names_and_labels_a_real_server_yields(
    scraped: list[Sample],
) -> None:
    asked = _asked()
    assert len(asked) >= 10
    served = {name for name, _, _ in scraped}
    labels = {label for _, value_labels, _ in scraped for label in value_labels}
    for expr in asked:
        names = set(re.findall(r"\b((?:gnatsd_varz|jetstream)_[a-z0-9_]+)", expr))
        assert names <= served, (expr, names - served)
        by = {w.strip() for g in re.findall(r"by \(([^)]*)\)", expr) for w in g.split(",")}
        matched = set(re.findall(r"(\w+)\s*!?=~?\s*\"", expr))
        assert by | matched <= labels | {"le"}, (expr, (by | matched) - labels)


def test_a_server_that_does_not_answer_is_left_out_of_the_scrape() -> None:
    down = MonitoredServer("down", f"http://127.0.0.1:{free_port()}")
    assert list(NatsExporterCollector([down]).collect()) == []
    assert parse_server("http://10.0.0.1:8222").tag == "http://10.0.0.1:8222"
    with pytest.raises(ValueError):
        parse_server("nats://10.0.0.1:4222")
