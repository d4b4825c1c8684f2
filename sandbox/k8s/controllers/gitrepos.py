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
AKS_STORE_DEMO_UPSTREAM = (
    "7ce10c5110d6a52d3517dfb6d7a7b7b2edf2e5a5"  # the vendored snapshot (fixtures README)
)
UPSTREAM_REFS = "refs/upstream/"
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
    """Build the aks-store-demo mirror once (deterministic single commit standing for upstream 7ce10c5)."""
    target = mirror_path(state_dir, AKS_STORE_DEMO_URL)
    assert target is not None
    with _lock:
        if (target / "HEAD").exists():
            if not (target / UPSTREAM_REFS.rstrip("/") / AKS_STORE_DEMO_UPSTREAM).exists():
                stand_for_upstream(target, "HEAD", AKS_STORE_DEMO_UPSTREAM)
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
            stand_for_upstream(tmp_target, "HEAD", AKS_STORE_DEMO_UPSTREAM)
            os.replace(tmp_target, target)


def stand_for_upstream(repo: Path, revision: str, upstream_sha: str) -> None:
    """Record that the mirror's ``revision`` carries the files of upstream commit ``upstream_sha``.

    A mirror cannot contain the upstream commit object itself (its SHA covers upstream's history),
    so ``refs/upstream/<sha>`` names the stand-in: a pin to the upstream SHA resolves to it, and the
    revision reported (``status.sync.revision``) is the upstream SHA, as Argo CD on AKS reports it.
    """
    _git("--git-dir", str(repo), "update-ref", f"{UPSTREAM_REFS}{upstream_sha}", revision)


def _upstream_aliases(repo: Path) -> dict[str, str]:
    """upstream SHA -> mirror commit."""
    try:
        out = _git("--git-dir", str(repo), "for-each-ref", "--format=%(refname) %(objectname)", UPSTREAM_REFS)
    except GitError:
        return {}
    pairs = (line.split() for line in out.decode().splitlines() if line.strip())
    return {ref.removeprefix(UPSTREAM_REFS): sha for ref, sha in pairs}


def resolve(repo: Path, revision: str) -> str:
    """``targetRevision`` (HEAD, branch, tag or SHA) to a commit SHA, as ``git rev-parse`` does;
    a mirror commit that stands for an upstream commit is reported by the upstream SHA."""
    rev = (revision or "HEAD").strip()
    aliases = _upstream_aliases(repo)
    if rev.lower() in aliases:
        return rev.lower()
    try:
        sha = (
            _git("--git-dir", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
            .decode()
            .strip()
        )
    except GitError:
        raise GitError(f"Unable to resolve '{rev}' to a commit SHA") from None
    return next((upstream for upstream, mirror in aliases.items() if mirror == sha), sha)


def checkout(repo: Path, sha: str, dest: Path) -> Path:
    """Materialise commit ``sha`` (a mirror or a stood-for upstream SHA) into ``dest`` (``git archive``)."""
    out = dest / sha
    if out.exists():
        return out
    commit = _upstream_aliases(repo).get(sha, sha)
    data = _git("--git-dir", str(repo), "archive", "--format=tar", commit)
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
