"""The lock files are real locks: the venv is exactly what they pin, the workers' is a subset.

``make setup`` installs ``requirements-lock.txt`` with ``--require-hashes`` (pip refuses
anything unpinned), so two fresh machines, CI and the Docker image get the same packages.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.M)
# pip freeze leaves these out unless --all; the lock may pin wheel (a test dependency).
FREEZE_HIDES = {"pip", "setuptools", "wheel", "distribute"}


def pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall(path.read_text())}


def test_the_venv_is_exactly_the_lock() -> None:
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout
    installed = {canonicalize_name(n): v for n, v in PIN.findall(frozen)}
    locked = {n: v for n, v in pins(ROOT / "requirements-lock.txt").items()
              if n not in FREEZE_HIDES}
    assert installed == locked


def test_every_pin_has_a_hash() -> None:
    for name in ("requirements-lock.txt", "requirements-worker.txt"):
        entries = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", (ROOT / name).read_text().strip())
        assert entries and all("--hash=sha256:" in entry for entry in entries), name


def test_worker_lock_is_the_runtime_subset_of_the_lock() -> None:
    full, worker = pins(ROOT / "requirements-lock.txt"), pins(ROOT / "requirements-worker.txt")
    assert worker.items() <= full.items()
    # a runtime requirement of setup.py is pinned for the workers, at a version it allows
    setup_py = (ROOT / "setup.py").read_text()
    block = setup_py[setup_py.index("install_requires=["):setup_py.index("],", setup_py.index(
        "install_requires=["))]
    for line in re.findall(r'"([^"]+)"', block):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in worker and requirement.specifier.contains(worker[name]), line
    assert not {"pytest", "ruff", "scikit-image", "imagehash"} & worker.keys()
