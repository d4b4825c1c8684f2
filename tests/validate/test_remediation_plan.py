"""Remediation plans against the provision graph (pure): the steps behind drift, their inputs, no more."""

from __future__ import annotations

from flows.provision import GRAPH
from flows.remediate import with_dependencies
from tasks.drift import STEP_ORDER, Step


def test_every_remediation_step_is_a_provision_step_in_graph_order() -> None:
    assert {s.value for s in Step} == set(GRAPH)
    position = {s: i for i, s in enumerate(STEP_ORDER)}
    for step, needs in GRAPH.items():
        for need in needs:
            assert position[Step(need)] < position[Step(step)], (need, step)


def test_a_federated_credential_needs_cluster_and_identity_but_not_the_extension() -> None:
    plan = with_dependencies([Step.FEDERATED_CREDENTIALS])
    assert plan == [Step.RESOURCE_GROUP, Step.CLUSTER, Step.IDENTITY, Step.FEDERATED_CREDENTIALS]


def test_the_application_does_not_drag_in_the_vault() -> None:
    plan = with_dependencies([Step.APPLICATION])
    assert Step.KEY_VAULT not in plan and Step.SAMPLE_APP not in plan
    assert plan[-1] is Step.APPLICATION and Step.EXTENSION in plan
