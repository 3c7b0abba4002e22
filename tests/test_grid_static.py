"""Static grid intensity: location resolution, validation, time-zone guess, PUE, data."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from carbon_magic.grid import static, timezone
from carbon_magic.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "carbon_magic" / "data"
SHARED = REPO.parent / "shared" / "data"


def _settings(country=None, cloud_region=None, pue=None):
    return SimpleNamespace(country=country, cloud_region=cloud_region, pue=pue)


def _fake_root(tmp_path: Path, zone: str | None, zone_tab: str = "") -> Path:
    """A fake / with etc/localtime → zone and a zoneinfo folder holding zone_tab."""
    zoneinfo = tmp_path / "usr" / "share" / "zoneinfo"
    zoneinfo.mkdir(parents=True)
    (zoneinfo / "zone.tab").write_text(zone_tab, encoding="utf-8")
    (tmp_path / "etc").mkdir()
    if zone is not None:
        # Only the link text matters; the target need not exist.
        os.symlink(f"/usr/share/zoneinfo/{zone}", tmp_path / "etc" / "localtime")
    return tmp_path


# ------------------------------------------------------------------ countries


@pytest.mark.parametrize("text", ["FR", "fr", " Fr ", "FRA", "fra", "France", "FRANCE"])
def test_validate_country_accepts_codes_and_names(text):
    assert static.validate_country(text) == "FR"


@pytest.mark.parametrize(
    ("text", "iso2"),
    [("côte d'ivoire", "CI"), ("Cote dIvoire", "CI"), ("UK", "GB"), ("gbr", "GB"), ("usa", "US")],
)
def test_validate_country_folds_accents_punctuation_and_aliases(text, iso2):
    assert static.validate_country(text) == iso2


def test_unknown_country_lists_close_matches():
    with pytest.raises(ValueError) as caught:
        static.validate_country("FRX")
    message = str(caught.value)
    assert message.startswith("unknown country 'FRX'; did you mean FR (France)")
    assert message.endswith(
        "Use an ISO-2 or ISO-3 code or a country name, as listed in "
        "carbon_magic/data/grid_intensity_by_country.csv (213 countries)."
    )


@pytest.mark.parametrize(
    "text", ["$(id)", "germany!!", "fr;", "fr.", "`de`", "1FR", "France2", "fr fr", ""]
)
def test_only_codes_and_names_are_countries(text):
    # Letters hidden in other text are not a country, however close they come to one.
    with pytest.raises(ValueError) as caught:
        static.validate_country(text)
    message = str(caught.value)
    assert message.startswith("unknown country ") and "\n" not in message.strip()
    assert "carbon_magic/data/grid_intensity_by_country.csv" in message


@pytest.mark.parametrize(
    ("text", "iso2"),
    [("Guinea-Bissau", "GW"), ("Bosnia & Herzegovina", "BA")],
)
def test_names_keep_their_own_punctuation(text, iso2):
    assert static.validate_country(text) == iso2


def test_misspelt_country_name_suggests_it():
    with pytest.raises(ValueError, match=r"did you mean FR \(France\)"):
        static.validate_country("Frnace")


def test_ambiguous_name_is_rejected_with_both_candidates():
    with pytest.raises(ValueError) as caught:
        static.validate_country("Korea")
    assert "KR (South Korea)" in str(caught.value)
    assert "KP (North Korea)" in str(caught.value)


def test_bad_country_through_settings_changes_nothing():
    settings = Settings(environ={})
    settings.update(country="de")
    with pytest.raises(ValueError, match="unknown country 'ZZZ'"):
        settings.update(country="ZZZ")
    assert settings.country == "DE"


# ---------------------------------------------------------------- cloud regions


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("aws:eu-west-3", "aws:eu-west-3"),
        ("AWS:EU-WEST-3", "aws:eu-west-3"),
        (" aws : eu_west_3 ", "aws:eu-west-3"),
        ("gcp:europe-west1", "gcp:europe-west1"),
        ("azure:francecentral", "azure:francecentral"),
        ("azure:France Central", "azure:francecentral"),
        ("Azure:france-central", "azure:francecentral"),
    ],
)
def test_cloud_region_canonical_form(text, canonical):
    assert static.validate_cloud_region(text) == canonical


def test_cloud_region_without_provider_suggests_one():
    with pytest.raises(ValueError, match=r"provider:region.*Did you mean aws:eu-west-3\?"):
        static.validate_cloud_region("eu-west-3")


def test_unknown_cloud_provider():
    with pytest.raises(ValueError, match="unknown cloud provider 'ibm'.*aws, gcp or azure"):
        static.validate_cloud_region("ibm:us-south")


def test_unknown_region_lists_close_matches():
    with pytest.raises(
        ValueError, match=r"unknown aws region 'eu-west-9'; did you mean aws:eu-west-"
    ):
        static.validate_cloud_region("aws:eu-west-9")


def test_unknown_region_without_close_match_lists_all_of_the_provider():
    with pytest.raises(ValueError) as caught:
        static.validate_cloud_region("gcp:mars1")
    message = str(caught.value)
    assert "valid gcp regions:" in message
    assert "europe-west1" in message and "us-central1" in message
    assert "eu-west-3" not in message  # an AWS region


def test_cloud_factors_are_converted_to_grams():
    regions = static.cloud_regions()
    assert regions["aws:eu-west-3"].g_per_kwh == pytest.approx(52.0)  # 0.000052 t/kWh
    assert regions["gcp:us-central1"].g_per_kwh == pytest.approx(479.0)
    # "000077" in the source: decimal point restored, 77 g/kWh, not 77 t/kWh.
    assert regions["azure:finlandcentral"].g_per_kwh == pytest.approx(77.0)
    assert regions["azure:francecentral"].name == "France Central"


# ------------------------------------------------------------------ resolution


def test_cloud_region_wins_over_country():
    provider = static.StaticProvider(
        _settings(country="DE", cloud_region="aws:eu-west-3"), timezone_name="Europe/Paris"
    )
    now = provider.current()
    assert (now.provider, now.zone, now.g_per_kwh) == ("static", "aws:eu-west-3", 52.0)
    assert now.relative_uncertainty == static.CLOUD_UNCERTAINTY
    assert now.source == (
        "static table: aws:eu-west-3 (France), annual average before 2020"
        " (Cloud Carbon Footprint, from EEA)"
    )
    assert now.year is None


def test_country_wins_over_time_zone():
    provider = static.StaticProvider(_settings(country="FR"), timezone_name="Europe/Berlin")
    now = provider.current()
    row = static.countries()["FR"]
    assert (now.zone, now.g_per_kwh, now.year) == ("FR", row.g_per_kwh, row.year)
    assert now.source == f"static table: FR {row.year} (Our World in Data/Ember)"
    assert now.relative_uncertainty == static.COUNTRY_UNCERTAINTY


def test_time_zone_guess_from_localtime_symlink_and_zone_tab(tmp_path):
    # A zone only this fake table knows, so the guess must come from parsing it.
    root = _fake_root(tmp_path, "Test/Somewhere", "# comment\nUY\t-3453-05611\tTest/Somewhere\n")
    provider = static.StaticProvider(_settings(), root=root, environ={})
    now = provider.current()
    assert now.zone == "UY"
    assert now.source.endswith("country guessed from time zone Test/Somewhere")
    assert now.relative_uncertainty == static.GUESSED_UNCERTAINTY


def test_time_zone_guess_europe_paris(tmp_path):
    root = _fake_root(tmp_path, "Europe/Paris", "FR\t+4852+00220\tEurope/Paris\n")
    now = static.StaticProvider(_settings(), root=root, environ={}).current()
    assert now.zone == "FR"
    assert "guessed from time zone Europe/Paris" in now.source


def test_zone1970_takes_first_country_and_links_follow_their_target(tmp_path):
    folder = tmp_path / "zi"
    folder.mkdir()
    (folder / "zone1970.tab").write_text("DE,DK,NO,SE\t+5230+01322\tEurope/Berlin\n")
    (folder / "tzdata.zi").write_text("L Europe/Berlin Test/Alias\n")
    assert timezone.guess_country_from_timezone("Europe/Berlin", [str(folder)]) == "DE"
    assert timezone.guess_country_from_timezone("Test/Alias", [str(folder)]) == "DE"
    assert timezone.guess_country_from_timezone("Test/Unknown", [str(folder)]) is None


def test_builtin_fallback_without_tz_tables(tmp_path):
    assert timezone.guess_country_from_timezone("Europe/Paris", [str(tmp_path / "none")]) == "FR"


def test_tz_variable_wins_then_etc_timezone(tmp_path):
    root = _fake_root(tmp_path, None)
    (root / "etc" / "timezone").write_text("# set by admin\nEurope/Madrid\n")
    assert timezone.system_timezone_name(root, environ={}) == "Europe/Madrid"
    assert timezone.system_timezone_name(root, environ={"TZ": "Asia/Tokyo"}) == "Asia/Tokyo"
    tz_path = {"TZ": ":/usr/share/zoneinfo/right/Europe/Oslo"}
    assert timezone.system_timezone_name(root, environ=tz_path) == "Europe/Oslo"


@pytest.mark.parametrize("zone", ["Etc/UTC", "UTC", "Etc/GMT+2", "GMT"])
def test_placeless_zone_gives_world_average(tmp_path, zone):
    root = _fake_root(tmp_path, zone, "GB\t+513030-0000731\tUTC\n")  # even if listed
    now = static.StaticProvider(_settings(), root=root, environ={}).current()
    assert now.provider == "world-average"
    assert now.zone == "WORLD"
    assert now.g_per_kwh == 475.0
    assert now.range_g_per_kwh == (50.0, 1000.0)
    assert now.year == 2019
    assert now.source.startswith("world average 475 g/kWh (IEA 2019)")
    assert f"time zone {zone} gives no country" in now.source


def test_unknown_system_zone_gives_world_average(tmp_path):
    root = _fake_root(tmp_path, None)
    now = static.StaticProvider(_settings(), root=root, environ={}).current()
    assert now.provider == "world-average"
    assert "system time zone unknown" in now.source


def test_re_resolves_when_settings_change():
    settings = Settings(environ={})
    provider = static.StaticProvider(settings, timezone_name="Etc/UTC")
    assert provider.current().zone == "WORLD"
    settings.update(country="FRA")
    assert provider.current().zone == "FR"
    settings.update(cloud_region="azure:France Central")
    assert provider.current().zone == "azure:francecentral"
    settings.update(cloud_region=None, country="de")
    assert provider.current().zone == "DE"


def test_current_never_raises():
    # A value that bypassed validation must not break the tracker.
    now = static.StaticProvider(_settings(country="XX"), timezone_name="UTC").current()
    assert now.provider == "world-average"
    assert "static table unusable" in now.source


def test_protocol_methods():
    provider = static.StaticProvider(_settings(country="SE"))
    for member in ("name", "current", "forecast", "status", "close"):
        assert hasattr(provider, member), member  # the IntensityProvider protocol
    assert provider.name == "static"
    assert provider.forecast() == []
    line = provider.status()
    assert "\n" not in line
    assert line.startswith("static: SE ") and "g/kWh" in line
    provider.close()
    provider.close()


# ------------------------------------------------------------------------ PUE


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (_settings(pue=1.3, cloud_region="aws:eu-west-3"), (1.3, "set by you")),
        (_settings(cloud_region="aws:eu-west-3"), (1.135, "AWS")),
        (_settings(cloud_region="gcp:europe-west1"), (1.1, "Google Cloud")),
        (_settings(cloud_region="azure:francecentral"), (1.185, "Azure")),
        (_settings(country="FR"), (1.0, "personal machine, no facility overhead")),
    ],
)
def test_default_pue(settings, expected):
    pue, source = static.default_pue(settings)
    assert pue == expected[0]
    assert source.startswith(expected[1])


# ----------------------------------------------------------------------- data


def test_import_is_cheap():
    code = (
        "import sys, carbon_magic.grid.static as s; "
        "print('carbon_magic.data' in sys.modules, s.countries.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split() == ["False", "0"]


def test_tables_load_once():
    assert static.countries() is static.countries()
    assert len(static.countries()) > 200
    assert static.countries()["FR"].iso3 == "FRA"


def _load_build_script():
    spec = importlib.util.spec_from_file_location("build_data", REPO / "scripts" / "build_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="reference inputs not present")


@needs_shared
def test_packaged_data_rebuilds_identically(tmp_path):
    build = _load_build_script()
    written = build.build(SHARED, tmp_path)
    names = sorted(path.name for path in written)
    packaged = sorted(
        p.name
        for p in DATA.iterdir()
        if p.suffix in (".csv", ".md") and p.name not in build.BUILT_ELSEWHERE
    )
    assert names == packaged
    for name in names:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


@needs_shared
def test_build_rejects_implausible_input(tmp_path):
    build = _load_build_script()
    source = tmp_path / "in"
    source.mkdir()
    for path in SHARED.glob("*.csv"):
        (source / path.name).write_bytes(path.read_bytes())
    country_file = source / "grid_intensity_by_country.csv"
    text = country_file.read_text()
    country_file.write_text(text.replace("FR,FRA,France,2023,56.039", "FR,FRA,France,2023,56039"))
    with pytest.raises(build.DataError, match="implausible intensity"):
        build.build(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
