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
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import prometheus_client
from aiohttp import web

from edgefleet.adapters import bundle, onnx_session

BINARY = "application/octet-stream"
MAX_BODY_BYTES = 64 * 1024 * 1024
CLIENT_ERRORS = frozenset({"BadInput", "UnknownInput", "MissingInput", "InvalidArgument", "BadRequest"})


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


def build_app(backend: Backend) -> web.Application:
    """The aiohttp application over ``backend``."""

    async def predict(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        model = backend.get(name)
        if model is None:
            return _error(404, f"model {name!r} is not served here; GET /v1/models lists what is", "NotFound")
        binary = request.content_type == BINARY
        try:
            if binary:
                raw, as_lists = _binary_inputs(request, await request.read(), model), False
            else:
                raw, as_lists = _json_inputs(await request.read())
            result = await backend.predict(name, raw)
        except KeyError:
            return _error(404, f"model {name!r} was removed while the request waited", "NotFound")
        except (ValueError, bundle.BundleError) as exc:
            return _error(400, str(exc), "BadRequest")
        except onnx_session.InferenceError as exc:
            return _error(400 if exc.kind in CLIENT_ERRORS else 500, str(exc), exc.kind)
        served = result.model
        headers = {
            "X-Edgefleet-Model-Version": served.version,
            "X-Edgefleet-Model-Digest": served.digest,
        }
        if binary:
            out_name = request.headers.get("X-Edgefleet-Output") or next(iter(result.outputs))
            out = np.ascontiguousarray(result.outputs[out_name])
            little = out.astype(out.dtype.newbyteorder("<"), copy=False)
            headers |= {
                "X-Edgefleet-Output": out_name,
                "X-Edgefleet-Dtype": str(out.dtype),
                "X-Edgefleet-Shape": ",".join(str(d) for d in out.shape),
            }
            return web.Response(body=little.tobytes(), content_type=BINARY, headers=headers)
        outputs = {k: (v.tolist() if as_lists else bundle.encode_array(v)) for k, v in result.outputs.items()}
        body = {"model": {"name": served.name, "version": served.version, "digest": served.digest}, "outputs": outputs}
        return web.json_response(body, headers=headers)

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"models": [_describe(m) for m in backend.served()]})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"ready": backend.ready}, status=200 if backend.ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(backend.metrics_registry)
        return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(r"/v1/models/{name:[a-z0-9][-a-z0-9]*}:predict", predict)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def _json_inputs(body: bytes) -> tuple[dict[str, Any], bool]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError('body is not valid JSON; send {"inputs": {name: [[...]]}}') from exc
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, dict) or not inputs:
        raise ValueError('body must be a JSON object with a non-empty "inputs" object')
    encoded = all(isinstance(v, dict) for v in inputs.values())
    if encoded:
        return {k: bundle.decode_array(v) for k, v in inputs.items()}, False
    return dict(inputs), True


def _binary_inputs(request: web.Request, body: bytes, model: Served) -> dict[str, Any]:
    rt = model.runtime
    name = request.headers.get("X-Edgefleet-Input") or rt.inputs[0].name
    dtype = np.dtype(request.headers.get("X-Edgefleet-Dtype", "float32")).newbyteorder("<")
    shape_header = request.headers.get("X-Edgefleet-Shape")
    if not shape_header:
        raise ValueError("binary requests need X-Edgefleet-Shape, e.g. '1,4'")
    shape = tuple(int(d) for d in shape_header.split(","))
    array = np.frombuffer(body, dtype=dtype)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"body holds {array.size} {dtype.name} values, shape {shape} needs {int(np.prod(shape))}")
    return {name: array.reshape(shape).astype(dtype.newbyteorder("="))}


class Server:
    """Runs the app on 127.0.0.1:port or a UNIX socket; ``port`` is filled in after :meth:`start`."""

    def __init__(self, backend: Backend, *, port: int = 8181, unix_socket: Path | None = None) -> None:
        self.app = build_app(backend)
        self.port = port
        self.unix_socket = unix_socket
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)

    async def start(self) -> None:
        await self._runner.setup()
        site: web.BaseSite
        if self.unix_socket is not None:
            self.unix_socket.unlink(missing_ok=True)
            site = web.UnixSite(self._runner, str(self.unix_socket))
            await site.start()
            return
        # Never 0.0.0.0: predictions are for local clients only.
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        await self._runner.cleanup()
        if self.unix_socket is not None:
            # asyncio (before Python 3.13) leaves the socket file behind when the server closes.
            self.unix_socket.unlink(missing_ok=True)


__all__ = ["BINARY", "Backend", "Server", "build_app"]
