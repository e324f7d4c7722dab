"""Stream, bucket and subject names: the NATS contract of docs/architecture.md in one place.

Every subject carries its region token, so nothing one region publishes can be
captured by another region's or the central streams.
"""

RECORDS_STREAM = "RECORDS"
SUMMARY_STREAM = "SUMMARY"
POLICY_STREAM = "POLICY"
AUDIT_SUMMARY_STREAM = "AUDIT_SUMMARY"
POLICY_BUCKET = "policy"
APPLIED_BUCKET = "applied"
REPLICATOR_BUCKET = "replicator"
REPLICATOR_LEASE_BUCKET = "replicator_lease"
# A lease entry ages out this long after its last refresh (the bucket's max age).
REPLICATOR_LEASE_TTL_S = 4.0
ROLLOUT_KEY_PREFIX = "rollout."
PACK_KEY_PREFIX = "pack."


def record_subject(region: str, replica: str) -> str:
    return f"cordon.rec.{region}.{replica}"


def records_filter(region: str) -> str:
    return f"cordon.rec.{region}.>"


def enrolment_subject(region: str) -> str:
    return f"cordon.enrol.{region}"


def summary_subject(region: str, replica: str) -> str:
    return f"cordon.sum.{region}.{replica}"


def summaries_filter(region: str) -> str:
    return f"cordon.sum.{region}.>"


def summary_region(subject: str) -> str | None:
    """The region a summary subject names (`cordon.sum.<region>.<replica>`), or None."""
    tokens = subject.split(".")
    if len(tokens) != 4 or tokens[:2] != ["cordon", "sum"]:
        return None
    return tokens[2]


def checkpoint_subject(region: str) -> str:
    return f"cordon.ckpt.{region}"


def policy_subject(pack_name: str) -> str:
    return f"cordon.policy.{pack_name}"


def pack_key(pack_name: str) -> str:
    return f"{PACK_KEY_PREFIX}{pack_name}"


def domain_api(domain: str) -> str:
    """The JetStream API prefix of another domain, reachable over the leaf."""
    return f"$JS.{domain}.API"
