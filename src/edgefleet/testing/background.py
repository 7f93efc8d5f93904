"""An aiohttp application served on 127.0.0.1 from its own event loop in a background thread, for test servers.

Synchronous tests and fixtures start it, read ``port``, and stop it; the handlers run on the thread's loop.
"""

from __future__ import annotations

import asyncio
import ssl
import threading

from aiohttp import web


class BackgroundApp:
    """Serve ``app`` on 127.0.0.1 (an ephemeral port; TLS when ``ssl_context`` is given) until :meth:`stop`."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = 0
        self._app = app
        self._ssl_context = ssl_context
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def start(self) -> int:
        """Start serving; returns the port."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self.port

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


__all__ = ["BackgroundApp"]
