"""``make demo``: the pull-request workflow end to end on an embedded local control plane.

Starts a real kube-apiserver + etcd (built once and cached), creates a fleet repository in a local Git repo from
``examples/fleet-manifests``, validates it, opens a "pull request" that bumps the weld classifier, prints the plan
a reviewer would see, "merges" it, applies the result with kubectl, and shows the resources as ``kubectl get``
renders them. Everything it starts is stopped on exit, also on Ctrl-C or failure.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table

from edgefleet.adapters import controlplane, gitrepo
from edgefleet.cli import main as cli

EXAMPLES = controlplane.REPO / "examples" / "fleet-manifests"
console = Console()


@contextlib.contextmanager
def _step(title: str, timings: list[tuple[str, float]]) -> Iterator[None]:
    began = time.monotonic()
    with console.status(title):
        yield
    elapsed = time.monotonic() - began
    timings.append((title, elapsed))
    console.print(f"[green]✓[/] {title} [dim]({elapsed:.1f} s)[/]")


def _capture(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _bump(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    path.write_text(text.replace(old, new, 1))


def run(workdir: Path) -> int:
    timings: list[tuple[str, float]] = []
    console.rule("[bold]edgefleet demo: a model update through a pull request")
    with _step("Built or found the control-plane binaries (kube-apiserver, etcd)", timings):
        controlplane.find_binaries()
    with _step("Started a local kube-apiserver + etcd and installed the CRDs", timings):
        cp = controlplane.start(workdir / "controlplane")
    try:
        repo_dir = workdir / "fleet"
        with _step("Created the fleet repository (two plants, five lines, 30 devices)", timings):
            shutil.copytree(EXAMPLES, repo_dir)
            repo = gitrepo.init(repo_dir, "Fleet at weld-defect 1.3.0")
        with _step("Applied main to the cluster (kubectl apply -k)", timings):
            cp.kubectl("apply", "--server-side", "-k", str(repo_dir))
        with _step("Opened a pull request: weld-defect 1.3.0 -> 1.4.0", timings):
            repo.git.checkout("-b", "bump-weld-1.4.0")
            manifest = repo_dir / "base" / "weld-defect-classifier.yaml"
            _bump(manifest, "version: 1.3.0", "version: 1.4.0")
            _bump(manifest, "weld-defect/1.3.0/model.onnx", "weld-defect/1.4.0/model.onnx")
            repo.git.add(A=True)
            repo.index.commit("Roll out weld-defect 1.4.0")
        with _step("Ran the pull-request checks: edgefleet validate", timings):
            code, out, err = _capture(["validate", str(repo_dir)])
        console.print(
            Panel((out + err).strip(), title="edgefleet validate", border_style="green" if code == 0 else "red")
        )
        if code != 0:
            return code
        with _step("Ran the pull-request checks: edgefleet plan --base main --head bump-weld-1.4.0", timings):
            code, out, err = _capture(
                [
                    "plan",
                    "--repo",
                    str(repo_dir),
                    "--base",
                    "main",
                    "--head",
                    "bump-weld-1.4.0",
                    "--kubeconfig",
                    str(cp.kubeconfig),
                ]
            )
        if code != 0:
            console.print(err)
            return code
        console.print(Panel(Markdown(out), title="plan (posted on the pull request)"))
        with _step("Merged the pull request and applied main", timings):
            repo.git.checkout("main")
            repo.git.merge("--ff-only", "bump-weld-1.4.0")
            cp.kubectl("apply", "--server-side", "-k", str(repo_dir))
        for args in (("get", "md", "-A"), ("get", "ed", "-n", "plant-south")):
            console.rule(f"kubectl {' '.join(args)}")
            print(cp.kubectl(*args).stdout.rstrip(), flush=True)  # raw, so columns are not re-wrapped
    finally:
        with _step("Stopped the control plane", timings):
            cp.stop()
    table = Table(title="Summary")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for title, seconds in timings:
        table.add_row(title, f"{seconds:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(s for _, s in timings):.1f}")
    console.print(table)
    return 0


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    try:
        return run(workdir)
    except controlplane.ControlPlaneError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
