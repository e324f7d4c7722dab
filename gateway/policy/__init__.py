"""The active pack, applied: input rules on the prompt, output rules on the answer
(whole or streamed), who may see and call which tool (`tools`), and the pack
lifecycle in a replica (`activation`).

Packs as documents (parsing, signing) live in `cordon.packs`; this is enforcement.
"""

from gateway.policy import activation, engine, tools
from gateway.policy.activation import Active, PackState, Rejection, applied_report
from gateway.policy.engine import (
    HOLD_BACK_CHARS,
    Decision,
    Effect,
    Outcome,
    OutputPolicy,
    StreamFilter,
    apply_input,
    map_json,
    output_policy,
)

__all__ = [
    "HOLD_BACK_CHARS",
    "Active",
    "Decision",
    "Effect",
    "Outcome",
    "OutputPolicy",
    "PackState",
    "Rejection",
    "StreamFilter",
    "activation",
    "applied_report",
    "apply_input",
    "engine",
    "map_json",
    "output_policy",
    "tools",
]
