"""The sandbox's local certificate authority and server certificate (real TLS, via ``trustme``).

The CA is created once per state directory and kept there, so clients that saved ``ca.pem``
(kubeconfigs, the connection file) keep working across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    ca_bundle: Path
    cert_chain: Path
    private_key: Path


def ensure_tls(state_dir: Path) -> TlsFiles:
    """Load the CA from ``state_dir/tls`` or create it, and (re)issue the loopback server cert."""
    tls_dir = state_dir / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = tls_dir / "ca.pem", tls_dir / "ca-key.pem"
    if ca_cert.exists() and ca_key.exists():
        ca = trustme.CA.from_pem(ca_cert.read_bytes(), ca_key.read_bytes())
    else:
        ca = trustme.CA(organization_name="keyless-gitops sandbox")
        ca.cert_pem.write_to_path(str(ca_cert))
        ca.private_key_pem.write_to_path(str(ca_key))
        ca_key.chmod(0o600)
    chain, key = tls_dir / "server.pem", tls_dir / "server-key.pem"
    if not (chain.exists() and key.exists()):
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        with chain.open("wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        cert.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
    return TlsFiles(ca_bundle=ca_cert, cert_chain=chain, private_key=key)
