"""Table tests and invariants for the pure convergence plan (edgefleet.core.convergence)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.api.edgedevice import ArtifactRef, DesiredModel
from edgefleet.core import convergence

D = {i: f"sha256:{str(i) * 64}" for i in range(1, 5)}


def want(name: str, digest: str) -> DesiredModel:
    return DesiredModel(
        name=name,
        deployment=name,
        version="1.0.0",
        revision="r",
        artifact=ArtifactRef(uri=f"http://store/{name}", digest=digest, size_bytes=1, precision="fp32"),
    )


Inst = convergence.Installed


@pytest.mark.parametrize(
    ("desired", "installed", "expected"),
    [
        ([], {}, []),
        ([want("a", D[1])], {}, [("install", "a")]),
        ([want("a", D[1])], {"a": Inst("a", D[1])}, [("in-sync", "a")]),
        ([want("a", D[2])], {"a": Inst("a", D[1])}, [("install", "a")]),
        ([want("a", D[2])], {"a": Inst("a", D[1], rejected={D[2]: "RolledBack"})}, [("blocked", "a")]),
        ([want("a", D[3])], {"a": Inst("a", D[1], rejected={D[2]: "RolledBack"})}, [("install", "a")]),
        ([want("a", D[2])], {"a": Inst("a", D[1], D[3], on_probation=True)}, [("wait", "a")]),
        ([want("a", D[1])], {"a": Inst("a", D[1], D[3], on_probation=True)}, [("in-sync", "a")]),
        ([], {"a": Inst("a", D[1])}, [("remove", "a")]),
        ([], {"a": Inst("a", None)}, []),
        # the module's worked example
        (
            [want("a", D[1]), want("b", D[2])],
            {"a": Inst("a", D[1]), "c": Inst("c", D[3]), "b": Inst("b", None, rejected={D[2]: "RolledBack"})},
            [("remove", "c"), ("in-sync", "a"), ("blocked", "b")],
        ),
    ],
)
def test_plan_table(
    desired: list[DesiredModel], installed: dict[str, convergence.Installed], expected: list[tuple[str, str]]
) -> None:
    plan = convergence.plan(desired, installed)
    assert [(s.kind, s.name) for s in plan.steps] == expected
    assert plan.converged == all(k in ("in-sync", "blocked") for k, _ in expected)


names = st.sampled_from(["a", "b", "c", "d"])
digests = st.sampled_from(list(D.values()))


@given(
    st.dictionaries(names, digests),
    st.dictionaries(names, st.tuples(st.none() | digests, st.booleans(), st.sets(digests))),
)
def test_plan_invariants(want_map: dict[str, str], have: dict[str, tuple[str | None, bool, set[str]]]) -> None:
    desired = [want(n, d) for n, d in want_map.items()]
    installed = {n: Inst(n, a, None, {d: "Failed" for d in r}, p) for n, (a, p, r) in have.items()}
    plan = convergence.plan(desired, installed)
    # one step per desired name, plus removals only for installed names not desired
    assert sorted(s.name for s in plan.steps if s.kind != "remove") == sorted(want_map)
    assert all(s.name not in want_map and installed[s.name].active_digest for s in plan.of("remove"))
    # removals come first
    kinds = [s.kind for s in plan.steps]
    assert kinds == sorted(kinds, key=lambda k: k != "remove")
    # never install a rejected digest; planning is deterministic
    assert all(s.desired and s.desired.artifact.digest not in installed.get(s.name, Inst(s.name)).rejected
               for s in plan.of("install"))  # fmt: skip
    assert convergence.plan(desired, installed) == plan
