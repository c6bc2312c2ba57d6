"""Where tools run: a temporary copy of the repository, confined reads, a sandboxed process.

The repository is untrusted (anyone who can push writes it), and kustomize, Helm and
Jsonnet all read files it names.  So every tool-based renderer works in a fresh temporary
directory holding only the repository at the commit being rendered; paths the repository
names (value files, Jsonnet imports and libraries) are resolved inside that tree and
refused when they leave it; external programs run with no network (an unroutable proxy),
an empty ``PATH``, a throwaway home, no kubeconfig and a timeout; and temporary directory
names are stripped from messages so errors read as repository paths.
"""

from __future__ import annotations

import os
import posixpath
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from reconciler.errors import RenderError
from reconciler.render.options import Materialise

#: Seconds one tool run (``kubectl kustomize``, ``helm template``) may take.
DEFAULT_TIMEOUT = 120.0
#: Largest tool output accepted; bigger is a runaway generator, not an application.
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
#: Where HTTP(S) goes from a tool: nowhere (the discard port on loopback).
_NO_PROXY_URL = "http://127.0.0.1:9"


@contextmanager
def materialised(materialise: Materialise, *, prefix: str) -> Iterator[Path]:
    """A temporary directory holding the repository root, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        materialise(root)
        yield root


def files_materialiser(files: Mapping[str, bytes], path: str) -> Materialise:
    """A materialiser writing only ``files`` under ``path``: for callers with no repository."""

    def write(root: Path) -> None:
        write_tree(files, root / path if path else root)

    return write


def write_tree(files: Mapping[str, bytes], root: Path) -> None:
    """Write ``files`` (paths relative to ``root``) into ``root``, refusing escapes."""
    for name, content in files.items():
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise RenderError(f"{name}: unsafe path in tree")
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def repo_relative(name: str, *, base: str = "") -> str | None:
    """``name`` (relative to the repository folder ``base``) normalised, or None if it leaves.

    Absolute names leave the repository: the tree on disk is the only one a render sees.
    """
    if not name or name.startswith("/") or "\0" in name:
        return None
    joined = posixpath.normpath(posixpath.join(base, name))
    if joined == ".":
        return ""
    if joined == ".." or joined.startswith("../"):
        return None
    return joined


def inside(root: Path, name: str) -> Path | None:
    """The file or folder ``name`` (repository-relative) on disk, or None if it leaves.

    Symlinks are resolved first, so a link pointing out of the tree is refused as well.
    """
    rel = repo_relative(name)
    if rel is None:
        return None
    real_root = root.resolve()
    target = (real_root / rel).resolve()
    if target != real_root and real_root not in target.parents:
        return None
    return target


def strip_root(text: str, root: Path) -> str:
    """Repository-relative paths in a tool's messages (no temporary directory names)."""
    for prefix in (str(root.resolve()), str(root)):
        text = text.replace(prefix + "/", "").replace(prefix, ".")
    for prefix in (str(root.parent.resolve()), str(root.parent)):
        text = text.replace(prefix, "..")  # something above the repository root
    return text


def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    what: str,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a rendering tool sandboxed; its stdout, or RenderError with its stderr.

    ``what`` names the run in messages (``kustomize build``); ``env`` adds variables to
    the scrubbed environment, ``{home}`` in a value standing for the throwaway home (so
    a tool's cache and configuration folders live and die with the run).  The whole process
    group is killed on timeout, so a tool's children cannot outlive it.
    """
    with tempfile.TemporaryDirectory(prefix="reconciler-tool-home-") as home:
        full_env = {
            "PATH": "",
            "HOME": home,
            "KUBECONFIG": os.devnull,
            "HTTP_PROXY": _NO_PROXY_URL,
            "HTTPS_PROXY": _NO_PROXY_URL,
            "http_proxy": _NO_PROXY_URL,
            "https_proxy": _NO_PROXY_URL,
            "NO_PROXY": "",
            "no_proxy": "",
            "LC_ALL": "C",
        }
        full_env.update({key: value.replace("{home}", home) for key, value in (env or {}).items()})
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise RenderError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RenderError(f"{what} timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        text = err.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        raise RenderError(text)
    if len(out) > MAX_OUTPUT_BYTES:
        raise RenderError(f"{what} output is over {MAX_OUTPUT_BYTES} bytes")
    return out.decode("utf-8", "replace")
