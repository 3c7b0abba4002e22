"""Calls a cell makes to hosted model APIs (LLM providers): captured, estimated with
EcoLogits, and recorded apart from the cell's local figures.

``calls`` (what a call is, the log), ``targets`` (the SDK methods wrapped), ``readers``
(tokens and model from answers), ``streams`` (following streamed answers),
``wrappers`` and ``patching`` (putting the wrappers in and out), ``estimate``
(EcoLogits), ``summary`` (a cell's totals), ``collector`` (the magics' side).
"""

from carbon_magic.remote.collector import RemoteCollector

__all__ = ["RemoteCollector"]
