"""Re-run only the provision steps behind drifted validation rows.

The steps to fix come from ``tasks.drift.remediation_steps``; each needs the facts of the steps
it depends on (``flows.provision.GRAPH``), so those are run too — as idempotent ``ensure_*``
calls they only read when nothing differs (write nothing), and the rest of the graph is not run
at all. When a step's desired state was intact but its rows still drifted (pods that lost their
label or hold a stale mount; an Application edited by hand), the running state is fixed with a
rollout restart or an Argo CD sync (``tasks.remediate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flows.provision import GRAPH
from keyless_gitops.spec import EnvironmentSpec
from tasks.aks import ensure_cluster
from tasks.common import StepFacts, log
from tasks.drift import CheckRow, Status, Step
from tasks.extension import ensure_argocd_extension
from tasks.identity import ensure_federated_credential, ensure_identity
from tasks.keyvault import ensure_key_vault
from tasks.kube import ensure_gitops_application, ensure_sample_app, ensure_workload_objects
from tasks.remediate import recover_deleted_secrets, restart_sample_app, sync_application
from tasks.resource_group import ensure_resource_group
from tasks.roles import ensure_identity_can_read_secrets, ensure_pipeline_can_write_secrets
from tasks.secrets import ensure_secrets_seeded


def with_dependencies(steps: Sequence[Step]) -> list[Step]:
    """The steps plus everything they need, in provision order."""
    need: set[str] = set()
    todo = [s.value for s in steps]
    while todo:
        s = todo.pop()
        if s not in need:
            need.add(s)
            todo.extend(GRAPH[s])
    return [s for s in Step if s.value in need]


def remediate_steps(
    spec: EnvironmentSpec, credentials_block: str, steps: Sequence[Step], rows: Sequence[CheckRow]
) -> list[dict[str, Any]]:
    """Run ``steps`` (and their dependencies); returns what each did (step, resource, change)."""
    creds = credentials_block
    facts: dict[Step, Any] = {}
    done: list[dict[str, Any]] = []
    targets = set(steps)

    def record(step: Step, result: StepFacts | list[StepFacts]) -> None:
        facts[step] = result
        for f in result if isinstance(result, list) else [result]:
            done.append(
                {"step": step.value, "resource": f.resource, "change": f.change, "target": step in targets}
            )

    for step in with_dependencies(steps):
        if step is Step.RESOURCE_GROUP:
            record(step, ensure_resource_group(spec, creds))
        elif step is Step.CLUSTER:
            record(step, ensure_cluster(spec, creds, facts[Step.RESOURCE_GROUP]))
        elif step is Step.KEY_VAULT:
            record(step, ensure_key_vault(spec, creds, facts[Step.RESOURCE_GROUP]))
        elif step is Step.IDENTITY:
            record(step, ensure_identity(spec, creds, facts[Step.RESOURCE_GROUP]))
        elif step is Step.SECRETS_OFFICER:
            record(step, ensure_pipeline_can_write_secrets(spec, creds, facts[Step.KEY_VAULT]))
        elif step is Step.SEED_SECRETS:
            recovered = recover_deleted_secrets(spec, creds, facts[Step.KEY_VAULT].vault_uri)
            done += [
                {"step": step.value, "resource": f"recovered {n}", "change": "updated", "target": True}
                for n in recovered
            ]
            record(
                step,
                ensure_secrets_seeded(spec, creds, facts[Step.KEY_VAULT], facts[Step.SECRETS_OFFICER], False),
            )
        elif step is Step.ROLE_ASSIGNMENT:
            record(
                step,
                ensure_identity_can_read_secrets(spec, creds, facts[Step.KEY_VAULT], facts[Step.IDENTITY]),
            )
        elif step is Step.FEDERATED_CREDENTIALS:
            record(
                step,
                [
                    ensure_federated_credential(
                        spec, creds, facts[Step.CLUSTER], facts[Step.IDENTITY], name=name, subject=subject
                    )
                    for name, subject in spec.federated_subjects.items()
                ],
            )
        elif step is Step.EXTENSION:
            record(step, ensure_argocd_extension(spec, creds, facts[Step.CLUSTER], facts[Step.IDENTITY]))
        elif step is Step.WORKLOAD:
            record(
                step,
                ensure_workload_objects(
                    spec, creds, facts[Step.CLUSTER], facts[Step.IDENTITY], facts[Step.KEY_VAULT]
                ),
            )
        elif step is Step.SAMPLE_APP:
            result = ensure_sample_app(
                spec,
                creds,
                facts[Step.CLUSTER],
                facts[Step.IDENTITY],
                facts[Step.KEY_VAULT],
                facts[Step.WORKLOAD],
                facts[Step.SEED_SECRETS],
                facts[Step.ROLE_ASSIGNMENT],
                facts[Step.FEDERATED_CREDENTIALS],
            )
            record(step, result)
            running_drift = any(r.status is Status.DRIFT and r.step is Step.SAMPLE_APP for r in rows)
            if result.change == "unchanged" and running_drift:
                state = restart_sample_app(spec, creds)
                done.append(
                    {"step": step.value, "resource": "rollout restart", "change": "updated", "target": True}
                )
                log().info("sample app after restart: %s", state)
        elif step is Step.APPLICATION:
            result = ensure_gitops_application(spec, creds, facts[Step.CLUSTER], facts[Step.EXTENSION])
            record(step, result)
    if Step.APPLICATION in targets:
        state = sync_application(spec, creds)
        log().info("Application: %s", state)
    return done
