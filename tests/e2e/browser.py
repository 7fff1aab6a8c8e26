"""Debian's Chromium driven by Python playwright: no browser download (never `playwright install`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, CDPSession, Page, async_playwright

CHROMIUM = os.environ.get("LIVECHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium; FAILS (never skips) when the Debian package is missing."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install -y chromium")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class HandshakeLog:
    """WebSocket handshake responses a page received, read over the DevTools protocol (playwright's
    own WebSocket object does not expose headers)."""

    def __init__(self) -> None:
        self.responses: list[dict[str, str]] = []

    @classmethod
    async def attach(cls, page: Page) -> HandshakeLog:
        log = cls()
        session: CDPSession = await page.context.new_cdp_session(page)
        session.on("Network.webSocketHandshakeResponseReceived", log._on_response)
        await session.send("Network.enable")
        return log

    def _on_response(self, params: dict[str, object]) -> None:
        response = params.get("response")
        headers = response.get("headers") if isinstance(response, dict) else None
        if isinstance(headers, dict):
            self.responses.append({str(k).lower(): str(v) for k, v in headers.items()})

    def extensions(self) -> list[str]:
        return [r.get("sec-websocket-extensions", "") for r in self.responses]
