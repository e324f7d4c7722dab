"""Central → regional policy fan-out, and the lag it takes to get there.

Reads signed packs from the central `POLICY` stream, verifies each before it goes
anywhere, and writes it into every region's `policy` KV through that region's
JetStream domain. One durable consumer per region, so a region that is down holds
no other back and catches up from where it stopped.
"""
