"""Plain helpers for the whole-DAG tests (fixtures live in conftest.py)."""
from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parents[2]
DAY = "2024-01-15"
SOURCE_ROOT = Path(f"/srv/audio-source-test{os.environ.get('AUDIO_TEST_NS', '')}")


def write_config(path: Path, tag: str, **overrides: Any) -> Path:
    """A site config (config/local.json + overrides) isolating cluster dirs under ``tag``."""
    config = json.loads((REPO / "config" / "local.json").read_text())
    config.update(source_root=str(SOURCE_ROOT), remote_root=f"audio-pipeline-test/{tag}",
                  staging_root=f"audio-pipeline-test/{tag}/staging", retries=0)
    config.update(overrides)
    path.write_text(json.dumps(config))
    return path


class Inbox:
    """aiosmtpd handler keeping every message a real SMTP session hands it."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        msg["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 Message accepted"

    def find(self, needle: str) -> list[tuple[str, str]]:
        """(subject, text body) of the messages whose subject holds ``needle``."""
        found = []
        for msg in self.messages:
            if needle in msg["Subject"]:
                body = msg.get_body(preferencelist=("html", "plain"))
                found.append((str(msg["Subject"]), body.get_content() if body else ""))
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: (its inbox, the port)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def smtp_conn(port: int) -> str:
    """An Airflow SMTP connection (``AIRFLOW_CONN_*`` JSON) to the plain SMTP server on ``port``."""
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {
        "disable_tls": True, "disable_ssl": True, "timeout": 10}})
