"""A synchronous client's whole call served in the calling thread.

Handing a call to the engine's thread and back costs two wake-ups of a thread (about
50 µs on a quiet machine, far more on a busy one: half the SDK's budget), so a call
that is answered whole runs the gateway's app on an event loop of the calling thread's
own, made on its first call and kept for the next ones. The records are the engine's:
the same log, key and sequence, committed in-line (`LocalLog.append_now`), so a call
served here is committed before it is answered exactly as on the engine's thread.

A stream still goes through the engine's thread (`Exchange`): its answer arrives while
the application reads it, which needs a loop running all along. So does any call made
from a thread already running an event loop (a synchronous client used inside a
coroutine), and any made while the log fsyncs each record (`log_fsync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from cordon_sdk.exchange import Message
from gateway.http.asgi import Receive, Scope, Send
from gateway.upstream.blocking import BLOCKING, WHILE_WAITING
from gateway.upstream.httpclient import forget_loop

__all__ = ["serve_here", "usable_here"]

ASGIApp = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]


class _ThreadLoop:
    """A thread's loop, and the process it was made in (a forked child makes its own:
    the parent's epoll and wake-up descriptors are not the child's). When the thread
    ends, its thread-local goes, and this with it: the loop is closed, with the idle
    connections it kept (a server that starts a thread per request leaks nothing)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        # Not at exit: a daemon thread may still be using its loop then.
        weakref.finalize(self, _retire, self.loop).atexit = False


def _retire(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(Exception):  # at exit, already closed, or another loop runs
        _finish_pending(loop)
    forget_loop(loop)
    with contextlib.suppress(Exception):
        loop.close()


def _finish_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Run what was scheduled on the loop and not yet run, for a second at most: while a
    call is stepped the loop counts as running, and the application's own objects may
    schedule their closing on it then (an `AsyncOpenAI` client the garbage collector
    takes closes its connections in a task)."""
    pending = asyncio.all_tasks(loop)
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=1.0))


class _Loops(threading.local):
    mine: _ThreadLoop | None = None


_LOOPS = _Loops()


def usable_here() -> bool:
    """Whether this thread can run a call on a loop of its own: it runs none already."""
    return asyncio._get_running_loop() is None


def _loop() -> asyncio.AbstractEventLoop:
    mine = _LOOPS.mine
    if mine is None or mine.pid != os.getpid() or mine.loop.is_closed():
        mine = _LOOPS.mine = _ThreadLoop()
    return mine.loop


def serve_here(
    app: ASGIApp, scope: Scope, body: bytes, while_waiting: Callable[[], None] | None = None
) -> list[Message]:
    """Run `app` for one request in this thread; what it sent, in order.
    `while_waiting` runs while the provider answers (gateway.upstream.blocking)."""
    sent: list[Message] = []
    request: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> Message:
        nonlocal request
        if request is not None:
            message, request = request, None
            return message
        return {"type": "http.disconnect"}  # the caller waits for the whole answer

    async def send(message: Message) -> None:
        sent.append(message)

    context = contextvars.copy_context()  # what the call sets stays with the call
    call, loop = app(scope, receive, send), _loop()
    waiting = context.run(_first_steps, loop, call, while_waiting)
    if waiting is not DONE:
        rest = loop.create_task(_rest(call, waiting), context=context)
        try:
            loop.run_until_complete(rest)
        except BaseException:
            # Interrupted (Ctrl-C): the call is cancelled and finished here, not left on
            # this thread's loop to resume in the middle of its next call.
            rest.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(rest)
            raise
    return sent


DONE = object()


def _first_steps(
    loop: asyncio.AbstractEventLoop,
    call: Coroutine[Any, Any, None],
    while_waiting: Callable[[], None] | None,
) -> Any:
    """Step `call` by hand, with blocking I/O, for as long as it waits for nothing (a
    whole answer from a provider on a kept-alive connection: the common case); what it
    first waits for, if it does, or `DONE`. A task and the loop's turns cost more than
    the call's own steps (`run_until_complete` alone is several microseconds)."""
    BLOCKING.set(True)  # nothing else runs here: see gateway.upstream.blocking
    WHILE_WAITING.set(while_waiting)
    asyncio._set_running_loop(loop)  # what the call's code asks for
    try:
        return call.send(None)
    except StopIteration:
        return DONE
    finally:
        asyncio._set_running_loop(None)


async def _rest(call: Coroutine[Any, Any, None], waiting: Any) -> None:
    """The rest of a call that waited for something, on the loop, as its task would:
    what interrupts the wait (a cancellation, an interrupt) is passed on into the call."""
    while True:
        try:
            if waiting is None:  # a bare yield: another turn of the loop
                await asyncio.sleep(0)
            else:
                await asyncio.wait((waiting,))  # done, whatever its outcome: the call reads it
        except BaseException as exc:
            try:
                waiting = call.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting = call.send(None)
        except StopIteration:
            return
