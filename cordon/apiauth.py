"""Bearer-token checks for the FastAPI apps (the regional audit API, the central view).

Imported only by those apps: a replica's request path has its own check and loads no
FastAPI (an import-linter contract)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel

from cordon.errors import AuthError, ForbiddenError
from cordon.tokens import Grant, Tokens

__all__ = ["Problem", "errors", "require"]


class Problem(BaseModel):
    """Every error these APIs answer with (FastAPI's own 422 aside)."""

    detail: str


_WHY = {
    400: "The request contradicts itself (the detail says how)",
    401: "No bearer token, or one these APIs do not know",
    403: "The token's role or region does not reach this",
    404: "Nothing of that name or in that range",
    409: "Not yet: no checkpoint covers it, or the index is catching up; retry shortly",
    503: "A dependency is away (NATS, the access log): nothing was released",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the Problem body; 401 and
    403 always (every data route needs a token)."""
    return {
        status: {"model": Problem, "description": _WHY[status]}
        for status in sorted({401, 403, *statuses})
    }


def require(tokens: Tokens, roles: Iterable[str], region: str | None) -> Callable[[Request], Grant]:
    """A FastAPI dependency: the caller's grant, or 401 / 403 as JSON (`{"detail": ...}`)."""
    wanted = tuple(roles)

    def check(request: Request) -> Grant:
        try:
            return tokens.authorize(request.headers.get("authorization"), wanted, region)
        except ForbiddenError as exc:
            raise HTTPException(403, str(exc)) from exc
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc

    return check
