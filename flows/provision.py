"""Provision one environment of the keyless GitOps stack — the recipe, top to bottom, in parallel
where the graph allows (DESIGN.md "The provision graph").

Every step is an idempotent Prefect task returning small frozen facts, persisted with the default
run-scoped cache policy: retrying a failed run (``prefect flow-run retry``, the UI's Retry) skips
the steps that had finished, while a new run re-checks everything (PITFALLS P27). Results hold
ids only, never secrets. The run's artifacts: a table of steps (resource, id, change, timings)
and a markdown summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture, wait

from keyless_gitops.spec import EnvironmentSpec
from tasks.aks import ensure_cluster
from tasks.common import StepFacts, ensure_lock, load_credentials, lock_name, log
from tasks.extension import ensure_argocd_extension
from tasks.identity import ensure_federated_credential, ensure_identity
from tasks.keyvault import ensure_key_vault
from tasks.kube import ensure_gitops_application, ensure_sample_app, ensure_workload_objects
from tasks.resource_group import ensure_resource_group
from tasks.roles import ensure_identity_can_read_secrets, ensure_pipeline_can_write_secrets
from tasks.secrets import ensure_secrets_seeded

# The graph as data: step -> the steps it needs. The flow below follows it; a unit test checks the
# edges and an end-to-end test checks that observed timings honour them.
GRAPH: dict[str, tuple[str, ...]] = {
    "resource_group": (),
    "cluster": ("resource_group",),
    "key_vault": ("resource_group",),
    "identity": ("resource_group",),
    "secrets_officer": ("key_vault",),
    "seed_secrets": ("key_vault", "secrets_officer"),
    "role_assignment": ("key_vault", "identity"),
    "federated_credentials": ("cluster", "identity"),
    "extension": ("cluster", "identity"),
    "workload": ("cluster", "identity", "key_vault"),
    "sample_app": ("workload", "seed_secrets", "role_assignment", "federated_credentials"),
    "application": ("cluster", "extension"),
}
DEV = EnvironmentSpec()  # the recipe's values: the form the Prefect UI shows by default

CRITICAL_PATH = ("resource_group", "cluster", "extension", "application")


@dataclass(frozen=True, kw_only=True)
class ProvisionResult:
    environment: str
    resource_group: str
    cluster: str
    key_vault: str
    identity: str
    issuer_url: str
    identity_client_id: str
    steps: tuple[StepFacts, ...]

    @property
    def unchanged(self) -> bool:
        return all(s.change == "unchanged" for s in self.steps)


@flow(name="provision", log_prints=False)
def provision(
    spec: EnvironmentSpec = DEV,
    credentials_block: str = "keyless-gitops-sandbox",
    generate_missing_secrets: bool = False,
) -> ProvisionResult:
    """Stand up the environment ``spec`` describes with the Azure credentials in ``credentials_block``.

    ``generate_missing_secrets`` (sandbox only) creates absent Prefect Secret blocks with random values.
    """
    spec = spec.for_subscription(load_credentials(credentials_block).subscription_id)
    creds = credentials_block
    names = spec.names
    log().info(
        "provisioning %s: resource group %s, cluster %s, vault %s, identity %s",
        spec.environment,
        names.resource_group,
        names.cluster,
        names.key_vault,
        names.identity,
    )

    rg = ensure_resource_group.submit(spec, creds)

    # Three branches under the resource group, in parallel: cluster (the long one), vault, identity.
    # (Prefect resolves futures passed as arguments; its stubs type them as the resolved values.)
    cluster = ensure_cluster.submit(spec, creds, rg)  # type: ignore[call-overload]
    vault = ensure_key_vault.submit(spec, creds, rg)  # type: ignore[call-overload]
    identity = ensure_identity.submit(spec, creds, rg)  # type: ignore[call-overload]

    # Vault branch: the pipeline may write secrets only once it holds Secrets Officer (P8).
    officer = ensure_pipeline_can_write_secrets.submit(spec, creds, vault)
    seeded = ensure_secrets_seeded.submit(spec, creds, vault, officer, generate_missing_secrets)
    reader = ensure_identity_can_read_secrets.submit(spec, creds, vault, identity)

    # Cluster + identity: federated credentials (serialised per identity inside the task, P4) ...
    ensure_lock(lock_name("fic", names.identity_id))  # once, before the parallel tasks contend for it
    federated = [
        ensure_federated_credential.submit(spec, creds, cluster, identity, name=name, subject=subject)
        for name, subject in spec.federated_subjects.items()
    ]
    # ... the Argo CD extension (long) ...
    extension = ensure_argocd_extension.submit(spec, creds, cluster, identity)
    # ... and the sample app's namespace, ServiceAccount and SecretProviderClass.
    workload = ensure_workload_objects.submit(spec, creds, cluster, identity, vault)

    # The sample app once its identity chain is complete; the Application once Argo CD runs.
    app = ensure_sample_app.submit(spec, creds, cluster, identity, vault, workload, seeded, reader, federated)
    application = ensure_gitops_application.submit(spec, creds, cluster, extension)

    labelled: list[tuple[str, PrefectFuture[Any]]] = [
        ("resource_group", rg),
        ("cluster", cluster),
        ("key_vault", vault),
        ("identity", identity),
        ("secrets_officer", officer),
        ("seed_secrets", seeded),
        ("role_assignment", reader),
        *(("federated_credentials", f) for f in federated),
        ("extension", extension),
        ("workload", workload),
        ("sample_app", app),
        ("application", application),
    ]
    wait([f for _, f in labelled])
    unfinished = [(step, f) for step, f in labelled if not (f.state and f.state.is_completed())]
    if unfinished:
        finished = tuple(f.result() for _, f in labelled if (f.state and f.state.is_completed()))
        publish_failure(
            spec.environment,
            finished,
            [(step, str(f.state.name) if f.state else "?") for step, f in unfinished],
        )
        for _, f in unfinished:
            f.result()  # raises the step's own error (the first that failed)
    steps = tuple(f.result() for _, f in labelled)
    result = ProvisionResult(
        environment=spec.environment,
        resource_group=names.resource_group,
        cluster=names.cluster,
        key_vault=names.key_vault,
        identity=names.identity,
        issuer_url=cluster.result().issuer_url,
        identity_client_id=identity.result().client_id,
        steps=steps,
    )
    publish_summary(result)
    return result


# -- the summary ---------------------------------------------------------------------------------


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")[:-3]


def summary_rows(result: ProvisionResult) -> list[dict[str, str]]:
    return step_rows(result.steps)


def step_rows(steps: tuple[StepFacts, ...]) -> list[dict[str, str]]:
    if not steps:
        return []
    t0 = min(s.started for s in steps)
    return [
        {
            "step": s.step,
            "resource": s.resource,
            "id": s.id,
            "change": s.change,
            "duration_s": f"{s.duration:.2f}",
            "start_s": f"{s.started - t0:.2f}",
            "end_s": f"{s.ended - t0:.2f}",
            "started": _ts(s.started),
            "ended": _ts(s.ended),
        }
        for s in sorted(steps, key=lambda s: (s.started, s.step))
    ]


def summary_markdown(result: ProvisionResult) -> str:
    rows = summary_rows(result)
    counts: dict[str, int] = {}
    for s in result.steps:
        counts[s.change] = counts.get(s.change, 0) + 1
    wall = max(s.ended for s in result.steps) - min(s.started for s in result.steps)
    lines = [
        f"# Provisioned `{result.environment}`",
        "",
        f"- resource group `{result.resource_group}`, cluster `{result.cluster}`, "
        f"vault `{result.key_vault}`, identity `{result.identity}` (client id `{result.identity_client_id}`)",
        f"- OIDC issuer `{result.issuer_url}`",
        f"- {len(result.steps)} steps: "
        + ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        + f"; {wall:.1f} s from first start to last end",
        "",
        "| step | resource | change | start s | end s | duration s |",
        "|---|---|---|---:|---:|---:|",
    ]
    lines += [
        "| "
        + " | ".join(r[k] for k in ("step", "resource", "change", "start_s", "end_s", "duration_s"))
        + " |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def publish_summary(result: ProvisionResult) -> None:
    key = f"provision-{result.environment}"
    create_table_artifact(
        key=f"{key}-steps", table=summary_rows(result), description=f"Provision steps of {result.environment}"
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=summary_markdown(result),
        description=f"Provision summary of {result.environment}",
    )
    log().info(
        "provisioned %s: %s",
        result.environment,
        "every step unchanged" if result.unchanged else "see the summary artifact",
    )


def publish_failure(
    environment: str, finished: tuple[StepFacts, ...], unfinished: list[tuple[str, str]]
) -> None:
    """The same artifacts for a failed run: what finished (a retry will skip it) and what did not."""
    rows = step_rows(finished)
    rows += [{"step": step, "resource": "", "id": "", "change": state.lower()} for step, state in unfinished]
    key = f"provision-{environment}"
    create_table_artifact(
        key=f"{key}-steps", table=rows, description=f"Provision steps of {environment} (failed)"
    )
    lines = [
        f"# Provisioning `{environment}` did not finish",
        "",
        f"- {len(finished)} steps finished (a retry of this run skips them);"
        f" not finished: {', '.join(f'{s} ({st})' for s, st in unfinished)}",
        "- retry: `prefect flow-run retry <this run> --entrypoint flows/provision.py:provision`",
    ]
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown="\n".join(lines) + "\n",
        description=f"Provision summary of {environment}",
    )
