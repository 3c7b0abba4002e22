"""What the capture of hosted model calls can do here, for ``doctor`` and ``status``:
which SDKs are installed in a version it knows, and whether EcoLogits can estimate.

Read from the installed distributions' metadata only: nothing is imported.
"""

from __future__ import annotations

from typing import Any

from carbon_magic.remote.estimate import ECOLOGITS_MIN_VERSION
from carbon_magic.remote.patching import installed_version, version_problem
from carbon_magic.remote.targets import SDK_VERSIONS

__all__ = ["capture_status"]


def capture_status() -> dict[str, Any]:
    """``{"sdks": {distribution: version}, "ecologits": version or None, "problems":
    [one line each, with its fix]}``: SDKs installed in a version the capture does not
    know (their calls are not captured), EcoLogits missing or too old (calls recorded
    without estimates). Each problem is ``{"message", "fix"}``."""
    sdks: dict[str, str] = {}
    problems: list[dict[str, str]] = []
    for sdk, (distribution, _, first_unknown) in SDK_VERSIONS.items():
        version = installed_version(distribution)
        if version is None:
            continue
        sdks[distribution] = version
        problem = version_problem(sdk)
        if problem is not None:
            problems.append(
                {
                    "message": problem,
                    "fix": f"pip install '{distribution}<{first_unknown[0]}', or a carbon_magic "
                    "that knows this version",
                }
            )
    ecologits = installed_version("ecologits")
    minimum = ".".join(map(str, ECOLOGITS_MIN_VERSION))
    if sdks and ecologits is None:
        problems.append(
            {
                "message": "EcoLogits is not installed: LLM calls are recorded without estimates",
                "fix": "pip install 'carbon_magic[llm]'",
            }
        )
    elif ecologits is not None:
        numbers = tuple(int(p) for p in ecologits.split(".")[:2] if p.isdigit())
        if numbers < ECOLOGITS_MIN_VERSION:
            problems.append(
                {
                    "message": f"EcoLogits {ecologits} is too old (need {minimum}): LLM calls "
                    "are recorded without estimates",
                    "fix": "pip install -U ecologits",
                }
            )
    return {"sdks": sdks, "ecologits": ecologits, "problems": problems}
