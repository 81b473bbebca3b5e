"""A webhook receiver for ``--with-webhooks``: ``python -m bench.receiver --port P``.

Answers ``POST /hooks`` 204 at once (what a receiver that queues its work does) and
``GET /ping`` 200 (readiness). It does not verify signatures: the tests do
(``tests/webhooks``); here the point is the service's cost and the delivery lag, measured from
the database (``bench/webhooks.py``).
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def _hook(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


async def _ping(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    """Serve on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(prog="python -m bench.receiver")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    app = web.Application()
    app.router.add_post("/hooks", _hook)
    app.router.add_get("/ping", _ping)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
