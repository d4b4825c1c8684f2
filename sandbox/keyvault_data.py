"""Key Vault data plane (secrets) at ``/vaults/{name}/...`` — the vault's ``vaultUri``.

Shapes: azure-specs ``keyvault/data-plane/SetSecret-example.json``, ``GetSecret-example.json``,
``GetSecrets-example.json``, ``DeleteSecret-example.json``. Operations: set, get (latest or a
version), list, list versions, delete (soft: ``deletedsecrets``), get/list deleted, recover, purge.

Authentication (CLIENT-FACTS: ``SecretClient`` challenge flow): a request without a bearer token
gets 401 with ``WWW-Authenticate: Bearer authorization="{authority}/{tenant}",
resource="https://vault.azure.net"``; the token must be from this tenant for
``https://vault.azure.net``.

Authorization (Key Vault "RBAC guide" and "troubleshooting access" pages; PITFALLS P8):
- vault with ``enableRbacAuthorization`` (the default): the caller needs a role assignment at the
  vault (or above, or on the secret) whose data actions include the operation's data action
  (Secrets Officer: ``secrets/*``; Secrets User: ``getSecret`` + ``readMetadata``), older than the
  ``propagation.rbac`` window; otherwise 403 ``Forbidden`` with inner code ``ForbiddenByRbac``
  and Azure's message. Owner on the subscription has no data-plane rights.
- vault in access-policy mode: the caller's object id needs the secret permission in
  ``accessPolicies``; otherwise 403 with inner code ``AccessDenied``.
- a vault that does not exist or is still ``RegisteringDns`` has no DNS name yet: the connection
  is reset, which a client sees as a connection error (PITFALLS P9).

Secret ids are ``https://127.0.0.1:PORT/secrets/{name}/{version}`` (host-rooted: azure-keyvault-secrets
parses ids as exactly ``/{collection}/{name}[/{version}]``), while requests go to ``vaultUri``.

Secret values are stored in ``state/keyvault.json`` (the vault's own storage) and never logged,
journaled or put in error messages.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.arm import authorization, lro
from sandbox.arm.keyvault import secrets_state, vault_by_name
from sandbox.context import SandboxContext
from sandbox.entra import TokenError

VAULT_AUDIENCE = "https://vault.azure.net"
API_VERSIONS = ("2026-04-01", "2025-07-01")
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_DAY = 86400
_ACTIONS = {
    "set": "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    "get": "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "list": "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    "delete": "Microsoft.KeyVault/vaults/secrets/delete",
    "recover": "Microsoft.KeyVault/vaults/secrets/recover/action",
    "purge": "Microsoft.KeyVault/vaults/secrets/purge/action",
}


class KvError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner

    def response(self) -> Response:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            err["innererror"] = {"code": self.inner}
        return JSONResponse({"error": err}, status_code=self.status)


def _not_found(name: str) -> KvError:
    return KvError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted "
        "this secret "
        "you may be able to recover it using the correct recovery command. For help resolving this issue, "
        "please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _deleted_not_found(name: str) -> KvError:
    return KvError(404, "SecretNotFound", f"Deleted Secret not found: {name}")


class _Vault:
    def __init__(self, ctx: SandboxContext, rec: dict[str, Any], caller: Any, base: str) -> None:
        self.ctx, self.rec, self.caller = ctx, rec, caller
        self.name = rec["name"]
        self.key = rec["name"].lower()
        self.base = base  # the root of secret ids, ends with "/"

    @property
    def recovery_level(self) -> str:
        if self.rec["properties"].get("enablePurgeProtection"):
            return "Recoverable"
        return "Recoverable+Purgeable"

    def authorize(self, op: str, secret: str | None) -> None:
        ctx, props = self.ctx, self.rec["properties"]
        who = f"appid={self.caller.app_id};oid={self.caller.object_id};iss={self.caller.issuer}"
        vault_desc = f"{self.name};location={self.rec['location']}"
        if props.get("enableRbacAuthorization", True):
            scope = self.rec["id"] + (f"/secrets/{secret}" if secret else "")
            if authorization.allowed(ctx, self.caller.object_id, scope, _ACTIONS[op], data=True):
                return
            raise KvError(
                403,
                "Forbidden",
                "Caller is not authorized to perform action on resource.\r\n"
                "If role assignments, deny assignments or role definitions were changed recently, please "
                "observe propagation time.\r\n"
                f"Caller: {who}\r\n"
                f"Action: '{_ACTIONS[op]}'\r\n"
                f"Resource: '{scope.lower()}'\r\n"
                "Assignment: (not found)\r\n"
                "DenyAssignmentId: null\r\n"
                "DecisionReason: null \r\n"
                f"Vault: {vault_desc}\r\n",
                "ForbiddenByRbac",
            )
        for policy in props.get("accessPolicies") or []:
            if str(policy.get("objectId", "")).lower() == self.caller.object_id.lower():
                granted = [p.lower() for p in (policy.get("permissions") or {}).get("secrets") or []]
                if op in granted or "all" in granted:
                    return
        raise KvError(
            403,
            "Forbidden",
            f"The user, group or application '{who}' does not have secrets {op} permission on key vault "
            f"'{vault_desc}'. For help resolving this issue, please see "
            "https://go.microsoft.com/fwlink/?linkid=2125287",
            "AccessDenied",
        )

    def doc(self, data: dict[str, Any]) -> dict[str, Any]:
        vault = data.get(self.key)
        if vault is None:
            vault = data[self.key] = {"secrets": {}, "deleted": {}}
        return vault

    def bundle(
        self, secret: dict[str, Any], version: dict[str, Any], *, value: bool = True
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{self.base}secrets/{secret['name']}/{version['version']}",
            "attributes": self.attributes(version),
        }
        if value:
            out["value"] = version["value"]
        if version.get("contentType") is not None:
            out["contentType"] = version["contentType"]
        if version.get("tags"):
            out["tags"] = version["tags"]
        return out

    def attributes(self, version: dict[str, Any]) -> dict[str, Any]:
        attrs = {
            "enabled": version.get("enabled", True),
            "created": version["created"],
            "updated": version["updated"],
            "recoveryLevel": self.recovery_level,
            "recoverableDays": self.rec["properties"].get("softDeleteRetentionInDays", 90),
        }
        for k in ("nbf", "exp"):
            if version.get(k) is not None:
                attrs[k] = version[k]
        return attrs

    def item(self, secret: dict[str, Any], version: dict[str, Any], *, with_version: bool) -> dict[str, Any]:
        sid = f"{self.base}secrets/{secret['name']}" + (f"/{version['version']}" if with_version else "")
        out: dict[str, Any] = {"id": sid, "attributes": self.attributes(version)}
        if version.get("contentType") is not None:
            out["contentType"] = version["contentType"]
        if version.get("tags"):
            out["tags"] = version["tags"]
        return out

    def deleted_bundle(self, entry: dict[str, Any], *, value: bool = False) -> dict[str, Any]:
        secret = entry["secret"]
        out = self.bundle(secret, secret["versions"][-1], value=value)
        out.update(
            {
                "recoveryId": f"{self.base}deletedsecrets/{secret['name']}",
                "deletedDate": entry["deletedDate"],
                "scheduledPurgeDate": entry["scheduledPurgeDate"],
            }
        )
        return out


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise KvError(400, "BadParameter", f"The request URI contains an invalid name: {name}")


def _body(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as exc:
        raise KvError(400, "BadParameter", "The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise KvError(400, "BadParameter", "The request body must be a JSON object.")
    return data


MAX_SECRET_VALUE = 25 * 1024  # Key Vault service limits: a secret value is at most 25 KB


def _check_set_body(body: dict[str, Any]) -> None:
    """SecretSetParameters' types (azure-specs ``SetSecret-example.json``, the SDK model) and the
    25 KB value limit (learn.microsoft.com key-vault/general/service-limits). The exact wording Key
    Vault uses for these is not known here; the code is its ``BadParameter``."""
    attrs = body.get("attributes")
    tags = body.get("tags")
    problem = ""
    if len(body["value"].encode()) > MAX_SECRET_VALUE:
        problem = "The secret value exceeds the maximum size of 25 KB."
    elif body.get("contentType") is not None and not isinstance(body["contentType"], str):
        problem = "Property 'contentType' must be a string."
    elif tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
    ):
        problem = "Property 'tags' must map names to string values."
    elif attrs is not None and not isinstance(attrs, dict):
        problem = "Property 'attributes' must be an object."
    elif attrs is not None and attrs.get("enabled") is not None and not isinstance(attrs["enabled"], bool):
        problem = "Property 'attributes.enabled' must be a boolean."
    elif attrs is not None and any(
        attrs.get(k) is not None and (isinstance(attrs[k], bool) or not isinstance(attrs[k], int))
        for k in ("nbf", "exp")
    ):
        problem = "Properties 'attributes.nbf' and 'attributes.exp' must be integers (Unix time)."
    if problem:
        raise KvError(400, "BadParameter", problem)


async def _handle(ctx: SandboxContext, request: Request) -> Response:
    lro.settle_all(ctx)
    vault_name = request.path_params["vault"]
    rest = [s for s in request.path_params.get("path", "").split("/") if s]
    method = request.method
    rec = vault_by_name(ctx, vault_name)
    if rec is None or rec["properties"].get("provisioningState") != "Succeeded":
        _reset(request)
        return Response(status_code=503)
    authority = f"{ctx.base_url}/{ctx.identity.tenant_id}"
    challenge = {"WWW-Authenticate": f'Bearer authorization="{authority}", resource="{VAULT_AUDIENCE}"'}
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return JSONResponse(
            {
                "error": {
                    "code": "Unauthorized",
                    "message": "AKV10000: Request is missing a Bearer or PoP token.",
                }
            },
            status_code=401,
            headers=challenge,
        )
    try:
        caller = ctx.services["entra"].verify(auth[7:].strip(), VAULT_AUDIENCE)
    except TokenError as exc:
        return JSONResponse(
            {"error": {"code": "Unauthorized", "message": f"AKV10022: {exc.message}"}},
            status_code=401,
            headers=challenge,
        )
    version = request.query_params.get("api-version")
    if version not in API_VERSIONS:
        return KvError(
            400,
            "BadParameter",
            f"The specified version ({version}) is not recognized. Consider using the latest supported "
            f"version ({API_VERSIONS[0]}).",
        ).response()
    # Ids are host-rooted (``https://127.0.0.1:PORT/secrets/{name}/{version}``): the SDK's id parser
    # accepts exactly ``/{collection}/{name}[/{version}]``, so the ``/vaults/{name}`` prefix of
    # ``vaultUri`` cannot appear in them. Clients address secrets by vault URL + name, as usual.
    base = f"{ctx.base_url}/"
    vault = _Vault(ctx, rec, caller, base)
    try:
        return _dispatch(vault, method, rest, await request.body(), request.query_params)
    except KvError as exc:
        return exc.response()


def _reset(request: Request) -> None:
    """Abort the connection: the vault has no DNS name (yet), so a real client could not connect."""
    from sandbox.server import _TRANSPORTS  # the server keeps transports for exactly this (fault resets)

    client = request.scope.get("client")
    transport = _TRANSPORTS.get(tuple(client)) if client else None
    if transport is not None:
        transport.abort()


def _dispatch(vault: _Vault, method: str, rest: list[str], raw: bytes, query: Any) -> Response:
    ctx = vault.ctx
    st = secrets_state(ctx)
    now = int(ctx.clock.now())
    if rest[:1] == ["secrets"]:
        if len(rest) == 1 and method == "GET":
            vault.authorize("list", None)
            doc = vault.doc(dict(st.read()))
            items = [
                vault.item(s, s["versions"][-1], with_version=False)
                for s in sorted(doc["secrets"].values(), key=lambda s: s["name"])
            ]
            return JSONResponse({"value": items, "nextLink": None})  # one page: vaults here are small
        name = rest[1] if len(rest) > 1 else ""
        _check_name(name)
        if len(rest) == 2 and method == "PUT":
            vault.authorize("set", name)
            body = _body(raw)
            unknown = set(body) - {"value", "contentType", "attributes", "tags"}
            if unknown or not isinstance(body.get("value"), str):
                raise KvError(
                    400,
                    "BadParameter",
                    "Property 'value' is required and must be a string."
                    if not unknown
                    else f"Unknown property in request body: {sorted(unknown)[0]}",
                )
            _check_set_body(body)
            attrs = body.get("attributes") or {}
            with st.change() as data:
                doc = vault.doc(data)
                if name.lower() in doc["deleted"]:
                    raise KvError(
                        409,
                        "Conflict",
                        f"Secret {name} is currently in a deleted but recoverable state, and its name "
                        "cannot be "
                        "reused; in this state, the secret can only be recovered or purged.",
                    )
                secret = doc["secrets"].setdefault(name.lower(), {"name": name, "versions": []})
                ver = {
                    "version": uuid.uuid4().hex,
                    "value": body["value"],
                    "contentType": body.get("contentType"),
                    "tags": body.get("tags") or None,
                    "enabled": attrs.get("enabled", True),
                    "nbf": attrs.get("nbf"),
                    "exp": attrs.get("exp"),
                    "created": now,
                    "updated": now,
                }
                secret["versions"].append(ver)
                return JSONResponse(vault.bundle(secret, ver))
        if len(rest) in (2, 3) and method == "GET" and (len(rest) == 2 or rest[2] != "versions"):
            vault.authorize("get", name)
            secret = vault.doc(dict(st.read()))["secrets"].get(name.lower())
            if secret is None:
                raise _not_found(name)
            found: dict[str, Any] | None = secret["versions"][-1]
            if len(rest) == 3 and rest[2]:
                found = next((v for v in secret["versions"] if v["version"] == rest[2].lower()), None)
                if found is None:
                    raise _not_found(f"{name}/{rest[2]}")
            assert found is not None
            if not found.get("enabled", True):
                raise KvError(
                    403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"
                )
            return JSONResponse(vault.bundle(secret, found))
        if len(rest) == 3 and rest[2] == "versions" and method == "GET":
            vault.authorize("list", name)
            secret = vault.doc(dict(st.read()))["secrets"].get(name.lower())
            if secret is None:
                raise _not_found(name)
            return JSONResponse(
                {
                    "value": [vault.item(secret, v, with_version=True) for v in secret["versions"]],
                    "nextLink": None,
                }
            )
        if len(rest) == 2 and method == "DELETE":
            vault.authorize("delete", name)
            with st.change() as data:
                doc = vault.doc(data)
                secret = doc["secrets"].pop(name.lower(), None)
                if secret is None:
                    raise _not_found(name)
                days = vault.rec["properties"].get("softDeleteRetentionInDays", 90)
                entry = {"secret": secret, "deletedDate": now, "scheduledPurgeDate": now + days * _DAY}
                doc["deleted"][name.lower()] = entry
                return JSONResponse(vault.deleted_bundle(entry))
    if rest[:1] == ["deletedsecrets"]:
        if len(rest) == 1 and method == "GET":
            vault.authorize("list", None)
            doc = vault.doc(dict(st.read()))
            return JSONResponse(
                {"value": [vault.deleted_bundle(e) for e in doc["deleted"].values()], "nextLink": None}
            )
        name = rest[1] if len(rest) > 1 else ""
        _check_name(name)
        if len(rest) == 2 and method == "GET":
            vault.authorize("list", name)
            entry = vault.doc(dict(st.read()))["deleted"].get(name.lower())
            if entry is None:
                raise _deleted_not_found(name)
            return JSONResponse(vault.deleted_bundle(entry))
        if len(rest) == 2 and method == "DELETE":
            vault.authorize("purge", name)
            if vault.recovery_level == "Recoverable":
                raise KvError(
                    403,
                    "Forbidden",
                    f'Operation "purge" is not allowed because purge protection is enabled for this vault. '
                    f"Key Vault service will automatically purge it after the retention period has passed. "
                    f"Vault: {vault.name};location={vault.rec['location']}",
                )
            with st.change() as data:
                if vault.doc(data)["deleted"].pop(name.lower(), None) is None:
                    raise _deleted_not_found(name)
            return Response(status_code=204)
        if len(rest) == 3 and rest[2] == "recover" and method == "POST":
            vault.authorize("recover", name)
            with st.change() as data:
                doc = vault.doc(data)
                entry = doc["deleted"].pop(name.lower(), None)
                if entry is None:
                    raise _deleted_not_found(name)
                doc["secrets"][name.lower()] = entry["secret"]
                return JSONResponse(
                    vault.bundle(entry["secret"], entry["secret"]["versions"][-1], value=False)
                )
    raise KvError(404, "NotFound", f"No operation matches {method} {'/'.join(rest)}.")


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    async def handle(request: Request) -> Response:
        return await _handle(ctx, request)

    methods = ["GET", "PUT", "POST", "DELETE", "PATCH"]
    return [
        Route("/vaults/{vault}/{path:path}", handle, methods=methods),
        Route("/vaults/{vault}", handle, methods=methods),
    ]
