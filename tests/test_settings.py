import pytest

import carbon_magic
from carbon_magic.setting_specs import SPECS
from carbon_magic.settings import Settings, parse_setting


def test_defaults():
    settings = Settings(environ={})
    assert settings.mode == "process"
    assert settings.interval == 1.0
    assert settings.powercap_root == "/sys/class/powercap"
    assert settings.embodied is True
    assert settings.embodied_server_kg == 1000.0
    assert settings.embodied_gpu_kg == 150.0
    assert settings.lifetime_years == 4.0
    assert settings.origin("mode") == "default"


def test_environment_overrides_defaults():
    settings = Settings(
        environ={
            "CARBON_MAGIC_MODE": "machine",
            "CARBON_MAGIC_INTERVAL": "0.5",
            "CARBON_MAGIC_EMBODIED": "off",
            "CARBON_MAGIC_COUNTRY": "fra",
        }
    )
    assert settings.mode == "machine"
    assert settings.interval == 0.5
    assert settings.embodied is False
    assert settings.country == "FR"
    assert settings.origin("interval") == "environment"


def test_bad_environment_value_names_variable_and_range():
    with pytest.raises(ValueError, match=r"CARBON_MAGIC_INTERVAL.*0\.1 to 60"):
        Settings(environ={"CARBON_MAGIC_INTERVAL": "100"})


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("mode", "galaxy", "process, machine"),
        ("interval", 0.01, "from 0.1 to 60"),
        ("interval", "fast", "from 0.1 to 60"),
        ("pue", 0.5, "from 1 to 3"),
        ("embodied", "maybe", "on or off"),
        ("cloud_region", "ibm:moon-1", "aws"),
        ("country", "ZZX", "unknown country"),
        ("colour", "red", "valid settings: mode"),
    ],
)
def test_bad_values_raise_with_choices_and_change_nothing(name, value, message):
    settings = Settings(environ={})
    before = settings.as_dict()
    with pytest.raises(ValueError, match=message):
        settings.update(**{"pue": 1.5, name: value} if name != "pue" else {name: value})
    assert settings.as_dict() == before


def test_update_applies_all_and_notifies():
    settings = Settings(environ={})
    seen = []
    settings.on_change(seen.append)
    parsed = settings.update(pue="1.2", mode="MACHINE", country="de", cloud_region=None)
    assert parsed["pue"] == 1.2 and parsed["mode"] == "machine" and parsed["country"] == "DE"
    assert settings.origin("pue") == "code"
    assert seen == [parsed]


def test_secret_is_masked_and_token_env_is_read():
    settings = Settings(environ={"ELECTRICITYMAPS_API_TOKEN": "s3cret"})
    assert settings.electricitymaps_token == "s3cret"
    assert settings.as_dict()["electricitymaps_token"] == "***"
    assert "s3cret" not in repr(settings.as_dict())


def test_every_setting_has_an_env_var_and_doc():
    # The scope caps' reaction is CARBON_MAGIC_BUDGET_ON_EXCEED, beside the caps' variables.
    named = {"budget_scope_on_exceed": "CARBON_MAGIC_BUDGET_ON_EXCEED"}
    for name, spec in SPECS.items():
        assert spec.env_var == named.get(name, "CARBON_MAGIC_" + name.upper())
        assert spec.doc


def test_optional_settings_accept_auto():
    assert parse_setting("pue", "auto") is None
    assert parse_setting("cpu_max_w", "") is None


def test_configure_api_validates(monkeypatch):
    tracker = carbon_magic.get_tracker()
    before = tracker.settings.as_dict()
    with pytest.raises(ValueError, match="from 0.1 to 60"):
        carbon_magic.configure(interval=1000)
    assert tracker.settings.as_dict() == before


def test_conflicting_values_change_nothing_and_later_changes_work():
    settings = Settings(environ={})
    seen = []
    settings.on_change(seen.append)
    with pytest.raises(ValueError, match=r"cpu_idle_w=50 is above cpu_max_w=10"):
        settings.update(cpu_idle_w=50, cpu_max_w=10)
    assert (settings.cpu_idle_w, settings.cpu_max_w) == (None, None) and not seen
    settings.update(cpu_max_w=100)
    with pytest.raises(ValueError, match="at most cpu_max_w"):
        settings.update(cpu_idle_w=150)  # against the current maximum
    assert settings.cpu_idle_w is None
    settings.update(cpu_idle_w=20)
    assert (settings.cpu_idle_w, settings.cpu_max_w) == (20, 100)
    with pytest.raises(ValueError):
        settings.check(cpu_max_w=10)
    assert settings.cpu_max_w == 100


def test_a_listener_refusing_a_change_undoes_it_everywhere():
    settings = Settings(environ={})
    seen = []
    settings.on_change(seen.append)

    def refuse_big_idle(changed):
        if (settings.cpu_idle_w or 0) > 30:
            raise ValueError("CPU idle power 50 W is above its maximum 30 W")

    settings.on_change(refuse_big_idle)
    with pytest.raises(ValueError, match="above its maximum"):
        settings.update(cpu_idle_w=50)
    assert settings.cpu_idle_w is None and settings.origin("cpu_idle_w") == "default"
    assert seen == [{"cpu_idle_w": 50.0}, {"cpu_idle_w": None}]  # told, then told back
    settings.update(cpu_idle_w=10, mode="machine")  # later changes still work
    assert settings.cpu_idle_w == 10 and settings.mode == "machine"


def test_conflicting_environment_names_both_variables_and_reload_fixes_it():
    with pytest.raises(
        ValueError, match=r"CARBON_MAGIC_CPU_IDLE_W=50 is above CARBON_MAGIC_CPU_MAX_W=10"
    ):
        Settings(environ={"CARBON_MAGIC_CPU_IDLE_W": "50", "CARBON_MAGIC_CPU_MAX_W": "10"})
    settings = Settings(environ={"CARBON_MAGIC_CPU_IDLE_W": "5", "CARBON_MAGIC_PUE": "1.5"})
    settings.update(mode="machine")
    with pytest.raises(ValueError, match="CARBON_MAGIC_CPU_IDLE_W=50"):
        settings.reload_environment(
            {"CARBON_MAGIC_CPU_IDLE_W": "50", "CARBON_MAGIC_CPU_MAX_W": "9"}
        )
    assert settings.cpu_idle_w == 5 and settings.cpu_max_w is None
    changed = settings.reload_environment(
        {"CARBON_MAGIC_CPU_IDLE_W": "8", "CARBON_MAGIC_MODE": "process"}
    )
    assert changed == {"cpu_idle_w": 8.0, "pue": None}  # mode was set in code: kept
    assert settings.mode == "machine" and settings.origin("pue") == "default"


def test_configure_returns_secrets_masked():
    tracker = carbon_magic.get_tracker()
    before = tracker.settings.get("electricitymaps_token")
    try:
        shown = carbon_magic.configure(electricitymaps_token="t0ken-value")
        assert shown == {"electricitymaps_token": "***"}
        assert "t0ken-value" not in repr(shown)
        assert tracker.settings.get("electricitymaps_token") == "t0ken-value"
    finally:
        tracker.settings.update(electricitymaps_token=before)


def test_every_setting_reads_as_a_typed_attribute():
    from carbon_magic.settings import SettingValue

    declared = {name for name, value in vars(Settings).items() if isinstance(value, SettingValue)}
    assert declared == set(SPECS)
    settings = Settings(environ={"CARBON_MAGIC_INTERVAL": "2.5"})
    assert settings.interval == 2.5 and settings.mode == "process"
    with pytest.raises(AttributeError, match="update"):
        settings.interval = 3.0
    with pytest.raises(AttributeError):
        settings.no_such_setting  # noqa: B018
