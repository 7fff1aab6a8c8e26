// One-room broadcast server on Node's `ws`: every message any client sends goes to every connection.
//
// This is the "broadcast to all connected clients, including itself" example of the ws README:
// `wss.clients` (a Set the server keeps, insertion-ordered) and `client.send(data, { binary })` for
// each open client, in one synchronous loop. No permessage-deflate (the ws server default, stated
// here), listen backlog 4 096 like the Python peers; everything else is a ws default.
//
// Run: `scripts/node-peer.sh serve --port 19003` (installs the pinned ws once, outside the repo), or
// `NODE_PATH=<dir>/node_modules node bench/peers/ws_broadcast.mjs --port 19003`.

import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

// ES `import 'ws'` resolves only from node_modules beside or above this file; the bench keeps
// downloaded code out of the repo, so ws is loaded with require(), which also searches NODE_PATH.
const require = createRequire(import.meta.url);
const { WebSocket, WebSocketServer } = require('ws');

// Same accept queue livechat gets by default (EdgeConfig.listen_backlog); Node's default of 511
// drops SYNs when thousands of viewers connect at once.
const LISTEN_BACKLOG = 4096;
// RFC 6455 "going away": the server is shutting down.
const GOING_AWAY = 1001;

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
  },
});
if (values.port === undefined) {
  console.error('usage: ws_broadcast.mjs [--host HOST] --port PORT');
  process.exit(2);
}

const wss = new WebSocketServer({
  host: values.host,
  port: Number(values.port),
  backlog: LISTEN_BACKLOG,
  perMessageDeflate: false,
});

wss.on('connection', (ws) => {
  ws.on('error', console.error);
  ws.on('message', (data, isBinary) => {
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});

wss.on('listening', () => {
  const { address, port } = wss.address();
  console.log(`ws ${require('ws/package.json').version} on node ${process.version} listening on ${address}:${port}`);
});

// The harness stops a server with SIGTERM and expects exit code 0; say goodbye to whoever is left.
function shutdown() {
  for (const client of wss.clients) {
    client.close(GOING_AWAY);
  }
  // close() stops accepting; connections still open after the close handshake timeout are cut.
  wss.close(() => process.exit(0));
  setTimeout(() => {
    for (const client of wss.clients) {
      client.terminate();
    }
  }, 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
