"""Tear down one environment, in reverse order, leaving nothing behind — and never prod by accident.

    refuse a protected environment unless confirmed by name (before any call)
    Argo CD Applications (finalizers, P23) -> sample app namespaces -> extension
    -> federated credentials -> role assignments -> resource group (waited, P22)
    -> purge the soft-deleted vault where allowed (P10) -> verify nothing is left

Each step is idempotent (absent = done, nothing written), so a second teardown writes nothing.
DESIGN.md "Teardown".
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from keyless_gitops.spec import EnvironmentSpec
from tasks.common import load_credentials, log
from tasks.drift import artifact_key
from tasks.teardown import (
    delete_applications,
    delete_extension,
    delete_federated_credentials,
    delete_resource_group,
    delete_role_assignments,
    delete_sample_namespace,
    purge_vault,
    verify_gone,
)
from tasks.teardown_plan import Outcome, TeardownResult, ensure_teardown_allowed, summarize


@flow(name="teardown", log_prints=False)
def teardown(
    spec: EnvironmentSpec | None = None,
    credentials_block: str = "keyless-gitops-sandbox",
    confirm: str | None = None,
) -> list[dict[str, Any]]:
    """Delete everything of ``spec``'s environment. A ``protected`` environment needs ``confirm``
    equal to its name. Returns one row per step (step, resource, outcome, detail, seconds)."""
    spec = spec or EnvironmentSpec()
    ensure_teardown_allowed(environment=spec.environment, protected=spec.protected, confirm=confirm)
    spec = spec.for_subscription(load_credentials(credentials_block).subscription_id)
    creds = credentials_block
    names = spec.names
    log().info("tearing down %s: resource group %s", spec.environment, names.resource_group)

    results: list[TeardownResult] = [delete_applications(spec, creds)]
    results += delete_sample_namespace(spec, creds)
    results.append(delete_extension(spec, creds))
    results += delete_federated_credentials(spec, creds)
    results += delete_role_assignments(spec, creds)
    results.append(delete_resource_group(spec, creds))
    purged = purge_vault(spec, creds)
    results.append(purged)
    if purged.outcome is Outcome.KEPT:
        log().warning("key vault %s: %s", names.key_vault, purged.detail)
    results.append(verify_gone(spec, creds, vault_kept=purged.outcome is Outcome.KEPT))

    create_markdown_artifact(
        key=artifact_key("teardown", spec.environment),
        markdown=f"# Teardown of `{spec.environment}`\n\n" + summarize(results),
        description=f"Teardown of {spec.environment}",
    )
    return [r.as_dict() for r in results]
