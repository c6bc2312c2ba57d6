"""What the watcher opens its streams with: one SSL context per distinct TLS setting.

No server is reached: ``stream_settings`` reads the kubeconfig through the official
client and builds headers and an SSL context, nothing more.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.kube import ClientFactory


def kubeconfig(tmp_path: Path) -> str:
    clusters = {"a": {"insecure-skip-tls-verify": True},
                "b": {"insecure-skip-tls-verify": True},
                "c": {}}  # fmt: skip
    data = {
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": n, "cluster": {"server": f"https://127.0.0.1:1/clusters/{n}", **c}}
                     for n, c in clusters.items()],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in clusters],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_clusters_with_the_same_tls_settings_share_one_ssl_context(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path)
    factory = ClientFactory(cache_dir=tmp_path / "cache")
    try:
        a, b, c = (factory.for_cluster(name=n, context=n, kubeconfig=path).stream_settings()
                   for n in "abc")  # fmt: skip
        assert a.base.endswith("/clusters/a") and b.base.endswith("/clusters/b")
        assert a.headers["Authorization"] == "Bearer secret-token"
        assert a.ssl is not None and a.ssl is b.ssl  # one CA store for both
        assert c.ssl is not None and c.ssl is not a.ssl  # this one verifies the server
        assert c.ssl.check_hostname and not a.ssl.check_hostname
        assert "secret-token" not in repr(a)
    finally:
        factory.close()
