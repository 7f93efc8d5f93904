"""What the images are built from: one pinned base, one lock for both, per-role package sets, a small context.

The byte-level proof (the wheel set each image installs, built twice from scratch, is identical, and so are the files
the install step adds from it, .pyc included) is ``bash hack/check-image-contents.sh``: it downloads from PyPI, so
it is run by hand or in a release job, not here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = {"operator": REPO / "operator" / "Dockerfile", "agent": REPO / "edge_reconciler" / "Containerfile"}


def pins(path: Path) -> dict[str, str]:
    text = path.read_text()
    return dict(re.findall(r"^([a-z0-9._-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", text, flags=re.M))


def test_both_images_use_one_base_pinned_by_digest() -> None:
    bases = set()
    for path in IMAGES.values():
        (arg,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", path.read_text(), flags=re.M)
        assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", arg), arg
        assert all(
            line.startswith("FROM ${PYTHON_IMAGE}") for line in path.read_text().splitlines() if line.startswith("FROM")
        )
        bases.add(arg)
    assert len(bases) == 1


def test_each_image_installs_its_role_from_the_shared_lock_by_hash() -> None:
    lock = pins(REPO / "requirements" / "lock.txt")
    for role, path in IMAGES.items():
        text = path.read_text()
        assert f"--require-hashes --only-binary=:all: --dest /wheels -r requirements/{role}.txt" in text
        assert "--require-hashes --no-deps -r requirements/build.txt" in text and "SOURCE_DATE_EPOCH=" in text
        # The install step hack/image-install.sh runs: no timestamped bytecode in the final layer.
        assert "pip install --no-cache-dir --no-index --no-deps --no-compile /wheels/*.whl" in text
        assert "python -m compileall -q --invalidation-mode unchecked-hash" in text
        install = (REPO / "hack" / "image-install.sh").read_text()
        assert "--no-index --no-deps --no-compile" in install and "--invalidation-mode unchecked-hash" in install
        role_pins = pins(REPO / "requirements" / f"{role}.txt")
        assert role_pins and all(lock[name] == version for name, version in role_pins.items()), role
    agent = pins(REPO / "requirements" / "agent.txt")
    assert not {"kopf", "kubernetes", "onnx", "gitpython", "rich"} & set(agent)  # the agent carries its role only
    assert {"onnxruntime", "aiohttp", "pydantic"} <= set(agent)
    assert {"kopf", "kubernetes", "onnx"} <= set(pins(REPO / "requirements" / "operator.txt"))


def test_the_lock_matches_the_declared_ranges() -> None:
    """A pyproject change that the lock no longer satisfies fails here: rerun hack/lock-images.py."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = pins(REPO / "requirements" / "lock.txt")
    declared = project["dependencies"] + project["optional-dependencies"]["agent"]
    declared += [r for r in project["optional-dependencies"]["operator"] if not r.startswith("edgefleet")]
    declared += project["optional-dependencies"]["compiler"]
    for text in declared:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not in requirements/lock.txt"
        assert req.specifier.contains(lock[name]), f"{name}=={lock[name]} does not satisfy {req}"


def test_the_build_context_leaves_out_git_venv_tests_and_the_harness() -> None:
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything is out unless let in
    allowed = {r[1:] for r in rules if r.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "src/edgefleet/", "requirements/"}
    assert "src/edgefleet/testing/" in rules


def test_license_is_apache_2() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
