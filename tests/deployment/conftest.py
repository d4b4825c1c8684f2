"""Fixtures of the deployment tests (one stack for the whole package).

The deployments, for real: a Prefect server (embedded SQLite), ``prefect deploy --all`` from
``prefect.yaml``, a process worker, and a sandbox in its own process; provision -> validate ->
teardown run through ``prefect deployment run`` and their final states are read from the API
(``--watch`` alone is not trusted: PITFALLS P29). A provision run failed by an injected fault is
retried with ``prefect flow-run retry`` after the fault is cleared, and only the unfinished steps
run again (persisted results, run-scoped cache: P27).

One server, one worker and one sandbox for the whole module; every process is started in its own
session and its whole group is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
POOL = "keyless-gitops"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process in its own session; ``stop()`` ends its whole group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.p = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=5)
        # children that outlived their parent (flow-run subprocesses) share the group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.p.pid, signal.SIGKILL)
        self._fh.close()


def _wait(predicate: Any, what: str, timeout: float, proc: Proc | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.p.poll() is not None:
            raise RuntimeError(f"{what}: process exited {proc.p.returncode}:\n{proc.log.read_text()[-3000:]}")
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.25)
    raise TimeoutError(f"{what} not within {timeout}s")


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        port = _free_port()
        self.api = f"http://127.0.0.1:{port}/api"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp / "results"),
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_UI_ENABLED": "false",
            # The validate deployments carry hourly cron schedules; no scheduled run may start in the
            # middle of the test (the cycle counts the sandbox's writes).
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        }
        self.server_port = port

    def start(self, args: list[str], name: str) -> Proc:
        proc = Proc(args, self.env, self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"prefect {' '.join(args)} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return out

    def confirm(self, run_id: str) -> int:
        """Exit status of the CI example's confirmation script (deployments/ci_confirm.py)."""
        out = subprocess.run(
            [str(BIN / "python"), "deployments/ci_confirm.py", run_id, "--timeout", "60"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.returncode

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    # -- API ------------------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.api}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/flow_runs/{run_id}"))

    def final_state(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Poll the API until the run is terminal (P29: the CLI's watch is not the source of truth)."""

        def done() -> dict[str, Any] | None:
            state = self.flow_run(run_id)["state"]
            return state if state and state["type"] in TERMINAL else None

        return dict(_wait(done, f"flow run {run_id} terminal", timeout))

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}))

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}}))

    def deployment_run(self, name: str, *params: str) -> str:
        args = ["deployment", "run", name, "--watch", "--watch-interval", "1", "--watch-timeout", "600"]
        for p in params:
            args += ["--param", p]
        out = self.run(*args, timeout=660, check=False)
        m = re.search(r"UUID:\s*([0-9a-f-]{36})", out.stdout)
        assert m, f"no flow run id in:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        return m.group(1)


class SandboxAdmin:
    def __init__(self, conn: dict[str, Any]) -> None:
        self.conn = conn
        self.http = httpx.Client(
            base_url=conn["admin_endpoint"],
            verify=ssl.create_default_context(cafile=conn["ca_bundle"]),
            headers={"Authorization": f"Bearer {conn['admin_token']}"},
            timeout=30,
        )

    def add_fault(self, rule: dict[str, Any]) -> None:
        self.http.post("/faults", json=rule).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete("/faults").raise_for_status()

    def journal(self, since: int = 0, writes: bool = False) -> dict[str, Any]:
        params = {"since": since, **({"writes": 1} if writes else {})}
        r = self.http.get("/journal", params=params)
        r.raise_for_status()
        return dict(r.json())


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, SandboxAdmin]]:
    tmp = tmp_path_factory.mktemp("deployment")
    st = Stack(tmp)
    try:
        # The sandbox in its own process, with its own state (its own subscription: no name clashes).
        state = tmp / "sandbox"
        sb = st.start([str(BIN / "keyless-gitops"), "sandbox", "serve", "--state-dir", str(state)], "sandbox")
        conn_file = state / "connection.json"
        _wait(conn_file.exists, "sandbox connection file", 60, sb)
        conn = json.loads(conn_file.read_text())

        server = st.start(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(st.server_port)],
            "server",
        )
        _wait(
            lambda: httpx.get(f"{st.api}/health", timeout=2).status_code == 200, "prefect server", 120, server
        )

        st.run("work-pool", "create", POOL, "--type", "process")
        st.run("work-pool", "create", f"{POOL}-ci", "--type", "process")
        # One credentials block per environment, all pointing at this sandbox (no secret on disk
        # except the sandbox's own connection file).
        save = (
            "import json,sys\n"
            "from blocks.credentials import AzureCredentials\n"
            "c=json.load(open(sys.argv[1]))\n"
            "for env in ('dev','staging','prod'):\n"
            "    AzureCredentials(subscription_id=c['subscription_id'],tenant_id=c['tenant_id'],"
            "client_id=c['client_id'],client_secret=c['client_secret'],arm_endpoint=c['arm_endpoint'],"
            "authority_host=c['authority_host'],ca_bundle=c['ca_bundle'],disable_instance_discovery=True,"
            "polling_interval=1,retry_total=3).save(f'keyless-gitops-{env}',overwrite=True)\n"
        )
        subprocess.run(
            [str(BIN / "python"), "-c", save, str(conn_file)], cwd=ROOT, env=st.env, check=True, timeout=120
        )
        deployed = st.run("deploy", "--all", timeout=300)
        assert "validate/prod" in deployed.stdout
        worker = st.start(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"], "worker"
        )
        _wait(
            lambda: st.post("/work_pools/" + POOL + "/workers/filter", {}) != [],
            "worker registered",
            60,
            worker,
        )
        yield st, SandboxAdmin(conn)
    finally:
        st.stop()
