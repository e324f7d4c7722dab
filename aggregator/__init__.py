"""The central cross-region audit view.

It sees only what may cross regions: metadata-only summaries (and, later, signed
checkpoints), sourced from every region's `SUMMARY` into the central
`AUDIT_SUMMARY` stream. It never connects to a regional `AUDIT` account.
"""
