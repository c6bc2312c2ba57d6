"""The files of the demo's sample world, shipped as package data.

``apps/`` is the demo Git repository exactly as ``cli.demo`` commits it (a folder per
application, one layout per renderer), and ``fleet.yaml`` is the fleet file without what
only a run knows (clusters, kubeconfig, the repository's path).  They are real files, not
strings in code, so they read, lint and render like any team's manifests.
"""
