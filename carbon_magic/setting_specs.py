"""The table of every setting: its name, parser, default, documentation line, and the
environment variable that sets it. ``settings`` reads, validates and keeps the values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carbon_magic.setting_parsers import (
    boolean,
    choice,
    gpu_list,
    number,
    optional,
    positive_number,
    text,
)
from carbon_magic.vocabulary import MODES, PROVIDER_NAMES

ENV_PREFIX = "CARBON_MAGIC_"


def _country(value: Any) -> str:
    # Validated against the packaged table lazily, so importing settings stays cheap.
    from carbon_magic.grid.static import validate_country

    return validate_country(str(value))


def _cloud_region(value: Any) -> str:
    from carbon_magic.grid.static import validate_cloud_region

    return validate_cloud_region(str(value))


def _scope_budget(value: Any) -> str:
    """A notebook or day cap, kept as its text, checked the way ``--budget`` is."""
    from carbon_magic.kernel.budget import parse_budget

    return parse_budget(str(value)).text


def _ledger(value: Any) -> str:
    # Resolved once, here, so the kernel, the CLI and the server agree on the file.
    from carbon_magic.ledger.paths import resolve_ledger_path

    return str(resolve_ledger_path(str(value)))


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its name, parser, default and a line of documentation."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    secret: bool = False
    env_name: str | None = None  # the variable, when not CARBON_MAGIC_<NAME>

    @property
    def env_var(self) -> str:
        return self.env_name or ENV_PREFIX + self.name.upper()


SPECS: dict[str, SettingSpec] = {
    spec.name: spec
    for spec in [
        SettingSpec(
            "mode",
            choice(*MODES),
            "process",
            "process: charge the kernel its share; machine: charge everything",
        ),
        SettingSpec("interval", number(0.1, 60), 1.0, "background sampling interval, seconds"),
        SettingSpec(
            "country",
            optional(_country),
            None,
            "ISO-2 or ISO-3 country code for the grid intensity (auto: guessed from the time zone)",
        ),
        SettingSpec(
            "cloud_region",
            optional(_cloud_region),
            None,
            "cloud region as provider:region, e.g. aws:eu-west-3, gcp:europe-west1",
        ),
        SettingSpec(
            "pue",
            optional(number(1.0, 3.0)),
            None,
            "power usage effectiveness (auto: 1.0, or the cloud provider's figure)",
        ),
        SettingSpec(
            "powercap_root",
            text,
            "/sys/class/powercap",
            "where the Linux powercap (RAPL) tree is",
        ),
        SettingSpec(
            "rapl_psys",
            boolean,
            False,
            "count RAPL psys (whole SoC) instead of packages + DRAM, where present",
        ),
        SettingSpec(
            "gpus",
            gpu_list,
            "auto",
            "GPUs to measure: auto (where a driver shows), none, or a list of nvidia,amd,apple",
        ),
        SettingSpec(
            "cpu_idle_w",
            optional(number(0, 10000)),
            None,
            "whole visible CPU power when idle, watts (auto: from the CPU model data)",
        ),
        SettingSpec(
            "cpu_max_w",
            optional(number(0, 10000)),
            None,
            "whole visible CPU power at full load, watts (auto: from the CPU model data)",
        ),
        SettingSpec(
            "ram_w_per_gb",
            number(0, 10),
            0.3725,
            "memory power per GB, watts (Green Algorithms: 0.3725)",
        ),
        SettingSpec("embodied", boolean, True, "report amortised manufacturing emissions"),
        SettingSpec(
            "embodied_server_kg",
            number(0, 100000),
            1000.0,
            "embodied emissions of the server, kgCO2e",
        ),
        SettingSpec(
            "embodied_gpu_kg", number(0, 100000), 150.0, "embodied emissions per GPU, kgCO2e"
        ),
        SettingSpec(
            "lifetime_years", number(0.5, 20), 4.0, "hardware lifetime for amortisation, years"
        ),
        SettingSpec(
            "ledger",
            optional(_ledger),
            None,
            "path of the SQLite ledger file (auto: jupyter_data_dir()/carbon_magic/ledger.sqlite3;"
            " a relative path is taken in that folder)",
        ),
        SettingSpec(
            "ledger_keep_days",
            optional(positive_number(36500)),
            None,
            "days the ledger keeps each cell; older ones are removed (auto: keep every cell)",
        ),
        SettingSpec(
            "intensity",
            optional(choice(*PROVIDER_NAMES)),
            None,
            "grid intensity provider (auto: electricitymaps when a token is set, else static)",
        ),
        SettingSpec(
            "zone",
            optional(text),
            None,
            "Electricity Maps zone, e.g. DE or US-CAL-CISO (auto: the country)",
        ),
        SettingSpec(
            "postcode",
            optional(text),
            None,
            "UK outward postcode for regional intensity, e.g. SW1",
        ),
        SettingSpec(
            "electricitymaps_token",
            optional(text),
            None,
            "Electricity Maps API token (also ELECTRICITYMAPS_API_TOKEN); never shown or stored",
            secret=True,
        ),
        SettingSpec(
            "electricitymaps_url",
            text,
            "https://api.electricitymap.org",
            "base URL of the Electricity Maps API",
        ),
        SettingSpec(
            "cluster",
            choice("auto", "dask", "ray", "none"),
            "auto",
            "measure the cluster a cell fans out to: auto (the notebook's Dask client, else its "
            "Ray connection), dask, ray, or none",
        ),
        SettingSpec(
            "budget_notebook",
            optional(_scope_budget),
            None,
            "cap for the notebook across kernels and restarts: grams CO2e or energy, as "
            "--budget (e.g. 50g, 0.5kWh; none: no cap)",
        ),
        SettingSpec(
            "budget_day",
            optional(_scope_budget),
            None,
            "cap for the local calendar day over every session on the ledger: grams CO2e "
            "or energy, as --budget (none: no cap)",
        ),
        SettingSpec(
            "budget_scope_on_exceed",
            choice("warn", "stop"),
            "warn",
            "warn: one line in the cell that crosses a notebook or day cap; stop: interrupt "
            "it, and stop each later cell that spends more",
            env_name=ENV_PREFIX + "BUDGET_ON_EXCEED",
        ),
        SettingSpec(
            "budget_scope_predict",
            boolean,
            False,
            "stop or warn as soon as a running cell's predicted total (central value, from "
            "its progress) would cross a notebook or day cap; %%carbon --predict does too",
        ),
        SettingSpec(
            "ukgrid_url",
            text,
            "https://api.carbonintensity.org.uk",
            "base URL of the UK Carbon Intensity API",
        ),
        SettingSpec(
            "remote_calls",
            choice("auto", "off"),
            "auto",
            "auto: capture the cells' calls to hosted LLM APIs and estimate them (EcoLogits); "
            "off: never",
        ),
        SettingSpec(
            "budget_remote",
            boolean,
            True,
            "budgets count the estimated emissions (or energy) of the cell's hosted LLM calls",
        ),
        SettingSpec(
            "wue",
            optional(number(0, 20)),
            None,
            "on-site water usage effectiveness, litres per kWh of IT energy "
            "(auto: the cloud provider's figure, else 0)",
        ),
    ]
}


def setting_names() -> list[str]:
    """All setting names, in documentation order."""
    return list(SPECS)
