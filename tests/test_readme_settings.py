"""The README's settings table lists every setting, in order, with its variable and doc."""

from __future__ import annotations

import re
from pathlib import Path

from carbon_magic.setting_specs import SPECS

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| `([A-Z_]+)` \| [^|]+ \| (.+) \|$", re.M)


def test_the_readme_settings_table_matches_the_settings():
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- generated from carbon_magic.settings.SPECS -->")
    end = text.index("<!-- end of generated table -->")
    rows = ROW.findall(text[start:end])
    assert [name for name, _, _ in rows] == list(SPECS)
    for name, variable, doc in rows:
        assert variable == SPECS[name].env_var, name
        assert doc == SPECS[name].doc, name
