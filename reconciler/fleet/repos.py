"""Repository URLs in the fleet file: refuse the ones Git would run, never echo credentials.

Git treats some repository strings as commands: ``ext::sh -c ...`` and other remote
helpers (``transport::address``, unknown ``scheme://``), and a leading ``-`` in the URL,
user or host reaches ssh or Git itself as an option.  Credentials written in the file
would end up in logs, in Redis and in Flower.  Both are refused before anything runs.
"""

from __future__ import annotations

import os
import re

from reconciler.fleet.messages import has_control, quote

__all__ = ["ALLOWED_SCHEMES", "check_repo", "redact_url"]

#: Repository URL schemes Git may use; anything else may run a remote helper.
ALLOWED_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})

_TRANSPORT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")
_SCHEME_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_SCP_LIKE = re.compile(
    r"(?:(?P<userinfo>[^/]*)@)?(?P<host>\[[^\]/]*\]|[^:/@\[]*):(?P<path>.*)", re.DOTALL
)


def redact_url(url: str) -> str:
    """``url`` with its secret userinfo replaced by ``***``, for logs, messages and Flower.

    Userinfo is secret when it holds a password (``user:password@``) and, for http(s),
    always: a lone "user" there is usually a token.  An ssh user (``git@``) is kept, since
    it is needed to make sense of the address and cannot carry a secret.  Never raises:
    it is called on the way to reporting errors.
    """
    match = _SCHEME_URL.fullmatch(url)
    if match:
        scheme, rest = match.groups()
        authority, slash, tail = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        if at and (":" in userinfo or scheme.lower() in ("http", "https")):
            authority = "***@" + host
        return f"{scheme}://{authority}{slash}{tail}"
    scp = _SCP_LIKE.fullmatch(url)
    if scp and ":" in (scp.group("userinfo") or "") and not _TRANSPORT.match(url):
        return f"***@{scp.group('host')}:{scp.group('path')}"
    return url


def check_repo(repo: str, *, base_dir: str | None) -> str:
    """``repo`` as stored: checked, and a relative local path resolved against ``base_dir``.

    Raises ValueError with a message that quotes the URL redacted.  ``base_dir`` is the
    fleet file's directory; None leaves a relative path as it is.
    """
    shown = quote(redact_url(repo))
    if not repo:
        raise ValueError("required (must not be empty)")
    if has_control(repo):
        raise ValueError(f"{shown}: control characters are not allowed")
    if repo.startswith("-"):
        raise ValueError(f"{shown}: must not start with '-'")
    if _TRANSPORT.match(repo):
        transport = repo.split("::", 1)[0]
        raise ValueError(
            f"{shown}: the {quote(transport + '::')} transport form runs a Git "
            "remote helper and is not allowed (use https://, ssh://, git://, file://, "
            "user@host:path or a local path)"
        )
    match = _SCHEME_URL.fullmatch(repo)
    if match:
        scheme, rest = match.groups()
        if scheme.lower() not in ALLOWED_SCHEMES:
            raise ValueError(
                f"{shown}: scheme {quote(scheme)} is not allowed "
                f"(use one of {', '.join(sorted(ALLOWED_SCHEMES))})"
            )
        authority = rest.partition("/")[0]
        userinfo, at, host = authority.rpartition("@")
        if at and ":" in userinfo:
            raise ValueError(_credentials_message(shown))
        if at and userinfo.startswith("-"):
            raise ValueError(f"{shown}: the user must not start with '-'")
        if host.startswith("-"):
            raise ValueError(f"{shown}: the host must not start with '-'")
        if scheme.lower() != "file" and not host:
            raise ValueError(f"{shown}: no host")
        return repo
    # Git: a colon before the first slash makes it scp-like, [user@]host:path.
    first_colon, first_slash = repo.find(":"), repo.find("/")
    if first_colon != -1 and (first_slash == -1 or first_colon < first_slash):
        scp = _SCP_LIKE.fullmatch(repo)
        if scp is None:
            raise ValueError(f"{shown}: not a valid user@host:path address")
        userinfo_or_none, host, path = scp.group("userinfo", "host", "path")
        if userinfo_or_none is not None and ":" in userinfo_or_none:
            raise ValueError(_credentials_message(shown))
        if userinfo_or_none is not None and userinfo_or_none.startswith("-"):
            raise ValueError(f"{shown}: the user must not start with '-'")
        if not host or host.startswith("-"):
            raise ValueError(f"{shown}: the host must be set and not start with '-'")
        if not path or path.startswith("-"):
            raise ValueError(f"{shown}: the path must be set and not start with '-'")
        return repo
    # A local path.  '~' is left for the Git adapter to expand, like kubeconfig paths.
    if base_dir is None or repo.startswith("~") or os.path.isabs(repo):
        return repo
    return os.path.normpath(os.path.join(base_dir, repo))


def _credentials_message(shown: str) -> str:
    return (
        f"{shown}: credentials must not be written in the fleet file "
        "(use a Git credential helper, an SSH key or a mounted secret)"
    )
