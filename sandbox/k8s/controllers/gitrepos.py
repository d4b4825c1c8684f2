"""Git repositories the sandbox's Argo CD clones from: public URLs served from local bare mirrors.

Argo CD's repo-server clones ``spec.source.repoURL`` with git. The sandbox has no internet, so a
public URL maps to a bare repository under ``STATE_DIR/git/<host>/<path>.git``. The mirror of
``https://github.com/Azure-Samples/aks-store-demo.git`` is built from the vendored fixture
``sandbox/fixtures/aks-store-demo`` (upstream commit 7ce10c5, see its README) as one commit with
fixed author, committer and dates, so its SHA is the same on every machine. Tests may push more
commits to a mirror with plain git.

Everything here is real ``git`` (subprocess, no shell); errors carry git's own message.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
AKS_STORE_DEMO_URL = "https://github.com/Azure-Samples/aks-store-demo.git"
_FIXED = {
    "GIT_AUTHOR_NAME": "aks-store-demo fixture",
    "GIT_AUTHOR_EMAIL": "fixture@sandbox.invalid",
    "GIT_COMMITTER_NAME": "aks-store-demo fixture",
    "GIT_COMMITTER_EMAIL": "fixture@sandbox.invalid",
    "GIT_AUTHOR_DATE": "2026-07-13T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-07-13T00:00:00+00:00",
}
_lock = threading.Lock()


class GitError(Exception):
    """git failed; the message is git's (no credentials are ever in these URLs)."""


def _git(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input_: bytes | None = None
) -> bytes:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        **(env or {}),
    }
    proc = subprocess.run(
        [
            "git",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.autocrlf=false",
            *args,
        ],
        cwd=cwd,
        env=full_env,
        input=input_,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(proc.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")
    return proc.stdout


def mirror_path(state_dir: Path, url: str) -> Path | None:
    """Where the mirror of ``url`` lives (None for URLs the sandbox cannot map)."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("https", "http") or not parsed.netloc:
        return None
    path = parsed.path.strip("/").lower()  # GitHub owner/repo names are case-insensitive
    if not path:
        return None
    if not path.endswith(".git"):
        path += ".git"
    return state_dir / "git" / parsed.netloc.lower() / path


def ensure_builtin_mirrors(state_dir: Path) -> None:
    """Build the aks-store-demo mirror once (deterministic single commit)."""
    target = mirror_path(state_dir, AKS_STORE_DEMO_URL)
    assert target is not None
    with _lock:
        if (target / "HEAD").exists():
            return
        src = FIXTURES / "aks-store-demo"
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "work"
            shutil.copytree(src, work)
            for p in work.rglob("*"):
                p.chmod(0o755 if p.is_dir() else 0o644)
            _git("init", "-q", cwd=work)
            _git("add", "-A", cwd=work)
            _git(
                "commit",
                "-q",
                "-m",
                "aks-store-demo kustomize/ at upstream 7ce10c5 (sandbox fixture)",
                cwd=work,
                env=_FIXED,
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp_target = target.with_suffix(".tmp")
            shutil.rmtree(tmp_target, ignore_errors=True)
            _git("clone", "-q", "--bare", str(work), str(tmp_target))
            os.replace(tmp_target, target)


def resolve(repo: Path, revision: str) -> str:
    """``targetRevision`` (HEAD, branch, tag or SHA) to a commit SHA, as ``git rev-parse`` does."""
    rev = (revision or "HEAD").strip()
    try:
        return (
            _git("--git-dir", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
            .decode()
            .strip()
        )
    except GitError:
        raise GitError(f"Unable to resolve '{rev}' to a commit SHA") from None


def checkout(repo: Path, sha: str, dest: Path) -> Path:
    """Materialise commit ``sha`` into ``dest`` (``git archive``; cached per SHA)."""
    out = dest / sha
    if out.exists():
        return out
    data = _git("--git-dir", str(repo), "archive", "--format=tar", sha)
    tmp = dest / f".{sha}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    try:
        os.replace(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another thread won the race
    return out
