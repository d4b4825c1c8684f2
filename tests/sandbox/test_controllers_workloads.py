"""Deployments, ReplicaSets, StatefulSets, Pods and the kubelet's pod status (controllers/workloads.py).

Sources: kubernetes deployment controller (conditions Available/Progressing and their reasons),
kubelet ``makeEnvironmentVariables`` (CreateContainerConfigError texts), PITFALLS P12.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.k8s.store import ClusterStore
from sandbox.server import Sandbox
from tests.sandbox.controllers_support import deployment, kubeconfig, kubectl, make_cluster, wait_until


@pytest.fixture(scope="module")
def store(sandbox: Sandbox) -> ClusterStore:
    return make_cluster(sandbox, "aks-workloads")


@pytest.fixture
def ns(store: ClusterStore, unique: str) -> str:
    name = f"wl-{unique}"
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == ctype), {})


def _pods(store: ClusterStore, ns: str) -> list[dict[str, Any]]:
    return store.list("v1", "Pod", ns)[0]


def test_deployment_becomes_available_with_replicaset_and_pods(store: ClusterStore, ns: str) -> None:
    store.create(deployment("web", ns, replicas=3))
    dep = wait_until(
        lambda: (
            (d := store.get("apps/v1", "Deployment", "web", ns))
            and _cond(d, "Available").get("status") == "True"
            and d["status"].get("availableReplicas") == 3
            and d
        ),
        what="Deployment Available",
    )
    assert _cond(dep, "Available")["reason"] == "MinimumReplicasAvailable"
    assert _cond(dep, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    (rs,) = store.list("apps/v1", "ReplicaSet", ns)[0]
    phash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{phash}"
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pods = _pods(store, ns)
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{phash}-")
        assert pod["metadata"]["labels"]["pod-template-hash"] == phash
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"].startswith("aks-nodepool1-")
        assert pod["status"]["containerStatuses"][0]["ready"] is True
        assert _cond(pod, "Ready")["status"] == "True"


def test_template_change_rolls_out_a_new_replicaset(store: ClusterStore, ns: str) -> None:
    store.create(deployment("roll", ns, replicas=2))
    wait_until(
        lambda: (
            _cond(store.get("apps/v1", "Deployment", "roll", ns), "Progressing").get("reason")
            == "NewReplicaSetAvailable"
        )
    )
    dep = store.get("apps/v1", "Deployment", "roll", ns)
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    store.update(dep)

    def rolled() -> bool:
        d = store.get("apps/v1", "Deployment", "roll", ns)
        pods = _pods(store, ns)
        return (
            d["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "2"
            and _cond(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
            and len(pods) == 2
            and all(p["spec"]["containers"][0]["image"] == "nginx:1.28" for p in pods)
        )

    wait_until(rolled, what="rollout to revision 2")
    sets = store.list("apps/v1", "ReplicaSet", ns)[0]
    assert sorted(rs["spec"]["replicas"] for rs in sets) == [0, 2]


def test_missing_secret_gives_create_container_config_error_then_heals(store: ClusterStore, ns: str) -> None:
    env = [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "app-secrets", "key": "db"}}}]
    store.create(deployment("cfg", ns, env=env))

    def waiting() -> dict[str, Any] | None:
        pods = _pods(store, ns)
        if not pods:
            return None
        w = (pods[0].get("status") or {}).get("containerStatuses", [{}])[0].get("state", {}).get("waiting")
        return w if w and w.get("reason") == "CreateContainerConfigError" else None

    w = wait_until(waiting, what="CreateContainerConfigError")
    assert w["message"] == 'secret "app-secrets" not found'
    pod = _pods(store, ns)[0]
    assert pod["status"]["phase"] == "Pending"
    events = [
        e for e in store.list("v1", "Event", ns)[0] if e["involvedObject"]["name"] == pod["metadata"]["name"]
    ]
    assert any(
        e["reason"] == "Failed" and e["message"] == 'Error: secret "app-secrets" not found' for e in events
    )

    # the Secret appears without the key: the kubelet's second message
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "app-secrets", "namespace": ns},
            "data": {"other": "eA=="},
        }
    )
    w = wait_until(lambda: (x := waiting()) and "couldn't find key" in x.get("message", "") and x)
    assert w["message"] == f"couldn't find key db in Secret {ns}/app-secrets"

    sec = store.get("v1", "Secret", "app-secrets", ns)
    sec["data"]["db"] = "eQ=="
    store.update(sec)
    wait_until(
        lambda: _cond(store.get("apps/v1", "Deployment", "cfg", ns), "Available").get("status") == "True",
        what="Available after the Secret key appeared",
    )


def test_statefulset_creates_ordered_pods(store: ClusterStore, ns: str) -> None:
    sts = deployment("db", ns, replicas=3)
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    store.create(sts)
    live = wait_until(
        lambda: (
            (s := store.get("apps/v1", "StatefulSet", "db", ns))
            and (s.get("status") or {}).get("readyReplicas") == 3
            and s
        )
    )
    names = sorted(p["metadata"]["name"] for p in _pods(store, ns))
    assert names == ["db-0", "db-1", "db-2"]
    pod0 = store.get("v1", "Pod", "db-0", ns)
    assert pod0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    assert (pod0["spec"]["hostname"], pod0["spec"]["subdomain"]) == ("db-0", "db")
    assert pod0["metadata"]["labels"]["controller-revision-hash"] == live["status"]["currentRevision"]
    assert live["status"]["currentRevision"] == live["status"]["updateRevision"]


def test_loadbalancer_service_gets_an_address(store: ClusterStore, ns: str) -> None:
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "front", "namespace": ns},
            "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]},
        }
    )
    svc = wait_until(
        lambda: (
            (s := store.get("v1", "Service", "front", ns))
            and (s.get("status") or {}).get("loadBalancer", {}).get("ingress")
            and s
        )
    )
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"].startswith("20.")


def test_deleting_a_deployment_removes_its_replicasets_and_pods(store: ClusterStore, ns: str) -> None:
    store.create(deployment("gone", ns, replicas=2))
    wait_until(lambda: len(_pods(store, ns)) == 2)
    store.delete("apps/v1", "Deployment", "gone", ns)
    wait_until(lambda: not _pods(store, ns) and not store.list("apps/v1", "ReplicaSet", ns)[0])


# -- the same through the real kubectl and the real kubernetes client ---------------------------
def test_kubectl_wait_for_condition_available(
    sandbox: Sandbox, store: ClusterStore, ns: str, tmp_path: Path
) -> None:
    config = kubeconfig(sandbox, "aks-workloads", tmp_path)
    manifest = yaml.safe_dump(deployment("kwait", ns, replicas=2))
    kubectl(config, "apply", "-f", "-", input_=manifest)
    out = kubectl(config, "wait", "--for=condition=Available", "deployment/kwait", "-n", ns, "--timeout=30s")
    assert out.stdout.strip() == "deployment.apps/kwait condition met"
    rollout = kubectl(config, "rollout", "status", "deployment/kwait", "-n", ns, "--timeout=10s")
    assert rollout.stdout.strip() == 'deployment "kwait" successfully rolled out'
    phases = kubectl(
        config, "get", "pods", "-n", ns, "-l", "app=kwait", "-o", "jsonpath={.items[*].status.phase}"
    )
    assert phases.stdout.split() == ["Running", "Running"]


def test_kubernetes_client_sees_create_container_config_error(
    sandbox: Sandbox, store: ClusterStore, ns: str, tmp_path: Path
) -> None:
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(kubeconfig(sandbox, "aks-workloads", tmp_path)))
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    env = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    apps.create_namespaced_deployment(ns, deployment("kc", ns, env=env))

    def reason() -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector="app=kc").items
        if not pods or not pods[0].status.container_statuses:
            return None
        waiting = pods[0].status.container_statuses[0].state.waiting
        return f"{waiting.reason}: {waiting.message}" if waiting else None

    assert wait_until(reason) == 'CreateContainerConfigError: secret "absent" not found'
    dep = apps.read_namespaced_deployment_status("kc", ns)
    available = next(c for c in dep.status.conditions if c.type == "Available")
    assert (available.status, available.reason) == ("False", "MinimumReplicasUnavailable")


def test_modelled_image_pull_and_start_time(fresh_sandbox: Sandbox, store: ClusterStore, ns: str) -> None:
    """At time_scale > 0 pods spend the modelled pull + start time in ContainerCreating."""
    fresh_sandbox.ctx.clock.overrides = {"pod.image_pull": 0.6, "pod.start": 0.2}
    store.create(deployment("slow", ns))
    pod = wait_until(
        lambda: (p := _pods(store, ns)) and (p[0].get("status") or {}).get("containerStatuses") and p[0]
    )
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    dep = store.get("apps/v1", "Deployment", "slow", ns)
    assert _cond(dep, "Available")["status"] == "False"
    assert _cond(dep, "Progressing")["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")
    wait_until(
        lambda: _cond(store.get("apps/v1", "Deployment", "slow", ns), "Available").get("status") == "True",
        timeout=5,
    )
    events = {e["reason"] for e in store.list("v1", "Event", ns)[0]}
    assert {
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
        "SuccessfulCreate",
        "ScalingReplicaSet",
    } <= events


def test_controllers_resume_after_a_restart(tmp_path: Path) -> None:
    """State survives a restart; controllers pick up persisted clusters and keep reconciling."""
    with Sandbox(tmp_path / "sb") as first:
        st = make_cluster(first, "aks-restart")
        st.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}})
        st.create(deployment("before", "app"))
        wait_until(
            lambda: (
                _cond(st.get("apps/v1", "Deployment", "before", "app"), "Available").get("status") == "True"
            )
        )
    with Sandbox(tmp_path / "sb") as second:
        svc = second.ctx.services["k8s"]
        st2 = svc.store(next(iter(svc.clusters())))
        assert _cond(st2.get("apps/v1", "Deployment", "before", "app"), "Available")["status"] == "True"
        st2.create(deployment("after", "app"))
        wait_until(
            lambda: (
                _cond(st2.get("apps/v1", "Deployment", "after", "app"), "Available").get("status") == "True"
            )
        )


def test_missing_secret_volume_is_a_failed_mount_until_the_secret_exists(
    store: ClusterStore, ns: str
) -> None:
    store.create(deployment("vol", ns, volumes=[{"name": "certs", "secret": {"secretName": "tls"}}]))

    def failed_mount() -> str | None:
        return next(
            (e["message"] for e in store.list("v1", "Event", ns)[0] if e["reason"] == "FailedMount"), None
        )

    assert wait_until(failed_mount) == 'MountVolume.SetUp failed for volume "certs" : secret "tls" not found'
    pod = _pods(store, ns)[0]
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tls", "namespace": ns},
            "data": {"tls.crt": "eA=="},
        }
    )
    wait_until(
        lambda: _cond(store.get("apps/v1", "Deployment", "vol", ns), "Available").get("status") == "True"
    )
