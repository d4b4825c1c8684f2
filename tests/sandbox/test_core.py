"""The sandbox's transport, journal, fault rules and admin API (over real HTTPS)."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest

from sandbox.faults import FaultRuleError
from sandbox.server import Sandbox


def _tls(conn: dict[str, Any]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=conn["ca_bundle"])


def admin(conn: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=conn["admin_endpoint"],
        verify=_tls(conn),
        headers={"Authorization": f"Bearer {conn['admin_token']}"},
    )


def test_serves_https_with_its_own_ca_only(conn: dict[str, Any]) -> None:
    assert httpx.get(f"{conn['admin_endpoint']}/health", verify=_tls(conn)).json()["status"] == "ok"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{conn['admin_endpoint']}/health")  # the system trust store does not know the sandbox CA


def test_connection_file_has_the_documented_keys(sandbox: Sandbox) -> None:
    written = json.loads((sandbox.state_dir / "connection.json").read_text())
    for key in (
        "arm_endpoint",
        "authority_host",
        "tenant_id",
        "subscription_id",
        "client_id",
        "client_secret",
        "ca_bundle",
        "admin_endpoint",
    ):
        assert written[key], key
    assert (sandbox.state_dir / "connection.json").stat().st_mode & 0o077 == 0


def test_journal_records_every_request_and_counts_writes(
    fresh_sandbox: Sandbox, conn: dict[str, Any], unique: str
) -> None:
    # Other tests' controllers may still talk to the sandbox: look only at this test's paths.
    sub = f"journal-{unique}"
    since = fresh_sandbox.ctx.journal.last_seq
    httpx.get(f"{conn['arm_endpoint']}/subscriptions/{sub}?api-version=2025-04-01", verify=_tls(conn))
    httpx.delete(
        f"{conn['arm_endpoint']}/subscriptions/{sub}/resourcegroups/x?api-version=2025-04-01",
        verify=_tls(conn),
    )
    entries = [e for e in fresh_sandbox.ctx.journal.entries(since) if sub in e.path]
    assert [(e.method, e.api_version, e.service) for e in entries] == [
        ("GET", "2025-04-01", "arm"),
        ("DELETE", "2025-04-01", "arm"),
    ]
    assert [e.write for e in entries] == [False, True]
    with admin(conn) as c:
        listed = c.get("/journal", params={"since": since, "writes": "1"}).json()["entries"]
    assert [e["method"] for e in listed if sub in e["path"]] == ["DELETE"]
    on_disk = [
        json.loads(line) for line in (fresh_sandbox.state_dir / "journal.jsonl").read_text().splitlines()
    ]
    assert entries[-1].seq in {e["seq"] for e in on_disk if sub in e["path"]}


def test_admin_requires_token(conn: dict[str, Any]) -> None:
    assert httpx.get(f"{conn['admin_endpoint']}/journal", verify=_tls(conn)).status_code == 401


def test_throttle_rule_fires_count_times_with_retry_after(
    fresh_sandbox: Sandbox, conn: dict[str, Any]
) -> None:
    with admin(conn) as c:
        r = c.post(
            "/faults",
            json={
                "service": "arm",
                "path": "throttle-me",
                "action": "throttle",
                "count": 2,
                "retry_after": 3,
            },
        )
        assert r.status_code == 200
    url = f"{conn['arm_endpoint']}/subscriptions/throttle-me"
    codes = [httpx.get(url, verify=_tls(conn)) for _ in range(3)]
    assert [r.status_code for r in codes] == [429, 429, 404]
    assert codes[0].headers["Retry-After"] == "3"
    assert codes[0].json()["error"]["code"] == "TooManyRequests"


def test_seeded_rate_is_reproducible(fresh_sandbox: Sandbox, conn: dict[str, Any]) -> None:
    def pattern() -> list[int]:
        fresh_sandbox.ctx.faults.set_rules(
            {"rules": [{"path": "flaky", "action": "error", "status": 503, "rate": 0.5, "seed": 42}]}
        )
        return [
            httpx.get(f"{conn['arm_endpoint']}/subscriptions/flaky", verify=_tls(conn)).status_code
            for _ in range(12)
        ]

    first = pattern()
    assert first == pattern()
    assert 503 in first and 404 in first


def test_reset_rule_aborts_the_connection(fresh_sandbox: Sandbox, conn: dict[str, Any]) -> None:
    fresh_sandbox.ctx.faults.add({"path": "reset-me", "action": "reset", "count": 1})
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{conn['arm_endpoint']}/subscriptions/reset-me", verify=_tls(conn))
    assert httpx.get(f"{conn['arm_endpoint']}/subscriptions/reset-me", verify=_tls(conn)).status_code == 404


def test_kubernetes_paths_get_status_objects(fresh_sandbox: Sandbox, conn: dict[str, Any]) -> None:
    fresh_sandbox.ctx.faults.add(
        {"service": "kubernetes", "path": "^/k8s/any/", "action": "throttle", "count": 1}
    )
    r = httpx.get(f"{conn['arm_endpoint']}/k8s/any/api", verify=_tls(conn))
    assert r.status_code == 429
    assert r.json()["kind"] == "Status" and r.json()["reason"] == "TooManyRequests"


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "explode"},
        {"action": "error", "rate": 2},
        {"action": "error", "colour": "red"},
        {"action": "throttle", "retry_after": 0},
        {"action": "error", "path": "("},
    ],
)
def test_bad_fault_rules_are_refused(
    fresh_sandbox: Sandbox, conn: dict[str, Any], rule: dict[str, Any]
) -> None:
    with pytest.raises(FaultRuleError):
        fresh_sandbox.ctx.faults.add(rule)
    with admin(conn) as c:
        assert c.post("/faults", json=rule).status_code == 400


def test_state_survives_restart(tmp_path: Any) -> None:
    with Sandbox(tmp_path) as first:
        ident, port, ca = first.ctx.identity, first.port, first.ctx.tls.ca_bundle.read_bytes()
        with first.ctx.state("demo").change() as data:
            data["k"] = "v"
    assert not (tmp_path / "connection.json").exists()
    with Sandbox(tmp_path) as second:
        assert second.ctx.identity == ident
        assert second.port == port
        assert second.ctx.tls.ca_bundle.read_bytes() == ca
        assert second.ctx.state("demo").read() == {"k": "v"}


def test_files_holding_credentials_or_secret_values_are_private(tmp_path: Any) -> None:
    """identity.json holds the pipeline's client secret and state/*.json a vault's secret values."""
    with Sandbox(tmp_path) as sb, sb.ctx.state("demo").change() as data:
        data["k"] = "v"
    for path in [tmp_path / "identity.json", *(tmp_path / "state").glob("*.json")]:
        assert path.stat().st_mode & 0o077 == 0, path
