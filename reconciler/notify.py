"""Notifications, decided purely: which events an outcome raises, and what each endpoint
is sent.

A team alerts on a few things: a sync that failed, health that turned Degraded, drift the
platform healed, a rollout that paused or finished.  An outcome raises an event when it
shows one and *clears* it when it shows the opposite (a Synced run clears
``sync-failed``), so the workers can fold a storm into one message per target and event
until it clears, and tell the next failure at once.  The bodies are a plain JSON event,
a Slack incoming-webhook message, or a Microsoft Teams MessageCard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from reconciler.model import Action, Health, SyncStatus
from reconciler.outcome import Outcome, TargetStatus, Trigger

SYNC_FAILED = "sync-failed"
HEALTH_DEGRADED = "health-degraded"
DRIFT_HEALED = "drift-healed"
ROLLOUT_PAUSED = "rollout-paused"
ROLLOUT_FINISHED = "rollout-finished"

#: Colours and words per event, for the chat formats.
_LOOK = {
    SYNC_FAILED: ("danger", "FF0000", "Sync failed"),
    HEALTH_DEGRADED: ("danger", "FF0000", "Health degraded"),
    DRIFT_HEALED: ("good", "2EB886", "Drift healed"),
    ROLLOUT_PAUSED: ("warning", "FFA500", "Rollout paused"),
    ROLLOUT_FINISHED: ("good", "2EB886", "Rollout finished"),
}
#: Characters of a message kept in a notification (the history keeps it whole).
MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Event:
    """One thing a team may be told of."""

    kind: str
    application: str
    #: None for an application-wide event (a rollout's).
    cluster: str | None
    revision: str | None
    message: str
    at: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["details"] = dict(self.details)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(kind=str(data["kind"]), application=str(data["application"]),
                   cluster=data.get("cluster"), revision=data.get("revision"),
                   message=str(data.get("message", "")), at=str(data.get("at", "")),
                   details=dict(data.get("details") or {}))  # fmt: skip

    @property
    def where(self) -> str:
        return f"{self.application} on {self.cluster}" if self.cluster else self.application


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def outcome_events(
    outcome: Outcome, previous: TargetStatus | None
) -> tuple[list[Event], list[str]]:
    """The events a recorded outcome raises, and the event kinds it clears.

    ``previous`` is the target's status entry before this outcome: drift counts as healed
    only when the run applied nothing new from Git (the same revision as before), so a
    new commit is not reported as a heal.
    """
    raised: list[Event] = []
    cleared: list[str] = []
    def event(kind: str, message: str, details: Mapping[str, Any]) -> Event:
        return Event(kind, outcome.application, outcome.cluster, outcome.revision,
                     _short(message), outcome.started, details)  # fmt: skip

    trigger = {"trigger": outcome.trigger, "reason": outcome.reason}
    if outcome.dry_run:
        return raised, cleared
    if outcome.sync is SyncStatus.FAILED:
        message = outcome.errors[0].message if outcome.errors else "the sync failed"
        details = {**trigger, "retryable": outcome.retryable}
        raised.append(event(SYNC_FAILED, message, details))
    else:
        cleared.append(SYNC_FAILED)
    if outcome.health is Health.DEGRADED:
        raised.append(event(HEALTH_DEGRADED, "health is Degraded", trigger))
    elif outcome.health is Health.HEALTHY:
        cleared.append(HEALTH_DEGRADED)
    fixed = [c.object for c in outcome.changes
             if c.action in (Action.CONFIGURED, Action.CREATED, Action.REPLACED)]  # fmt: skip
    same_commit = previous is not None and previous.revision == outcome.revision
    if (outcome.sync is SyncStatus.SYNCED and outcome.drift and fixed and same_commit
            and outcome.trigger != Trigger.ROLLOUT.value):  # fmt: skip
        objects = [d.object for d in outcome.drift]
        shown = ", ".join(objects[:5]) + (" …" if len(objects) > 5 else "")
        raised.append(event(DRIFT_HEALED, f"healed {len(objects)} drifted object(s): {shown}",
                            {**trigger, "objects": objects}))  # fmt: skip
    return raised, cleared


def rollout_events(app: str, revision: str, events: Iterable[Mapping[str, Any]],
                   *, at: str) -> list[Event]:  # fmt: skip
    """Notification events of a rollout's own events (``reconciler.rollout``)."""
    out = []
    for event in events:
        name = str(event.get("event", ""))
        step = event.get("step")
        if name in {"halted", "paused"}:
            out.append(Event(ROLLOUT_PAUSED, app, None, revision,
                             _short(str(event.get("reason") or name)), at,
                             {"step": step, "how": name}))  # fmt: skip
        elif name == "completed":
            out.append(Event(ROLLOUT_FINISHED, app, None, revision,
                             "every step done", at, {"step": step}))  # fmt: skip
    return out


def payload(fmt: str, event: Event, *, link: str | None = None) -> dict[str, Any]:
    """The body an endpoint of format ``fmt`` (json, slack, teams) is sent for ``event``."""
    colour, hex_colour, title = _LOOK.get(event.kind, ("#439FE0", "439FE0", event.kind))
    facts = [("Application", event.application)]
    if event.cluster:
        facts.append(("Cluster", event.cluster))
    if event.revision:
        facts.append(("Revision", event.revision[:12]))
    heading = f"{title}: {event.where}"
    if fmt == "slack":
        attachment: dict[str, Any] = {
            "color": colour, "title": heading, "text": event.message, "ts_iso": event.at,
            "fields": [{"title": name, "value": value, "short": True} for name, value in facts],
        }  # fmt: skip
        if link:
            attachment["title_link"] = link
        return {"text": f"{heading}: {event.message}", "attachments": [attachment]}
    if fmt == "teams":
        card: dict[str, Any] = {
            "@type": "MessageCard", "@context": "https://schema.org/extensions",
            "summary": heading, "themeColor": hex_colour, "title": heading,
            "text": event.message,
            "sections": [{"facts": [{"name": name, "value": value} for name, value in facts]}],
        }  # fmt: skip
        if link:
            card["potentialAction"] = [{"@type": "OpenUri", "name": "Open",
                                        "targets": [{"os": "default", "uri": link}]}]  # fmt: skip
        return card
    body = {"event": event.kind, **event.to_dict()}
    del body["kind"]
    if link:
        body["link"] = link
    return body
