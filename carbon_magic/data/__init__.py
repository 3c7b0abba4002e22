"""Reference tables shipped with the package (see ``SOURCES.md`` beside this file).

The CSV files are rebuilt by ``scripts/build_data.py``; nothing here reads anything
outside the installed package.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

COUNTRY_FILE = "grid_intensity_by_country.csv"
CLOUD_FILE = "cloud_region_intensity.csv"
COEFFICIENT_FILE = "cpu_power_by_microarchitecture.csv"
TDP_FILE = "cpu_tdp.csv"
CURVE_FILE = "cpu_load_curves.csv"
CURVE_BAND_FILE = "cpu_load_bands.csv"
CLOUD_CPU_FILE = "cpu_cloud_specs.csv"


def read_text(name: str) -> str:
    """The text of the packaged file ``name``.

    Raises ``FileNotFoundError`` if the package was installed without its data.
    """
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def read_table(name: str) -> list[dict[str, str]]:
    """Rows of the packaged CSV file ``name`` as dicts keyed by column name.

    Raises ``FileNotFoundError`` if the package was installed without its data.
    """
    return list(csv.DictReader(io.StringIO(read_text(name))))
