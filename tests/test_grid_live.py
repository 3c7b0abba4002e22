"""Live grid providers against local fake APIs: fetching, caching, errors, selection, hints."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from carbon_magic.grid import make_provider
from carbon_magic.grid.base import ForecastPoint, Intensity
from carbon_magic.grid.electricitymaps import ElectricityMapsProvider
from carbon_magic.grid.hints import carbon_aware_hint, emissions_if_run_at
from carbon_magic.grid.http import FetchError, get_json
from carbon_magic.grid.live import aged_uncertainty, format_age
from carbon_magic.grid.static import StaticProvider
from carbon_magic.grid.ukgrid import UKGridProvider, half_hour_utc, outward_code
from carbon_magic.settings import Settings

from .fake_grid_apis import FakeElectricityMaps, FakeUKGrid, TricklingServer

TOKEN = "tok-9f8e7d6c5b4a"
WAIT_S = 5.0  # generous upper bound; a local fetch takes milliseconds


class FixedProvider:
    """A stand-in static fallback that records whether it was closed."""

    name = "static"

    def __init__(self, g_per_kwh: float = 475.0) -> None:
        self.g_per_kwh = g_per_kwh
        self.closed = False

    def current(self) -> Intensity:
        return Intensity(self.g_per_kwh, "static", "WORLD", "fixed fallback", 1.0)

    def forecast(self) -> list[ForecastPoint]:
        return []

    def status(self) -> str:
        return "fixed fallback"

    def close(self) -> None:
        self.closed = True


class ShiftedClock:
    """``time.monotonic`` plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def em():
    with FakeElectricityMaps(token=TOKEN, intensity=320.0) as api:
        yield api


@pytest.fixture
def uk():
    with FakeUKGrid() as api:
        yield api


@pytest.fixture
def providers():
    """Collects providers and closes them after the test."""
    made: list = []
    yield made
    for provider in made:
        provider.close()


def em_provider(api, providers, *, token=TOKEN, zone="DE", **options):
    provider = ElectricityMapsProvider(zone, token, FixedProvider(), base_url=api.url, **options)
    providers.append(provider)
    return provider


def uk_provider(api, providers, postcode=None, **options):
    provider = UKGridProvider(postcode, FixedProvider(), base_url=api.url, **options)
    providers.append(provider)
    return provider


def wait_for(condition, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


# ------------------------------------------------------------------- Electricity Maps


def test_electricitymaps_latest_and_forecast(em, providers):
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)

    now = provider.current()
    assert now.g_per_kwh == 320.0
    assert (now.provider, now.zone) == ("electricitymaps", "DE")
    assert now.source == "Electricity Maps DE, live, <1 min old"
    assert now.age_s() is not None and now.age_s() < 5
    assert now.measured_at == datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    assert now.relative_uncertainty == pytest.approx(0.15, abs=0.01)  # estimated value

    points = provider.forecast()
    assert [p.g_per_kwh for p in points] == [320.0, 250.0, 120.0, 200.0]
    assert points == sorted(points, key=lambda p: p.at)
    assert points[1].at - points[0].at == timedelta(hours=1)

    latest = [r for r in em.requests if r.route == "/v3/carbon-intensity/latest"]
    forecast = [r for r in em.requests if r.route == "/v3/carbon-intensity/forecast"]
    assert len(latest) == 1 and len(forecast) == 1
    assert latest[0].path.endswith("?zone=DE")
    assert latest[0].headers["auth-token"] == TOKEN
    assert "Electricity Maps DE: 320 g/kWh, live" in provider.status()


def test_electricitymaps_measured_value_is_tighter(em, providers):
    em.estimated = False
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().relative_uncertainty == pytest.approx(0.10, abs=0.01)


def test_key_without_forecast_access_degrades_silently(em, providers, caplog):
    em.forecast_allowed = False
    provider = em_provider(em, providers)
    with caplog.at_level(logging.WARNING, logger="carbon_magic.grid"):
        assert provider.wait_ready(WAIT_S)
        assert provider.refresh(wait_s=WAIT_S)

    assert provider.current().g_per_kwh == 320.0
    assert provider.current().provider == "electricitymaps"
    assert provider.forecast() == []
    assert caplog.records == []
    status = provider.status()
    assert "failed" not in status and "not updated" not in status
    assert "no forecast with this API key" in status
    # The forecast is not asked for again once the key is known not to include it.
    assert em.hits("/v3/carbon-intensity/forecast") == 1
    assert em.hits("/v3/carbon-intensity/latest") == 2


def test_forecast_401_also_degrades(em, providers):
    em.fail(401, path="/v3/carbon-intensity/forecast")
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().provider == "electricitymaps"
    assert provider.forecast() == []


def test_rejected_token_falls_back_with_one_clear_message(em, providers, caplog):
    with caplog.at_level(logging.WARNING, logger="carbon_magic.grid"):
        provider = em_provider(em, providers, token="wrong-token-123")
        assert provider.wait_ready(WAIT_S)
        assert provider.refresh(wait_s=WAIT_S)

    now = provider.current()
    assert now.provider == "static" and now.source == "fixed fallback"
    status = provider.status()
    assert "Electricity Maps DE: rejected the API token (HTTP 401)" in status
    assert "using fixed fallback" in status
    assert "wrong-token-123" not in status
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "HTTP 401" in messages[0]
    assert "wrong-token-123" not in messages[0]
    assert em.hits("/v3/carbon-intensity/forecast") == 0


def test_rate_limit_keeps_last_good_value_with_its_age(em, providers):
    clock = ShiftedClock()
    provider = em_provider(em, providers, clock=clock)
    assert provider.wait_ready(WAIT_S)
    em.fail(429, headers={"Retry-After": "120"})
    em.intensity = 999.0
    clock.offset = 20 * 60  # past the 15 min cache
    assert provider.refresh(wait_s=WAIT_S)

    now = provider.current()
    assert now.g_per_kwh == 320.0
    assert now.source == "Electricity Maps DE, live, 20 min old"
    assert now.age_s() == pytest.approx(20 * 60, abs=5)
    assert now.relative_uncertainty > 0.15  # widened with age
    status = provider.status()
    assert "rate limit reached (HTTP 429)" in status
    assert "retry in 2 min" in status  # Retry-After honoured


def test_rate_limit_before_any_value_falls_back(em, providers):
    em.fail(429)
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().source == "fixed fallback"
    assert "HTTP 429" in provider.status()


def test_timeout_never_blocks_current_and_gives_up_within_2s(em, providers):
    em.delay_s = 3.0
    started = time.monotonic()
    provider = em_provider(em, providers)
    now = provider.current()
    assert time.monotonic() - started < 0.2
    assert now.source == "fixed fallback"
    assert "first fetch in progress" in provider.status()

    assert provider.wait_ready(3.0)
    assert time.monotonic() - started < 2.7
    assert provider.current().source == "fixed fallback"
    assert "did not answer within 2 s" in provider.status()


@pytest.mark.parametrize(
    "body, detail",
    [
        ("{not json", "not JSON"),
        ({"zone": "DE", "carbonIntensity": None}, "no numeric 'carbonIntensity'"),
        ([1, 2, 3], "not an object"),
        ({"zone": "DE", "carbonIntensity": 100, "datetime": "yesterday"}, "not ISO 8601"),
        (
            {"zone": "DE", "carbonIntensity": 99999, "datetime": "2026-11-29T06:00:00Z"},
            "implausible 'carbonIntensity': 99999 g/kWh (real grids stay between 0 and 2000)",
        ),
        ({"zone": "DE", "carbonIntensity": -5}, "implausible 'carbonIntensity': -5"),
    ],
)
def test_malformed_answer_falls_back(em, providers, body, detail):
    em.malformed(path="/v3/carbon-intensity/latest", body=body)
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().source == "fixed fallback"
    status = provider.status()
    assert "Electricity Maps DE: sent an answer that could not be read" in status
    assert detail in status


def test_malformed_forecast_keeps_latest(em, providers):
    em.malformed(path="/v3/carbon-intensity/forecast", body={"zone": "DE"})
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().g_per_kwh == 320.0
    assert provider.forecast() == []
    assert "forecast not updated" in provider.status()


def test_empty_forecast(em, providers):
    em.forecast = []
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.forecast() == []
    assert carbon_aware_hint(provider.current(), provider.forecast()) is None


def test_cache_serves_until_expiry_then_refetches(em, providers):
    provider = em_provider(em, providers, cache_s=0.3)
    assert provider.wait_ready(WAIT_S)
    em.intensity = 100.0
    assert provider.current().g_per_kwh == 320.0  # cached
    assert em.hits("/v3/carbon-intensity/latest") == 1
    assert wait_for(lambda: provider.current().g_per_kwh == 100.0)
    assert em.hits("/v3/carbon-intensity/latest") >= 2


def test_cache_expiry_with_a_shifted_clock(em, providers):
    clock = ShiftedClock()
    provider = em_provider(em, providers, clock=clock)
    assert provider.wait_ready(WAIT_S)
    em.intensity = 150.0
    clock.offset = 14 * 60
    assert provider.current().g_per_kwh == 320.0  # still within 15 min
    assert provider.current().source.endswith("14 min old")
    time.sleep(0.1)
    assert em.hits("/v3/carbon-intensity/latest") == 1
    clock.offset = 15 * 60 + 1
    provider.current()  # a due fetch is started by asking
    assert wait_for(lambda: provider.current().g_per_kwh == 150.0)
    assert provider.current().source == "Electricity Maps DE, live, <1 min old"


def test_value_too_old_is_dropped_for_the_fallback(em, providers):
    clock = ShiftedClock()
    provider = em_provider(em, providers, clock=clock)
    assert provider.wait_ready(WAIT_S)
    em.fail(500)
    clock.offset = 7 * 3600
    assert provider.refresh(wait_s=WAIT_S)
    assert provider.current().source == "fixed fallback"
    status = provider.status()
    assert "last live value is 7.0 h old" in status
    assert "answered HTTP 500" in status


def test_token_never_shown(em, providers, caplog):
    secret = TOKEN
    with caplog.at_level(logging.DEBUG):
        good = em_provider(em, providers)
        bad = em_provider(em, providers, token=secret + "-revoked")
        nozone = em_provider(em, providers, zone=None)
        for provider in (good, bad, nozone):
            assert provider.wait_ready(WAIT_S)
    texts = [caplog.text]
    for provider in (good, bad, nozone):
        texts += [repr(provider), str(vars(provider)), provider.status()]
        texts += [provider.current().source, repr(provider.current())]
    assert good.current().provider == "electricitymaps"  # it did use the token
    for text in texts:
        assert secret not in text


def test_missing_token_or_zone_is_explained(em, providers):
    notoken = em_provider(em, providers, token=None)
    nozone = em_provider(em, providers, zone=None)
    assert notoken.wait_ready(0) and nozone.wait_ready(0)
    assert "ELECTRICITYMAPS_API_TOKEN" in notoken.status()
    assert "zone=DE" in nozone.status()
    assert notoken.current().source == nozone.current().source == "fixed fallback"
    assert em.requests == []


def test_close_is_idempotent_and_closes_the_fallback(em, providers):
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    provider.close()
    provider.close()
    assert provider.fallback.closed
    assert provider.current().g_per_kwh == 320.0  # still answers
    assert wait_for(lambda: not provider.fetching)
    assert provider.refresh(wait_s=0.1) is False


def test_runtime_change_is_seen_on_refresh(em, providers):
    provider = em_provider(em, providers)
    assert provider.wait_ready(WAIT_S)
    em.intensity = 42.0
    assert provider.refresh(wait_s=WAIT_S)
    assert provider.current().g_per_kwh == 42.0


# ------------------------------------------------------------------------------ UK grid


def test_uk_national_and_forecast(uk, providers):
    provider = uk_provider(uk, providers)
    assert provider.wait_ready(WAIT_S)
    now = provider.current()
    assert (now.g_per_kwh, now.provider, now.zone) == (200.0, "ukgrid", "GB")
    assert now.source == "UK Carbon Intensity GB, live, <1 min old"
    assert now.relative_uncertainty == pytest.approx(0.10, abs=0.01)  # an actual value
    assert [p.g_per_kwh for p in provider.forecast()] == [200.0, 150.0, 90.0, 140.0]
    assert uk.hits("/intensity") >= 1
    assert len(uk.forecast_from) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:[03]0Z", uk.forecast_from[0])
    assert uk.hits(f"/intensity/{uk.forecast_from[0]}/fw48h") == 1


def test_uk_national_forecast_only_value(uk, providers):
    uk.actual = False
    provider = uk_provider(uk, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().relative_uncertainty == pytest.approx(0.15, abs=0.01)


def test_uk_regional_by_outward_postcode(uk, providers):
    provider = uk_provider(uk, providers, postcode="sw1 ")
    assert provider.wait_ready(WAIT_S)
    now = provider.current()
    assert (now.g_per_kwh, now.zone) == (180.0, "GB:SW1")
    assert now.source == "UK Carbon Intensity London (SW1), live, <1 min old"
    assert uk.hits("/regional/postcode/SW1") == 1
    assert uk.hits("/regional/intensity/") == 1
    assert uk.hits("/intensity") == 0  # nothing national
    assert [p.g_per_kwh for p in provider.forecast()] == [200.0, 150.0, 90.0, 140.0]


def test_uk_unknown_region_and_bad_postcode(uk, providers):
    unknown = uk_provider(uk, providers, postcode="ZZ9")
    assert unknown.wait_ready(WAIT_S)
    assert unknown.current().source == "fixed fallback"
    assert "HTTP 400" in unknown.status()

    bad = uk_provider(uk, providers, postcode="not a postcode")
    assert bad.wait_ready(0)
    assert "postcode must be a UK postcode" in bad.status()
    assert uk.hits("/regional/postcode/ZZ9") == 1 and uk.hits("/regional/postcode/NOT") == 0


def test_uk_malformed_and_empty_answers(uk, providers):
    uk.malformed(path="/intensity", body={"data": []})
    provider = uk_provider(uk, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().source == "fixed fallback"
    assert "has no periods" in provider.status()


def test_uk_empty_forecast(uk, providers):
    uk.forecast = []
    provider = uk_provider(uk, providers)
    assert provider.wait_ready(WAIT_S)
    assert provider.current().g_per_kwh == 200.0
    assert provider.forecast() == []


def test_outward_code_and_half_hour():
    assert outward_code("SW1A 1AA") == "SW1A"
    assert outward_code("m11ae") == "M1"
    assert outward_code(" eh8 ") == "EH8"
    with pytest.raises(ValueError, match="SW1"):
        outward_code("12345")
    moment = datetime(2026, 11, 29, 6, 44, 10, tzinfo=timezone.utc)
    assert half_hour_utc(moment) == "2026-11-29T06:30Z"
    assert half_hour_utc(moment.replace(minute=5)) == "2026-11-29T06:00Z"


# ------------------------------------------------------------------------------ http


def test_http_errors_are_sorted(em):
    with pytest.raises(FetchError) as error:
        get_json(em.url + "/v3/carbon-intensity/latest?zone=DE")
    assert (error.value.kind, error.value.status) == ("http", 401)

    em.malformed()
    with pytest.raises(FetchError) as error:
        get_json(em.url + "/anything")
    assert error.value.kind == "malformed"

    em.clear_failures()
    em.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        get_json(em.url + "/anything", timeout_s=0.3)
    assert error.value.kind == "timeout"
    assert time.monotonic() - started < 0.9


def test_http_refuses_to_wait_longer_than_2s(em):
    em.delay_s = 2.6
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        get_json(em.url + "/x", timeout_s=30)
    assert error.value.kind == "timeout"
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    "prefix, trickle",
    [
        # the body, one byte at a time (each well inside the socket timeout)
        (b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n", b'{"v": "' + b"x" * 190 + b'"}'),
        # the headers themselves
        (b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"y" * 200 + b"\r\n\r\n{}"),
    ],
    ids=["body", "headers"],
)
def test_http_one_deadline_for_a_trickled_answer(prefix, trickle):
    with TricklingServer(prefix, trickle, every_s=0.1) as server:
        started = time.monotonic()
        with pytest.raises(FetchError) as error:
            get_json(server.url + "/intensity", timeout_s=1.0)
        took = time.monotonic() - started
    assert error.value.kind == "timeout"
    assert "within 1 s" in error.value.detail
    assert took < 1.6  # not the 20 s the trickle would take


def test_http_network_error():
    with FakeUKGrid() as api:
        url = api.url
    with pytest.raises(FetchError) as error:
        get_json(url + "/intensity")  # nothing listens there any more
    assert error.value.kind == "network"


def test_token_not_forwarded_to_another_host(em):
    # 127.0.0.1 and localhost are different hosts to a browser and to us.
    other = em.url.replace("127.0.0.1", "localhost") + "/elsewhere"
    em.fail(302, path="/moved", body="", headers={"Location": other}, times=1)
    with pytest.raises(FetchError):
        get_json(em.url + "/moved", headers={"auth-token": TOKEN})
    hops = [r for r in em.requests if r.route == "/elsewhere"]
    assert len(hops) == 1 and "auth-token" not in hops[0].headers


# ------------------------------------------------------------------------ make_provider


def test_make_provider_default_is_static(providers):
    provider = make_provider(Settings(environ={}))
    providers.append(provider)
    assert isinstance(provider, StaticProvider)


def test_make_provider_auto_electricitymaps_by_token(em, providers):
    settings = Settings(environ={"ELECTRICITYMAPS_API_TOKEN": TOKEN})
    settings.update(zone="de", electricitymaps_url=em.url)
    provider = make_provider(settings)
    providers.append(provider)
    assert isinstance(provider, ElectricityMapsProvider)
    assert provider.zone == "DE"
    assert provider.wait_ready(WAIT_S)
    assert provider.current().g_per_kwh == 320.0
    assert TOKEN not in provider.status() + repr(provider)


def test_make_provider_zone_from_country(em, providers):
    settings = Settings(environ={})
    settings.update(electricitymaps_token=TOKEN, country="FRA", electricitymaps_url=em.url)
    provider = make_provider(settings)
    providers.append(provider)
    assert provider.zone == "FR"


def test_make_provider_explicit_choices(uk, providers):
    settings = Settings(environ={"ELECTRICITYMAPS_API_TOKEN": TOKEN})
    settings.update(intensity="static")
    static = make_provider(settings)
    providers.append(static)
    assert isinstance(static, StaticProvider)

    settings.update(intensity="ukgrid", postcode="SW1", ukgrid_url=uk.url)
    ukgrid = make_provider(settings)
    providers.append(ukgrid)
    assert isinstance(ukgrid, UKGridProvider) and ukgrid.outward == "SW1"
    # Until the first fetch lands, the answer is the static table's.
    assert ukgrid.wait_ready(WAIT_S)
    assert ukgrid.current().zone == "GB:SW1"


def test_make_provider_electricitymaps_without_token_uses_static(providers):
    settings = Settings(environ={})
    settings.update(intensity="electricitymaps", country="DE")
    provider = make_provider(settings)
    providers.append(provider)
    assert isinstance(provider, ElectricityMapsProvider)
    assert provider.current().provider == "static"
    assert provider.current().zone == "DE"
    assert "Electricity Maps DE: no API token" in provider.status()


def test_make_provider_passes_live_options(em, providers):
    settings = Settings(environ={})
    settings.update(electricitymaps_token=TOKEN, zone="DE", electricitymaps_url=em.url)
    provider = make_provider(settings, cache_s=0.2)
    providers.append(provider)
    assert provider.wait_ready(WAIT_S)
    em.intensity = 90.0
    assert wait_for(lambda: provider.current().g_per_kwh == 90.0)


def test_make_provider_is_cheap(em, providers):
    em.delay_s = 3.0
    settings = Settings(environ={})
    settings.update(electricitymaps_token=TOKEN, zone="DE", electricitymaps_url=em.url)
    started = time.monotonic()
    provider = make_provider(settings)
    providers.append(provider)
    provider.current()
    assert time.monotonic() - started < 0.5


# -------------------------------------------------------------------------------- hints


MIDNIGHT = datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc)


def live(g_per_kwh: float) -> Intensity:
    return Intensity(g_per_kwh, "electricitymaps", "DE", "test", 0.1)


def test_hint_finds_lowest_point_in_horizon():
    forecast = [
        ForecastPoint(MIDNIGHT - timedelta(hours=1), 10.0),  # past: ignored
        ForecastPoint(MIDNIGHT + timedelta(hours=5), 120.0),  # tie: the earlier wins
        ForecastPoint(MIDNIGHT + timedelta(hours=1), 250.0),
        ForecastPoint(MIDNIGHT + timedelta(hours=3), 120.0),
        ForecastPoint(MIDNIGHT + timedelta(hours=30), 50.0),  # beyond 24 h: ignored
    ]
    hint = carbon_aware_hint(live(320.0), forecast, now=MIDNIGHT, tz=timezone.utc)
    assert hint is not None
    assert (hint.now_g, hint.best_g) == (320.0, 120.0)
    assert hint.best_at == MIDNIGHT + timedelta(hours=3)
    assert hint.saving_fraction == pytest.approx(0.625)
    assert (
        hint.text == "grid now 320 g/kWh; lowest in the next 24 h ≈ 120 g/kWh at 03:00 UTC (−62 %)"
    )

    longer = carbon_aware_hint(live(320.0), forecast, horizon_h=48, now=MIDNIGHT, tz=timezone.utc)
    assert longer.best_g == 50.0
    assert "lowest in the next 48 h ≈ 50 g/kWh at tomorrow 06:00 UTC (−84 %)" in longer.text


def test_hint_none_without_points_in_horizon():
    assert carbon_aware_hint(live(300.0), [], now=MIDNIGHT) is None
    late = [ForecastPoint(MIDNIGHT + timedelta(hours=30), 50.0)]
    assert carbon_aware_hint(live(300.0), late, now=MIDNIGHT) is None
    with pytest.raises(ValueError):
        carbon_aware_hint(live(300.0), late, horizon_h=0, now=MIDNIGHT)


def test_hint_when_now_is_already_best():
    forecast = [ForecastPoint(MIDNIGHT + timedelta(hours=2), 200.0)]
    hint = carbon_aware_hint(live(100.0), forecast, now=MIDNIGHT, tz=timezone.utc)
    assert hint.saving_fraction == pytest.approx(-1.0)
    assert hint.text == "grid now 100 g/kWh; nothing lower is forecast in the next 24 h"


def test_hint_naive_now_and_local_time():
    forecast = [ForecastPoint(MIDNIGHT + timedelta(hours=2), 100.0)]
    hint = carbon_aware_hint(live(200.0), forecast, now=MIDNIGHT.replace(tzinfo=None))
    assert hint is not None and hint.best_at == MIDNIGHT + timedelta(hours=2)
    local = (MIDNIGHT + timedelta(hours=2)).astimezone().strftime("%H:%M")
    assert local in hint.text


def test_emissions_if_run_at():
    assert emissions_if_run_at(10.0, 320.0, 120.0) == pytest.approx(3.75)
    assert emissions_if_run_at(0.0, 0.0, 100.0) == 0.0
    with pytest.raises(ValueError):
        emissions_if_run_at(-1.0, 100.0, 50.0)


def test_age_and_uncertainty_helpers():
    assert format_age(5) == "<1 min old"
    assert format_age(190) == "3 min old"
    assert format_age(3 * 3600) == "3.0 h old"
    assert aged_uncertainty(0.10, 0) == pytest.approx(0.10)
    assert aged_uncertainty(0.10, 3600) == pytest.approx(0.15)
    assert aged_uncertainty(0.10, 100 * 3600) == 0.5
