"""Grid providers come from one registry: names, the settings each reads, rebuilds."""

import pytest

from carbon_magic.engine.tracker import Tracker
from carbon_magic.grid import PROVIDERS, make_provider, provider_settings
from carbon_magic.setting_specs import setting_names
from carbon_magic.settings import Settings, parse_setting


def test_every_setting_a_provider_reads_is_a_real_setting():
    assert provider_settings() <= set(setting_names())
    for entry in PROVIDERS.values():
        assert entry.settings <= provider_settings()


def test_the_intensity_setting_offers_exactly_the_registered_providers():
    for name in PROVIDERS:
        assert parse_setting("intensity", name) == name
    with pytest.raises(ValueError) as error:
        parse_setting("intensity", "carbonaware")
    for name in PROVIDERS:
        assert name in str(error.value)


def test_an_unknown_choice_names_the_registered_providers():
    class Chosen:
        intensity = "nope"

    with pytest.raises(ValueError, match="static, electricitymaps, ukgrid"):
        make_provider(Chosen())


@pytest.mark.parametrize("name", sorted(provider_settings()))
def test_changing_any_provider_setting_builds_the_provider_again(name):
    tracker = Tracker(Settings(environ={}))
    tracker.settings.update(intensity="static", interval=60, embodied=False)
    tracker.start()
    try:
        before = tracker.intensity_provider
        values = {
            "intensity": "static",
            "electricitymaps_token": "",
            "zone": "DE",
            "postcode": "SW1",
            "electricitymaps_url": "http://127.0.0.1:9/",
            "ukgrid_url": "http://127.0.0.1:9/",
            "country": "DE",
            "cloud_region": "aws:eu-west-3",
        }
        # A change of value: "static" is already set, so switch away and back.
        if name == "intensity":
            tracker.settings.update(intensity=None)
        tracker.settings.update(**{name: values[name]})
        assert tracker.intensity_provider is not before
    finally:
        tracker.close()
