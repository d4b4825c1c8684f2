"""Entra ID stand-in: OIDC discovery, JWKS and the v2 token endpoint of the sandbox tenant.

Routes (sandbox/README.md): ``GET /{tenant}/v2.0/.well-known/openid-configuration``,
``GET /{tenant}/discovery/v2.0/keys``, ``POST /{tenant}/oauth2/v2.0/token``.

Grants:

- ``client_credentials`` with ``client_secret`` for the pipeline's service principal
  (``ctx.identity``). Unknown client: ``AADSTS700016``; wrong secret: ``AADSTS7000215``; a scope
  without ``/.default``: ``AADSTS1002012`` (Entra "error codes" reference page,
  learn.microsoft.com/entra/identity-platform/reference-error-codes).
- ``client_credentials`` with ``client_assertion`` (workload identity federation): the client id
  must be a user-assigned managed identity (ARM state); one of its federated identity credentials
  must match the assertion's ``iss``, ``sub`` and ``aud`` exactly (PITFALLS P7), be older than the
  propagation window (``propagation.federated_credential``, PITFALLS P6), and the assertion's
  signature must verify against the issuer's JWKS, fetched over HTTPS via the issuer's
  ``/.well-known/openid-configuration`` (Entra doc "workload identity federation"). No match:
  ``AADSTS70021`` with Azure's message. Signature failure ``AADSTS700027``, expired
  ``AADSTS700024``, issuer discovery failure ``AADSTS50166`` (error-codes reference page).

Tokens are RS256 JWTs signed with a key kept in ``STATE_DIR/entra/signing-key.pem`` (so tokens
survive a restart) with ``tid``, ``oid``, ``sub``, ``appid``, ``azp``, ``aud``, ``iss``, ``iat``,
``nbf``, ``exp``, ``idtyp``. ``ctx.services["entra"]`` is the :class:`Entra` object; ARM and
Key Vault call :meth:`Entra.verify` with their audience.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.context import SandboxContext
from sandbox.errors import entra_error

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599


class TokenError(Exception):
    """A bearer token that the caller must not be let in with (``code`` is the service's word)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who a verified token belongs to."""

    object_id: str
    app_id: str
    tenant_id: str
    issuer: str
    claims: dict[str, Any]


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _normalize_audience(aud: str) -> str:
    return aud.rstrip("/").lower()


class Entra:
    """The tenant's signing key, token issuing and verification."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        key_path = ctx.state_dir / "entra" / "signing-key.pem"
        if key_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            self._key = loaded
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.parent.mkdir(parents=True, exist_ok=True)
            key_path.write_bytes(
                self._key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            key_path.chmod(0o600)
        pub = self._key.public_key().public_numbers()
        self.kid = hashlib.sha256(_b64url_uint(pub.n).encode()).hexdigest()[:27]
        self._jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url_uint(pub.n),
            "e": _b64url_uint(pub.e),
            "issuer": self.issuer,
        }

    @property
    def tenant_id(self) -> str:
        return self.ctx.identity.tenant_id

    @property
    def authority(self) -> str:
        """The authority URL clients use (``{authority_host}/{tenant}``)."""
        return f"{self.ctx.base_url}/{self.tenant_id}"

    @property
    def issuer(self) -> str:
        return f"{self.authority}/v2.0"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._jwk]}

    def issue(self, *, object_id: str, app_id: str, audience: str, acr: str) -> str:
        now = int(self.ctx.clock.now())
        claims = {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "aio": uuid.uuid4().hex,
            "appid": app_id,
            "appidacr": acr,
            "azp": app_id,
            "azpacr": acr,
            "idp": self.issuer,
            "idtyp": "app",
            "oid": object_id,
            "sub": object_id,
            "tid": self.tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "2.0",
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def verify(self, token: str, audience: str) -> Caller:
        """Verify a bearer token from this tenant for ``audience``; raises :class:`TokenError`."""
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "iat", "aud", "oid", "tid"]},
                issuer=self.issuer,
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError(
                "ExpiredAuthenticationToken", "The access token expiry UTC time is in the past."
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError("InvalidAuthenticationToken", "The access token is invalid.") from exc
        if _normalize_audience(str(claims["aud"])) != _normalize_audience(audience):
            raise TokenError(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{claims['aud']}'. "
                f"It should exactly match with one of the allowed audiences '{audience}'.",
            )
        return Caller(
            object_id=str(claims["oid"]),
            app_id=str(claims.get("appid") or claims.get("azp") or ""),
            tenant_id=str(claims["tid"]),
            issuer=str(claims["iss"]),
            claims=claims,
        )

    # -- the token endpoint ------------------------------------------------------------------
    async def token(self, form: dict[str, str]) -> Response:
        grant = form.get("grant_type")
        if grant != "client_credentials":
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id", "")
        scope = form.get("scope", "")
        resources = [s for s in scope.split() if s.endswith("/.default")]
        if len(resources) != 1:
            return entra_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                "scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        audience = resources[0][: -len("/.default")]
        if "client_assertion" in form:
            return await self._assertion_grant(form, client_id, audience)
        ident = self.ctx.identity
        if client_id != ident.client_id:
            return self._unknown_client(client_id)
        if form.get("client_secret") != ident.client_secret:
            return entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        return self._token_response(object_id=ident.object_id, app_id=client_id, audience=audience, acr="1")

    def _unknown_client(self, client_id: str) -> Response:
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{self.tenant_id}'. "
            "This can happen if the application has not been installed by the administrator of the tenant "
            "or consented to by any user in the tenant. You may have sent your authentication request to "
            "the wrong tenant.",
        )

    def _token_response(self, *, object_id: str, app_id: str, audience: str, acr: str) -> Response:
        token = self.issue(object_id=object_id, app_id=app_id, audience=audience, acr=acr)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            },
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    async def _assertion_grant(self, form: dict[str, str], client_id: str, audience: str) -> Response:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return entra_error(
                400,
                "invalid_request",
                900021,
                "Requested client assertion type is invalid or not supported: "
                f"{form.get('client_assertion_type')}.",
            )
        assertion = form.get("client_assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            return entra_error(
                400,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed.",
            )
        from sandbox.arm import directory, lro  # here: sandbox.arm imports this module

        lro.settle_all(self.ctx)  # e.g. a finished resource group delete took the identity along

        identity = directory.identity_by_client_id(self.ctx, client_id)
        if identity is None:
            return self._unknown_client(client_id)
        iss, sub = str(unverified.get("iss", "")), str(unverified.get("sub", ""))
        aud_claim = unverified.get("aud", "")
        auds = [aud_claim] if isinstance(aud_claim, str) else [str(a) for a in aud_claim]
        now = self.ctx.clock.now()
        window = self.ctx.clock.duration("propagation.federated_credential")
        matched = False
        for fic in directory.federated_credentials(self.ctx, identity["id"]):
            props = fic["properties"]
            if (
                props["issuer"] == iss
                and props["subject"] == sub
                and any(a in props["audiences"] for a in auds)
            ):
                # A credential younger than the propagation window is not visible yet (PITFALLS P6).
                if now - float(fic["_created"]) >= window:
                    matched = True
        if not matched:
            return entra_error(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. "
                f"Assertion Audience: '{','.join(auds)}'. "
                "https://docs.microsoft.com/azure/active-directory/develop/workload-identity-federation",
            )
        try:
            jwks = await self._fetch_jwks(iss)
        except (httpx.HTTPError, ValueError, KeyError):
            return entra_error(
                400,
                "invalid_request",
                50166,
                f"Request to External OIDC endpoint failed. Issuer: '{iss}'.",
            )
        key = None
        for k in jwks.get("keys", []):
            if header.get("kid") in (None, k.get("kid")):
                try:
                    key = jwt.PyJWK(k).key
                except jwt.PyJWKError:
                    continue
                break
        if key is None:
            return entra_error(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. "
                f"Key was not found (kid '{header.get('kid')}').",
            )
        try:
            jwt.decode(
                assertion,
                key,
                algorithms=["RS256", "ES256", "PS256"],
                options={"verify_aud": False, "verify_iss": False, "require": ["exp"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            return entra_error(
                400,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            )
        except jwt.InvalidTokenError:
            return entra_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        props = identity["properties"]
        return self._token_response(
            object_id=props["principalId"], app_id=props["clientId"], audience=audience, acr="2"
        )

    async def _fetch_jwks(self, issuer: str) -> dict[str, Any]:
        """The issuer's JWKS via its discovery document, over HTTPS trusting the sandbox CA.

        Async: the issuer is usually served by this same server, so a blocking call would deadlock.
        """
        context = ssl.create_default_context(cafile=str(self.ctx.tls.ca_bundle))
        async with httpx.AsyncClient(verify=context, timeout=10.0) as client:
            discovery = await client.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
            discovery.raise_for_status()
            jwks_uri = discovery.json()["jwks_uri"]
            keys = await client.get(jwks_uri)
            keys.raise_for_status()
            data = keys.json()
            if not isinstance(data, dict):
                raise ValueError("JWKS is not an object")
            return data


def _discovery(entra: Entra) -> dict[str, Any]:
    a = entra.authority
    return {
        "token_endpoint": f"{a}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{a}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": entra.issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{entra.ctx.base_url}/oidc/userinfo",
        "authorization_endpoint": f"{a}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{a}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{a}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "oid"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    entra = Entra(ctx)
    ctx.services["entra"] = entra

    def tenant_error(tenant: str) -> Response | None:
        if tenant.lower() == entra.tenant_id.lower():
            return None
        return entra_error(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud.",
        )

    async def openid_configuration(request: Request) -> Response:
        return tenant_error(request.path_params["tenant"]) or JSONResponse(_discovery(entra))

    async def keys(request: Request) -> Response:
        return tenant_error(request.path_params["tenant"]) or JSONResponse(entra.jwks())

    async def token(request: Request) -> Response:
        bad = tenant_error(request.path_params["tenant"])
        if bad is not None:
            return bad
        # application/x-www-form-urlencoded (MSAL); parsed here, python-multipart is not a dependency
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        return await entra.token(form)

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", keys),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ]
