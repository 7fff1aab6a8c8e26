"""The web page the edge serves at ``/``: static files, no build step (see ``livechat.server.webpage``).

``index.html`` + ``style.css``, ``app.js`` (the page), ``livechat-client.js`` (the protocol client,
twin of ``livechat.client``) and ``msgpack.js`` (a small msgpack codec). ``livechat-config.js`` is
generated from ``livechat.config`` when the server starts.
"""
