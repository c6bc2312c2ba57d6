"""Paths inside a repository, and the templates that make them differ per cluster.

``source.path`` and Helm ``valueFiles`` may name the cluster they are rendered for:
``overlays/{{ cluster.labels.env }}``.  Only ``{{ cluster.name }}`` and
``{{ cluster.labels.KEY }}`` exist: a template language that can do more would be a way to
run code from Git.  Whatever a template renders to must stay inside the repository, since
the renderers read files from it and nothing else.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence

from reconciler.fleet.messages import Loc, quote
from reconciler.fleet.names import label_key_problem

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TEMPLATE_EXPR = re.compile(r"\s*cluster\.(?:(name)|labels\.(\S+))\s*", re.DOTALL)

#: A template split into literal text and ``("name", "")`` / ``("label", KEY)``.
Parts = list[str | tuple[str, str]]


class TemplateError(Exception):
    """A template or path problem, worded by the caller that knows the entry and field."""

    def describe(self, cluster: str | None) -> str:
        """The message, for the cluster it was rendered for (None: before any cluster)."""
        return str(self)


class MissingLabel(TemplateError):
    """A template names a label the cluster does not have."""

    def __init__(self, template: str, label: str) -> None:
        super().__init__(label)
        self.template = template
        self.label = label

    def describe(self, cluster: str | None) -> str:
        owner = f"cluster {quote(cluster)}" if cluster is not None else "the cluster"
        return f"{owner} has no label {quote(self.label)} (used in {quote(self.template)})"


class PathError(Exception):
    """A templated field of a source that does not render; ``field`` is relative to it."""

    def __init__(self, field: Loc, error: TemplateError) -> None:
        super().__init__(str(error))
        self.field = field
        self.error = error


def parts(template: str) -> Parts:
    """Split ``template`` into literal text and expressions; TemplateError if malformed."""
    out: Parts = []
    position = 0
    for match in _TEMPLATE.finditer(template):
        out.append(template[position : match.start()])
        position = match.end()
        expression = _TEMPLATE_EXPR.fullmatch(match.group(1))
        if expression is None:
            raise TemplateError(
                f"unsupported template expression {quote(match.group(0))} "
                "(use {{ cluster.name }} or {{ cluster.labels.KEY }})"
            )
        if expression.group(1):
            out.append(("name", ""))
        else:
            key = expression.group(2)
            problem = label_key_problem(key)
            if problem:
                raise TemplateError(f"{quote(match.group(0))}: invalid label key {problem}")
            out.append(("label", key))
    out.append(template[position:])
    for part in out:
        if isinstance(part, str) and ("{{" in part or "}}" in part):
            raise TemplateError(f"unbalanced '{{{{' or '}}}}' in {quote(template)}")
    return out


def fill(template: str, *, name: str, labels: Mapping[str, str]) -> str:
    """``template`` rendered for the cluster ``name`` with ``labels`` (not normalised)."""
    pieces: list[str] = []
    for part in parts(template):
        if isinstance(part, str):
            pieces.append(part)
        elif part[0] == "name":
            pieces.append(name)
        elif part[1] in labels:
            pieces.append(labels[part[1]])
        else:
            raise MissingLabel(template, part[1])
    return "".join(pieces)


def stand_in(template: str) -> str:
    """``template`` with a one-segment stand-in for each expression.

    Names and label values are single path segments, so checking the stand-in catches
    absolute paths and most escapes before any cluster is known.
    """
    return "".join(part if isinstance(part, str) else "x" for part in parts(template))


def repo_path(path: str, *, shown: str | None = None) -> str:
    """``path`` normalised relative to a repository root, ``""`` for the root itself.

    Refuses the empty path, absolute paths and anything that leaves the repository;
    ``shown`` is what messages quote when that is not ``path`` itself (a template).
    """
    if not path:
        raise TemplateError('must not be empty (use "." for the repository root)')
    written = path if shown is None else shown
    if path.startswith("/"):
        raise TemplateError(
            f"{quote(written)} is absolute; paths are relative to the repository root"
        )
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise TemplateError(f"{quote(written)} leaves the repository")
    return "" if normal == "." else normal


def static_problems(path: str, value_files: Sequence[str]) -> Iterator[tuple[Loc, TemplateError]]:
    """Every templated field that is wrong whatever the cluster: syntax, absolute, escapes."""
    base: str | None = None
    try:
        base = repo_path(stand_in(path), shown=path)
    except TemplateError as exc:
        yield ("path",), exc
    for index, template in enumerate(value_files):
        try:
            filled = stand_in(template)
            if base is not None:  # where they lead is only known from a valid path
                _value_file(base, filled, shown=template)
        except TemplateError as exc:
            yield ("helm", "valueFiles", index), exc


def target_paths(
    path: str, value_files: Sequence[str], *, name: str, labels: Mapping[str, str]
) -> tuple[str, tuple[str, ...]]:
    """The manifest path and the Helm value files for one cluster, repository-relative.

    Value files are relative to the manifest (chart) path.  Raises PathError naming the
    field that does not render.
    """
    try:
        base = repo_path(fill(path, name=name, labels=labels))
    except TemplateError as exc:
        raise PathError(("path",), exc) from None
    files: list[str] = []
    for index, template in enumerate(value_files):
        try:
            files.append(_value_file(base, fill(template, name=name, labels=labels)))
        except TemplateError as exc:
            raise PathError(("helm", "valueFiles", index), exc) from None
    return base, tuple(files)


def _value_file(base: str, rendered: str, *, shown: str | None = None) -> str:
    written = rendered if shown is None else shown
    if not rendered:
        raise TemplateError("must not be empty")
    if rendered.startswith("/"):
        raise TemplateError(
            f"{quote(written)} is absolute; value files are relative to the chart path"
        )
    try:
        return repo_path(posixpath.join(base, rendered))
    except TemplateError:
        raise TemplateError(f"{quote(written)} leaves the repository") from None
