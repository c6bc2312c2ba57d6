"""Jsonnet applications, evaluated by Google's Jsonnet (the ``_jsonnet`` bindings).

Argo CD evaluates the ``*.jsonnet`` files of an application path with top-level
arguments, external variables and library paths; we do the same, so a Jsonnet app renders
here as it does there: each entry point in the top folder (``*.libsonnet`` are libraries,
never entry points), its output an object, an array (nested arrays flattened) or a
``kind: List``.

Evaluation runs in a forked child process, killed after ``EVALUATION_TIMEOUT`` (Jsonnet
itself has no time bound and the repository is untrusted), with Jsonnet's stack bounded
by ``MAX_STACK``.  Imports go through a callback instead of Jsonnet's file importer:
every import is resolved inside the repository (the importing file's folder, then the
library paths, last first, then the application path, which is the order Jsonnet's own
importer uses) and one that would leave it is refused.  Entry points
are evaluated under their repository-relative names, so Jsonnet's errors name
``apps/web/main.jsonnet:12`` as written, and the repository is only materialised when an
import reaches outside the application path.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import select
import signal
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _jsonnet

from reconciler.errors import RenderError
from reconciler.render.objects import EmptyRender, RenderedObject, objects_of
from reconciler.render.options import RenderRequest
from reconciler.render.workspace import (
    MAX_OUTPUT_BYTES,
    inside,
    materialised,
    repo_relative,
    strip_root,
)
from reconciler.yamlio import MAX_FILE_BYTES, Document

__all__ = ["entry_points", "render_jsonnet"]

#: ``file:line:col``, ``file:line:col-col`` or ``file:(line:col)-(line:col)`` in messages.
_LOCATION = re.compile(r"(?P<file>[^\t\n]+?):\(?(?P<line>\d+):\d+(?:-\d+|\)-\(\d+:\d+\))?")
_HEADLINE = re.compile(r"^(?:RUNTIME|STATIC) ERROR: (?P<rest>.*)$")
#: Frames of a runtime error named after the innermost one, at most.
_MAX_FRAMES = 4
#: Seconds the entry points of one application may evaluate for, together.
EVALUATION_TIMEOUT = 60.0
#: Deepest Jsonnet call stack (Jsonnet's own default): deep recursion is an error, not a hang.
MAX_STACK = 500

#: ``ext_vars``, ``ext_codes``, ``tla_vars``, ``tla_codes`` as ``evaluate_snippet`` takes them.
_Arguments = dict[str, dict[str, str]]


def entry_points(files: Mapping[str, bytes]) -> list[str]:
    """The ``*.jsonnet`` files of the top folder (hidden ones skipped), sorted."""
    return sorted(
        name
        for name in files
        if name.endswith(".jsonnet") and "/" not in name and not name.startswith(".")
    )


class _Importer:
    """Jsonnet's import callback, confined to the repository.

    Files under the application path come from the request's files (which hold all of
    them); anything else from the materialised repository, written on first need.
    """

    def __init__(self, request: RenderRequest, libs: list[str], stack: ExitStack) -> None:
        self.request = request
        # Searched after the importing file's folder: the last library first, then the path.
        self.search = [*reversed(libs), request.path]
        self.stack = stack
        self.root: Path | None = None
        #: Repository paths Jsonnet has read, so messages can tell them from ``std.jsonnet``.
        self.served: set[str] = set()

    def __call__(self, folder: str, name: str) -> tuple[str, bytes]:
        first = repo_relative(name, base=folder)
        if first is None:
            raise RuntimeError("outside the repository, refused")
        for base in [folder, *self.search]:
            candidate = repo_relative(name, base=base)
            if candidate is None:
                continue
            content = self._read(candidate)
            if content is not None:
                self.served.add(candidate)
                return candidate, content
        raise RuntimeError("no match locally or in the Jsonnet library paths")

    def _read(self, name: str) -> bytes | None:
        path = self.request.path
        if not path or name.startswith(path + "/"):
            # Every file under the path is in the request: no need to look on disk.
            return self.request.files.get(name[len(path) + 1 :] if path else name)
        if self.root is None:
            self.root = self.stack.enter_context(
                materialised(self.request.materialise, prefix="reconciler-jsonnet-")
            )
        target = inside(self.root, name)
        if target is None:
            raise RuntimeError("outside the repository, refused")
        if not target.is_file():
            return None
        if target.stat().st_size > MAX_FILE_BYTES:
            raise RuntimeError(f"{name} is over the {MAX_FILE_BYTES} byte limit")
        return target.read_bytes()


def render_jsonnet(request: RenderRequest) -> list[RenderedObject]:
    """Objects of every Jsonnet entry point at the request's path, in file order."""
    entries = entry_points(request.files)
    if not entries:
        raise EmptyRender(
            f"{request.label}: no Jsonnet entry points found (looked for *.jsonnet in the "
            "top folder; *.libsonnet files are libraries)"
        )
    options = request.jsonnet
    libs = []
    for lib in options.libs:
        resolved = repo_relative(lib)
        if resolved is None:
            raise RenderError(
                f"{request.label}: jsonnet library path {lib!r} leaves the repository"
            )
        libs.append(resolved)
    arguments: _Arguments = {
        "ext_vars": {}, "ext_codes": {}, "tla_vars": {}, "tla_codes": {},
    }  # fmt: skip
    for kind, values in (("ext", options.ext_vars), ("tla", options.tlas)):
        for name, arg in values.items():
            arguments[f"{kind}_{'codes' if arg.code else 'vars'}"][name] = arg.value
    objects: list[RenderedObject] = []
    for filename, output in _evaluate(request, entries, libs, arguments):
        objects.extend(_objects(output, filename))
    if not objects:
        shown = ", ".join(entries)
        raise EmptyRender(f"{request.label}: Jsonnet rendered no objects (from {shown})")
    return objects


def _evaluate(
    request: RenderRequest, entries: list[str], libs: list[str], arguments: _Arguments
) -> list[tuple[str, str]]:
    """``(filename, output)`` of every entry point, evaluated in a child process.

    Jsonnet has no time bound of its own, and a loop over ``std.range(0, 1e12)`` holds the
    interpreter (and the GIL-free C++ code under it) for as long as it likes.  A thread
    cannot be stopped, so the evaluation runs in a forked child (which keeps the import
    callback and the request as they are) and is killed at ``EVALUATION_TIMEOUT``.

    The child is made with ``os.fork`` rather than ``multiprocessing``: Celery's pool
    processes are daemonic, and ``multiprocessing`` refuses children to a daemon.  The
    child writes one pickled answer to a pipe and leaves with ``os._exit``, running no
    handler of the parent's.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        try:
            answer = _answer(request, entries, libs, arguments)
            with os.fdopen(write_fd, "wb") as out:
                out.write(pickle.dumps(answer))
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        data = _read_until(read_fd, time.monotonic() + EVALUATION_TIMEOUT)
    finally:
        os.close(read_fd)
        _reap(pid)
    if data is None:
        shown = ", ".join(request.repo_path(entry) for entry in entries)
        raise RenderError(
            f"{shown}: Jsonnet evaluation did not finish within "
            f"{EVALUATION_TIMEOUT:g}s (a runaway loop?); stopped"
        )
    if not data:
        raise RenderError(f"{request.label}: Jsonnet evaluation died before answering")
    ok, result = pickle.loads(data)  # our own child's answer, never outside input
    if not ok:
        raise RenderError(str(result))
    return list(result)


def _answer(
    request: RenderRequest, entries: list[str], libs: list[str], arguments: _Arguments
) -> tuple[bool, Any]:
    """The child's answer: ``(True, outputs)`` or ``(False, message)``; never raises."""
    try:
        return True, _evaluate_here(request, entries, libs, arguments)
    except RenderError as exc:
        return False, str(exc)
    except BaseException as exc:  # the parent reports it, with no traceback
        return False, f"{request.label}: Jsonnet evaluation failed: {exc}"


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to ``fd`` until its end, or None when ``deadline`` passes first."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    """Kill the child if it still runs, and collect it (no zombie is left)."""
    with contextlib.suppress(ProcessLookupError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _evaluate_here(
    request: RenderRequest, entries: list[str], libs: list[str], arguments: _Arguments
) -> list[tuple[str, str]]:
    outputs: list[tuple[str, str]] = []
    with ExitStack() as stack:
        importer = _Importer(request, libs, stack)
        for entry in entries:
            filename = request.repo_path(entry)
            try:
                source = request.files[entry].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RenderError(f"{filename}: not UTF-8 text (at byte {exc.start})") from None
            try:
                output = _jsonnet.evaluate_snippet(
                    filename, source, import_callback=importer, max_stack=MAX_STACK, **arguments
                )
            except RuntimeError as exc:
                text = str(exc)
                if importer.root is not None:
                    text = strip_root(text, importer.root)
                known = {filename, *importer.served}
                raise RenderError(error_message(text, entry=filename, known=known)) from None
            if len(output) > MAX_OUTPUT_BYTES:
                raise RenderError(f"{filename}: output is over {MAX_OUTPUT_BYTES} bytes")
            outputs.append((filename, output))
    return outputs


def _objects(output: str, filename: str) -> list[RenderedObject]:
    if len(output) > MAX_OUTPUT_BYTES:
        raise RenderError(f"{filename}: output is over {MAX_OUTPUT_BYTES} bytes")
    items: list[Any] = []
    _flatten(json.loads(output), items)
    documents = [Document(item, filename, 1, index) for index, item in enumerate(items)]
    return objects_of(documents, label="output item")


def _flatten(value: Any, into: list[Any]) -> None:
    """Arrays of arrays become one list of items, as Argo CD reads Jsonnet output."""
    if isinstance(value, list):
        for item in value:
            _flatten(item, into)
    else:
        into.append(value)


def error_message(text: str, *, entry: str, known: set[str]) -> str:
    """Jsonnet's error as ``file:line: message``, the innermost repository frame first.

    ``known`` are the repository files of this evaluation: frames in Jsonnet's own
    ``std.jsonnet`` are skipped, and a message located in something else (a top-level
    argument's code, ``tla:NAME``) is prefixed with the entry point.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return f"{entry}: jsonnet failed"
    head = _HEADLINE.match(lines[0])
    rest = head.group("rest") if head else lines[0]
    # A static error carries its location at the front: "file:3:7-9: message".
    static = _LOCATION.match(rest)
    if static and rest[static.end() : static.end() + 2] == ": ":
        message = rest[static.end() + 2 :]
        file, line = static.group("file"), static.group("line")
        if file in known:
            return f"{file}:{line}: {message}"
        return f"{entry}: {file}:{line}: {message}"
    frames = []
    for frame in lines[1:]:
        found = _LOCATION.match(frame.strip())
        if found and found.group("file") in known:
            where = f"{found.group('file')}:{found.group('line')}"
            if where not in frames:
                frames.append(where)
    if not frames:
        return f"{entry}: {rest}"
    called = f" (from {', '.join(frames[1 : _MAX_FRAMES + 1])})" if len(frames) > 1 else ""
    return f"{frames[0]}: {rest}{called}"
