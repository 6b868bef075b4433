"""The import rule of docs/architecture.md, checked on the package's source (every import, also inside functions).

Layers, bottom to top: ``fuse._version`` → ``fuse.core`` (the method) → ``fuse.models`` → ``fuse.objectives``
→ ``fuse.optim`` (with ``fuse.parallel``) → the applications (``captioning``, ``flow``, ``forecast``, ``icl``,
``planner``) → ``fuse.cli`` → ``fuse`` (the public API). A module imports only from its own layer or below;
an application reaches another application only through that application's package (its public names,
``from fuse.flow import CaLMFlow``), never its internal modules; nothing inside the package imports the top-level
``fuse`` namespace.

No module uses another fuse module's private names: neither ``from fuse.models.loading import _x`` nor
``N._x`` where ``N`` is bound in that file by an import from another fuse module (``from fuse.flow import CaLMFlow``
then ``CaLMFlow._run``; ``import fuse.models.loading as L`` then ``L._x``). Dunder names are public.
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


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


#: private names one module may use of another (none: every such use is a violation); an entry no longer used
#: fails the test, so the list never outlives its reason
ALLOWED_PRIVATE: set[str] = set()


def private_uses(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, "fuse.x._y")`` for each private name of another fuse module that a file uses: imported by name, or
    read as an attribute of a name the file binds by importing from another fuse module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    bound, out = {}, []  # name bound by a fuse import -> the module it came from (or the object: "fuse.flow.CaLMFlow")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "fuse" or a.name.startswith("fuse."):
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            if (base == "fuse" or base.startswith("fuse.")) and base != module:
                for a in node.names:
                    bound[a.asname or a.name] = f"{base}.{a.name}"
                    if is_private(a.name):
                        out.append((node.lineno, f"{base}.{a.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, root = [node.attr], node.value
            while isinstance(root, ast.Attribute):
                chain.append(root.attr)
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound and bound[root.id] != module:
                out.append((node.lineno, ".".join([bound[root.id], *reversed(chain)])))
    return out


def violations(root: Path = PACKAGE, allowed=ALLOWED_PRIVATE) -> list[str]:
    found, unused = [], set(allowed)
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        for line, name in private_uses(path, me):
            key = f"{path.relative_to(root.parent)} uses {name}"
            if key in unused or key in allowed:
                unused.discard(key)
                continue
            found.append(f"{path.relative_to(root.parent)}:{line} uses {name}: a private name of another module "
                         "(give it a public name in its module, or keep the use inside that module)")
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
    found += [f"{key}: no longer used, remove it from ALLOWED_PRIVATE" for key in sorted(unused)]
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
    ("forecast/calmflow.py", "from fuse.models.loading import _KINDS", "uses fuse.models.loading._KINDS"),
    ("objectives/base.py", "from ..models.loading import _KINDS", "uses fuse.models.loading._KINDS"),
    ("forecast/calmflow.py", "from fuse.flow import CaLMFlow; CaLMFlow._prompt", "uses fuse.flow.CaLMFlow._prompt"),
    ("models/cache.py", "import fuse.core.tproduct as T; T._x", "uses fuse.core.tproduct._x"),
    ("models/cache.py", "import fuse.core.tproduct; fuse.core.tproduct._x.y", "uses fuse.core.tproduct._x"),
    ("captioning/pipeline.py", "from fuse.models import loading as L; L.os._exit", "uses fuse.models.loading.os._exit"),
])
def test_a_planted_violation_is_caught(tmp_path, victim, line, expect):
    copy = tmp_path / "fuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    target = copy / victim
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {line}\n")
    found = violations(copy)
    assert len(found) == 1 and victim in found[0] and expect in found[0], found


def test_own_private_names_and_dunders_are_allowed(tmp_path):
    """Private names inside their own module, dunders, and private attributes of names not imported from fuse."""
    copy = tmp_path / "fuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    target = copy / "models" / "loading.py"
    target.write_text(target.read_text() + "\n\ndef _planted(x):\n    from fuse.models.loading import _KINDS\n"
                      "    from fuse._version import __version__\n    import fuse.core.tproduct as T\n"
                      "    return _KINDS, x._private, os._exit, T.__name__, __version__\n")
    assert violations(copy) == []


def test_an_unused_allowance_is_reported(tmp_path):
    found = violations(allowed=ALLOWED_PRIVATE | {"fuse/core/adapter.py uses fuse.core.tproduct._nothing"})
    assert found == ["fuse/core/adapter.py uses fuse.core.tproduct._nothing: no longer used, remove it from "
                     "ALLOWED_PRIVATE"]
