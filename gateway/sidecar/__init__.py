"""The sidecar: the gateway as one small process beside an application, enforcing the
configuration file our users already have (`config`), with its own signed log
(`backplane`, `sealer`, `export`) and its policy followed without restarts (`policy`);
`server` runs it (`cordon sidecar`). Local mode loads no NATS client and no FastAPI.
"""

__all__ = ["backplane", "config", "export", "keys", "policy", "sealer", "server"]
