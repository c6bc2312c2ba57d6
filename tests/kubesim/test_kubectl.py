"""Fidelity judged by kubectl: the real binary against kubesim behaves as against a cluster."""

from __future__ import annotations

import json
import textwrap

from tests.kubesim.conftest import Kubectl

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web, tier: {tier}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}
          ports: [{{containerPort: 8080}}]
"""


def deployment(replicas: int = 2, image: str = "nginx:1.27", tier: str = "front") -> str:
    return DEPLOYMENT.format(replicas=replicas, image=image, tier=tier)


def configmap(kubectl: Kubectl, namespace: str, name: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-",
            stdin=f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n")  # fmt: skip


def get_json(kubectl: Kubectl, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(kubectl("get", *args, "-o", "json").stdout)  # type: ignore[no-any-return]


def test_get_all_namespaces_lists_every_namespace(kubectl: Kubectl, namespace: str) -> None:
    configmap(kubectl, namespace, "one")
    out = kubectl("get", "configmaps", "-A").stdout
    assert namespace in out
    assert "one" in out
    assert "NAMESPACE" in out.splitlines()[0]


def test_get_with_label_selector_filters(kubectl: Kubectl, namespace: str) -> None:
    for name, tier in (("a", "front"), ("b", "back"), ("c", "front")):
        configmap(kubectl, namespace, name)
        kubectl("label", "configmap", name, "-n", namespace, f"tier={tier}")
    names = kubectl("get", "cm", "-n", namespace, "-l", "tier=front", "-o", "name").stdout.split()
    assert names == ["configmap/a", "configmap/c"]
    names = kubectl("get", "cm", "-n", namespace, "-l", "tier notin (front)", "-o", "name").stdout
    assert names.split() == ["configmap/b"]
    names = kubectl("get", "cm", "-n", namespace, "-l", "!tier", "-o", "name").stdout.split()
    assert names == []


def test_client_side_apply_creates_then_updates(kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment()).stdout
    assert "deployment.apps/web created" in out
    out = kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment(replicas=3)).stdout
    assert "deployment.apps/web configured" in out
    obj = get_json(kubectl, "deployment", "web", "-n", namespace)
    assert obj["spec"]["replicas"] == 3
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    out = kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment(replicas=3)).stdout
    assert "deployment.apps/web unchanged" in out


def test_server_side_apply_create_update_and_conflict(kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=deployment()).stdout
    assert "serverside-applied" in out
    obj = get_json(kubectl, "deployment", "web", "-n", namespace, "--show-managed-fields")
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert "kubectl" in managers
    kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=deployment(image="nginx:2"))
    assert (
        get_json(kubectl, "deploy", "web", "-n", namespace)["spec"]["template"]["spec"][
            "containers"
        ][0]["image"]
        == "nginx:2"
    )
    # Another manager setting a field kubectl owns, to a different value, conflicts.
    proc = kubectl(
        "apply", "--server-side", "--field-manager=other", "-n", namespace, "-f", "-",
        stdin=deployment(replicas=5, image="nginx:2"), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "conflict" in proc.stderr.lower()
    assert ".spec.replicas" in proc.stderr
    assert get_json(kubectl, "deploy", "web", "-n", namespace)["spec"]["replicas"] == 2
    kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=other", "-n", namespace,
        "-f", "-", stdin=deployment(replicas=5, image="nginx:2"),
    )  # fmt: skip
    assert get_json(kubectl, "deploy", "web", "-n", namespace)["spec"]["replicas"] == 5


def test_diff_exit_codes_and_no_mutation(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=deployment())
    kubectl("rollout", "status", "deploy/web", "-n", namespace, "--timeout=30s")
    before = get_json(kubectl, "deploy", "web", "-n", namespace)["metadata"]["resourceVersion"]
    same = kubectl("diff", "--server-side", "-n", namespace, "-f", "-", stdin=deployment(),
                   check=False)  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""
    changed = kubectl("diff", "--server-side", "-n", namespace, "-f", "-",
                      stdin=deployment(replicas=4), check=False)  # fmt: skip
    assert changed.returncode == 1, changed.stderr
    assert "-  replicas: 2" in changed.stdout
    assert "+  replicas: 4" in changed.stdout
    obj = get_json(kubectl, "deploy", "web", "-n", namespace)
    assert obj["spec"]["replicas"] == 2
    assert obj["metadata"]["resourceVersion"] == before


def test_client_side_diff_of_new_object(kubectl: Kubectl, namespace: str) -> None:
    proc = kubectl("diff", "-n", namespace, "-f", "-", stdin=deployment(), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "+  replicas: 2" in proc.stdout
    assert kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_server_dry_run_never_mutates(kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                  stdin=deployment()).stdout  # fmt: skip
    assert "(server dry run)" in out
    assert kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.strip() == ""
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment())
    kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-n", namespace,
            "-f", "-", stdin=deployment(replicas=9))  # fmt: skip
    assert get_json(kubectl, "deploy", "web", "-n", namespace)["spec"]["replicas"] == 2
    kubectl("delete", "deploy", "web", "-n", namespace, "--dry-run=server")
    assert get_json(kubectl, "deploy", "web", "-n", namespace)["spec"]["replicas"] == 2


def test_label_annotate_scale_delete(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment())
    kubectl("label", "deploy", "web", "-n", namespace, "team=core")
    kubectl("annotate", "deploy", "web", "-n", namespace, "note=hello")
    kubectl("scale", "deploy", "web", "-n", namespace, "--replicas=4")
    obj = get_json(kubectl, "deploy", "web", "-n", namespace)
    assert obj["metadata"]["labels"]["team"] == "core"
    assert obj["metadata"]["annotations"]["note"] == "hello"
    assert obj["spec"]["replicas"] == 4
    kubectl("label", "deploy", "web", "-n", namespace, "team-")
    assert "team" not in get_json(kubectl, "deploy", "web", "-n", namespace)["metadata"]["labels"]
    out = kubectl("delete", "deploy", "web", "-n", namespace).stdout
    assert 'deployment.apps "web" deleted' in out
    proc = kubectl("get", "deploy", "web", "-n", namespace, check=False)
    assert proc.returncode == 1
    assert "NotFound" in proc.stderr


def test_rollout_status_and_wait(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=deployment())
    out = kubectl("rollout", "status", "deploy/web", "-n", namespace, "--timeout=30s").stdout
    assert "successfully rolled out" in out
    out = kubectl("wait", "--for=condition=Available", "deploy/web", "-n", namespace,
                  "--timeout=30s").stdout  # fmt: skip
    assert "condition met" in out


def test_failed_rollout_is_reported(kubectl: Kubectl, namespace: str) -> None:
    failing = deployment().replace(
        "  labels: {app: web, tier: front}",
        "  labels: {app: web, tier: front}\n  annotations: {kubesim.dev/rollout: fail}",
    )
    kubectl("apply", "-n", namespace, "-f", "-", stdin=failing)
    proc = kubectl("rollout", "status", "deploy/web", "-n", namespace, "--timeout=20s",
                   check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "exceeded its progress deadline" in proc.stderr


def test_crd_makes_custom_resources_served(kubectl: Kubectl, namespace: str) -> None:
    crd = textwrap.dedent("""\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: widgets.example.com}
        spec:
          group: example.com
          scope: Namespaced
          names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
          versions:
            - name: v1
              served: true
              storage: true
              schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
        """)
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n"
    kubectl("apply", "-f", "-", stdin=crd)
    try:
        kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s")
        kubectl("apply", "-n", namespace, "-f", "-", stdin=widget)
        assert get_json(kubectl, "wdg", "w1", "-n", namespace)["spec"]["size"] == 3
        resources = kubectl("api-resources", "--api-group=example.com").stdout
        assert "widgets" in resources
    finally:
        kubectl("delete", "crd", "widgets.example.com")
    proc = kubectl("get", "widgets.example.com", "-n", namespace, check=False)
    assert proc.returncode != 0


def test_namespace_delete_removes_its_contents(kubectl: Kubectl) -> None:
    kubectl(
        "create", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: doomed}\n"
    )
    configmap(kubectl, "doomed", "c")
    kubectl("delete", "namespace", "doomed", "--timeout=30s")
    assert kubectl("get", "ns", "doomed", check=False).returncode == 1
    assert "doomed" not in kubectl("get", "cm", "-A").stdout
