"""The package boundaries of DESIGN.md: pipelines and serving never load dagster; pipelines never litestar."""

import subprocess
import sys

import pytest

CASES = [
    ("pipelines", ["dagster", "litestar"]),
    ("serving", ["dagster"]),
]


def _all_modules(package: str) -> list[str]:
    import pkgutil
    import importlib

    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]


@pytest.mark.parametrize(("package", "forbidden"), CASES)
def test_importing_every_module_loads_no_forbidden_framework(package: str, forbidden: list[str]) -> None:
    modules = _all_modules(package)
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
