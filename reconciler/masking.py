"""Secrets in diffs and caches: compared by value, never shown, never stored.

A drift report, a history entry or Flower must never reveal Secret data.  Before diffing,
both sides of a Secret get their values replaced by a keyed digest, so a changed value
still shows as drift (``data/password: hmac:1a2b… -> hmac:9f8e…``) without the value.
``stringData`` in Git is folded into ``data`` first, as the API server does on write;
otherwise every Secret written with ``stringData`` would look drifted forever.

Anything that leaves the process (the shared render cache in Redis) keeps only a Secret's
identity (:func:`secret_identity`): Redis is readable by every component and every
operator of an installation, and a cached value would outlive the commit that held it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from reconciler.model import Manifest


def is_secret(obj: Manifest) -> bool:
    """Core v1 Secret."""
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


#: Keyed per process: a plain hash of a short password could be reversed by guessing, and
#: both sides of one diff are masked by the same process, which is all comparison needs.
_KEY = secrets.token_bytes(32)


def _digest(value: Any) -> str:
    raw = value.encode() if isinstance(value, str) else repr(value).encode()
    return "hmac:" + hmac.new(_KEY, raw, hashlib.sha256).hexdigest()[:16]


def masked(obj: Manifest | None) -> Manifest | None:
    """A copy of a Secret with ``data`` values (stringData folded in) as digests.

    Other objects are returned unchanged (not copied).
    """
    if obj is None or not is_secret(obj):
        return obj
    data = dict(obj.get("data") or {})
    string_data = obj.get("stringData") or {}
    if isinstance(string_data, dict):
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    out = {k: v for k, v in obj.items() if k not in {"data", "stringData"}}
    if data or "data" in obj or string_data:
        out["data"] = {key: _digest(value) for key, value in data.items()}
    return out


#: The metadata fields that name an object; everything else of a Secret may carry values
#: (an annotation such as ``kubectl.kubernetes.io/last-applied-configuration`` holds them).
_IDENTITY_FIELDS = ("name", "namespace", "generateName")


def secret_identity(obj: Manifest) -> Manifest:
    """A Secret reduced to what names it: apiVersion, kind, name, namespace.

    No data, stringData, labels or annotations: what remains can be stored or shown
    anywhere, and is enough to say which Secret a render held.
    """
    metadata = obj.get("metadata") or {}
    identity = {key: metadata[key] for key in _IDENTITY_FIELDS if key in metadata}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": identity}
