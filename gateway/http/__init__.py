"""The edge of a replica: the ASGI app (`app.create_app`), the call pipeline (`calls`),
one call's state and refusals (`call`), the stream relay (`relay`), the four provider
dialects (`dialects`), streamed answers (`streaming`), the ASGI
helpers (`asgi`), the connection guard against slow and surplus callers
(`connections`) and the server entry point (`server.run`, `cordon gateway run`).

Submodules are imported where used, so `cordon policy test` can use the dialects
without loading the server.
"""

__all__ = [
    "app",
    "asgi",
    "call",
    "calls",
    "connections",
    "dialects",
    "relay",
    "server",
    "streaming",
]
