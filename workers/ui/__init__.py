"""The fleet page: a read-only view of every target, served by the webhook server.

``/ui`` is the matrix of applications by clusters, each cell coloured by the target's
sync and health; ``/ui/target/{app}/{cluster}`` is one target's status, rollback,
rollout step, history, drift and hooks.  :mod:`workers.ui.view` decides what they show
(pure), :mod:`workers.ui.pages` reads Redis and renders the Jinja2 templates.
"""

from __future__ import annotations

from workers.ui.pages import FleetPage

__all__ = ["FleetPage"]
