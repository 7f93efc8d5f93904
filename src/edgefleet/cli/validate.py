"""``edgefleet validate PATH...``: check fleet manifests before they reach a cluster (a pull-request check).

Exit codes: 0 clean (warnings allowed), 1 errors found, 2 bad usage. ``--output json`` prints one object with a
``diagnostics`` list for bots.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgefleet.adapters import manifests
from edgefleet.core import validation
from edgefleet.core.documents import Document

MAX_TOTAL_BYTES = 256 * 1024 * 1024


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="check fleet manifests (schema + cross-object rules)",
        description="Validate edgefleet manifests: everything the CRDs enforce plus cross-object rules.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories of YAML")
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.set_defaults(func=run)


def collect(paths: list[Path]) -> tuple[list[Document], list[validation.Diagnostic], int]:
    """Load every YAML file under ``paths``; unreadable files become diagnostics. Returns docs, diags, file count."""
    documents: list[Document] = []
    diagnostics: list[validation.Diagnostic] = []
    count = 0
    for path in paths:
        if not path.exists():
            diagnostics.append(validation.Diagnostic(str(path), 0, 0, "", "no such file or directory"))
    files = manifests.iter_files([p for p in paths if p.exists() or p.is_symlink()])
    total = 0
    while True:
        try:
            file = next(files)
        except StopIteration:
            break
        except manifests.ManifestError as exc:  # too many files: stop reading, say so
            diagnostics.append(validation.Diagnostic(exc.source, 0, 0, "", exc.message))
            break
        count += 1
        try:
            total += file.stat().st_size if not file.is_symlink() else 0
            if total > MAX_TOTAL_BYTES:
                message = f"manifests hold more than {MAX_TOTAL_BYTES} bytes; validate fewer at once"
                diagnostics.append(validation.Diagnostic(str(file), 0, 0, "", message))
                break
            loaded = manifests.load_file(file)
        except OSError as exc:
            diagnostics.append(validation.Diagnostic(str(file), 0, 0, "", f"cannot read: {exc.strerror}"))
            continue
        except manifests.ManifestError as exc:
            diagnostics.append(
                validation.Diagnostic(exc.source, exc.position.line, exc.position.column, "", exc.message)
            )
            continue
        if manifests.is_kustomization(str(file)):
            continue
        documents.extend(loaded)
    return documents, diagnostics, count


def run(args: argparse.Namespace) -> int:
    documents, diagnostics, files = collect(args.paths)
    diagnostics = diagnostics + validation.validate(documents)
    errors = [d for d in diagnostics if d.severity == "error" or args.strict]
    if args.output == "json":
        json.dump(
            {
                "files": files,
                "objects": len(documents),
                "errors": len(errors),
                "warnings": len(diagnostics) - len(errors),
                "diagnostics": [d.to_json() for d in diagnostics],
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        for diagnostic in diagnostics:
            print(diagnostic, file=sys.stderr if diagnostic in errors else sys.stdout)
        summary = (
            f"{files} files, {len(documents)} objects: {len(errors)} errors, {len(diagnostics) - len(errors)} warnings"
        )
        print(summary if not errors else f"invalid: {summary}", file=sys.stderr if errors else sys.stdout)
    return 1 if errors else 0
