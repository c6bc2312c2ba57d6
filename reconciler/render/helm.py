"""Helm charts, rendered by Helm's own engine: the Go SDK in process, or ``helm template``.

A chart's templates mean whatever Helm's engine makes of them (sprig, ``tpl``,
``lookup``, subchart value scoping, ``.helmignore``), so we never interpret them
ourselves: the default engine is Helm v4's Go SDK behind ``helm_python``'s C ABI,
``engine: binary`` runs ``helm template`` for a chart that needs one particular Helm
release.  Inputs are those Argo CD gives ``helm template``: the release name, the
destination namespace as ``.Release.Namespace``, value files in order and then inline
values, CRDs from ``crds/`` first unless skipped, and the target cluster's version and
API versions as ``.Capabilities``.  Hooks (``test`` hooks too) stay in the output with
their annotations, since deciding when they run is the sync's business; ``NOTES.txt``
and empty documents are dropped, as Helm drops them.

Helm does not fetch dependencies here (there is no network): a chart whose Chart.yaml
lists a dependency that is not vendored under ``charts/`` is refused, naming it.

The SDK is imported on first use, not with this module: loading it starts a Go runtime,
and a Go runtime does not survive ``fork()``, which Celery's prefork pool does to every
process that imported us before its workers started.

What the SDK does and does not do, as bound by ``helm_python`` 0.2 (Helm v4.2):
``Chart.render`` exposes only name, namespace, revision and install/upgrade, but the
library's render options also take ``kube_version`` and ``api_versions``, so we pass
those through the binding's native call; API versions are added to Helm's built-in set,
as ``--api-versions`` does.  The SDK's render is the template engine alone, without the
install action around it, so it does not check Chart.yaml's ``kubeVersion`` range against
the cluster version (``helm template`` refuses such a chart; here it renders).
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import settings
from reconciler.errors import RenderError
from reconciler.render.objects import EmptyRender, RenderedObject, objects_of, type_name
from reconciler.render.options import HELM_ENGINES, HELM_SDK, HelmOptions, RenderRequest
from reconciler.render.workspace import (
    DEFAULT_TIMEOUT,
    inside,
    materialised,
    repo_relative,
    run_tool,
    strip_root,
)
from reconciler.yamlio import load_documents

__all__ = [
    "CHART_FILE",
    "helm_binary",
    "helm_message",
    "merge_values",
    "render_helm",
    "split_template_output",
]

#: The file that makes a folder a chart.
CHART_FILE = "Chart.yaml"
#: Rendered files Helm shows to the installer instead of applying.
_NOTES_SUFFIX = "NOTES.txt"
#: Folders of a chart that appear in template and CRD paths (``web/templates/x.yaml``).
_CHART_FOLDERS = ("templates", "charts", "crds")
_SOURCE_COMMENT = re.compile(r"\A\s*# Source: (?P<source>[^\n]+)\n")
_DOCUMENT_SEPARATOR = re.compile(r"(?m)^---[ \t]*(?:\n|\Z)")
#: Helm's template error shapes, most specific first; each gives file, line and message.
_HELM_LOCATIONS = (
    re.compile(r"parse error at \((?P<file>[^()]+?):(?P<line>\d+)\): (?P<message>.*)"),
    re.compile(r"execution error at \((?P<file>[^()]+?):(?P<line>\d+)(?::\d+)?\): (?P<message>.*)"),
    re.compile(r"^(?:template: )?(?P<file>[^\s:]+):(?P<line>\d+)(?::\d+)?:? (?P<message>.*)"),
    re.compile(r"YAML parse error on (?P<file>[^\s:]+): (?P<message>.*)"),
)


def render_helm(request: RenderRequest) -> list[RenderedObject]:
    """Objects of the chart at the request's path, CRDs first, then templates in path order.

    Each object's ``source`` is its template's repository path (a subchart's as
    ``<chart>/charts/<sub>/templates/...``), its line the line in that template's output.
    """
    options = request.helm
    label = request.label
    if options.engine not in HELM_ENGINES:
        raise RenderError(
            f"{label}: helm.engine must be one of {', '.join(HELM_ENGINES)}, not {options.engine!r}"
        )
    if CHART_FILE not in request.files:
        raise RenderError(f"{label}: no {CHART_FILE} at the path, so it is not a Helm chart")
    chart_name = _chart_name(request)
    with materialised(request.materialise, prefix="reconciler-helm-") as root:
        chart_dir = inside(root, request.path) if request.path else root.resolve()
        if chart_dir is None or not (chart_dir / CHART_FILE).is_file():
            raise RenderError(f"{label}: {CHART_FILE} not found in the materialised tree")
        value_files = [_value_file(root, name, label=label) for name in options.value_files]
        _check_dependencies(chart_dir, chart=chart_name, where=request.repo_path(CHART_FILE))

        def message(text: str) -> str:
            return helm_message(strip_root(text, root), chart=chart_name, path=request.path)

        if options.engine == HELM_SDK:
            values: dict[str, Any] = {}
            for name, path in value_files:
                values = merge_values(values, _read_values(path, source=name))
            values = merge_values(values, _json_values(options.values, label=label))
            rendered = _render_sdk(chart_dir, values, options, label=label, message=message)
        else:
            inline = root.parent / "values.json"  # outside the repository: Helm's -f input
            inline.write_text(json.dumps(_json_values(options.values, label=label)))
            argv = _template_argv(
                helm_binary(), chart_dir, [path for _, path in value_files] + [inline], options
            )
            try:
                output = run_tool(
                    argv, cwd=chart_dir, timeout=DEFAULT_TIMEOUT, what="helm template",
                    env=_HELM_ENV,
                )  # fmt: skip
            except RenderError as exc:
                raise RenderError(message(str(exc))) from None
            rendered = split_template_output(output)
    objects: list[RenderedObject] = []
    for source, text in rendered:
        if source.endswith(_NOTES_SUFFIX) or posixpath.basename(source).startswith("_"):
            continue
        shown = _chart_path(source, chart=chart_name, path=request.path)
        objects.extend(objects_of(load_documents(text, source=shown)))
    if not objects:
        raise EmptyRender(f"{label}: chart {chart_name} rendered no objects with these values")
    return objects


def _chart_name(request: RenderRequest) -> str:
    where = request.repo_path(CHART_FILE)
    documents = load_documents(request.files[CHART_FILE], source=where)
    data = documents[0].data if documents else None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise RenderError(f"{where}: chart has no name")
    return name


# -- values ----------------------------------------------------------------------------


def _value_file(root: Path, name: str, *, label: str) -> tuple[str, Path]:
    """A value file's repository path and its file on disk; refuse missing or escaping."""
    rel = repo_relative(name)
    if rel is None:
        raise RenderError(
            f"{name}: value file must be a path inside the repository (helm.value_files of {label})"
        )
    target = inside(root, rel)
    if target is None:
        raise RenderError(f"{rel}: value file leaves the repository (helm.value_files of {label})")
    if not target.is_file():
        raise RenderError(f"{rel}: value file not found (helm.value_files of {label})")
    return rel, target


def _read_values(path: Path, *, source: str) -> dict[str, Any]:
    documents = load_documents(path.read_bytes(), source=source)
    if not documents:
        return {}
    if len(documents) > 1:
        raise RenderError(f"{documents[1].where}: a value file holds one YAML document")
    data = documents[0].data
    if not isinstance(data, dict):
        raise RenderError(
            f"{documents[0].where}: values must be a mapping, not a {type_name(data)}"
        )
    return data


def _json_values(values: Mapping[str, Any], *, label: str) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(key): plain(child) for key, child in value.items()}
        if isinstance(value, list | tuple):
            return [plain(child) for child in value]
        if value is None or isinstance(value, str | bool | int | float):
            return value
        raise RenderError(f"{label}: helm.values holds a {type(value).__name__}, not JSON data")

    result: dict[str, Any] = plain(values)
    return result


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base`` as Helm merges ``-f`` files (its ``mergeMaps``).

    Mappings merge key by key, recursively; anything else (a list, a scalar, null)
    replaces what was there.  Null keeps its meaning for the chart's defaults, where Helm
    itself removes the key when it coalesces values.
    """
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge_values(current, value)
        else:
            merged[key] = value
    return merged


# -- the SDK ---------------------------------------------------------------------------


def _render_sdk(
    chart_dir: Path,
    values: dict[str, Any],
    options: HelmOptions,
    *,
    label: str,
    message: Callable[[str], str],
) -> list[tuple[str, str]]:
    """``(chart path, text)`` of the chart's CRDs (unless skipped) and rendered templates."""
    import helm_python as helm  # noqa: PLC0415 - starts a Go runtime: not before a fork
    from helm_python import _native  # noqa: PLC0415

    try:
        helm.validate_release_name(options.release_name)
    except helm.HelmError as exc:
        raise RenderError(f"{label}: release name {options.release_name!r}: {exc}") from None
    render_options: dict[str, Any] = {"name": options.release_name, "is_install": True}
    if options.namespace:
        render_options["namespace"] = options.namespace
    if options.kube_version:
        render_options["kube_version"] = options.kube_version
    if options.api_versions:
        render_options["api_versions"] = list(options.api_versions)
    try:
        with helm.Chart.load(chart_dir) as chart:
            # Chart.render has no parameters for Capabilities; the library's options do.
            payload = _native.call_string(
                "helm_render", chart._raw(), json.dumps(values), json.dumps(render_options)
            )
            crds = [] if options.skip_crds else chart.crds
    except helm.HelmInvalidArgError as exc:
        raise RenderError(message(f"invalid helm options: {exc}")) from None
    except helm.HelmChartLoadError as exc:
        raise RenderError(message(f"cannot load chart: {exc}")) from None
    except helm.HelmError as exc:
        raise RenderError(message(str(exc))) from None
    rendered: dict[str, str] = json.loads(payload)
    out = [(crd["filename"], crd["data"]) for crd in crds]
    out.extend((name, rendered[name]) for name in sorted(rendered))
    return out


def _check_dependencies(chart_dir: Path, *, chart: str, where: str) -> None:
    """Refuse dependencies listed in Chart.yaml and absent from ``charts/``.

    Helm refuses them too (even a disabled one), but its message does not say what to do
    about it in a GitOps repository, where nothing is downloaded at render time.  Helm's
    own dependency listing decides, for both engines, so they refuse alike.
    """
    import helm_python as helm  # noqa: PLC0415 - starts a Go runtime: not before a fork

    try:
        dependencies = helm.dependency_list(chart_dir)
    except helm.HelmError:
        return  # an unreadable Chart.yaml: the engine's own load reports it better
    missing = [
        f"{dep.get('name')} {dep.get('version') or '(any version)'}"
        for dep in dependencies
        if dep.get("status") == "missing"
    ]
    if not missing:
        return
    noun, verb = ("dependency", "is") if len(missing) == 1 else ("dependencies", "are")
    raise RenderError(
        f"{where}: chart {chart}: {noun} {', '.join(missing)} {verb} not "
        "vendored under charts/; run helm dependency build and commit charts/"
    )


# -- the binary ------------------------------------------------------------------------

#: Helm's own folders inside the throwaway home: no user plugins, repositories or config.
_HELM_ENV = {
    "HELM_CACHE_HOME": "{home}/cache",
    "HELM_CONFIG_HOME": "{home}/config",
    "HELM_DATA_HOME": "{home}/data",
    "HELM_PLUGINS": "{home}/plugins",
}


def helm_binary(environ: Mapping[str, str] | None = None) -> str:
    """``RECONCILER_HELM``, else ``helm`` on PATH; RenderError when there is none."""
    override = settings.load(environ).helm
    if override:
        return override
    found = shutil.which("helm")
    if found is None:
        raise RenderError(
            "helm.engine is binary but no helm binary is on PATH "
            "(install helm, set RECONCILER_HELM, or use engine sdk)"
        )
    return found


def _template_argv(
    binary: str, chart_dir: Path, value_files: Sequence[Path], options: HelmOptions
) -> list[str]:
    argv = [binary, "template", options.release_name, str(chart_dir)]
    argv.append("--skip-crds" if options.skip_crds else "--include-crds")
    if options.namespace:
        argv += ["--namespace", options.namespace]
    if options.kube_version:
        argv += ["--kube-version", options.kube_version]
    for api_version in options.api_versions:
        argv += ["--api-versions", api_version]
    for path in value_files:
        argv += ["--values", str(path)]
    return argv


def split_template_output(output: str) -> list[tuple[str, str]]:
    """``helm template`` output as ``(chart path, text)`` per document, from ``# Source:``.

    Helm writes each rendered document as ``---`` then ``# Source: web/templates/x.yaml``.
    """
    out: list[tuple[str, str]] = []
    for chunk in _DOCUMENT_SEPARATOR.split(output):
        if not chunk.strip():
            continue
        found = _SOURCE_COMMENT.match(chunk)
        out.append((found.group("source").strip() if found else "(helm template output)", chunk))
    return out


# -- paths and messages ----------------------------------------------------------------


def _chart_prefix(chart: str) -> re.Pattern[str]:
    folders = "|".join(_CHART_FOLDERS)
    return re.compile(rf"(?<![\w./-]){re.escape(chart)}/(?=(?:{folders})/)")


def _chart_path(name: str, *, chart: str, path: str) -> str:
    """Helm's ``web/templates/x.yaml`` as the repository path ``<path>/templates/x.yaml``."""
    return _chart_prefix(chart).sub(f"{path}/" if path else "", name, count=1)


def helm_message(text: str, *, chart: str, path: str) -> str:
    """Helm's error as ``file:line: message`` with repository paths, on one line.

    Helm names templates by chart (``web/templates/deploy.yaml``); those names become the
    repository's (``charts/web/templates/deploy.yaml``).  The column Helm adds is left
    out, as every ``file:line`` of the platform; a message with no template location
    starts with the chart's path.
    """
    text = " ".join(text.removeprefix("Error: ").split())
    text = _chart_prefix(chart).sub(f"{path}/" if path else "", text)
    for pattern in _HELM_LOCATIONS:
        found = pattern.search(text)
        if found:
            line = found.groupdict().get("line")
            where = f"{found.group('file')}:{line}" if line else found.group("file")
            return f"{where}: {found.group('message')}"
    return f"{path or '.'}: {text}"
