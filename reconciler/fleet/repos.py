"""Repository URLs in the fleet file: refuse the ones Git would run, never echo credentials.

Git treats some repository strings as commands: ``ext::sh -c ...`` and other remote
helpers (``transport::address``, unknown ``scheme://``), and a leading ``-`` in the URL,
user or host reaches ssh or Git itself as an option.  Credentials written in the file
would end up in logs, in Redis and in Flower.  Both are refused before anything runs.
"""

from __future__ import annotations

import os

from reconciler.fleet.messages import has_control, quote
from reconciler.repourl import ALLOWED_SCHEMES, Form, RepoURL, redact_url

__all__ = ["ALLOWED_SCHEMES", "check_repo", "redact_url"]


def check_repo(repo: str, *, base_dir: str | None) -> str:
    """``repo`` as stored: checked, and a relative local path resolved against ``base_dir``.

    Raises ValueError with a message that quotes the URL redacted.  ``base_dir`` is the
    fleet file's directory; None leaves a relative path as it is.
    """
    parsed = RepoURL.parse(repo)
    shown = quote(parsed.redacted)
    if not repo:
        raise ValueError("required (must not be empty)")
    if has_control(repo):
        raise ValueError(f"{shown}: control characters are not allowed")
    if repo.startswith("-"):
        raise ValueError(f"{shown}: must not start with '-'")
    if parsed.form is Form.TRANSPORT:
        transport = repo.split("::", 1)[0]
        raise ValueError(
            f"{shown}: the {quote(transport + '::')} transport form runs a Git "
            "remote helper and is not allowed (use https://, ssh://, git://, file://, "
            "user@host:path or a local path)"
        )
    if parsed.form is Form.URL:
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise ValueError(
                f"{shown}: scheme {quote(repo.split('://', 1)[0])} is not allowed "
                f"(use one of {', '.join(sorted(ALLOWED_SCHEMES))})"
            )
        if parsed.has_password:
            raise ValueError(_credentials_message(shown))
        if (parsed.user or "").startswith("-"):
            raise ValueError(f"{shown}: the user must not start with '-'")
        if parsed.host.startswith("-"):
            raise ValueError(f"{shown}: the host must not start with '-'")
        if parsed.scheme != "file" and not parsed.host:
            raise ValueError(f"{shown}: no host")
        return repo
    if parsed.form is Form.SCP:
        if parsed.has_password:
            raise ValueError(_credentials_message(shown))
        if (parsed.user or "").startswith("-"):
            raise ValueError(f"{shown}: the user must not start with '-'")
        if not parsed.host or parsed.host.startswith("-"):
            raise ValueError(f"{shown}: the host must be set and not start with '-'")
        if not parsed.path or parsed.path.startswith("-"):
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
