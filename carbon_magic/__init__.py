"""carbon_magic: the energy and carbon cost of notebook work, per cell and live.

Python API::

    import carbon_magic
    carbon_magic.configure(country="FR")
    with carbon_magic.measure("fit") as m:
        model.fit(X, y)
    print(m.emissions_g, m.emissions_range_g, m.methods)

In IPython/Jupyter: ``%load_ext carbon_magic``, then ``%%carbon`` on heavy cells.
Imports are deferred so that ``import carbon_magic`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from carbon_magic._version import __version__

if TYPE_CHECKING:
    from carbon_magic.engine.measurement import Measurement
    from carbon_magic.engine.tracker import Tracker

__all__ = [
    "__version__",
    "configure",
    "get_tracker",
    "current_settings",
    "measure",
    "progress",
]


def get_tracker() -> Tracker:
    """The process's one tracker (created on first use, not started)."""
    from carbon_magic.engine.tracker import get_tracker as _get_tracker

    return _get_tracker()


@contextmanager
def measure(name: str = "block", *, record: bool = True) -> Iterator[Measurement]:
    """Measure a block: ``with measure("fit") as m: ...``; ``m`` is complete after it.

    Starts the tracker if it is not running. Windows may nest and overlap. In a script
    (or a kernel without ``%load_ext carbon_magic``) the window is recorded in the
    ledger (``via="api"``, shown by ``carbon-magic report``) unless ``record=False``;
    in a kernel with the extension loaded its cell is recorded instead. A block that
    raises is recorded with status ``error`` and the exception goes on.
    """
    measurement: Measurement | None = None
    try:
        with get_tracker().measure(name) as measurement:
            yield measurement
    finally:
        if record and measurement is not None:
            from carbon_magic.kernel.recorder import record_window

            record_window(measurement)


def progress(fraction: float) -> None:
    """Tell the running cell how far it has got (0 to 1), for loops without a tqdm bar:
    ``carbon_magic.progress(i / n)``. Its predicted total follows. ``ValueError`` for
    anything outside 0..1; nothing changes then."""
    from carbon_magic.kernel.cell_progress import progress as _progress

    _progress(fraction)


def configure(**values: Any) -> dict[str, Any]:
    """Change settings, e.g. ``configure(pue=1.2, country="FR")``.

    Every value is validated first; a bad one (or values that conflict, such as
    ``cpu_idle_w`` above ``cpu_max_w``) raises ``ValueError`` naming the valid range or
    choices, and nothing changes. Returns the parsed values, secrets masked.
    """
    from carbon_magic.settings import mask_secrets

    return mask_secrets(get_tracker().settings.update(**values))


def current_settings() -> dict[str, Any]:
    """Current settings (secrets masked)."""
    return get_tracker().settings.as_dict()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext carbon_magic``: start the tracker, register the magics, record cells."""
    from carbon_magic.kernel.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext carbon_magic``: stop recording and stop the tracker."""
    from carbon_magic.kernel.magics import unload

    unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "carbon_magic.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "carbon_magic"}]
