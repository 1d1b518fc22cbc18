"""The layers import one way: http -> admin -> loop -> {vm, store, upstream, embeddings};
store -> vm; the cross-cutting modules (config, errors, logs, metrics, serving, tokens) import
no layer.

Every import counts: at the top, inside functions, under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "proxy"

BASE = {"config", "errors", "logs", "metrics", "serving", "tokens"}
# What each part of the package may import besides itself.
ALLOWED: dict[str, set[str]] = {
    # __init__, __main__, cli, inspect_cli
    "entry": {"http", "admin", "loop", "upstream", "embeddings", "store", "vm", *BASE},
    "http": {"admin", "loop", "upstream", "embeddings", "store", *BASE},
    # Reading the memory for people (the admin API, `vm-proxy inspect`).
    "admin": {"loop", "upstream", "store", "vm", *BASE},
    "loop": {"upstream", "embeddings", "store", "vm", *BASE},
    "upstream": {"config", "errors", "logs", "metrics"},
    # Sentence embedders (issue 14): the upstream's /embeddings or a local model.
    "embeddings": {"config", "errors", "logs", "metrics"},
    "store": {"vm", "tokens", "logs", "metrics", "serving"},
    "vm": {"tokens"},
    "tokens": set(),
    "config": set(),
    "errors": set(),
    "logs": set(),
    "metrics": set(),
    "serving": set(),
}


def part_of(module: str) -> str | None:
    """The part of the package `module` belongs to (None: not the proxy's)."""
    names = module.split(".")
    if names[0] != "proxy":
        return None
    if len(names) == 1 or names[1] in ("__init__", "__main__", "cli", "inspect_cli"):
        return "entry"
    return names[1]


def module_name(path: Path) -> str:
    names = ["proxy", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def is_module(name: str) -> bool:
    names = name.split(".")
    if names[0] != "proxy":
        return False
    where = PACKAGE.joinpath(*names[1:])
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def imports_of(source: str, module: str, *, package: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement anywhere in `source`; a relative
    import is resolved against `module` (a package's `__init__` when `package`), and
    `from a import b` imports `a.b` when that is a module, else `a`."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if is_module(full) else base, node.lineno))
    return found


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        part = part_of(module)
        assert part in ALLOWED, f"{module} is in no layer: place it in tests/test_layers.py"
        source = path.read_text()
        for imported, line in imports_of(source, module, package=path.name == "__init__.py"):
            target = part_of(imported)
            if target is None or target == part or target in ALLOWED[part]:
                continue
            may = ", ".join(sorted(ALLOWED[part])) or "no other part of proxy"
            found.append(
                f"{path.relative_to(PACKAGE.parent)}:{line}: {module} ({part}) imports "
                f"{imported} ({target}); {part} may import only {may}"
            )
    return found


def test_imports_point_one_way() -> None:
    found = violations()
    assert not found, "imports against the layering:\n" + "\n".join(found)


SNEAKY = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from proxy.loop.turn import Turn

def later():
    import proxy.http.app

from . import pages
from .. import store
"""


@pytest.mark.parametrize(
    ("imported", "line"),
    [("proxy.loop.turn", 4), ("proxy.http.app", 7), ("proxy.vm.pages", 9), ("proxy.store", 10)],
)
def test_every_import_counts(imported: str, line: int) -> None:
    assert (imported, line) in imports_of(SNEAKY, "proxy.vm.packer")


def test_a_layer_reaching_up_is_named() -> None:
    reached = {
        part_of(imported)
        for imported, _ in imports_of(SNEAKY, "proxy.vm.packer")
        if part_of(imported) not in (None, "vm", *ALLOWED["vm"])
    }
    assert reached == {"loop", "http", "store"}
