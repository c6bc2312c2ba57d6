"""Where manifests come from: Git repositories, read at a resolved commit.

Adapters layer: the engine resolves a revision to a commit once per run and reads the
application's path at that commit, so every cluster of one run sees the same manifests.
"""

from __future__ import annotations

from reconciler.repourl import without_userinfo as redact_url
from reconciler.source.git import MAX_FILE_BYTES, GitSource, check_path, default_cache_dir

__all__ = ["MAX_FILE_BYTES", "GitSource", "check_path", "default_cache_dir", "redact_url"]
