"""State survives a restart: an in-flight cluster create completes after the sandbox restarts
(operations are evaluated lazily from the clock), and tokens stay valid (persisted signing key)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx

from sandbox.arm.testing import credential
from sandbox.server import Sandbox


def test_in_flight_operation_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    scale = 0.004  # managed_cluster.create: 300 s x 0.004 = 1.2 s
    with Sandbox(state_dir, time_scale=scale) as first:
        conn = first.connection
        token = credential(conn).get_token("https://management.azure.com/.default").token
        headers = {"Authorization": f"Bearer {token}"}
        verify = ssl.create_default_context(cafile=conn["ca_bundle"])
        sub = conn["subscription_id"]
        rg = f"{conn['arm_endpoint']}/subscriptions/{sub}/resourcegroups/rg-restart"
        with httpx.Client(verify=verify, headers=headers, params={"api-version": "2025-04-01"}) as c:
            assert c.put(rg, json={"location": "eastus"}).status_code == 201
        cluster = f"{rg}/providers/Microsoft.ContainerService/managedClusters/aks-restart"
        body = {
            "location": "eastus",
            "properties": {
                "agentPoolProfiles": [{"name": "system", "count": 1, "mode": "System"}],
                "oidcIssuerProfile": {"enabled": True},
            },
        }
        with httpx.Client(verify=verify, headers=headers, params={"api-version": "2026-08-01"}) as c:
            created = c.put(cluster, json=body)
            assert created.status_code == 201, created.text
            assert created.json()["properties"]["provisioningState"] == "Creating"
            assert int(created.headers["Retry-After"]) >= 1
    time.sleep(1.3)
    with Sandbox(state_dir, time_scale=scale) as second:
        assert second.connection["arm_endpoint"] == conn["arm_endpoint"]  # same port, same URLs
        with httpx.Client(verify=verify, headers=headers, params={"api-version": "2026-08-01"}) as c:
            got = c.get(cluster)
            assert got.status_code == 200, got.text
            props = got.json()["properties"]
            assert props["provisioningState"] == "Succeeded"
            assert props["oidcIssuerProfile"]["issuerURL"].startswith(f"{conn['arm_endpoint']}/oidc/")
