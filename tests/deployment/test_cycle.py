"""provision (fault injected, then retried) -> validate -> teardown, through deployments."""

from __future__ import annotations

import pytest

from tests.deployment.conftest import SandboxAdmin, Stack

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]


def test_provision_fault_retry_validate_teardown(stack: tuple[Stack, SandboxAdmin]) -> None:
    st, sb = stack
    # 1. provision/dev with a fault in one step (the Argo CD extension's PUT: a 400 is not retried
    #    by the task), so the run fails with the other steps finished.
    sb.add_fault(
        {
            "id": "deployment-test",
            "service": "arm",
            "method": "PUT",
            "path": "/extensions/",
            "action": "status",
            "status": 400,
            "code": "InvalidConfiguration",
            "message": "injected by the deployment test",
        }
    )
    run_id = st.deployment_run("provision/dev")
    state = st.final_state(run_id)
    assert state["type"] == "FAILED", state
    first = {t["name"]: t["state"]["type"] for t in st.task_runs(run_id) if t.get("state")}
    assert any(v == "FAILED" for k, v in first.items() if "extension" in k.lower()), first

    # 2. clear the fault and retry the same run: finished steps come from their persisted results.
    sb.clear_faults()
    mark = sb.journal()["last_seq"]
    st.run("flow-run", "retry", run_id)
    state = st.final_state(run_id, timeout=600)
    assert state["type"] == "COMPLETED", state
    retried = sb.journal(since=mark, writes=True)["entries"]
    paths = [e["path"].lower() for e in retried]
    assert not [
        p for p in paths if p.endswith(("/managedclusters/aks-gitops-cluster", "/userassignedidentities"))
    ]
    assert not any("/federatedidentitycredentials/" in p for p in paths), paths
    assert any("/extensions/" in p for p in paths), paths  # the unfinished step did run
    cached = [t for t in st.task_runs(run_id) if t.get("state") and t["state"]["name"] == "Cached"]
    assert cached, "the retried run re-executed every step"

    # 3. validate/dev: every row passes, read-only.
    mark = sb.journal()["last_seq"]
    v_id = st.deployment_run("validate/dev")
    v_state = st.final_state(v_id)
    assert v_state["type"] == "COMPLETED", v_state
    assert sb.journal(since=mark, writes=True)["entries"] == []
    keys = {a["key"] for a in st.artifacts(v_id)}
    assert {"validation-dev", "validation-summary-dev"} <= keys
    # the CI example's confirmation step agrees with the API (P29)
    assert st.confirm(v_id) == 0

    # 4. teardown/prod refuses (protected), teardown/dev completes and leaves nothing.
    p_id = st.deployment_run("teardown/prod")
    p_state = st.final_state(p_id)
    assert p_state["type"] == "FAILED" and "protected" in (p_state.get("message") or ""), p_state
    assert st.confirm(p_id) == 1
    t_id = st.deployment_run("teardown/dev")
    t_state = st.final_state(t_id, timeout=600)
    assert t_state["type"] == "COMPLETED", t_state
