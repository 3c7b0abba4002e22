"""Estimates of captured calls, by EcoLogits (``ecologits``, MPL-2.0).

Nothing of EcoLogits' method is re-done here: each call is estimated by its own
``llm_impacts`` (its model repository, its providers' data-centre PUE and WUE, and the
electricity mix of the provider's data-centre zone, not the user's grid), or, when the
user's own EcoLogits instrumentation already put ``impacts`` on the SDK's answer, that
result is taken as it is (never a second estimate). LiteLLM model names are matched
to EcoLogits' repository by its own LiteLLM matcher.

A call EcoLogits cannot estimate (a model it does not know, no token count, EcoLogits
missing, too old or raising) gets no estimate and a note saying why, never zeros.

Units: joules (energy, IT and facility as EcoLogits counts it), grams CO2e, litres.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carbon_magic.engine.measurement import J_PER_KWH
from carbon_magic.remote.calls import RemoteCall

__all__ = [
    "ECOLOGITS_MIN_VERSION",
    "CallEstimate",
    "Estimator",
    "ecologits_version",
    "method_label",
]

ECOLOGITS_MIN_VERSION = (0, 6)  # llm_impacts(provider, model_name, tokens, latency)
_PROVIDERS = {  # capture's SDK name → EcoLogits provider (LiteLLM: matched per model)
    "openai": "openai",
    "anthropic": "anthropic",
    "mistralai": "mistralai",
    "google_genai": "google_genai",
}


@dataclass(frozen=True)
class CallEstimate:
    """One call's estimate (each a ``(low, high)`` range and its middle), or, when
    ``energy_j`` is None, no estimate and ``note`` says why."""

    provider: str | None  # EcoLogits' provider name
    model: str | None  # the model EcoLogits estimated (LiteLLM: the one matched)
    energy_j: tuple[float, float] | None = None
    emissions_g: tuple[float, float] | None = None  # usage phase, provider's grid
    embodied_g: tuple[float, float] | None = None
    water_l: tuple[float, float] | None = None
    method: str | None = None
    note: str | None = None


def ecologits_version() -> str | None:
    """The importable EcoLogits' version, None when it cannot be imported."""
    try:
        module = importlib.import_module("ecologits")
    except Exception:
        return None
    return str(getattr(module, "__version__", "0"))


def method_label(version: str) -> str:
    """``estimated (EcoLogits x.y)``: how a remote figure was obtained."""
    return f"estimated (EcoLogits {'.'.join(version.split('.')[:2])})"


def _range(value: Any, scale: float) -> tuple[float, float]:
    """An EcoLogits value (a number or a RangeValue) as ``(low, high)`` × ``scale``."""
    low = getattr(value, "min", value)
    high = getattr(value, "max", value)
    return float(low) * scale, float(high) * scale


def _estimate(provider: str | None, model: str | None, impacts: Any, method: str) -> CallEstimate:
    """EcoLogits' ImpactsOutput as a CallEstimate in our units: kWh → J, kgCO2eq → g, L."""
    return CallEstimate(
        provider,
        model,
        energy_j=_range(impacts.usage.energy.value, J_PER_KWH),
        emissions_g=_range(impacts.usage.gwp.value, 1000.0),
        embodied_g=_range(impacts.embodied.gwp.value, 1000.0),
        water_l=_range(impacts.usage.wcf.value, 1.0),
        method=method,
    )


class _QuietLogs(logging.Filter):
    """Drops EcoLogits' log lines while this thread estimates (they would print in the
    user's cell; what they say is kept in the call's note), and only then."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "on", False)

    def __enter__(self) -> None:
        logger = logging.getLogger("ecologits")
        if self not in logger.filters:
            logger.addFilter(self)
        self.local.on = True

    def __exit__(self, *exc: Any) -> None:
        self.local.on = False


_ECOLOGITS_QUIET = _QuietLogs()


class Estimator:
    """Estimates calls with the installed EcoLogits. ``warn(text)`` is called once per
    kind of fault (EcoLogits missing, too old, raising)."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.warned: set[str] = set()
        self.version: str | None = None
        self.llm_impacts: Callable[..., Any] | None = None  # EcoLogits' estimation function
        self.ready = False
        self.unavailable: str | None = None  # why EcoLogits cannot estimate, once known

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.warn(text)

    def _load(self) -> str | None:
        """Import EcoLogits' estimation function (once); why it cannot be, or None."""
        if not self.ready:
            self.ready = True
            self.unavailable = self._import()
        return self.unavailable

    def _import(self) -> str | None:
        version = ecologits_version()
        if version is None:
            self._warn_once(
                "missing",
                "remote calls are recorded without estimates: EcoLogits is not installed "
                "(pip install 'carbon_magic[llm]')",
            )
            return "EcoLogits is not installed"
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        function: Callable[..., Any] | None
        try:
            from ecologits.tracers.utils import llm_impacts as function
        except Exception:  # moved or renamed in a version this code does not know
            function = None
        if function is None or numbers < ECOLOGITS_MIN_VERSION:
            minimum = ".".join(map(str, ECOLOGITS_MIN_VERSION))
            self._warn_once(
                "old",
                f"remote calls are recorded without estimates: EcoLogits {version} is "
                f"too old (need {minimum} or later)",
            )
            return f"EcoLogits {version} is too old"
        self.version = version
        self.llm_impacts = function
        return None

    def _provider_model(self, call: RemoteCall) -> tuple[str | None, str | None]:
        if call.sdk != "litellm":
            return _PROVIDERS.get(call.sdk), call.model
        if not call.model:
            return None, None
        from ecologits.tracers.litellm_tracer import litellm_match_model

        match = litellm_match_model(call.model)
        return (match[0], match[1]) if match else (None, call.model)

    def estimate(self, call: RemoteCall) -> CallEstimate:
        """``call``'s estimate, or a CallEstimate with a note saying why there is none."""
        reason = self._load()
        if call.impacts is not None and reason is None:
            return self._from_user(call)
        if reason is not None:
            return CallEstimate(None, call.model, note=reason)
        if call.status == "error":
            return CallEstimate(None, call.model, note=f"the call failed ({call.error})")
        if call.output_tokens is None or call.latency_s is None:
            return CallEstimate(None, call.model, note="no token count in the answer")
        assert self.llm_impacts is not None and self.version is not None
        try:
            provider, model = self._provider_model(call)
            if provider is None or model is None:
                return CallEstimate(provider, call.model, note="model unknown to EcoLogits")
            with _ECOLOGITS_QUIET:  # its warnings go in our record, not the cell
                impacts = self.llm_impacts(
                    provider=provider,
                    model_name=model,
                    output_token_count=int(call.output_tokens),
                    request_latency=float(call.latency_s),
                )
            errors = getattr(impacts, "errors", None)
            if errors:
                code = getattr(errors[0], "code", "")
                note = (
                    "model unknown to EcoLogits"
                    if code == "model-not-registered"
                    else str(getattr(errors[0], "message", errors[0]))
                )
                return CallEstimate(provider, model, note=note)
            return _estimate(provider, model, impacts, method_label(self.version))
        except Exception as error:
            self._warn_once(
                "raised",
                f"EcoLogits failed to estimate a remote call ({error!r}); "
                "such calls are recorded without estimates",
            )
            return CallEstimate(None, call.model, note=f"EcoLogits raised {type(error).__name__}")

    def _from_user(self, call: RemoteCall) -> CallEstimate:
        """The estimate the user's EcoLogits instrumentation put on the answer."""
        assert self.version is not None
        impacts = call.impacts
        if getattr(impacts, "errors", None) or getattr(impacts, "usage", None) is None:
            return CallEstimate(None, call.model, note="model unknown to EcoLogits")
        method = method_label(self.version) + " (the notebook's own EcoLogits)"
        try:
            return _estimate(_PROVIDERS.get(call.sdk, call.sdk), call.model, impacts, method)
        except Exception:
            return CallEstimate(None, call.model, note="EcoLogits' own impacts unreadable")
