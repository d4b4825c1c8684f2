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
    deps = {f"{d['name']}": d for d in st.post("/deployments/filter", {"limit": 50})}
    flows = {f["id"]: f["name"] for f in st.post("/flows/filter", {"limit": 50})}
    names = sorted(
        f"{flows[d['flow_id']]}/{d['name']}" for d in st.post("/deployments/filter", {"limit": 50})
    )
    assert names == sorted(
        f"{f}/{e}" for f in ("provision", "validate", "teardown") for e in ("dev", "prod", "staging")
    )
    all_deps = st.post("/deployments/filter", {"limit": 50})
    for d in all_deps:
        flow = flows[d["flow_id"]]
        params = d["parameters"]
        env = d["name"]
        assert params["spec"]["environment"] == env
        assert params["credentials_block"] == f"keyless-gitops-{env}"
        assert d["work_pool_name"] == POOL
        assert d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
        if flow == "validate":
            assert [s["schedule"]["cron"] for s in d["schedules"]]
        if env == "prod":
            assert params["spec"]["protected"] is True
    assert deps  # the filter works
