"""Entra ID stand-in: discovery, client-secret and federated (client assertion) grants.

The federated grant is driven by the real ``ClientAssertionCredential`` with an assertion signed
by a test issuer: a second tiny HTTPS server (certificate from the sandbox CA) serving OIDC
discovery + JWKS, as a cluster's issuer does (Entra doc "workload identity federation").
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import trustme
import uvicorn
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential, ClientSecretCredential
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.arm.testing import credential, mgmt_client
from sandbox.server import Sandbox

AUDIENCE = "api://AzureADTokenExchange"


class Issuer:
    """An OIDC issuer on its own HTTPS port, signing ServiceAccount-like tokens."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        tls = sandbox.state_dir / "tls"
        ca = trustme.CA.from_pem((tls / "ca.pem").read_bytes(), (tls / "ca-key.pem").read_bytes())
        cert = ca.issue_cert("127.0.0.1")
        self._dir = sandbox.state_dir / "test-issuer"
        self._dir.mkdir(exist_ok=True)
        cert.private_key_pem.write_to_path(str(self._dir / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(self._dir / "cert.pem"))
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}/issuer/{uuid.uuid4()}/"
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})

        async def discovery(request: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}openid/v1/jwks"})

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse({"keys": [jwk]})

        app = Starlette(
            routes=[
                Route("/issuer/{i}/.well-known/openid-configuration", discovery),
                Route("/issuer/{i}/openid/v1/jwks", jwks),
            ]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            ssl_certfile=str(self._dir / "cert.pem"),
            ssl_keyfile=str(self._dir / "key.pem"),
            log_level="warning",
            timeout_graceful_shutdown=0,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def token(self, subject: str, *, audience: str = AUDIENCE, key: Any = None, exp: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": subject,
            "aud": [audience],
            "iat": now,
            "nbf": now,
            "exp": now + exp,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def issuer(sandbox: Sandbox) -> Iterator[Issuer]:
    iss = Issuer(sandbox)
    iss.thread.start()
    deadline = time.monotonic() + 10
    while not iss.server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield iss
    iss.server.should_exit = True
    iss.thread.join(timeout=5)


@pytest.fixture
def identity(conn: dict[str, Any], unique: str) -> Iterator[tuple[ManagedServiceIdentityClient, str, Any]]:
    rm = mgmt_client(ResourceManagementClient, conn)
    group = f"rg-entra-{unique}"
    rm.resource_groups.create_or_update(group, {"location": "eastus"})
    msi = mgmt_client(ManagedServiceIdentityClient, conn)
    ident = msi.user_assigned_identities.create_or_update(group, f"id-{unique}", {"location": "eastus"})
    yield msi, group, ident
    rm.resource_groups.begin_delete(group).result(timeout=30)


def test_discovery_and_keys(conn: dict[str, Any]) -> None:
    base = f"{conn['authority_host']}/{conn['tenant_id']}"
    doc = httpx.get(f"{base}/v2.0/.well-known/openid-configuration", verify=conn["ca_bundle"]).json()
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    keys = httpx.get(doc["jwks_uri"], verify=conn["ca_bundle"]).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["kid"]
    bad = httpx.get(
        f"{conn['authority_host']}/nope/v2.0/.well-known/openid-configuration", verify=conn["ca_bundle"]
    )
    assert bad.status_code == 400 and bad.json()["error_codes"] == [90002]


def test_client_secret_token_has_azure_claims(conn: dict[str, Any], sandbox: Sandbox) -> None:
    token = credential(conn).get_token("https://management.azure.com/.default").token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tid"] == conn["tenant_id"]
    assert claims["appid"] == claims["azp"] == conn["client_id"]
    assert claims["oid"] == sandbox.ctx.identity.object_id
    assert claims["aud"] == "https://management.azure.com"
    assert claims["exp"] > claims["iat"] >= claims["nbf"] - 1
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    caller = sandbox.ctx.services["entra"].verify(token, "https://management.azure.com/")
    assert caller.object_id == sandbox.ctx.identity.object_id


@pytest.mark.parametrize(
    ("client", "secret", "code"),
    [("right", "wrong", "AADSTS7000215"), ("unknown", "whatever", "AADSTS700016")],
)
def test_bad_client_credentials_get_aadsts_errors(
    conn: dict[str, Any], client: str, secret: str, code: str
) -> None:
    client_id = conn["client_id"] if client == "right" else str(uuid.uuid4())
    cred = ClientSecretCredential(
        conn["tenant_id"],
        client_id,
        secret,
        authority=conn["authority_host"],
        disable_instance_discovery=True,
        connection_verify=conn["ca_bundle"],
    )
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token("https://management.azure.com/.default")
    assert code in str(err.value)
    assert secret not in str(err.value) or secret == "whatever"


def _assertion_credential(conn: dict[str, Any], client_id: str, make: Any) -> ClientAssertionCredential:
    return ClientAssertionCredential(
        conn["tenant_id"],
        client_id,
        make,
        authority=conn["authority_host"],
        disable_instance_discovery=True,
        connection_verify=conn["ca_bundle"],
    )


def test_federated_grant_needs_an_exact_matching_credential(
    fresh_sandbox: Sandbox, conn: dict[str, Any], issuer: Issuer, identity: Any, unique: str
) -> None:
    msi, group, ident = identity
    subject = f"system:serviceaccount:app-{unique}:workload"
    cred = _assertion_credential(conn, ident.client_id, lambda: issuer.token(subject))
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token("https://vault.azure.net/.default")
    assert "AADSTS70021" in str(err.value) and "No matching federated identity record" in str(err.value)

    props = {"issuer": issuer.url, "subject": subject, "audiences": [AUDIENCE]}
    msi.federated_identity_credentials.create_or_update(group, ident.name, "fic-app", {"properties": props})
    token = cred.get_token("https://vault.azure.net/.default").token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["oid"] == ident.principal_id and claims["appid"] == ident.client_id
    assert claims["aud"] == "https://vault.azure.net"

    # issuer without the trailing slash, other subject, other audience: no match (PITFALLS P7)
    for make in (
        lambda: issuer.token(subject.upper()),
        lambda: issuer.token(subject, audience="api://other"),
    ):
        with pytest.raises(ClientAuthenticationError, match="AADSTS70021"):
            _assertion_credential(conn, ident.client_id, make).get_token("https://vault.azure.net/.default")
    # a valid-looking assertion signed with another key
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = _assertion_credential(conn, ident.client_id, lambda: issuer.token(subject, key=other_key))
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        forged.get_token("https://vault.azure.net/.default")


def test_new_federated_credential_propagates_after_a_window(
    fresh_sandbox: Sandbox, conn: dict[str, Any], issuer: Issuer, identity: Any, unique: str
) -> None:
    msi, group, ident = identity
    fresh_sandbox.ctx.clock.overrides = {"propagation.federated_credential": 1.5}
    subject = f"system:serviceaccount:late-{unique}:sa"
    props = {"issuer": issuer.url, "subject": subject, "audiences": [AUDIENCE]}
    msi.federated_identity_credentials.create_or_update(group, ident.name, "fic-late", {"properties": props})
    cred = _assertion_credential(conn, ident.client_id, lambda: issuer.token(subject))
    with pytest.raises(ClientAuthenticationError, match="AADSTS70021"):
        cred.get_token("https://management.azure.com/.default")
    time.sleep(1.6)
    assert cred.get_token("https://management.azure.com/.default").token


def test_workload_identity_token_gets_only_what_its_roles_grant_on_arm(
    conn: dict[str, Any], issuer: Issuer, identity: Any, unique: str
) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.authorization import AuthorizationManagementClient

    msi, group, ident = identity
    subject = f"system:serviceaccount:arm-{unique}:sa"
    props = {"issuer": issuer.url, "subject": subject, "audiences": [AUDIENCE]}
    msi.federated_identity_credentials.create_or_update(group, ident.name, "fic-arm", {"properties": props})
    wi = _assertion_credential(conn, ident.client_id, lambda: issuer.token(subject))
    as_wi = mgmt_client(ResourceManagementClient, conn, cred=wi)
    with pytest.raises(HttpResponseError) as err:
        as_wi.resource_groups.get(group)
    assert err.value.status_code == 403 and err.value.error.code == "AuthorizationFailed"
    sub = conn["subscription_id"]
    mgmt_client(AuthorizationManagementClient, conn).role_assignments.create(
        f"/subscriptions/{sub}/resourceGroups/{group}",
        str(uuid.uuid4()),
        {
            "role_definition_id": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
            "acdd72a7-3385-48ef-bd42-f606fba81ae7",
            "principal_id": ident.principal_id,
            "principal_type": "ServicePrincipal",
        },
    )
    assert as_wi.resource_groups.get(group).name == group  # Reader reads
    with pytest.raises(HttpResponseError) as err:
        as_wi.resource_groups.create_or_update(group, {"location": "eastus"})
    assert err.value.status_code == 403


def test_deleted_identity_cannot_exchange(
    conn: dict[str, Any], issuer: Issuer, identity: Any, unique: str
) -> None:
    msi, group, ident = identity
    subject = f"system:serviceaccount:gone-{unique}:sa"
    props = {"issuer": issuer.url, "subject": subject, "audiences": [AUDIENCE]}
    msi.federated_identity_credentials.create_or_update(group, ident.name, "fic-gone", {"properties": props})
    cred = _assertion_credential(conn, ident.client_id, lambda: issuer.token(subject))
    assert cred.get_token("https://vault.azure.net/.default").token
    msi.user_assigned_identities.delete(group, ident.name)  # takes its federated credentials along
    fresh = _assertion_credential(conn, ident.client_id, lambda: issuer.token(subject))
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        fresh.get_token("https://vault.azure.net/.default")
