"""The regional data plane: the only code that reads a prompt, an answer or a record.

Sub-packages, top layer first (import-linter keeps the arrows pointing down):

- `http`: the ASGI app, the four provider dialects, streaming (`cordon gateway run`).
- `runtime` (module): one replica's long-lived parts, wired together.
- `ledger`: regional processes that read full records: the sealer, summaries, the
  audit index and the auditor API (`cordon gateway seal`, `cordon gateway audit-api`).
- `records`: building, signing, committing and spooling decision records.
- `policy`: evaluating the active pack, and activating new ones.
- `upstream`: provider calls (HTTP client, targets, routing, fallback, breakers,
  the external classifier).
- `identity`: API keys and delegation tokens.
- `settings`, `metrics` (modules): a replica's settings file and its Prometheus metrics.
"""

__all__ = [
    "http",
    "identity",
    "ledger",
    "metrics",
    "policy",
    "records",
    "runtime",
    "settings",
    "upstream",
]
