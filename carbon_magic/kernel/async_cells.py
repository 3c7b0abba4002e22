"""A ``%%carbon`` cell whose body awaits at top level runs in the kernel's event loop.

IPython turns the cell into ``get_ipython().run_cell_magic('carbon', ...)`` (kept as the
cell's history, ``In[n]``, as for any cell magic) and runs it outside the event loop,
since that call does not await. Two hooks change only how such a cell runs: the shell's
``should_run_async`` answers yes for it, and an AST transformer (which IPython applies
after the history is written) awaits the magic, which then returns the body's coroutine.
Both are installed by ``install`` and taken out by ``uninstall``.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from carbon_magic.kernel.cell_code import cell_source, has_top_level_await

if TYPE_CHECKING:
    from carbon_magic.kernel.running_cells import RunningCells

MAGIC_NAME = "carbon"
CARBON_LINE = "%%" + MAGIC_NAME


def awaiting_body(shell: Any, raw_cell: str) -> bool:
    """True for a ``%%carbon`` cell whose body awaits at top level."""
    first, _, body = raw_cell.lstrip().partition("\n")
    if first.split(maxsplit=1)[:1] != [CARBON_LINE]:
        return False
    try:
        return has_top_level_await(cell_source(shell, body))
    except Exception:  # it sees every cell: a fault here must never break one
        return False


def _magic_call(statement: ast.stmt) -> ast.Call | None:
    """``get_ipython().run_cell_magic('carbon', line, body)``, as IPython writes a cell
    magic's cell, else None."""
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        return None
    call = statement.value
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "run_cell_magic"):
        return None
    if not (isinstance(func.value, ast.Call) and isinstance(func.value.func, ast.Name)):
        return None
    if func.value.func.id != "get_ipython" or len(call.args) != 3:
        return None
    name = call.args[0]
    if not (isinstance(name, ast.Constant) and name.value == MAGIC_NAME):
        return None
    return call


class AwaitCarbonCell(ast.NodeTransformer):
    """Awaits the magic of the running ``%%carbon`` cell whose body awaits at top level,
    and marks that cell, so the magic returns the body's coroutine."""

    def __init__(self, shell: Any, cells: RunningCells) -> None:
        self.shell = shell
        self.cells = cells

    def visit_Module(self, node: ast.Module) -> ast.Module:
        cell = self.cells.innermost
        if cell is None or not cell.carbon or cell.claimed or cell.awaited:
            return node
        if len(node.body) != 1 or not getattr(self.shell, "autoawait", False):
            return node
        call = _magic_call(node.body[0])
        if call is None or not awaiting_body(self.shell, cell.info.raw_cell):
            return node
        awaited = ast.Expr(ast.Await(call))
        node.body = [ast.copy_location(awaited, node.body[0])]
        ast.fix_missing_locations(node)
        cell.awaited = True
        return node


class AsyncCells:
    """The two hooks on one shell."""

    def __init__(self, shell: Any, cells: RunningCells) -> None:
        self.shell = shell
        self.transformer = AwaitCarbonCell(shell, cells)
        self.original = shell.should_run_async

    def should_run_async(
        self,
        raw_cell: str,
        *,
        transformed_cell: str | None = None,
        preprocessing_exc_tuple: Any = None,
    ) -> bool:
        """IPython's answer, and yes for a ``%%carbon`` cell whose body awaits."""
        if self.original(
            raw_cell,
            transformed_cell=transformed_cell,
            preprocessing_exc_tuple=preprocessing_exc_tuple,
        ):
            return True
        if preprocessing_exc_tuple is not None or not getattr(self.shell, "autoawait", False):
            return False
        return awaiting_body(self.shell, raw_cell)

    def install(self) -> None:
        """Put both hooks on the shell."""
        self.shell.should_run_async = self.should_run_async
        self.shell.ast_transformers.append(self.transformer)

    def uninstall(self) -> None:
        """Take both out; the shell is as it was."""
        if self.shell.__dict__.get("should_run_async") == self.should_run_async:
            del self.shell.should_run_async
        if self.transformer in self.shell.ast_transformers:
            self.shell.ast_transformers.remove(self.transformer)
