"""The regional log's cryptography, usable offline: it imports no NATS client.

`keys` (Ed25519 signing keys and key ids), `envelope` (signed records), `enrolment`
(replica keys vouched for by the regional key; the `Keyring` auditors build),
`merkle` (RFC 6962 / 9162 trees and proofs), `checkpoints` (signed tree heads),
`summary_chain` (what authenticates a region's summaries centrally) and
`bundle` (an exported range of records, and its verification by `cordon audit verify`).
"""

from cordon.log import bundle, checkpoints, enrolment, envelope, keys, merkle, summary_chain
from cordon.log.enrolment import Keyring, enrol, load_signer
from cordon.log.keys import SigningKey, public_bytes

__all__ = [
    "Keyring",
    "SigningKey",
    "bundle",
    "checkpoints",
    "enrol",
    "enrolment",
    "envelope",
    "keys",
    "load_signer",
    "merkle",
    "public_bytes",
    "summary_chain",
]
