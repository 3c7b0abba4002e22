"""The CPU power model's parts: which CPU a name describes (``identify``), its family's
load→power curve (``curves``), and the ``carbon-magic model`` command (``command``).

``carbon_magic.cpu_model.power`` puts them together for the tracker.
"""
