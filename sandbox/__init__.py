"""The sandbox: a local, faithful stand-in for Azure Resource Manager, Entra ID, Key Vault and the
AKS cluster's Kubernetes API, served over real HTTPS.

Start it with ``keyless-gitops sandbox serve --state-dir DIR`` or in-process with
:class:`sandbox.server.Sandbox`. See ``sandbox/README.md`` for the URL layout, the fault-rule and
journal formats.
"""

from sandbox.server import Sandbox

__all__ = ["Sandbox"]
