"""The web page in headless Chromium against a real `livechat serve`: two pages and a Python client on
one stream. A comment from one page reaches the other page and the Python client; a moderator's
delete removes it from both pages; the Top tab ranks liked comments first; the follow button lets
a viewer post in followers-only mode; a reported comment reaches the moderator's queue and its
removal reaches the viewer; the page survives a server restart. Screenshots go to artifacts/browser/."""

from __future__ import annotations

import base64
import signal
import time
from pathlib import Path
from typing import Any

import jwt
import msgpack
import pytest
from livechat.client import Comment, Deleted, Event, LiveChatClient
from playwright.async_api import Page, expect

from tests.e2e.browser import HandshakeLog, chromium
from tests.service.serve_process import ServeProcess

STREAM = "e2e-browser"
# The page's Top tab asks again every 3 s and the server ranks at most once a second.
TOP_WAIT_MS = 10_000


@pytest.fixture
def shots(artifacts: Path) -> Path:
    """artifacts/browser (gitignored, beside artifacts/e2e): the browser test's screenshots."""
    path = artifacts.parent / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


def page_url(serve: ServeProcess, token: str | None, stream: str = STREAM) -> str:
    query = f"?stream={stream}" + (f"&token={token}" if token else "")
    return f"http://127.0.0.1:{serve.port}/{query}"


async def wait_event(client: LiveChatClient, match: type[Event], test: Any, timeout: float = 10.0) -> Event:
    deadline = time.monotonic() + timeout
    while True:
        event = await client.next_event(max(0.01, deadline - time.monotonic()))
        if isinstance(event, match) and test(event):
            return event


def comment_item(page: Page, text: str) -> Any:
    return page.locator("li[data-testid=comment]", has=page.locator(".text", has_text=text))


def top_item(page: Page, text: str) -> Any:
    return page.locator("li[data-testid=top-comment]", has=page.locator(".text", has_text=text))


async def test_two_pages_and_a_python_client_share_one_stream(serve: ServeProcess, shots: Path) -> None:
    bob = LiveChatClient(f"ws://127.0.0.1:{serve.port}/live", serve.token("bob"))
    async with chromium() as browser, bob:
        await bob.join(STREAM)
        context = await browser.new_context(viewport={"width": 900, "height": 760})
        alice = await context.new_page()
        mod = await context.new_page()
        handshakes = await HandshakeLog.attach(alice)
        errors: list[str] = []
        for page in (alice, mod):
            page.on("pageerror", lambda exc: errors.append(str(exc)))

        await alice.goto(page_url(serve, serve.token("alice", name="Alice")))
        await mod.goto(page_url(serve, serve.token("maya", role="moderator", name="Maya")))
        for page, user, role in ((alice, "alice", "viewer"), (mod, "maya", "moderator")):
            await expect(page.get_by_test_id("status")).to_have_text(f"connected as {user}")
            await expect(page.get_by_test_id("role")).to_have_text(role)
        await expect(mod.get_by_test_id("mod-panel")).to_be_visible()
        await expect(alice.get_by_test_id("mod-panel")).to_be_hidden()
        await expect(alice.get_by_test_id("counts")).to_contain_text("3 watching")

        # The browser negotiated permessage-deflate with the edge.
        assert any("permessage-deflate" in ext for ext in handshakes.extensions()), handshakes.responses

        # A comment typed in one page; markup in it must stay text.
        text = "hello from the page <b>not bold</b> 👋"
        await alice.get_by_test_id("text").fill(text)
        await alice.get_by_test_id("send").click()
        on_mod = comment_item(mod, text)
        await expect(on_mod).to_have_count(1)
        await expect(comment_item(alice, text)).to_have_count(1)
        assert await mod.locator("li[data-testid=comment] b").count() == 0
        got = await wait_event(bob, Comment, lambda c: c.text == text)
        assert isinstance(got, Comment) and got.user == "alice" and got.name == "Alice"
        assert await on_mod.get_attribute("data-id") == str(got.id)

        # A comment from the Python client reaches both pages.
        ack = await bob.post(STREAM, "and one from Python")
        for page in (alice, mod):
            await expect(comment_item(page, "and one from Python")).to_have_count(1)

        # Reactions and moderator controls, through the server and back.
        await alice.get_by_test_id("react-heart").click()
        await expect(mod.get_by_test_id("react-heart").locator(".total")).to_have_text("1")
        await comment_item(mod, "and one from Python").get_by_test_id("mod-pin").click()
        await expect(alice.get_by_test_id("pinned")).to_contain_text("and one from Python")
        await mod.locator("#slow-seconds").fill("30")
        await mod.get_by_test_id("slow-set").click()
        await expect(alice.get_by_test_id("modes")).to_have_text("slow mode 30 s")
        await expect(comment_item(alice, text).get_by_test_id("mod-delete")).to_be_hidden()

        await mod.screenshot(path=str(shots / "moderator-before-delete.png"), full_page=True)

        # The moderator deletes the page's comment: gone from both pages and the Python client.
        await on_mod.get_by_test_id("mod-delete").click()
        for page in (alice, mod):
            await expect(comment_item(page, text)).to_have_count(0)
            await expect(comment_item(page, "and one from Python")).to_have_count(1)
        deleted = await wait_event(bob, Deleted, lambda d: d.id == got.id)
        assert isinstance(deleted, Deleted)

        await alice.screenshot(path=str(shots / "viewer-after-delete.png"), full_page=True)
        await mod.screenshot(path=str(shots / "moderator-after-delete.png"), full_page=True)
        assert ack.id > 0
        assert errors == []


async def test_page_shows_the_sampling_banner_from_a_tier_slot(serve: ServeProcess) -> None:
    # Reaching 5 000 comments/s is not a CI job; the page is fed a real tick frame (the bytes the
    # edge would send, encoded by Python's msgpack) through the client's message entry point.
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(page_url(serve, serve.token("tess")))
        await expect(page.get_by_test_id("status")).to_have_text("connected as tess")
        await expect(page.get_by_test_id("banner")).to_be_hidden()
        tick = {
            "t": "tick",
            "s": STREAM,
            "q": 7,
            "e": [],
            "st": {"tier": {"lvl": 2, "pct": 10.0, "rate": 23456.7}},
        }
        await page.evaluate(
            "b64 => window.livechat.client.receive(Uint8Array.from(atob(b64), c => c.charCodeAt(0)).buffer)",
            base64.b64encode(msgpack.packb(tick)).decode(),
        )
        banner = page.get_by_test_id("banner")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("showing 10% of comments (23457 comments/s)")
        calm = {**tick, "q": 8, "st": {"tier": {"lvl": 0, "pct": 100.0, "rate": 3.0}}}
        await page.evaluate(
            "b64 => window.livechat.client.receive(Uint8Array.from(atob(b64), c => c.charCodeAt(0)).buffer)",
            base64.b64encode(msgpack.packb(calm)).decode(),
        )
        await expect(banner).to_be_hidden()


async def test_page_reconnects_after_a_server_restart_and_recovers(serve: ServeProcess, shots: Path) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(page_url(serve, serve.token("rita")))
        status = page.get_by_test_id("status")
        await expect(status).to_have_text("connected as rita")
        await page.get_by_test_id("text").fill("before the restart")
        await page.get_by_test_id("send").click()
        await expect(comment_item(page, "before the restart")).to_have_count(1)

        serve.stop(signal.SIGKILL)
        await expect(status).to_contain_text("reconnecting")
        serve.start()
        poster = LiveChatClient(f"ws://127.0.0.1:{serve.port}/live", serve.token("pete", role="moderator"))
        async with poster:
            await poster.join(STREAM)
            await poster.post(STREAM, "posted right after the restart")
            await expect(status).to_have_text("connected as rita", timeout=20_000)
            await expect(comment_item(page, "posted right after the restart")).to_have_count(1)
            await expect(comment_item(page, "before the restart")).to_have_count(1)
            await poster.post(STREAM, "live after reconnect")
            await expect(comment_item(page, "live after reconnect")).to_have_count(1)
            # Each comment exactly once, whether it came as missed or in a tick.
            assert await page.locator("li[data-testid=comment]").count() == 3
        await page.screenshot(path=str(shots / "after-restart.png"), full_page=True)


async def test_page_msgpack_codec_agrees_with_python(serve: ServeProcess) -> None:
    values: list[Any] = [
        None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53 + 1,
        2**63 - 1, 2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
        0.5, -1.25e300, "", "a" * 31, "b" * 32, "é" * 200, "👋🏽" * 20000, b"", b"\x00\xff" * 200,
        [], list(range(20)), {"k": {"nested": [1, {"x": None}]}}, {f"key{i}": i for i in range(20)},
    ]  # fmt: skip
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{serve.port}/")
        result = await page.evaluate(
            """async (b64) => {
                const m = await import('/msgpack.js');
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const decoded = m.decode(bytes);
                const again = m.encode(decoded);
                let bin = '';
                for (const b of again) bin += String.fromCharCode(b);
                const likes = m.decode(Uint8Array.from(
                    [0x81, 0xcf, 0x05, 0x4e, 0x9f, 0x59, 0x12, 0x34, 0x56, 0x78, 0x03]));
                let truncated = null;
                try { m.decode(Uint8Array.from([0x92, 0x01])); }
                catch (e) { truncated = e.name + ':' + e.message; }
                return {
                    roundtrip: btoa(bin),
                    types: decoded.map(v => typeof v),
                    big: String(decoded[16]),
                    likes: Object.entries(likes),
                    truncated,
                };
            }""",
            base64.b64encode(msgpack.packb(values)).decode(),
        )
    assert msgpack.unpackb(base64.b64decode(result["roundtrip"])) == values
    types = result["types"]
    assert types[values.index(2**53 - 1)] == "number"
    assert types[values.index(2**53 + 1)] == "bigint" and types[values.index(2**63 - 1)] == "bigint"
    assert types[values.index(-(2**63))] == "bigint"
    assert result["big"] == str(2**64 - 1)
    assert result["likes"] == [[str(0x054E9F5912345678), 3]]
    assert result["truncated"] is not None and "truncated" in result["truncated"]


async def test_anonymous_page_reads_and_a_refused_token_is_shown(serve: ServeProcess) -> None:
    async with chromium() as browser:
        anon = await browser.new_page()
        await anon.goto(page_url(serve, None))
        await expect(anon.get_by_test_id("status")).to_have_text("connected read only")
        await expect(anon.get_by_test_id("send")).to_be_disabled()
        author = LiveChatClient(f"ws://127.0.0.1:{serve.port}/live", serve.token("ada"))
        async with author:
            await author.join(STREAM)
            await author.post(STREAM, "anonymous viewers read this")
        await expect(comment_item(anon, "anonymous viewers read this")).to_have_count(1)

        forged = jwt.encode(
            {"sub": "eve", "aud": "livechat", "exp": int(time.time()) + 60},
            "a-secret-that-is-not-the-servers-one",
        )
        refused = await browser.new_page()
        await refused.goto(page_url(serve, forged))
        await expect(refused.get_by_test_id("status")).to_have_text("closed: The token was refused.")
        await expect(refused.get_by_test_id("error")).to_have_text("The token was refused.")
        # Refused for good: no reconnect attempts follow.
        await refused.wait_for_timeout(1500)
        await expect(refused.get_by_test_id("status")).to_have_text("closed: The token was refused.")


async def test_top_tab_follow_button_and_moderation_queue(serve: ServeProcess, shots: Path) -> None:
    stream = "e2e-audience"
    bob = LiveChatClient(f"ws://127.0.0.1:{serve.port}/live", serve.token("bob"))
    async with chromium() as browser, bob:
        await bob.join(stream)
        context = await browser.new_context(viewport={"width": 900, "height": 900})
        alice = await context.new_page()
        mod = await context.new_page()
        errors: list[str] = []
        for page in (alice, mod):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        await alice.goto(page_url(serve, serve.token("alice", name="Alice"), stream))
        await mod.goto(page_url(serve, serve.token("maya", role="moderator", name="Maya"), stream))
        for page, user in ((alice, "alice"), (mod, "maya")):
            await expect(page.get_by_test_id("status")).to_have_text(f"connected as {user}")
        await expect(mod.get_by_test_id("mod-queue")).to_be_visible()
        await expect(alice.get_by_test_id("mod-queue")).to_be_hidden()

        # -- the Top tab: a liked comment ranks first, a moderator's comment (badge bonus) next,
        # a plain one not at all; likes made from the Top tab reach it and reorder it.
        await alice.get_by_test_id("text").fill("worth a like")
        await alice.get_by_test_id("send").click()
        await expect(comment_item(mod, "worth a like")).to_have_count(1)
        liked = int(await comment_item(mod, "worth a like").get_attribute("data-id"))
        await bob.post(stream, "a plain comment")
        await mod.get_by_test_id("text").fill("mod says hi")
        await mod.get_by_test_id("send").click()
        await comment_item(mod, "worth a like").get_by_test_id("like").click()
        await bob.like(stream, liked)
        await expect(comment_item(alice, "worth a like").locator(".likes")).to_have_text("2")

        # The tabs are a tablist: the arrow keys move between them.
        tab = alice.get_by_role("tab", name="Top")
        await alice.get_by_role("tab", name="Live").focus()
        await alice.keyboard.press("ArrowRight")
        await expect(tab).to_be_focused()
        await expect(tab).to_have_attribute("aria-selected", "true")
        await expect(alice.get_by_test_id("tab-live")).to_have_attribute("aria-selected", "false")
        await expect(alice.get_by_test_id("comments")).to_be_hidden()
        ranked = alice.locator("li[data-testid=top-comment]")
        await expect(ranked).to_have_count(2, timeout=TOP_WAIT_MS)
        await expect(ranked.nth(0).locator(".text")).to_have_text("worth a like")
        await expect(ranked.nth(0).locator(".likes")).to_have_text("2")
        await expect(ranked.nth(0).locator(".score")).to_have_text("score 2")
        await expect(ranked.nth(1).locator(".text")).to_have_text("mod says hi")
        await expect(top_item(alice, "a plain comment")).to_have_count(0)
        await alice.screenshot(path=str(shots / "top-tab.png"), full_page=True)

        like = top_item(alice, "mod says hi").get_by_test_id("like")
        await like.click()
        await expect(like).to_have_attribute("aria-pressed", "true")
        # 1 like + 1 for the moderator's badge ties "worth a like"; the newer comment goes first.
        await expect(ranked.nth(0).locator(".text")).to_have_text("mod says hi", timeout=TOP_WAIT_MS)
        await expect(ranked.nth(0).locator(".likes")).to_have_text("1")
        await alice.get_by_test_id("tab-live").click()
        await expect(alice.get_by_test_id("comments")).to_be_visible()
        await expect(comment_item(alice, "mod says hi").get_by_test_id("like")).to_have_attribute(
            "aria-pressed", "true"
        )

        # -- the follow button: followers-only mode refuses Alice until she follows.
        follow = alice.get_by_test_id("follow")
        await expect(follow).to_have_text("Follow")
        await expect(follow).to_have_attribute("aria-pressed", "false")
        await expect(mod.get_by_test_id("follow")).to_be_visible()
        await mod.locator("#fo-age").fill("0")
        await mod.get_by_test_id("fo-on").click()
        await expect(alice.get_by_test_id("modes")).to_have_text("followers only")
        await alice.get_by_test_id("text").fill("let me in")
        await alice.get_by_test_id("send").click()
        await expect(alice.get_by_test_id("error")).to_have_text("Only followers can comment here.")
        await follow.click()
        await expect(follow).to_have_text("Following")
        await expect(follow).to_have_attribute("aria-pressed", "true")
        await expect(alice.get_by_test_id("error")).to_have_text("")
        await expect(alice.get_by_test_id("text")).to_have_value("let me in")
        await alice.get_by_test_id("send").click()
        await expect(comment_item(mod, "let me in")).to_have_count(1)
        await alice.screenshot(path=str(shots / "following.png"), full_page=True)
        await follow.click()
        await expect(follow).to_have_text("Follow")
        await expect(follow).to_have_attribute("aria-pressed", "false")
        await alice.get_by_test_id("text").fill("still here?")
        await alice.get_by_test_id("send").click()
        await expect(alice.get_by_test_id("error")).to_have_text("Only followers can comment here.")
        await mod.get_by_test_id("fo-off").click()
        await expect(alice.get_by_test_id("modes")).to_have_text("")

        # -- the moderation queue: Alice reports a comment; it is listed for the moderator; with
        # 3 reporters it is flagged; "Remove" deletes it for everyone.
        rude = await bob.post(stream, "a rude comment")
        report = comment_item(alice, "a rude comment").get_by_test_id("report")
        await expect(comment_item(alice, "worth a like").get_by_test_id("report")).to_have_count(0)
        await report.click()
        await expect(report).to_have_text("Reported")
        await expect(report).to_be_disabled()
        await mod.get_by_test_id("queue-refresh").click()
        reports = mod.locator("li[data-testid=queue-report]")
        await expect(reports).to_have_count(1)
        await expect(reports.nth(0)).to_contain_text("alice")
        await expect(reports.nth(0)).to_contain_text("a rude comment")
        await expect(mod.locator("li[data-testid=queue-flagged-item]")).to_have_count(0)
        for name in ("r1", "r2"):
            reporter = LiveChatClient(f"ws://127.0.0.1:{serve.port}/live", serve.token(name))
            async with reporter:
                await reporter.join(stream)
                await reporter.report(stream, comment_id=rude.id, reason="rude")
        await mod.get_by_test_id("queue-refresh").click()
        flagged = mod.locator("li[data-testid=queue-flagged-item]")
        await expect(flagged).to_have_count(1)
        await expect(flagged.nth(0).locator(".text")).to_have_text("a rude comment")
        await expect(flagged.nth(0)).to_contain_text("3 reports")
        await expect(reports).to_have_count(3)
        await expect(reports.nth(0).locator(".name")).to_have_text("r2")
        await expect(reports.nth(2).locator(".name")).to_have_text("alice")
        await mod.screenshot(path=str(shots / "moderation-queue.png"), full_page=True)

        await expect(flagged.nth(0).get_by_test_id("queue-remove")).to_have_accessible_name(
            "Remove the comment by bob"
        )
        await mod.get_by_role("button", name="Remove the comment by bob").click()
        for page in (alice, mod):
            await expect(comment_item(page, "a rude comment")).to_have_count(0)
        await expect(flagged).to_have_count(0)
        await expect(mod.get_by_text("Nothing waits for review.")).to_be_visible()
        await expect(reports.nth(2)).to_contain_text("removed")
        await expect(reports.nth(2).locator(".text")).to_have_text("a rude comment")
        deleted = await wait_event(bob, Deleted, lambda d: d.id == rude.id)
        assert isinstance(deleted, Deleted)
        await mod.get_by_test_id("queue-refresh").click()
        await expect(flagged).to_have_count(0)
        await alice.screenshot(path=str(shots / "viewer-after-queue-remove.png"), full_page=True)
        await mod.screenshot(path=str(shots / "moderation-queue-after-remove.png"), full_page=True)
        assert errors == []
