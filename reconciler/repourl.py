"""Repository URLs, parsed once: what Git fetches, what people see, what names a repository.

A repository string comes from the fleet file, a webhook payload or a command line, and
four places need something from it: the fleet file refuses forms Git would run and
credentials; the Git adapter needs a fetch URL with no password in it; Redis keys need a
stable name with no credential; the webhook receiver needs to know that
``https://github.com/org/repo`` and ``git@github.com:org/repo.git`` are one repository.
When each of them split the string itself they disagreed (one returned the password of
``user:pass@host:org/repo`` unchanged), so every split is made here, once, by
``RepoURL.parse``, and the callers only read its fields.

Git's own rules decide the form: ``scheme://`` is a URL; ``helper::address`` runs a
remote helper; a colon before any slash is the scp-like ``[user@]host:path`` shorthand
for SSH; anything else is a local path.  Pure: parsing never raises and does no I/O (a
relative local path's identity reads the current directory, as Git would resolve it).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["ALLOWED_SCHEMES", "Form", "RepoURL", "identity", "redact_url", "without_userinfo"]

#: Schemes Git may use without running a helper program.
ALLOWED_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})

_SCHEME_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_TRANSPORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
# Backtracks to the last '@' that is followed by a host and a colon, so a raw '@' in a
# password stays in the userinfo and one in the path stays in the path.
_SCP = re.compile(
    r"(?:(?P<userinfo>[^/]*)@)?(?P<host>\[[^\]/]*\]|[^:/@\[]*):(?P<path>.*)", re.DOTALL
)
_PORT = re.compile(r"[0-9]{1,5}")
#: Shown in place of secret userinfo.
REDACTED = "***"


class Form(StrEnum):
    """How Git reads a repository string."""

    URL = "url"  #: ``scheme://[user[:password]@]host[:port]/path``
    SCP = "scp"  #: ``[user@]host:path``, SSH
    TRANSPORT = "transport"  #: ``helper::address``: Git runs a program
    LOCAL = "local"  #: a path on this machine


@dataclass(frozen=True)
class RepoURL:
    """One repository string, split into its parts (``RepoURL.parse``).

    ``scheme`` is lowercased (``ssh`` for the scp-like form, ``file`` for local paths,
    empty for a transport); ``host`` is lowercased, IPv6 in brackets; ``port`` is the
    text after the host's colon (digits when valid, see ``port_number``); ``path`` is as
    written.  The password is kept for the Git adapter's credential prompt only and is
    never part of ``repr``, ``redacted``, ``key``, ``identity`` or ``fetch_url``.
    """

    text: str = field(repr=False)
    form: Form
    scheme: str
    host: str
    port: str
    path: str
    user: str | None
    password: str | None = field(repr=False)
    #: The URL form's scheme, host and port, and everything after them, as written.
    _scheme_text: str = field(default="", repr=False)
    _hostport: str = field(default="", repr=False)
    _tail: str = field(default="", repr=False)

    @classmethod
    def parse(cls, text: str) -> RepoURL:
        """Split ``text`` by Git's rules; never raises (``problem`` says what is wrong)."""
        match = _SCHEME_URL.fullmatch(text)
        if match:
            scheme_text, rest = match.groups()
            end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
            authority, tail = rest[:end], rest[end:]
            userinfo, at, hostport = authority.rpartition("@")
            host, port = _split_hostport(hostport)
            user, password = _split_userinfo(userinfo) if at else (None, None)
            path = re.split(r"[?#]", tail, maxsplit=1)[0]
            return cls(
                text, Form.URL, scheme_text.lower(), host.lower(), port, path, user, password,
                scheme_text, hostport, tail,
            )  # fmt: skip
        if _TRANSPORT.match(text):
            return cls(text, Form.TRANSPORT, "", "", "", text, None, None)
        if _scp_colon(text):
            scp = _SCP.fullmatch(text)
            if scp is None:  # ``[bad:path``: scp-like by Git's rule, but no host in it
                return cls(text, Form.SCP, "ssh", "", "", text, None, None)
            userinfo = scp["userinfo"]
            user, password = _split_userinfo(userinfo) if userinfo is not None else (None, None)
            return cls(text, Form.SCP, "ssh", scp["host"].lower(), "", scp["path"], user, password)
        return cls(text, Form.LOCAL, "file", "", "", text, None, None)

    # -- what the parts say ---------------------------------------------------------

    @property
    def has_password(self) -> bool:
        """True when the string carries a password (``user:password@``)."""
        return self.password is not None

    @property
    def has_secret(self) -> bool:
        """True when the userinfo must not be shown: a password, or any http(s) user.

        A lone http(s) "user" is usually a token; an SSH user (``git@``) selects an
        account and carries no secret.
        """
        return self.has_password or (self.user is not None and self.scheme in ("http", "https"))

    @property
    def port_number(self) -> int | None:
        """The port as a number; None when absent or not a valid port."""
        if _PORT.fullmatch(self.port) and 0 < int(self.port) < 65536:
            return int(self.port)
        return None

    @property
    def bad_port(self) -> bool:
        """True when text after the host's colon is not a port (``ssh://h:org/repo``)."""
        return bool(self.port) and self.port_number is None

    # -- renderings -----------------------------------------------------------------

    @property
    def redacted(self) -> str:
        """The string as written with secret userinfo replaced by ``***``: for messages."""
        if self.form is Form.URL and self.user is not None and self.has_secret:
            return f"{self._scheme_text}://{REDACTED}@{self._hostport}{self._tail}"
        if self.form is Form.SCP and self.has_password:
            return f"{REDACTED}@{self._scp_hostpath}"
        return self.text

    @property
    def without_userinfo(self) -> str:
        """The string as written without any userinfo: what is hashed into key names.

        The same repository reached with and without a token is one string here.
        """
        if self.form is Form.URL:
            return f"{self._scheme_text}://{self._hostport}{self._tail}"
        if self.form is Form.SCP:
            return self._scp_hostpath
        return self.text

    @property
    def fetch_url(self) -> str:
        """What Git is given: no password ever; the SSH user kept (it selects the account).

        An http(s) user name goes to Git through its credential prompt instead, with the
        password, so it is left out here.  Local paths become absolute ``file://`` URLs.
        """
        if self.form is Form.URL:
            netloc = self.host if ":" not in self.host else f"[{self.host.strip('[]')}]"
            if self.port:
                netloc += f":{self.port}"
            if self.scheme == "ssh" and self.user:
                netloc = f"{self.user}@{netloc}"
            path = self.path
            if self.scheme == "file":
                path = posixpath.normpath(path) if path else "/"
                path = "/" + path.lstrip("/")
            query = self._tail[len(self.path) :].split("#", 1)[0]
            return f"{self.scheme}://{netloc}{path}{query}"
        if self.form is Form.SCP:
            return f"{self.user}@{self._scp_hostpath}" if self.user else self._scp_hostpath
        if self.form is Form.LOCAL:
            return f"file://{os.path.abspath(self.text)}"
        return self.text

    @property
    def key(self) -> str:
        """A normalised fetch address without userinfo: one mirror per repository address.

        Scheme and host lowercased, trailing ``/`` and ``.git`` dropped; unlike
        ``identity`` it keeps the scheme, the port and the path's case, since two
        addresses that differ there may be two repositories to fetch.
        """
        if self.form is Form.SCP:
            return f"ssh://{self.host}/{self.path.strip('/').removesuffix('.git')}"
        if self.form is Form.LOCAL:
            return self.fetch_url
        fetch = RepoURL.parse(self.fetch_url)
        netloc = fetch.host + (f":{fetch.port}" if fetch.port else "")
        return f"{fetch.scheme}://{netloc}{fetch.path.rstrip('/').removesuffix('.git')}"

    @property
    def identity(self) -> str:
        """A comparable name of the repository: equal for every spelling of one repository.

        Network forms (``https://``, ``http://``, ``ssh://``, ``git://``, scp-like
        ``[user@]host:path``) become ``https://host/path``: userinfo, port and query
        dropped, host and path lowercased, empty and ``.`` segments, trailing ``/`` and
        ``.git`` removed.  Scheme, port and path case are dropped on purpose: forges serve
        one repository over https and ssh (often on another port) and treat paths
        case-insensitively, and a false match costs one extra reconcile while a miss
        delays a deploy by a whole interval.  Local paths and ``file://`` URLs become
        ``file:///absolute/path`` (case kept; relative paths resolved against the current
        directory, ``~`` against ``$HOME``).  It names a repository; it is not fetched.
        """
        text = self.text.strip()
        if text != self.text:
            return RepoURL.parse(text).identity
        if self.form is Form.URL:
            if self.scheme == "file":
                # file:///path, or file://host/path whose host git ignores as well.
                return _local_identity("/" + self.path.lstrip("/") if self.path else "/")
            path = self.path
            if self.bad_port:
                # ssh://git@host:org/repo is a common slip for the scp-like form; read it so.
                path = f"{self.port}/{path}"
            return _network_identity(self.host, path)
        if self.form is Form.SCP:
            return _network_identity(self.host, self.path)
        return _local_identity(text)

    @property
    def _scp_hostpath(self) -> str:
        scp = _SCP.fullmatch(self.text)
        return f"{scp['host']}:{scp['path']}" if scp else self.text


def redact_url(url: str) -> str:
    """``url`` with secret userinfo replaced by ``***``, for logs, messages and Flower.

    Never raises: it is called on the way to reporting errors.
    """
    return RepoURL.parse(url).redacted


def without_userinfo(url: str) -> str:
    """``url`` with no userinfo at all (``RepoURL.without_userinfo``); never raises.

    For addresses shown where even an SSH or Redis user name is noise (the Git source's
    messages, the installation's Redis line) and for hashing into key names.
    """
    return RepoURL.parse(url).without_userinfo


def identity(url: str) -> str:
    """``RepoURL.parse(url).identity``: the name every spelling of a repository shares."""
    return RepoURL.parse(url).identity


def _split_userinfo(userinfo: str) -> tuple[str, str | None]:
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None)


def _split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("[") and "]" in hostport:
        end = hostport.index("]") + 1
        return hostport[:end], hostport[end:].removeprefix(":")
    host, _, port = hostport.partition(":")
    return host, port


def _scp_colon(text: str) -> bool:
    """Git's rule for ``[user@]host:path``: a colon before any slash (outside brackets)."""
    start = 0
    bracket = text.find("[")
    if bracket != -1 and bracket < text.find("]") and "/" not in text[:bracket]:
        start = text.find("]")  # [::1]:path: the colons inside brackets are the host's
    colon = text.find(":", start)
    if colon == -1:
        return False
    slash = text.find("/")
    return slash == -1 or colon < slash


def _network_identity(host: str, path: str) -> str:
    segments = _strip_git_suffix([s for s in path.lower().split("/") if s not in ("", ".")])
    return f"https://{host.lower()}" + "".join(f"/{segment}" for segment in segments)


def _local_identity(path: str) -> str:
    if path == "~" or path.startswith("~/"):
        path = os.path.expanduser(path)
    if not path.startswith("/"):
        # If the current directory was deleted, the path stays relative.
        with contextlib.suppress(OSError):
            path = posixpath.join(os.getcwd(), path)
    segments = _strip_git_suffix(posixpath.normpath(path).split("/"))
    return "file:///" + "/".join(s for s in segments if s)


def _strip_git_suffix(segments: list[str]) -> list[str]:
    """Drop trailing ``.git`` (``repo.git``, ``repo/.git``) and empty or ``.`` segments."""
    out = list(segments)
    while out:
        last = out[-1]
        if last in ("", "."):
            out.pop()
        elif last.endswith(".git"):
            out[-1] = last[: -len(".git")]
        else:
            break
    return out
