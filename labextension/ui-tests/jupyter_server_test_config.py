"""Jupyter Server configuration for the browser tests only (Galata).

Never use it elsewhere: it disables authentication (Galata's defaults) and lets the
server run as root, which the throwaway test machine needs. The notebooks and the
carbon ledger live in a fresh temporary directory.
"""

import os
import tempfile
from pathlib import Path

from jupyterlab.galata import configure_jupyter_server

c = get_config()  # noqa: F821 - provided by the config loader
configure_jupyter_server(c)

_root = Path(tempfile.mkdtemp(prefix="carbon-magic-ui-"))
(_root / "notebooks").mkdir()
c.ServerApp.root_dir = str(_root / "notebooks")
c.ServerApp.allow_root = True

# Kernels started by this server inherit the variable, so they write the same ledger
# that the server extension reads.
os.environ["CARBON_MAGIC_LEDGER"] = str(_root / "ledger.sqlite3")
c.CarbonMagicServer.ledger = os.environ["CARBON_MAGIC_LEDGER"]

# Notebook 7 offers its app as `window.jupyterapp` too (Galata sets this for JupyterLab
# only), so the tests run its cells with its own commands.
c.JupyterNotebookApp.expose_app_in_browser = True
