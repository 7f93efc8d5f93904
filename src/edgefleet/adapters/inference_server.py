"""The device's local inference server (aiohttp): predictions in, predictions out, never anywhere else.

Endpoints, bound to 127.0.0.1 or a UNIX socket only:

``POST /v1/models/{name}:predict``
    JSON: ``{"inputs": {"x": [[...]]}}`` (nested lists, answered with lists) or
    ``{"inputs": {"x": {"dtype": "float32", "shape": [1, 4], "data": "<base64>"}}}`` (answered in the same
    encoding). Binary: ``Content-Type: application/octet-stream``, raw little-endian C-order bytes of one input
    described by ``X-Edgefleet-Input`` (default: the model's first input), ``X-Edgefleet-Dtype`` (default
    float32) and ``X-Edgefleet-Shape`` (``1,4``); the answer is the first output in the same form.
``GET /v1/models``  name, version, digest, revision and input/output signatures of what is served.
``GET /healthz``    the process is alive.   ``GET /readyz``: the journal was loaded and every model is serving.
``GET /metrics``    Prometheus text: latency histograms and counts per model and version (no tensor values).

The server knows nothing about installs or health; it calls a :class:`Backend` (the serving registry).

Local clients are not trusted to be well-behaved (:class:`Limits`): connections are capped below the descriptor
limit (one over the cap is answered ``503`` and closed), a connection that sends no complete request within
``idleTimeoutSeconds`` is closed (slow headers included), a body must arrive within ``bodyTimeoutSeconds`` (``408``),
a JSON body is at most ``maxJsonBytes`` and a binary one ``maxBodyBytes`` (``413``, before a byte is read), bodies in
flight share a byte budget (``503`` when it stays exhausted), and large bodies are parsed on a worker thread, so
``/healthz`` answers while they are. Every malformed request is a ``400`` naming what is wrong; a ``500`` means the
model failed, never the request. The server's own log lines are rate-limited (:class:`RateLimitFilter`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import prometheus_client
from aiohttp import web

from edgefleet.adapters import bundle, onnx_session
from edgefleet.core import errors, tensors

BINARY = "application/octet-stream"
MAX_BODY_BYTES = 64 * 1024 * 1024
# JSON is parsed by C code that holds the GIL for the whole document: the cap bounds how long one parse can keep
# /healthz waiting (about 0.1 s for 1 MiB of nested lists). Large tensors go as application/octet-stream.
MAX_JSON_BYTES = 1024 * 1024
CLIENT_ERRORS = onnx_session.CLIENT_ERRORS
INLINE_PARSE_BYTES = 64 * 1024
_SHAPE_HEADER = re.compile(r"[0-9]{1,12}(,[0-9]{1,12}){0,15}", re.ASCII)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one local client may hold of the device (see the module docstring)."""

    max_connections: int = 256
    idle_timeout_seconds: float = 15.0
    body_timeout_seconds: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES
    max_json_bytes: int = MAX_JSON_BYTES
    body_budget_bytes: int = 160 * 1024 * 1024


class BadRequest(ValueError):
    """A request the server cannot read; answered 400 with ``kind`` and the message."""

    def __init__(self, message: str, kind: str = "BadRequest") -> None:
        super().__init__(message)
        self.kind = kind


class RateLimitFilter(logging.Filter):
    """Lets through at most ``burst`` records per (logger, message template) every ``period`` seconds, then one
    line saying how many were suppressed: a client that provokes errors cannot turn the log into a disk filler."""

    def __init__(self, burst: int = 10, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self.clock = clock
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.period:
            if count > self.burst:
                record.msg = f"{record.msg} (and {count - self.burst} similar messages suppressed)"
            start, count = now, 0
        self._windows[key] = (start, count + 1)
        if len(self._windows) > 1024:  # distinct templates are few; never let the table grow without bound
            self._windows.clear()
        return count < self.burst


def install_log_limits(burst: int = 10, period: float = 60.0) -> RateLimitFilter:
    """Rate-limit the log records of the HTTP stack and of asyncio (accept errors, handler tracebacks)."""
    limiter = RateLimitFilter(burst, period)
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access", "asyncio", __name__):
        logging.getLogger(name).addFilter(limiter)
    return limiter


class Served(Protocol):
    """What the server needs to know about a served model."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def revision(self) -> str: ...
    @property
    def runtime(self) -> onnx_session.ModelRuntime: ...


class PredictResult(Protocol):
    @property
    def model(self) -> Served: ...
    @property
    def outputs(self) -> dict[str, np.ndarray[Any, Any]]: ...


class Backend(Protocol):
    """The serving registry as the server sees it."""

    ready: bool

    @property
    def metrics_registry(self) -> prometheus_client.CollectorRegistry: ...

    def get(self, name: str) -> Served | None: ...

    def served(self) -> Sequence[Served]: ...

    async def predict(self, name: str, raw: Mapping[str, Any]) -> PredictResult: ...


def _describe(model: Served) -> dict[str, Any]:
    rt = model.runtime
    return {
        "name": model.name,
        "version": model.version,
        "digest": model.digest,
        "revision": model.revision,
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in rt.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in rt.outputs],
    }


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"class": kind, "message": message}}, status=status)


class _Budget:
    """Bytes of request bodies in flight, shared by every connection (bounds the server's memory)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, size: int, timeout: float) -> Any:
        size = min(size, self.total)
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.used + size <= self.total), timeout)
            except TimeoutError:
                raise _Busy() from None
            self.used += size
        try:
            yield
        finally:
            async with self._changed:
                self.used -= size
                self._changed.notify_all()


def build_app(backend: Backend, limits: Limits | None = None) -> web.Application:
    """The aiohttp application over ``backend``."""
    limits = limits or Limits()
    budget = _Budget(limits.body_budget_bytes)
    # JSON parsing and tensor conversion of large bodies: off the event loop, one at a time (each holds the GIL
    # while it runs; two would only double the memory peak).
    parser = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    async def read_body(request: web.Request, cap: int) -> bytes:
        declared = request.content_length
        if declared is not None and declared > cap:
            raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=declared)
        try:
            async with budget.reserve(declared if declared is not None else cap, limits.body_timeout_seconds):
                async with asyncio.timeout(limits.body_timeout_seconds):
                    chunks: list[bytes] = []
                    have = 0
                    while have <= cap:
                        more = await request.content.read(cap + 1 - have)
                        if not more:
                            break
                        chunks.append(more)
                        have += len(more)
                    body = b"".join(chunks)
        except TimeoutError:
            raise _Timeout() from None
        if len(body) > cap:
            raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=len(body))
        return body

    async def parse(fn: Callable[[], Any], size: int) -> Any:
        if size <= INLINE_PARSE_BYTES:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(parser, fn)

    async def predict(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        model = backend.get(name)
        if model is None:
            return _error(404, f"model {name!r} is not served here; GET /v1/models lists what is", "NotFound")
        binary = request.content_type == BINARY
        cap = limits.max_body_bytes if binary else limits.max_json_bytes
        try:
            body = await read_body(request, cap)
        except web.HTTPRequestEntityTooLarge:
            hint = "" if binary else f"; send large tensors as {BINARY} (up to {limits.max_body_bytes} bytes)"
            return _error(413, f"{'binary' if binary else 'JSON'} bodies are limited to {cap} bytes{hint}", "TooLarge")
        except _Timeout:
            return _error(408, f"the body did not arrive within {limits.body_timeout_seconds:g}s", "Timeout")
        except _Busy:
            response = _error(503, "too many large requests in flight; retry later", "Busy")
            response.headers["Retry-After"] = "1"
            return response
        try:
            if binary:
                out_name = _output_name(request, model)
                feeds, as_lists = await parse(lambda: _binary_inputs(request.headers, body, model), len(body)), False
            else:
                feeds, as_lists = await parse(lambda: _json_inputs(body, model), len(body))
            result = await backend.predict(name, feeds)
        except KeyError:
            return _error(404, f"model {name!r} was removed while the request waited", "NotFound")
        except BadRequest as exc:
            return _error(400, str(exc), exc.kind)
        except onnx_session.InferenceError as exc:
            if exc.client_error:
                return _error(400, str(exc), exc.kind)
            return _error(500, f"the model failed on this request: {exc}", exc.kind)
        served = result.model
        headers = {
            "X-Edgefleet-Model-Version": served.version,
            "X-Edgefleet-Model-Digest": served.digest,
        }
        if binary:
            out = np.ascontiguousarray(result.outputs[out_name] if out_name else next(iter(result.outputs.values())))
            little = out.astype(out.dtype.newbyteorder("<"), copy=False)
            headers |= {
                "X-Edgefleet-Output": out_name or next(iter(result.outputs)),
                "X-Edgefleet-Dtype": out.dtype.name,
                "X-Edgefleet-Shape": ",".join(str(d) for d in out.shape),
            }
            return web.Response(body=little.tobytes(), content_type=BINARY, headers=headers)
        model_doc = {"name": served.name, "version": served.version, "digest": served.digest}

        def encode() -> bytes:
            outputs = {k: (v.tolist() if as_lists else bundle.encode_array(v)) for k, v in result.outputs.items()}
            return json.dumps({"model": model_doc, "outputs": outputs}).encode()

        size = sum(int(v.nbytes) for v in result.outputs.values()) * (4 if as_lists else 1)
        payload = await parse(encode, size)  # a large answer is encoded off the event loop too
        return web.Response(body=payload, content_type="application/json", headers=headers)

    @web.middleware
    async def contained(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """No request ends in a traceback: an unexpected error is a short 500 and a rate-limited log line."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException:
            raise
        except Exception as exc:
            log.error("Failed request path=%s error=%s", request.path, type(exc).__name__)
            return _error(500, "internal error (logged on the device)", "InternalError")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"models": [_describe(m) for m in backend.served()]})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"ready": backend.ready}, status=200 if backend.ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(backend.metrics_registry)
        return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def stop_parser(_: web.Application) -> None:
        parser.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=max(limits.max_body_bytes, limits.max_json_bytes), middlewares=[contained])
    app.router.add_post(r"/v1/models/{name:[a-z0-9][-a-z0-9]*}:predict", predict)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_cleanup.append(stop_parser)
    return app


class _Timeout(Exception):
    pass


class _Busy(Exception):
    pass


def _output_name(request: web.Request, model: Served) -> str | None:
    wanted = request.headers.get("X-Edgefleet-Output")
    if not wanted:
        return None
    known = [o.name for o in model.runtime.outputs]
    if wanted not in known:
        raise BadRequest(f"model has no output {wanted!r} (outputs: {', '.join(known)})", "UnknownOutput")
    return wanted


def _json_inputs(body: bytes, model: Served) -> tuple[dict[str, np.ndarray[Any, Any]], bool]:
    """Parse a JSON predict body into the model's input arrays (total: raises BadRequest or InferenceError)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest('body is not valid JSON; send {"inputs": {name: [[...]]}}') from exc
    except RecursionError:
        raise BadRequest("body nests too deeply") from None
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, dict) or not inputs:
        raise BadRequest('body must be a JSON object with a non-empty "inputs" object')
    rt = model.runtime
    encoded = all(isinstance(v, dict) for v in inputs.values())
    feeds: dict[str, np.ndarray[Any, Any]] = {}
    for key, value in inputs.items():
        if encoded:
            try:
                value = tensors.decode(value)
            except errors.IntegrityError as exc:
                raise BadRequest(f"input {key!r}: {exc}", "BadInput") from None
        try:
            feeds[key] = rt.coerce(key, value)
        except RecursionError:
            raise BadRequest(f"input {key!r} nests too deeply", "BadInput") from None
    return feeds, not encoded


def _binary_inputs(headers: Mapping[str, str], body: bytes, model: Served) -> dict[str, np.ndarray[Any, Any]]:
    """One input from a raw body and the ``X-Edgefleet-*`` headers (total: raises BadRequest or InferenceError)."""
    rt = model.runtime
    name = headers.get("X-Edgefleet-Input") or rt.inputs[0].name
    spec = rt.input_spec(name)
    dtype_name = headers.get("X-Edgefleet-Dtype", "float32")  # present but empty is malformed, not the default
    try:
        dtype = tensors.check_dtype(dtype_name)
    except errors.IntegrityError as exc:
        raise BadRequest(f"X-Edgefleet-Dtype: {exc}", "BadInput") from None
    shape_header = (headers.get("X-Edgefleet-Shape") or "").replace(" ", "")
    if not shape_header:
        raise BadRequest("binary requests need X-Edgefleet-Shape, e.g. '1,4'")
    if not _SHAPE_HEADER.fullmatch(shape_header):
        raise BadRequest("X-Edgefleet-Shape must be up to 16 comma-separated non-negative integers, e.g. '1,4'")
    shape = tuple(int(d) for d in shape_header.split(","))
    try:
        array = tensors.from_bytes(body, dtype, shape)
    except errors.IntegrityError as exc:
        raise BadRequest(f"body does not fit X-Edgefleet-Shape: {exc}", "BadInput") from None
    return {spec.name: rt.coerce(spec.name, array)}


class Server:
    """Runs the app on 127.0.0.1:port or a UNIX socket; ``port`` is filled in after :meth:`start`."""

    def __init__(
        self,
        backend: Backend,
        *,
        port: int = 8181,
        unix_socket: Path | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.app = build_app(backend, self.limits)
        self.port = port
        self.unix_socket = unix_socket
        # keepalive_timeout also runs from the moment a connection opens, so it bounds slow or absent headers too.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, keepalive_timeout=self.limits.idle_timeout_seconds
        )
        self._site: _CappedSite | None = None

    @property
    def connections(self) -> int:
        """Connections open now (at most ``limits.max_connections`` are served; more are answered 503)."""
        return self._site.active if self._site is not None else 0

    async def start(self) -> None:
        await self._runner.setup()
        if self.unix_socket is not None:
            self.unix_socket.unlink(missing_ok=True)
        # Never 0.0.0.0: predictions are for local clients only.
        self._site = _CappedSite(
            self._runner, self.limits.max_connections, host="127.0.0.1", port=self.port, path=self.unix_socket
        )
        await self._site.start()
        if self.unix_socket is None and self.port == 0:
            self.port = self._site.port

    async def stop(self) -> None:
        await self._runner.cleanup()
        if self.unix_socket is not None:
            # asyncio (before Python 3.13) leaves the socket file behind when the server closes.
            self.unix_socket.unlink(missing_ok=True)


class _Counted(asyncio.Protocol):
    """Forwards to aiohttp's protocol and keeps the site's count of open connections."""

    def __init__(self, inner: asyncio.Protocol, site: _CappedSite) -> None:
        self.inner = inner
        self.site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.active -= 1
        self.inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection over the cap: told 503 at once and closed, so it holds no descriptor for long."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        body = b'{"error":{"class":"TooManyConnections","message":"too many open connections; retry later"}}'
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        transport.close()


class _CappedSite(web.BaseSite):
    """A TCP (127.0.0.1) or UNIX-socket site that serves at most ``cap`` connections at once."""

    def __init__(
        self, runner: web.AppRunner, cap: int, *, host: str, port: int, path: Path | None, backlog: int = 512
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.cap = cap
        self.active = 0
        self.refused = 0
        self.host = host
        self.port = port
        self.path = path

    @property
    def name(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"http://{self.host}:{self.port}"

    def _factory(self) -> asyncio.Protocol:
        if self.active >= self.cap:
            self.refused += 1
            if self.refused % 100 == 1:
                log.warning(
                    "Refused connection (cap reached) open=%d cap=%d refused=%d", self.active, self.cap, self.refused
                )
            return _Refused()
        self.active += 1
        server = self._runner.server
        assert server is not None
        return _Counted(server(), self)

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        if self.path is not None:
            self._server = await loop.create_unix_server(self._factory, str(self.path), backlog=self._backlog)
            return
        server = await loop.create_server(
            self._factory, self.host, self.port, backlog=self._backlog, reuse_address=True
        )
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])


__all__ = [
    "BINARY",
    "MAX_JSON_BYTES",
    "Backend",
    "BadRequest",
    "Limits",
    "RateLimitFilter",
    "Server",
    "build_app",
    "install_log_limits",
]
