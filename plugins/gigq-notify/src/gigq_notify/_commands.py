"""`gigq notify test`: send a sample notification now and say how it went."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from gigq_notify._config import EVENTS, load_config
from gigq_notify._sender import deliver


def _sample(event: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "event": event,
        "test": True,
        "sent_at": now,
        "host": "gigq-notify-test",
        "job": {
            "id": str(uuid.uuid4()),
            "name": "gigq-notify-test",
            "function": "gigq_notify:test",
            "queue": "default",
            "status": "failed",
            "priority": 0,
            "attempts": 3,
            "max_attempts": 3,
            "error": "RuntimeError: a test notification from `gigq notify test`",
            "unique_key": None,
            "workflow_id": None,
            "worker_id": None,
            "created_at": now,
            "started_at": now,
            "completed_at": now,
        },
        "error": {"type": "RuntimeError", "message": "a test notification from gigq notify test"},
        "final": True,
    }


@click.group()
def notify() -> None:
    """Notifications on job events (gigq-notify)."""


@notify.command("test")
@click.option(
    "--event",
    type=click.Choice(("test", *EVENTS)),
    default="test",
    show_default=True,
    help="The event name the sample notification carries.",
)
@click.pass_obj
def test_command(obj: Any, event: str) -> None:
    """Send a sample notification to the configured webhook and command, now."""
    from gigq.plugin import ConfigError

    config = load_config()
    if not config.is_enabled:
        raise ConfigError(
            "gigq-notify has nowhere to send: set webhook_url or command in "
            "[tool.gigq.notify], or GIGQ_NOTIFY_WEBHOOK_URL / GIGQ_NOTIFY_COMMAND"
        )
    outcomes = deliver(config, _sample(event))
    if getattr(obj, "json", False):
        click.echo(
            json.dumps(
                [
                    {"target": o.target, "ok": o.ok, "detail": o.detail, "tries": o.tries}
                    for o in outcomes
                ]
            )
        )
    else:
        for outcome in outcomes:
            where = (
                config.shown_webhook() if outcome.target == "webhook" else config.shown_command()
            )
            state = "ok" if outcome.ok else "FAILED"
            tries = f"{outcome.tries} {'try' if outcome.tries == 1 else 'tries'}"
            click.echo(f"{outcome.target} {where}: {state} ({outcome.detail}, {tries})")
    failed = [o.target for o in outcomes if not o.ok]
    if failed:
        raise click.ClickException(f"the test notification failed for: {', '.join(failed)}")
