"""Resource group: ``ensure_resource_group`` upserts it with the spec's location and tags.

Idempotent: GET first; PUT only when it is missing or its tags differ (a second run writes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.resource.resources import ResourceManagementClient  # P25: not azure.mgmt.resource
from prefect import task
from prefect.tasks import exponential_backoff

from keyless_gitops.bodies import differs, resource_group_body
from keyless_gitops.spec import EnvironmentSpec
from tasks.common import Change, StepFacts, Stopwatch, load_credentials, log, retry_transient, to_rest


@dataclass(frozen=True, kw_only=True)
class ResourceGroupFacts(StepFacts):
    location: str


def get_resource_group(client: ResourceManagementClient, name: str) -> dict[str, Any] | None:
    try:
        return to_rest(client.resource_groups.get(name))
    except ResourceNotFoundError:
        return None


@task(
    name="resource group",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
    timeout_seconds=300,
    persist_result=True,
)
def ensure_resource_group(spec: EnvironmentSpec, credentials_block: str) -> ResourceGroupFacts:
    watch = Stopwatch()
    names = spec.names
    client = load_credentials(credentials_block).get_client(ResourceManagementClient)
    desired = resource_group_body(spec)
    actual = get_resource_group(client, names.resource_group)
    change: Change = "unchanged"
    if actual is None:
        change = "created"
    elif actual.get("location", "").replace(" ", "").lower() != spec.location:
        raise ValueError(
            f"resource group {names.resource_group} exists in {actual.get('location')}, not {spec.location}"
        )
    elif differs({"tags": desired["tags"]}, actual):
        change = "updated"
    if change != "unchanged":
        actual = to_rest(client.resource_groups.create_or_update(names.resource_group, desired))
    assert actual is not None
    log().info("resource group %s: %s", names.resource_group, change)
    return ResourceGroupFacts(
        step="resource_group",
        resource=names.resource_group,
        id=str(actual.get("id") or names.resource_group_id),
        change=change,
        location=spec.location,
        **watch.stamp(),
    )
