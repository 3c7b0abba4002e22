"""Where a machine is, from its time zone: the system's IANA zone and its country.

Used by the static grid provider when neither a country nor a cloud region is set:
the country of the system time zone (``Europe/Paris`` gives FR) is a labelled guess.
The tz database's own tables (``zone.tab``, ``zone1970.tab``, ``tzdata.zi``) map zones
to countries; a small built-in table stands in where none can be found. Nothing here
touches the network.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

# Time zones that say nothing about where a machine is.
_PLACELESS_ZONES = {
    "UTC",
    "UCT",
    "GMT",
    "GMT0",
    "GMT+0",
    "GMT-0",
    "Greenwich",
    "Universal",
    "Zulu",
    "Factory",
    "localtime",
}

# Used only when no tz database tables can be found (e.g. a minimal container
# without tzdata): the most common zones of the countries with the most users.
_FALLBACK_ZONE_COUNTRY = {
    "Africa/Cairo": "EG",
    "Africa/Johannesburg": "ZA",
    "Africa/Lagos": "NG",
    "Africa/Nairobi": "KE",
    "America/Argentina/Buenos_Aires": "AR",
    "America/Bogota": "CO",
    "America/Chicago": "US",
    "America/Denver": "US",
    "America/Los_Angeles": "US",
    "America/Mexico_City": "MX",
    "America/New_York": "US",
    "America/Phoenix": "US",
    "America/Santiago": "CL",
    "America/Sao_Paulo": "BR",
    "America/Toronto": "CA",
    "America/Vancouver": "CA",
    "Asia/Bangkok": "TH",
    "Asia/Dubai": "AE",
    "Asia/Hong_Kong": "HK",
    "Asia/Jakarta": "ID",
    "Asia/Jerusalem": "IL",
    "Asia/Kolkata": "IN",
    "Asia/Calcutta": "IN",
    "Asia/Seoul": "KR",
    "Asia/Shanghai": "CN",
    "Asia/Singapore": "SG",
    "Asia/Taipei": "TW",
    "Asia/Tokyo": "JP",
    "Australia/Melbourne": "AU",
    "Australia/Sydney": "AU",
    "Europe/Amsterdam": "NL",
    "Europe/Athens": "GR",
    "Europe/Berlin": "DE",
    "Europe/Brussels": "BE",
    "Europe/Copenhagen": "DK",
    "Europe/Dublin": "IE",
    "Europe/Helsinki": "FI",
    "Europe/Istanbul": "TR",
    "Europe/Kyiv": "UA",
    "Europe/Kiev": "UA",
    "Europe/Lisbon": "PT",
    "Europe/London": "GB",
    "Europe/Madrid": "ES",
    "Europe/Oslo": "NO",
    "Europe/Paris": "FR",
    "Europe/Prague": "CZ",
    "Europe/Rome": "IT",
    "Europe/Stockholm": "SE",
    "Europe/Vienna": "AT",
    "Europe/Warsaw": "PL",
    "Europe/Zurich": "CH",
    "Pacific/Auckland": "NZ",
}


def _zone_from_path(path: str) -> str | None:
    """``Europe/Paris`` from ``/usr/share/zoneinfo/Europe/Paris`` and similar paths."""
    path = path.replace("\\", "/")
    marker = "zoneinfo/"
    index = path.rfind(marker)
    if index < 0:
        return None
    zone = path[index + len(marker) :].strip("/")
    for prefix in ("posix/", "right/"):
        zone = zone.removeprefix(prefix)
    return zone or None


def system_timezone_name(
    root: str | os.PathLike[str] = "/", environ: Mapping[str, str] | None = None
) -> str | None:
    """The IANA name of the system time zone, or ``None`` when it cannot be told.

    Looks, like the C library does, first at ``TZ`` (a zone name, or ``:`` and a path
    into a zoneinfo tree), then at the target of the ``/etc/localtime`` symlink, then
    at ``/etc/timezone`` (Debian). ``root`` replaces ``/`` for tests.
    """
    environ = os.environ if environ is None else environ
    tz = environ.get("TZ", "").strip()
    if tz:
        tz = tz.removeprefix(":")
        if "/" in tz and (tz.startswith("/") or "zoneinfo/" in tz):
            return _zone_from_path(tz)
        return tz or None
    base = Path(root)
    try:
        zone = _zone_from_path(os.readlink(base / "etc" / "localtime"))
        if zone:
            return zone
    except OSError:
        pass
    try:
        for line in (base / "etc" / "timezone").read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                return line
    except (OSError, UnicodeDecodeError):
        pass
    return None


def default_zoneinfo_dirs(root: str | os.PathLike[str] = "/") -> list[str]:
    """Folders that may hold ``zone.tab``: the system's, then the tzdata package's."""
    dirs = [str(Path(root) / "usr" / "share" / "zoneinfo")]
    if str(root) in ("/", ""):
        import zoneinfo
        from importlib.util import find_spec

        dirs += [path for path in zoneinfo.TZPATH if path not in dirs]
        spec = find_spec("tzdata")
        if spec is not None and spec.submodule_search_locations:
            dirs += [str(Path(p) / "zoneinfo") for p in spec.submodule_search_locations]
    return dirs


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


@functools.cache
def _zone_countries(dirs: tuple[str, ...]) -> dict[str, str]:
    """Zone name → ISO-2 from the tz database tables in the first folder that has them.

    ``zone.tab`` maps each zone to one country; ``zone1970.tab`` lists several for a
    shared zone, most populous first, so only the first is taken; links from
    ``tzdata.zi`` (``L Europe/Kyiv Europe/Kiev``) give old names their target's country.
    """
    for folder in map(Path, dirs):
        mapping: dict[str, str] = {}
        for name in ("zone.tab", "zone1970.tab"):
            for line in _read_lines(folder / name):
                if line.startswith("#"):
                    continue
                fields = line.split("\t")
                if len(fields) >= 3 and fields[0]:
                    mapping.setdefault(fields[2].strip(), fields[0].split(",")[0].strip())
        if not mapping:
            continue
        for line in _read_lines(folder / "tzdata.zi"):
            parts = line.split()
            if len(parts) == 3 and parts[0] == "L" and parts[1] in mapping:
                mapping.setdefault(parts[2], mapping[parts[1]])
        return mapping
    return {}


def is_placeless_zone(zone: str) -> bool:
    """True for UTC, GMT, ``Etc/*`` and the like, which tell nothing about a place."""
    return zone in _PLACELESS_ZONES or zone.startswith("Etc/")


def guess_country_from_timezone(
    zone: str | None, zoneinfo_dirs: Iterable[str] | None = None
) -> str | None:
    """ISO-2 code of the country of an IANA time zone, or ``None`` when unknown.

    ``zoneinfo_dirs`` are folders searched for ``zone.tab``/``zone1970.tab`` (default:
    ``default_zoneinfo_dirs()``); a small built-in table is used when none has them.
    UTC, ``Etc/*`` and POSIX rule strings (``CET-1CEST``) give ``None``.
    """
    if not zone or is_placeless_zone(zone):
        return None
    dirs = tuple(default_zoneinfo_dirs() if zoneinfo_dirs is None else zoneinfo_dirs)
    mapping = _zone_countries(dirs)
    return mapping.get(zone) or _FALLBACK_ZONE_COUNTRY.get(zone)
