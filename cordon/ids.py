"""UUIDv7 record ids: time-ordered, so ids sort the way records were made.

The 74 random bits come from a generator seeded once from the OS: ids need to be
unique, not secret, and a getrandom() syscall per id costs more than the rest.
"""

from __future__ import annotations

import os
import random
import time
import uuid

_random = random.Random(os.urandom(32))


def uuid7() -> str:
    unix_ms = time.time_ns() // 1_000_000
    rand = _random.getrandbits(74)
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 62) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b: 62 bits
    return str(uuid.UUID(int=value))
