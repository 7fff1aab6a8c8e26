"""A real HTTP/1.1 JSON classifier endpoint for tests (asyncio streams, ephemeral port).

Scores: text containing "toxic" -> 0.95, "iffy" -> 0.7, else 0.05. "sleep:<s>" delays the answer,
"status:<n>" answers with that HTTP status, "garbage" answers non-JSON. ``fail`` makes it answer 500.
"""

from __future__ import annotations

import asyncio
import json
import re


class ClassifierServer:
    def __init__(self) -> None:
        self.requests = 0
        self.fail = False
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/score"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length))
                self.requests += 1
                text = body["text"]
                delay = re.search(r"sleep:([0-9.]+)", text)
                if delay:
                    await asyncio.sleep(float(delay.group(1)))
                status = re.search(r"status:(\d+)", text)
                code = 500 if self.fail else int(status.group(1)) if status else 200
                if "garbage" in text:
                    payload = b"not json"
                else:
                    score = 0.95 if "toxic" in text else 0.7 if "iffy" in text else 0.05
                    payload = json.dumps({"score": score, "labels": ["test"]}).encode()
                head = f"HTTP/1.1 {code} X\r\nContent-Length: {len(payload)}\r\n\r\n"
                writer.write(head.encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
