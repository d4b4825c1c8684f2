"""Remediation actions that provision's ``ensure_*`` steps do not take because nothing in their
desired state changed: drift that lives in *running* pods or in Argo CD's sync state.

- ``restart_sample_app``: a rollout restart (the ``kubectl rollout restart`` annotation on the pod
  template) when pods lost their ``azure.workload.identity/use`` label or hold a stale mount: the
  webhook mutates pods only at creation (P13/P14) and the CSI driver mounts at pod start.
- ``sync_application``: asks Argo CD to sync (an ``operation`` on the Application, as the
  ``argocd app sync`` command does) when a managed resource was edited by hand and self-heal has
  not put it back.

Both wait (bounded) for the result with the pipeline's own status probes.

- ``recover_deleted_secrets``: a seeded secret deleted by hand stays soft-deleted and blocks its
  name (409 Conflict) until recovered; recovery runs before the seed step.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from prefect import task
from prefect.tasks import exponential_backoff

from keyless_gitops.spec import EnvironmentSpec
from tasks.common import is_transient, load_credentials, log, retry_transient, wait_until
from tasks.kube import (
    APP_READY_TIMEOUT,
    APPLICATION_TIMEOUT,
    application_status,
    kube_client,
    sample_app_status,
)
from tasks.secrets import recover_if_soft_deleted

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FIELD_MANAGER = "keyless-gitops-remediation"


@task(
    name="remediate: restart sample app",
    timeout_seconds=APP_READY_TIMEOUT + 60,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def restart_sample_app(spec: EnvironmentSpec, credentials_block: str) -> str:
    app = spec.sample_app
    with kube_client(load_credentials(credentials_block), spec.names) as api:
        dyn = DynamicClient(api)
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        deployments.patch(
            name="sample-app",
            namespace=app.namespace,
            body={"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}},
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
        )
        log().info("sample app: rollout restart at %s", stamp)
        last = ["not checked"]

        def ready() -> bool:
            ok, last[0] = sample_app_status(dyn, spec)
            return ok

        wait_until(
            ready,
            what=f"sample app in {app.namespace} after restart",
            timeout=APP_READY_TIMEOUT,
            retry_on=is_transient,
        )
    return last[0]


@task(
    name="remediate: sync Application",
    timeout_seconds=APPLICATION_TIMEOUT + 60,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def sync_application(spec: EnvironmentSpec, credentials_block: str) -> str:
    g = spec.gitops
    with kube_client(load_credentials(credentials_block), spec.names) as api:
        dyn = DynamicClient(api)
        ok, desc = application_status(dyn, spec)
        if ok:
            return desc
        apps = dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application")
        apps.patch(
            name=g.application,
            namespace=spec.extension.namespace,
            body={
                "operation": {
                    "initiatedBy": {"username": "keyless-gitops"},
                    "sync": {"revision": g.target_revision, "prune": True},
                }
            },
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
        )
        log().info("Application %s: sync requested at %s", g.application, g.target_revision)
        last = [desc]

        def synced() -> bool:
            ok, last[0] = application_status(dyn, spec)
            return ok

        wait_until(
            synced,
            what=f"Application {g.application} Synced and Healthy",
            timeout=APPLICATION_TIMEOUT,
            retry_on=lambda e: is_transient(e) or (isinstance(e, ApiException) and e.status == 404),
        )
    return last[0]


@task(
    name="remediate: recover deleted secrets",
    timeout_seconds=300,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def recover_deleted_secrets(spec: EnvironmentSpec, credentials_block: str, vault_uri: str) -> list[str]:
    """Recover the spec's secrets that were deleted by hand (soft delete keeps them, and their names
    cannot be set again until recovered or purged: 409 Conflict). Recovery keeps their versions, so
    the seed step then finds them unchanged (or writes a new version if the value differs)."""
    client = load_credentials(credentials_block).get_secret_client(vault_uri)
    recovered = []
    for name in spec.secrets:
        if recover_if_soft_deleted(client, name):
            recovered.append(name)
            log().info("secret %s: recovered from soft delete", name)
    return recovered
