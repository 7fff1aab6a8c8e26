"""Issue 11 through a real `livechat serve` and real WebSocket clients: strict claims and display
names at connect, ``read_only`` for every anonymous write, role rules against stored roles (the
target offline), and token lifetime (expiry closes 4003 unless ``refresh`` brought a new token).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from livechat.backends import open_meta
from livechat.client import LiveChatClient
from livechat.ports.meta import Role, StreamInfo

from tests.service.serve_process import Client, ServeProcess

JS_CLIENT = Path(__file__).resolve().parents[2] / "python" / "livechat" / "web" / "livechat-client.js"

OWNED = "owned-stream"
# No leeway: a token 2 s from expiry closes within ~2 s plus one housekeeping round (0.25 s).
LEEWAY = ("--set", "chat.auth.leeway_s=0")


async def _seed(data_dir: Path) -> None:
    """The stored roles the edge will find: ``caster`` owns OWNED, ``mod2`` moderates it."""
    data_dir.mkdir(parents=True)
    meta = await open_meta(f"sqlite://{data_dir}/livechat.db")
    try:
        await meta.upsert_stream(StreamInfo(OWNED, owner_id="caster"))
        await meta.set_role(OWNED, "mod2", Role.MODERATOR)
    finally:
        await meta.aclose()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data_dir = tmp_path_factory.mktemp("security") / "data"
    asyncio.run(_seed(data_dir))
    proc = ServeProcess(data_dir, *LEEWAY).start()
    yield proc
    proc.stop()
    proc.assert_no_tracebacks()


async def _refused(serve: ServeProcess, token: str) -> tuple[dict[str, object], int | None]:
    client = await Client.connect(serve.url(token))
    err = await client.reply("err")
    return err, await client.closed()


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ({"name": "admin\u202e\u2066\x1b[31m (official)"}, "name"),  # bidi override, isolate, ANSI
        ({"name": "caster\u2067"}, "name"),
        ({"exp": str(int(time.time()) + 3600)}, "exp"),  # RFC 7519: NumericDate is a number
        ({"iat": "1700000000"}, "iat"),
        ({"role": ["moderator"]}, "role"),
    ],
)
async def test_bad_claims_are_refused_at_connect(
    serve: ServeProcess, claims: dict[str, object], field: str
) -> None:
    err, code = await _refused(serve, serve.token("mallory", **claims))
    assert (err["code"], err.get("field"), code) == ("auth_invalid", field, 4002), err


async def test_a_clean_name_is_normalised(serve: ServeProcess) -> None:
    viewer = await serve.client("watcher")
    await viewer.join("names")
    poster = await serve.client("e-acute", name="  Cafe\u0301  ")  # NFD, surrounding spaces
    await poster.join("names")
    ack = await poster.call("post", stream="names", text="hi", cmid="n1")
    assert ack["t"] == "ack", ack
    (comment,) = await viewer.comments(1)
    assert comment["n"] == "Caf\u00e9", comment


async def test_every_anonymous_write_is_read_only(serve: ServeProcess) -> None:
    anonymous = await serve.client()
    await anonymous.join("anon")
    writes = [
        ("post", {"text": "hi", "cmid": "a1"}),
        ("react", {"emoji": "heart"}),
        ("like", {"id": 1}),
        ("report", {"id": 1}),
        ("follow", {}),
        ("ban", {"user": "x"}),
        ("timeout", {"user": "x", "seconds": 60}),
        ("delete", {"id": 1}),
        ("slow", {"seconds": 5}),
    ]
    for op, fields in writes:
        reply = await anonymous.call(op, stream="anon", **fields)
        assert (reply["t"], reply.get("code")) == ("err", "read_only"), (op, reply)
    # Not joined: still read_only, not "join first".
    reply = await anonymous.call("ban", stream="elsewhere", user="x")
    assert reply.get("code") == "read_only", reply


async def test_a_moderator_cannot_ban_the_offline_broadcaster_or_a_stored_moderator(
    serve: ServeProcess,
) -> None:
    mod = await serve.client("mod1", streams={OWNED: "moderator"})
    await mod.join(OWNED)
    for op, fields in [("ban", {}), ("timeout", {"seconds": 60}), ("kick", {})]:
        for target in ("caster", "mod2"):  # neither has ever connected
            reply = await mod.call(op, stream=OWNED, user=target, **fields)
            assert (reply["t"], reply.get("code")) == ("err", "forbidden"), (op, target, reply)
    assert (await mod.call("ban", stream=OWNED, user="troll"))["t"] == "ok"
    # The broadcaster, connecting afterwards, is not banned in their own stream.
    caster = await serve.client("caster")
    snap = await caster.join(OWNED)
    assert snap["t"] == "snapshot", snap


async def test_an_expiring_token_closes_4003_unless_refreshed(serve: ServeProcess) -> None:
    exp = int(time.time()) + 2
    stays = await serve.client("refresher", exp=exp)
    goes = await serve.client("expirer", exp=exp)
    await stays.join("life")
    # A refresh for another user is refused and changes nothing.
    reply = await stays.call("refresh", token=serve.token("someone-else"))
    assert (reply.get("code"), reply.get("field")) == ("auth_invalid", "sub"), reply
    reply = await stays.call("refresh", token=serve.token("refresher", exp="9999999999"))
    assert (reply.get("code"), reply.get("field")) == ("auth_invalid", "exp"), reply
    # The same user with a new lifetime and a stronger role: ok, and the role applies at once.
    reply = await stays.call("refresh", token=serve.token("refresher", streams={"life": "moderator"}))
    assert (reply["t"], reply.get("op")) == ("ok", "refresh"), reply
    assert (await stays.call("slow", stream="life", seconds=5))["t"] == "ok"

    err = await goes.reply("err", timeout=6)
    assert err["code"] == "auth_expired", err
    assert await goes.closed() == 4003
    await stays.drain(1.0)
    assert (await stays.call("ping"))["t"] == "pong"  # still open past the first token's exp


async def test_the_python_client_refreshes_ahead_of_expiry(serve: ServeProcess) -> None:
    issued: list[str] = []

    async def provider() -> str:
        # 3 s tokens: refreshed half-way through each one's remaining life (under REFRESH_AHEAD_S).
        token = jwt.encode(
            {"sub": "py", "aud": "livechat", "exp": int(time.time()) + 3}, serve.secret(), algorithm="HS256"
        )
        issued.append(token)
        return token

    async with LiveChatClient(f"ws://127.0.0.1:{serve.port}/live", token_provider=provider) as client:
        await client.join("py-life")
        await asyncio.sleep(5)
        assert client.reconnects == 0  # never closed 4003: refreshed in time
        await client.ping()
    assert len(issued) >= 3, issued


# The JavaScript client in Node (20+: --experimental-websocket), 3 s tokens from a tokenProvider.
JS_REFRESH = r"""
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
const [, , port, secretFile, clientPath] = process.argv;
const { LiveChatClient } = await import(clientPath);
const secret = readFileSync(secretFile, "utf8").trim();
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
let issued = 0;
function mint() {
  issued++;
  const h = b64({ alg: "HS256", typ: "JWT" });
  const p = b64({ sub: "js", aud: "livechat", exp: Math.floor(Date.now() / 1000) + 3 });
  const sig = createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url");
  return `${h}.${p}.${sig}`;
}
const config = {
  reconnectInitialMs: 100, reconnectMaxMs: 1000, reconnectFactor: 2,
  connectTimeoutMs: 3000, requestTimeoutMs: 3000,
};
const client = new LiveChatClient({
  url: `ws://127.0.0.1:${port}/live`, tokenProvider: async () => mint(), config,
});
const statuses = [];
client.addEventListener("status", (e) => statuses.push(e.detail.state));
client.addEventListener("refresh_failed", (e) => console.log("refresh_failed", e.detail.error));
await client.connect();
await new Promise((r) => setTimeout(r, 6000));
console.log(JSON.stringify({ issued, reconnects: client.reconnects, connected: client.connected, statuses }));
client.close();
process.exit(0);
"""


def test_the_js_client_refreshes_ahead_of_expiry(serve: ServeProcess, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the JavaScript client"
    script = tmp_path / "refresh.mjs"
    script.write_text(JS_REFRESH)
    secret = serve.data_dir / "hmac-secret"
    out = subprocess.run(
        [node, "--experimental-websocket", str(script), str(serve.port), str(secret), str(JS_CLIENT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Never closed 4003 in 6 s of 3 s tokens: each was refreshed in time.
    assert (result["reconnects"], result["connected"]) == (0, True), result
    assert result["issued"] >= 3, result


async def test_stored_roles_on_postgresql_protect_the_offline_broadcaster_and_moderator(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The same rule with the roles in PostgreSQL (the cluster's MetaStore), a real server."""
    from tests.contract.backend_postgres import fresh_url

    url = fresh_url("meta", request, tmp_path)
    meta = await open_meta(url)
    try:
        await meta.upsert_stream(StreamInfo(OWNED, owner_id="caster"))
        await meta.set_role(OWNED, "mod2", Role.MODERATOR)
    finally:
        await meta.aclose()
    serve = ServeProcess(tmp_path / "data", "--set", f"backends.meta={url}").start()
    try:
        mod = await serve.client("mod1", streams={OWNED: "moderator"})
        await mod.join(OWNED)
        for target in ("caster", "mod2"):
            reply = await mod.call("ban", stream=OWNED, user=target)
            assert (reply["t"], reply.get("code")) == ("err", "forbidden"), (target, reply)
        assert (await mod.call("ban", stream=OWNED, user="troll"))["t"] == "ok"
        # The ban went to PostgreSQL, where every edge of a cluster reads it.
        meta = await open_meta(url)
        try:
            assert await meta.get_ban(OWNED, "troll") is not None
        finally:
            await meta.aclose()
    finally:
        assert serve.stop() == 0
    serve.assert_no_tracebacks()
