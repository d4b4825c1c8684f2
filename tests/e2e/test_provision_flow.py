"""The provision flow end to end on the sandbox: the recipe's stack really works (checked with real
kubectl), independent steps overlap and the graph's edges hold, a second run writes nothing, no
secret value leaks anywhere, and a failed run retried skips the steps that had finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, LogFilter
from prefect.flow_engine import run_flow
from prefect.logging.handlers import APILogHandler
from prefect.states import Scheduled
from pydantic import SecretStr

from flows.provision import GRAPH, ProvisionResult, provision
from keyless_gitops.spec import EnvironmentSpec
from sandbox.server import Sandbox
from tasks.aks import get_kubeconfig
from tasks.common import load_credentials

KUBECTL = str(Path(sys.executable).parent / "kubectl")
Writes = Callable[[int], list[Any]]


@dataclass
class Run:
    spec: EnvironmentSpec
    result: ProvisionResult
    flow_run_id: Any
    first_seq: int
    last_seq: int
    canaries: list[str]


def _canary_spec(sandbox: Sandbox, env: str) -> tuple[EnvironmentSpec, list[str]]:
    """A spec whose secrets come from blocks holding canary values (to hunt for leaks)."""
    canaries = [f"CANARY-{env}-{i}-d0ntl34k" for i in range(2)]
    blocks = {"database-connection-string": f"{env}-canary-db", "api-key": f"{env}-canary-api"}
    for value, block in zip(canaries, blocks.values(), strict=True):
        Secret(value=SecretStr(value)).save(block, overwrite=True)
    spec = EnvironmentSpec(environment=env, secrets=blocks)
    return spec.for_subscription(sandbox.connection["subscription_id"]), canaries


@pytest.fixture(scope="module")
def first_run(sandbox: Sandbox, creds_block: str) -> Iterator[Run]:
    """One full provision at time_scale 0.01 (AKS ~3 s, extension ~1.5 s), with canary secrets."""
    env = "e" + os.urandom(3).hex()
    spec, canaries = _canary_spec(sandbox, env)
    sandbox.ctx.clock.time_scale = 0.01
    try:
        seq = sandbox.ctx.journal.last_seq
        state = provision(spec=spec, credentials_block=creds_block, return_state=True)
        assert state.is_completed(), state.message
        yield Run(
            spec=spec,
            result=state.result(),
            flow_run_id=state.state_details.flow_run_id,
            first_seq=seq,
            last_seq=sandbox.ctx.journal.last_seq,
            canaries=canaries,
        )
    finally:
        sandbox.ctx.clock.time_scale = 0.0


@pytest.fixture(scope="module")
def kubeconfig(first_run: Run, creds_block: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kube") / "config"
    path.touch(mode=0o600)
    path.write_bytes(get_kubeconfig(load_credentials(creds_block), first_run.spec.names))
    return path


def kubectl_json(kubeconfig: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout))


def test_every_step_created_and_the_summary_artifacts(first_run: Run, prefect_harness: Path) -> None:
    steps = {s.step for s in first_run.result.steps}
    assert steps == set(GRAPH)
    assert all(s.change == "created" for s in first_run.result.steps if s.step != "sample_app")
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id={"any_": [first_run.flow_run_id]})  # type: ignore[arg-type]
        )
    keys = {a.key for a in arts}
    env = first_run.spec.environment
    assert {f"provision-{env}-steps", f"provision-{env}-summary"} <= keys
    table = next(a for a in arts if a.key == f"provision-{env}-steps")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["step"] for r in rows} == set(GRAPH)
    assert {"resource", "id", "change", "duration_s", "started", "ended"} <= set(rows[0])


def test_kubectl_sees_the_keyless_stack(first_run: Run, kubeconfig: Path) -> None:
    """The recipe's own validation, with real kubectl and the kubeconfig the pipeline fetched."""
    client_id = first_run.result.identity_client_id
    for ns, sa in [
        ("argocd", "argocd-application-controller"),
        ("argocd", "argocd-server"),
        ("sample-app", "sample-app-sa"),
    ]:
        obj = kubectl_json(kubeconfig, "get", "serviceaccount", sa, "-n", ns)
        assert obj["metadata"]["annotations"]["azure.workload.identity/client-id"] == client_id, sa
        assert obj["metadata"]["labels"]["azure.workload.identity/use"] == "true", sa

    deploy = kubectl_json(kubeconfig, "get", "deployment", "sample-app", "-n", "sample-app")
    assert deploy["status"]["readyReplicas"] == 1
    pods = kubectl_json(kubeconfig, "get", "pods", "-n", "sample-app", "-l", "app=sample-app")["items"]
    assert pods and all(p["metadata"]["labels"]["azure.workload.identity/use"] == "true" for p in pods)
    statuses = kubectl_json(kubeconfig, "get", "secretproviderclasspodstatuses", "-n", "sample-app")["items"]
    mounted = [s for s in statuses if s["status"]["mounted"]]
    assert mounted and len(mounted[0]["status"]["objects"]) == 2
    secret = kubectl_json(kubeconfig, "get", "secret", "sample-app-secrets", "-n", "sample-app")
    assert set(secret["data"]) == {"database-connection-string", "api-key"}

    app = kubectl_json(
        kubeconfig, "get", "applications.argoproj.io", first_run.spec.gitops.application, "-n", "argocd"
    )
    assert app["status"]["sync"]["status"] == "Synced"
    assert app["status"]["health"]["status"] == "Healthy"
    store = kubectl_json(kubeconfig, "get", "deployments", "-n", first_run.spec.gitops.destination_namespace)
    assert len(store["items"]) == 7


def test_independent_steps_overlap_and_edges_hold(first_run: Run) -> None:
    steps = {s.step: s for s in first_run.result.steps if s.step != "federated_credentials"}
    fics = [s for s in first_run.result.steps if s.step == "federated_credentials"]

    def span(step: str) -> tuple[float, float]:
        if step == "federated_credentials":
            return min(f.started for f in fics), max(f.ended for f in fics)
        return steps[step].started, steps[step].ended

    for step, deps in GRAPH.items():
        for dep in deps:
            assert span(step)[0] >= span(dep)[1] - 0.001, f"{step} started before {dep} ended"

    def overlap(a: str, b: str) -> bool:
        (s1, e1), (s2, e2) = span(a), span(b)
        return s1 < e2 and s2 < e1

    assert overlap("cluster", "key_vault") and overlap("cluster", "identity")
    assert overlap("cluster", "seed_secrets") or overlap("cluster", "role_assignment")
    assert overlap("extension", "workload") or overlap("extension", "federated_credentials")


def test_second_run_writes_nothing(
    sandbox: Sandbox, first_run: Run, creds_block: str, writes_since: Writes
) -> None:
    seq = sandbox.ctx.journal.last_seq
    result = provision(spec=first_run.spec, credentials_block=creds_block)
    assert result.unchanged, [(s.step, s.change) for s in result.steps if s.change != "unchanged"]
    assert writes_since(seq) == []


def test_no_secret_value_anywhere(first_run: Run, prefect_harness: Path) -> None:
    """P24/P28: canary values never reach logs, artifacts, state messages or persisted results."""
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        run_filter = FlowRunFilter(id={"any_": [first_run.flow_run_id]})  # type: ignore[arg-type]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [first_run.flow_run_id]}))  # type: ignore[arg-type]
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id={"any_": [first_run.flow_run_id]})  # type: ignore[arg-type]
        )
        task_runs = client.read_task_runs(flow_run_filter=run_filter)
        flow_run = client.read_flow_run(first_run.flow_run_id)
    haystacks = [log.message for log in logs]
    haystacks += [json.dumps(a.data) if not isinstance(a.data, str) else a.data for a in arts]
    haystacks += [str(tr.state.message if tr.state else "") for tr in task_runs]
    haystacks += [
        str(flow_run.state.message if flow_run.state else ""),
        json.dumps(flow_run.parameters, default=str),
    ]
    assert logs and arts and task_runs
    stored = [p.read_bytes() for p in prefect_harness.rglob("*") if p.is_file()]
    assert stored, "expected persisted results"
    for canary in first_run.canaries:
        assert not any(canary in h for h in haystacks)
        assert not any(canary.encode() in blob for blob in stored)


def test_failed_run_retried_skips_finished_steps(
    fresh_sandbox: Sandbox, creds_block: str, writes_since: Writes
) -> None:
    """P27: the extension install fails (a 400, not retried); retrying that flow run re-runs only the
    extension and the Application — every other step comes from its persisted result."""
    sandbox = fresh_sandbox
    spec = EnvironmentSpec(environment="r" + os.urandom(3).hex()).for_subscription(
        sandbox.connection["subscription_id"]
    )
    sandbox.ctx.faults.add(
        {
            "service": "arm",
            "method": "PUT",
            "path": "extensions/argocd$",
            "action": "status",
            "status": 400,
            "code": "InvalidConfigurationSetting",
            "message": "injected by the test",
            "count": 1,
        }
    )
    state = provision(
        spec=spec, credentials_block=creds_block, generate_missing_secrets=True, return_state=True
    )
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    sandbox.ctx.faults.clear()
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id={"any_": [flow_run_id]})  # type: ignore[arg-type]
        )
    table = next(a for a in arts if a.key == f"provision-{spec.environment}-steps")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    by_step = {r["step"]: r["change"] for r in rows}
    assert by_step["extension"] == "failed" and by_step["cluster"] == "created"
    assert by_step["application"] != "created"

    # What `prefect flow-run retry <id> --entrypoint flows/provision.py:provision` does for a local run.
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(message="Retried by the test"), force=True)
        flow_run = client.read_flow_run(flow_run_id)
    seq = sandbox.ctx.journal.last_seq
    result = run_flow(provision, flow_run=flow_run, parameters=flow_run.parameters)
    assert isinstance(result, ProvisionResult)
    written = {e.path.lower() for e in writes_since(seq)}
    assert written, "the retry must install the extension"
    assert all("extensions/argocd" in p or "/k8s/" in p for p in written), written
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]})  # type: ignore[arg-type]
        )
    cached = {tr.name.rsplit("-", 1)[0] for tr in runs if tr.state and tr.state.name == "Cached"}
    assert {"resource group", "AKS cluster", "key vault", "managed identity"} <= cached


def test_redaction_backstop_masks_a_leaked_value_in_api_logs(first_run: Run, prefect_harness: Path) -> None:
    """If a value read from a Secret block ever reached a log line, the API log would show *** (P28)."""
    from prefect import flow, task

    from tasks.common import log
    from tasks.redaction import register_secret
    from tasks.secrets import read_secret_block

    block = first_run.spec.secrets["api-key"]

    @task
    def careless() -> None:
        value, _ = read_secret_block(block, generate_missing=False)
        register_secret(value)
        log().info("a careless line with %s in it", value)

    @flow
    def leak() -> None:
        careless()

    state = leak(return_state=True)
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id={"any_": [state.state_details.flow_run_id]})  # type: ignore[arg-type]
        )
    lines = [entry.message for entry in logs if "careless line" in entry.message]
    assert lines == ["a careless line with *** in it"]
