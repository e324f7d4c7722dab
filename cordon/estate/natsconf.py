"""Render the NATS server config templates (`cordon/estate/templates/`, shipped in the
package) for one concrete deployment.

The templates are what a real deployment uses (`cordon nats render`); tests and the
local topology render the very same files with local ports and store dirs, so the
topology under test is the topology we ship.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources

from cordon.errors import TemplateError

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill every `{{name}}` in `template`; a missing name is an error, not a blank."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"no value for placeholder {{{{{name}}}}}")
        return str(values[name])

    return _PLACEHOLDER.sub(substitute, template)


def template(name: str) -> str:
    """The text of one shipped template (`central.conf`, `region.conf`): package data,
    so an installed Cordon renders the same files a source checkout does."""
    return resources.files("cordon.estate").joinpath("templates", name).read_text()


def render_file(name: str, values: Mapping[str, object]) -> str:
    return render(template(name), values)


def leaf_users_block(leaf_keys: Mapping[str, str]) -> str:
    """Central's XR users that the regions' leaf connections log in as, one per region
    (`leaf_keys`: region -> public nkey).

    What a region's server as a whole may send to central (its users' own allow-lists
    are the first line): nothing into central's or another region's JetStream API, no
    pack into POLICY, no bucket writes, no summary or checkpoint of another region."""
    regions = sorted(leaf_keys)
    lines = []
    for region in regions:
        others = [r for r in regions if r != region]
        deny = [
            "$JS.API.>",
            "$JS.central.API.>",
            "cordon.policy.>",
            "$KV.>",
            *(f"$JS.{other}.API.>" for other in others),
            *(f"cordon.sum.{other}.>" for other in others),
            *(f"cordon.ckpt.{other}" for other in others),
        ]
        subjects = ", ".join(f'"{s}"' for s in deny)
        lines.append(
            f'      # leaf-{region}\n      {{nkey: "{leaf_keys[region]}",'
            f" permissions: {{publish: {{deny: [{subjects}]}}}}}}"
        )
    return "\n".join(lines)


def publisher_region_subjects(regions: Iterable[str]) -> str:
    """What `cordon policy status` reads in each region's domain: the `applied` bucket's
    messages, nothing else."""
    lines = [
        f'            "$JS.{region}.API.STREAM.MSG.GET.KV_applied",' for region in sorted(regions)
    ]
    return "\n".join(lines)


def replicator_region_subjects(regions: Iterable[str]) -> str:
    """What the replicator may send into each region's domain: the last pack in the
    `policy` bucket and compare-and-set writes to it, and reads of the `applied` bucket
    (what replicas report). Nothing else of any region."""
    lines = [
        f'            "$JS.{region}.API.STREAM.MSG.GET.KV_policy", "$JS.{region}.API.$KV.policy.>",'
        f'\n            "$JS.{region}.API.STREAM.MSG.GET.KV_applied",'
        for region in sorted(regions)
    ]
    return "\n".join(lines)


def cluster_block(
    name: str,
    listen: str,
    routes: Iterable[str],
    tls: tuple[str, str, str] | None,
) -> str:
    """The `cluster {}` of one node of a JetStream cluster (`routes`: every node's
    `host:port`, its own included; the server skips itself), or "" for a single server.

    `tls` is (cert, key, CA) from the cluster's own route CA, verified both ways: a
    node of another region, or anything else that reaches the port, cannot join and
    so read what the cluster carries."""
    urls = ", ".join(f'"nats-route://{route}"' for route in routes)
    if not urls:
        return ""
    lines = [
        "cluster {",
        f'  name: "{name}"',
        f'  listen: "{listen}"',
        f"  routes: [{urls}]",
        "  # Clients dial the URLs they are given (every node), not addresses learned here.",
        "  no_advertise: true",
    ]
    if tls is not None:
        cert, key, ca = tls
        lines += [
            "  tls {",
            f'    cert_file: "{cert}"',
            f'    key_file: "{key}"',
            f'    ca_file: "{ca}"',
            "    verify: true",
            "    timeout: 5",
            "  }",
        ]
    return "\n".join([*lines, "}"]) + "\n"


def quoted_list(items: Iterable[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)
