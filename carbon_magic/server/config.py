"""``CarbonMagicServer``: the server extension's settings, as traitlets.

Set them like any Jupyter Server option, e.g. in ``jupyter_server_config.py``::

    c.CarbonMagicServer.ledger = "/data/carbon/ledger.sqlite3"
    c.CarbonMagicServer.metrics_allow_unauthenticated = True

or on the command line: ``jupyter lab --CarbonMagicServer.kernels=ledger``.
"""

from __future__ import annotations

from traitlets import Bool, Enum, Float, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from carbon_magic.ledger import default_ledger_path
from carbon_magic.ledger.paths import resolve_ledger_path

__all__ = ["HEARTBEAT_PERIOD_S", "CarbonMagicServer"]

# The heartbeat period assumed when judging staleness, seconds. Trackers beat every
# max(2 s, sampling interval); 5 s leaves room for a busy machine or a locked ledger.
HEARTBEAT_PERIOD_S = 5.0


class CarbonMagicServer(Configurable):
    """Settings of the read-only ledger endpoints (REST and Prometheus)."""

    ledger = Unicode(
        help=(
            "Path of the SQLite ledger the kernels write. Default: $CARBON_MAGIC_LEDGER, "
            "else jupyter_data_dir()/carbon_magic/ledger.sqlite3 (the kernels' default). "
            "'auto' means that default; a relative path is taken in its folder."
        ),
    ).tag(config=True)

    @default("ledger")
    def _default_ledger(self) -> str:
        return str(default_ledger_path())

    @validate("ledger")
    def _expand_ledger(self, proposal: dict) -> str:
        # Read as the kernels read the ledger setting: auto, ~, relative to the default
        # ledger's folder; a folder is refused.
        try:
            return str(resolve_ledger_path(str(proposal["value"])))
        except ValueError as error:
            raise TraitError(f"CarbonMagicServer.ledger {error}") from None

    metrics_allow_unauthenticated = Bool(
        False,
        help=(
            "Serve {base_url}carbon-magic/metrics without authentication, for Prometheus "
            "scrapers in hub deployments. The REST endpoints always require a login."
        ),
    ).tag(config=True)

    kernels = Enum(
        ["server", "ledger"],
        default_value="server",
        help=(
            "Which kernels /summary and /metrics list one by one. 'server': the kernels "
            "this Jupyter server runs now. 'ledger': every kernel whose tracker is live in "
            "the ledger (running, fresh heartbeat), wherever it was started (nbclient, "
            "papermill, another server sharing the ledger). Ledger-wide totals are always "
            "reported."
        ),
    ).tag(config=True)

    heartbeat_period_s = Float(
        HEARTBEAT_PERIOD_S,
        min=0.1,
        help=(
            "Seconds between a running tracker's heartbeats, assumed for heartbeats that do "
            "not declare when the next one is due (written before ledger schema 5)."
        ),
    ).tag(config=True)

    stale_after_beats = Float(
        3.0,
        min=1.0,
        help=(
            "A kernel's live figures are stale when its latest heartbeat is older than this "
            "many heartbeat periods: n * max(interval_s, heartbeat_period_s, next_beat_s) "
            "seconds, where next_beat_s is what the heartbeat declares (the tracker's idle "
            "tick while no cell runs)."
        ),
    ).tag(config=True)

    def stale_after_s(self, interval_s: float, next_beat_s: float | None = None) -> float:
        """Heartbeat age (seconds) beyond which a session with ``interval_s`` is stale,
        given the wait its latest heartbeat declared for the next (``next_beat_s``,
        seconds; None when it declared none)."""
        period = max(float(interval_s or 0.0), self.heartbeat_period_s, float(next_beat_s or 0.0))
        return self.stale_after_beats * period
