"""Cordon's shared, content-free contract: what every process may import.

- `cordon.errors`: the one exception hierarchy, under `CordonError`.
- `cordon.nats`: connections, durable consumers, the pipelined publisher, subjects,
  and every stream and bucket.
- `cordon.log`: the regional log's cryptography (keys, envelopes, enrolments, Merkle
  trees, checkpoints, offline bundles); it imports no NATS client.
- `cordon.packs`: policy packs as documents (parse, schema, sign and verify, lint).
- `cordon.settings`, `cordon.jsoncodec`, `cordon.ids`: small shared pieces.
- `cordon.estate`: a deployment's NATS estate: its description, nkey identities and the
  server config templates (package data), rendered by `cordon nats render`.

The CLI (`cordon_cli`) and the local topology (`cordon_dev`, not shipped) sit above the
processes and wire them together; nothing here imports them.

Nothing here reads a decision record's content: that is `gateway`'s job alone.
"""

from cordon.errors import CordonError

__all__ = ["CordonError"]
