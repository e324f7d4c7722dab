"""The edge of a replica: the ASGI app (`app.create_app`), the call pipeline (`calls`),
the four provider dialects (`dialects`), streamed answers (`streaming`), the ASGI
helpers (`asgi`), the connection guard against slow and surplus callers
(`connections`) and the server entry point (`server.run`, `cordon gateway run`).

Submodules are imported where used, so `cordon policy test` can use the dialects
without loading the server.
"""

__all__ = ["app", "asgi", "calls", "connections", "dialects", "server", "streaming"]
