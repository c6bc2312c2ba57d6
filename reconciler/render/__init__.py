"""From files at a commit to the exact objects a target should hold.

Two steps:

* ``render`` turns an application's files into ``RenderedObject``s, each remembering
  where it was written.  The source kind is detected from the files as Argo CD detects
  it (a kustomization, else a ``Chart.yaml``, else top-level ``*.jsonnet`` files, else a
  directory of YAML and JSON), or chosen by giving that kind's options; each kind is one
  module behind the same ``Renderer`` interface, and the tools (kubectl's kustomize,
  Helm's SDK or binary, Jsonnet) run only there.  A render that yields nothing raises
  ``EmptyRender``, never returns an empty list, so an empty result is always a decision.
* ``finalize`` makes them what we apply: namespaces filled from the target's default,
  ownership labels added, scope checked against the cluster's discovery, names required
  (``generateName`` is for hooks only) and duplicates refused, with every error naming
  the object and where it was written.  Pure.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Callable, Mapping, Sequence

from reconciler.errors import RenderError
from reconciler.hooks import is_hook
from reconciler.model import (
    APP_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Manifest,
    ObjectKey,
    group_of,
)
from reconciler.render.helm import CHART_FILE, render_helm
from reconciler.render.jsonnet import entry_points, render_jsonnet
from reconciler.render.kustomize import find_kustomization, render_kustomize, run_kubectl_kustomize
from reconciler.render.objects import EmptyRender, RenderedObject
from reconciler.render.options import (
    DEFAULT_HELM_OPTIONS,
    DirectoryOptions,
    HelmOptions,
    JsonnetArg,
    JsonnetOptions,
    KustomizeRunner,
    Materialise,
    Renderer,
    RenderRequest,
    SourceKind,
)
from reconciler.render.plain import render_directory, render_plain
from reconciler.render.workspace import files_materialiser

__all__ = [
    "RENDERERS",
    "DirectoryOptions",
    "EmptyRender",
    "HelmOptions",
    "JsonnetArg",
    "JsonnetOptions",
    "KustomizeRunner",
    "Materialise",
    "Namespaced",
    "RenderRequest",
    "RenderedObject",
    "Renderer",
    "SourceKind",
    "detect",
    "finalize",
    "render",
    "render_plain",
]

#: ``namespaced(group, kind)``: True, False, or None when the cluster does not know it.
Namespaced = Callable[[str, str], bool | None]

#: The renderer of each source kind.
RENDERERS: Mapping[SourceKind, Renderer] = {
    SourceKind.DIRECTORY: render_directory,
    SourceKind.KUSTOMIZE: render_kustomize,
    SourceKind.HELM: render_helm,
    SourceKind.JSONNET: render_jsonnet,
}


def detect(files: Mapping[str, bytes]) -> SourceKind:
    """The source kind of an application path whose files (relative to it) are ``files``.

    Only the top folder decides, as in Argo CD, and in Argo CD's precedence: a
    kustomization wins over a ``Chart.yaml`` beside it.  ``*.jsonnet`` entry points come
    next; anything else is a directory of manifests.
    """
    if find_kustomization(files) is not None:
        return SourceKind.KUSTOMIZE
    if CHART_FILE in files:
        return SourceKind.HELM
    if entry_points(files):
        return SourceKind.JSONNET
    return SourceKind.DIRECTORY


def render(
    files: Mapping[str, bytes],
    *,
    path: str = "",
    materialise: Materialise | None = None,
    helm: HelmOptions | None = None,
    jsonnet: JsonnetOptions | None = None,
    directory: DirectoryOptions | None = None,
    kustomize_runner: KustomizeRunner = run_kubectl_kustomize,
) -> list[RenderedObject]:
    """Objects of an application whose files (relative to ``path``) are ``files``.

    The kind is the one whose options are given (at most one of ``helm``, ``jsonnet``,
    ``directory``), else ``detect(files)``; a detected chart with no options renders as
    ``helm template`` would, with release name ``release-name`` and no namespace, so
    callers that know the release (the application's name, the destination namespace,
    the cluster's discovery) pass ``HelmOptions`` when ``detect`` says ``helm``.

    ``materialise`` writes the whole repository at the same commit into a directory
    (``GitSource.export``), as overlays, charts, value files and Jsonnet libraries reach
    outside ``path``; without it only ``files`` are written, under ``path``.  Raises
    ``EmptyRender`` when the path yields no object and RenderError for anything else.
    """
    if path.startswith("/") or ".." in path.split("/"):
        raise RenderError(f"{path}: application path must stay inside the repository")
    path = posixpath.normpath(path.strip("/") or ".")
    path = "" if path == "." else path
    chosen = [
        kind
        for kind, given in (
            (SourceKind.HELM, helm), (SourceKind.JSONNET, jsonnet),
            (SourceKind.DIRECTORY, directory),
        )
        if given is not None
    ]  # fmt: skip
    if len(chosen) > 1:
        raise RenderError(
            f"{path or '.'}: options for {' and '.join(chosen)} given: an application "
            "has one source kind"
        )
    kind = chosen[0] if chosen else detect(files)
    request = RenderRequest(
        files=files,
        path=path,
        materialise=materialise or files_materialiser(files, path),
        helm=helm or DEFAULT_HELM_OPTIONS,
        jsonnet=jsonnet or JsonnetOptions(),
        directory=directory or DirectoryOptions(),
        kustomize_runner=kustomize_runner,
    )
    objects = RENDERERS[kind](request)
    if not objects:  # every renderer says why itself; this keeps the promise regardless
        raise EmptyRender(f"{request.label}: {kind} source rendered no objects")
    return objects


def finalize(
    objects: Sequence[RenderedObject],
    *,
    app: str,
    default_namespace: str | None,
    namespaced: Namespaced,
) -> list[Manifest]:
    """The manifests to apply for ``app``: scoped, labelled, unique; inputs are not changed.

    Pure: ``namespaced`` answers from discovery data the caller already holds.  A
    namespace on a cluster-scoped kind is an error rather than silently dropped, because
    it shows the author misunderstood what the object is.  An object named only by
    ``generateName`` gets a new name on every create, so it cannot be desired state: it
    is accepted for hooks (created anew each run) and, having no identity yet, is left
    out of the duplicate check.
    """
    manifests: list[Manifest] = []
    seen: dict[ObjectKey, RenderedObject] = {}
    for obj in objects:
        manifest = copy.deepcopy(obj.manifest)
        group, kind = group_of(str(manifest["apiVersion"])), str(manifest["kind"])
        meta = manifest.setdefault("metadata", {})
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            label = f"{obj.where}: {kind}/{meta['generateName']}*"
            if not is_hook(manifest):
                raise RenderError(
                    f"{label}: has no metadata.name (generateName is allowed only for hooks)"
                )
        else:
            label = f"{obj.where}: {ObjectKey.of(manifest)}"
        scope = namespaced(group, kind)
        if scope is None:
            shown = f"{kind}.{group}" if group else kind
            raise RenderError(
                f"{label}: unknown kind {shown} ({manifest['apiVersion']}) on this cluster"
            )
        if scope and not meta.get("namespace"):
            if not default_namespace:
                raise RenderError(f"{label}: names no namespace and the target has no default")
            meta["namespace"] = default_namespace
        elif not scope and meta.get("namespace"):
            raise RenderError(
                f"{label}: {kind} is cluster-scoped but names namespace {meta['namespace']!r}"
            )
        elif not scope:
            meta.pop("namespace", None)
        labels = meta.get("labels") or {}
        for name, value in ((MANAGED_BY_LABEL, MANAGED_BY_VALUE), (APP_LABEL, app)):
            if labels.get(name, value) != value:
                raise RenderError(
                    f"{label}: label {name}={labels[name]!r} conflicts with {value!r}"
                )
            labels[name] = value
        meta["labels"] = labels
        if not generated:
            key = ObjectKey.of(manifest)
            first = seen.get(key)
            if first is not None:
                raise RenderError(f"{obj.where}: {key}: duplicate object, first at {first.where}")
            seen[key] = obj
        manifests.append(manifest)
    return manifests
