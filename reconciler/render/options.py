"""What a render is asked to do: the source kinds, their options, and the one interface.

Applications name their source kind implicitly (the files at the path, as Argo CD detects
them) or explicitly, by giving that kind's options.  The options are small immutable
values so a fleet file entry maps onto them once, they can be shared between threads, and
two renders with equal options are the same render.  Every renderer takes a
``RenderRequest`` and returns objects (``Renderer``), so the dispatch in
``reconciler.render`` is one table and a new kind is one module.  Pure: types only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reconciler.render.objects import RenderedObject

#: Writes the repository tree (at the commit being rendered) into an empty directory.
Materialise = Callable[[Path], None]
#: Builds the kustomization in a directory and returns its YAML (``kubectl kustomize DIR``).
KustomizeRunner = Callable[[Path], str]

#: Helm engines: the SDK in this process, or the ``helm`` binary as a subprocess.
HELM_SDK = "sdk"
HELM_BINARY = "binary"
HELM_ENGINES = (HELM_SDK, HELM_BINARY)


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


def _frozen(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return values if isinstance(values, MappingProxyType) else MappingProxyType(dict(values))


class SourceKind(StrEnum):
    """How an application's files become objects."""

    DIRECTORY = "directory"
    KUSTOMIZE = "kustomize"
    HELM = "helm"
    JSONNET = "jsonnet"


@dataclass(frozen=True)
class HelmOptions:
    """A Helm release's inputs, as ``helm template`` takes them.

    ``value_files`` are repository-relative and applied in order, then ``values`` last
    (Helm's deep merge); ``namespace`` is the destination's, seen as
    ``.Release.Namespace`` (Helm's ``default`` when None).  ``kube_version`` (``v1.31.0``)
    and ``api_versions`` (``apps/v1``, ``apps/v1/Deployment``) come from the target
    cluster's discovery and feed ``.Capabilities``; the API versions are added to Helm's
    built-in set, as ``--api-versions`` does.  ``engine`` is ``sdk`` (Helm's Go SDK in
    this process) or ``binary`` (``helm template``, for charts that need a specific
    Helm release).
    """

    release_name: str
    namespace: str | None = None
    value_files: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=_empty)
    skip_crds: bool = False
    engine: str = HELM_SDK
    kube_version: str | None = None
    api_versions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_files", tuple(self.value_files))
        object.__setattr__(self, "values", _frozen(self.values))
        object.__setattr__(self, "api_versions", tuple(self.api_versions))


#: Release name when a chart is detected and no options were given (``helm template``'s).
DEFAULT_HELM_OPTIONS = HelmOptions(release_name="release-name")


@dataclass(frozen=True)
class JsonnetArg:
    """A top-level argument or external variable: a string, or Jsonnet code when ``code``."""

    value: str
    code: bool = False


@dataclass(frozen=True)
class JsonnetOptions:
    """Inputs of every Jsonnet entry point of an application (Argo CD's ``directory.jsonnet``).

    ``libs`` are repository-relative library search paths, searched after the importing
    file's folder, the last one first, then the application's own path.
    """

    tlas: Mapping[str, JsonnetArg] = field(default_factory=_empty)
    ext_vars: Mapping[str, JsonnetArg] = field(default_factory=_empty)
    libs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tlas", _frozen(self.tlas))
        object.__setattr__(self, "ext_vars", _frozen(self.ext_vars))
        object.__setattr__(self, "libs", tuple(self.libs))


@dataclass(frozen=True)
class DirectoryOptions:
    """Which manifest files of a directory are read (Argo CD's ``directory``).

    ``include`` and ``exclude`` are globs matched against each file's path relative to the
    application path; ``*`` also matches ``/`` and ``{a.yaml,b.yaml}`` is alternation,
    as in Argo CD.
    """

    recurse: bool = True
    include: str | None = None
    exclude: str | None = None


@dataclass(frozen=True, kw_only=True)
class RenderRequest:
    """Everything a renderer is given.

    ``files`` are the files under ``path`` (keys relative to it); ``path`` is normalised
    (no leading or trailing ``/``, ``""`` for the repository root).  ``materialise``
    writes the repository (or, when the caller has no repository, just ``files`` under
    ``path``) into an empty directory, for renderers that run a tool on disk.
    """

    files: Mapping[str, bytes]
    path: str
    materialise: Materialise
    helm: HelmOptions = DEFAULT_HELM_OPTIONS
    jsonnet: JsonnetOptions = field(default_factory=JsonnetOptions)
    directory: DirectoryOptions = field(default_factory=DirectoryOptions)
    kustomize_runner: KustomizeRunner | None = None

    @property
    def label(self) -> str:
        """How messages name the application path (``.`` for the repository root)."""
        return self.path or "."

    def repo_path(self, name: str) -> str:
        """``name`` (relative to ``path``) as a repository-relative path."""
        return f"{self.path}/{name}" if self.path else name


class Renderer(Protocol):
    """Turns a request into objects; raises RenderError (EmptyRender when there are none)."""

    def __call__(self, request: RenderRequest) -> list[RenderedObject]: ...
