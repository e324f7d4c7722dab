"""Cordon's regional data plane and the contract every other package shares.

A gateway replica authenticates the caller, enforces the active policy pack,
forwards the call to the provider and commits a signed decision record to the
region's `RECORDS` stream before the caller sees the answer. The sealer turns those
records into metadata-only summaries that may leave the region. Nothing outside
this package ever reads a full record.
"""
