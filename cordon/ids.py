"""UUIDv7 record ids: time-ordered, so ids sort the way records were made.

The 74 random bits come from a generator seeded once from the OS: ids need to be
unique, not secret, and a getrandom() syscall per id costs more than the rest.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid

_random = random.Random(os.urandom(32))
_RECORD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_record_id(value: object) -> bool:
    """Whether `value` is a record id as Cordon writes them (a UUID, lower-case hex): the
    one form a record id given by a caller is let in or carried out of a region in."""
    return isinstance(value, str) and _RECORD_ID.fullmatch(value) is not None


def uuid7() -> str:
    unix_ms = time.time_ns() // 1_000_000
    rand = _random.getrandbits(74)
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 62) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b: 62 bits
    return str(uuid.UUID(int=value))
