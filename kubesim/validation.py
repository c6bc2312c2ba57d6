"""Object validation that answers 422 Invalid with the real API server's causes and messages.

Tools and tests that talk to a cluster match on what the server says when it refuses an
object (``Deployment.apps "web" is invalid: spec.template.spec.containers[0].image: Required
value``), so the simulator must refuse the same objects with the same words.  This module
ports the parts of ``k8s.io/kubernetes/pkg/apis/*/validation`` and
``k8s.io/apimachinery/pkg/util/validation`` that matter for the resources the simulator
serves: object metadata, name formats per kind, workload selectors and pod templates,
Services, ConfigMap and Secret keys, Jobs, RBAC and CustomResourceDefinitions.

Updates are refused the same way: a client that replaces a Job's template or a Service's
``clusterIP``, or edits an ``immutable`` ConfigMap, must get the server's ``field is
immutable`` cause, so that tools which delete and recreate on it (``kubectl replace
--force``, Argo CD's and Flux's force options) behave as against a real cluster.

It validates objects *after* defaulting, as the server does: callers apply defaults (and
generate ``metadata.name`` from ``generateName``, fill ``metadata.namespace`` from the URL,
clear it for cluster-scoped kinds) first.  It is pure: no I/O, no clocks.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeGuard

from kubesim.selectors import (
    SelectorError,
    go_quote,
    go_repr,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    max_len_error,
    regex_error,
    selector_from_label_selector_object,
)

__all__ = [
    "Cause",
    "CauseReason",
    "invalid_status",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "is_valid_path_segment_name",
    "is_valid_port_name",
    "is_valid_port_num",
    "name_validator",
    "prepare_write",
    "validate",
    "validate_update",
]

Obj = Mapping[str, Any]


class CauseReason(StrEnum):
    """``metav1.CauseType`` values of field errors."""

    INVALID = "FieldValueInvalid"
    REQUIRED = "FieldValueRequired"
    NOT_SUPPORTED = "FieldValueNotSupported"
    DUPLICATE = "FieldValueDuplicate"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    FORBIDDEN = "FieldValueForbidden"
    NOT_FOUND = "FieldValueNotFound"


@dataclass(frozen=True)
class Cause:
    """One ``details.causes`` entry: reason, message without the field, and the field path."""

    reason: str
    message: str
    field: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"reason": str(self.reason), "message": self.message, "field": self.field}


# --------------------------------------------------------------------------- field errors


def _required(path: str, detail: str = "") -> Cause:
    message = "Required value" + (f": {detail}" if detail else "")
    return Cause(CauseReason.REQUIRED.value, message, path)


def _invalid(path: str, value: Any, detail: str = "") -> Cause:
    message = f"Invalid value: {go_repr(value)}" + (f": {detail}" if detail else "")
    return Cause(CauseReason.INVALID.value, message, path)


def _invalid_raw(path: str, rendered: str, detail: str) -> Cause:
    return Cause(CauseReason.INVALID.value, f"Invalid value: {rendered}: {detail}", path)


def _not_supported(path: str, value: Any, supported: Iterable[str]) -> Cause:
    quoted = ", ".join(go_quote(v) for v in supported)
    message = f"Unsupported value: {go_repr(value)}" + (
        f": supported values: {quoted}" if quoted else ""
    )
    return Cause(CauseReason.NOT_SUPPORTED.value, message, path)


def _duplicate(path: str, value: Any) -> Cause:
    return Cause(CauseReason.DUPLICATE.value, f"Duplicate value: {go_repr(value)}", path)


def _duplicate_raw(path: str, rendered: str) -> Cause:
    return Cause(CauseReason.DUPLICATE.value, f"Duplicate value: {rendered}", path)


def _forbidden(path: str, detail: str) -> Cause:
    return Cause(CauseReason.FORBIDDEN.value, f"Forbidden: {detail}", path)


def _too_long(path: str, max_bytes: int) -> Cause:
    return Cause(CauseReason.TOO_LONG.value, f"Too long: must have at most {max_bytes} bytes", path)


# --------------------------------------------------------------------------- name formats

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
DNS1123_LABEL_MAX_LENGTH = 63
_DNS1123_SUBDOMAIN_RE = re.compile(f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*")

_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character"
)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
DNS1035_LABEL_MAX_LENGTH = 63

_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY_FMT)

_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")
_PORT_NAME_ONE_LETTER_RE = re.compile(".*[a-z].*")

TOTAL_ANNOTATION_SIZE_LIMIT_BYTES = 256 * 1024
MAX_SECRET_SIZE = 1024 * 1024
_RBAC_GROUP = "rbac.authorization.k8s.io"


def is_dns1123_label(value: str) -> list[str]:
    """Error messages for a value that is not a DNS-1123 label; [] when valid."""
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if _DNS1123_LABEL_RE.fullmatch(value) is None:
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value) is not None:
            # A valid subdomain but not a label: since length is checked, it has dots.
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """Error messages for a value that is not a DNS-1035 label (Service names)."""
    errs: list[str] = []
    if len(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if _DNS1035_LABEL_RE.fullmatch(value) is None:
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_valid_path_segment_name(value: str) -> list[str]:
    """Error messages for a name that cannot be a URL path segment (RBAC names)."""
    for illegal in (".", ".."):
        if value == illegal:
            return [f"may not be '{illegal}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def _is_valid_path_segment_prefix(value: str) -> list[str]:
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def is_config_map_key(value: str) -> list[str]:
    """Error messages for an invalid ConfigMap/Secret data key."""
    errs: list[str] = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if _CONFIG_KEY_RE.fullmatch(value) is None:
        errs.append(
            regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name")
        )
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(port: str) -> list[str]:
    errs: list[str] = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if _PORT_NAME_CHARSET_RE.fullmatch(port) is None:
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if _PORT_NAME_ONE_LETTER_RE.fullmatch(port) is None:
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _mask_trailing_dash(name: str) -> str:
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


NameValidator = Callable[[str, bool], list[str]]


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def name_is_path_segment(name: str, prefix: bool) -> list[str]:
    return _is_valid_path_segment_prefix(name) if prefix else is_valid_path_segment_name(name)


_NAME_VALIDATORS: dict[tuple[str, str], NameValidator] = {
    ("", "Namespace"): name_is_dns_label,
    ("", "Service"): name_is_dns1035_label,
    (_RBAC_GROUP, "Role"): name_is_path_segment,
    (_RBAC_GROUP, "RoleBinding"): name_is_path_segment,
    (_RBAC_GROUP, "ClusterRole"): name_is_path_segment,
    (_RBAC_GROUP, "ClusterRoleBinding"): name_is_path_segment,
}


def name_validator(group: str, kind: str) -> NameValidator:
    """The ``metadata.name`` format of a kind (DNS-1123 subdomain unless listed)."""
    return _NAME_VALIDATORS.get((group, kind), name_is_dns_subdomain)


# --------------------------------------------------------------------------- JSON helpers


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- metadata


def _validate_labels(labels: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in sorted(_map(labels)):
        value = labels[key]
        for msg in is_qualified_name(key):
            causes.append(_invalid(path, key, msg))
        if not isinstance(value, str):
            continue
        for msg in is_valid_label_value(value):
            causes.append(_invalid(path, value, msg))
    return causes


def _validate_annotations(annotations: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    total = 0
    for key in sorted(_map(annotations)):
        for msg in is_qualified_name(key.lower()):
            causes.append(_invalid(path, key, msg))
        value = annotations[key]
        total += len(key.encode()) + len(value.encode() if isinstance(value, str) else b"")
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES:
        causes.append(_too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES))
    return causes


def _validate_object_meta(
    meta: Mapping[str, Any],
    *,
    namespaced: bool,
    name_fn: NameValidator,
    path: str = "metadata",
    require_name: bool = True,
) -> list[Cause]:
    causes: list[Cause] = []
    generate_name = _str(meta.get("generateName"))
    if generate_name:
        for msg in name_fn(generate_name, True):
            causes.append(_invalid(f"{path}.generateName", generate_name, msg))
    name = _str(meta.get("name"))
    if not name:
        if require_name and not generate_name:
            causes.append(_required(f"{path}.name", "name or generateName is required"))
    else:
        for msg in name_fn(name, False):
            causes.append(_invalid(f"{path}.name", name, msg))
    namespace = _str(meta.get("namespace"))
    if namespaced and require_name:
        if not namespace:
            causes.append(_required(f"{path}.namespace"))
        else:
            for msg in is_dns1123_label(namespace):
                causes.append(_invalid(f"{path}.namespace", namespace, msg))
    generation = meta.get("generation")
    if _is_int(generation) and generation < 0:
        causes.append(
            _invalid(f"{path}.generation", generation, "must be greater than or equal to 0")
        )
    causes.extend(_validate_labels(meta.get("labels"), f"{path}.labels"))
    causes.extend(_validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    for raw_ref in _list(meta.get("ownerReferences")):
        ref = _map(raw_ref)
        ref_path = f"{path}.ownerReferences"
        api_version = _str(ref.get("apiVersion"))
        if not api_version.rpartition("/")[2]:
            causes.append(
                _invalid(f"{ref_path}.apiVersion", api_version, "version must not be empty")
            )
        if not _str(ref.get("kind")):
            causes.append(_invalid(f"{ref_path}.kind", "", "kind must not be empty"))
        if not _str(ref.get("name")):
            causes.append(_invalid(f"{ref_path}.name", "", "name must not be empty"))
        if not _str(ref.get("uid")):
            causes.append(_invalid(f"{ref_path}.uid", "", "uid must not be empty"))
    for finalizer in _list(meta.get("finalizers")):
        if isinstance(finalizer, str):
            for msg in is_qualified_name(finalizer):
                causes.append(_invalid(f"{path}.finalizers", finalizer, msg))
    return causes


# --------------------------------------------------------------------------- label selectors


def _label_selector_string(selector: Mapping[str, Any]) -> str:
    """How Go prints a ``*metav1.LabelSelector`` in a field error (its String method)."""
    labels = _map(selector.get("matchLabels"))
    label_text = "".join(f"{k}: {labels[k]}," for k in sorted(labels))
    parts = []
    for raw_expr in _list(selector.get("matchExpressions")):
        expr = _map(raw_expr)
        values = " ".join(str(v) for v in _list(expr.get("values")))
        parts.append(
            f"&LabelSelectorRequirement{{Key:{expr.get('key', '')},"
            f"Operator:{expr.get('operator', '')},Values:[{values}],}}"
        )
    expr_text = ",".join(parts)
    return (
        f"&LabelSelector{{MatchLabels:map[string]string{{{label_text}}},"
        f"MatchExpressions:[]LabelSelectorRequirement{{{expr_text}}},}}"
    )


def _validate_label_selector(selector: Mapping[str, Any], path: str) -> list[Cause]:
    causes = _validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, raw_expr in enumerate(_list(selector.get("matchExpressions"))):
        expr = _map(raw_expr)
        expr_path = f"{path}.matchExpressions[{i}]"
        operator = expr.get("operator")
        values = _list(expr.get("values"))
        if operator in ("In", "NotIn"):
            if not values:
                causes.append(
                    _required(
                        f"{expr_path}.values",
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    )
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                causes.append(
                    _forbidden(
                        f"{expr_path}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            causes.append(
                _invalid(f"{expr_path}.operator", operator or "", "not a valid selector operator")
            )
        key = _str(expr.get("key"))
        for msg in is_qualified_name(key):
            causes.append(_invalid(f"{expr_path}.key", key, msg))
        for j, value in enumerate(values):
            if isinstance(value, str):
                for msg in is_valid_label_value(value):
                    causes.append(_invalid(f"{expr_path}.values[{j}]", value, msg))
    return causes


# --------------------------------------------------------------------------- pod specs

_PROTOCOLS = ("SCTP", "TCP", "UDP")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")


def _validate_container_ports(ports: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, raw_port in enumerate(_list(ports)):
        port = _map(raw_port)
        port_path = f"{path}[{i}]"
        name = _str(port.get("name"))
        if name:
            msgs = is_valid_port_name(name)
            for msg in msgs:
                causes.append(_invalid(f"{port_path}.name", name, msg))
            if not msgs:
                if name in names:
                    causes.append(_duplicate(f"{port_path}.name", name))
                names.add(name)
        container_port = port.get("containerPort")
        if container_port in (None, 0):
            causes.append(_required(f"{port_path}.containerPort"))
        else:
            for msg in is_valid_port_num(container_port):
                causes.append(_invalid(f"{port_path}.containerPort", container_port, msg))
        host_port = port.get("hostPort")
        if host_port not in (None, 0):
            for msg in is_valid_port_num(host_port):
                causes.append(_invalid(f"{port_path}.hostPort", host_port, msg))
        protocol = port.get("protocol", "TCP")
        if protocol == "":
            causes.append(_required(f"{port_path}.protocol"))
        elif protocol not in _PROTOCOLS:
            causes.append(_not_supported(f"{port_path}.protocol", protocol, _PROTOCOLS))
    return causes


def _validate_containers(
    containers: Any, path: str, names: set[str], *, require: bool, require_image: bool
) -> list[Cause]:
    causes: list[Cause] = []
    items = _list(containers)
    if require and not items:
        return [_required(path)]
    for i, raw_container in enumerate(items):
        container = _map(raw_container)
        c_path = f"{path}[{i}]"
        name = _str(container.get("name"))
        if not name:
            causes.append(_required(f"{c_path}.name"))
        else:
            for msg in is_dns1123_label(name):
                causes.append(_invalid(f"{c_path}.name", name, msg))
            if name in names:
                causes.append(_duplicate(f"{c_path}.name", name))
            names.add(name)
        image = _str(container.get("image"))
        if not image:
            if require_image:
                causes.append(_required(f"{c_path}.image"))
        elif image != image.strip():
            causes.append(
                _invalid(f"{c_path}.image", image, "must not have leading or trailing whitespace")
            )
        causes.extend(_validate_container_ports(container.get("ports"), f"{c_path}.ports"))
        for j, env in enumerate(_list(container.get("env"))):
            if not _str(_map(env).get("name")):
                causes.append(_required(f"{c_path}.env[{j}].name"))
    return causes


def _validate_pod_spec(
    spec: Mapping[str, Any],
    path: str,
    *,
    require_image: bool,
    restart_policies: tuple[str, ...] = _RESTART_POLICIES,
) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    causes.extend(
        _validate_containers(
            spec.get("initContainers"),
            f"{path}.initContainers",
            names,
            require=False,
            require_image=require_image,
        )
    )
    causes.extend(
        _validate_containers(
            spec.get("containers"),
            f"{path}.containers",
            names,
            require=True,
            require_image=require_image,
        )
    )
    restart_policy = spec.get("restartPolicy") or "Always"
    if restart_policy not in restart_policies:
        causes.append(_not_supported(f"{path}.restartPolicy", restart_policy, restart_policies))
    return causes


def _validate_pod_template(
    template: Any,
    path: str,
    *,
    require_image: bool,
    restart_policies: tuple[str, ...] = _RESTART_POLICIES,
) -> list[Cause]:
    if not isinstance(template, Mapping):
        return [_required(path)]
    meta = _map(template.get("metadata"))
    causes = _validate_labels(meta.get("labels"), f"{path}.metadata.labels")
    causes.extend(_validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations"))
    causes.extend(
        _validate_pod_spec(
            _map(template.get("spec")),
            f"{path}.spec",
            require_image=require_image,
            restart_policies=restart_policies,
        )
    )
    return causes


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class _Options:
    template_image_required: bool


def _non_negative(spec: Mapping[str, Any], field_name: str, path: str) -> list[Cause]:
    value = spec.get(field_name)
    if _is_int(value) and value < 0:
        return [_invalid(f"{path}.{field_name}", value, "must be greater than or equal to 0")]
    return []


_EMPTY_SELECTOR_WORD = {
    "Deployment": "deployment",
    "ReplicaSet": "deployment",  # sic: the real server says "deployment" for ReplicaSets
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
}


def _validate_workload(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    spec = _map(obj.get("spec"))
    causes = _non_negative(spec, "replicas", "spec")
    raw_selector = spec.get("selector")
    selector_ok = False
    if not isinstance(raw_selector, Mapping):
        causes.append(_required("spec.selector"))
    else:
        causes.extend(_validate_label_selector(raw_selector, "spec.selector"))
        if not raw_selector.get("matchLabels") and not raw_selector.get("matchExpressions"):
            causes.append(
                _invalid_raw(
                    "spec.selector",
                    _label_selector_string(raw_selector),
                    f"empty selector is invalid for {_EMPTY_SELECTOR_WORD[kind]}",
                )
            )
        else:
            selector_ok = True
    template = spec.get("template")
    if selector_ok and isinstance(raw_selector, Mapping) and isinstance(template, Mapping):
        try:
            selector = selector_from_label_selector_object(raw_selector)
        except SelectorError:
            causes.append(
                _invalid_raw(
                    "spec.selector", _label_selector_string(raw_selector), "invalid label selector"
                )
            )
        else:
            labels = _map(_map(template.get("metadata")).get("labels"))
            str_labels = {str(k): str(v) for k, v in labels.items()}
            if not selector.empty and not selector.matches(str_labels):
                causes.append(
                    _invalid(
                        "spec.template.metadata.labels",
                        str_labels,
                        "`selector` does not match template `labels`",
                    )
                )
    causes.extend(
        _validate_pod_template(
            template,
            "spec.template",
            require_image=opts.template_image_required,
            restart_policies=("Always",),
        )
    )
    if kind == "Deployment":
        strategy_type = _map(spec.get("strategy")).get("type")
        if strategy_type is not None and strategy_type not in ("Recreate", "RollingUpdate"):
            causes.append(
                _not_supported("spec.strategy.type", strategy_type, ("Recreate", "RollingUpdate"))
            )
    if kind == "StatefulSet":
        policy = spec.get("podManagementPolicy")
        if policy is not None and policy not in ("OrderedReady", "Parallel"):
            causes.append(
                _not_supported("spec.podManagementPolicy", policy, ("OrderedReady", "Parallel"))
            )
    return causes


def _validate_job_spec(spec: Mapping[str, Any], path: str, opts: _Options) -> list[Cause]:
    causes: list[Cause] = []
    for name in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit"):
        causes.extend(_non_negative(spec, name, path))
    causes.extend(
        _validate_pod_template(
            spec.get("template"),
            f"{path}.template",
            require_image=opts.template_image_required,
            restart_policies=("OnFailure", "Never"),
        )
    )
    return causes


def _validate_job(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    return _validate_job_spec(_map(obj.get("spec")), "spec", opts)


def _validate_cron_job(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    causes: list[Cause] = []
    name = _str(_map(obj.get("metadata")).get("name"))
    if len(name) > 52:
        causes.append(_invalid("metadata.name", name, "must be no more than 52 characters"))
    spec = _map(obj.get("spec"))
    schedule = _str(spec.get("schedule"))
    if not schedule:
        causes.append(_required("spec.schedule"))
    elif not schedule.startswith("@") and len(schedule.split()) != 5:
        causes.append(
            _invalid(
                "spec.schedule",
                schedule,
                f"expected exactly 5 fields, found {len(schedule.split())}: {schedule}",
            )
        )
    policy = spec.get("concurrencyPolicy")
    if policy is not None and policy not in ("Allow", "Forbid", "Replace"):
        causes.append(
            _not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace"))
        )
    causes.extend(_non_negative(spec, "startingDeadlineSeconds", "spec"))
    job_template = spec.get("jobTemplate")
    if not isinstance(job_template, Mapping):
        causes.append(_required("spec.jobTemplate"))
    else:
        causes.extend(
            _validate_job_spec(_map(job_template.get("spec")), "spec.jobTemplate.spec", opts)
        )
    return causes


def _validate_pod(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    return _validate_pod_spec(_map(obj.get("spec")), "spec", require_image=True)


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _service_port_repr(port: Mapping[str, Any]) -> str:
    protocol = port.get("protocol") or "TCP"
    return (
        f'core.ServicePort{{Name:"", Protocol:{go_quote(str(protocol))}, '
        f"AppProtocol:(*string)(nil), Port:{port.get('port')}, "
        f'TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}'
    )


def _validate_service(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    causes: list[Cause] = []
    spec = _map(obj.get("spec"))
    service_type = spec.get("type") or "ClusterIP"
    ports = _list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if not ports and not headless and service_type != "ExternalName":
        causes.append(_required("spec.ports"))
    if service_type not in _SERVICE_TYPES:
        causes.append(_not_supported("spec.type", service_type, _SERVICE_TYPES))
    if service_type == "ExternalName":
        cname = _str(spec.get("externalName")).removesuffix(".")
        if cname:
            for msg in is_dns1123_subdomain(cname):
                causes.append(_invalid("spec.externalName", cname, msg))
        else:
            causes.append(_required("spec.externalName"))
    names: set[str] = set()
    require_name = len(ports) > 1
    seen: set[tuple[str, Any]] = set()
    for i, raw_port in enumerate(ports):
        port = _map(raw_port)
        p_path = f"spec.ports[{i}]"
        name = _str(port.get("name"))
        if require_name and not name:
            causes.append(_required(f"{p_path}.name"))
        elif name:
            for msg in is_dns1123_label(name):
                causes.append(_invalid(f"{p_path}.name", name, msg))
            if name in names:
                causes.append(_duplicate(f"{p_path}.name", name))
            names.add(name)
        number = port.get("port")
        for msg in is_valid_port_num(number):
            causes.append(_invalid(f"{p_path}.port", number if number is not None else 0, msg))
        protocol = port.get("protocol", "TCP")
        if protocol == "":
            causes.append(_required(f"{p_path}.protocol"))
        elif protocol not in _PROTOCOLS:
            causes.append(_not_supported(f"{p_path}.protocol", protocol, _PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, str) and target:
            for msg in is_valid_port_name(target):
                causes.append(_invalid(f"{p_path}.targetPort", target, msg))
        elif target not in (None, 0) and not isinstance(target, str):
            for msg in is_valid_port_num(target):
                causes.append(_invalid(f"{p_path}.targetPort", target, msg))
        node_port = port.get("nodePort")
        if node_port not in (None, 0):
            if service_type == "ClusterIP":
                causes.append(
                    _forbidden(f"{p_path}.nodePort", "may not be used when `type` is 'ClusterIP'")
                )
            elif service_type in ("NodePort", "LoadBalancer") and not (
                _is_int(node_port) and 30000 <= node_port <= 32767
            ):
                causes.append(
                    _invalid(
                        f"{p_path}.nodePort",
                        node_port,
                        "provided port is not in the valid range. The range of valid ports "
                        "is 30000-32767",
                    )
                )
    for i, raw_port in enumerate(ports):
        port = _map(raw_port)
        key = (str(port.get("protocol") or "TCP"), port.get("port"))
        if key in seen:
            causes.append(_duplicate_raw(f"spec.ports[{i}]", _service_port_repr(port)))
        seen.add(key)
    if service_type != "ExternalName":
        causes.extend(_validate_labels(spec.get("selector"), "spec.selector"))
        causes.extend(_validate_cluster_ips(spec))
    return causes


def _validate_cluster_ips(spec: Mapping[str, Any]) -> list[Cause]:
    """``clusterIP`` and ``clusterIPs`` agree (``ValidateServiceClusterIPsRelatedFields``)."""
    cluster_ip = _str(spec.get("clusterIP"))
    cluster_ips = [ip for ip in _list(spec.get("clusterIPs")) if isinstance(ip, str)]
    if cluster_ip:
        if not cluster_ips:
            return [_required("spec.clusterIPs")]
        if cluster_ips[0] != cluster_ip:
            return [_invalid("spec.clusterIPs", cluster_ips, "first value must match `clusterIP`")]
    elif cluster_ips:
        return [
            _invalid(
                "spec.clusterIPs", cluster_ips, "must be empty when `clusterIP` is not specified"
            )
        ]
    return []


def _b64_len(value: str) -> int:
    stripped = value.strip()
    return max(len(stripped) * 3 // 4 - stripped.count("="), 0)


def _validate_config_map(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    causes: list[Cause] = []
    data = _map(obj.get("data"))
    binary = _map(obj.get("binaryData"))
    total = 0
    for key in sorted(data):
        for msg in is_config_map_key(key):
            causes.append(_invalid(f"data[{key}]", key, msg))
        if key in binary:
            causes.append(_invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        value = data[key]
        total += len(value.encode()) if isinstance(value, str) else 0
    for key in sorted(binary):
        for msg in is_config_map_key(key):
            causes.append(_invalid(f"binaryData[{key}]", key, msg))
        if key in data:
            causes.append(_invalid(f"binaryData[{key}]", key, "duplicate of key present in data"))
        value = binary[key]
        total += _b64_len(value) if isinstance(value, str) else 0
    if total > MAX_SECRET_SIZE:
        causes.append(_too_long("", MAX_SECRET_SIZE))
    return causes


def _validate_secret(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    causes: list[Cause] = []
    data = _map(obj.get("data"))
    string_data = _map(obj.get("stringData"))
    keys = sorted(set(data) | set(string_data))
    total = 0
    for key in keys:
        for msg in is_config_map_key(key):
            causes.append(_invalid(f"data[{key}]", key, msg))
        if key in string_data:
            value = string_data[key]
            total += len(value.encode()) if isinstance(value, str) else 0
        else:
            value = data[key]
            total += _b64_len(value) if isinstance(value, str) else 0
    if total > MAX_SECRET_SIZE:
        causes.append(_too_long("data", MAX_SECRET_SIZE))
    secret_type = obj.get("type") or "Opaque"
    required_keys: dict[str, tuple[str, ...]] = {
        "kubernetes.io/tls": ("tls.crt", "tls.key"),
        "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
        "kubernetes.io/dockercfg": (".dockercfg",),
        "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    }
    for key in required_keys.get(str(secret_type), ()):
        if key not in keys:
            causes.append(_required(f"data[{key}]"))
    return causes


def _validate_policy_rules(obj: Obj, *, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    for i, raw_rule in enumerate(_list(obj.get("rules"))):
        rule = _map(raw_rule)
        path = f"rules[{i}]"
        if not _list(rule.get("verbs")):
            causes.append(_required(f"{path}.verbs", "verbs must contain at least one value"))
        urls = _list(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                causes.append(
                    _invalid(
                        f"{path}.nonResourceURLs",
                        urls,
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append(
                    _invalid(
                        f"{path}.nonResourceURLs",
                        urls,
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not _list(rule.get("apiGroups")):
            causes.append(
                _required(f"{path}.apiGroups", "resource rules must supply at least one api group")
            )
        if not _list(rule.get("resources")):
            causes.append(
                _required(f"{path}.resources", "resource rules must supply at least one resource")
            )
    return causes


def _validate_role(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    return _validate_policy_rules(obj, namespaced=True)


def _validate_cluster_role(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    if obj.get("aggregationRule") is not None and not obj.get("rules"):
        return []
    return _validate_policy_rules(obj, namespaced=False)


def _validate_binding(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    causes: list[Cause] = []
    ref = _map(obj.get("roleRef"))
    kinds = ("Role", "ClusterRole") if kind == "RoleBinding" else ("ClusterRole",)
    ref_group = ref.get("apiGroup", "")
    if ref_group != _RBAC_GROUP:
        causes.append(_not_supported("roleRef.apiGroup", ref_group, (_RBAC_GROUP,)))
    ref_kind = ref.get("kind", "")
    if ref_kind not in kinds:
        causes.append(_not_supported("roleRef.kind", ref_kind, kinds))
    ref_name = _str(ref.get("name"))
    if not ref_name:
        causes.append(_required("roleRef.name"))
    else:
        for msg in is_valid_path_segment_name(ref_name):
            causes.append(_invalid("roleRef.name", ref_name, msg))
    for i, raw_subject in enumerate(_list(obj.get("subjects"))):
        subject = _map(raw_subject)
        path = f"subjects[{i}]"
        name = _str(subject.get("name"))
        if not name:
            causes.append(_required(f"{path}.name"))
        subject_kind = subject.get("kind", "")
        if subject_kind == "ServiceAccount":
            if name:
                for msg in is_dns1123_subdomain(name):
                    causes.append(_invalid(f"{path}.name", name, msg))
            api_group = subject.get("apiGroup", "")
            if api_group:
                causes.append(_not_supported(f"{path}.apiGroup", api_group, ("",)))
            if kind == "ClusterRoleBinding" and not _str(subject.get("namespace")):
                causes.append(_required(f"{path}.namespace"))
        elif subject_kind in ("User", "Group"):
            api_group = subject.get("apiGroup", "")
            if api_group != _RBAC_GROUP:
                causes.append(_not_supported(f"{path}.apiGroup", api_group, (_RBAC_GROUP,)))
        else:
            causes.append(
                _not_supported(f"{path}.kind", subject_kind, ("ServiceAccount", "User", "Group"))
            )
    return causes


def _crd_name_validator(obj: Obj) -> NameValidator:
    spec = _map(obj.get("spec"))
    required_name = f"{_str(_map(spec.get('names')).get('plural'))}.{_str(spec.get('group'))}"

    def validate_name(name: str, prefix: bool) -> list[str]:
        errs = name_is_dns_subdomain(name, prefix)
        if name != required_name:
            errs.append('must be spec.names.plural+"."+spec.group')
        return errs

    return validate_name


def _validate_crd(kind: str, obj: Obj, opts: _Options) -> list[Cause]:
    causes: list[Cause] = []
    spec = _map(obj.get("spec"))
    group = _str(spec.get("group"))
    if not group:
        causes.append(_required("spec.group"))
    else:
        errs = is_dns1123_subdomain(group)
        if errs:
            causes.append(_invalid("spec.group", group, ",".join(errs)))
        elif len(group.split(".")) < 2:
            causes.append(_invalid("spec.group", group, "should be a domain with at least one dot"))
    names = _map(spec.get("names"))
    plural = _str(names.get("plural"))
    crd_kind = _str(names.get("kind"))
    singular = _str(names.get("singular")) or crd_kind.lower()
    list_kind = _str(names.get("listKind")) or (f"{crd_kind}List" if crd_kind else "")
    for field_name, value, lower in (
        ("plural", plural, False),
        ("singular", singular, False),
        ("kind", crd_kind, True),
        ("listKind", list_kind, True),
    ):
        if not value:
            continue
        errs = is_dns1035_label(value.lower() if lower else value)
        if errs:
            detail = ",".join(errs)
            if lower:
                detail = "may have mixed case, but should otherwise match: " + detail
            causes.append(_invalid(f"spec.names.{field_name}", value, detail))
    for list_name in ("shortNames", "categories"):
        for i, raw_item in enumerate(_list(names.get(list_name))):
            item = raw_item if isinstance(raw_item, str) else ""
            errs = is_dns1035_label(item)
            if errs:
                causes.append(_invalid(f"spec.names.{list_name}[{i}]", item, ",".join(errs)))
    if crd_kind and crd_kind == list_kind:
        causes.append(
            _invalid("spec.names.listKind", list_kind, "kind and listKind may not be the same")
        )
    # Required after defaulting (singular and listKind default from kind).
    for field_name, value in (
        ("plural", plural),
        ("singular", singular),
        ("kind", crd_kind),
        ("listKind", list_kind),
    ):
        if not value:
            causes.append(_required(f"spec.names.{field_name}"))
    scope = spec.get("scope")
    if not scope:
        causes.append(_required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        causes.append(_not_supported("spec.scope", scope, ("Cluster", "Namespaced")))
    versions = _list(spec.get("versions"))
    version_names = [_str(_map(v).get("name")) for v in versions]
    storage_count = 0
    for i, raw_version in enumerate(versions):
        version = _map(raw_version)
        v_path = f"spec.versions[{i}]"
        vname = _str(version.get("name"))
        errs = is_dns1035_label(vname)
        if errs:
            causes.append(_invalid(f"{v_path}.name", vname, ",".join(errs)))
        if version.get("storage") is True:
            storage_count += 1
        schema = _map(version.get("schema")).get("openAPIV3Schema")
        if not isinstance(schema, Mapping):
            causes.append(_required(f"{v_path}.schema.openAPIV3Schema", "schemas are required"))
        elif not schema.get("type"):
            causes.append(
                _required(f"{v_path}.schema.openAPIV3Schema.type", "must not be empty at the root")
            )
        scale = _map(_map(version.get("subresources")).get("scale"))
        if scale:
            s_path = f"{v_path}.subresources.scale"
            spec_path = _str(scale.get("specReplicasPath"))
            if not spec_path:
                causes.append(_required(f"{s_path}.specReplicasPath"))
            elif not spec_path.startswith(".spec."):
                causes.append(
                    _invalid(
                        f"{s_path}.specReplicasPath", spec_path, "should be a json path under .spec"
                    )
                )
            status_path = _str(scale.get("statusReplicasPath"))
            if not status_path:
                causes.append(_required(f"{s_path}.statusReplicasPath"))
            elif not status_path.startswith(".status."):
                causes.append(
                    _invalid(
                        f"{s_path}.statusReplicasPath",
                        status_path,
                        "should be a json path under .status",
                    )
                )
    if len(set(version_names)) != len(version_names):
        causes.append(_invalid("spec.versions", version_names, "must contain unique version names"))
    if storage_count != 1:
        causes.append(
            _invalid(
                "spec.versions",
                version_names,
                "must have exactly one version marked as storage version",
            )
        )
    return causes


# --------------------------------------------------------------------------- updates
#
# What may change once an object exists, and the cause the server gives when something that
# may not changes: a port of the ``Validate*Update`` functions of ``pkg/apis/*/validation``
# and of the registry strategies around them (``pkg/registry/*/strategy.go``, the Service
# REST storage).  Bad values are rendered as kube-apiserver 1.30-1.33 does (``%q`` for
# strings, the ``String()`` form of label selectors); a pod template or another composite
# value, which Go prints as ``%#v`` of an internal struct with pointer addresses, is
# rendered as compact JSON, as 1.34+ servers do for composites.

_IMMUTABLE = "field is immutable"
_WHEN_IMMUTABLE_SET = "field is immutable when `immutable` is set"
_STATEFULSET_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)
_STATEFULSET_FORBIDDEN = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
)
_POD_UPDATABLE_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)
_PVC_FORBIDDEN = (
    "spec is immutable after creation except resources.requests and "
    "volumeAttributesClassName for bound claims"
)
_MAX_INT32 = 2**31 - 1


def _semantic(value: Any) -> Any:
    """``value`` as the server's semantic equality sees it: absent, null and empty are one."""
    if isinstance(value, Mapping):
        items = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None} or None
    if isinstance(value, list):
        return [_semantic(v) for v in value] or None
    if isinstance(value, str) and not value:
        return None
    return value


def _same(new: Any, old: Any) -> bool:
    return bool(_semantic(new) == _semantic(old))


def _json_repr(value: Any) -> str:
    return "null" if value is None else json.dumps(value, separators=(",", ":"))


def _value_repr(value: Any) -> str:
    """A bad value in a field error: Go's rendering for scalars, JSON for composites."""
    if isinstance(value, Mapping | list):
        return _json_repr(value)
    return go_repr(value)


def _selector_repr(selector: Any) -> str:
    return _label_selector_string(selector) if isinstance(selector, Mapping) else "null"


def _immutable(path: str, rendered: str) -> Cause:
    return _invalid_raw(path, rendered, _IMMUTABLE)


def _set_or_drop(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = copy.deepcopy(value)


def _spec_diff(type_name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """A ``cmp.Diff``-shaped summary of two specs (go-cmp's own output is deliberately
    unstable, so no client can depend on more than its shape)."""
    lines = [f"  {type_name}{{"]
    same = 0

    def flush() -> None:
        if same:
            lines.append(f"  \t... // {same} identical field{'s' if same > 1 else ''}")

    for key in [*old, *(k for k in new if k not in old)]:
        if _same(new.get(key), old.get(key)):
            same += 1
            continue
        flush()
        same = 0
        name = key[:1].upper() + key[1:]
        before, after = old.get(key), new.get(key)
        lines.append(f"- \t{name}: {'nil' if before is None else _json_repr(before)},")
        lines.append(f"+ \t{name}: {'nil' if after is None else _json_repr(after)},")
    flush()
    lines.append("  }")
    return "\n".join(lines) + "\n"


_QUANTITY_RE = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?"
)
_QUANTITY_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal("1e3"),
    "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
    "E": Decimal("1e18"), "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip


def _quantity(value: Any) -> Decimal | None:
    """A ``resource.Quantity`` (``1Gi``, ``500m``, ``1e3``) as a number; None if malformed."""
    if _is_int(value):
        return Decimal(value)
    match = _QUANTITY_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    number = Decimal(match.group(1))
    if match.group(2):
        return number * Decimal(10) ** int(match.group(2)[1:])
    return number * _QUANTITY_SUFFIXES.get(match.group(3) or "", Decimal(1))


def _storage_request(spec: Mapping[str, Any]) -> Any:
    return _map(_map(spec.get("resources")).get("requests")).get("storage")


def _validate_selector_update(new: Obj, old: Obj) -> list[Cause]:
    """Deployments, ReplicaSets and DaemonSets of ``apps/v1``: the selector is fixed."""
    selector = _map(new.get("spec")).get("selector")
    if _same(selector, _map(old.get("spec")).get("selector")):
        return []
    return [_immutable("spec.selector", _selector_repr(selector))]


def _validate_stateful_set_update(new: Obj, old: Obj) -> list[Cause]:
    def fixed(obj: Obj) -> dict[str, Any]:
        spec = _map(obj.get("spec"))
        return {k: v for k, v in spec.items() if k not in _STATEFULSET_MUTABLE}

    if _same(fixed(new), fixed(old)):
        return []
    return [_forbidden("spec", _STATEFULSET_FORBIDDEN)]


def _with_scheduling_directives(old_template: Any, new_template: Any) -> dict[str, Any]:
    """``old_template`` with the new template's scheduling directives, which a suspended Job
    that never started may change (``validatePodTemplateUpdate``)."""
    old = copy.deepcopy(dict(_map(old_template)))
    new = _map(new_template)
    old_meta, new_meta = dict(_map(old.get("metadata"))), _map(new.get("metadata"))
    for key in ("labels", "annotations"):
        _set_or_drop(old_meta, key, new_meta.get(key))
    old["metadata"] = old_meta
    old_spec, new_spec = dict(_map(old.get("spec"))), _map(new.get("spec"))
    for key in ("nodeSelector", "tolerations", "schedulingGates"):
        _set_or_drop(old_spec, key, new_spec.get(key))
    new_affinity = new_spec.get("affinity")
    old_affinity = dict(_map(old_spec.get("affinity")))
    _set_or_drop(old_affinity, "nodeAffinity", _map(new_affinity).get("nodeAffinity"))
    _set_or_drop(old_spec, "affinity", old_affinity or None)
    old["spec"] = old_spec
    return old


def _validate_job_update(new: Obj, old: Obj) -> list[Cause]:
    causes: list[Cause] = []
    spec, old_spec = _map(new.get("spec")), _map(old.get("spec"))
    completions = spec.get("completions")
    if completions != old_spec.get("completions"):
        if spec.get("completionMode") != "Indexed":
            causes.append(_immutable("spec.completions", go_repr(completions)))
        elif completions is not None and completions != spec.get("parallelism"):
            causes.append(
                _invalid(
                    "spec.completions",
                    completions,
                    "can only be modified in tandem with spec.parallelism",
                )
            )
    if not _same(spec.get("selector"), old_spec.get("selector")):
        causes.append(_immutable("spec.selector", _selector_repr(spec.get("selector"))))
    template = spec.get("template")
    old_template = old_spec.get("template")
    never_started = not _map(old.get("status")).get("startTime")
    if old_spec.get("suspend") is True and never_started:
        old_template = _with_scheduling_directives(old_template, template)
    if not _same(template, old_template):
        causes.append(_immutable("spec.template", _json_repr(template)))
    for name in (
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ):
        if not _same(spec.get(name), old_spec.get(name)):
            causes.append(_immutable(f"spec.{name}", _value_repr(spec.get(name))))
    return causes


def _toleration_key(toleration: Any) -> Any:
    return _semantic({k: v for k, v in _map(toleration).items() if k != "tolerationSeconds"})


def _validate_pod_update(new: Obj, old: Obj) -> list[Cause]:
    causes: list[Cause] = []
    spec, old_spec = _map(new.get("spec")), _map(old.get("spec"))
    for field_name in ("containers", "initContainers"):
        if len(_list(spec.get(field_name))) != len(_list(old_spec.get(field_name))):
            causes.append(
                _forbidden(f"spec.{field_name}", "pod updates may not add or remove containers")
            )
            return causes
    deadline, old_deadline = (
        spec.get("activeDeadlineSeconds"),
        old_spec.get("activeDeadlineSeconds"),
    )
    if deadline is not None:
        if not _is_int(deadline) or not 0 <= deadline <= _MAX_INT32:
            causes.append(
                _invalid(
                    "spec.activeDeadlineSeconds",
                    deadline,
                    f"must be between 0 and {_MAX_INT32}, inclusive",
                )
            )
            return causes
        if _is_int(old_deadline) and old_deadline < deadline:
            causes.append(
                _invalid(
                    "spec.activeDeadlineSeconds",
                    deadline,
                    "must be less than or equal to previous value",
                )
            )
            return causes
    elif old_deadline is not None:
        causes.append(
            _invalid(
                "spec.activeDeadlineSeconds",
                None,
                "must not update from a positive integer to nil value",
            )
        )
    new_tolerations = [_toleration_key(t) for t in _list(spec.get("tolerations"))]
    for toleration in _list(old_spec.get("tolerations")):
        if _toleration_key(toleration) not in new_tolerations:
            causes.append(
                _forbidden(
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                )
            )
            break
    if _same(spec, old_spec):
        return causes
    munged = copy.deepcopy(dict(spec))
    for field_name in ("containers", "initContainers"):
        old_containers = _list(old_spec.get(field_name))
        for i, container in enumerate(_list(munged.get(field_name))):
            if isinstance(container, dict):
                _set_or_drop(container, "image", _map(old_containers[i]).get("image"))
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        _set_or_drop(munged, key, old_spec.get(key))
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if _is_int(old_grace) and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if not _same(munged, old_spec):
        detail = (
            f"pod updates may not change fields other than {','.join(_POD_UPDATABLE_FIELDS)}\n"
            + _spec_diff("core.PodSpec", old_spec, munged)
        )
        causes.append(_forbidden("spec", detail))
    return causes


def _validate_pvc_update(new: Obj, old: Obj) -> list[Cause]:
    causes: list[Cause] = []
    spec, old_spec = _map(new.get("spec")), _map(old.get("spec"))
    new_clone, old_clone = copy.deepcopy(dict(spec)), copy.deepcopy(dict(old_spec))
    if not old_spec.get("volumeName"):
        # The binder sets volumeName once.
        _set_or_drop(old_clone, "volumeName", spec.get("volumeName"))
    requests = _map(_map(new_clone.get("resources")).get("requests"))
    if _map(new.get("status")).get("phase") == "Bound" and requests:
        requests = dict(requests)
        _set_or_drop(requests, "storage", _storage_request(old_spec))
        new_clone["resources"] = {**_map(new_clone.get("resources")), "requests": requests}
    _set_or_drop(new_clone, "volumeAttributesClassName", old_clone.get("volumeAttributesClassName"))
    if not _same(new_clone, old_clone):
        detail = f"{_PVC_FORBIDDEN}\n" + _spec_diff(
            "core.PersistentVolumeClaimSpec", old_clone, new_clone
        )
        causes.append(_forbidden("spec", detail))
    new_size, old_size = _quantity(_storage_request(spec)), _quantity(_storage_request(old_spec))
    if new_size is not None and old_size is not None and new_size < old_size:
        causes.append(
            _forbidden(
                "spec.resources.requests.storage", "field can not be less than previous value"
            )
        )
    if spec.get("volumeMode") != old_spec.get("volumeMode"):
        # Upstream names the field without its "spec." prefix.
        causes.append(_immutable("volumeMode", go_repr(spec.get("volumeMode"))))
    return causes


def _immutable_data_causes(new: Obj, old: Obj, keys: tuple[str, ...]) -> list[Cause]:
    """ConfigMaps and Secrets created with ``immutable: true`` (compared like
    ``reflect.DeepEqual``: an empty map is not an absent one)."""
    if old.get("immutable") is not True:
        return []
    causes: list[Cause] = []
    if new.get("immutable") is not True:
        causes.append(_forbidden("immutable", _WHEN_IMMUTABLE_SET))
    for key in keys:
        if new.get(key) != old.get(key):
            causes.append(_forbidden(key, _WHEN_IMMUTABLE_SET))
    return causes


def _validate_config_map_update(new: Obj, old: Obj) -> list[Cause]:
    return _immutable_data_causes(new, old, ("data", "binaryData"))


def _validate_secret_update(new: Obj, old: Obj) -> list[Cause]:
    causes: list[Cause] = []
    if new.get("type") != old.get("type"):
        causes.append(_immutable("type", go_repr(new.get("type"))))
    return causes + _immutable_data_causes(new, old, ("data",))


def _cluster_ips(spec: Mapping[str, Any]) -> list[Any]:
    return list(_list(spec.get("clusterIPs")))


def _is_headless(spec: Mapping[str, Any]) -> bool:
    return _cluster_ips(spec) == ["None"]


def _validate_service_update(new: Obj, old: Obj) -> list[Cause]:
    """``validateUpgradeDowngradeClusterIPs``/``IPFamilies`` and ``loadBalancerClass``."""
    spec, old_spec = _map(new.get("spec")), _map(old.get("spec"))
    causes: list[Cause] = []
    external = "ExternalName" in (spec.get("type"), old_spec.get("type"))
    if external or (_is_headless(spec) and _is_headless(old_spec)):
        pass
    else:
        ips, old_ips = _cluster_ips(spec), _cluster_ips(old_spec)
        path = "spec.clusterIPs[0]"
        if len(ips) == len(old_ips):
            for i, ip in enumerate(old_ips):
                if ip != ips[i]:
                    causes.append(_invalid(f"spec.clusterIPs[{i}]", ips, "may not change once set"))
        elif len(old_ips) > len(ips):
            if not ips:
                causes.append(_invalid(path, ips, "primary clusterIP can not be unset"))
            elif ips[0] != old_ips[0]:
                causes.append(_invalid(path, ips, "may not change once set"))
            if len(ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
                causes.append(
                    _invalid(
                        "spec.ipFamilyPolicy",
                        spec.get("ipFamilyPolicy"),
                        "must be set to 'SingleStack' when releasing the secondary clusterIP",
                    )
                )
        elif old_ips and ips[0] != old_ips[0]:
            causes.append(_invalid(path, ips, "may not change once set"))
    headless_change = _is_headless(spec) != _is_headless(old_spec)
    if not external and not headless_change and not _is_headless(spec):
        families = list(_list(spec.get("ipFamilies")))
        old_families = list(_list(old_spec.get("ipFamilies")))
        if len(families) == len(old_families) and families != old_families:
            causes.append(_invalid("spec.ipFamilies[0]", families, "may not change once set"))
        elif families and old_families and families[0] != old_families[0]:
            causes.append(
                _invalid("spec.ipFamilies[0]", _cluster_ips(spec), "may not change once set")
            )
    if spec.get("type") == "LoadBalancer" == old_spec.get("type"):
        lb_class = spec.get("loadBalancerClass")
        if lb_class != old_spec.get("loadBalancerClass"):
            causes.append(_invalid("spec.loadBalancerClass", lb_class, "may not change once set"))
    return causes


def _prepare_service(spec: dict[str, Any], old_spec: Mapping[str, Any] | None) -> None:
    """``dropTypeDependentFields``, ``patchAllocatedValues`` and ``normalizeClusterIPs``."""
    if old_spec is not None:
        old_needs_ip = old_spec.get("type") != "ExternalName"
        new_needs_ip = spec.get("type") != "ExternalName"
        if old_needs_ip and not new_needs_ip:
            # Leaving the IP family: drop what the server filled in, unless the user changed it.
            if spec.get("clusterIP") == old_spec.get("clusterIP") and _cluster_ips(
                spec
            ) == _cluster_ips(old_spec):
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            for key in ("ipFamilies", "ipFamilyPolicy"):
                if spec.get(key) == old_spec.get(key):
                    spec.pop(key, None)
        if old_needs_ip and new_needs_ip:
            # An update that omits allocated values keeps them (idempotent re-apply).
            if not spec.get("clusterIP") and old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
            if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
                spec["clusterIPs"] = copy.deepcopy(old_spec["clusterIPs"])
        node_port_types = ("NodePort", "LoadBalancer")
        if spec.get("type") in node_port_types and old_spec.get("type") in node_port_types:
            _patch_node_ports(spec, old_spec)
    cluster_ip = _str(spec.get("clusterIP"))
    ips = _cluster_ips(spec)
    if old_spec is None:
        if cluster_ip and not ips:
            spec["clusterIPs"] = [cluster_ip]
        return
    old_ip, old_ips = _str(old_spec.get("clusterIP")), _cluster_ips(old_spec)
    if old_ips and not ips and old_ip == cluster_ip:
        spec["clusterIPs"] = ips = copy.deepcopy(old_ips)
    if old_ip != cluster_ip and ips == old_ips:
        if old_ip and not cluster_ip:
            spec.pop("clusterIPs", None)
        else:
            spec["clusterIPs"] = [cluster_ip]


def _patch_node_ports(spec: dict[str, Any], old_spec: Mapping[str, Any]) -> None:
    def used(ports: list[Any]) -> set[Any]:
        return {_map(p).get("nodePort") for p in ports if _map(p).get("nodePort")}

    ports, old_ports = _list(spec.get("ports")), _list(old_spec.get("ports"))
    taken = used(old_ports) & used(ports)
    by_name = {_map(p).get("name", ""): _map(p).get("nodePort") for p in old_ports}
    for port in ports:
        if isinstance(port, dict) and not port.get("nodePort"):
            old_value = by_name.get(port.get("name", ""))
            if old_value and old_value not in taken:
                port["nodePort"] = old_value
    keeps_health_check = (
        spec.get("type") == old_spec.get("type") == "LoadBalancer"
        and spec.get("externalTrafficPolicy") == "Local"
    )
    if keeps_health_check and not spec.get("healthCheckNodePort"):
        _set_or_drop(spec, "healthCheckNodePort", old_spec.get("healthCheckNodePort"))


_UpdateValidator = Callable[[Obj, Obj], list[Cause]]

#: Per kind: its update checks, and whether they come before the checks every write gets
#: (the order upstream's ``ValidateUpdate`` reports them in).
_UPDATE_VALIDATORS: dict[tuple[str, str], tuple[_UpdateValidator, bool]] = {
    ("apps", "Deployment"): (_validate_selector_update, False),
    ("apps", "ReplicaSet"): (_validate_selector_update, False),
    ("apps", "DaemonSet"): (_validate_selector_update, False),
    ("apps", "StatefulSet"): (_validate_stateful_set_update, False),
    ("batch", "Job"): (_validate_job_update, False),
    ("", "Pod"): (_validate_pod_update, False),
    ("", "PersistentVolumeClaim"): (_validate_pvc_update, False),
    ("", "Service"): (_validate_service_update, True),
    ("", "ConfigMap"): (_validate_config_map_update, True),
    ("", "Secret"): (_validate_secret_update, True),
}


_KindValidator = Callable[[str, Obj, _Options], list[Cause]]

_KIND_VALIDATORS: dict[tuple[str, str], _KindValidator] = {
    ("apps", "Deployment"): _validate_workload,
    ("apps", "ReplicaSet"): _validate_workload,
    ("apps", "StatefulSet"): _validate_workload,
    ("apps", "DaemonSet"): _validate_workload,
    ("batch", "Job"): _validate_job,
    ("batch", "CronJob"): _validate_cron_job,
    ("", "Pod"): _validate_pod,
    ("", "Service"): _validate_service,
    ("", "ConfigMap"): _validate_config_map,
    ("", "Secret"): _validate_secret,
    (_RBAC_GROUP, "Role"): _validate_role,
    (_RBAC_GROUP, "ClusterRole"): _validate_cluster_role,
    (_RBAC_GROUP, "RoleBinding"): _validate_binding,
    (_RBAC_GROUP, "ClusterRoleBinding"): _validate_binding,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _validate_crd,
}


def validate(
    rt_group: str,
    kind: str,
    obj: Mapping[str, Any],
    *,
    namespaced: bool,
    template_image_required: bool = True,
) -> list[Cause]:
    """The causes of a 422 Invalid for ``obj`` of ``kind`` in ``rt_group``; [] when valid.

    ``obj`` must already be defaulted, named (``generateName`` resolved) and carry the
    request's namespace when ``namespaced``; a missing name is still accepted when
    ``generateName`` is set.  ``template_image_required`` makes an empty container image in a
    workload's pod template an error (real servers only require it in Pods).
    """
    meta = _map(obj.get("metadata"))
    if (rt_group, kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        name_fn = _crd_name_validator(obj)
    else:
        name_fn = name_validator(rt_group, kind)
    causes = _validate_object_meta(meta, namespaced=namespaced, name_fn=name_fn)
    kind_validator = _KIND_VALIDATORS.get((rt_group, kind))
    if kind_validator is not None:
        causes.extend(kind_validator(kind, obj, _Options(template_image_required)))
    return causes


def prepare_write(rt_group: str, kind: str, obj: dict[str, Any], old: Obj | None) -> None:
    """What the registry does to a defaulted object before validating it, in place.

    For Services: an update that omits the allocated ``clusterIP``/``clusterIPs`` (and node
    ports) keeps them, ``clusterIPs`` follows a changed ``clusterIP``, and a switch to
    ``ExternalName`` drops the IP fields the server had filled in.  ``old`` is None on create.
    """
    if (rt_group, kind) == ("", "Service"):
        spec = obj.get("spec")
        if isinstance(spec, dict):
            _prepare_service(spec, None if old is None else _map(old.get("spec")))


def validate_update(
    rt_group: str,
    kind: str,
    obj: Mapping[str, Any],
    old: Mapping[str, Any],
    *,
    namespaced: bool,
) -> list[Cause]:
    """The causes of a 422 Invalid for an update of ``old`` to ``obj``; [] when allowed.

    Everything :func:`validate` checks, plus what may not change once the object exists
    (immutable fields), in the order the real server reports them.  ``obj`` must have been
    through :func:`prepare_write`; ``old`` is the stored object (its ``status`` decides, for
    instance, whether a claim is bound or a Job has started).
    """
    causes = validate(rt_group, kind, obj, namespaced=namespaced)
    entry = _UPDATE_VALIDATORS.get((rt_group, kind))
    if entry is None:
        return causes
    update_fn, first = entry
    update_causes = update_fn(obj, old)
    return update_causes + causes if first else causes + update_causes


def invalid_status(
    kind: str, name: str, causes: Iterable[Cause], *, group: str = ""
) -> dict[str, Any]:
    """The ``Status`` body of a 422 Invalid, exactly as ``apierrors.NewInvalid`` builds it."""
    cause_list = list(causes)
    qualified = kind if not group else f"{kind}.{group}"
    messages: list[str] = []
    for cause in cause_list:
        text = str(cause)
        if text not in messages:
            messages.append(text)
    message = f"{qualified} {go_quote(name)} is invalid"
    if len(messages) == 1:
        message += f": {messages[0]}"
    elif messages:
        message += ": [" + ", ".join(messages) + "]"
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    if cause_list:
        details["causes"] = [c.to_dict() for c in cause_list]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    }
