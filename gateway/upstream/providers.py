"""Provider targets from a pack's `providers.targets[]`, resolved at activation.

A target serves one caller API (`api`: OpenAI's or Anthropic's) over one upstream wire
(`wire`): the API itself, or Azure OpenAI's (`provider.api: azure-openai`, or a base URL
ending in `/openai/deployments` as the seeds print it): the caller's model names the
deployment (`deployments:` maps other names), `api-version` is added
(`provider.api_version`, default AZURE_API_VERSION) and the key goes in `api-key`, or as a
Microsoft Entra bearer token (`provider.auth: entra`). A base URL ending in `/openai/v1`
is Azure's v1 API: the model stays in the body, no `api-version`.

`base_url` may use `${VAR}` and `${VAR:-default}`; the key comes from
`secret_key_ref: {env: NAME}` or `{store: NAME}` (a file NAME in the secret store
directory). Everything is resolved when the pack is activated, so a missing
variable or secret rejects the pack with a clear reason instead of failing
requests later. Keys never appear in a repr, a log line, a record or a metric.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cordon.errors import PackError
from cordon.secretrefs import Secret, secret_source

APIS = ("openai", "anthropic")
AZURE = "azure-openai"
BEDROCK = "bedrock"  # Amazon Bedrock's Converse API behind OpenAI's chat (upstream/bedrock.py)
GEMINI = "gemini"  # Google Gemini's generateContent behind OpenAI's chat (upstream/gemini.py)
TRANSLATED = (BEDROCK, GEMINI)  # wires the gateway translates, for callers of either API
AZURE_API_VERSION = "2024-10-21"  # Azure OpenAI's GA data-plane version of the deployment API
AZURE_AUTH = ("api-key", "entra")
SERVICE_ACCOUNT = "service-account"  # gemini: a Vertex AI service account's key file
ORDERED, ROUND_ROBIN = "ordered", "round-robin"  # providers.balance
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    first_byte: float = 60.0
    total: float = 600.0


@dataclass(frozen=True)
class Target:
    id: str
    api: str
    base_url: str
    secret: Secret = field(default_factory=Secret, repr=False, compare=False)
    models: tuple[str, ...] = ()  # empty: any model of its API
    timeouts: Timeouts = Timeouts()
    proxy: str | None = None  # an http:// proxy the calls go through (CONNECT)
    wire: str = "openai"  # the upstream's own: openai, anthropic or azure-openai
    api_version: str = AZURE_API_VERSION  # azure-openai's deployment API only
    deployments: Mapping[str, str] = field(default_factory=dict)  # model -> deployment
    auth: str = "api-key"  # azure-openai: or an Entra token; gemini: or a service account
    region: str | None = None  # where the provider serves it (westeurope, eu-central-1)

    @property
    def api_key(self) -> str:
        """The key now: a rotated key file is read again (`cordon.secretrefs.Secret`)."""
        return self.secret.value()

    def url(self, path: str, model: str) -> str:
        """Where a call for `model` to the API path `path` (`/chat/completions`) goes."""
        if self.wire != AZURE or self.base_url.endswith("/openai/v1"):
            return self.base_url + path
        deployment = quote(self.deployments.get(model, model), safe="")
        return f"{self.base_url}/{deployment}{path}?api-version={quote(self.api_version)}"

    def speaks(self, api: str, named: bool = False) -> bool:
        """Whether a caller of `api` may be sent here. Bedrock and Gemini take either
        API's callers; Azure OpenAI takes Anthropic's, translated, only where the pack
        says so: a caller naming it (`named`), or its `models` listing the model (a
        target for any model is not made a fallback for Anthropic's callers)."""
        if api == self.api or (api in APIS and self.wire in TRANSLATED):
            return True
        return api in APIS and self.wire == AZURE and (named or bool(self.models))

    def serves(self, api: str, model: str, named: bool = False) -> bool:
        return self.speaks(api, named) and self.model_id(model) is not None

    def model_id(self, model: str) -> str | None:
        """The entry of this target's `models` that `model` matches (a name or a pattern;
        "*" when the target takes any model), or None: what may name the model outside
        the region, since it comes from configuration and not from the caller."""
        if not self.models:
            return "*"
        if model in self.models:
            return model
        return next((m for m in self.models if fnmatch.fnmatchcase(model, m)), None)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset VAR without a default is an error."""

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        raise PackError(
            f"environment variable {name} is not set and has no default "
            "(or the replica's allowed_env does not name it)"
        )

    return _VARIABLE.sub(expand, value)


def _timeouts(raw: Any, target_id: str) -> Timeouts:
    if raw is None:
        return Timeouts()
    if not isinstance(raw, dict):
        raise PackError(f"target {target_id}: timeouts must be a map")
    try:
        return Timeouts(**{k: float(v) for k, v in raw.items()})
    except (TypeError, ValueError) as exc:
        raise PackError(f"target {target_id}: timeouts take connect, first_byte, total") from exc


def parse_target(
    raw: Any, env: Mapping[str, str], store: Path | None, with_secret: bool = True
) -> Target:
    """One `providers.targets[]` entry. Without `with_secret` its key is not read (the
    in-process SDK sends the application's own key, and needs only where the target is,
    its region and its models)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise PackError("every providers.targets[] entry needs an id")
    target_id = raw["id"]
    provider = raw.get("provider") or {}
    if not isinstance(provider, dict) or not isinstance(provider.get("base_url"), str):
        raise PackError(f"target {target_id}: provider.base_url is required")
    wire = _wire(target_id, provider)
    api = "openai" if wire in (AZURE, BEDROCK, GEMINI) else wire
    if wire == BEDROCK and not raw.get("region"):
        raise PackError(f"target {target_id}: a Bedrock target names its AWS region (region:)")
    models = raw.get("models") or ()
    if not isinstance(models, list | tuple) or not all(isinstance(m, str) for m in models):
        raise PackError(f"target {target_id}: models must be a list of names")
    return Target(
        id=target_id,
        api=api,
        base_url=interpolate(provider["base_url"], env).rstrip("/"),
        secret=(
            secret_source(_secret_ref(raw, provider, target_id), env, store, target_id)
            if with_secret
            else Secret()
        ),
        models=tuple(models),
        timeouts=_timeouts(raw.get("timeouts"), target_id),
        proxy=_proxy(provider.get("proxy"), env, target_id),
        wire=wire,
        api_version=str(provider.get("api_version") or AZURE_API_VERSION),
        deployments=_deployments(raw.get("deployments"), target_id),
        auth=_auth(provider.get("auth"), wire, target_id),
        region=_region(raw.get("region"), target_id),
    )


def _secret_ref(raw: Mapping[str, Any], provider: Mapping[str, Any], target_id: str) -> Any:
    """`secret_key_ref` beside `provider:` or inside it: the seeds' printed text allows
    both nestings. Both at once is refused (which would win is not for us to guess)."""
    beside, inside = raw.get("secret_key_ref"), provider.get("secret_key_ref")
    if beside is not None and inside is not None:
        raise PackError(
            f"target {target_id}: secret_key_ref is given twice (beside and in provider)"
        )
    return beside if beside is not None else inside


def _region(raw: Any, target_id: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise PackError(f"target {target_id}: region is the provider's region name")
    return raw


def _wire(target_id: str, provider: Mapping[str, Any]) -> str:
    """The upstream's wire: `provider.api` when given, else told by the id or the URL
    (the seeds' Azure target names neither)."""
    named = provider.get("api")
    if named is not None:
        if named not in (*APIS, AZURE, BEDROCK, GEMINI):
            choices = (*APIS, AZURE, BEDROCK, GEMINI)
            raise PackError(f"target {target_id}: provider.api must be one of {choices}")
        return str(named)
    if "anthropic" in target_id:
        return "anthropic"
    base = str(provider["base_url"]).rstrip("/")
    if base.endswith("/openai/deployments") or "azure" in target_id:
        return AZURE
    return "openai"


def _deployments(raw: Any, target_id: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in raw.items()
    ):
        raise PackError(f"target {target_id}: deployments maps model names to deployment names")
    return dict(raw)


def _auth(raw: Any, wire: str, target_id: str) -> str:
    if raw is None:
        return "api-key"
    if wire == GEMINI and raw in ("api-key", SERVICE_ACCOUNT):
        return str(raw)
    if wire != AZURE or raw not in AZURE_AUTH:
        raise PackError(
            f"target {target_id}: provider.auth is {' or '.join(AZURE_AUTH)} (Azure), "
            f"or api-key or {SERVICE_ACCOUNT} (Gemini)"
        )
    return str(raw)


def _proxy(raw: Any, env: Mapping[str, str], target_id: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not interpolate(raw, env).startswith("http://"):
        raise PackError(f"target {target_id}: provider.proxy must be an http:// URL")
    return interpolate(raw, env)


def targets_from(
    document: Mapping[str, Any],
    env: Mapping[str, str],
    store: Path | None,
    with_secrets: bool = True,
) -> tuple[Target, ...]:
    """The pack's targets in order; empty when the pack names no providers."""
    providers = document.get("providers") or {}
    if not isinstance(providers, dict):
        raise PackError("providers must be a map with a targets list")
    raw_targets = providers.get("targets") or []
    if not isinstance(raw_targets, list):
        raise PackError("providers.targets must be a list")
    targets = tuple(parse_target(raw, env, store, with_secrets) for raw in raw_targets)
    ids = [t.id for t in targets]
    if len(set(ids)) != len(ids):
        raise PackError("providers.targets ids must be unique")
    check_residency(document.get("residency"), targets)
    return targets


def balance_of(document: Mapping[str, Any]) -> str:
    """How the pack spreads calls over the targets serving a model: `ordered` (the
    pack's order, the rest fallbacks) unless `providers.balance` says `round-robin`."""
    providers = document.get("providers") or {}
    balance = providers.get("balance", ORDERED) if isinstance(providers, dict) else ORDERED
    if balance not in (ORDERED, ROUND_ROBIN):
        raise PackError(f"providers.balance is {ORDERED} or {ROUND_ROBIN}")
    return str(balance)


def check_residency(raw: Any, targets: tuple[Target, ...]) -> None:
    """A pack that declares residency (`residency: {regions: [eu-*, westeurope]}`, names
    or patterns) may route only to targets in those regions, fallbacks included: one
    outside them, or without a region, refuses the pack at activation, never a call."""
    if raw is None:
        return
    allowed = raw.get("regions") if isinstance(raw, dict) else None
    if not isinstance(allowed, list) or not allowed or not all(isinstance(r, str) for r in allowed):
        raise PackError("residency lists the provider regions calls may go to: {regions: [...]}")
    for target in targets:
        if target.region is None:
            raise PackError(f"target {target.id} names no region, and the pack declares residency")
        if not any(fnmatch.fnmatchcase(target.region, pattern) for pattern in allowed):
            raise PackError(
                f"target {target.id} is in {target.region}, outside the pack's residency "
                f"({', '.join(allowed)})"
            )
