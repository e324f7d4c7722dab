"""Which targets may serve a call, in order, and which are resting.

A target's circuit opens after `threshold` consecutive failures and stays open for
`cooldown` seconds; then one trial call is let through (half-open) and its result
closes or reopens the circuit. A 429 rests the target for its `retry-after`.
Breaker state is per target id and outlives pack swaps.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cordon.errors import OutsideResidencyError, UnknownModelError
from gateway import metrics
from gateway.upstream.providers import ORDERED, ROUND_ROBIN, Target


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    resting_until: float = 0.0


class Breakers:
    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        # The half-open trial is claimed by one call of all the threads the in-process
        # SDK serves calls on, not one per thread.
        self._trial = threading.Lock()

    def _circuit(self, target_id: str) -> _Circuit:
        return self._circuits.setdefault(target_id, _Circuit())

    def state(self, target_id: str) -> str:
        circuit = self._circuit(target_id)
        if circuit.opened_at is None:
            return "closed"
        if circuit.probing or self._clock() - circuit.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self, target_id: str) -> bool:
        """May a call go to this target now? Claims the single half-open trial."""
        circuit = self._circuit(target_id)
        now = self._clock()
        if now < circuit.resting_until:
            return False
        if circuit.opened_at is None:
            return True
        with self._trial:
            if now - circuit.opened_at >= self.cooldown and not circuit.probing:
                circuit.probing = True
                return True
        return False

    def succeeded(self, target_id: str) -> None:
        circuit = self._circuit(target_id)
        if circuit.opened_at is not None:
            metrics.CIRCUIT_OPEN.labels(target_id).set(0)
        self._circuits[target_id] = _Circuit(resting_until=circuit.resting_until)

    def failed(self, target_id: str) -> None:
        circuit = self._circuit(target_id)
        circuit.failures += 1
        if circuit.probing or circuit.failures >= self.threshold:
            circuit.opened_at = self._clock()
            circuit.probing = False
            metrics.CIRCUIT_OPEN.labels(target_id).set(1)

    def rest(self, target_id: str, seconds: float) -> None:
        circuit = self._circuit(target_id)
        circuit.resting_until = max(circuit.resting_until, self._clock() + seconds)


MAX_TURNS = 4096  # models whose round-robin turn a router remembers


class Router:
    """Targets of the active pack, filtered by API and model, in the pack's order (those
    of the caller's own API ahead of those that translate it); or,
    when the pack balances (`providers.balance: round-robin`), starting one further
    along that order on each call, the rest of it still the fallbacks. Targets of any
    wire mix in both: an Azure deployment, Bedrock and Gemini may serve one model."""

    def __init__(
        self, targets: tuple[Target, ...], breakers: Breakers, balance: str = ORDERED
    ) -> None:
        self.targets = targets
        self.breakers = breakers
        self.balance = balance
        self._turns: dict[tuple[str, str], itertools.count[int]] = {}

    def pinned(self, target: Target, model: str, residency: bool) -> Target:
        """Where a call its caller pins to `target` (the in-process SDK's client: its own
        base URL and key) goes: that provider, as the pack knows it (the id, region and
        models of the pack's target at the same URL), so the pack's word on where a call
        may go holds. `UnknownModelError` if the pack's targets there do not serve
        `model`; `OutsideResidencyError` if the pack declares residency and knows no
        target at that URL (where the call would be answered is then unknown)."""
        known = [t for t in self.targets if t.base_url == target.base_url]
        if not known:
            if residency:
                raise OutsideResidencyError(
                    f"the pack declares residency, and {target.base_url} is none of its "
                    "providers: where the call would be answered is not known"
                )
            return target
        serving = [t for t in known if t.model_id(model) is not None]
        if not serving:
            raise UnknownModelError(f"model {model!r} is not served at {target.base_url}")
        chosen = serving[0]
        return dataclasses.replace(target, id=chosen.id, region=chosen.region, models=chosen.models)

    def named(self, model: str) -> tuple[Target | None, str]:
        """A model that names its target, `<target id>/<model>`: that target and the
        model to ask it for; else (None, model). A name whose prefix is no target's id
        (`meta-llama/Llama-3`) is a model name like any other."""
        target_id, slash, asked = model.partition("/")
        if slash and asked:
            for target in self.targets:
                if target.id == target_id:
                    return target, asked
        return None, model

    def serving(self, api: str, model: str) -> list[Target]:
        """The targets that may answer `model` on `api`, in the pack's order: only the
        one a model names, when it names one."""
        target, asked = self.named(model)
        if target is not None:
            return [target] if target.serves(api, asked, named=True) else []
        serving = [t for t in self.targets if t.serves(api, model)]
        own = [t for t in serving if t.api == api]  # the caller's own API first,
        translated = [t for t in serving if t.api != api]  # then those that translate it
        if self.balance == ROUND_ROBIN and len(own) > 1:  # each model takes its own turns
            if len(self._turns) >= MAX_TURNS:  # model names come from callers: bounded
                self._turns.clear()
            turns = self._turns.setdefault((api, model), itertools.count())
            turn = next(turns) % len(own)
            own = own[turn:] + own[:turn]
        return own + translated

    def listed_models(self, api: str) -> list[tuple[str, str]]:
        """(model, target id) for every model a target names explicitly."""
        seen: dict[str, str] = {}
        for target in self.targets:
            if not target.speaks(api):
                continue
            for model in target.models:
                if not any(ch in model for ch in "*?[") and model not in seen:
                    seen[model] = target.id
        return list(seen.items())
