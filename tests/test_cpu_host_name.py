"""The CPU's name on macOS and Windows, read through stand-ins of sysctl and winreg."""

from __future__ import annotations

import pytest

from carbon_magic.cpu_model import host_name
from carbon_magic.cpu_model import power as cpu_power
from carbon_magic.cpu_model.host_name import WINDOWS_CPU_KEY, platform_cpu_name


class FakeWinreg:
    """The part of ``winreg`` read here, per its documentation: ``OpenKey`` returns a
    handle usable as a context manager, ``QueryValueEx`` returns ``(value, type)``, and
    both raise ``OSError`` (``FileNotFoundError``, ``PermissionError``) on failure."""

    HKEY_LOCAL_MACHINE = 0x80000002
    REG_SZ = 1

    def __init__(self, values: dict[str, object], error: OSError | None = None) -> None:
        self.values = values
        self.error = error
        self.opened: list[tuple[int, str]] = []

    class _Key:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def OpenKey(self, root, path):  # noqa: N802 (winreg's name)
        if self.error is not None:
            raise self.error
        self.opened.append((root, path))
        return self._Key()

    def QueryValueEx(self, key, name):  # noqa: N802
        if name not in self.values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return self.values[name], self.REG_SZ


INTEL_PADDED = "       Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz  "


def test_windows_name_comes_from_the_registry_trimmed():
    winreg = FakeWinreg({"ProcessorNameString": INTEL_PADDED})
    name = platform_cpu_name("win32", winreg_module=winreg)
    assert name == "Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz"
    assert winreg.opened == [(FakeWinreg.HKEY_LOCAL_MACHINE, WINDOWS_CPU_KEY)]


@pytest.mark.parametrize(
    "winreg",
    [
        FakeWinreg({}),  # no such value
        FakeWinreg({"ProcessorNameString": 42}),  # not text
        FakeWinreg({}, error=PermissionError(5, "Access is denied")),
    ],
)
def test_an_unreadable_windows_name_is_empty(winreg):
    assert platform_cpu_name("win32", winreg_module=winreg) == ""


def test_windows_without_winreg_is_empty():
    assert platform_cpu_name("win32") == ""  # this is not Windows: no winreg module


def test_macos_name_comes_from_the_brand_string_sysctl():
    asked: list[str] = []

    def sysctl(name: str) -> str | None:
        asked.append(name)
        return "Apple M1"

    assert platform_cpu_name("darwin", sysctl=sysctl) == "Apple M1"
    assert asked == ["machdep.cpu.brand_string"]


@pytest.mark.parametrize("answer", [None, "", OSError("sysctl failed")])
def test_an_unreadable_macos_name_is_empty(answer):
    def sysctl(name: str) -> str | None:
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert platform_cpu_name("darwin", sysctl=sysctl) == ""


def test_sysctlbyname_is_absent_from_linux_libc():
    # The real ctypes path runs: glibc has no sysctlbyname, so there is no name.
    assert host_name.sysctl_string("machdep.cpu.brand_string") is None


def test_linux_does_not_ask_the_other_platforms():
    def sysctl(name: str) -> str | None:
        raise AssertionError("asked sysctl on Linux")

    assert platform_cpu_name("linux", sysctl=sysctl) == ""


def test_a_windows_laptop_gets_its_chips_tdp(monkeypatch):
    winreg = FakeWinreg({"ProcessorNameString": INTEL_PADDED})
    monkeypatch.setattr(
        cpu_power, "platform_cpu_name", lambda p: platform_cpu_name(p, winreg_module=winreg)
    )
    name = cpu_power.read_cpu_model_name("/nonexistent/cpuinfo", platform="win32")
    model = cpu_power.cpu_power_model(name, 12, False)
    assert "TDP table: Intel Core i7-9750H 45 W" in model.source
    assert cpu_power.read_cpu_model_name("/nonexistent/cpuinfo", platform="linux") == ""
