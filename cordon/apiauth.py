"""Bearer-token checks for the FastAPI apps (the regional audit API, the central view).

Imported only by those apps: a replica's request path has its own check and loads no
FastAPI (an import-linter contract)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import HTTPException, Request

from cordon.errors import AuthError, ForbiddenError
from cordon.tokens import Grant, Tokens

__all__ = ["require"]


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
