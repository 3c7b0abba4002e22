"""Jupyter Server extension: the ledger's figures over REST and Prometheus, read-only.

Enabled on install by ``jupyter-config/jupyter_server_config.d/carbon_magic.json``.
Endpoints are described in ``carbon_magic.server.handlers``; settings in
``carbon_magic.server.config.CarbonMagicServer``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from carbon_magic.server.config import CarbonMagicServer
from carbon_magic.server.handlers import STATE_KEY, ExtensionState, routes
from carbon_magic.server.reader import LedgerReader
from carbon_magic.server.views import utc_day_start

__all__ = [
    "CarbonMagicServer",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "carbon_magic.server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the handlers on ``server_app``'s web application."""
    config = CarbonMagicServer(parent=server_app)
    web_app = server_app.web_app
    reader = LedgerReader(config.ledger)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carbon-magic-ledger")
    web_app.settings[STATE_KEY] = ExtensionState(config=config, reader=reader, executor=executor)
    # Sum a long ledger's cells now, on the reading thread, not in the first request.
    now = time.time()
    executor.submit(reader.warm_up, now, utc_day_start(now))
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
    server_app.log.info(
        "carbon_magic: serving figures from the ledger %s (kernels listed: %s)",
        config.ledger,
        config.kernels,
    )


# Older Jupyter Server / notebook spelling.
load_jupyter_server_extension = _load_jupyter_server_extension
