"""The deployments, for real: a Prefect server (embedded SQLite), ``prefect deploy --all`` from
``prefect.yaml``, a process worker, and a sandbox in its own process; provision -> validate ->
teardown run through ``prefect deployment run`` and their final states are read from the API
(``--watch`` alone is not trusted: PITFALLS P29). A provision run failed by an injected fault is
retried with ``prefect flow-run retry`` after the fault is cleared, and only the unfinished steps
run again (persisted results, run-scoped cache: P27).

One server, one worker and one sandbox for the whole module; every process is started in its own
session and its whole group is stopped at the end.
"""

from __future__ import annotations

import pytest

from tests.deployment.conftest import POOL, ROOT, SandboxAdmin, Stack

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]


def test_prefect_yaml_deploys_every_environment(stack: tuple[Stack, SandboxAdmin]) -> None:
    st, _ = stack
    flows = {f["id"]: f["name"] for f in st.post("/flows/filter", {"limit": 50})}
    deployments = st.post("/deployments/filter", {"limit": 50})
    names = sorted(f"{flows[d['flow_id']]}/{d['name']}" for d in deployments)
    expected = [f"{f}/{e}" for f in ("provision", "validate", "teardown") for e in ("dev", "staging", "prod")]
    assert names == sorted([*expected, "validate/dev-ci"])
    for d in deployments:
        flow, name, params = flows[d["flow_id"]], d["name"], d["parameters"]
        env = name.removesuffix("-ci")
        assert params["spec"]["environment"] == env
        assert d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
        if name.endswith("-ci"):
            # keyless CI: a workload-identity block, on the pool whose only worker is the CI job
            assert params["credentials_block"] == "keyless-gitops-ci"
            assert d["work_pool_name"] == f"{POOL}-ci" and not d["schedules"]
            continue
        assert params["credentials_block"] == f"keyless-gitops-{env}"  # separate per environment
        assert d["work_pool_name"] == POOL
        if flow == "validate":
            assert [s["schedule"]["cron"] for s in d["schedules"]]
        assert params["spec"].get("protected", False) is (env == "prod")
