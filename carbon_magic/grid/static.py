"""Grid carbon intensity from packaged tables: no network, always an answer.

Where the electricity comes from is resolved in this order:

1. ``settings.cloud_region`` (``aws:eu-west-3``): the cloud provider's regional grid
   factor (Cloud Carbon Footprint);
2. ``settings.country`` (ISO-2/ISO-3 code or name): the country's annual average
   (Our World in Data / Ember);
3. the country of the system time zone (``Europe/Paris`` gives FR, see ``timezone``),
   clearly labelled as a guess;
4. the world average, 475 gCO2e/kWh (IEA 2019), with a very wide range.

Tables are read on first use and kept (``functools.cache``), so importing this module
costs nothing; settings validators call ``validate_country`` and
``validate_cloud_region`` without starting a provider.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from carbon_magic.grid.base import ForecastPoint, Intensity
from carbon_magic.grid.timezone import (
    default_zoneinfo_dirs,
    guess_country_from_timezone,
    system_timezone_name,
)

__all__ = [
    "CLOUD_PUE",
    "PROVIDERS",
    "CloudRegion",
    "CountryIntensity",
    "StaticProvider",
    "cloud_region_intensity",
    "cloud_regions",
    "countries",
    "country_intensity",
    "default_pue",
    "validate_cloud_region",
    "validate_country",
    "world_average_intensity",
]

PROVIDERS = ("aws", "gcp", "azure")

# World average carbon intensity of electricity, IEA 2019, as used by Green Algorithms
# and CodeCarbon for an unknown location.
WORLD_AVERAGE_G_PER_KWH = 475.0
WORLD_AVERAGE_YEAR = 2019
# Annual country averages in the packaged table run from ~0 (hydro, nuclear) to
# ~1300 g/kWh; 93 % of the 213 countries lie in 50–1000 g/kWh (5th–95th percentile
# 33–758 g/kWh). Not knowing the country, the honest range is that whole span.
WORLD_LOW_G_PER_KWH = 50.0
WORLD_HIGH_G_PER_KWH = 1000.0

# Relative half-widths of the range (0.3 = ±30 %), by how the value was obtained.
#
# A country figure is a production-based annual average; a notebook cell runs for
# minutes, when the grid can be far from that average. Hourly intensity swings by tens
# of percent within a day and between seasons as wind, solar and hydro come and go
# (Miller et al. 2022, "Hourly accounting of carbon emissions from electricity
# consumption", Environ. Res. Lett. 17 044073), and imports shift the intensity of
# what is consumed from that of what is produced (Electricity Maps, "Consumption vs
# Production", 2023). ±30 % covers typical hour-to-hour departures on mixed grids.
COUNTRY_UNCERTAINTY = 0.30
# Cloud region factors in CCF are "averages over a given year that is pre-2020" and
# "don't take into account time of day" (CCF methodology). Grids have changed since
# (several percent a year in Europe and the US), on top of the hourly swing: ±40 %.
CLOUD_UNCERTAINTY = 0.40
# A time-zone guess can name the wrong country: a zone may span several countries
# (Europe/Berlin is also DK, NO and SE in zone1970.tab) and a kernel can run on a
# remote machine whose clock is set to its user's zone. ±50 % is a widened country
# range that flags the guess; it is a label, not a bound, if the guess is wrong.
GUESSED_UNCERTAINTY = 0.50
# Asymmetric 50–1000 g/kWh around 475: half-width 475 g/kWh, i.e. ±100 %.
WORLD_UNCERTAINTY = (WORLD_HIGH_G_PER_KWH - WORLD_LOW_G_PER_KWH) / 2 / WORLD_AVERAGE_G_PER_KWH

# Data-centre power usage effectiveness, Cloud Carbon Footprint methodology: GCP
# publishes 1.1; AWS 1.135 is CCF's conservative estimate; Azure 1.185 is Microsoft's
# fleet-wide trailing-12-month figure quoted by CCF.
CLOUD_PUE = {"aws": 1.135, "gcp": 1.1, "azure": 1.185}
_PROVIDER_LABEL = {"aws": "AWS", "gcp": "Google Cloud", "azure": "Azure"}

COUNTRY_DATASET = "Our World in Data/Ember"
CLOUD_DATASET = "Cloud Carbon Footprint"

# Common names that are not ISO codes but mean one country without doubt.
_COUNTRY_ALIASES = {"UK": "GB"}

# ---------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class CountryIntensity:
    """One row of the country table: annual average intensity, gCO2e/kWh."""

    iso2: str
    iso3: str
    name: str
    year: int
    g_per_kwh: float


@dataclass(frozen=True)
class CloudRegion:
    """One cloud region and its grid emission factor, gCO2e/kWh.

    ``region`` is the provider's identifier (``eu-west-3``, ``francecentral``);
    ``name`` is the name CCF publishes (``France Central`` for Azure).
    """

    provider: str
    region: str
    name: str
    location: str
    g_per_kwh: float
    origin: str  # who published the figure: EPA, EEA, Google, ...

    @property
    def key(self) -> str:
        """``provider:region``, the canonical setting value."""
        return f"{self.provider}:{self.region}"


@functools.cache
def countries() -> dict[str, CountryIntensity]:
    """The packaged country table keyed by ISO-2 code (read once)."""
    from carbon_magic.data import COUNTRY_FILE, read_table

    return {
        row["iso2"]: CountryIntensity(
            row["iso2"], row["iso3"], row["name"], int(row["year"]), float(row["g_per_kwh"])
        )
        for row in read_table(COUNTRY_FILE)
    }


@functools.cache
def cloud_regions() -> dict[str, CloudRegion]:
    """The packaged cloud-region table keyed by ``provider:region`` (read once)."""
    from carbon_magic.data import CLOUD_FILE, read_table

    regions = (
        CloudRegion(
            row["provider"],
            row["region"],
            row["name"],
            row["location"],
            float(row["g_per_kwh"]),
            row["origin"],
        )
        for row in read_table(CLOUD_FILE)
    )
    return {region.key: region for region in regions}


def _fold(text: str) -> str:
    """Lower case, no accents, no punctuation, single spaces: for matching names."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = text.replace("&", " and ")
    text = re.sub(r"[^\w\s]", "", text)
    text = " ".join(text.split())
    return text.removeprefix("the ")


# What a country's name may be written with: letters, spaces and the punctuation found in
# names (Côte d'Ivoire, Guinea-Bissau, St. Lucia). Anything else (``$(id)``, ``fr;``,
# ``germany!!``) is not a name, even if its letters spell one.
_NAME_CHARACTERS = re.compile(r"[^\W\d_]+(?:[\s'’.,&()-]+[^\W\d_]*)*")


@functools.cache
def _country_lookup() -> dict[str, str]:
    """ISO-2, ISO-3 codes, aliases and unfolded names (lower case) → ISO-2."""
    exact: dict[str, str] = {}
    for row in countries().values():
        exact[row.iso2.casefold()] = row.iso2
        exact[row.iso3.casefold()] = row.iso2
        exact.setdefault(row.name.casefold(), row.iso2)
    for alias, iso2 in _COUNTRY_ALIASES.items():
        exact.setdefault(alias.casefold(), iso2)
    return exact


@functools.cache
def _country_names() -> dict[str, str]:
    """Folded country names (no case, accents or punctuation) → ISO-2."""
    names: dict[str, str] = {}
    for row in countries().values():
        names.setdefault(_fold(row.name), row.iso2)
    return names


def _close_countries(text: str, limit: int = 5) -> list[str]:
    import difflib

    folded = _fold(text)
    table = countries()
    codes = {}
    names = {}
    for row in table.values():
        codes[row.iso2.casefold()] = row.iso2
        codes[row.iso3.casefold()] = row.iso2
        names[_fold(row.name)] = row.iso2
    found: list[str] = []
    if len(folded) <= 3:
        # Short inputs are mistyped codes: one wrong letter of two is a 0.5 ratio.
        found += [codes[c] for c in difflib.get_close_matches(folded, codes, n=limit, cutoff=0.5)]
    if len(folded) >= 3:
        found += [names[n] for n in names if folded in n]  # "korea" → both Koreas
    found += [names[n] for n in difflib.get_close_matches(folded, names, n=limit, cutoff=0.6)]
    return list(dict.fromkeys(found))[:limit]


def validate_country(code: str) -> str:
    """Canonical ISO-2 code (``"FR"``) for an ISO-2 or ISO-3 code or a country name.

    Case, accents and punctuation are ignored: ``"fr"``, ``"FRA"``, ``"France"`` and
    ``"côte d'ivoire"`` are all accepted. A name is accepted only when it is exactly
    the name of one country in the table (``"Korea"`` is ambiguous and rejected with
    both Koreas suggested); ``"UK"`` is accepted for GB.

    Raises ``ValueError`` naming close matches when the country is not in the table.
    """
    from carbon_magic.data import COUNTRY_FILE

    text = str(code).strip()
    exact = _country_lookup()
    found = exact.get(text.casefold())
    if found is None and _NAME_CHARACTERS.fullmatch(text):
        found = _country_names().get(_fold(text))
    if found is not None:
        return found
    table = countries()
    close = [f"{iso2} ({table[iso2].name})" for iso2 in _close_countries(text)]
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    raise ValueError(
        f"unknown country {text!r}{hint} Use an ISO-2 or ISO-3 code or a country name, "
        f"as listed in carbon_magic/data/{COUNTRY_FILE} ({len(table)} countries)."
    )


def _region_key(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text).casefold()


@functools.cache
def _region_lookup() -> dict[str, dict[str, str]]:
    """provider → {folded region id or name → canonical ``provider:region``}."""
    lookup: dict[str, dict[str, str]] = {provider: {} for provider in PROVIDERS}
    for region in cloud_regions().values():
        lookup[region.provider][_region_key(region.region)] = region.key
        lookup[region.provider][_region_key(region.name)] = region.key
    return lookup


def validate_cloud_region(text: str) -> str:
    """Canonical ``provider:region`` for a cloud region, e.g. ``"aws:eu-west-3"``.

    ``provider`` is aws, gcp or azure (any case). The region is matched ignoring case,
    spaces, hyphens and underscores, so ``azure:France Central`` and
    ``azure:francecentral`` both give ``azure:francecentral``.

    Raises ``ValueError`` naming close matches, or the provider's regions, when the
    region is unknown; or the expected form when there is no ``provider:`` prefix.
    """
    import difflib

    raw = str(text).strip()
    lookup = _region_lookup()
    provider, sep, region = raw.partition(":")
    provider = provider.strip().casefold()
    if not sep:
        matches = [
            table[_region_key(raw)] for table in lookup.values() if _region_key(raw) in table
        ]
        hint = f" Did you mean {' or '.join(matches)}?" if matches else ""
        raise ValueError(
            f"cloud region {raw!r} must be provider:region with provider aws, gcp or azure"
            f" (e.g. aws:eu-west-3).{hint}"
        )
    if provider not in PROVIDERS:
        raise ValueError(f"unknown cloud provider {provider!r} in {raw!r}; use aws, gcp or azure")
    table = lookup[provider]
    key = _region_key(region)
    if key in table:
        return table[key]
    known = sorted({value for value in table.values()})
    close = [table[k] for k in difflib.get_close_matches(key, table, n=4, cutoff=0.6)]
    close = list(dict.fromkeys(close))
    if close:
        hint = f"did you mean {', '.join(close)}?"
    else:
        hint = f"valid {provider} regions: {', '.join(k.partition(':')[2] for k in known)}."
    raise ValueError(f"unknown {provider} region {region.strip()!r}; {hint}")


class LocationSettings(Protocol):
    """The settings the static tables follow (``Settings`` has them)."""

    @property
    def country(self) -> str | None: ...

    @property
    def cloud_region(self) -> str | None: ...

    @property
    def pue(self) -> float | None: ...


def default_pue(settings: LocationSettings) -> tuple[float, str]:
    """(PUE, where it came from) for the current settings.

    ``settings.pue`` wins ("set by you"); with a cloud region, the provider's fleet
    average from Cloud Carbon Footprint; otherwise 1.0, a personal machine with no
    facility overhead (cooling, power conversion).
    """
    pue = getattr(settings, "pue", None)
    if pue is not None:
        return float(pue), "set by you"
    cloud_region = getattr(settings, "cloud_region", None)
    if cloud_region:
        provider = str(cloud_region).partition(":")[0].casefold()
        if provider in CLOUD_PUE:
            label = _PROVIDER_LABEL[provider]
            return CLOUD_PUE[provider], f"{label} data-centre average ({CLOUD_DATASET})"
    return 1.0, "personal machine, no facility overhead"


# ------------------------------------------------------------------------- provider


def world_average_intensity(reason: str) -> Intensity:
    """The world average with its wide asymmetric range; ``reason`` says why it is used."""
    return Intensity(
        g_per_kwh=WORLD_AVERAGE_G_PER_KWH,
        provider="world-average",
        zone="WORLD",
        source=f"world average {WORLD_AVERAGE_G_PER_KWH:.0f} g/kWh (IEA {WORLD_AVERAGE_YEAR}); {reason}",
        relative_uncertainty=WORLD_UNCERTAINTY,
        year=WORLD_AVERAGE_YEAR,
        low_g_per_kwh=WORLD_LOW_G_PER_KWH,
        high_g_per_kwh=WORLD_HIGH_G_PER_KWH,
    )


def country_intensity(code: str, guessed_from: str | None = None) -> Intensity:
    """Static intensity of a country (any form ``validate_country`` accepts).

    ``guessed_from`` is the time zone the country was guessed from, if it was; the
    source text then says so and the range widens. Raises ``ValueError`` for an
    unknown country.
    """
    row = countries()[validate_country(code)]
    source = f"static table: {row.iso2} {row.year} ({COUNTRY_DATASET})"
    uncertainty = COUNTRY_UNCERTAINTY
    if guessed_from:
        source += f", country guessed from time zone {guessed_from}"
        uncertainty = GUESSED_UNCERTAINTY
    return Intensity(
        g_per_kwh=row.g_per_kwh,
        provider="static",
        zone=row.iso2,
        source=source,
        relative_uncertainty=uncertainty,
        year=row.year,
    )


def cloud_region_intensity(text: str) -> Intensity:
    """Static intensity of a cloud region (any form ``validate_cloud_region`` accepts).

    Raises ``ValueError`` for an unknown region.
    """
    region = cloud_regions()[validate_cloud_region(text)]
    source = (
        f"static table: {region.key} ({region.location}), annual average before 2020"
        f" ({CLOUD_DATASET}, from {region.origin})"
    )
    return Intensity(
        g_per_kwh=region.g_per_kwh,
        provider="static",
        zone=region.key,
        source=source,
        relative_uncertainty=CLOUD_UNCERTAINTY,
    )


class StaticProvider:
    """Intensity from the packaged tables, following the current settings.

    ``settings`` needs ``country`` and ``cloud_region`` attributes (``None`` when not
    set). ``timezone_name`` replaces the system time zone for the guess; ``root`` and
    ``zoneinfo_dirs`` replace ``/`` and the tz database folders (for tests), and
    ``environ`` the process environment (for ``TZ``).

    The answer is resolved again whenever the settings change, and cached per
    (country, cloud_region) otherwise; the time zone is read once, on first need.
    """

    name = "static"

    def __init__(
        self,
        settings: LocationSettings,
        timezone_name: str | None = None,
        *,
        root: str | os.PathLike[str] = "/",
        zoneinfo_dirs: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._timezone_name = timezone_name
        self._root = root
        self._zoneinfo_dirs = (
            list(zoneinfo_dirs) if zoneinfo_dirs is not None else default_zoneinfo_dirs(root)
        )
        self._environ = environ
        self._lock = threading.Lock()
        self._cache: dict[tuple[str | None, str | None], Intensity] = {}
        self._zone: tuple[str | None] | None = None  # (zone,) once looked up

    def _system_zone(self) -> str | None:
        if self._zone is None:
            zone = self._timezone_name
            if zone is None:
                zone = system_timezone_name(self._root, self._environ)
            self._zone = (zone,)
        return self._zone[0]

    def _resolve(self, country: str | None, cloud_region: str | None) -> Intensity:
        if cloud_region:
            return cloud_region_intensity(cloud_region)
        if country:
            return country_intensity(country)
        zone = self._system_zone()
        guess = guess_country_from_timezone(zone, self._zoneinfo_dirs)
        if guess is not None and guess in countries():
            return country_intensity(guess, guessed_from=zone)
        if zone is None:
            why = "system time zone unknown"
        elif guess is not None:
            why = f"no data for {guess}, guessed from time zone {zone}"
        else:
            why = f"time zone {zone} gives no country"
        return world_average_intensity(
            f"no country or cloud region set ({why}); set one, e.g. country=FR"
        )

    def current(self) -> Intensity:
        """The intensity for the current settings. Never raises."""
        key = (
            getattr(self._settings, "country", None),
            getattr(self._settings, "cloud_region", None),
        )
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            try:
                result = self._resolve(*key)
            except Exception as error:  # never raise into the tracker
                result = world_average_intensity(f"static table unusable: {error}")
            if len(self._cache) > 16:  # settings rarely change; keep it small anyway
                self._cache.clear()
            self._cache[key] = result
            return result

    def forecast(self) -> list[ForecastPoint]:
        """Static tables have no forecast: always ``[]``."""
        return []

    def status(self) -> str:
        """One line: value, range and source of the current intensity."""
        now = self.current()
        low, high = now.range_g_per_kwh
        return f"static: {now.zone} {now.g_per_kwh:.0f} g/kWh ({low:.0f}–{high:.0f}), {now.source}"

    def close(self) -> None:
        """Nothing to stop."""
