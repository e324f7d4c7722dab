"""A deployment's NATS estate: its one description (central and every region, each one
server or a JetStream cluster), each role's nkey identity, and the server configs
rendered from the templates shipped with this package.

`cordon nats identities` / `cordon nats render` use it for a deployment; the local
topology (`cordon_dev`) uses the very same rendering, so what tests boot is what ships.
It imports no NATS client.
"""

from cordon.estate.identities import Identity, new_identity, public_key_of
from cordon.estate.plan import (
    ACCOUNTS,
    CENTRAL_ROLES,
    REGION_ROLES,
    Cluster,
    Description,
    Estate,
    Material,
    Node,
    NodeTls,
    describe,
    identity_names,
    render,
    replicas_for,
)

__all__ = [
    "ACCOUNTS",
    "CENTRAL_ROLES",
    "REGION_ROLES",
    "Cluster",
    "Description",
    "Estate",
    "Identity",
    "Material",
    "Node",
    "NodeTls",
    "describe",
    "identity_names",
    "new_identity",
    "public_key_of",
    "render",
    "replicas_for",
]
