"""Cordon's umbrella: the `cordon` command line and the local dev topology.

The three product packages (`gateway`, `replicator`, `aggregator`) do the work; this
package only wires them together for a person at a terminal or a test session.
"""

from pathlib import Path

# Where `cordon dev up` keeps state, logs and endpoints.json; the policy CLI reads it.
DEV_DIR = Path(".cordon/dev")
