"""HTTP routes of the sandbox clusters: ``/k8s/{cluster}/...`` (API server) and ``/oidc/...`` (issuer).

Follows the Kubernetes API conventions (kubernetes/community ``api-conventions.md``) as far as the
real ``kubectl`` 1.37 and ``kubernetes`` 37 client use them (CLIENT-FACTS.md):

- ``/version``, ``/healthz``; legacy discovery ``/api``, ``/api/v1``, ``/apis``, ``/apis/{g}``,
  ``/apis/{g}/{v}`` (aggregated discovery is not served; kubectl falls back to legacy).
- ``/openapi/v3`` root and one document per group/version. Each item path advertises its PATCH
  operation with ``x-kubernetes-group-version-kind`` and the ``fieldValidation`` query parameter,
  which is what kubectl's ``queryParamVerifierV3`` looks for before it sends
  ``fieldValidation=Strict`` (k8s.io/cli-runtime ``resource/query_param_verifier_v3.go``). The
  PATCH request bodies deliberately do not list ``application/strategic-merge-patch+json``: kubectl
  then computes client-side-apply patches from its compiled-in types (exact merge keys) instead of
  from our component schemas (k8s.io/kubectl ``cmd/apply/patcher.go``); the server accepts
  strategic merge patches all the same. ``/openapi/v2`` is 404 (kubectl tolerates it).
- CRUD, the four patch types, label/field selectors, watch (``sendInitialEvents`` with the
  ``k8s.io/initial-events-end`` bookmark, KEP-3157), ``Table`` output for ``kubectl get``,
  ``Status`` errors, ``Warning`` headers, ``dryRun=All``.
- ``serviceaccounts/{name}/token`` (TokenRequest, authentication.k8s.io/v1).
- Authentication: ``Authorization: Bearer`` with the cluster's user/admin kubeconfig token or a
  ServiceAccount token it signed; anything else is 401. No RBAC (AKS local accounts are admin).

The OIDC issuer serves ``{issuer}.well-known/openid-configuration`` and ``{issuer}openid/v1/jwks``
(the paths kube-apiserver and AKS's issuer serve; ``ServiceAccountIssuerDiscovery``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from sandbox.context import SandboxContext
from sandbox.k8s import patch as patching
from sandbox.k8s import protobuf, yamlio
from sandbox.k8s.kinds import REVIEW_KEYS, ResourceType
from sandbox.k8s.selectors import FieldSelector, LabelSelector, SelectorError
from sandbox.k8s.service import K8sService
from sandbox.k8s.store import (
    APPLY_PATCH,
    PATCH_TYPES,
    ApiError,
    BadRequest,
    ClusterStore,
    Invalid,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    WatchEvent,
)
from sandbox.k8s.tables import to_table

KUBE_VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.1",
    "gitCommit": "sandbox",
    "gitTreeState": "clean",
    "buildDate": "2026-11-01T00:00:00Z",
    "goVersion": "go1.25.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}
BOOKMARK_SECONDS = 60.0  # kube-apiserver sends periodic bookmarks about once a minute


def _status_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.status(), status_code=err.code, headers=headers)


def _json(body: Any, status: int = 200, warnings: list[str] | None = None) -> JSONResponse:
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings)
    return JSONResponse(body, status_code=status, headers=headers)


# -- discovery -------------------------------------------------------------------------------------
def _api_resources(store: ClusterStore, group: str, version: str) -> list[dict[str, Any]]:
    out = []
    for rt in sorted(store.resource_types(), key=lambda r: r.plural):
        if rt.group != group or rt.version != version:
            continue
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
            "storageVersionHash": base64.b64encode(hashlib.sha256(rt.key.encode()).digest()[:8]).decode(),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        out.append(entry)
        for sub in rt.subresources:
            if sub == "token":
                out.append(
                    {
                        "name": f"{rt.plural}/token",
                        "singularName": "",
                        "namespaced": True,
                        "group": "authentication.k8s.io",
                        "version": "v1",
                        "kind": "TokenRequest",
                        "verbs": ["create"],
                    }
                )
            elif sub == "scale":
                out.append(
                    {
                        "name": f"{rt.plural}/scale",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
            elif sub == "finalize":
                out.append(
                    {
                        "name": f"{rt.plural}/finalize",
                        "singularName": "",
                        "namespaced": False,
                        "kind": rt.kind,
                        "verbs": ["update"],
                    }
                )
            else:
                out.append(
                    {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
    return out


def _groups(store: ClusterStore) -> dict[str, list[str]]:
    """group -> versions (preferred first: the storage version for CRDs, else the first)."""
    groups: dict[str, list[str]] = {}
    for rt in store.resource_types():
        if not rt.group:
            continue
        versions = groups.setdefault(rt.group, [])
        if rt.version not in versions:
            if rt.storage_version and rt.version == rt.storage_version:
                versions.insert(0, rt.version)
            else:
                versions.append(rt.version)
    return groups


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


# -- openapi v3 ------------------------------------------------------------------------------------
def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _openapi_root(store: ClusterStore, prefix: str) -> dict[str, Any]:
    paths = {}
    gvs = {(rt.group, rt.version) for rt in store.resource_types()}
    for g, v in sorted(gvs):
        p = _gv_path(g, v)
        doc_hash = hashlib.sha256(json.dumps(_openapi_doc(store, g, v), sort_keys=True).encode()).hexdigest()
        paths[p] = {"serverRelativeURL": f"{prefix}/openapi/v3/{p}?hash={doc_hash[:32].upper()}"}
    return {"paths": paths}


_QUERY = {"in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _openapi_doc(store: ClusterStore, group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    base = "/" + _gv_path(group, version)
    for rt in store.resource_types():
        if rt.group != group or rt.version != version:
            continue
        gvk = {"group": group, "version": version, "kind": rt.kind}
        schema_name = f"{group or 'core'}.{version}.{rt.kind}"
        schemas[schema_name] = {
            "type": "object",
            "x-kubernetes-group-version-kind": [gvk],
            **(
                {"description": f"{rt.kind} (schema served by the kubernetes client models)"}
                if rt.model
                else {}
            ),
        }
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        item = f"{base}{ns}/{rt.plural}/{{name}}"
        ref = {"$ref": f"#/components/schemas/{schema_name}"}
        params = [{"name": n, **_QUERY} for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
        patch_content = {
            t: {"schema": {"type": "object"}}
            for t in ("application/json-patch+json", "application/merge-patch+json", APPLY_PATCH)
        }
        paths[item] = {
            "get": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "get",
                "responses": {"200": {"content": {"application/json": {"schema": ref}}}},
            },
            "put": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "put",
                "parameters": params[:3],
                "requestBody": {"content": {"*/*": {"schema": ref}}},
                "responses": {"200": {"content": {"application/json": {"schema": ref}}}},
            },
            "patch": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "patch",
                "parameters": params,
                "requestBody": {"content": patch_content},
                "responses": {"200": {"content": {"application/json": {"schema": ref}}}},
            },
            "delete": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "delete",
                "responses": {"200": {"content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        }
        paths[f"{base}{ns}/{rt.plural}"] = {
            "post": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "post",
                "parameters": params[:3],
                "requestBody": {"content": {"*/*": {"schema": ref}}},
                "responses": {"201": {"content": {"application/json": {"schema": ref}}}},
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


# -- request helpers -------------------------------------------------------------------------------
async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype == "application/vnd.kubernetes.protobuf":
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as exc:
            raise UnsupportedMediaType(
                f"{exc}; accepted media types include: application/json, application/yaml"
            ) from exc
    if "protobuf" in ctype or "cbor" in ctype:
        raise UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml"
        )
    try:
        if "yaml" in ctype:
            return yamlio.load(raw)
        return json.loads(raw)
    except RecursionError as exc:  # the API server's decoder has a depth limit too
        raise BadRequest(
            "the object provided is unrecognized (must be of type JSON or YAML): exceeded max depth"
        ) from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise BadRequest(
            f"the object provided is unrecognized (must be of type JSON or YAML): {exc}"
        ) from exc


def _field_validation(request: Request) -> str:
    value = request.query_params.get("fieldValidation") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise BadRequest(f'fieldValidation "{value}" is invalid: valid values are Strict, Warn, Ignore')
    return value


def _wants_table(request: Request) -> bool:
    return "as=Table" in request.headers.get("accept", "")


def _paginate(
    items: list[dict[str, Any]], rv: int, limit: str | None, token: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``limit``/``continue`` chunking (api-conventions "Retrieving large results sets in chunks").

    The token carries the offset into the sorted (namespace, name) list; unlike etcd the later
    pages see the live store, not a snapshot at the first page's resourceVersion.
    """
    offset = 0
    if token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest("continue key is not valid: illegal base64 data or JSON") from exc
    try:
        size = int(limit) if limit else 0
    except ValueError as exc:
        raise BadRequest(f"invalid limit: {limit}") from exc
    if size <= 0:
        return items[offset:], {}
    page = items[offset : offset + size]
    rest = len(items) - offset - len(page)
    if rest <= 0:
        return page, {}
    nxt = base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": offset + size}).encode()).decode()
    return page, {"continue": nxt, "remainingItemCount": rest}


def _list_body(rt: ResourceType, items: list[dict[str, Any]], rv: int) -> dict[str, Any]:
    return {
        "kind": rt.list_kind,
        "apiVersion": rt.api_version,
        "metadata": {"resourceVersion": str(rv)},
        "items": items,
    }


def _success(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {
        "name": obj["metadata"]["name"],
        "kind": rt.plural,
        "uid": obj["metadata"]["uid"],
    }
    if rt.group:
        details["group"] = rt.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


# -- the API server --------------------------------------------------------------------------------
class ApiServer:
    def __init__(self, ctx: SandboxContext, service: K8sService) -> None:
        self.ctx = ctx
        self.service = service

    async def handle(self, request: Request) -> Response:
        key = request.path_params["cluster"]
        rest = request.path_params.get("rest", "").strip("/")
        try:
            if self.service.info(key) is None:
                raise NotFound(f"cluster {key} not found")
            if rest in ("version", "healthz", "livez", "readyz"):
                return self._public(rest)
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if self.service.authenticate(key, token) is None:
                raise Unauthorized("Unauthorized")
            store = self.service.store(key)
            return await self._dispatch(request, store, key, rest)
        except ApiError as err:
            return _status_response(err)
        except SelectorError as err:
            return _status_response(BadRequest(str(err)))

    def _public(self, rest: str) -> Response:
        if rest == "version":
            return JSONResponse(KUBE_VERSION)
        return PlainTextResponse("ok")

    async def _dispatch(self, request: Request, store: ClusterStore, key: str, rest: str) -> Response:
        parts = rest.split("/") if rest else []
        method = request.method
        prefix = f"/k8s/{key}"
        if method == "GET":
            if parts == ["api"]:
                return JSONResponse(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": self.ctx.base_url.split("//", 1)[1]}
                        ],
                    }
                )
            if parts == ["apis"]:
                groups = _groups(store)
                return JSONResponse(
                    {
                        "kind": "APIGroupList",
                        "apiVersion": "v1",
                        "groups": [_api_group(g, vs) for g, vs in sorted(groups.items())],
                    }
                )
            if len(parts) == 2 and parts[0] == "apis":
                versions = _groups(store).get(parts[1])
                if not versions:
                    raise NotFound("the server could not find the requested resource")
                return JSONResponse(
                    {"kind": "APIGroup", "apiVersion": "v1", **_api_group(parts[1], versions)}
                )
            if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis"):
                group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
                resources = _api_resources(store, group, version)
                if not resources:
                    raise NotFound("the server could not find the requested resource")
                return JSONResponse(
                    {
                        "kind": "APIResourceList",
                        "apiVersion": "v1",
                        "groupVersion": f"{group}/{version}" if group else version,
                        "resources": resources,
                    }
                )
            if parts[:2] == ["openapi", "v3"]:
                if len(parts) == 2:
                    return JSONResponse(_openapi_root(store, prefix))
                sub = parts[2:]
                group, version = (
                    ("", sub[1])
                    if sub[0] == "api" and len(sub) == 2
                    else ((sub[1], sub[2]) if sub[0] == "apis" and len(sub) == 3 else ("", ""))
                )
                if not version or not any(
                    r.group == group and r.version == version for r in store.resource_types()
                ):
                    raise NotFound("the server could not find the requested resource")
                return JSONResponse(_openapi_doc(store, group, version))
        return await self._resource(request, store, key, parts)

    def _route(
        self, store: ClusterStore, parts: list[str]
    ) -> tuple[ResourceType, str | None, str | None, str | None]:
        """(resource type, namespace, name, subresource) for a resource path."""
        if parts[:2] == ["api", "v1"]:
            group, version, segs = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, segs = parts[1], parts[2], parts[3:]
        else:
            raise NotFound("the server could not find the requested resource")
        namespace = None
        if (
            len(segs) >= 3
            and segs[0] == "namespaces"
            and not (len(segs) == 3 and segs[2] in ("status", "finalize"))
        ):
            namespace, segs = segs[1], segs[2:]
        if not segs or len(segs) > 3:
            raise NotFound("the server could not find the requested resource")
        rt = store.rtype_for(group, version, segs[0])
        if rt is None:
            raise NotFound("the server could not find the requested resource")
        name = segs[1] if len(segs) > 1 else None
        sub = segs[2] if len(segs) > 2 else None
        if sub is not None and sub not in rt.subresources:
            raise NotFound("the server could not find the requested resource")
        if namespace is not None and not rt.namespaced:
            raise NotFound("the server could not find the requested resource")
        return rt, namespace, name, sub

    async def _resource(self, request: Request, store: ClusterStore, key: str, parts: list[str]) -> Response:
        rt, namespace, name, sub = self._route(store, parts)
        method = request.method
        q = request.query_params
        dry_run = q.get("dryRun") == "All"
        warnings: list[str] = []
        if name is None:
            if method == "GET":
                if q.get("watch") in ("1", "true", "True"):
                    return self._watch(request, store, rt, namespace)
                items, rv = store.list_rt(
                    rt, namespace, q.get("labelSelector", ""), q.get("fieldSelector", "")
                )
                items, page = _paginate(items, rv, q.get("limit"), q.get("continue"))
                if _wants_table(request):
                    table = to_table(rt, items, rv, list_=True)
                    table["metadata"].update(page)
                    return JSONResponse(table)
                body = _list_body(rt, items, rv)
                body["metadata"].update(page)
                return JSONResponse(body)
            if method == "POST" and rt.key in REVIEW_KEYS:
                return self._review(rt, await _body(request), key, request)
            if method == "POST":
                if rt.namespaced and namespace is None:
                    raise MethodNotAllowed("the server does not allow this method on the requested resource")
                body = await _body(request)
                if not isinstance(body, dict):
                    raise BadRequest("the body of the request must be a JSON object")
                self._check_type(rt, body)
                obj = store.create_rt(
                    rt,
                    body,
                    namespace=namespace,
                    field_manager=q.get("fieldManager") or _user_agent(request),
                    field_validation=_field_validation(request),
                    warnings=warnings,
                    dry_run=dry_run,
                )
                return _json(obj, 201, warnings)
            if method == "DELETE":
                items, _ = store.list_rt(
                    rt, namespace, q.get("labelSelector", ""), q.get("fieldSelector", "")
                )
                for item in items:
                    m = item["metadata"]
                    store.delete_rt(rt, m["name"], m.get("namespace"), dry_run=dry_run)
                return JSONResponse(
                    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
                )
            raise MethodNotAllowed("the server does not allow this method on the requested resource")
        if rt.namespaced and namespace is None:
            raise NotFound("the server could not find the requested resource")
        if sub == "token":
            return await self._token_request(request, store, key, namespace or "", name)
        if sub == "scale":
            return await self._scale(request, store, rt, namespace, name)
        if method == "GET":
            obj = store.get_rt(rt, name, namespace)
            if _wants_table(request):
                return JSONResponse(to_table(rt, [obj], store.resource_version, list_=False))
            return JSONResponse(obj)
        if method == "PUT":
            body = await _body(request)
            if not isinstance(body, dict):
                raise BadRequest("the body of the request must be a JSON object")
            self._check_type(rt, body)
            if sub == "finalize":
                sub = None
            obj = store.update_rt(
                rt,
                name,
                namespace,
                body,
                subresource=sub,
                field_manager=q.get("fieldManager") or _user_agent(request),
                field_validation=_field_validation(request),
                warnings=warnings,
                dry_run=dry_run,
            )
            return _json(obj, 200, warnings)
        if method == "PATCH":
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in PATCH_TYPES:
                raise UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(PATCH_TYPES)}"
                )
            body = await _body(request)
            if ctype == APPLY_PATCH and isinstance(body, dict):
                self._check_type(rt, body)
            force = q.get("force") in ("true", "1", "True")
            if force and ctype != APPLY_PATCH:
                raise BadRequest("force may not be specified for non-apply patch")
            obj = store.patch_rt(
                rt,
                name,
                namespace,
                body,
                ctype,
                subresource=sub,
                field_manager=q.get("fieldManager")
                or (None if ctype == APPLY_PATCH else _user_agent(request)),
                force=force,
                field_validation=_field_validation(request),
                warnings=warnings,
                dry_run=dry_run,
            )
            return _json(obj, 200, warnings)
        if method == "DELETE":
            opts = await _body(request)
            if not isinstance(opts, dict):
                opts = {}
            policy = q.get("propagationPolicy") or opts.get("propagationPolicy")
            if opts.get("orphanDependents") is True:
                policy = "Orphan"
            obj = store.delete_rt(
                rt,
                name,
                namespace,
                propagation_policy=policy,
                preconditions=opts.get("preconditions"),
                dry_run=dry_run,
            )
            if store.find_rt(rt, name, namespace) is not None and not dry_run:
                return JSONResponse(store.get_rt(rt, name, namespace), status_code=200)
            return JSONResponse(_success(rt, obj))
        raise MethodNotAllowed("the server does not allow this method on the requested resource")

    def _review(self, rt: ResourceType, body: Any, key: str, request: Request) -> Response:
        """``kubectl auth can-i`` / ``auth whoami``: every kubeconfig user is admin (AKS local accounts)."""
        body = dict(body) if isinstance(body, dict) else {}
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind
        body.setdefault("metadata", {})["creationTimestamp"] = None
        auth = request.headers.get("authorization", "")
        user = self.service.authenticate(key, auth[7:].strip()) or ""
        if rt.kind == "SelfSubjectAccessReview":
            body["status"] = {
                "allowed": True,
                "reason": "AKS local account: cluster-admin (sandbox, no RBAC)",
            }
        else:
            groups = (
                ["system:masters", "system:authenticated"]
                if user.startswith("cluster")
                else ["system:serviceaccounts", "system:authenticated"]
            )
            body["status"] = {"userInfo": {"username": user, "groups": groups}}
        return JSONResponse(body, status_code=201)

    def _check_type(self, rt: ResourceType, body: dict[str, Any]) -> None:
        av, kind = body.get("apiVersion"), body.get("kind")
        if (av and av != rt.api_version) or (kind and kind != rt.kind):
            raise BadRequest(
                f"the API version in the data ({av}) does not match the expected API version "
                f"({rt.api_version})"
                if av and av != rt.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    async def _token_request(
        self, request: Request, store: ClusterStore, key: str, namespace: str, name: str
    ) -> Response:
        """TokenRequest (authentication.k8s.io/v1): a signed, audience-bound ServiceAccount token."""
        if request.method != "POST":
            raise MethodNotAllowed("the server does not allow this method on the requested resource")
        body = await _body(request)
        spec = body.get("spec") if isinstance(body, dict) else None
        spec = spec or {}
        # what the decoder refuses (400): TokenRequestSpec is {audiences []string, expirationSeconds *int64}
        exp_raw, aud_raw = spec.get("expirationSeconds"), spec.get("audiences")
        if (
            not isinstance(spec, dict)
            or (exp_raw is not None and (isinstance(exp_raw, bool) or not isinstance(exp_raw, int)))
            or (
                aud_raw is not None
                and not (isinstance(aud_raw, list) and all(isinstance(a, str) for a in aud_raw))
            )
        ):
            raise BadRequest(
                'TokenRequest in version "v1" cannot be handled as a TokenRequest: json: cannot unmarshal '
                "the request into Go struct field TokenRequest.spec of type v1.TokenRequestSpec"
            )
        sa_rt = store.rtype("v1", "ServiceAccount")
        store.get_rt(sa_rt, name, namespace)
        exp_s = int(exp_raw or 3600)
        # apiserver ValidateTokenRequest: at least 10 minutes, at most 2^32 seconds
        too = "less than 10 minutes" if exp_s < 600 else "larger than 2^32 seconds" if exp_s > 2**32 else ""
        if too:
            raise Invalid(
                f'TokenRequest.authentication.k8s.io "{name}" is invalid: spec.expirationSeconds: '
                f"Invalid value: {exp_s}: may not specify a duration {too}",
                details={
                    "name": name,
                    "group": "authentication.k8s.io",
                    "kind": "TokenRequest",
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec.expirationSeconds",
                            "message": f"may not specify a duration {too}",
                        }
                    ],
                },
            )
        audiences = aud_raw or [self.service.issuer_url(key)]
        pod = None
        bound = spec.get("boundObjectRef") or {}
        if bound.get("kind") == "Pod":
            pod = store.get("v1", "Pod", bound.get("name", ""), namespace)
        token, exp = self.service.mint_token(key, namespace, name, audiences, exp_s, pod=pod)
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "creationTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "spec": {
                "audiences": audiences,
                "expirationSeconds": exp_s,
                "boundObjectRef": spec.get("boundObjectRef"),
            },
            "status": {
                "token": token,
                "expirationTimestamp": dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }
        return JSONResponse(out, status_code=201)

    async def _scale(
        self, request: Request, store: ClusterStore, rt: ResourceType, namespace: str | None, name: str
    ) -> Response:
        """The scale subresource (autoscaling/v1 Scale) of deployments, replicasets, statefulsets."""
        obj = store.get_rt(rt, name, namespace)
        if request.method in ("PUT", "PATCH"):
            body = await _body(request)
            scale = self._scale_of(rt, obj)
            if request.method == "PUT":
                scale = body
            elif isinstance(body, list):
                scale = patching.json_patch(scale, body)
            else:  # merge and strategic merge patches are the same on a Scale (no lists)
                scale = patching.merge_patch(scale, body)
            obj["spec"]["replicas"] = int((scale.get("spec") or {}).get("replicas", 0))
            obj = store.update_rt(
                rt, name, namespace, obj, field_manager=request.query_params.get("fieldManager")
            )
        return JSONResponse(self._scale_of(rt, obj))

    def _scale_of(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        sel = (obj.get("spec") or {}).get("selector") or {}
        sel_text = ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items())
        m = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: m[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in m
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": sel_text},
        }

    # -- watch ----------------------------------------------------------------------------------
    def _watch(
        self, request: Request, store: ClusterStore, rt: ResourceType, namespace: str | None
    ) -> Response:
        q = request.query_params
        labels = LabelSelector.parse(q.get("labelSelector", ""))
        fields = FieldSelector.parse(q.get("fieldSelector", ""), rt)
        send_initial = q.get("sendInitialEvents") in ("true", "1")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        rv_param = q.get("resourceVersion", "")
        try:  # an int64 query parameter: anything else fails the request's decoding (400)
            timeout = float(int(q.get("timeoutSeconds") or 0)) or 1800.0
        except ValueError:
            raise BadRequest(f"invalid value for timeoutSeconds: {q.get('timeoutSeconds')!r}") from None
        table = _wants_table(request)
        if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
            raise Invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to "
                "NotOlderThan"
            )

        def matches(obj: dict[str, Any]) -> bool:
            m = obj["metadata"]
            if namespace and m.get("namespace") != namespace:
                return False
            return labels.matches(m.get("labels") or {}) and fields.matches(obj)

        def line(type_: str, obj: dict[str, Any]) -> bytes:
            if table and type_ != "ERROR" and type_ != "BOOKMARK":
                obj = to_table(rt, [obj], int(obj["metadata"].get("resourceVersion", 0)), list_=False)
            return (json.dumps({"type": type_, "object": obj}) + "\n").encode()

        async def stream() -> AsyncIterator[bytes]:
            with store._lock:
                sub = store.subscribe_queue(match=lambda ev: ev.rtype.key == rt.key)
                start_rv = store.resource_version
                initial: list[dict[str, Any]] = []
                replay: list[WatchEvent] | None = []
                if send_initial or rv_param in ("", "0"):
                    initial, _ = store.list_rt(
                        rt, namespace, q.get("labelSelector", ""), q.get("fieldSelector", "")
                    )
                else:
                    try:
                        replay = store.history_since(int(rv_param))
                    except ValueError:
                        replay = None
            try:
                if replay is None:
                    err = {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f"too old resource version: {rv_param} ({start_rv})",
                        "reason": "Expired",
                        "code": 410,
                    }
                    yield line("ERROR", err)
                    return
                for obj in initial:
                    yield line("ADDED", _versioned(rt, obj))
                for ev in replay:
                    type_ = _filtered_type(ev, matches)
                    if type_:
                        yield line(type_, _versioned(rt, ev.object))
                if send_initial and bookmarks:
                    yield line("BOOKMARK", _bookmark(rt, start_rv, initial_end=True))
                deadline = time.monotonic() + timeout
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    try:
                        assert sub.queue is not None
                        ev = await asyncio.wait_for(sub.queue.get(), timeout=min(remaining, BOOKMARK_SECONDS))
                    except TimeoutError:
                        if bookmarks and time.monotonic() < deadline:
                            yield line("BOOKMARK", _bookmark(rt, store.resource_version))
                        continue
                    if ev.resource_version <= start_rv:
                        continue
                    type_ = _filtered_type(ev, matches)
                    if type_:
                        yield line(type_, _versioned(rt, ev.object))
            finally:
                sub.close()

        return StreamingResponse(
            stream(),
            media_type="application/json",
            headers={"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"},
        )


def _filtered_type(ev: WatchEvent, matches: Callable[[dict[str, Any]], bool]) -> str | None:
    """The event type a filtered watch reports: an object entering the selection is ADDED, one
    leaving it DELETED (the apiserver's watch cache does the same), others pass or are dropped."""
    now = matches(ev.object)
    if ev.type != "MODIFIED" or ev.old is None:
        return ev.type if now else None
    before = matches(ev.old)
    if now and not before:
        return "ADDED"
    if before and not now:
        return "DELETED"
    return ev.type if now else None


def _versioned(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("apiVersion") != rt.api_version:
        obj = dict(obj)
        obj["apiVersion"] = rt.api_version
    return obj


def _bookmark(rt: ResourceType, rv: int, *, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


def _user_agent(request: Request) -> str | None:
    """The default field manager: the user agent's first token (apiserver ``managerNameFromUserAgent``)."""
    ua = request.headers.get("user-agent", "")
    return ua.split("/", 1)[0][:128] or None


# -- OIDC issuer -----------------------------------------------------------------------------------
class Issuer:
    def __init__(self, service: K8sService) -> None:
        self.service = service

    def _key(self, request: Request) -> str:
        key = self.service.by_issuer(request.path_params["tenant"], request.path_params["issuer"])
        info = self.service.info(key) if key else None
        if key is None or not info or not info.get("oidc_issuer", True):
            raise NotFound("not found")
        return key

    async def discovery(self, request: Request) -> Response:
        try:
            key = self._key(request)
        except NotFound:
            return PlainTextResponse("404 page not found\n", status_code=404)
        issuer = self.service.issuer_url(key)
        return JSONResponse(
            {
                "issuer": issuer,
                "jwks_uri": f"{issuer}openid/v1/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        try:
            key = self._key(request)
        except NotFound:
            return PlainTextResponse("404 page not found\n", status_code=404)
        return JSONResponse(self.service.jwks(key))


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    service = K8sService(ctx)
    ctx.services["clusters"] = service
    ctx.services["k8s"] = service
    server = ApiServer(ctx, service)
    issuer = Issuer(service)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [
        Route("/oidc/{tenant}/{issuer}/.well-known/openid-configuration", issuer.discovery),
        Route("/oidc/{tenant}/{issuer}/openid/v1/jwks", issuer.jwks),
        Route("/k8s/{cluster}", server.handle, methods=methods),
        Route("/k8s/{cluster}/{rest:path}", server.handle, methods=methods),
    ]
