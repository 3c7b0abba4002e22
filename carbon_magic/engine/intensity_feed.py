"""The grid intensity and PUE the tracker accounts with, and when the intensity changed.

The tracker converts each tick's energy at the intensity and PUE in force when the tick
began (``now``, ``pue``); the provider is asked again on slow ticks (``latest``), and
as soon as a live provider says it has a new value (``has_news``: the tracker is woken,
and a window opening takes it), never waiting on the network. Every change is kept with
its time, so that a window can say how the intensity varied while it was open.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from carbon_magic.engine.windows import Window, intensity_variation
from carbon_magic.grid import provider_or_static
from carbon_magic.grid.base import Intensity, IntensityProvider
from carbon_magic.settings import Settings

# The intensity until the first start asks the provider (nothing is accounted before).
NOT_STARTED = Intensity(0.0, "static", "", "not started", 0.0)


class IntensityFeed:
    """The provider the settings ask for, the intensity (gCO2e/kWh) and PUE in force,
    and the log of changes. ``notice(message)`` reports a provider that cannot be
    built (the static table is used instead). Not thread-safe: the tracker's lock
    covers it."""

    def __init__(
        self,
        settings: Settings,
        notice: Callable[[str], None],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._notice = notice
        self._wake = wake  # makes the tracker tick now (from the provider's thread)
        self._news = False  # the provider fetched a value not yet taken
        self.provider: IntensityProvider | None = None
        self.now: Intensity = NOT_STARTED
        self.pue = 1.0
        # (monotonic ns, g/kWh) whenever the intensity changed: windows report the span.
        self._changes: deque[tuple[int, float]] = deque(maxlen=1000)

    def start(self) -> None:
        """Build the provider and take its value and the PUE now."""
        self._build()
        self.pue = self.read_pue()[0]

    def rebuild(self) -> None:
        """A provider setting changed: build the provider again, close the old one."""
        old = self.provider
        self._build()
        if old is not None:
            old.close()

    def _build(self) -> None:
        provider = self.provider = provider_or_static(self.settings, self._notice)
        on_new_value = getattr(provider, "on_new_value", None)  # live providers have it
        if on_new_value is not None:  # before reading: a value arriving after is news
            on_new_value(self._new_value)
        self.now = provider.current()

    def _new_value(self) -> None:
        """The provider fetched a new value (its worker thread): take it at once."""
        self._news = True
        self._wake()

    @property
    def has_news(self) -> bool:
        """True when the provider has a value fetched since ``latest`` was last read."""
        return self._news

    def read_pue(self) -> tuple[float, str]:
        """(PUE, where it comes from) for the current settings."""
        from carbon_magic.grid.static import default_pue

        return default_pue(self.settings)

    def latest(self) -> Intensity:
        """What the provider has now (``now`` before a provider exists)."""
        self._news = False  # before asking: a value arriving meanwhile is news again
        return self.provider.current() if self.provider is not None else self.now

    def switch(self, intensity: Intensity, t_ns: int) -> None:
        """Account at ``intensity`` from ``t_ns`` (monotonic ns) on."""
        if intensity.g_per_kwh != self.now.g_per_kwh:
            self._changes.append((t_ns, intensity.g_per_kwh))
        self.now = intensity

    def current(self) -> Intensity:
        """The intensity now, as the provider has it; the static table before start,
        the value in force when the provider fails."""
        if self.provider is None:
            from carbon_magic.grid.static import StaticProvider

            return StaticProvider(self.settings).current()
        try:
            return self.provider.current()
        except Exception:
            return self.now

    def variation_note(self, window: Window) -> str | None:
        """How the intensity varied while ``window`` was open, or None if it did not."""
        return intensity_variation(window, self._changes)

    def close(self) -> None:
        """Stop the provider's background work (it is kept, closed, for reading)."""
        if self.provider is not None:
            on_new_value = getattr(self.provider, "on_new_value", None)
            if on_new_value is not None:
                on_new_value(None)
            self.provider.close()
