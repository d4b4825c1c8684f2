"""The validation checks: what the keyless chain must look like, compared with what was observed.

Pure (no I/O): :func:`evaluate` turns an :class:`~tasks.observation.Observation` into one
:class:`~tasks.drift.CheckRow` per check, each naming the broken link. The chain, in order
(DESIGN.md "Validation (drift)", PITFALLS P7/P11-P15):

    resource group -> cluster (OIDC issuer, workload identity, CSI addon) -> issuer URL
    vault (RBAC) -> seeded secrets                                     identity (client id)
    identity --federated credential (issuer = cluster issuer, subject = real SA, audience)--> SA
    identity --Key Vault Secrets User at vault scope, nothing broader--> vault
    SA annotation = client id; pods labelled; SecretProviderClass (clientID, vault, tenant)
    pod mounts the secret at the vault's current version; synced Secret hash = vault hash
    extension (pinned, workload identity settings) -> Application Synced + Healthy at revision

Exactness is deliberate: issuers and subjects are compared byte for byte (P7: a trailing slash
or a case difference breaks the token exchange forever).
"""

from __future__ import annotations

from keyless_gitops.bodies import extension_settings
from keyless_gitops.spec import (
    KEY_VAULT_SECRETS_USER,
    WORKLOAD_IDENTITY_AUDIENCE,
    EnvironmentSpec,
    Names,
)
from tasks.drift import CheckRow, Layer, Severity, Status, Step, compare
from tasks.observation import Observation, RoleAssignmentObs

CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
USE_LABEL = "azure.workload.identity/use"

# Well-known built-in role definition GUIDs, to name roles in rows (learn.microsoft.com
# "Azure built-in roles"). Unknown GUIDs are shown as they are.
ROLE_NAMES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "f25e0fa2-a7c8-4377-a976-54943a77a395": "Key Vault Contributor",
}


def role_name(role_definition_id: str) -> str:
    guid = role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return ROLE_NAMES.get(guid, guid)


class _Rows:
    """Collects rows; a missing prerequisite turns the dependent checks into ``fail`` rows."""

    def __init__(self) -> None:
        self.rows: list[CheckRow] = []

    def add(self, row: CheckRow) -> None:
        self.rows.append(row)

    def eq(
        self,
        check: str,
        layer: Layer,
        resource: str,
        expected: object,
        actual: object,
        severity: Severity,
        hint: str,
        step: Step | None,
    ) -> bool:
        row = compare(
            check=check,
            layer=layer,
            resource=resource,
            expected=expected,
            actual=actual,
            severity=severity,
            hint=hint,
            step=step,
        )
        self.rows.append(row)
        return row.ok

    def fail(
        self,
        check: str,
        layer: Layer,
        resource: str,
        expected: str,
        reason: str,
        severity: Severity,
        hint: str,
    ) -> None:
        self.rows.append(
            CheckRow(
                check=check,
                layer=layer,
                resource=resource,
                expected=expected,
                actual=f"not checked: {reason}",
                status=Status.FAIL,
                severity=severity,
                hint=hint,
            )
        )


def evaluate(spec: EnvironmentSpec, names: Names, tenant_id: str, obs: Observation) -> list[CheckRow]:
    """One row per check, in chain order. ``spec`` must be bound to its subscription."""
    out = _Rows()
    _azure(spec, names, obs, out)
    client_id = _entra(spec, names, obs, out)
    _roles(names, obs, out)
    _extension(spec, names, obs, client_id, out)
    _kubernetes(spec, names, tenant_id, obs, client_id, out)
    _argocd(spec, obs, out)
    return out.rows


# -- Azure ----------------------------------------------------------------------------------------


def _azure(spec: EnvironmentSpec, names: Names, obs: Observation, out: _Rows) -> None:
    A, C = Layer.AZURE, Severity.CRITICAL
    rg_res = f"resource group {names.resource_group}"
    if "resource_group" in obs.errors:
        out.fail(
            "azure.resource-group", A, rg_res, "exists", obs.errors["resource_group"], C, "ARM read failed"
        )
    else:
        rg = obs.resource_group
        out.eq(
            "azure.resource-group",
            A,
            rg_res,
            f"Succeeded in {spec.location}",
            None if rg is None else f"{rg.provisioning_state} in {rg.location}",
            C,
            "the resource group is missing or not in the spec's location: everything else depends on it",
            Step.RESOURCE_GROUP,
        )

    cl_res = f"AKS cluster {names.cluster}"
    if "cluster" in obs.errors:
        out.fail("azure.cluster", A, cl_res, "Succeeded/Running", obs.errors["cluster"], C, "ARM read failed")
    else:
        cl = obs.cluster
        state = None if cl is None else f"{cl.provisioning_state}/{cl.power_state or 'Running'}"
        if out.eq(
            "azure.cluster",
            A,
            cl_res,
            "Succeeded/Running",
            state,
            C,
            "the cluster is missing, failed or stopped: no pod can run or get a token",
            Step.CLUSTER,
        ):
            assert cl is not None
            out.eq(
                "azure.cluster.oidc-issuer",
                A,
                cl_res,
                "OIDC issuer enabled, issuer URL published",
                "OIDC issuer enabled, issuer URL published"
                if cl.oidc_issuer_enabled and cl.issuer_url
                else f"enabled={cl.oidc_issuer_enabled}, issuer={cl.issuer_url or '(none)'}",
                C,
                "cluster -> Entra link: without the OIDC issuer Entra cannot verify ServiceAccount tokens",
                Step.CLUSTER,
            )
            out.eq(
                "azure.cluster.workload-identity",
                A,
                cl_res,
                True,
                cl.workload_identity_enabled,
                C,
                "pod -> token link: the workload identity webhook is off, pods get no federated token",
                Step.CLUSTER,
            )
            out.eq(
                "azure.cluster.csi-addon",
                A,
                cl_res,
                True,
                cl.csi_addon_enabled,
                C,
                "vault -> pod link: the Key Vault CSI addon (azureKeyvaultSecretsProvider) is off",
                Step.CLUSTER,
            )

    kv_res = f"key vault {names.key_vault}"
    if "vault" in obs.errors:
        out.fail("azure.key-vault", A, kv_res, "Succeeded", obs.errors["vault"], C, "ARM read failed")
        return
    kv = obs.vault
    if not out.eq(
        "azure.key-vault",
        A,
        kv_res,
        "Succeeded",
        None if kv is None else kv.provisioning_state,
        C,
        "the vault is missing (deleted? it may be soft-deleted and block the name: PITFALLS P10)",
        Step.KEY_VAULT,
    ):
        return
    assert kv is not None
    if not out.eq(
        "azure.key-vault.rbac",
        A,
        kv_res,
        "RBAC authorization",
        "RBAC authorization" if kv.rbac_authorization else "access policies",
        C,
        "identity -> vault link: the vault no longer uses Azure RBAC, so the Secrets User role grants "
        "nothing (and access policies bypass the role model)",
        Step.KEY_VAULT,
    ):
        return  # the data plane answers by access policy now: the secret rows would only echo this link
    for secret in spec.secrets:
        res = f"secret {names.key_vault}/{secret}"
        if "secrets" in obs.errors:
            out.fail(
                f"azure.key-vault.secret/{secret}",
                A,
                res,
                "exists, enabled",
                obs.errors["secrets"],
                C,
                "the vault's data plane refused the pipeline's read (RBAC mode or Secrets Officer role)",
            )
            continue
        s = obs.secrets.get(secret)
        out.eq(
            f"azure.key-vault.secret/{secret}",
            A,
            f"{res} (version {s.version})"
            if s is not None and s.version
            else res,  # names, versions: no values
            "exists, enabled",
            None if s is None else ("exists, enabled" if s.enabled else "exists, disabled"),
            C,
            f"the seeded secret {secret!r} is gone or disabled: the CSI mount of it fails",
            Step.SEED_SECRETS,
        )


# -- Entra: identity and federated credentials ----------------------------------------------------


def _entra(spec: EnvironmentSpec, names: Names, obs: Observation, out: _Rows) -> str | None:
    E, C = Layer.ENTRA, Severity.CRITICAL
    id_res = f"managed identity {names.identity}"
    if "identity" in obs.errors:
        out.fail("entra.identity", E, id_res, "exists", obs.errors["identity"], C, "ARM read failed")
        return None
    ident = obs.identity
    if not out.eq(
        "entra.identity",
        E,
        id_res,
        "exists",
        None if ident is None else "exists",
        C,
        "the identity is missing: nothing can exchange a token for it",
        Step.IDENTITY,
    ):
        return None
    assert ident is not None
    issuer = obs.cluster.issuer_url if obs.cluster else None
    for fic_name, subject in spec.federated_subjects.items():
        res = f"federated credential {names.identity}/{fic_name}"
        if "federated_credentials" in obs.errors:
            out.fail(
                f"entra.fic/{fic_name}",
                E,
                res,
                "exists",
                obs.errors["federated_credentials"],
                C,
                "ARM read failed",
            )
            continue
        fic = obs.federated_credentials.get(fic_name)
        if not out.eq(
            f"entra.fic/{fic_name}",
            E,
            res,
            "exists",
            None if fic is None else "exists",
            C,
            f"SA -> identity link: no federated credential for {subject}; its token exchange fails "
            "with AADSTS70021",
            Step.FEDERATED_CREDENTIALS,
        ):
            continue
        assert fic is not None
        if issuer is None:
            out.fail(
                f"entra.fic.issuer/{fic_name}",
                E,
                res,
                "the cluster's current issuer",
                "the cluster's issuer is unknown",
                C,
                "fix the cluster first",
            )
        else:
            out.eq(
                f"entra.fic.issuer/{fic_name}",
                E,
                res,
                issuer,
                fic.issuer,
                C,
                "cluster -> Entra link: the credential's issuer is not the cluster's current issuer URL "
                "(exact match, trailing slash included: PITFALLS P7)",
                Step.FEDERATED_CREDENTIALS,
            )
        out.eq(
            f"entra.fic.subject/{fic_name}",
            E,
            res,
            subject,
            fic.subject,
            C,
            "SA -> identity link: the subject does not name the ServiceAccount the pods run as "
            "(AADSTS700213, PITFALLS P7)",
            Step.FEDERATED_CREDENTIALS,
        )
        out.eq(
            f"entra.fic.audience/{fic_name}",
            E,
            res,
            [WORKLOAD_IDENTITY_AUDIENCE],
            list(fic.audiences),
            C,
            f"the token exchange requires exactly the audience {WORKLOAD_IDENTITY_AUDIENCE} (PITFALLS P5)",
            Step.FEDERATED_CREDENTIALS,
        )
    extra = sorted(set(obs.federated_credentials) - set(spec.federated_subjects))
    if "federated_credentials" not in obs.errors:
        out.eq(
            "entra.fic.unexpected",
            E,
            f"managed identity {names.identity}",
            [],
            [f"{n} ({obs.federated_credentials[n].subject})" for n in extra],
            Severity.HIGH,
            "someone added federated credentials the spec does not know: other workloads can act as this "
            "identity; review and delete them by hand (not removed automatically)",
            None,
        )
    return ident.client_id


# -- Azure RBAC --------------------------------------------------------------------------------


def _roles(names: Names, obs: Observation, out: _Rows) -> None:
    A = Layer.AZURE
    if obs.identity is None:
        return
    res = f"role assignments of {names.identity}"
    if "role_assignments" in obs.errors:
        out.fail(
            "azure.role.secrets-user",
            A,
            res,
            "Key Vault Secrets User at vault scope",
            obs.errors["role_assignments"],
            Severity.CRITICAL,
            "ARM read failed",
        )
        return
    vault_scope = names.key_vault_id.lower()

    def is_expected(r: RoleAssignmentObs) -> bool:
        return r.scope.lower() == vault_scope and role_name(r.role_definition_id) == role_name(
            KEY_VAULT_SECRETS_USER
        )

    wanted = [r for r in obs.role_assignments if is_expected(r)]
    out.eq(
        "azure.role.secrets-user",
        A,
        f"Key Vault Secrets User on {names.key_vault} for {names.identity}",
        "assigned (ServicePrincipal)",
        None if not wanted else f"assigned ({wanted[0].principal_type or 'unknown type'})",
        Severity.CRITICAL,
        "identity -> vault link: without Key Vault Secrets User at vault scope the CSI driver gets "
        "403 ForbiddenByRbac",
        Step.ROLE_ASSIGNMENT,
    )
    others = [r for r in obs.role_assignments if not is_expected(r)]
    out.eq(
        "azure.role.no-broader",
        A,
        res,
        "only Key Vault Secrets User at vault scope",
        "only Key Vault Secrets User at vault scope"
        if not others
        else "also " + "; ".join(f"{role_name(r.role_definition_id)} at {r.scope}" for r in others),
        Severity.HIGH,
        "least privilege broken: the identity holds a role beyond Secrets User on the vault; every pod "
        "federated to it gets that access. Remove it by hand (az role assignment delete --ids <id>); "
        "remediation does not remove roles it did not grant",
        None,
    )


# -- the Argo CD extension ----------------------------------------------------------------------


def _extension(
    spec: EnvironmentSpec, names: Names, obs: Observation, client_id: str | None, out: _Rows
) -> None:
    A = Layer.AZURE
    res = f"extension {names.cluster}/{spec.extension.name}"
    if "extension" in obs.errors:
        out.fail(
            "azure.extension", A, res, "Succeeded", obs.errors["extension"], Severity.CRITICAL, "read failed"
        )
        return
    ext = obs.extension
    if not out.eq(
        "azure.extension",
        A,
        res,
        "Succeeded",
        None if ext is None else ext.provisioning_state,
        Severity.CRITICAL,
        "the Argo CD extension is missing or failed: nothing syncs the Application",
        Step.EXTENSION,
    ):
        return
    assert ext is not None
    out.eq(
        "azure.extension.version",
        A,
        res,
        f"{spec.extension.version}, train {spec.extension.release_train}, auto-upgrade off",
        f"{ext.version}, train {(ext.release_train or '?').lower()}, "
        f"auto-upgrade {'on' if ext.auto_upgrade_minor_version else 'off'}",
        Severity.HIGH,
        "the extension is not at the pinned version (or may auto-upgrade): config keys change between "
        "versions (PITFALLS P16, P18)",
        Step.EXTENSION,
    )
    if client_id is None:
        return
    desired = extension_settings(spec, client_id)
    for key, value in desired.items():
        out.eq(
            f"azure.extension.setting/{key}",
            A,
            res,
            f"{key}={value}",
            f"{key}={ext.settings[key]}" if key in ext.settings else None,
            Severity.CRITICAL if "workloadIdentity" in key else Severity.MEDIUM,
            f"extension setting {key} changed behind the pipeline's back"
            + (
                ": Argo CD's pods no longer federate to the identity"
                if "workloadIdentity" in key
                else " (the extension reverts hand edits only on its next reconcile)"
            ),
            Step.EXTENSION,
        )


# -- Kubernetes ---------------------------------------------------------------------------------


def _kubernetes(
    spec: EnvironmentSpec, names: Names, tenant_id: str, obs: Observation, client_id: str | None, out: _Rows
) -> None:
    K, C = Layer.KUBERNETES, Severity.CRITICAL
    if "kubernetes" in obs.errors:
        out.fail(
            "kubernetes.api",
            K,
            f"cluster {names.cluster} API",
            "reachable",
            obs.errors["kubernetes"],
            C,
            "the cluster's API could not be read: Kubernetes checks were skipped",
        )
        return
    app = spec.sample_app
    ext_ns = spec.extension.namespace
    accounts = [(ext_ns, sa, Step.EXTENSION) for sa in spec.extension.federated_service_accounts]
    accounts.append((app.namespace, app.service_account, Step.WORKLOAD))
    for ns, sa, step in accounts:
        key = f"{ns}/{sa}"
        res = f"ServiceAccount {key}"
        sa_obs = obs.service_accounts.get(key)
        if not out.eq(
            f"kubernetes.sa/{key}",
            K,
            res,
            "exists",
            None if sa_obs is None else "exists",
            C,
            f"the federated credential's subject names {key}, which does not exist (SA -> identity link)",
            step,
        ):
            continue
        assert sa_obs is not None
        if client_id is None:
            continue
        out.eq(
            f"kubernetes.sa.annotation/{key}",
            K,
            res,
            f"{CLIENT_ID_ANNOTATION}={client_id}",
            f"{CLIENT_ID_ANNOTATION}={sa_obs.annotations[CLIENT_ID_ANNOTATION]}"
            if CLIENT_ID_ANNOTATION in sa_obs.annotations
            else None,
            C,
            "SA -> identity link: the annotation must carry the identity's client id, or the webhook "
            "injects no AZURE_CLIENT_ID (takes effect on restarted pods: PITFALLS P14)",
            step,
        )
        pods = obs.pods.get(key, ())
        labelled = [p for p in pods if p.labels.get(USE_LABEL) == "true"]
        out.eq(
            f"kubernetes.pods.label/{key}",
            K,
            f"pods running as {key}",
            f"all labelled {USE_LABEL}=true (at least one pod)",
            f"all labelled {USE_LABEL}=true (at least one pod)"
            if pods and len(labelled) == len(pods)
            else f"{len(labelled)} of {len(pods)} labelled",
            C,
            "pod -> token link: the webhook mutates only pods labelled azure.workload.identity/use=true "
            "(labelling the ServiceAccount is not enough: PITFALLS P13)",
            Step.SAMPLE_APP if step is Step.WORKLOAD else step,
        )

    spc_key = f"{app.namespace}/{app.secret_provider_class}"
    spc = obs.secret_provider_class
    if out.eq(
        f"kubernetes.spc/{spc_key}",
        K,
        f"SecretProviderClass {spc_key}",
        "exists",
        None if spc is None else "exists",
        C,
        "the SecretProviderClass is missing: the CSI volume cannot mount",
        Step.WORKLOAD,
    ):
        assert spc is not None
        expected_params = {
            "clientID": client_id,
            "keyvaultName": names.key_vault,
            "tenantId": tenant_id,
        }
        actual_params = {k: spc.parameters.get(k) for k in expected_params}
        out.eq(
            f"kubernetes.spc.parameters/{spc_key}",
            K,
            f"SecretProviderClass {spc_key}",
            ", ".join(f"{k}={v}" for k, v in expected_params.items()),
            ", ".join(f"{k}={v if v is not None else '(absent)'}" for k, v in actual_params.items()),
            C,
            "SecretProviderClass -> identity/vault link: clientID must be the identity's client id, "
            "keyvaultName and tenantId the vault's (PITFALLS P11)",
            Step.WORKLOAD,
        )
        out.eq(
            f"kubernetes.spc.objects/{spc_key}",
            K,
            f"SecretProviderClass {spc_key}",
            sorted(spec.secrets),
            sorted(spc.object_names),
            C,
            "the SecretProviderClass does not list exactly the seeded secrets",
            Step.WORKLOAD,
        )
        synced = {
            (so.get("secretName"), item.get("objectName"))
            for so in spc.secret_objects
            for item in (so.get("data") or [])
        }
        want = {(app.synced_secret, s) for s in spec.secrets}
        out.eq(
            f"kubernetes.spc.secret-objects/{spc_key}",
            K,
            f"SecretProviderClass {spc_key}",
            f"secretObjects sync {', '.join(sorted(spec.secrets))} into Secret {app.synced_secret}",
            f"secretObjects sync {', '.join(sorted(s for n, s in synced if n == app.synced_secret))} "
            f"into Secret {app.synced_secret}"
            if want <= synced
            else f"missing {', '.join(sorted(s for _, s in want - synced))}",
            C,
            f"without secretObjects nothing creates Secret {app.synced_secret} and the pod's secretKeyRef "
            "fails with CreateContainerConfigError (PITFALLS P12)",
            Step.WORKLOAD,
        )

    dep = obs.deployment
    dep_res = f"Deployment {app.namespace}/sample-app"
    if not out.eq(
        "kubernetes.sample-app.ready",
        K,
        dep_res,
        "all replicas ready",
        None
        if dep is None
        else (
            "all replicas ready"
            if dep.replicas > 0 and dep.ready_replicas >= dep.replicas
            else f"{dep.ready_replicas}/{dep.replicas} ready"
        ),
        C,
        "the sample app is not Ready: its secret mount or its secretKeyRef fails (see the rows above)",
        Step.SAMPLE_APP,
    ):
        return
    mounted = [m for m in obs.mounts if m.mounted and set(spec.secrets) <= set(m.versions)]
    out.eq(
        "kubernetes.sample-app.mounted",
        K,
        f"SecretProviderClassPodStatus in {app.namespace}",
        "every ready pod mounted all secrets",
        "every ready pod mounted all secrets"
        if obs.mounts and len(mounted) == len(obs.mounts)
        else f"{len(mounted)} of {len(obs.mounts)} pods mounted all secrets",
        C,
        "the CSI driver did not mount the secrets (token exchange, RBAC or vault link broken)",
        Step.SAMPLE_APP,
    )
    _proofs(spec, names, obs, out)
    _live_chain(spec, names, obs, out)


def _proofs(spec: EnvironmentSpec, names: Names, obs: Observation, out: _Rows) -> None:
    K = Layer.KUBERNETES
    if obs.vault is not None and not obs.vault.rbac_authorization:
        return  # cannot read the vault's current version: the RBAC row names the broken link
    for secret in spec.secrets:
        res = f"sample app -> {names.key_vault}/{secret}"
        check = f"kubernetes.e2e/{secret}"
        if "proof" in obs.errors:
            out.fail(
                check,
                K,
                res,
                "mounted = vault current version",
                obs.errors["proof"],
                Severity.CRITICAL,
                "could not read the vault's current version to compare",
            )
            continue
        p = obs.proofs.get(secret)
        if p is None or p.vault_version is None:
            continue  # the secret is missing in the vault: its own row names that link
        stale = [v for v in p.mounted_versions if v != p.vault_version]
        ok_versions = bool(p.mounted_versions) and not stale
        actual = (
            "mounted = vault current version"
            if ok_versions
            else f"mounted {', '.join(p.mounted_versions) or 'nothing'} (vault at {p.vault_version})"
        )
        if ok_versions and p.synced_matches_vault is not True:
            actual = (
                "synced Secret value differs from the vault (sha256)"
                if p.synced_matches_vault is False
                else "synced Secret key missing"
            )
        out.eq(
            check,
            K,
            res,
            "mounted = vault current version; sha256(synced) = sha256(vault)",
            "mounted = vault current version; sha256(synced) = sha256(vault)"
            if actual == "mounted = vault current version"
            else actual,
            Severity.CRITICAL,
            "end-to-end: the running app does not hold the vault's current value (stale mount after a "
            "rotation, or a broken link above); a restart of the sample app re-mounts it",
            Step.SAMPLE_APP,
        )


# Where a live exchange broke -> (layer, hint, the step that re-establishes that link).
_LIVE_CHAIN_BREAKS: tuple[tuple[str, Layer, str, Step | None], ...] = (
    (
        "AADSTS70021",
        Layer.ENTRA,
        "Entra found no federated credential matching the ServiceAccount token's issuer, subject and "
        "audience (see the federated credential rows; a credential created a minute ago may still be "
        "propagating, P6)",
        Step.FEDERATED_CREDENTIALS,
    ),
    (
        "AADSTS700016",
        Layer.ENTRA,
        "the client id the ServiceAccount is annotated with is not a known identity in the tenant",
        Step.WORKLOAD,
    ),
    (
        "Kubernetes",
        Layer.KUBERNETES,
        "the sample app's ServiceAccount cannot take part in workload identity (missing, or no client-id "
        "annotation)",
        Step.WORKLOAD,
    ),
    (
        "Key Vault",
        Layer.AZURE,
        "Entra issued the token but Key Vault refused the read: the identity lacks Key Vault Secrets User on "
        "the vault, or the vault is not in RBAC mode",
        Step.ROLE_ASSIGNMENT,
    ),
)


def _live_chain(spec: EnvironmentSpec, names: Names, obs: Observation, out: _Rows) -> None:
    """The chain walked now (TokenRequest -> Entra exchange -> Key Vault read), not as last mounted."""
    live = obs.live_chain
    if live is None:
        return  # the vault, its secrets or the cluster could not be read: their rows say so
    expected = "token exchange and read succeed; sha256 = vault"
    res = f"{spec.sample_app.namespace}/{spec.sample_app.service_account} -> Entra -> {names.key_vault}"
    if live.error is None:
        differ = sorted(name for name, same in live.matches.items() if not same)
        actual = expected if not differ else f"read {', '.join(differ)} differs from the vault (sha256)"
        out.eq(
            "e2e.live-chain",
            Layer.ENTRA,
            res,
            expected,
            actual,
            Severity.CRITICAL,
            "the value read through the chain is not the vault's current value",
            None,
        )
        return
    layer, hint, step = Layer.ENTRA, f"the keyless chain broke at: {live.error}", None
    for marker, where, why, fix in _LIVE_CHAIN_BREAKS:
        if marker in live.error:
            layer, hint, step = where, f"{live.error}: {why}", fix
            break
    if step is Step.ROLE_ASSIGNMENT and obs.vault is not None and not obs.vault.rbac_authorization:
        step = Step.KEY_VAULT
    out.eq("e2e.live-chain", layer, res, expected, live.error, Severity.CRITICAL, hint, step)


# -- Argo CD --------------------------------------------------------------------------------------


def _argocd(spec: EnvironmentSpec, obs: Observation, out: _Rows) -> None:
    G = Layer.ARGOCD
    name = spec.gitops.application
    res = f"Application {spec.extension.namespace}/{name}"
    if "application" in obs.errors:
        out.fail(
            "argocd.application", G, res, "exists", obs.errors["application"], Severity.HIGH, "read failed"
        )
        return
    app = obs.application
    if not out.eq(
        "argocd.application",
        G,
        res,
        "exists",
        None if app is None else "exists",
        Severity.HIGH,
        "the Argo CD Application is missing: nothing deploys the workload",
        Step.APPLICATION,
    ):
        return
    assert app is not None
    out_of_sync = ", ".join(app.resources_out_of_sync)
    out.eq(
        "argocd.application.sync",
        G,
        res,
        "Synced",
        app.sync_status,
        Severity.MEDIUM,
        "the cluster differs from Git"
        + (f" ({out_of_sync} edited by hand?)" if out_of_sync else "")
        + "; a sync restores Git's state",
        Step.APPLICATION,
    )
    out.eq(
        "argocd.application.health",
        G,
        res,
        "Healthy",
        app.health_status,
        Severity.HIGH,
        "the deployed workload is not healthy (Argo CD's health of the app's resources)",
        Step.APPLICATION,
    )
    out.eq(
        "argocd.application.revision",
        G,
        res,
        spec.gitops.target_revision,
        app.revision,
        Severity.MEDIUM,
        "the Application is not synced to the pinned revision (targetRevision changed or sync pending)",
        Step.APPLICATION,
    )
