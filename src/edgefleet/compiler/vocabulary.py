"""How the person who started a compile names its settings, so compile errors say what to change in their words.

The compiler's failures end with a remedy ("relax the accuracy budget, give more evaluation samples ..."). An
operator condition names the ModelDeployment's fields (``spec.compile.targets[].accuracyBudget``); ``edgefleet
compile`` names its flags (``--max-accuracy-drop``). :data:`KUBERNETES` is the default; the CLI passes :data:`CLI`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """What each compile setting is called where the compile was asked for."""

    budget: str
    precision: str
    exclude_nodes: str
    evaluation: str
    calibration: str
    memory: str


KUBERNETES = Vocabulary(
    budget="spec.compile.targets[].accuracyBudget",
    precision="spec.compile.targets[].precision",
    exclude_nodes="spec.compile.targets[].quantization.excludeNodes",
    evaluation="spec.compile.targets[].evaluation (more samples)",
    calibration="spec.compile.targets[].calibration",
    memory="the operator's EDGEFLEET_COMPILE_MEMORY_BYTES",
)
CLI = Vocabulary(
    budget="--max-accuracy-drop / --max-relative-error",
    precision="--precision",
    exclude_nodes="--exclude-node",
    evaluation="--evaluation (a set with more samples)",
    calibration="--calibration",
    memory="--memory-budget",
)

__all__ = ["CLI", "KUBERNETES", "Vocabulary"]
