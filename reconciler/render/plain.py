"""Plain manifest directories: the YAML and JSON files of a tree, as objects.

The simplest layout a team can keep in Git, and the one every other renderer's output is
checked against.  Which files count follows Argo CD's directory source, so a repository
renders the same here as there: ``.yaml``, ``.yml`` and ``.json`` files, all subfolders
unless ``recurse`` is off, filtered by ``include``/``exclude`` globs in Argo CD's dialect
(``*`` crosses ``/``, ``{a,b}`` alternation).  Hidden files and folders (``.github``) are
tooling and are never read.  Pure: files in (``path -> bytes``), objects out, each
remembering the ``file:line`` it came from.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from functools import lru_cache

from reconciler.errors import RenderError
from reconciler.render.objects import EmptyRender, RenderedObject, objects_of
from reconciler.render.options import DirectoryOptions, RenderRequest
from reconciler.yamlio import load_documents

__all__ = [
    "MANIFEST_SUFFIXES",
    "RenderedObject",
    "glob_match",
    "manifest_paths",
    "objects_of",
    "render_directory",
    "render_plain",
]

#: File name endings read as manifests; anything else (README.md, scripts) is ignored.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _visible(path: str) -> bool:
    return not any(part.startswith(".") for part in path.split("/"))


def manifest_paths(files: Mapping[str, bytes]) -> list[str]:
    """Paths of ``files`` read as manifests: sorted, hidden files and folders skipped."""
    return sorted(path for path in files if path.endswith(MANIFEST_SUFFIXES) and _visible(path))


def render_plain(files: Mapping[str, bytes], *, base: str = "") -> list[RenderedObject]:
    """Objects of every manifest file in ``files``, in path then document order.

    ``base`` is prefixed to paths in messages (the application's path in its repository).
    An empty result is returned as it is: ``render_directory`` decides what it means.
    """
    objects: list[RenderedObject] = []
    for path in manifest_paths(files):
        source = posixpath.join(base, path) if base else path
        objects.extend(objects_of(load_documents(files[path], source=source)))
    return objects


def selected_paths(files: Mapping[str, bytes], options: DirectoryOptions) -> list[str]:
    """Manifest paths that ``options`` select, sorted."""
    chosen = []
    for path in manifest_paths(files):
        if not options.recurse and "/" in path:
            continue
        if options.exclude and glob_match(options.exclude, path):
            continue
        if options.include and not glob_match(options.include, path):
            continue
        chosen.append(path)
    return chosen


def render_directory(request: RenderRequest) -> list[RenderedObject]:
    """Objects of the manifest files that the request's directory options select.

    No object at all is ``EmptyRender``, naming what was looked for and what the path
    holds instead (Jsonnet files, a chart or manifests in subfolders), since an empty
    directory render is almost always a wrong path or a wrong kind.
    """
    options = request.directory
    paths = selected_paths(request.files, options)
    objects: list[RenderedObject] = []
    for path in paths:
        source = request.repo_path(path)
        objects.extend(objects_of(load_documents(request.files[path], source=source)))
    if not objects:
        raise EmptyRender(f"{request.label}: {_nothing_found(request.files, options, paths)}")
    return objects


def _nothing_found(files: Mapping[str, bytes], options: DirectoryOptions, paths: list[str]) -> str:
    looked = "*.yaml, *.yml, *.json"
    if not options.recurse:
        looked += " in the top folder"
    if options.include:
        looked += f" matching include {options.include!r}"
    if options.exclude:
        looked += f" not matching exclude {options.exclude!r}"
    if paths:
        return f"no objects found (looked for {looked}; {len(paths)} files hold no documents)"
    notes = []
    visible = [path for path in files if _visible(path)]
    manifests = manifest_paths(files)
    if manifests:
        notes.append(f"{len(manifests)} manifest files left out by these options")
    jsonnet = [path for path in visible if path.endswith(".jsonnet")]
    if jsonnet:
        notes.append(
            f"{len(jsonnet)} .jsonnet files present: set source.jsonnet, "
            "or point path at the folder that holds them"
        )
    charts = [path for path in visible if posixpath.basename(path) == "Chart.yaml"]
    if charts:
        notes.append(f"a Helm chart in {posixpath.dirname(charts[0]) or '.'}: point path at it")
    if not visible:
        notes.append("the path holds no files")
    elif not notes:
        notes.append(f"{len(visible)} other files present")
    return f"no manifests found (looked for {looked}; {'; '.join(notes)})"


def glob_match(pattern: str, path: str) -> bool:
    """Whether ``path`` matches ``pattern`` as Argo CD's include/exclude match it.

    Argo CD compiles these globs with no path separator, so ``*`` and ``?`` also match
    ``/`` (``*.yaml`` selects ``sub/a.yaml``); ``[abc]``, ``[a-z]`` and ``[!abc]`` are
    character classes, ``{a.yaml,b/*}`` is alternation (nestable) and ``\\`` escapes.
    An invalid pattern is a RenderError naming it.
    """
    return _compile(pattern).fullmatch(path) is not None


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    regex, _ = _translate(pattern, 0, depth=0)  # outside braces "," and "}" are literal
    return re.compile(regex, re.DOTALL)


def _translate(pattern: str, start: int, *, depth: int) -> tuple[str, int]:
    """Regex for ``pattern[start:]`` up to an alternation's ``,``/``}``; and where it stopped."""
    out: list[str] = []
    i = start
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 >= len(pattern):
                raise RenderError(f"glob {pattern!r}: dangling escape at the end")
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif char == "*":
            while i < len(pattern) and pattern[i] == "*":
                i += 1
            out.append(".*")
        elif char == "?":
            out.append(".")
            i += 1
        elif char == "[":
            close = pattern.find("]", i + 2)
            if close < 0:
                raise RenderError(f"glob {pattern!r}: unclosed '[' at {i + 1}")
            body = pattern[i + 1 : close]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            escaped = "".join("\\" + c if c in "\\^[]" else c for c in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = close + 1
        elif char == "{":
            options: list[str] = []
            i += 1
            while True:
                part, i = _translate(pattern, i, depth=depth + 1)
                options.append(part)
                if i >= len(pattern):
                    raise RenderError(f"glob {pattern!r}: unclosed '{{'")
                if pattern[i] == "}":
                    i += 1
                    break
                i += 1  # ","
            out.append("(?:" + "|".join(options) + ")")
        elif char in ",}" and depth > 0:
            break
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out), i
