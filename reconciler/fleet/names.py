"""Kubernetes naming rules the fleet file follows, worded for our messages.

Cluster and application names become kubeconfig lookups, Redis keys and label values, and
cluster labels are matched by Kubernetes-style selectors, so they obey the same rules as
their Kubernetes counterparts.  Each function returns what is wrong, or None.
"""

from __future__ import annotations

import re

from reconciler.fleet.messages import quote

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")

#: Helm refuses release names longer than this (they end up in object names and labels).
MAX_RELEASE_NAME = 53


def dns_label_problem(value: str) -> str | None:
    """What makes ``value`` not a DNS-1123 label (names, namespaces)."""
    if len(value) > 63:
        return f"{quote(value)} is longer than 63 characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            f"{quote(value)} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return None


def dns_subdomain_problem(value: str, *, max_length: int = 253) -> str | None:
    """What makes ``value`` not a DNS-1123 subdomain of at most ``max_length`` characters."""
    if len(value) > max_length:
        return f"{quote(value)} is longer than {max_length} characters"
    if not all(_DNS1123_LABEL.fullmatch(part) for part in value.split(".")):
        return (
            f"{quote(value)} is not a DNS-1123 subdomain (lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit)"
        )
    return None


def label_key_problem(key: str) -> str | None:
    """What makes ``key`` not a Kubernetes label key (``[prefix/]name``)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix)):
        return f"{quote(key)}: the prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"{quote(key)}: the name must be 63 characters or less, of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """What makes ``value`` not a Kubernetes label value (the empty value is one)."""
    if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
        return (
            f"{quote(value)}: a label value must be 63 characters or less, of letters, "
            "digits, '-', '_' and '.', starting and ending with a letter or digit"
        )
    return None
