"""From files at a commit to the exact objects a target should hold.

Two steps, both pure apart from kustomize's subprocess:

* ``render`` turns an application's files into ``RenderedObject``s (plain YAML or
  kustomize), each remembering its ``file:line``;
* ``finalize`` makes them what we apply: namespaces filled from the target's default,
  ownership labels added, scope checked against the cluster's discovery, and duplicates
  refused, with every error naming the object and where it was written.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from reconciler.errors import RenderError
from reconciler.model import (
    APP_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Manifest,
    ObjectKey,
    group_of,
)
from reconciler.render.kustomize import (
    KustomizeRunner,
    Materialise,
    find_kustomization,
    render_kustomize,
    run_kubectl_kustomize,
    write_tree,
)
from reconciler.render.plain import RenderedObject, render_plain

__all__ = [
    "Namespaced",
    "RenderedObject",
    "finalize",
    "render",
    "render_plain",
]

#: ``namespaced(group, kind)``: True, False, or None when the cluster does not know it.
Namespaced = Callable[[str, str], bool | None]


def render(
    files: Mapping[str, bytes],
    *,
    path: str = "",
    materialise: Materialise | None = None,
    kustomize_runner: KustomizeRunner = run_kubectl_kustomize,
) -> list[RenderedObject]:
    """Objects of an application whose files (relative to ``path``) are ``files``.

    A kustomization at the root of ``path`` means kustomize; anything else is plain YAML.
    ``materialise`` writes the whole repository at the same commit into a directory
    (``GitSource.export``), as overlays reach outside ``path``; without it only ``files``
    are written, which suffices for a self-contained kustomization.
    """
    if path.startswith("/") or ".." in path.split("/"):
        raise RenderError(f"{path}: application path must stay inside the repository")
    path = path.strip("/")
    kustomization = find_kustomization(files)
    if kustomization is None:
        return render_plain(files, base=path)

    def files_only(root: Path) -> None:
        write_tree(files, root / path if path else root)

    return render_kustomize(
        path=path,
        kustomization=kustomization,
        materialise=materialise or files_only,
        runner=kustomize_runner,
    )


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
    it shows the author misunderstood what the object is.
    """
    manifests: list[Manifest] = []
    seen: dict[ObjectKey, RenderedObject] = {}
    for obj in objects:
        manifest = copy.deepcopy(obj.manifest)
        group, kind = group_of(str(manifest["apiVersion"])), str(manifest["kind"])
        meta = manifest.setdefault("metadata", {})
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
        key = ObjectKey.of(manifest)
        first = seen.get(key)
        if first is not None:
            raise RenderError(f"{obj.where}: {key}: duplicate object, first at {first.where}")
        seen[key] = obj
        manifests.append(manifest)
    return manifests
