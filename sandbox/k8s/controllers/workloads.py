"""Deployments -> ReplicaSets -> Pods, StatefulSets -> Pods, and the kubelet's view of each pod.

Sources (read, not copied): kubernetes ``pkg/controller/deployment`` (``sync.go``, ``progress.go``,
``util/deployment_util.go``: condition types, reasons and messages, ``pod-template-hash``,
``deployment.kubernetes.io/revision``), ``pkg/controller/replicaset``, ``pkg/controller/statefulset``
(OrderedReady: pod N+1 is created once pod N is Running and Ready; ``<sts>-<ordinal>`` names,
``controller-revision-hash``, ``statefulset.kubernetes.io/pod-name`` and
``apps.kubernetes.io/pod-index`` labels), and the kubelet (``pkg/kubelet/kubelet_pods.go``
``makeEnvironmentVariables``: a missing Secret gives ``secret "x" not found``, a missing key
``couldn't find key y in Secret ns/x``, reason ``CreateContainerConfigError``; volumes that cannot be
set up leave containers ``ContainerCreating`` with a ``FailedMount`` event). PITFALLS P12.

Differences: ``pod-template-hash`` is FNV-32a of the template's canonical JSON (Kubernetes hashes
its Go struct dump), so the values differ from a real cluster's but are stable. Rolling updates
scale the new ReplicaSet up, then the old ones to zero once the new one is available (no surge
arithmetic). Readiness probes are not run: a started container is Ready.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.clock import Clock
from sandbox.k8s.controllers._base import (
    Conflict,
    KubeApi,
    NotFound,
    Obj,
    controller_of,
    duration,
    fnv32a,
    get_condition,
    is_owned_by,
    labels_of,
    now_iso,
    owner_ref,
    random_suffix,
    record_event,
    safe_encode_string,
    selector_matches,
    set_condition,
)

Key = tuple[str, str, str]  # (kind, namespace, name)
NODE_PREFIX = "aks-nodepool1-12345678-vmss"
# Pods a ReplicaSet creates per reconcile. kube-controller-manager's ReplicaSet controller creates at
# most ``BurstReplicas`` = 500 per sync (pkg/controller/replicaset, in slow-start batches); the
# sandbox's reconcilers run on the API server's event loop, so it takes smaller steps and requeues:
# the API answers between them (a Deployment with thousands of replicas used to block it for minutes).
BURST_REPLICAS = 25


@dataclass(frozen=True, kw_only=True)
class VolumeState:
    """What a volume plugin says about one pod volume: ready, or the kubelet's failure text."""

    ready: bool
    message: str = ""  # the FailedMount event text when not ready
    retry_after: float | None = None  # set: the kubelet records the event and retries (else the plugin does)


VolumeChecker = Callable[[Obj, dict[str, Any]], VolumeState | None]


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index:06d}"


def template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    """``ComputeHash``: FNV-32a, its decimal digits mapped through ``rand.SafeEncodeString``."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode_string(str(fnv32a(data)))


def _template_without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return t


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        pct = int(s[:-1]) * total / 100
        return math.ceil(pct) if round_up else math.floor(pct)
    return int(s)


def pod_is_ready(pod: Obj) -> bool:
    cond = get_condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def container_configs_error(api: KubeApi, pod: Obj, container: dict[str, Any]) -> str | None:
    """The kubelet's env resolution: the first missing Secret/ConfigMap (key) for a container."""
    ns = pod["metadata"]["namespace"]
    for src in container.get("envFrom") or []:
        for ref_field, kind, label in (
            ("secretRef", "Secret", "secret"),
            ("configMapRef", "ConfigMap", "configmap"),
        ):
            ref = src.get(ref_field)
            if ref and not ref.get("optional") and api.get("v1", kind, ns, ref["name"]) is None:
                return f'{label} "{ref["name"]}" not found'
    for env in container.get("env") or []:
        vf = env.get("valueFrom") or {}
        for ref_field, kind, label in (
            ("secretKeyRef", "Secret", "secret"),
            ("configMapKeyRef", "ConfigMap", "configmap"),
        ):
            ref = vf.get(ref_field)
            if not ref:
                continue
            obj = api.get("v1", kind, ns, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                return f'{label} "{ref["name"]}" not found'
            data = dict(obj.get("data") or {})
            if kind == "ConfigMap":
                data.update(obj.get("binaryData") or {})
            if ref["key"] not in data and not ref.get("optional"):
                return f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}"
    return None


class WorkloadController:
    """Reconciles Deployments, ReplicaSets, StatefulSets, Services of type LoadBalancer and Pods."""

    kinds = ("Deployment", "ReplicaSet", "StatefulSet", "Pod", "Secret", "ConfigMap", "Service")

    def __init__(self, api: KubeApi, clock: Clock) -> None:
        self.api = api
        self.clock = clock
        self.volume_checkers: list[VolumeChecker] = []
        self._start_due: dict[str, float] = {}  # pod uid -> when its containers run
        self._mount_events: dict[str, tuple[str, float]] = {}  # pod uid -> last FailedMount (text, time)
        self._scheduled = 0

    # -- event routing ------------------------------------------------------------------------
    def keys_for(self, event_type: str, obj: Obj) -> list[Key]:
        kind = obj.get("kind", "")
        md = obj.get("metadata", {})
        ns, name = md.get("namespace", ""), md.get("name", "")
        keys: list[Key] = []
        if kind == "Pod" and event_type == "DELETED":
            self._start_due.pop(md.get("uid", ""), None)
            self._mount_events.pop(md.get("uid", ""), None)
        if kind in ("Deployment", "ReplicaSet", "StatefulSet", "Pod", "Service"):
            keys.append((kind, ns, name))
            owner = controller_of(obj)
            if owner and owner.get("kind") in ("Deployment", "ReplicaSet", "StatefulSet"):
                keys.append((owner["kind"], ns, owner["name"]))
        if kind in ("Secret", "ConfigMap"):
            # re-evaluate pods of the namespace that wait for config or volumes (the kubelet retries)
            for pod in self.api.list("v1", "Pod", ns):
                if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                    keys.append(("Pod", ns, pod["metadata"]["name"]))
        return keys

    def resync_keys(self) -> list[Key]:
        keys: list[Key] = []
        for api_version, kind in (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("v1", "Pod")):
            for obj in self.api.list(api_version, kind):
                keys.append((kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
        return keys

    def reconcile(self, key: Key) -> float | None:
        kind, ns, name = key
        try:
            if kind == "Deployment":
                return self._deployment(ns, name)
            if kind == "ReplicaSet":
                return self._replicaset(ns, name)
            if kind == "StatefulSet":
                return self._statefulset(ns, name)
            if kind == "Pod":
                return self._pod(ns, name)
            if kind == "Service":
                return self._service(ns, name)
        except (Conflict, NotFound):
            return 0.05  # re-read and retry, as controllers do on a stale write
        return None

    # -- Deployment ---------------------------------------------------------------------------
    def _deployment(self, ns: str, name: str) -> float | None:
        dep = self.api.get("apps/v1", "Deployment", ns, name)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return None
        spec = dep.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        owned = [rs for rs in self.api.list("apps/v1", "ReplicaSet", ns) if is_owned_by(rs, dep)]
        want = _template_without_hash(template)
        new_rs = None
        for rs in owned:
            if _template_without_hash(rs["spec"]["template"]) == want:
                new_rs = rs
        revision = max(
            [
                int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
                for rs in owned
            ]
            or [0]
        )
        now = now_iso(self.clock)
        conditions: list[dict[str, Any]] = copy.deepcopy((dep.get("status") or {}).get("conditions") or [])
        created_new = False
        if new_rs is None:
            phash = template_hash(want, int((dep.get("status") or {}).get("collisionCount", 0)))
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = phash
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = phash
            revision += 1
            rs_obj: Obj = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{phash}",
                    "namespace": ns,
                    "labels": dict(tmpl["metadata"]["labels"]),
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(
                            replicas
                            + _int_or_percent(
                                (spec.get("strategy") or {}).get("rollingUpdate", {}).get("maxSurge", "25%"),
                                replicas,
                                True,
                            )
                        ),
                        "deployment.kubernetes.io/revision": str(revision),
                    },
                    "ownerReferences": [owner_ref(dep)],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": selector,
                    "template": tmpl,
                    "minReadySeconds": spec.get("minReadySeconds", 0),
                },
            }
            new_rs = self.api.create(rs_obj)
            created_new = True
            record_event(
                self.api,
                dep,
                type_="Normal",
                reason="ScalingReplicaSet",
                message=f"Scaled up replica set {new_rs['metadata']['name']} from 0 to {replicas}",
                component="deployment-controller",
                clock=self.clock,
            )
            set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{new_rs["metadata"]["name"]}"',
                now,
                update_time=True,
            )
        elif int(new_rs["spec"].get("replicas", 0)) != replicas:
            old = int(new_rs["spec"].get("replicas", 0))
            new_rs["spec"]["replicas"] = replicas
            new_rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = (
                str(replicas)
            )
            new_rs = self.api.update(new_rs)
            record_event(
                self.api,
                dep,
                type_="Normal",
                reason="ScalingReplicaSet",
                message=f"Scaled {'up' if replicas > old else 'down'} replica set "
                f"{new_rs['metadata']['name']} from {old} to {replicas}",
                component="deployment-controller",
                clock=self.clock,
            )
        new_status = new_rs.get("status") or {}
        new_available = int(new_status.get("availableReplicas", 0))
        # old ReplicaSets go to zero once the new one carries the load
        for rs in owned:
            if rs["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                continue
            if int(rs["spec"].get("replicas", 0)) > 0 and new_available >= replicas:
                old = int(rs["spec"]["replicas"])
                rs["spec"]["replicas"] = 0
                self.api.update(rs)
                record_event(
                    self.api,
                    dep,
                    type_="Normal",
                    reason="ScalingReplicaSet",
                    message=f"Scaled down replica set {rs['metadata']['name']} from {old} to 0",
                    component="deployment-controller",
                    clock=self.clock,
                )
        all_rs = [r for r in self.api.list("apps/v1", "ReplicaSet", ns) if is_owned_by(r, dep)]
        total = sum(int((r.get("status") or {}).get("replicas", 0)) for r in all_rs)
        ready = sum(int((r.get("status") or {}).get("readyReplicas", 0)) for r in all_rs)
        available = sum(int((r.get("status") or {}).get("availableReplicas", 0)) for r in all_rs)
        updated = int(new_status.get("replicas", 0))
        max_unavailable = _int_or_percent(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
            replicas,
            False,
        )
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            max_unavailable = replicas
        if available >= replicas - max_unavailable:
            set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
                update_time=True,
            )
        else:
            set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
                update_time=True,
            )
        rs_name = new_rs["metadata"]["name"]
        complete = updated == replicas and new_available >= replicas and total == replicas
        if complete:
            set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                now,
                update_time=True,
            )
        elif not created_new:
            prog = get_condition({"status": {"conditions": conditions}}, "Progressing")
            started = prog.get("lastUpdateTime") if prog else None
            deadline = int(spec.get("progressDeadlineSeconds", 600))
            from sandbox.k8s.controllers._base import parse_iso

            t0 = parse_iso(started) or self.clock.now()
            if prog and prog.get("reason") == "ProgressDeadlineExceeded":
                pass
            elif self.clock.now() - t0 > deadline and prog and prog.get("reason") != "NewReplicaSetAvailable":
                set_condition(
                    conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    now,
                    update_time=True,
                )
            elif (
                not prog
                or prog.get("reason") not in ("NewReplicaSetCreated", "ReplicaSetUpdated")
                or prog.get("message", "").find(rs_name) < 0
            ):
                set_condition(
                    conditions,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" is progressing.',
                    now,
                    update_time=True,
                )
        # Kubernetes lists Available before Progressing
        conditions.sort(key=lambda c: {"Available": 0, "Progressing": 1}.get(c.get("type", ""), 2))
        status: dict[str, Any] = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": conditions,
        }
        if total - available > 0:
            status["unavailableReplicas"] = total - available
        for k in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if status[k] == 0:
                del status[k]
        if "collisionCount" in (dep.get("status") or {}):
            status["collisionCount"] = dep["status"]["collisionCount"]
        annotations = dep["metadata"].setdefault("annotations", {})
        rev = (new_rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
        if rev and annotations.get("deployment.kubernetes.io/revision") != rev:
            annotations["deployment.kubernetes.io/revision"] = rev
            dep = self.api.update(dep)
        if _status_differs(dep.get("status"), status):
            dep["status"] = status
            self.api.update_status(dep)
        if not complete:
            return max(1.0, float(spec.get("progressDeadlineSeconds", 600)) / 10)
        return None

    # -- ReplicaSet ---------------------------------------------------------------------------
    def _replicaset(self, ns: str, name: str) -> float | None:
        rs = self.api.get("apps/v1", "ReplicaSet", ns, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return None
        spec = rs.get("spec") or {}
        want = int(spec.get("replicas", 1))
        pods = [
            p
            for p in self.api.list("v1", "Pod", ns)
            if is_owned_by(p, rs) and not p["metadata"].get("deletionTimestamp")
        ]
        missing = want - len(pods)
        for _ in range(min(missing, BURST_REPLICAS)):
            pods.append(self._create_pod(rs, f"{name}-{random_suffix()}", spec["template"]))
            record_event(
                self.api,
                rs,
                type_="Normal",
                reason="SuccessfulCreate",
                message=f"Created pod: {pods[-1]['metadata']['name']}",
                component="replicaset-controller",
                clock=self.clock,
            )
        if len(pods) > want:
            # delete not-ready pods first, then the youngest (controller.ActivePods ordering)
            pods.sort(
                key=lambda p: (pod_is_ready(p), p["metadata"].get("creationTimestamp", "")), reverse=False
            )
            for pod in pods[: len(pods) - want]:
                self.api.delete("v1", "Pod", ns, pod["metadata"]["name"])
                record_event(
                    self.api,
                    rs,
                    type_="Normal",
                    reason="SuccessfulDelete",
                    message=f"Deleted pod: {pod['metadata']['name']}",
                    component="replicaset-controller",
                    clock=self.clock,
                )
            pods = pods[len(pods) - want :]
        ready = [p for p in pods if pod_is_ready(p)]
        labelled = [p for p in pods if selector_matches(spec.get("selector"), labels_of(p))]
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(labelled),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if status[k] == 0:
                del status[k]
        if _status_differs(rs.get("status"), status):
            rs["status"] = status
            self.api.update_status(rs)
        if missing > BURST_REPLICAS:
            return 0.05  # more to create: requeue, so the API server answers in between
        return None

    def _create_pod(
        self,
        owner: Obj,
        name: str,
        template: dict[str, Any],
        extra_labels: dict[str, str] | None = None,
        extra_spec: dict[str, Any] | None = None,
    ) -> Obj:
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.update(extra_labels or {})
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": owner["metadata"]["namespace"],
                "labels": labels,
                "ownerReferences": [owner_ref(owner)],
            },
            "spec": {**copy.deepcopy(template.get("spec") or {}), **(extra_spec or {})},
        }
        if owner["kind"] == "ReplicaSet":
            pod["metadata"]["generateName"] = owner["metadata"]["name"] + "-"
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        return self.api.create(pod)

    # -- StatefulSet --------------------------------------------------------------------------
    def _statefulset(self, ns: str, name: str) -> float | None:
        sts = self.api.get("apps/v1", "StatefulSet", ns, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        spec = sts.get("spec") or {}
        want = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        revision = f"{name}-{template_hash(template)}"
        pods = {
            p["metadata"]["name"]: p
            for p in self.api.list("v1", "Pod", ns)
            if is_owned_by(p, sts) and not p["metadata"].get("deletionTimestamp")
        }
        parallel = spec.get("podManagementPolicy") == "Parallel"
        for i in range(want):
            pname = f"{name}-{i}"
            pod = pods.get(pname)
            if pod is not None and labels_of(pod).get("controller-revision-hash") != revision:
                # RollingUpdate, highest ordinal first, one at a time, only when all are ready
                if all(pod_is_ready(p) for p in pods.values()) and i == max(
                    j
                    for j in range(want)
                    if labels_of(pods.get(f"{name}-{j}", {"metadata": {}})).get("controller-revision-hash")
                    != revision
                ):
                    self.api.delete("v1", "Pod", ns, pname)
                    pods.pop(pname)
                break
            if pod is None:
                new = self._create_pod(
                    sts,
                    pname,
                    template,
                    {
                        "controller-revision-hash": revision,
                        "statefulset.kubernetes.io/pod-name": pname,
                        "apps.kubernetes.io/pod-index": str(i),
                    },
                    # the StatefulSet controller names the pod's DNS entry: <pod>.<serviceName>
                    {
                        "hostname": pname,
                        **({"subdomain": spec["serviceName"]} if spec.get("serviceName") else {}),
                    },
                )
                pods[pname] = new
                record_event(
                    self.api,
                    sts,
                    type_="Normal",
                    reason="SuccessfulCreate",
                    message=f"create Pod {pname} in StatefulSet {name} successful",
                    component="statefulset-controller",
                    clock=self.clock,
                )
                if not parallel:
                    break
            elif not parallel and not pod_is_ready(pod):
                break
        for pname in list(pods):
            idx = pname.rsplit("-", 1)[-1]
            if idx.isdigit() and int(idx) >= want:
                self.api.delete("v1", "Pod", ns, pname)
                pods.pop(pname)
        ready = [p for p in pods.values() if pod_is_ready(p)]
        current = [p for p in pods.values() if labels_of(p).get("controller-revision-hash") == revision]
        status: dict[str, Any] = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": len(ready),
            "currentReplicas": len(current),
            "updatedReplicas": len(current),
            "availableReplicas": len(ready),
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        if _status_differs(sts.get("status"), status):
            sts["status"] = status
            self.api.update_status(sts)
        return None

    # -- Service (cloud-controller-manager, LoadBalancer) -------------------------------------
    def _service(self, ns: str, name: str) -> float | None:
        """AKS's cloud provider gives a LoadBalancer Service a public IP (cloud-provider-azure);
        the address is a stable fake from the documentation range 20.0.0.0/8 used by Azure."""
        svc = self.api.get("v1", "Service", ns, name)
        if svc is None or (svc.get("spec") or {}).get("type") != "LoadBalancer":
            return None
        if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            return None
        h = fnv32a(f"{ns}/{name}/{svc['metadata'].get('uid')}".encode())
        ip = f"20.{(h >> 16) & 0xFF}.{(h >> 8) & 0xFF}.{max(1, h & 0xFF)}"
        record_event(
            self.api,
            svc,
            type_="Normal",
            reason="EnsuringLoadBalancer",
            message="Ensuring load balancer",
            component="service-controller",
            clock=self.clock,
        )
        svc.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        self.api.update_status(svc)
        record_event(
            self.api,
            svc,
            type_="Normal",
            reason="EnsuredLoadBalancer",
            message="Ensured load balancer",
            component="service-controller",
            clock=self.clock,
        )
        return None

    # -- Pod (scheduler + kubelet) ------------------------------------------------------------
    def _pod(self, ns: str, name: str) -> float | None:
        pod = self.api.get("v1", "Pod", ns, name)
        if pod is None:
            return None
        md = pod["metadata"]
        uid = md.get("uid", "")
        if md.get("deletionTimestamp"):
            self._start_due.pop(uid, None)
            self._mount_events.pop(uid, None)
            return None
        status = copy.deepcopy(pod.get("status") or {})
        if status.get("phase") in ("Succeeded", "Failed"):
            return None
        now = now_iso(self.clock)
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
        if not node:
            node = self._pick_node()
            pod["spec"]["nodeName"] = node
            pod = self.api.update(pod)
            record_event(
                self.api,
                pod,
                type_="Normal",
                reason="Scheduled",
                message=f"Successfully assigned {ns}/{name} to {node}",
                component="default-scheduler",
                clock=self.clock,
            )
        set_condition(conditions, "PodScheduled", "True", "", "", now)
        status.setdefault("startTime", now)
        status.setdefault("hostIP", "10.224.0.4")
        status.setdefault("hostIPs", [{"ip": "10.224.0.4"}])
        status.setdefault("qosClass", "BestEffort")
        containers = spec.get("containers") or []

        def waiting(reason: str, message: str | None) -> list[dict[str, Any]]:
            out = []
            for c in containers:
                w: dict[str, Any] = {"reason": reason}
                if message:
                    w["message"] = message
                out.append(
                    {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"waiting": w},
                        "lastState": {},
                    }
                )
            return out

        # 1. volumes
        pending_volume = None
        for vol in spec.get("volumes") or []:
            vstate = self._volume_state(pod, vol)
            if vstate is not None and not vstate.ready:
                pending_volume = vstate
                break
        retry: float | None = None
        if pending_volume is not None:
            status["phase"] = "Pending"
            set_condition(conditions, "PodReadyToStartContainers", "False", "", "", now)
            set_condition(conditions, "Initialized", "True", "", "", now)
            set_condition(
                conditions,
                "Ready",
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(c['name'] for c in containers)}]",
                now,
            )
            set_condition(
                conditions,
                "ContainersReady",
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(c['name'] for c in containers)}]",
                now,
            )
            status["containerStatuses"] = waiting("ContainerCreating", None)
            self._write_pod_status(pod, status)
            if pending_volume.retry_after is None:
                return None  # the volume plugin records its events and requeues the pod itself
            last = self._mount_events.get(uid)
            now_s = self.clock.now()
            if pending_volume.message and (
                last is None
                or last[0] != pending_volume.message
                or now_s - last[1] >= pending_volume.retry_after
            ):
                self._mount_events[uid] = (pending_volume.message, now_s)
                record_event(
                    self.api,
                    pod,
                    type_="Warning",
                    reason="FailedMount",
                    message=pending_volume.message,
                    component="kubelet",
                    clock=self.clock,
                    host=node,
                )
            return pending_volume.retry_after
        set_condition(conditions, "PodReadyToStartContainers", "True", "", "", now)
        set_condition(conditions, "Initialized", "True", "", "", now)
        status.setdefault("podIP", _pod_ip(uid))
        status.setdefault("podIPs", [{"ip": status["podIP"]}])
        # 2. container configuration (env from Secrets/ConfigMaps)
        config_error = None
        for c in containers:
            config_error = container_configs_error(self.api, pod, c)
            if config_error:
                break
        unready = f"containers with unready status: [{' '.join(c['name'] for c in containers)}]"
        if config_error:
            status["phase"] = "Pending"
            set_condition(conditions, "Ready", "False", "ContainersNotReady", unready, now)
            set_condition(conditions, "ContainersReady", "False", "ContainersNotReady", unready, now)
            previous = [
                cs.get("state", {}).get("waiting", {}).get("message")
                for cs in status.get("containerStatuses") or []
            ]
            status["containerStatuses"] = waiting("CreateContainerConfigError", config_error)
            if config_error not in previous:
                record_event(
                    self.api,
                    pod,
                    type_="Warning",
                    reason="Failed",
                    message=f"Error: {config_error}",
                    component="kubelet",
                    clock=self.clock,
                    host=node,
                )
            self._write_pod_status(pod, status)
            return 10.0  # the kubelet re-syncs the pod; Secret events requeue it sooner
        # 3. image pull + start (modelled time)
        due = self._start_due.get(uid)
        if due is None:
            pull = duration(self.clock, "pod.image_pull")
            due = self.clock.now() + pull + duration(self.clock, "pod.start")
            self._start_due[uid] = due
            for c in containers if pull > 0 else []:
                record_event(
                    self.api,
                    pod,
                    type_="Normal",
                    reason="Pulling",
                    message=f'Pulling image "{c.get("image", "")}"',
                    component="kubelet",
                    clock=self.clock,
                    host=node,
                )
        if self.clock.now() < due and not any(
            "running" in (cs.get("state") or {}) for cs in status.get("containerStatuses") or []
        ):
            status["phase"] = "Pending"
            set_condition(conditions, "Ready", "False", "ContainersNotReady", unready, now)
            set_condition(conditions, "ContainersReady", "False", "ContainersNotReady", unready, now)
            status["containerStatuses"] = waiting("ContainerCreating", None)
            self._write_pod_status(pod, status)
            return max(0.01, due - self.clock.now())
        was_running = status.get("phase") == "Running"
        status["phase"] = "Running"
        set_condition(conditions, "Ready", "True", "", "", now)
        set_condition(conditions, "ContainersReady", "True", "", "", now)
        old = {cs["name"]: cs for cs in status.get("containerStatuses") or []}
        statuses = []
        for c in containers:
            started_at = (
                ((old.get(c["name"]) or {}).get("state") or {}).get("running", {}).get("startedAt", now)
            )
            statuses.append(
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": f"{c.get('image', '').split(':')[0]}@sha256:{_digest(c.get('image', ''))}",
                    "containerID": f"containerd://{_digest(uid + c['name'])}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started_at}},
                    "lastState": {},
                }
            )
        status["containerStatuses"] = statuses
        if not was_running:
            for c in containers:
                for reason, msg in (
                    (
                        "Pulled",
                        f'Successfully pulled image "{c.get("image", "")}"'
                        if duration(self.clock, "pod.image_pull") > 0
                        else f'Container image "{c.get("image", "")}" already present on machine',
                    ),
                    ("Created", f"Created container: {c['name']}"),
                    ("Started", f"Started container {c['name']}"),
                ):
                    record_event(
                        self.api,
                        pod,
                        type_="Normal",
                        reason=reason,
                        message=msg,
                        component="kubelet",
                        clock=self.clock,
                        host=node,
                    )
        self._write_pod_status(pod, status)
        return retry

    def _pick_node(self) -> str:
        """Round-robin over the cluster's Ready nodes (the scheduler's spreading, simplified)."""
        nodes = sorted(n["metadata"]["name"] for n in self.api.list("v1", "Node"))
        self._scheduled += 1
        if not nodes:
            return node_name(0)
        return nodes[(self._scheduled - 1) % len(nodes)]

    def _volume_state(self, pod: Obj, vol: dict[str, Any]) -> VolumeState | None:
        ns = pod["metadata"]["namespace"]
        name = vol.get("name", "")
        for kind, field, label in (("Secret", "secret", "secret"), ("ConfigMap", "configMap", "configmap")):
            src = vol.get(field)
            if src is None:
                continue
            ref = src.get("secretName") if field == "secret" else src.get("name")
            if ref and not src.get("optional") and self.api.get("v1", kind, ns, ref) is None:
                return VolumeState(
                    ready=False,
                    message=f'MountVolume.SetUp failed for volume "{name}" : {label} "{ref}" not found',
                    retry_after=10.0,
                )
            return VolumeState(ready=True)
        for checker in self.volume_checkers:
            result = checker(pod, vol)
            if result is not None:
                return result
        return None

    def _write_pod_status(self, pod: Obj, status: dict[str, Any]) -> None:
        order = {
            "PodReadyToStartContainers": 0,
            "Initialized": 1,
            "Ready": 2,
            "ContainersReady": 3,
            "PodScheduled": 4,
        }
        status["conditions"].sort(key=lambda c: order.get(c.get("type", ""), 9))
        if _status_differs(pod.get("status"), status):
            pod["status"] = status
            self.api.update_status(pod)


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _pod_ip(uid: str) -> str:
    h = fnv32a(uid.encode())
    return f"10.244.{(h >> 8) & 0xFF}.{max(2, h & 0xFF)}"


def _status_differs(old: Any, new: Any) -> bool:
    """Compare statuses ignoring timestamps that would churn (conditions keep theirs)."""
    return json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True)
