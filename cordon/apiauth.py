"""What the two FastAPI apps (the regional audit API, the central view) share: the
bearer-token check, the one answer every Cordon error becomes, and the OpenAPI
description of those answers.

An error's HTTP status is the class attribute `status` of the `cordon.errors` class a
route raises; `answer_error` is the only place that turns one into a response, and
`errors(...)` documents the same classes, so a route's document and its answers cannot
drift apart.

Imported only by those apps: a replica's request path has its own check and loads no
FastAPI (an import-linter contract)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cordon.errors import (
    AuthError,
    CordonError,
    ForbiddenError,
    NotFoundError,
    NotYetError,
    QueryError,
    UnavailableError,
)
from cordon.tokens import Grant, Tokens

__all__ = [
    "Problem",
    "answer_error",
    "authorize",
    "errors",
    "install_error_answers",
]

log = logging.getLogger("cordon.api")


class Problem(BaseModel):
    """Every error these APIs answer with (FastAPI's own 422 aside)."""

    detail: str


# The classes these APIs raise, by the status each one is (cordon.errors). A route
# documents a status by naming it; its description is the class's own docstring.
RAISED: dict[int, type[CordonError]] = {
    cls.status: cls
    for cls in (QueryError, AuthError, ForbiddenError, NotFoundError, NotYetError, UnavailableError)
}
# Where a route's own rule says more than the class docstring can (e.g. which two
# parameters contradict each other), it passes its own description.
Documented = int | type[CordonError] | tuple[int | type[CordonError], str]


def errors(*documented: Documented) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` for these errors, each with the Problem body: a status, a
    `cordon.errors` class, or either with a description of the route's own rule. 401
    and 403 always (every data route needs a token)."""
    found: dict[int, str] = {401: _describe(AuthError), 403: _describe(ForbiddenError)}
    for entry in documented:
        kind, why = entry if isinstance(entry, tuple) else (entry, None)
        status = kind if isinstance(kind, int) else kind.status
        found[status] = why or _describe(kind if not isinstance(kind, int) else RAISED[status])
    return {status: {"model": Problem, "description": found[status]} for status in sorted(found)}


def _describe(cls: type[CordonError]) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")


def answer_error(request: Request, exc: Exception) -> JSONResponse:
    """The answer of a Cordon error that reached a route: `exc.status`, `{"detail": ...}`;
    a 401 also says which scheme to use. An error without a status of its own is the
    server's fault (500), and its text may name internals (a database, a path), so the
    caller gets a generic detail and the log gets the rest. So does any other 5xx (a
    database or NATS away): its class says what happened, the log says the rest."""
    status = exc.status if isinstance(exc, CordonError) else 500
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    detail = str(exc)
    if status == 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        detail = "internal error; the server's log has the cause"
    elif status > 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        what = _describe(type(exc)) if isinstance(exc, CordonError) else "unavailable"
        detail = f"{what}; the server's log has the cause"
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_answers(app: FastAPI) -> None:
    """Make `answer_error` the one answer of every Cordon error raised in `app`."""
    app.add_exception_handler(CordonError, answer_error)


def authorize(request: Request, tokens: Tokens, roles: Iterable[str], region: str | None) -> Grant:
    """The caller's grant, or `AuthError` / `ForbiddenError` (answered 401 / 403)."""
    return tokens.authorize(request.headers.get("authorization"), roles, region)
