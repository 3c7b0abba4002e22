"""The wheel, the Python package and the labextension carry one version."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import carbon_magic

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_for_wheel_package_and_labextension():
    package_json = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert carbon_magic.__version__ == package_json["version"]
    assert version("carbon_magic") == package_json["version"]
