"""Alertmanager's configuration (``alertmanager.yml``): alerts grouped as ``monitoring.alertmanager``
says, sent to the environment's notification sinks.

- An ntfy sink gets a readable push: ntfy's message templating (``tpl``) turns Alertmanager's JSON
  into a title ("Firing: HighErrorRate (app production)") and one line per alert, critical alerts
  at priority 5 and warnings at 3; resolved notices too. Its access token is read from a file
  (``credentials_file``), never written into the configuration.
- A webhook sink gets Alertmanager's own JSON payload (version 4), with resolved notices.
  Alertmanager does not sign it (Standard Webhooks signatures are for shipyard's own events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from shipyard.config import MonitoringSection, NotificationsSection, NtfySink, WebhookSink
from shipyard.monitoring._rules import duration

SECRETS_DIR = "/etc/alertmanager/secrets"
SEVERITIES = {"critical": ("5", "rotating_light"), "warning": ("3", "warning")}
NTFY_TITLE = (
    '{{if eq .status "resolved"}}Resolved{{else}}Firing{{end}}: {{.commonLabels.alertname}}'
    " ({{.commonLabels.app}} {{.commonLabels.environment}})"
)
NTFY_MESSAGE = (
    "{{range .alerts}}[{{.status}}] {{.annotations.summary}}: {{.annotations.description}}\n{{end}}"
)


@dataclass(frozen=True)
class AlertmanagerFiles:
    """The configuration, and the credential files it reads: file name → the env-file key whose
    value the file holds (written beside the configuration, mode 0600)."""

    config: dict[str, Any]
    credentials: dict[str, str] = field(default_factory=dict)


def _ntfy(sink: NtfySink, severity: str, credentials: dict[str, str]) -> dict[str, Any]:
    priority, tag = SEVERITIES[severity]
    query = urlencode({"tpl": "yes", "t": NTFY_TITLE, "m": NTFY_MESSAGE, "p": priority, "ta": tag})
    entry: dict[str, Any] = {
        "url": f"{sink.server.rstrip('/')}/{sink.topic}?{query}",
        "send_resolved": True,
    }
    if sink.token_env is not None:
        name = f"{sink.name or sink.kind}.token"
        credentials[name] = sink.token_env
        entry["http_config"] = {
            "authorization": {"type": "Bearer", "credentials_file": f"{SECRETS_DIR}/{name}"}
        }
    return entry


def _webhook(sink: WebhookSink) -> dict[str, Any]:
    return {"url": sink.url, "send_resolved": True}


def alertmanager_config(
    monitoring: MonitoringSection, notifications: NotificationsSection
) -> AlertmanagerFiles:
    """Two receivers, ``critical`` and ``warning``, each sending to every chosen sink."""
    chosen = monitoring.alertmanager.sinks
    sinks = [s for s in notifications.sinks if chosen is None or (s.name or s.kind) in chosen]
    credentials: dict[str, str] = {}
    receivers = []
    for severity in SEVERITIES:
        receiver: dict[str, Any] = {"name": severity}
        webhooks = [
            _ntfy(sink, severity, credentials) if isinstance(sink, NtfySink) else _webhook(sink)
            for sink in sinks
        ]
        if webhooks:
            receiver["webhook_configs"] = webhooks
        receivers.append(receiver)
    routing = monitoring.alertmanager
    config = {
        "route": {
            "receiver": "warning",
            "group_by": list(routing.group_by),
            "group_wait": duration(routing.group_wait),
            "group_interval": duration(routing.group_interval),
            "repeat_interval": duration(routing.repeat_interval),
            "routes": [{"matchers": ['severity="critical"'], "receiver": "critical"}],
        },
        # A critical alert of an app silences its warnings of the same name.
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "app", "environment"],
            }
        ],
        "receivers": receivers,
    }
    return AlertmanagerFiles(config, credentials)
