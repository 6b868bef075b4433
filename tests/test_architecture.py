"""The import rule of docs/architecture.md, checked on the package's source (every import, also inside functions).

Layers, bottom to top: ``fuse._version`` → ``fuse.core`` (the method) → ``fuse.models`` → ``fuse.objectives``
→ ``fuse.optim`` (with ``fuse.parallel``) → the applications (``captioning``, ``flow``, ``forecast``, ``icl``,
``planner``) → ``fuse.cli`` → ``fuse`` (the public API). A module imports only from its own layer or below;
an application reaches another application only through that application's package (its public names,
``from fuse.flow import CaLMFlow``), never its internal modules; nothing inside the package imports the top-level
``fuse`` namespace.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fuse"
APPLICATIONS = ("captioning", "flow", "forecast", "icl", "planner")
RANKS = {"fuse._version": 0, "fuse.core": 1, "fuse.models": 2, "fuse.objectives": 3, "fuse.optim": 4,
         "fuse.parallel": 4, **{f"fuse.{a}": 5 for a in APPLICATIONS}, "fuse.cli": 6, "fuse.__main__": 7}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The layer prefix a module belongs to (``fuse`` alone for the public API)."""
    best = "fuse"
    for prefix in RANKS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return best


def rank(module: str) -> int:
    return RANKS.get(layer_of(module), 8)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every ``fuse`` import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            out.append((node.lineno, base))
    return [(line, m) for line, m in out if m == "fuse" or m.startswith("fuse.")]


def violations(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        for line, target in imports_of(path, me):
            where = f"{path.relative_to(root.parent)}:{line} imports {target}"
            mine, theirs = layer_of(me), layer_of(target)
            if me != "fuse" and target == "fuse":
                found.append(f"{where}: the public `fuse` namespace is for users, not for the package itself")
            elif rank(target) > rank(me):
                found.append(f"{where}: upward import ({mine} may only import its own layer or below)")
            elif (mine != theirs and mine.removeprefix("fuse.") in APPLICATIONS
                  and theirs.removeprefix("fuse.") in APPLICATIONS and target != theirs):
                found.append(f"{where}: an application reaches another only through its package ({theirs})")
    return found


def test_the_package_follows_the_import_rule():
    assert violations() == []


def test_every_module_has_a_layer():
    orphans = [module_name(p, PACKAGE) for p in PACKAGE.rglob("*.py")
               if layer_of(module_name(p, PACKAGE)) == "fuse" and module_name(p, PACKAGE) != "fuse"]
    assert orphans == [], f"modules outside every layer folder: {orphans}"


@pytest.mark.parametrize("victim, line, expect", [
    ("core/words.py", "from fuse.optim.chain import Chain", "upward import"),
    ("models/cache.py", "from fuse.captioning import caption", "upward import"),
    ("optim/gcg.py", "import fuse", "public `fuse` namespace"),
    ("forecast/calmflow.py", "from fuse.flow.model import CaLMFlow", "only through its package"),
    ("core/adapter.py", "from ..models import loading", "upward import"),
])
def test_a_planted_violation_is_caught(tmp_path, victim, line, expect):
    copy = tmp_path / "fuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    target = copy / victim
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {line}\n")
    found = violations(copy)
    assert len(found) == 1 and victim in found[0] and expect in found[0], found
