"""Work handed to an event loop from any thread.

The in-process SDK serves calls on its callers' threads, while the objects they touch
(the local log, the region's shipper) keep their own tasks on the engine's loop: what a
caller's thread starts there goes through `call_on`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable

__all__ = ["call_on"]


def call_on(loop: asyncio.AbstractEventLoop | None, work: Callable[[], None]) -> None:
    """Run `work` on `loop`: now if this thread is running it (or `loop` is None: the
    caller's own), else handed to it, in a context of its own (not the calling call's);
    nothing if `loop` is already closed (its owner is stopping, and its tasks with it)."""
    if loop is None or loop is asyncio._get_running_loop():
        work()
        return
    with contextlib.suppress(RuntimeError):  # closed
        loop.call_soon_threadsafe(work, context=contextvars.Context())
