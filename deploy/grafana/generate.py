"""Write Cordon's Grafana dashboards (deploy/grafana/dashboards/*.json) from the panel
lists below: `python deploy/grafana/generate.py`. The JSON is committed; a test checks
it matches this file, that every uid is stable and every query names exported metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RATE = "$__rate_interval"

# (title, unit, [(expr, legend)])
Panel = tuple[str, str, list[tuple[str, str]]]

# The place's NATS servers, as prometheus-nats-exporter names their metrics (Kubernetes:
# the exporter beside each server; `make run`: `cordon nats exporter`). Every replica
# reports a stream; the leader's series (is_*_leader="true") is the one shown.
LEADS = 'is_stream_leader="true"'
CONSUMER_LEADS = 'is_consumer_leader="true"'
NATS_PANELS: list[Panel] = [
    (
        "JetStream: messages per stream",
        "short",
        [
            (
                f"max by (server_id, account, stream_name) (jetstream_stream_total_messages{{{LEADS}}})",
                "{{server_id}} {{account}}/{{stream_name}}",
            )
        ],
    ),
    (
        "JetStream: storage",
        "bytes",
        [
            (
                f"max by (server_id, account, stream_name) (jetstream_stream_total_bytes{{{LEADS}}})",
                "{{server_id}} {{account}}/{{stream_name}}",
            ),
            ("max by (server_id) (gnatsd_varz_jetstream_stats_storage)", "{{server_id}} all"),
        ],
    ),
    (
        "JetStream: consumer pending (undelivered, unacknowledged)",
        "short",
        [
            (
                f"max by (server_id, stream_name, consumer_name) (jetstream_consumer_num_pending{{{CONSUMER_LEADS}}})",
                "pending {{stream_name}}/{{consumer_name}}",
            ),
            (
                f"max by (server_id, stream_name, consumer_name) (jetstream_consumer_num_ack_pending{{{CONSUMER_LEADS}}})",
                "ack pending {{stream_name}}/{{consumer_name}}",
            ),
        ],
    ),
    (
        "JetStream: redelivered messages",
        "short",
        [
            (
                f"max by (server_id, stream_name, consumer_name) (jetstream_consumer_num_redelivered{{{CONSUMER_LEADS}}})",
                "{{stream_name}}/{{consumer_name}}",
            )
        ],
    ),
    (
        "JetStream: stream leader changes (last hour)",
        "short",
        [
            (
                # Distinct leaders each replica saw in the hour, less one.
                "max by (cluster, account, stream_name) (count by (server_id, cluster, account, stream_name)"
                " (count by (server_id, cluster, account, stream_name, stream_leader)"
                ' (count_over_time(jetstream_stream_last_seq{stream_leader!=""}[1h])))) - 1',
                "{{cluster}} {{account}}/{{stream_name}}",
            )
        ],
    ),
    (
        "NATS: messages in and out",
        "ops",
        [
            (f"sum by (server_id) (rate(gnatsd_varz_in_msgs[{RATE}]))", "in {{server_id}}"),
            (f"sum by (server_id) (rate(gnatsd_varz_out_msgs[{RATE}]))", "out {{server_id}}"),
        ],
    ),
    (
        "NATS: connections and slow consumers",
        "short",
        [
            ("max by (server_id) (gnatsd_varz_connections)", "connections {{server_id}}"),
            ("max by (server_id) (gnatsd_varz_slow_consumers)", "slow consumers {{server_id}}"),
        ],
    ),
]

DASHBOARDS: dict[str, tuple[str, str, list[Panel]]] = {
    "replication": (
        "cordon-replication",
        "Cordon — Replication",
        [
            (
                "Replication lag",
                "s",
                [("max by (region) (cordon_policy_replication_lag_seconds)", "{{region}}")],
            ),
            (
                "Revisions behind",
                "short",
                [("max by (region) (cordon_policy_replication_lag_revisions)", "{{region}}")],
            ),
            (
                "Commit → active at replicas (p50, p99)",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le, region) (rate(cordon_policy_propagation_seconds_bucket[{RATE}])))",
                        "p50 {{region}}",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le, region) (rate(cordon_policy_propagation_seconds_bucket[{RATE}])))",
                        "p99 {{region}}",
                    ),
                ],
            ),
            (
                "Heartbeat age",
                "s",
                [("max by (region) (cordon_policy_heartbeat_age_seconds)", "{{region}}")],
            ),
            (
                "Replica report age",
                "s",
                [
                    (
                        "max by (region, replica) (cordon_policy_replica_report_age_seconds)",
                        "{{region}}/{{replica}}",
                    )
                ],
            ),
            (
                "Stale replicas",
                "short",
                [("max by (region) (cordon_policy_stale_replicas)", "{{region}}")],
            ),
            (
                "Revision enforced by each replica",
                "short",
                [
                    (
                        "max by (region, replica) (cordon_policy_replica_revision)",
                        "{{region}}/{{replica}}",
                    )
                ],
            ),
            (
                "Rollout waves",
                "short",
                [
                    ("max by (pack) (cordon_policy_rollout_wave) + 1", "open wave {{pack}}"),
                    ("max by (pack) (cordon_policy_rollout_halted)", "halted {{pack}}"),
                ],
            ),
            (
                "Replicators",
                "short",
                [
                    ("sum(cordon_replicator_active)", "active"),
                    (
                        f"sum by (region) (rate(cordon_replicator_writes_total[{RATE}]))",
                        "writes/s {{region}}",
                    ),
                ],
            ),
        ],
    ),
    "regions": (
        "cordon-regions",
        "Cordon — Regions",
        [
            (
                "Requests by outcome",
                "reqps",
                [
                    (
                        f"sum by (outcome) (rate(cordon_gateway_requests_total[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
            ),
            (
                "Added latency (p50, p99)",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(cordon_gateway_overhead_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(cordon_gateway_overhead_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
            ),
            (
                "Record commit latency (p50, p99)",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(cordon_gateway_record_commit_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(cordon_gateway_record_commit_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
            ),
            (
                "Provider time (p99)",
                "s",
                [
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(cordon_gateway_upstream_seconds_bucket[{RATE}])))",
                        "p99",
                    )
                ],
            ),
            (
                "Provider failures",
                "short",
                [
                    (
                        f"sum by (target, reason) (rate(cordon_gateway_upstream_failures_total[{RATE}]))",
                        "{{target}} {{reason}}",
                    )
                ],
            ),
            (
                "Fail-open spool",
                "short",
                [
                    ("max by (instance) (cordon_gateway_spool_depth)", "depth {{instance}}"),
                    ("max by (instance) (cordon_gateway_spool_fill_ratio)", "fill {{instance}}"),
                    (
                        f"sum by (instance) (rate(cordon_gateway_fail_open_answers_total[{RATE}]))",
                        "fail-open answers/s {{instance}}",
                    ),
                ],
            ),
            (
                "Record commit failures",
                "short",
                [
                    (
                        f"sum by (instance) (rate(cordon_gateway_record_commit_failures_total[{RATE}]))",
                        "{{instance}}",
                    )
                ],
            ),
            (
                "Active pack revision",
                "short",
                [("max by (instance) (cordon_gateway_pack_revision)", "{{instance}}")],
            ),
            (
                "Tool calls by server, tool and outcome (MCP)",
                "reqps",
                [
                    (
                        f"sum by (server, tool, outcome) (rate(cordon_gateway_tool_calls_total[{RATE}]))",
                        "{{server}}/{{tool}} {{outcome}}",
                    )
                ],
            ),
            (
                "Tool calls: added latency (p50, p99) and tool server time (p99)",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le, server) (rate(cordon_gateway_tool_overhead_seconds_bucket[{RATE}])))",
                        "added p50 {{server}}",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le, server) (rate(cordon_gateway_tool_overhead_seconds_bucket[{RATE}])))",
                        "added p99 {{server}}",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le, server) (rate(cordon_gateway_tool_upstream_seconds_bucket[{RATE}])))",
                        "tool server p99 {{server}}",
                    ),
                ],
            ),
            *NATS_PANELS,
        ],
    ),
    "audit": (
        "cordon-audit",
        "Cordon — Audit",
        [
            (
                "Newest summary, age",
                "s",
                [
                    (
                        "time() - max by (region) (cordon_aggregator_newest_summary_timestamp_seconds)",
                        "{{region}}",
                    )
                ],
            ),
            (
                "AUDIT_SUMMARY behind each region's SUMMARY (NATS source lag)",
                "short",
                [
                    (
                        'max by (source_api) (jetstream_stream_source_lag{stream_name="AUDIT_SUMMARY", is_stream_leader="true"})',
                        "{{source_api}}",
                    )
                ],
            ),
            (
                "AUDIT_SUMMARY backlog",
                "short",
                [("max(cordon_aggregator_pending_messages)", "pending")],
            ),
            (
                "Ingest",
                "ops",
                [(f"sum(rate(cordon_aggregator_summaries_total[{RATE}]))", "messages/s")],
            ),
            (
                "Checkpoints",
                "short",
                [
                    (
                        f"sum by (region) (rate(cordon_aggregator_checkpoints_verified_total[{RATE}]))",
                        "verified/s {{region}}",
                    ),
                    (
                        f"sum by (region) (increase(cordon_aggregator_checkpoints_failed_total[{RATE}]))",
                        "FAILED {{region}}",
                    ),
                ],
            ),
            (
                "Gaps seen by the witness",
                "short",
                [("max by (region) (cordon_aggregator_summary_gaps)", "{{region}}")],
            ),
            (
                "Refused summaries",
                "short",
                [
                    (
                        f"sum by (region) (rate(cordon_aggregator_summaries_rejected_total[{RATE}]))",
                        "rejected {{region}}",
                    ),
                    (f"sum(rate(cordon_aggregator_bad_summaries_total[{RATE}]))", "unreadable"),
                ],
            ),
        ],
    ),
}


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    source = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "uid": uid,
        "title": title,
        "tags": ["cordon"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                }
            ]
        },
        "panels": [
            {
                "id": number,
                "type": "timeseries",
                "title": panel_title,
                "datasource": source,
                "gridPos": {
                    "h": 8,
                    "w": 12,
                    "x": 12 * ((number - 1) % 2),
                    "y": 8 * ((number - 1) // 2),
                },
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": source,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for i, (expr, legend) in enumerate(queries)
                ],
            }
            for number, (panel_title, unit, queries) in enumerate(panels, start=1)
        ],
    }


def render() -> dict[str, str]:
    """File name -> JSON text, as committed."""
    return {
        f"{name}.json": json.dumps(dashboard(*spec), indent=2) + "\n"
        for name, spec in DASHBOARDS.items()
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / "dashboards" / name).write_text(text)
        print(f"wrote deploy/grafana/dashboards/{name}")
