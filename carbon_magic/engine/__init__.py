"""The measuring engine: the tracker, its windows and ticks, and the figures it hands out (no IPython, no ledger, no server)."""
