"""The CPU's product name on macOS and Windows, where there is no ``/proc/cpuinfo``.

The CPU power model looks the name up in its TDP table, so without it a laptop gets the
generic per-vCPU figure instead of its own chip's. The names read here are the ones the
operating system shows, in the same style as Linux's ``model name``:

- macOS: the ``machdep.cpu.brand_string`` sysctl (``"Intel(R) Core(TM) i7-9750H CPU @
  2.60GHz"``, ``"Apple M1"``), read through libc's ``sysctlbyname`` (no subprocess);
- Windows: the registry value ``ProcessorNameString`` of
  ``HKEY_LOCAL_MACHINE\\HARDWARE\\DESCRIPTION\\System\\CentralProcessor\\0``, read with
  ``winreg``.

Everything here returns ``""`` rather than raise: a name that cannot be read leaves the
model on its generic figure, and ``carbon-magic model`` says so.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["WINDOWS_CPU_KEY", "platform_cpu_name", "sysctl_string", "windows_cpu_name"]

WINDOWS_CPU_KEY = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
_MACOS_BRAND = "machdep.cpu.brand_string"


def sysctl_string(name: str) -> str | None:
    """A string sysctl of macOS or BSD (``sysctlbyname(3)``), or None when this libc has
    no ``sysctlbyname`` (Linux) or the name is unknown."""
    import ctypes  # here: only macOS asks, and start-up stays lean elsewhere

    try:
        libc = ctypes.CDLL(None)
        function = libc.sysctlbyname
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    function.restype = ctypes.c_int
    size = ctypes.c_size_t(0)
    key = name.encode()
    if function(key, None, ctypes.byref(size), None, 0) != 0 or size.value == 0:
        return None
    buffer = ctypes.create_string_buffer(size.value)
    if function(key, buffer, ctypes.byref(size), None, 0) != 0:
        return None
    return buffer.value.decode("utf-8", errors="replace")


def windows_cpu_name(winreg_module: Any = None) -> str:
    """``ProcessorNameString`` of the first CPU from the Windows registry, trimmed
    (Intel pads it with spaces); ``""`` when it cannot be read. ``winreg_module``
    replaces the standard ``winreg`` (tests, other platforms)."""
    if winreg_module is None:
        try:
            winreg_module = importlib.import_module("winreg")
        except ImportError:  # not Windows
            return ""
    try:
        with winreg_module.OpenKey(winreg_module.HKEY_LOCAL_MACHINE, WINDOWS_CPU_KEY) as key:
            value, _kind = winreg_module.QueryValueEx(key, "ProcessorNameString")
    except OSError:
        return ""
    return " ".join(value.split()) if isinstance(value, str) else ""


def platform_cpu_name(
    platform: str = sys.platform,
    *,
    sysctl: Callable[[str], str | None] = sysctl_string,
    winreg_module: Any = None,
) -> str:
    """The CPU's product name on ``platform`` (``sys.platform``): macOS's brand string,
    Windows's registry name; ``""`` elsewhere or when it cannot be read. ``sysctl`` and
    ``winreg_module`` replace the system's readers (tests)."""
    if platform == "darwin":
        try:
            name = sysctl(_MACOS_BRAND)
        except Exception:  # a reader that fails is no name, never an error
            return ""
        return " ".join(name.split()) if name else ""
    if platform == "win32":
        return windows_cpu_name(winreg_module)
    return ""
