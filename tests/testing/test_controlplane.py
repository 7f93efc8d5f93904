"""The local control plane installs the CRDs rendered from the API models: the committed ``crds/``, found the same
way from an installed package that has no source checkout around it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgefleet.testing import controlplane

ROOT = Path(__file__).resolve().parents[2]


def test_the_crds_it_installs_are_the_committed_ones(tmp_path: Path) -> None:
    directory = controlplane.crd_directory(tmp_path)
    committed = ROOT / "crds"
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in committed.iterdir())
    for path in committed.iterdir():
        assert (directory / path.name).read_bytes() == path.read_bytes(), path.name


def test_an_installed_package_finds_the_crds_without_a_checkout(tmp_path: Path) -> None:
    # The package as a wheel installs it: edgefleet/ alone in a site-packages directory, no crds/ or hack/ near it.
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "src" / "edgefleet", site / "edgefleet", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import pathlib, sys\n"
        "from edgefleet.testing import controlplane\n"
        "assert controlplane.__file__.startswith(sys.argv[1]), controlplane.__file__\n"
        "assert not (controlplane.REPO / 'crds').exists()\n"
        "print('\\n'.join(sorted(p.name for p in controlplane.crd_directory(pathlib.Path(sys.argv[2])).iterdir())))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(site), str(tmp_path / "work")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == sorted(p.name for p in (ROOT / "crds").iterdir())
    for path in (ROOT / "crds").iterdir():
        assert (tmp_path / "work" / "crds" / path.name).read_bytes() == path.read_bytes(), path.name
