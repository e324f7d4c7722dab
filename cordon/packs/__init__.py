"""Policy packs as documents: what a policy owner writes, signs and publishes.

`document` parses and checks a pack into the rules a gateway enforces (`Pack`);
`signing` signs and verifies the statement that travels; `detectors`, `lexicon` and
`classifier` are a pack's vocabulary; `tools` pins an MCP tool's definition by digest;
`rollout` is how the replicator stages it. The
replicator verifies packs with this and the gateway enforces them with it.
`cordon.packs.lint` (line-numbered problems against the JSON Schema) is imported on its
own: it loads jsonschema, which a gateway never needs.
"""

from cordon.packs import classifier, detectors, document, lexicon, rollout, signing, tools
from cordon.packs.classifier import ClassifierHook
from cordon.packs.document import (
    DEFAULT_PACK,
    LEVELS,
    Pack,
    Rule,
    canonical_bytes,
    document_hash,
    pack_name,
    parse_document,
    parse_statement,
)

__all__ = [
    "DEFAULT_PACK",
    "LEVELS",
    "ClassifierHook",
    "Pack",
    "Rule",
    "canonical_bytes",
    "classifier",
    "detectors",
    "document",
    "document_hash",
    "lexicon",
    "pack_name",
    "parse_document",
    "parse_statement",
    "rollout",
    "signing",
    "tools",
]
