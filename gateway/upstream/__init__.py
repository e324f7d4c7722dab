"""Calls to model providers: our own HTTP client (`httpclient`), provider targets from
a pack (`providers`), one call to one target (`client`), routing with circuit
breakers (`routing`), fallback across targets (`forwarding`) and the optional
external classifier (`classifier`)."""

from gateway.upstream import classifier, client, forwarding, httpclient, providers, routing
from gateway.upstream.client import UpstreamClient, UpstreamResponse
from gateway.upstream.forwarding import Forwarded, forward
from gateway.upstream.providers import Target
from gateway.upstream.routing import Breakers, Router

__all__ = [
    "Breakers",
    "Forwarded",
    "Router",
    "Target",
    "UpstreamClient",
    "UpstreamResponse",
    "classifier",
    "client",
    "forward",
    "forwarding",
    "httpclient",
    "providers",
    "routing",
]
