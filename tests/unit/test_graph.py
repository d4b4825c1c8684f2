"""The provision graph as data (DESIGN.md "The provision graph")."""

from __future__ import annotations

import itertools
from graphlib import TopologicalSorter

from flows.provision import CRITICAL_PATH, GRAPH


def _ancestors(step: str) -> set[str]:
    seen: set[str] = set()
    todo = list(GRAPH[step])
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(GRAPH[s])
    return seen


def test_graph_is_acyclic_and_closed() -> None:
    order = list(TopologicalSorter(GRAPH).static_order())
    assert order[0] == "resource_group"
    assert all(dep in GRAPH for deps in GRAPH.values() for dep in deps)


def test_edges_from_design() -> None:
    assert GRAPH["secrets_officer"] == ("key_vault",)
    assert set(GRAPH["seed_secrets"]) == {"key_vault", "secrets_officer"}  # P8
    assert set(GRAPH["role_assignment"]) == {"key_vault", "identity"}
    assert set(GRAPH["federated_credentials"]) == {"cluster", "identity"}  # needs the issuer
    assert set(GRAPH["extension"]) == {"cluster", "identity"}
    assert set(GRAPH["application"]) == {"cluster", "extension"}
    assert {"workload", "seed_secrets", "role_assignment", "federated_credentials"} <= set(
        GRAPH["sample_app"]
    )


def test_independent_branches_stay_independent() -> None:
    """Vault, identity and cluster only need the resource group; nothing on the vault branch waits for AKS."""
    for step in ("cluster", "key_vault", "identity"):
        assert GRAPH[step] == ("resource_group",)
    for step in ("secrets_officer", "seed_secrets", "role_assignment"):
        assert "cluster" not in _ancestors(step)
    assert "extension" not in _ancestors("sample_app")
    assert "sample_app" not in _ancestors("application")


def test_critical_path_is_a_chain() -> None:
    for before, after in itertools.pairwise(CRITICAL_PATH):
        assert before in GRAPH[after]


def test_same_step_names_as_validation_remediation() -> None:
    """Validation's remediation map names provision steps; they must be this graph's nodes."""
    from tasks.drift import Step

    assert {s.value for s in Step} == set(GRAPH)
