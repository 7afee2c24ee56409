"""The package boundaries: frameworks stay out of pure code, imports only point down, no cycles."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "assets", "serving", "bench", "moodscape")

# Top-level layers: a package may import only packages of a lower layer (or itself).
LAYER = {"pipelines": 0, "assets": 1, "serving": 1, "bench": 2, "moodscape": 3}
# Stages inside pipelines, bottom to top: a stage may import its own or lower stages only.
STAGE = {
    "schema": 0, "store": 0, "errors": 0,
    "net": 1,
    "heal": 2, "audio": 2, "embed": 2,
    "mood": 3,
    "index": 4,
    "rank": 5,
    "measure": 6,
}

FRAMEWORKS = [
    ("pipelines", ["dagster", "litestar"]),
    ("serving", ["dagster"]),
]


def _modules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}.")]


def _imports() -> dict[str, set[str]]:
    """module → first-party modules it imports anywhere in its source (deferred imports included)."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            targets: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    targets.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets.add(node.module)
                    targets.update(f"{node.module}.{a.name}" for a in node.names)
            graph[name] = {t for t in targets if t.split(".")[0] in PACKAGES}
    known = set(graph)
    return {m: {t for t in ts if t in known and t != m} for m, ts in graph.items()}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pipelines" and len(parts) > 1 else None


@pytest.mark.parametrize(("package", "forbidden"), FRAMEWORKS)
def test_importing_every_module_loads_no_forbidden_framework(package: str, forbidden: list[str]) -> None:
    modules = _modules(package)
    assert modules, f"{package} has no modules"
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(k for k in sys.modules if k.split('.')[0] in {forbidden!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"{package} imported {out.stdout.strip()}"


def test_imports_point_down_the_layers() -> None:
    bad = []
    for module, targets in _imports().items():
        for target in targets:
            src, dst = module.split(".")[0], target.split(".")[0]
            if src != dst and LAYER[dst] >= LAYER[src]:
                bad.append(f"{module} -> {target}")
            s, d = _stage(module), _stage(target)
            if s and d and s != d and STAGE[d] > STAGE[s]:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports pointing up:\n" + "\n".join(sorted(bad))


def test_every_pipelines_stage_is_known() -> None:
    top = {p.stem for p in (REPO / "pipelines").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert top - {"__init__"} == set(STAGE), "pipelines/ holds only the stages and schema/store/errors"


def test_no_import_cycles() -> None:
    graph = _imports()
    # Tarjan's strongly connected components; any component with > 1 module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            # a package's __init__ importing its own submodule is not a cycle of concern
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_module_over_400_lines() -> None:
    long = []
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            n = len(path.read_text().splitlines())
            if n > 400:
                long.append(f"{path.relative_to(REPO)}: {n}")
    assert not long, "modules over 400 lines:\n" + "\n".join(sorted(long))
