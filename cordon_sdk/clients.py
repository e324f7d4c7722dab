"""`govern(client, config=...)`: the application's own OpenAI or Anthropic client, with
every model call it makes enforced and recorded in-process.

The governed client is a copy of the client (same class, same surface: `chat.completions`,
`responses`, `embeddings`, `messages`, streaming, `with_raw_response`, `with_options`)
whose HTTP client sends model calls through the engine (`cordon_sdk.transport`). A call
a rule refuses raises the SDK's own error for the status, made a `PolicyBlocked` too,
so an existing `except openai.APIStatusError` still catches it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from cordon.errors import ConfigError, PolicyBlocked
from cordon_sdk.engine import engine_for
from cordon_sdk.transport import Governor, transports_for

__all__ = ["govern"]

Client = TypeVar("Client")
ConfigPath = str | os.PathLike[str]
HTTP_MODULES = ("httpx2", "httpx")  # the SDKs' HTTP libraries, newest first
DEFAULT_AGENT = "application"


def govern(
    client: Client,
    *,
    config: ConfigPath | Sequence[ConfigPath],
    agent: str = DEFAULT_AGENT,
    state_dir: ConfigPath | None = None,
) -> Client:
    """`client` (an `openai.OpenAI`, `AsyncOpenAI`, `anthropic.Anthropic` or
    `AsyncAnthropic`), governed by the configuration `config` (a file, or files merged
    in order, as `cordon sidecar --config` reads them). `agent` is the identity this
    application's records carry; `state_dir` holds its log and keys (default: the
    configuration's `state_dir`, under `sdk/`)."""
    api = _api_of(client)
    files = [Path(config)] if isinstance(config, str | os.PathLike) else [Path(p) for p in config]
    engine = engine_for(files, agent, Path(state_dir) if state_dir is not None else None)
    inner = client._client  # type: ignore[attr-defined]
    http = _http_module(inner)
    sync_transport, async_transport = transports_for(http)
    governor = Governor(engine, api, str(client.base_url))  # type: ignore[attr-defined]
    if isinstance(inner, http.AsyncClient):
        ours = http.AsyncClient(transport=async_transport(governor, inner), timeout=inner.timeout)
    else:
        ours = http.Client(transport=sync_transport(governor, inner), timeout=inner.timeout)
    governed = client.with_options(http_client=ours)  # type: ignore[attr-defined]
    governed.__class__ = _governed(type(governed))
    return governed  # type: ignore[no-any-return]


def _api_of(client: object) -> str:
    package = type(client).__module__.split(".")[0]
    if package not in ("openai", "anthropic"):
        raise ConfigError(
            f"govern() takes an openai or anthropic client, not {type(client).__name__}"
        )
    if "Azure" in type(client).__name__:  # its deployments' URLs are not governed yet
        raise ConfigError(
            f"govern() does not take {type(client).__name__} yet: point the client at a "
            "Cordon sidecar or gateway instead"
        )
    return package


def _http_module(inner: object) -> ModuleType:
    for name in HTTP_MODULES:
        module = sys.modules.get(name)
        if module is not None and isinstance(inner, module.Client | module.AsyncClient):
            return module
    raise ConfigError(f"the client's HTTP client is not httpx's: {type(inner).__name__}")


_GOVERNED: dict[type[Any], type[Any]] = {}
_BLOCKED: dict[type[Exception], type[Exception]] = {}


def _governed(cls: type[Any]) -> type[Any]:
    """`cls` whose status errors for calls a rule refused are also `PolicyBlocked`; its
    copies (`with_options`) are made of it too."""
    if cls in _GOVERNED.values():
        return cls
    if cls not in _GOVERNED:
        _GOVERNED[cls] = _subclass(cls)
    return _GOVERNED[cls]


def _subclass(cls: type[Any]) -> type[Any]:
    def _make_status_error(self: Any, err_msg: str, *, body: object, response: Any) -> Any:
        error = cls._make_status_error(self, err_msg, body=body, response=response)
        rule = response.headers.get("x-cordon-blocked-by")
        if rule is not None:
            error.__class__ = _blocked(type(error))
            error.rule = rule
            error.record_id = response.headers.get("x-cordon-record-id")
        return error

    return type(cls.__name__, (cls,), {"_make_status_error": _make_status_error})


def _blocked(cls: type[Exception]) -> type[Exception]:
    if cls not in _BLOCKED:
        _BLOCKED[cls] = type(cls.__name__, (cls, PolicyBlocked), {"__module__": cls.__module__})
    return _BLOCKED[cls]
