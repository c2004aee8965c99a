"""Outgoing mail: SMTP (aiosmtplib) when SMTP_URL is set, otherwise ``.eml`` files under the mail dir."""

from __future__ import annotations

import logging
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

log = logging.getLogger("i9lyfe.mail")


class Mailer:
    def __init__(self, smtp_url: str, mail_from: str, mail_dir: str) -> None:
        self.smtp_url = smtp_url
        self.mail_from = mail_from
        self.mail_dir = Path(mail_dir)

    def build(self, to: str, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.mail_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@i9lyfe>"
        msg.set_content(body)
        return msg

    async def send(self, to: str, subject: str, body: str) -> None:
        msg = self.build(to, subject, body)
        if self.smtp_url:
            parts = urlsplit(self.smtp_url)
            await aiosmtplib.send(
                msg,
                hostname=parts.hostname or "127.0.0.1",
                port=parts.port or (465 if parts.scheme == "smtps" else 25),
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                use_tls=parts.scheme == "smtps",
                start_tls=True if parts.scheme == "smtp+starttls" else None,
                timeout=10,
            )
            # The subject may carry a one-time code: log only where the mail went, never its text.
            log.info("mail sent", extra={"fields": {"to_domain": to.rpartition("@")[2], "transport": "smtp"}})
            return
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        path = self.mail_dir / f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(bytes(msg))
        # Local development backend: the code is in the file, never in the log (a subject may carry a code).
        log.info("mail written", extra={"fields": {"path": str(path)}})
