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
from cordon_sdk.transport import ENGINE_ANSWER, Governor, transports_for

__all__ = ["govern"]

Client = TypeVar("Client")
ConfigPath = str | os.PathLike[str]
HTTP_MODULES = ("httpx2", "httpx")  # the SDKs' HTTP libraries, newest first
DEFAULT_AGENT = "application"
DEFAULT_STATE = Path(".cordon")


def govern(
    client: Client,
    *,
    config: ConfigPath | Sequence[ConfigPath] | None = None,
    policy: str | None = None,
    pack_trust: Sequence[str] = (),
    pack_name: str = "default",
    policy_interval: str | float = "10s",
    agent: str = DEFAULT_AGENT,
    state_dir: ConfigPath | None = None,
) -> Client:
    """`client` (an `openai.OpenAI`, `AsyncOpenAI`, `anthropic.Anthropic` or
    `AsyncAnthropic`), governed by the configuration `config` (a file, or files merged
    in order, as `cordon sidecar --config` reads them), or by the signed pack a gateway
    or sidecar at `policy` serves (`pack_trust`: the keys of the pack's signers;
    `pack_name`: the pack; `policy_interval`: how often it is asked for changes; the
    `policy` token in `CORDON_POLICY_TOKEN`). `agent` is the
    identity this application's records carry; its log and keys are kept under
    `<state_dir>/sdk/worker-N` (default: the configuration's `state_dir`, or `./.cordon`)."""
    api = _api_of(client)
    state = Path(state_dir) if state_dir is not None else None
    if policy is not None:
        if config is not None:
            raise ConfigError("govern() takes config= or policy=, not both")
        block: dict[str, Any] = {"policy_url": policy, "pack_name": pack_name}
        block["policy_poll_interval"] = policy_interval
        files = [_policy_file(block, pack_trust, state or DEFAULT_STATE)]
    elif config is None:
        raise ConfigError("govern() needs config= (a configuration file) or policy= (a URL)")
    elif isinstance(config, str | os.PathLike):
        files = [Path(config)]
    else:
        files = [Path(p) for p in config]
    engine = engine_for(files, agent, state)
    governed = _wire(client, type(client), Governor(engine, api, str(client.base_url)))  # type: ignore[attr-defined]
    governed.__class__ = _governed(type(governed))
    return governed  # type: ignore[no-any-return]


def _wire(client: Any, cls: type[Any], governor: Governor) -> Any:
    """A copy of `client` (by `cls`'s own `copy`) whose HTTP client sends model calls
    to `governor`'s engine, around the client's own HTTP client (unwrapped if it is
    already ours)."""
    inner = client._client
    ours_before = getattr(inner, "_transport", None)
    if isinstance(getattr(ours_before, "governor", None), Governor):
        inner = ours_before.inner  # type: ignore[union-attr]
    http = _http_module(inner)
    sync_transport, async_transport = transports_for(http)
    if isinstance(inner, http.AsyncClient):
        ours = http.AsyncClient(transport=async_transport(governor, inner), timeout=inner.timeout)
    else:
        ours = http.Client(transport=sync_transport(governor, inner), timeout=inner.timeout)
    return cls.copy(client, http_client=ours)


def _policy_file(block: dict[str, Any], trust: Sequence[str], state: Path) -> Path:
    """The configuration `govern(policy=...)` stands for, kept in the state directory so
    `cordon sidecar key|export --config <it> --sdk-worker N` read this log as any other."""
    import hashlib
    import json

    if not trust:
        raise ConfigError(
            "govern(policy=...) enforces only packs their owners signed: name their keys "
            "in pack_trust (a sidecar's own: `cordon sidecar key`, policy_public_key)"
        )
    block = {**block, "pack_trust": list(trust), "state_dir": str(state.resolve())}
    text = "# written by cordon_sdk.govern(policy=...)\n" + f"gateway: {json.dumps(block)}\n"
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state / f"govern-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.exists() or path.read_text() != text:
        from cordon.files import write_private

        write_private(path, text)  # 0600: the URL may hold credentials
    return path


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
        if rule is not None and response.extensions.get(ENGINE_ANSWER):
            error.__class__ = _blocked(type(error))
            error.rule = rule
            error.record_id = response.headers.get("x-cordon-record-id")
        return error

    def copy(self: Any, *args: Any, **kwargs: Any) -> Any:
        """A copy (`with_options`) governed again: by the same engine, for its own base
        URL, around the HTTP client it was given if any, so a copy never sends one
        provider's key to another, nor a call around the rules."""
        made = cls.copy(self, *args, **kwargs)
        governor = self._client._transport.governor
        api, base = governor.api, str(made.base_url)
        return _wire(made, cls, Governor(governor.engine, api, base))

    attributes = {"_make_status_error": _make_status_error, "copy": copy, "with_options": copy}
    return type(cls.__name__, (cls,), attributes)


def _blocked(cls: type[Exception]) -> type[Exception]:
    if cls not in _BLOCKED:
        _BLOCKED[cls] = type(cls.__name__, (cls, PolicyBlocked), {"__module__": cls.__module__})
    return _BLOCKED[cls]
