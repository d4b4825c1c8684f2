"""Helpers for the controller tests: a sandbox cluster, polling, kubectl."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sandbox.k8s.store import ClusterStore
from sandbox.server import Sandbox

T = TypeVar("T")
KUBECTL = Path(sys.prefix) / "bin" / "kubectl"


def cluster_id(sb: Sandbox, name: str) -> str:
    return (
        f"/subscriptions/{sb.ctx.identity.subscription_id}/resourcegroups/rg-ctl/providers/"
        f"microsoft.containerservice/managedclusters/{name}"
    )


def make_cluster(sb: Sandbox, name: str, *, keyvault: bool = True, nodes: int = 2) -> ClusterStore:
    """A cluster as ARM's managed-cluster LRO leaves it (ensure_cluster on the backend)."""
    svc = sb.ctx.services["k8s"]
    svc.ensure_cluster(
        cluster_id(sb, name),
        name=name,
        location="eastus",
        oidc_issuer=True,
        workload_identity=True,
        keyvault_secrets_provider=keyvault,
        node_count=nodes,
    )
    key = svc.key_for(cluster_id(sb, name))
    store: ClusterStore = svc.store(key)
    wait_until(lambda: key in sb.ctx.services["k8s-controllers"].clusters, timeout=5)
    return store


def wait_until(fn: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last={last!r}")


def kubeconfig(sb: Sandbox, name: str, tmp: Path) -> Path:
    data = sb.ctx.services["k8s"].kubeconfig(cluster_id(sb, name))
    path = tmp / f"kubeconfig-{name}"
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def kubectl(
    config: Path, *args: str, timeout: float = 60, check: bool = True, input_: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(config.parent), "KUBECONFIG": str(config)}
    proc = subprocess.run(
        [str(KUBECTL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        input=input_,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def deployment(
    name: str,
    ns: str,
    *,
    replicas: int = 1,
    env: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    sa: str | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "nginx:1.27"}
    if env:
        container["env"] = env
    spec: dict[str, Any] = {"containers": [container]}
    if sa:
        spec["serviceAccountName"] = sa
    if volumes:
        spec["volumes"] = volumes
        container["volumeMounts"] = [
            {"name": v["name"], "mountPath": f"/mnt/{v['name']}", "readOnly": True} for v in volumes
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, **(labels or {})}}, "spec": spec},
        },
    }
