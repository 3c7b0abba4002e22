"""Every user-facing setting: one name, one parser, one place of validation.

A setting can be given in code (``carbon_magic.configure(pue=1.2)``), by the magics
(``%carbon config pue=1.2``) or by an environment variable ``CARBON_MAGIC_<NAME>``.
Code beats the environment, the environment beats the default. A bad value raises
``ValueError`` naming the valid range or choices, and nothing is changed. The settings
themselves are declared in ``setting_specs.SPECS``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, cast, overload

from carbon_magic.setting_specs import SPECS


def parse_setting(name: str, value: Any) -> Any:
    """Validate one value for one setting; raise ``ValueError`` naming the valid choices."""
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown setting {name!r}; valid settings: {', '.join(SPECS)}")
    try:
        return spec.parse(value)
    except ValueError as error:
        raise ValueError(f"{name} {error}") from None


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings given by ``CARBON_MAGIC_<NAME>`` variables (and
    ``ELECTRICITYMAPS_API_TOKEN``), parsed. ``ValueError`` names the variable."""
    environ = os.environ if environ is None else environ
    from_env: dict[str, Any] = {}
    for name, spec in SPECS.items():
        raw = environ.get(spec.env_var)
        if raw is not None and raw.strip() != "":
            try:
                from_env[name] = spec.parse(raw)
            except ValueError as error:
                raise ValueError(f"{spec.env_var}: {name} {error}") from None
    token = environ.get("ELECTRICITYMAPS_API_TOKEN")
    if "electricitymaps_token" not in from_env and token and token.strip():
        from_env["electricitymaps_token"] = token.strip()
    check_consistent(
        {**{name: spec.default for name, spec in SPECS.items()}, **from_env},
        set(from_env),
        label=lambda name: f"{SPECS[name].env_var}={environ.get(SPECS[name].env_var)}",
    )
    return from_env


def check_consistent(
    values: Mapping[str, Any],
    changed: set[str] | None = None,
    label: Callable[[str], str] | None = None,
) -> None:
    """Raise ``ValueError`` when settings contradict each other (``cpu_idle_w`` above
    ``cpu_max_w``). Only constraints touching ``changed`` (all when None) are checked;
    ``label(name)`` says where a value came from in the message."""

    def named(name: str) -> str:
        return label(name) if label is not None else f"{name}={values[name]:g}"

    idle, high = values.get("cpu_idle_w"), values.get("cpu_max_w")
    touched = changed is None or bool(changed & {"cpu_idle_w", "cpu_max_w"})
    if touched and idle is not None and high is not None and idle > high:
        raise ValueError(
            f"{named('cpu_idle_w')} is above {named('cpu_max_w')}: cpu_idle_w must be "
            "at most cpu_max_w (or auto)"
        )


def mask_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with every set secret setting shown as ``***``."""
    masked = dict(values)
    for name in masked:
        spec = SPECS.get(name)
        if spec is not None and spec.secret and masked[name]:
            masked[name] = "***"
    return masked


T = TypeVar("T")


class SettingLookup(Protocol):
    """Anything that gives a setting's value by name: ``Settings``, or a plain dict of
    values (as a session row keeps them)."""

    def get(self, name: str, /) -> Any: ...


class SettingValue(Generic[T]):
    """One setting as a typed, read-only attribute of ``Settings``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, settings: None, owner: type) -> SettingValue[T]: ...

    @overload
    def __get__(self, settings: Settings, owner: type) -> T: ...

    def __get__(self, settings: Settings | None, owner: type) -> SettingValue[T] | T:
        if settings is None:
            return self
        return cast(T, settings.get(self.name))

    def __set__(self, settings: Settings, value: object) -> None:
        raise AttributeError(f"settings change through update(): update({self.name}=...)")


class Settings:
    """The current value of every setting, with where it came from.

    Thread-safe: readers see a consistent mapping; ``update`` validates everything
    before changing anything.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {name: spec.default for name, spec in SPECS.items()}
        self._origins: dict[str, str] = {name: "default" for name in SPECS}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        for name, value in read_environment(environ).items():
            self._values[name] = value
            self._origins[name] = "environment"

    # Each setting read as a typed attribute (``settings.interval`` is a float); a
    # setting added to SPECS gets its line here (tests check that every one has).
    mode = SettingValue[str]()
    interval = SettingValue[float]()
    country = SettingValue[str | None]()
    cloud_region = SettingValue[str | None]()
    pue = SettingValue[float | None]()
    powercap_root = SettingValue[str]()
    rapl_psys = SettingValue[bool]()
    gpus = SettingValue[str]()
    cpu_idle_w = SettingValue[float | None]()
    cpu_max_w = SettingValue[float | None]()
    ram_w_per_gb = SettingValue[float]()
    embodied = SettingValue[bool]()
    embodied_server_kg = SettingValue[float]()
    embodied_gpu_kg = SettingValue[float]()
    lifetime_years = SettingValue[float]()
    ledger = SettingValue[str | None]()
    ledger_keep_days = SettingValue[float | None]()
    intensity = SettingValue[str | None]()
    zone = SettingValue[str | None]()
    postcode = SettingValue[str | None]()
    electricitymaps_token = SettingValue[str | None]()
    electricitymaps_url = SettingValue[str]()
    cluster = SettingValue[str]()
    budget_notebook = SettingValue[str | None]()
    budget_day = SettingValue[str | None]()
    budget_scope_on_exceed = SettingValue[str]()
    budget_scope_predict = SettingValue[bool]()
    ukgrid_url = SettingValue[str]()
    remote_calls = SettingValue[str]()
    budget_remote = SettingValue[bool]()
    wue = SettingValue[float | None]()

    def get(self, name: str) -> Any:
        """The current value of ``name``."""
        with self._lock:
            return self._values[name]

    def origin(self, name: str) -> str:
        """``default``, ``environment`` or ``code`` (set by configure or the magics)."""
        with self._lock:
            return self._origins[name]

    def as_dict(self, reveal_secrets: bool = False) -> dict[str, Any]:
        """A copy of all values; secrets are masked unless ``reveal_secrets``."""
        with self._lock:
            values = dict(self._values)
        return values if reveal_secrets else mask_secrets(values)

    def update(self, **changes: Any) -> dict[str, Any]:
        """Validate all ``changes``, then apply them together. Returns the parsed values.

        Raises ``ValueError`` (naming valid settings, ranges or choices) and changes
        nothing when any value is bad, when values conflict with each other or with the
        current ones (``cpu_idle_w`` above ``cpu_max_w``), or when a listener refuses
        them (e.g. an idle power above the CPU model's maximum): then every listener
        that saw the change is told the previous values again.
        """
        parsed = {name: parse_setting(name, value) for name, value in changes.items()}
        with self._lock:
            check_consistent({**self._values, **parsed}, set(parsed))
        self._apply(parsed, dict.fromkeys(parsed, "code"))
        return parsed

    def check(self, **changes: Any) -> dict[str, Any]:
        """Validate ``changes`` against each other and the current values, applying
        nothing. Returns the parsed values; raises ``ValueError`` as ``update`` does."""
        parsed = {name: parse_setting(name, value) for name, value in changes.items()}
        with self._lock:
            check_consistent({**self._values, **parsed}, set(parsed))
        return parsed

    def reload_environment(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Read the ``CARBON_MAGIC_*`` variables again for every setting not set in code
        (a variable removed means the default again). Validated like ``update``;
        returns the values that changed."""
        from_env = read_environment(environ)
        with self._lock:
            values, origins = dict(self._values), dict(self._origins)
        changed: dict[str, Any] = {}
        new_origins: dict[str, str] = {}
        for name, spec in SPECS.items():
            if origins[name] == "code":
                continue
            value = from_env.get(name, spec.default)
            origin = "environment" if name in from_env else "default"
            if value != values[name] or origin != origins[name]:
                changed[name] = value
                new_origins[name] = origin
        if changed:
            self._apply(changed, new_origins)
        return changed

    def _apply(self, parsed: dict[str, Any], origins: dict[str, str]) -> None:
        """Apply validated values and tell the listeners; undo everything when one of
        them raises, then re-raise."""
        with self._lock:
            before = {name: self._values[name] for name in parsed}
            before_origins = {name: self._origins[name] for name in parsed}
            self._values.update(parsed)
            self._origins.update(origins)
            listeners = list(self._listeners)
        told: list[Callable[[dict[str, Any]], None]] = []
        try:
            for listener in listeners:
                told.append(listener)
                listener(dict(parsed))
        except Exception:
            with self._lock:
                self._values.update(before)
                self._origins.update(before_origins)
            for listener in told:
                try:
                    listener(dict(before))
                except Exception:
                    pass  # back at values that worked before; never mask the cause
            raise

    def on_change(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(changed_values)`` after every successful ``update``."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Undo ``on_change`` (no error when absent)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
