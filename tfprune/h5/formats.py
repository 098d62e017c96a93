"""Reading the four Keras file layouts: which layers and tensors a file holds.

`detect(path)` tells an HDF5 file from a `.keras` zip archive by its first bytes;
`read_layers(f, config, path)` lists the `Layer`s (with their `Var` datasets) of an
open HDF5 file, whatever its layout:

- Keras 2 / tf_keras full model `.h5` ("keras2-model-h5"):
  `model_weights/<layer>/<weight name>`, config in the root attr `model_config`;
- Keras 2 weights-only `.h5` ("keras2-weights-h5"): layer groups at the root,
  listed in the root attr `layer_names`, each with `weight_names`;
- Keras 3 `.weights.h5` ("keras3-weights-h5"): `layers/<key>/vars/<i>` (nested
  models `layers/<key>/layers/<key>/vars/<i>`, RNN cells `.../cell/vars/<i>`); no
  weight names are stored, so a var's slot comes from its layer's class (from the
  config when there is one, else the group key or stored name) and its index;
- Keras 3 `.keras` archives: `config.json` + `model.weights.h5` (the same layout;
  `archive_config` reads the config, `check_config_matches` refuses an archive
  whose config does not describe its weights).

Every error names the user's file (`path`), never a temporary copy.

Example:

>>> import os, tempfile, keras, h5py
>>> path = os.path.join(tempfile.mkdtemp(), "m.weights.h5")
>>> keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")]).save_weights(path)
>>> detect(path)
'h5'
>>> with open_h5(path, "r", path) as f:
...     fmt, layers, _ = read_layers(f, None, path)
>>> fmt, [(layer.name, layer.cls, [v.slot for v in layer.vars]) for layer in layers]
('keras3-weights-h5', [('d', 'Dense', ['kernel', 'bias'])])
"""

import dataclasses
import json
import re
import zipfile

import h5py
import keras
import numpy as np
from tfprune._compat import to_snake_case

from tfprune import registry
from tfprune.h5 import config as config_lib

__all__ = [
    "Var", "Layer", "detect", "open_h5", "read_layers", "archive_config",
    "check_config_matches", "WEIGHTS_MEMBER", "CONFIG_MEMBER", "WEIGHT_LEAVES",
    "CLASS_NAMES",
]

WEIGHTS_MEMBER = "model.weights.h5"
CONFIG_MEMBER = "config.json"


# ----------------------------------------------------------------------------- records


@dataclasses.dataclass
class Var:
    """A dataset of a layer: `slot` is its attribute name ("kernel", "cell.kernel")
    or None when the file does not say (Keras 3 files, layer of unknown class)."""

    path: str
    slot: str
    shape: tuple
    dtype: np.dtype
    addr: int  # object header address: creation order in a file Keras wrote

    @property
    def leaf(self):
        return None if self.slot is None else self.slot.split(".")[-1]

    def usable(self):
        return np.issubdtype(self.dtype, np.floating) and int(np.prod(self.shape)) > 0


@dataclasses.dataclass
class Layer:
    """A layer found in a file: `id` is its name path, `cls` its class (or None)."""

    id: tuple
    cls: str
    vars: list

    @property
    def name(self):
        return "/".join(self.id)


def _var(ds, slot):
    return Var(ds.name, slot, tuple(ds.shape), ds.dtype, h5py.h5o.get_info(ds.id).addr)


def _layer_classes():
    """`{snake_case name: class name}` of every Keras layer class (and model classes)."""
    names = [n for n, obj in vars(keras.layers).items() if isinstance(obj, type)]
    return {to_snake_case(n): n for n in [*names, *config_lib.MODEL_CLASSES]}


_CLASS_BY_SNAKE = _layer_classes()
CLASS_NAMES = frozenset(_CLASS_BY_SNAKE.values())
# Leaves of weights pruned by some registry class (used for layers of unknown class).
WEIGHT_LEAVES = frozenset(
    p.split(".")[-1] for s in registry.SPECS_BY_CLASS_NAME.values() for p in s.weights
)


def _class_from_name(name):
    """Class a Keras auto-name stands for (`conv2d_3` -> Conv2D), or None."""
    if not name:
        return None
    return _CLASS_BY_SNAKE.get(name) or _CLASS_BY_SNAKE.get(re.sub(r"_\d+$", "", name))


def _text(x):
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


# ----------------------------------------------------------------------------- opening


def detect(path):
    """"h5" or "keras" (zip), from the file's first bytes; else a ValueError."""
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            raise ValueError(
                "Argument `path` must be a readable .keras archive. Received: "
                f"path={path!r} (a truncated or corrupt zip file)"
            )
        return "keras"
    if magic == b"\x89HDF\r\n\x1a\n" or h5py.is_hdf5(path):
        return "h5"
    raise ValueError(
        "Argument `path` must be a Keras weights file (.h5, .weights.h5 or .keras). "
        f"Received: path={path!r} (neither HDF5 nor a zip archive)"
    )


def open_h5(source, mode, path, member=False):
    """`h5py.File(source, mode)`: `source` is the file `path` (or a copy of it, or,
    with `member=True`, a copy of its archive's weights: a temp file path or a
    file object); errors name `path`, never the copy."""
    try:
        return h5py.File(source, mode)
    except OSError as e:
        reason = str(e)
        if isinstance(source, str):
            reason = reason.replace(source, path)
        what = f"its `{WEIGHTS_MEMBER}` is not" if member else "HDF5 could not open it,"
        raise ValueError(
            "Argument `path` must be a readable Keras weights file. Received: "
            f"path={path!r} ({what} a readable HDF5 file: truncated or corrupt? {reason})"
        ) from None


def archive_config(zf, path):
    """The model config of the open `.keras` archive `zf` (None if it has none or
    it is not JSON); a ValueError naming `path` if it holds no weights."""
    names = zf.namelist()
    if WEIGHTS_MEMBER not in names:
        raise ValueError(
            f"Argument `path` must be a .keras archive holding `{WEIGHTS_MEMBER}`. "
            f"Received: path={path!r} (members: {', '.join(names) or 'none'})"
        )
    if CONFIG_MEMBER not in names:
        return None
    try:
        return json.loads(zf.read(CONFIG_MEMBER))
    except ValueError:
        return None


# ----------------------------------------------------------------------------- layouts


def _layout(f, path):
    """`(format name, weights root group, config dict or None)` of an open h5 file."""
    config = json.loads(_text(f.attrs["model_config"])) if "model_config" in f.attrs else None
    if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
        return "keras2-model-h5", f["model_weights"], config
    if "layer_names" in f.attrs:
        return "keras2-weights-h5", f, config
    if "layers" in f or "vars" in f:
        return "keras3-weights-h5", f, None
    raise ValueError(
        "Argument `path` must be a Keras weights file: an HDF5 file with "
        "`model_weights`, `layer_names` or `layers/.../vars`. "
        f"Received: path={path!r} (an HDF5 file of another layout)"
    )


def read_layers(f, config, path):
    """`(format name, [Layer], Outline)` of an open h5 file, layers in model order
    (Keras 3 files without a config: in the order Keras wrote them). `config` (a
    `.keras` archive's) overrides the file's; `path` names the file in errors."""
    fmt, root, file_config = _layout(f, path)
    outline = config_lib.outline(config or file_config)
    if fmt == "keras3-weights-h5":
        layers = _keras3_layers(root, outline)
        if not outline.outputs:  # no stored order: the order Keras wrote them in
            layers.sort(key=lambda layer: min(v.addr for v in layer.vars))
    else:
        layers = _keras2_layers(root, outline)
    rank = {lid: i for i, lid in enumerate(outline.classes)}
    layers.sort(key=lambda layer: rank.get(layer.id, len(rank)))
    return fmt, layers, outline


# ------------------------------------------------------------------ Keras 2 layout

_KERAS2_SUBLAYERS = frozenset(
    ("cell", "lstm_cell", "gru_cell", "simple_rnn_cell",
     "query", "key", "value", "attention_output")
)


def _keras2_owner(parts, known):
    """Index in `parts` (a weight name split on "/") of the layer owning it."""
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in known:
            return i
    i = len(parts) - 2
    while i > 0 and parts[i] in _KERAS2_SUBLAYERS:
        i -= 1
    return i


def _keras2_layers(root, outline):
    """Layers of a Keras 2 h5 (`root` holds `layer_names` and one group per layer)."""
    layers = {}
    for group_name in map(_text, root.attrs["layer_names"]):
        group = root[group_name]
        ids = {lid[-1]: lid for lid in outline.classes if lid[0] == group_name}
        for wname in map(_text, group.attrs.get("weight_names", [])):
            parts = wname.split("/")
            i = _keras2_owner(parts, ids)
            owner = parts[i] if i >= 0 else group_name
            lid = ids.get(owner) or ((group_name,) if owner == group_name else (group_name, owner))
            cls = outline.classes.get(lid) or _class_from_name(owner)
            slot = ".".join(parts[i + 1:]).split(":")[0]
            if slot == "depthwise_kernel" and cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
                slot = "kernel"  # Keras 2 name of what Keras 3 calls the kernel
            layer = layers.setdefault(lid, Layer(lid, cls, []))
            layer.vars.append(_var(group[wname], slot))
    return list(layers.values())


# ------------------------------------------------------------------ Keras 3 layout


def _keras3_slots(cls):
    """`{sub-group: slot names of its vars/0, vars/1, ...}` of a class, in Keras 3."""
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        return {"": ("depthwise_kernel", "pointwise_kernel", "bias")}
    if cls in ("SimpleRNN", "LSTM", "GRU"):
        return {"cell": ("kernel", "recurrent_kernel", "bias")}
    if cls == "MultiHeadAttention":
        return {f"{p}_dense": ("kernel", "bias") for p in ("query", "key", "value", "output")}
    if cls == "Embedding":
        return {"": ("embeddings",)}
    if cls in registry.SPECS_BY_CLASS_NAME:
        return {"": ("kernel", "bias")}
    return {}


def _vars_of(group, names, prefix=""):
    """`Var`s of `group/vars/<i>`, named `prefix + names[i]` (None past the names)."""
    vgroup = group["vars"]
    out = []
    for key in sorted(vgroup, key=lambda k: (len(k), k)):
        i = int(key) if key.isdigit() else len(names)
        slot = prefix + names[i] if names is not None and i < len(names) else None
        out.append(_var(vgroup[key], slot))
    return out


def _keras3_known_layer(group, lid, cls):
    slots = _keras3_slots(cls)
    layer = Layer(lid, cls, [] if slots else _vars_of(group, None))
    for sub, names in slots.items():
        if not sub:
            layer.vars += _vars_of(group, names)
            continue
        for key in group:
            if key.lstrip("_") == sub and "vars" in group[key]:
                layer.vars += _vars_of(group[key], names, sub + ".")
    return layer


def _keras3_layers(root, outline):
    """Layers of a Keras 3 weights file (every group with a `vars` child is an object;
    groups without one are containers). The optimizer and the model's own vars are
    not layers."""
    layers = []

    def visit(group, path, parent_id):
        for key in group:
            child = group[key]
            if key == "vars" or not isinstance(child, h5py.Group) or path + key == "optimizer":
                continue
            cpath = path + key
            if "vars" not in child:
                visit(child, cpath + "/", parent_id)
                continue
            name = _text(child["vars"].attrs.get("name", key))
            lid = outline.keys.get(cpath) or parent_id + (name,)
            cls = outline.classes.get(lid) or _class_from_name(key) or _class_from_name(name)
            if cls in config_lib.MODEL_CLASSES:
                visit(child, cpath + "/", lid)
            elif cls in CLASS_NAMES:
                layers.append(_keras3_known_layer(child, lid, cls))
            else:  # custom class: its own vars by shape, its sublayers on their own
                layers.append(Layer(lid, None, _vars_of(child, None)))
                visit(child, cpath + "/", lid)

    visit(root, "", ())
    return [layer for layer in layers if layer.vars]


# ------------------------------------------------------------------ config vs weights


def _stored_variables(f):
    """`{dataset path: shape}` of the model weights in a Keras 3 weights file."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer/"):
            out[name] = tuple(obj.shape)

    f.visititems(visit)
    return out


def _by_layer(shapes):
    """`{layer group path: {var path: shape}}` of a `{var path: shape}` dict."""
    out = {}
    for p, shape in shapes.items():
        out.setdefault(p.rsplit("/vars/", 1)[0], {})[p] = shape
    return out


def _differences(expected, stored, limit=3):
    """Up to `limit` lines saying how two `{var path: shape}` dicts differ, layers
    first, then variable counts and shapes (and how many more)."""
    want, have = _by_layer(expected), _by_layer(stored)
    lines = [f"the weights have {g}, the config does not" for g in sorted(have.keys() - want)]
    lines += [f"the config has {g}, the weights do not" for g in sorted(want.keys() - have)]
    for g in sorted(want.keys() & have.keys()):
        if len(want[g]) != len(have[g]):
            lines.append(f"{g} has {len(have[g])} variables in the weights, "
                         f"{len(want[g])} in the config")
            continue
        lines += [f"{p} is {have[g][p]} in the weights, {want[g].get(p)} in the config"
                  for p in sorted(have[g]) if have[g][p] != want[g].get(p)]
    more = len(lines) - limit
    return lines[:limit] + ([f"{more} more"] if more > 0 else [])


def _top_level_differences(config, stored):
    """`_differences` at the level of the model's own layers (`layers/<key>`): what
    can be compared without building the model (a class Keras cannot import)."""
    outline = config_lib.outline(config)
    in_config = {k for k in outline.keys if k.count("/") == 1}
    in_weights = {"/".join(p.split("/")[:2]) for p in stored if p.startswith("layers/")}
    with_weights = {k for k in in_config
                    if outline.classes[outline.keys[k]] in registry.SPECS_BY_CLASS_NAME}
    lines = [f"the weights have {k}, the config does not" for k in sorted(in_weights - in_config)]
    lines += [f"the config has {k}, the weights do not" for k in sorted(with_weights - in_weights)]
    return lines


def check_config_matches(f, config, path):
    """Refuse a `.keras` archive whose `config.json` does not describe the weights
    in its `model.weights.h5` (`f`): other layers, another count of variables, or
    other shapes would prune the wrong layers, mislabel the report and leave a file
    that does not load.

    Compared: every model variable's path and shape, from the model the config
    builds (`config.expected_variables`). A config Keras cannot build (a custom
    class not imported here) is compared at the level of the model's own layers:
    each stored layer must be in the config, and each registry-class layer of the
    config must have stored weights.
    """
    if not config:
        return
    stored = _stored_variables(f)
    try:
        expected = config_lib.expected_variables(config)
    except Exception:  # noqa: BLE001 - whatever stops Keras building it
        lines = _top_level_differences(config, stored)
    else:
        lines = _differences(expected, stored)
    if lines:
        raise ValueError(
            f"Argument `path` must be a .keras archive whose `{CONFIG_MEMBER}` describes "
            f"its weights. Received: path={path!r} ({CONFIG_MEMBER} does not match "
            f"{WEIGHTS_MEMBER}: {'; '.join(lines)}); nothing was written"
        )
