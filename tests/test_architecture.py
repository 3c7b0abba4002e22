"""The package's shape, checked from its source by scripts/check_architecture.py: no
import circle (imports inside functions and under TYPE_CHECKING count), no module over
500 lines, no ``settings: Any`` at a seam, no name re-exported from an old address."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_checker() -> ModuleType:
    path = ROOT / "scripts" / "check_architecture.py"
    spec = importlib.util.spec_from_file_location("check_architecture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_import_circle_no_long_module_and_no_untyped_settings():
    problems = load_checker().problems(ROOT)
    assert problems == [], "\n".join(problems)


def write(root: Path, name: str, text: str) -> None:
    path = root / "carbon_magic" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_check_finds_circles_long_modules_and_untyped_settings(tmp_path):
    checker = load_checker()
    write(tmp_path, "__init__.py", "")
    write(tmp_path, "clean.py", "from carbon_magic import lazy\n")
    # A circle through an import inside a function and one under TYPE_CHECKING.
    write(tmp_path, "lazy.py", "def f():\n    from carbon_magic import typed\n")
    write(
        tmp_path,
        "typed.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from carbon_magic.lazy import f\n",
    )
    # A package whose __init__ imports its own submodule, which imports the package back.
    write(tmp_path, "wing/__init__.py", "from carbon_magic.wing.part import x\n")
    write(tmp_path, "wing/part.py", "from carbon_magic.wing import y\nx = 1\n")
    write(tmp_path, "long.py", "x = 1\n" * 501)
    write(tmp_path, "seam.py", "from typing import Any\n\n\ndef g(settings: Any) -> None: ...\n")
    # A module handing on a name it imports; a package's __init__ may.
    write(
        tmp_path, "old_home.py", "from carbon_magic.clean import z\n__all__ = ['z', 'w']\nw = 1\n"
    )
    write(tmp_path, "face/__init__.py", "from carbon_magic.clean import z\n__all__ = ['z']\n")
    problems = checker.problems(tmp_path)
    assert sorted(problems) == sorted(
        [
            "carbon_magic/long.py: 501 lines (at most 500)",
            "carbon_magic/seam.py:4: settings annotated Any",
            "carbon_magic/old_home.py: re-exports z (import it from its home)",
            "import circle: carbon_magic.lazy -> carbon_magic.typed; "
            "carbon_magic.typed -> carbon_magic.lazy",
            "import circle: carbon_magic.wing -> carbon_magic.wing.part; "
            "carbon_magic.wing.part -> carbon_magic.wing",
        ]
    ), problems


def test_a_package_without_those_faults_passes(tmp_path):
    checker = load_checker()
    write(tmp_path, "__init__.py", "")
    write(tmp_path, "low.py", "x = 1\n" * 500)
    write(
        tmp_path,
        "high.py",
        "from collections.abc import Mapping\nfrom typing import Any\n"
        "from carbon_magic.low import x\n\n\n"
        "def g(settings: Mapping[str, Any] | None = None) -> None: ...\n",
    )
    assert checker.problems(tmp_path) == []
    assert checker.main(["check", str(tmp_path)]) == 0
    write(tmp_path, "low.py", "def f():\n    from carbon_magic import high\n")
    assert checker.main(["check", str(tmp_path)]) == 1
