"""Ed25519 sign and verify, µs per call, on the backends of `cordon.log.keys`:
`cryptography` (the regional processes'), the libcrypto `ssl` maps, over ctypes
(`cordon.log.ed25519_openssl`), and that with signatures through the system's libsodium
(`cordon.log.ed25519_sodium`, the sidecar's and the SDK's where it is installed). The
message is 400 bytes, about a record's envelope payload; each figure is the best of
five rounds.

    .venv/bin/python bench/ed25519.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cordon.log import keys

MESSAGE = b"x" * 400


def per_call_us(call: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000, help="calls per round")
    calls = parser.parse_args().calls
    print(f"{'backend':<14}{'sign µs':>10}{'verify µs':>12}")
    backends = [("cryptography", keys._cryptography()), ("openssl", keys._openssl())]
    try:
        backends.append(("libsodium", keys._sodium(keys._openssl())))
    except (OSError, AttributeError) as exc:
        print(f"(no libsodium here: {exc})")
    for name, backend in backends:
        key = backend.private.from_private_bytes(bytes(range(32)))
        public = backend.public.from_public_bytes(key.public_key().public_bytes_raw())
        signature = key.sign(MESSAGE)
        sign = per_call_us(lambda: key.sign(MESSAGE), calls)  # noqa: B023 (used at once)
        verify = per_call_us(lambda: public.verify(signature, MESSAGE), calls)  # noqa: B023
        print(f"{name:<14}{sign:>10.1f}{verify:>12.1f}")


if __name__ == "__main__":
    main()
