"""The layer contracts of pyproject.toml hold, and they refuse a wrong-way import.

The second half copies the packages to a temporary tree, adds one module that imports upwards,
and runs import-linter there: the contract that forbids it must break and name the import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "actors", "learner", "replay", "graspfleet")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the packages in ``tree`` with ``tree/pyproject.toml`` (only the
    contracts with these ids, if any are given)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    selected = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *selected], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and pyproject.toml (generated code and caches left out)."""
    copy = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*_pb2*"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_contracts_hold_on_the_repository() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("graspfleet/upward.py", "import orchestrator.loop\n", "layers"),
        ("learner/sideways.py", "from actors import sim_actor\n", "layers"),
        ("replay/upward.py", "import learner.sac\n", "layers"),
        ("replay/domain.py", "from graspfleet.sim import cell\n", "replay-domain-agnostic"),
        ("graspfleet/service.py", "import redis\n", "core-no-services"),
    ],
)
def test_a_wrong_way_import_breaks_its_contract(tree: Path, module: str, source: str, contract: str) -> None:
    assert lint_imports(tree, contract).returncode == 0  # the copy keeps it before the import
    path = tree / module
    path.write_text(source)
    try:
        result = lint_imports(tree, contract)
    finally:
        path.unlink()
    assert result.returncode != 0, result.stdout
    assert "1 broken" in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout  # the report names the importer
