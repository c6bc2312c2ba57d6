"""Git adapter: one bare mirror per repository, read at a commit without a checkout.

Every target of every application reads manifests from Git, on many worker processes at
once, from repositories anyone with push access controls.  So this module:

* keeps one bare mirror per repository URL in a cache directory, created and updated only
  under a file lock, so parallel workers never corrupt it and fetch once per change;
* reads files straight from the object database (``ls-tree`` + ``cat-file --batch``): no
  checkout, no working tree, no hooks, no filters, no ``.gitattributes`` surprises;
* refuses transports that run commands (``ext::``, ``fd::``, remote helpers), options
  smuggled in as URLs or revisions, symlinks leaving the repository and oversized files;
* never puts credentials on a command line, in the mirror's config or in a message: they
  reach git through ``GIT_ASKPASS`` and the environment, and every message uses
  ``RepoURL.redacted`` and scrubbed stderr.

Mirror management runs on GitPython: ``Repo.init(bare=True)`` makes the staging mirror,
``Repo.create_remote`` sets its origin, and ``git fetch`` and ``update-ref`` run through
the mirror's ``Git`` with ``kill_after_timeout``.  Before any git starts, GitPython's
guards (``Git.check_unsafe_protocols``, ``Git.check_unsafe_options``) check the URL and
every fetch argument, a second wall behind ``_parse_remote``, and ``create_remote``
checks the URL again; the ``-c`` overrides of ``_CONFIG`` (``protocol.allow=never``, no
hooks, no credential helper...) are persistent options of every such ``Git``.

GitPython starts each git from ``os.environ`` and can only add to it, so the environment
given to it overrides every inherited ``GIT_*``, ``SSH_ASKPASS*``, ``RECONCILER_GIT_*``
and ``RECONCILER_ASKPASS_*`` variable with a value that makes it inert (``_neutral``):
``GIT_DIR`` is the mirror itself, ``GIT_CONFIG_COUNT`` is 0, ``GIT_CONFIG_PARAMETERS``,
``GIT_ASKPASS``, ``GIT_TEMPLATE_DIR`` and tokens are empty, ``GIT_EXEC_PATH`` is git's own
and repository paths point back inside the mirror.  Some variables act whatever value
they hold, so no override makes them inert:

* ``GIT_WORK_TREE``, ``GIT_COMMON_DIR``, ``GIT_QUARANTINE_PATH``, ``GIT_SSL_NO_VERIFY``
  and ``GIT_CURL_VERBOSE`` would break the bare mirror, turn off TLS checks or trace
  headers into messages: while one is inherited no git runs, and the error names it
  (``_UNNEUTRALISABLE``);
* ``GIT_SSL_CAINFO``, ``GIT_SSL_CAPATH``, ``GIT_SSL_CERT``, ``GIT_SSL_KEY`` and their
  ``GIT_PROXY_SSL_*`` twins are the host's TLS setup and are obeyed as inherited
  (``_HONOURED``): images commonly point ``GIT_SSL_CAINFO`` at the system CA bundle;
* GitPython reads two variables of its own once, at import:
  ``GIT_PYTHON_GIT_EXECUTABLE`` picks the git program (the reading side runs the same
  one), and ``GIT_PYTHON_TRACE=full`` logs git's unscrubbed output, for debugging only.

Variables outside those prefixes (``PATH``, ``HOME`` and so ``~/.ssh/config``, the
``*_proxy`` ones) reach git on both sides.  On timeout GitPython kills git and the
processes it started (``git-remote-https``, ``ssh``), and a command that failed after
running for the whole timeout is reported as timed out.

Reading stays on ``subprocess``: ``ls-tree``, ``cat-file --batch-check`` and the streamed
``cat-file --batch`` get ``os.environ`` without any variable of those prefixes (nothing
left to neutralise), in a process group of their own that is killed as a whole on
timeout.  GitPython's ``GitCmdObjectDB`` would keep a ``cat-file`` process per repository
open between calls and read from it with no timeout (``kill_after_timeout`` does not apply
to the processes it keeps), so one stuck read would hang a worker.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import filelock
import git

from reconciler import settings
from reconciler.errors import SourceError, SourceUnavailable
from reconciler.repourl import ALLOWED_SCHEMES, Form, RepoURL

#: Largest file ``read_tree`` returns; manifests are text written by people.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Largest repository ``export`` writes to disk (kustomize needs the whole tree).
MAX_EXPORT_BYTES = 512 * 1024 * 1024
#: Most files one ``read_tree`` returns (symlinked directories can multiply them).
MAX_FILES = 50_000
#: Symlinks followed while resolving one path, as the kernel's ELOOP limit.
MAX_SYMLINK_HOPS = 40
#: Where ``export`` points a symlink that leaves the repository: a path under a device
#: file, which no process can create, so nothing is ever read through the link.
REFUSED_LINK_TARGET = "/dev/null/reconciler-refused-symlink"
#: Seconds one git command may run (a fetch of a big repository included).
DEFAULT_TIMEOUT = 300.0
#: Seconds a worker waits for another one's fetch of the same mirror.
DEFAULT_LOCK_TIMEOUT = 600.0

#: Where the remote's HEAD (its default branch) is fetched to on every fetch.  The mirror's
#: own HEAD is left alone: git insists it names a branch, and the remote's name for its
#: default branch would cost another round trip (``ls-remote --symref``) to learn.
_REMOTE_HEAD_REF = "refs/reconciler/HEAD"
#: Branches and tags only: ``refs/pull/*`` and friends can be huge and are never deployed.
_REFSPECS = (
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    f"+HEAD:{_REMOTE_HEAD_REF}",
)
#: ``--refmap=``: only the refspecs above, whatever ``remote.origin.fetch`` says.
_FETCH_OPTIONS = ("--prune", "--no-tags", "--quiet", "--refmap=")
#: ``-c`` overrides on every git this module runs: only transports that run no command,
#: no hooks, no fsmonitor, no credential helper, no redirect off the first host, and no
#: submodules.
_CONFIG = (
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
    "protocol.file.allow=always",
    "protocol.ext.allow=never",
    "protocol.fd.allow=never",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "credential.helper=",
    "http.followRedirects=initial",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
)
#: Inherited variables that could redirect or reconfigure git, or that hold our secrets.
_INHERITED = ("GIT_", "SSH_ASKPASS", "RECONCILER_GIT_", "RECONCILER_ASKPASS_")
#: Inherited variables git obeys whatever value they hold, so that no override can make
#: inert, and that would undo a guarantee of this module: no git runs while one is set.
_UNNEUTRALISABLE = {
    "GIT_WORK_TREE": "it gives the bare mirror a work tree, and no value means none",
    "GIT_COMMON_DIR": "a mirror given one is no longer bare, an empty one is no repository",
    "GIT_QUARANTINE_PATH": "any value forbids every ref update",
    "GIT_SSL_NO_VERIFY": "any value turns off TLS certificate checks",
    "GIT_CURL_VERBOSE": "any value traces HTTP headers into git's messages",
}
#: The host's TLS setup, which git also obeys whatever value it holds: left as inherited,
#: since hosts and images commonly point ``GIT_SSL_CAINFO`` at their own CA bundle.
_HONOURED = frozenset(
    {
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "GIT_SSL_CERT",
        "GIT_SSL_KEY",
        "GIT_PROXY_SSL_CAINFO",
        "GIT_PROXY_SSL_CERT",
        "GIT_PROXY_SSL_KEY",
    }
)
#: What an inherited variable is overridden with when the empty string would not be
#: inert (``""`` turns a boolean off, or is an invalid value); the rest are given ``""``.
_NEUTRAL = {
    "GIT_CONFIG_COUNT": "0",
    "GIT_CONFIG_SYSTEM": os.devnull,
    "GIT_ALLOW_PROTOCOL": ":".join(sorted(ALLOWED_SCHEMES)),  # it beats protocol.* config
    "GIT_SMART_HTTP": "1",
    "GIT_TRACE_REDACT": "1",
    "GIT_REF_PARANOIA": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",  # set at all, it turns replacement off: safe
    "GIT_REPLACE_REF_BASE": "refs/replace/",
    "GIT_DEFAULT_HASH": "sha1",
    "GIT_DEFAULT_REF_FORMAT": "files",
    "GIT_SSH_VARIANT": "auto",
    "GIT_HTTP_PROXY_AUTHMETHOD": "anyauth",
    "SSH_ASKPASS_REQUIRE": "never",
}
#: Inherited path variables, put back to their default place inside the mirror.
_NEUTRAL_IN_MIRROR = {
    "GIT_OBJECT_DIRECTORY": "objects",
    "GIT_INDEX_FILE": "index",
    "GIT_SHALLOW_FILE": "shallow",
    "GIT_CONFIG": "config",
}
_HEX40 = re.compile(r"[0-9a-f]{40}")
_ABBREV = re.compile(r"[0-9a-f]{4,39}")
_SAFE_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")

#: Streams ``(sha, content)`` of the given blob ids (``GitSource._cat_blobs`` bound to a mirror).
_Cat = Callable[[Iterable[str]], Iterator[tuple[str, bytes]]]

# Stderr fragments (with LC_ALL=C) of a server that could not be reached: retry later.
_UNREACHABLE = (
    "could not resolve host",
    "could not resolve hostname",
    "couldn't resolve host",
    "name or service not known",
    "temporary failure in name resolution",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "failed to connect",
    "couldn't connect to server",
    "connection reset",
    "network is unreachable",
    "no route to host",
    "ssh: connect to host",
    "early eof",
    "the remote end hung up unexpectedly",
    "rpc failed",
    "empty reply from server",
    "returned error: 500",
    "returned error: 502",
    "returned error: 503",
    "returned error: 504",
    "returned error: 429",
    "tls connection was non-properly terminated",
)
# Unless one of these says the server answered and refused: do not retry.
_REFUSED = (
    "authentication failed",
    "permission denied",
    "repository not found",
    "not found",
    "does not appear to be a git repository",
    "could not read username",
    "could not read password",
    "returned error: 401",
    "returned error: 403",
    "returned error: 404",
)

# The askpass helper answers git's prompts from the environment of the git process, so
# the secret is never in a file, an argument or the mirror's config.
_ASKPASS_SCRIPT = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$RECONCILER_ASKPASS_USERNAME" ;;
  *) printf '%s\\n' "$RECONCILER_ASKPASS_PASSWORD" ;;
esac
"""


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``RECONCILER_CACHE_DIR``, else ``~/.cache/reconciler``; callers pass it to GitSource."""
    return settings.load(environ).cache_path


@dataclass(frozen=True)
class _Remote:
    """A validated repository URL split into what git sees and what people see."""

    fetch_url: str  #: passed to git: no password ever; an SSH user name is kept
    display: str  #: redacted, for messages
    key: str  #: normalised, for the mirror's name
    scheme: str
    host: str
    username: str | None
    password: str | None


def _parse_remote(url: str) -> _Remote:
    """Validate ``url`` before git sees it; refuse anything that could run a command."""
    parsed = RepoURL.parse(url)
    display = parsed.redacted
    if not url or url != url.strip() or any(ch in url for ch in "\r\n\t\0"):
        raise SourceError(f"{display!r}: invalid repository URL")
    if url.startswith("-"):
        raise SourceError(f"{display}: repository URL may not start with '-'")
    if parsed.form is Form.TRANSPORT:
        raise SourceError(f"{display}: transport '<helper>::<address>' URLs are refused")
    if parsed.form is Form.URL:
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise SourceError(
                f"{display}: scheme {parsed.scheme!r} is not one of "
                f"{', '.join(sorted(ALLOWED_SCHEMES))}"
            )
        if parsed.scheme != "file" and not parsed.host:
            raise SourceError(f"{display}: repository URL has no host")
        if parsed.host.startswith("-") or (parsed.user or "").startswith("-"):
            raise SourceError(f"{display}: host or user may not start with '-'")
        if parsed.bad_port:
            raise SourceError(f"{display}: {parsed.port!r} is not a port number")
    elif parsed.form is Form.SCP and len(parsed.host) > 1:
        # git's rule: a colon before any slash means ``[user@]host:path`` over SSH (a
        # one-letter host is a Windows drive, read as a local path below).
        if parsed.host.startswith("-") or (parsed.user or "").startswith("-"):
            raise SourceError(f"{display}: host or user may not start with '-'")
        if parsed.has_password:
            raise SourceError(f"{display}: an SSH address cannot carry a password (use an SSH key)")
    else:
        # A local path: made absolute and turned into file:// so git uses its normal transport.
        parsed = RepoURL.parse(os.path.abspath(url))
        fetch = parsed.fetch_url
        return _Remote(fetch, os.path.abspath(url), fetch, "file", "", None, None)
    fetch = parsed.fetch_url
    return _Remote(
        fetch,
        RepoURL.parse(fetch).redacted,
        parsed.key,
        parsed.scheme,
        parsed.host.strip("[]") if parsed.form is Form.URL else parsed.host,
        parsed.user,
        parsed.password if parsed.form is Form.URL else None,
    )


def _check_revision(revision: str, display: str) -> None:
    """Refuse revisions git could read as options or as revision expressions."""
    if (
        not _SAFE_REVISION.fullmatch(revision)
        or ".." in revision
        or "//" in revision
        or revision.endswith((".", "/", ".lock"))
    ):
        raise SourceError(f"{display}: invalid revision {revision!r}")


def _check_commit(commit: str, display: str) -> None:
    if not _HEX40.fullmatch(commit):
        raise SourceError(f"{display}: {commit!r} is not a full commit id (call resolve first)")


def check_path(path: str) -> str:
    """Normalise a path inside a repository (``""`` is the root); refuse escapes."""
    if "\0" in path or "\\" in path:
        raise SourceError(f"{path!r}: invalid path")
    if path.startswith("/"):
        raise SourceError(f"{path}: path must be relative to the repository root")
    normal = posixpath.normpath(path) if path else "."
    if normal == ".." or normal.startswith("../") or "/../" in f"/{path}/":
        raise SourceError(f"{path}: path leaves the repository ('..')")
    return "" if normal == "." else normal


@dataclass(frozen=True)
class _Entry:
    """One ``ls-tree -l`` line."""

    mode: str
    type: str
    sha: str
    size: int  #: -1 for trees and submodules

    @property
    def is_link(self) -> bool:
        return self.mode == "120000"


class GitSource:
    """Repository mirrors in ``cache_dir``; resolves revisions and reads trees at commits.

    Safe to use from many processes at once (fetches are serialised per mirror by a file
    lock).  ``fetch_count`` counts fetches this instance ran, for benchmarks and tests.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self.lock_timeout = lock_timeout
        #: Where credentials come from; ``os.environ`` (read at each call) unless given.
        self._environ = environ
        self.fetch_count = 0
        self._count_lock = threading.Lock()

    # -- public API --------------------------------------------------------------------

    def mirror_path(self, url: str) -> Path:
        """Bare mirror of ``url``: ``<cache>/git/<sha256(normalised url)[:16]>.git``."""
        return self._mirror(_parse_remote(url))

    def fetch(self, url: str) -> None:
        """Clone the mirror of ``url`` or bring it up to date (``fetch --prune``)."""
        remote = _parse_remote(url)
        self._fetch(remote, self._mirror(remote))

    def resolve(self, url: str, revision: str, *, fetch: bool = False) -> str:
        """The 40-hex commit ``revision`` names in ``url``'s mirror.

        ``fetch=True`` updates the mirror first; otherwise the mirror is used as is (and
        only cloned if it does not exist yet).  ``revision`` is a branch, a tag (peeled to
        its commit), ``HEAD`` (the remote's default branch) or a full or abbreviated id.
        """
        remote = _parse_remote(url)
        _check_revision(revision, remote.display)
        mirror = self._mirror(remote)
        if fetch:
            self._fetch(remote, mirror)
        elif not mirror.exists():
            self._fetch(remote, mirror, only_if_missing=True)
        if revision == "HEAD":
            candidates = [_REMOTE_HEAD_REF]
        elif revision.startswith("refs/") or _HEX40.fullmatch(revision):
            candidates = [revision]
        else:
            # git's own order (gitrevisions(7)): tags before branches.
            candidates = [f"refs/tags/{revision}", f"refs/heads/{revision}"]
            if _ABBREV.fullmatch(revision):
                candidates.append(revision)
        found = self._batch_check(remote, mirror, [f"{c}^{{commit}}" for c in candidates])
        for name in candidates:
            sha = found.get(f"{name}^{{commit}}")
            if sha:
                return sha
        raise SourceError(f"{remote.display}: unknown revision {revision!r}")

    def read_tree(self, url: str, commit: str, path: str = "") -> dict[str, bytes]:
        """Every file under ``path`` at ``commit``, keyed by its path relative to ``path``.

        Symlinks are followed inside the repository (a link to a directory yields its
        files under the link's name); one leaving the repository, dangling or looping is
        an error naming it.  Submodules are skipped: their content is not in this mirror.
        """
        remote = _parse_remote(url)
        _check_commit(commit, remote.display)
        path = check_path(path)
        mirror = self._existing_mirror(remote)
        where = f"{remote.display}@{commit[:12]}"
        self._require_tree(remote, mirror, commit, path, where=where)
        entries = self._ls_tree(remote, mirror, commit, path)
        if any(entry.is_link for entry in entries.values()):
            resolver = _Resolver(self._ls_tree(remote, mirror, commit, ""), where=where)
            resolver.read_links(lambda shas: self._cat_blobs(remote, mirror, shas))
            files = resolver.files_under(path)
        else:
            files = {name: entry for name, entry in entries.items() if entry.type == "blob"}
        if len(files) > MAX_FILES:
            raise SourceError(f"{where}: {path or '/'} holds over {MAX_FILES} files")
        for name, entry in files.items():
            if entry.size > MAX_FILE_BYTES:
                shown = posixpath.join(path, name)
                raise SourceError(
                    f"{where}: {shown}: file is {entry.size} bytes, "
                    f"over the {MAX_FILE_BYTES} byte limit"
                )
        contents = dict(self._cat_blobs(remote, mirror, {e.sha for e in files.values()}))
        return {name: contents[entry.sha] for name, entry in sorted(files.items())}

    def read_trees(
        self, url: str, commit: str, paths: Iterable[str]
    ) -> dict[str, dict[str, bytes] | SourceError]:
        """``read_tree`` of many paths of one commit, for a whole fleet at once.

        One ``ls-tree`` of the commit and one ``cat-file`` for every blob the paths
        need, instead of four git processes per path: validating ten thousand
        applications of one repository must not start forty thousand processes.  Each
        path maps to its files, or to the SourceError ``read_tree`` would raise for it
        (so one path's bad symlink fails that path only); an error about the commit
        itself is raised.
        """
        remote = _parse_remote(url)
        _check_commit(commit, remote.display)
        mirror = self._existing_mirror(remote)
        where = f"{remote.display}@{commit[:12]}"
        if commit not in self._batch_check(remote, mirror, [f"{commit}^{{commit}}"]).values():
            raise SourceError(f"{where}: commit {commit} is not in the repository")
        entries = self._ls_tree(remote, mirror, commit, "")
        resolver = _Resolver(entries, where=where)
        if any(entry.is_link for entry in entries.values()):
            resolver.read_links(lambda shas: self._cat_blobs(remote, mirror, shas))
        found: dict[str, dict[str, _Entry] | SourceError] = {}
        for path in paths:
            try:
                found[path] = self._files_at(resolver, entries, path, where=where)
            except SourceError as exc:
                found[path] = exc
        wanted = {
            e.sha for files in found.values() if isinstance(files, dict) for e in files.values()
        }
        contents = dict(self._cat_blobs(remote, mirror, wanted))
        return {
            path: files if isinstance(files, SourceError)
            else {name: contents[entry.sha] for name, entry in sorted(files.items())}
            for path, files in found.items()
        }  # fmt: skip

    @staticmethod
    def _files_at(
        resolver: _Resolver, entries: Mapping[str, _Entry], path: str, *, where: str
    ) -> dict[str, _Entry]:
        """The blobs ``read_tree`` returns for ``path``, from the commit's whole listing."""
        normal = check_path(path)
        entry = entries.get(normal) if normal else _Entry("040000", "tree", "", -1)
        if entry is None:
            raise SourceError(f"{where}: path {normal!r} does not exist at this commit")
        if entry.type != "tree":
            raise SourceError(f"{where}: path {normal!r} is a {entry.type}, not a directory")
        files = resolver.files_under(normal)
        if len(files) > MAX_FILES:
            raise SourceError(f"{where}: {normal or '/'} holds over {MAX_FILES} files")
        for name, blob in files.items():
            if blob.size > MAX_FILE_BYTES:
                shown = posixpath.join(normal, name)
                raise SourceError(
                    f"{where}: {shown}: file is {blob.size} bytes, "
                    f"over the {MAX_FILE_BYTES} byte limit"
                )
        return files

    def export(self, url: str, commit: str, dest: str | os.PathLike[str]) -> None:
        """Write the whole repository at ``commit`` into the empty directory ``dest``.

        For renderers that run external tools (kustomize overlays reach ``../../base``).
        Regular files are written with no executable bits; symlinks are written as
        relative links to their in-repository target, checked as ``read_tree`` does.
        A symlink leaving the repository (or looping) is not an error here, since the
        export serves every application of the repository and most never reach it: it is
        written pointing at ``REFUSED_LINK_TARGET``, which can never exist, so a tool
        reading through it fails and a renderer's containment check names it.
        """
        remote = _parse_remote(url)
        _check_commit(commit, remote.display)
        mirror = self._existing_mirror(remote)
        where = f"{remote.display}@{commit[:12]}"
        entries = self._ls_tree(remote, mirror, commit, "")
        total = sum(max(e.size, 0) for e in entries.values() if e.type == "blob")
        if total > MAX_EXPORT_BYTES:
            raise SourceError(f"{where}: repository is {total} bytes, over {MAX_EXPORT_BYTES}")
        resolver = _Resolver(entries, where=where)
        resolver.read_links(lambda shas: self._cat_blobs(remote, mirror, shas))
        root = Path(dest)
        blobs: dict[str, list[str]] = {}
        for name, entry in entries.items():
            if entry.type == "tree":
                (root / name).mkdir(parents=True, exist_ok=True)
            elif entry.type == "blob" and not entry.is_link:
                blobs.setdefault(entry.sha, []).append(name)
        for name, entry in entries.items():
            if entry.is_link:
                try:
                    target = resolver.follow(name)
                except SourceError:
                    target = REFUSED_LINK_TARGET
                if target is None:
                    continue  # dangling inside the repository: harmless, nothing to write
                link = root / name
                link.parent.mkdir(parents=True, exist_ok=True)
                if target != REFUSED_LINK_TARGET:
                    target = posixpath.relpath(target or ".", posixpath.dirname(name) or ".")
                link.symlink_to(target)
        for sha, content in self._cat_blobs(remote, mirror, set(blobs)):
            for name in blobs[sha]:
                target_file = root / name
                target_file.parent.mkdir(parents=True, exist_ok=True)
                target_file.write_bytes(content)

    # -- mirrors -----------------------------------------------------------------------

    def _mirror(self, remote: _Remote) -> Path:
        digest = hashlib.sha256(remote.key.encode("utf-8")).hexdigest()[:16]
        return self.cache_dir / "git" / f"{digest}.git"

    def _existing_mirror(self, remote: _Remote) -> Path:
        mirror = self._mirror(remote)
        if not mirror.exists():
            self._fetch(remote, mirror, only_if_missing=True)
        return mirror

    def _fetch(self, remote: _Remote, mirror: Path, *, only_if_missing: bool = False) -> None:
        """Clone or update ``mirror`` under its file lock.

        A new mirror is built next to its final place and renamed in only once its first
        fetch succeeded, so no reader ever sees a half-made one.  ``only_if_missing``:
        the caller only needs a mirror, so one cloned by another process while we waited
        for the lock is used as is (a fresh host's workers do not fetch once each).
        """
        self._check_fetch(remote)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(f"{mirror}.lock", timeout=self.lock_timeout)
        try:
            with lock:
                if mirror.exists() and only_if_missing:
                    return
                with self._count_lock:
                    self.fetch_count += 1
                if mirror.exists():
                    self._fetch_into(remote, mirror)
                    return
                staging = Path(tempfile.mkdtemp(prefix=f"{mirror.name}.", dir=mirror.parent))
                try:
                    self._init_mirror(remote, staging)
                    self._fetch_into(remote, staging)
                    staging.rename(mirror)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        except filelock.Timeout:
            raise SourceUnavailable(
                f"{remote.display}: another process has been fetching for over "
                f"{self.lock_timeout:g}s",
                delay=5.0,
            ) from None

    def _check_fetch(self, remote: _Remote) -> None:
        """Refuse, before any git runs or any file is made, what must never reach git.

        GitPython's guards see the URL and every fetch argument (``_parse_remote`` has
        already refused them once); an inherited variable no override can make inert
        stops the fetch, named, rather than being obeyed.
        """
        for name, why in _UNNEUTRALISABLE.items():
            if name in os.environ:
                raise SourceError(
                    f"{remote.display}: {name} is set in the reconciler's environment and "
                    f"git would obey it ({why}); unset it"
                )
        args = [remote.fetch_url, *_FETCH_OPTIONS, "origin", *_REFSPECS]
        with self._gitpython(remote, "fetch"):
            for arg in args:
                git.Git.check_unsafe_protocols(arg)
            git.Git.check_unsafe_options(
                options=args, unsafe_options=git.Remote.unsafe_git_fetch_options
            )
        if git.Git.polish_url(remote.fetch_url, expand_vars=False) != remote.fetch_url:
            # create_remote would store another URL than the one checked (backslashes, '~').
            raise SourceError(f"{remote.display}: GitPython would rewrite this URL; refused")

    def _init_mirror(self, remote: _Remote, staging: Path) -> None:
        """An empty bare repository in ``staging`` whose origin is ``remote``."""
        env = self._gitpython_env(remote, staging, askpass=None)
        with self._gitpython(remote, "init"):
            git.Repo.init(
                staging, mkdir=False, expand_vars=False, bare=True,
                env=env, kill_after_timeout=self.timeout,
            ).close()  # fmt: skip
        with self._gitpython(remote, "remote add"), self._repo(remote, staging) as repo:
            repo.create_remote(
                "origin", remote.fetch_url, allow_unsafe_protocols=False,
                env=env, kill_after_timeout=self.timeout,
            )  # fmt: skip

    def _fetch_into(self, remote: _Remote, git_dir: Path) -> None:
        fetch = [*_FETCH_OPTIONS, "--", "origin"]
        env = self._gitpython_env(remote, git_dir, askpass=self._credentials(remote))
        with self._repo(remote, git_dir) as repo:
            try:
                with self._gitpython(remote, "fetch", network=True):
                    repo.git.fetch(*fetch, *_REFSPECS, env=env, kill_after_timeout=self.timeout)
            except SourceError as exc:
                # A server whose HEAD names a missing branch still serves its branches and tags.
                if "couldn't find remote ref head" not in str(exc).lower():
                    raise
                with self._gitpython(remote, "fetch", network=True):
                    repo.git.fetch(*fetch, *_REFSPECS[:2], env=env, kill_after_timeout=self.timeout)
                with self._gitpython(remote, "update-ref"):
                    repo.git.update_ref(
                        "-d", _REMOTE_HEAD_REF,
                        env=self._gitpython_env(remote, git_dir, askpass=None),
                        kill_after_timeout=self.timeout,
                    )  # fmt: skip

    # -- running git through GitPython -------------------------------------------------

    def _repo(self, remote: _Remote, git_dir: Path) -> git.Repo:
        """GitPython's handle on a mirror; every git it runs gets the ``-c`` of _CONFIG."""
        with self._gitpython(remote, "fetch"):
            repo = git.Repo(git_dir, expand_vars=False)
        repo.git.set_persistent_git_options(c=list(_CONFIG))
        return repo

    def _gitpython_env(
        self, remote: _Remote, git_dir: Path, *, askpass: tuple[str, str] | None
    ) -> dict[str, str]:
        """``_env``, plus an inert value for every inherited variable ``_env`` leaves out.

        GitPython adds this to ``os.environ`` rather than replacing it, so a variable
        left out here would be inherited by git.
        """
        env = self._env(remote, askpass=askpass)
        for name in os.environ:
            if name.startswith(_INHERITED) and name not in env and name not in _HONOURED:
                env[name] = _neutral(name, git_dir)
        env["GIT_DIR"] = str(git_dir)
        return env

    @contextlib.contextmanager
    def _gitpython(self, remote: _Remote, what: str, *, network: bool = False) -> Iterator[None]:
        """GitPython's exceptions as SourceError or (unreachable, timeout) SourceUnavailable."""
        started = time.monotonic()
        try:
            yield
        except git.exc.GitCommandError as exc:
            # Not chained: the exception's text is git's raw stderr and command line.
            if time.monotonic() - started >= self.timeout:
                raise SourceUnavailable(
                    f"{remote.display}: git {what} timed out after {self.timeout:g}s"
                ) from None
            stderr = exc.stderr.removeprefix("\n  stderr: '").removesuffix("'")
            raise self._failure(remote, what, stderr, exc.status, network=network) from None
        except git.exc.UnsafeProtocolError as exc:
            raise SourceError(
                f"{remote.display}: refused by GitPython's unsafe-protocol check"
            ) from exc
        except git.exc.UnsafeOptionError as exc:
            raise SourceError(
                f"{remote.display}: refused by GitPython's unsafe-option check"
            ) from exc
        except git.exc.GitError as exc:
            raise SourceError(
                f"{remote.display}: git {what} failed ({type(exc).__name__})"
            ) from None

    # -- reading -----------------------------------------------------------------------

    def _batch_check(self, remote: _Remote, mirror: Path, names: list[str]) -> dict[str, str]:
        """Object id of each expression in ``names`` that exists (missing ones left out)."""
        out = self._git(
            remote,
            mirror,
            ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            stdin="".join(f"{name}\n" for name in names).encode(),
        )
        found: dict[str, str] = {}
        for name, line in zip(names, out.decode().splitlines(), strict=False):
            sha, _, kind = line.partition(" ")
            if _HEX40.fullmatch(sha) and kind in ("commit", "tree", "blob", "tag"):
                found[name] = sha
        return found

    def _require_tree(
        self, remote: _Remote, mirror: Path, commit: str, path: str, *, where: str
    ) -> None:
        if commit not in self._batch_check(remote, mirror, [f"{commit}^{{commit}}"]).values():
            raise SourceError(f"{where}: commit {commit} is not in the repository")
        out = self._git(
            remote, mirror, ["cat-file", "--batch-check"], stdin=f"{commit}:{path}\n".encode()
        ).decode()
        fields = out.split()
        if len(fields) < 2 or fields[1] == "missing":
            raise SourceError(f"{where}: path {path!r} does not exist at this commit")
        if fields[1] != "tree":
            raise SourceError(f"{where}: path {path!r} is a {fields[1]}, not a directory")

    def _ls_tree(self, remote: _Remote, mirror: Path, commit: str, path: str) -> dict[str, _Entry]:
        """Entries under ``path`` (recursively, trees included), keyed relative to it."""
        out = self._git(
            remote,
            mirror,
            ["ls-tree", "-r", "-t", "-l", "-z", "--end-of-options", f"{commit}:{path}"],
        )
        entries: dict[str, _Entry] = {}
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, sha, size = meta.decode().split()
            entries[name.decode("utf-8", "surrogateescape")] = _Entry(
                mode, kind, sha, int(size) if size.isdigit() else -1
            )
        return entries

    def _cat_blobs(
        self, remote: _Remote, mirror: Path, shas: Iterable[str]
    ) -> Iterator[tuple[str, bytes]]:
        """Stream blob contents through one ``cat-file --batch`` process."""
        wanted = sorted(set(shas))
        if not wanted:
            return
        proc = subprocess.Popen(
            [*self._base_args(mirror), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self._env(remote, askpass=None),
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        timer = threading.Timer(self.timeout, _kill_group, (proc,))
        timer.start()
        try:
            for sha in wanted:
                proc.stdin.write(f"{sha}\n".encode())
                proc.stdin.flush()
                header = proc.stdout.readline().decode().split()
                if len(header) != 3 or header[1] != "blob":
                    raise SourceError(f"{remote.display}: cannot read object {sha}")
                content = _read_exact(proc.stdout, int(header[2]))
                proc.stdout.read(1)  # the newline after each object
                yield sha, content
        except (BrokenPipeError, ValueError) as exc:
            raise SourceUnavailable(f"{remote.display}: reading objects failed") from exc
        finally:
            timer.cancel()
            with contextlib.suppress(OSError):
                proc.stdin.close()
            proc.stdout.close()
            proc.wait(timeout=self.timeout)  # a failure surfaced above as a short read

    # -- running git directly (the reading side) --------------------------------------

    @staticmethod
    def _base_args(git_dir: Path) -> list[str]:
        args = [_git_program()]
        for option in _CONFIG:
            args += ["-c", option]
        return [*args, f"--git-dir={git_dir}"]

    def _credentials(self, remote: _Remote) -> tuple[str, str] | None:
        """User name and secret for an HTTP(S) remote, from its URL or the environment.

        A per-host token (``RECONCILER_GIT_TOKEN_GITHUB_COM`` for github.com) wins, then
        ``RECONCILER_GIT_TOKEN``, then ``RECONCILER_GIT_USERNAME``/``_PASSWORD``.
        Environment credentials go to HTTPS remotes only, never in clear over HTTP.
        """
        if remote.scheme not in ("http", "https"):
            return None
        if remote.password is not None:
            return remote.username or "", remote.password
        if remote.scheme != "https":
            return None
        env = settings.load(self._environ)
        token = env.git_host_token(re.sub(r"[^A-Z0-9]", "_", remote.host.upper())) or env.git_token
        user = env.git_username or remote.username
        if token:
            return user or "x-access-token", token.get_secret_value()
        if env.git_password:
            return user or "", env.git_password.get_secret_value()
        return None

    def _secrets(self, remote: _Remote) -> list[str]:
        creds = self._credentials(remote)
        return [creds[1]] if creds and creds[1] else []

    def _askpass(self) -> Path:
        """The askpass helper script (no secrets in it), written once per cache."""
        script = self.cache_dir / "git" / "askpass.sh"
        if not script.exists():
            script.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=script.parent, prefix=".askpass.")
            with os.fdopen(fd, "w") as handle:
                handle.write(_ASKPASS_SCRIPT)
            os.chmod(tmp, 0o700)
            os.replace(tmp, script)
        return script

    def _env(self, remote: _Remote, *, askpass: tuple[str, str] | None) -> dict[str, str]:
        """A clean environment: nothing inherited can redirect or reconfigure git."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(_INHERITED)}
        env.update(
            LC_ALL="C",
            LANGUAGE="C",
            GIT_TERMINAL_PROMPT="0",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_PROTOCOL_FROM_USER="0",
            GIT_LITERAL_PATHSPECS="1",
        )
        source_env = settings.load(self._environ)
        key_file = source_env.git_ssh_key_file
        known_hosts = source_env.git_ssh_known_hosts
        ssh = ["ssh", "-o", "BatchMode=yes"]
        if key_file:
            ssh += ["-i", key_file, "-o", "IdentitiesOnly=yes"]
        if known_hosts:
            ssh += ["-o", f"UserKnownHostsFile={known_hosts}"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        if askpass is not None:
            env["GIT_ASKPASS"] = str(self._askpass())
            env["RECONCILER_ASKPASS_USERNAME"] = askpass[0]
            env["RECONCILER_ASKPASS_PASSWORD"] = askpass[1]
        return env

    def _git(
        self, remote: _Remote, git_dir: Path, args: list[str], *, stdin: bytes | None = None
    ) -> bytes:
        """Run git; a failure becomes SourceError, a timeout SourceUnavailable."""
        proc = subprocess.Popen(
            [*self._base_args(git_dir), *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env(remote, askpass=None),
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise SourceUnavailable(
                f"{remote.display}: git {args[0]} timed out after {self.timeout:g}s"
            ) from None
        if proc.returncode == 0:
            return out
        raise self._failure(remote, args[0], err.decode("utf-8", "replace"), proc.returncode)

    def _failure(
        self, remote: _Remote, what: str, stderr: str, status: object, *, network: bool = False
    ) -> SourceError | SourceUnavailable:
        """The error for a git that failed: SourceUnavailable if the server was unreachable."""
        message = _scrub(stderr, self._secrets(remote))
        lowered = message.lower()
        unreachable = any(s in lowered for s in _UNREACHABLE)
        refused = any(s in lowered for s in _REFUSED)
        text = f"{remote.display}: git {what} failed: {message or f'exit {status}'}"
        if network and unreachable and not refused:
            return SourceUnavailable(text)
        return SourceError(text)


class _Resolver:
    """Follows symlinks of one commit's tree without leaving the repository."""

    def __init__(self, entries: Mapping[str, _Entry], *, where: str) -> None:
        self.entries = entries
        self.where = where
        self.targets: dict[str, str] = {}  # link path -> raw target
        self.children: dict[str, list[str]] = {}
        for name in entries:
            parent, _, _ = name.rpartition("/")
            self.children.setdefault(parent, []).append(name)

    def read_links(self, cat: _Cat) -> None:
        links = {name: e.sha for name, e in self.entries.items() if e.is_link}
        contents = dict(cat(set(links.values())))
        for name, sha in links.items():
            self.targets[name] = contents[sha].decode("utf-8", "surrogateescape")

    def follow(self, path: str) -> str | None:
        """Symlink-free repository path ``path`` leads to; None if it leads nowhere."""
        parts = [p for p in path.split("/") if p]
        resolved = ""
        hops = 0
        while parts:
            part = parts.pop(0)
            candidate = posixpath.join(resolved, part) if resolved else part
            target = self.targets.get(candidate)
            if target is None:
                resolved = candidate
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise SourceError(f"{self.where}: {path}: too many levels of symbolic links")
            joined = posixpath.normpath(posixpath.join(resolved, target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                raise SourceError(
                    f"{self.where}: {path}: symlink {candidate} -> {target} leaves the repository"
                )
            parts = [p for p in joined.split("/") if p and p != "."] + parts
            resolved = ""
        if resolved and resolved not in self.entries:
            return None
        return resolved

    def files_under(self, path: str) -> dict[str, _Entry]:
        """Blobs reachable under directory ``path``, keyed relative to it."""
        files: dict[str, _Entry] = {}
        self._collect(path, "", files, stack=(path,))
        return files

    def _collect(
        self, directory: str, prefix: str, files: dict[str, _Entry], *, stack: tuple[str, ...]
    ) -> None:
        for name in self.children.get(directory, []):
            entry = self.entries[name]
            rel = posixpath.join(prefix, posixpath.basename(name))
            if entry.is_link:
                target = self.follow(name)
                if target is None:
                    raise SourceError(
                        f"{self.where}: {name}: symlink to {self.targets[name]!r}, "
                        "which does not exist"
                    )
                entry = self.entries[target] if target else _Entry("040000", "tree", "", -1)
                if entry.type == "tree":
                    # A link to a directory being walked (or above it) would never end.
                    if any(target in ("", s) or s.startswith(f"{target}/") for s in stack):
                        raise SourceError(f"{self.where}: {name}: symlink loop")
                    self._collect(target, rel, files, stack=(*stack, target))
                    continue
            if entry.type == "blob":
                files[rel] = entry
                if len(files) > MAX_FILES:
                    raise SourceError(f"{self.where}: over {MAX_FILES} files under {stack[0]}")
            elif entry.type == "tree":
                self._collect(name, rel, files, stack=(*stack, name))


def _git_program() -> str:
    """The git GitPython runs (``git`` unless ``GIT_PYTHON_GIT_EXECUTABLE`` names another)."""
    return os.fspath(git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git")


@functools.cache
def _program_defaults() -> dict[str, str]:
    """The values git itself gives ``GIT_EXEC_PATH`` and its user agent, asked once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    env["LC_ALL"] = "C"

    def ask(*args: str) -> str:
        return subprocess.run(
            [_git_program(), *args], env=env, capture_output=True, text=True, check=True,
            timeout=DEFAULT_TIMEOUT,
        ).stdout.strip()  # fmt: skip

    agent = "git/" + ask("version").removeprefix("git version ")
    return {"GIT_EXEC_PATH": ask("--exec-path"), "GIT_USER_AGENT": agent,
            "GIT_HTTP_USER_AGENT": agent}  # fmt: skip


def _neutral(name: str, git_dir: Path) -> str:
    """What inherited variable ``name`` is overridden with for a git run on ``git_dir``."""
    if name in _NEUTRAL:
        return _NEUTRAL[name]
    if name in _NEUTRAL_IN_MIRROR:
        return os.path.normpath(git_dir / _NEUTRAL_IN_MIRROR[name])
    if name in ("GIT_EXEC_PATH", "GIT_USER_AGENT", "GIT_HTTP_USER_AGENT"):
        return _program_defaults()[name]
    # Empty means unset, off, none or the default for everything else git reads
    # (GIT_ASKPASS, GIT_CONFIG_PARAMETERS, GIT_CONFIG_KEY_<n>, GIT_NAMESPACE,
    # GIT_TEMPLATE_DIR, GIT_ALTERNATE_OBJECT_DIRECTORIES, GIT_PROXY_COMMAND, GIT_TRACE*,
    # GIT_SSH...), and it is what a token must become.
    return ""


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise ValueError("short read")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill git and its helpers (``git-remote-https``, ``ssh``) together."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _scrub(stderr: str, secrets: Iterable[str]) -> str:
    """Git's stderr, shortened, without ``user:pass@`` parts or the configured secrets."""
    text = _USERINFO.sub("***@", stderr)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    lines = [line.removeprefix("fatal: ").strip() for line in text.splitlines() if line.strip()]
    joined = "; ".join(lines)
    return joined if len(joined) <= 500 else joined[:497] + "..."
