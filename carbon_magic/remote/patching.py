"""Putting the wrappers in place and taking them out again, exactly.

SDK modules are never imported by us: a module already imported is patched at once, one
imported later is patched as soon as it has run (an import hook on ``sys.meta_path``
that watches only the target modules), so ``import openai`` in the same cell as the
first call is captured. :meth:`Patcher.remove` puts the SDK's own functions back; where
another wrapper (EcoLogits' ``wrapt`` proxies) has been put on top of ours, ours is
taken out from under it, and where even that cannot be done, ours is made inert.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import threading
import types
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from carbon_magic.remote.targets import SDK_VERSIONS, TARGETS, Target, targets_in
from carbon_magic.remote.wrappers import Patch, make_wrapper

__all__ = ["Patcher", "installed_version", "version_problem"]


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def version_problem(sdk: str) -> str | None:
    """Why ``sdk``'s installed version is not captured, or None when it is known."""
    distribution, lowest, first_unknown = SDK_VERSIONS[sdk]
    version = installed_version(distribution)
    if version is None:
        return None
    found = _version_tuple(version)
    if lowest <= found < first_unknown:
        return None
    known = f"{'.'.join(map(str, lowest))} up to {first_unknown[0] - 1}.x"
    return f"{distribution} {version} is not a version the capture knows ({known}): its calls are not captured"


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the other finders, then makes
    the loader patch the module once it has run."""

    def __init__(self, patcher: Patcher, names: Sequence[str]) -> None:
        self.patcher = patcher
        self.names = frozenset(names)
        self.busy = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.names or getattr(self.busy, "name", None) == fullname:
            return None
        self.busy.name = fullname
        try:
            spec = importlib.util.find_spec(fullname)
        except (ImportError, ValueError):
            return None
        finally:
            self.busy.name = None
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return None
        run_module = loader.exec_module
        patcher = self.patcher

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            patcher.patch_module(fullname, module)

        loader.exec_module = exec_module
        return spec


class Patcher:
    """The wrappers of one process: ``install()`` once, ``remove()`` on unload.
    ``problems`` collects one line per SDK (or method) left uncaptured, for ``doctor``."""

    def __init__(self, targets: Sequence[Target] = TARGETS) -> None:
        self.targets = list(targets)
        self.patches: list[Patch] = []
        self.problems: dict[str, str] = {}
        self.hook: _AfterImport | None = None
        self.lock = threading.RLock()

    def install(self) -> None:
        """Patch the target modules imported already; watch for the others."""
        with self.lock:
            if self.hook is not None:
                return
            modules = sorted({target.module for target in self.targets})
            self.hook = _AfterImport(self, modules)
            sys.meta_path.insert(0, self.hook)
            for name in modules:
                module = sys.modules.get(name)
                if module is not None:
                    self.patch_module(name, module)

    def patch_module(self, name: str, module: ModuleType) -> None:
        """Wrap the targets of ``module`` (never raises: a problem becomes a line)."""
        with self.lock:
            if self.hook is None:
                return
            for target in targets_in(name):
                if target not in [p.target for p in self.patches] and target in self.targets:
                    try:
                        self._patch(target, module)
                    except Exception as error:  # never break the user's import
                        self.problems[target.label] = f"{target.label} not captured: {error!r}"

    def _patch(self, target: Target, module: ModuleType) -> None:
        problem = version_problem(target.sdk)
        if problem is not None:
            self.problems[target.sdk] = problem
            return
        owner: Any = getattr(module, target.owner) if target.owner else module
        original = vars(owner).get(target.name)
        # Decorated methods (openai's required_args) hide that they are coroutines.
        if not callable(original) or (
            inspect.iscoroutinefunction(inspect.unwrap(original)) != target.is_async
        ):
            self.problems[target.label] = (
                f"{target.label} is not the function the capture knows: not captured"
            )
            return
        patch = Patch(target, owner, original)
        patch.wrapper = make_wrapper(patch)
        setattr(owner, target.name, patch.wrapper)
        self.patches.append(patch)

    def remove(self) -> None:
        """Put every SDK function back and stop watching imports."""
        with self.lock:
            if self.hook is not None and self.hook in sys.meta_path:
                sys.meta_path.remove(self.hook)
            self.hook = None
            for patch in self.patches:
                _unpatch(patch)
            self.patches.clear()
            self.problems.clear()

    def captured(self) -> list[str]:
        """The wrapped methods, as ``module:Owner.name``."""
        return [patch.target.label for patch in self.patches]


def _unpatch(patch: Patch) -> None:
    name = patch.target.name
    current = vars(patch.owner).get(name)
    if current is patch.wrapper:
        setattr(patch.owner, name, patch.original)
        return
    # Something was put on top of ours. A wrapt proxy (EcoLogits' tracers use them) lets
    # its target be replaced: point it at the SDK's own function instead of ours.
    node = current
    # type(), not isinstance(): a wrapt proxy passes for the function it wraps.
    while node is not None and type(node) is not types.FunctionType:
        inner = getattr(node, "__wrapped__", None)
        if inner is patch.wrapper:
            try:
                node.__wrapped__ = patch.original
                return
            except (AttributeError, TypeError):
                break
        node = inner
    patch.active = False  # ours stays in the chain, calling straight through
