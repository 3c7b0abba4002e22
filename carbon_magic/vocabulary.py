"""The words every layer shares, declared once: the energy components, the attribution
modes, the GPU vendors and the grid-intensity providers. A ground-floor module: it
imports nothing of the package, so anything may import it."""

from __future__ import annotations

from typing import Literal, get_args

Component = Literal["cpu", "gpu", "ram"]
COMPONENTS: tuple[str, ...] = get_args(Component)

Mode = Literal["process", "machine"]
# process: charge the kernel its share; machine: charge everything.
MODES: tuple[str, ...] = get_args(Mode)

GpuVendor = Literal["nvidia", "amd", "apple"]
GPU_VENDORS: tuple[str, ...] = get_args(GpuVendor)

# Grid-intensity providers, by the ``intensity`` setting's names (carbon_magic.grid
# builds one of each).
PROVIDER_NAMES = ("static", "electricitymaps", "ukgrid")

TrackerState = Literal["running", "stopped"]  # a tracker's state as its session records it

Via = Literal["auto", "magic", "api"]
# How a cell was recorded: every cell (auto), %%carbon (magic), measure() (api).
