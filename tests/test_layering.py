"""Package layering: ``models`` <- ``pruning`` <- ``measure`` <- api / cli; ``data`` and ``plots`` are side
branches; task code sits on the layers below it; nothing imports ``cli``. Read from the source (ast)."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tp_spikformer"

# base modules that import nothing from the package: every layer may use them
BASE = {"errors", "jsonio"}
# what each lower layer may import from the package (besides itself and BASE); anything not listed is a
# top-level module (api, cli, demo, evaluate, train, ...), which may import any layer but ``cli``
ALLOWED = {
    "models": set(),
    "pruning": {"models"},
    "measure": {"models", "pruning"},
    "data": set(),
    "plots": set(),
    "task_plots": {"plots"},
    # task engines reuse the training pieces shared by every task (optimiser, schedules, checkpoints)
    "tasks": {"models", "pruning", "measure", "data", "plots", "training"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the ``tp_spikformer`` modules a file imports (``from . import x`` gives ``pkg.x``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tp_spikformer"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tp_spikformer":
                continue
            found.add(target)
            found |= {
                f"{target}.{a.name}"
                for a in node.names
                if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).exists()
                or (PACKAGE.parent / (f"{target}.{a.name}".replace(".", "/") + ".py")).exists()
            }
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_edges() -> dict[str, set[tuple[str, str]]]:
    edges = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        src = module_name(path)
        for dst in imported_modules(path):
            if layer(dst) != layer(src):
                edges[layer(src)].add((src, dst))
    return edges


@pytest.mark.slow
def test_layers_import_only_the_layers_below_them():
    bad = [
        f"{s} imports {d}"
        for lay, pairs in package_edges().items()
        if lay in ALLOWED
        for s, d in sorted(pairs)
        if layer(d) not in ALLOWED[lay] | BASE
    ]
    assert not bad, "layering broken:\n" + "\n".join(bad)


@pytest.mark.slow
def test_base_modules_import_nothing_from_the_package():
    edges = package_edges()
    assert not [pair for b in BASE for pair in edges.get(b, ())]


@pytest.mark.slow
def test_nothing_imports_the_cli():
    bad = [f"{s} imports {d}" for pairs in package_edges().values() for s, d in pairs if layer(d) == "cli"]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_imports():
    edges = package_edges()
    assert ("tp_spikformer.pruning.patch", "tp_spikformer.models.protocol") in edges["pruning"]
    assert any(d.startswith("tp_spikformer.models") for _, d in edges["measure"])
