"""Prune saved Keras weight files in place: `prune_weights_file` and `tfprune prune-h5`.

One-shot magnitude pruning of a file on disk, no model code needed: the masks are
the ones `tfprune.prune_low_magnitude` computes in training (`tfprune.masks`), so a
file pruned here and a layer pruned in training agree weight for weight.

Example (runs as is):

>>> import os, tempfile, keras, numpy as np, tfprune.h5
>>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32),
...                           keras.layers.Dense(4)])
>>> path = os.path.join(tempfile.mkdtemp(), "m.weights.h5")
>>> model.save_weights(path)
>>> report = tfprune.h5.prune_weights_file(path, sparsity=0.75)
>>> [(r.layer, r.weight, r.zeros_after) for r in report.rows]
[('dense', 'kernel', 384)]
>>> model.load_weights(path)
>>> float(np.mean(model.layers[0].kernel.numpy() == 0))
0.75

Command line: `tfprune prune-h5 m.keras --sparsity 0.9 [--granularity unit]
[--scope global] [--include REGEX] [--exclude REGEX] [--prune-output-layer]
[--dry-run] [--backup] [--json]` (`tfprune.cli.prune_h5`).

Formats (detected from the content, not the extension)
------------------------------------------------------
- Keras 2 / tf_keras full model `.h5` (`model.save("m.h5")`, also Keras 3's legacy
  h5): `model_weights/<layer>/<weight name>`, config in the root attr `model_config`.
- Keras 2 weights-only `.h5` (`save_weights`): layer groups at the root, listed in
  the root attr `layer_names`, each with `weight_names`.
- Keras 3 `.weights.h5`: `layers/<key>/vars/<i>` (nested models:
  `layers/<key>/layers/<key>/vars/<i>`, RNN cells: `.../cell/vars/<i>`). No weight
  names are stored, so kernels are told from biases by the layer class: the class
  comes from the model config when there is one (`.keras`), else from the group key
  (Keras names it after the class: `dense_3`, `conv2d_transpose`) or the stored
  layer name; the class's variable order (`Dense`: kernel, bias; `SeparableConv2D`:
  depthwise kernel, pointwise kernel, bias; `LSTM`: `cell/` kernel, recurrent
  kernel, bias) names the `vars/<i>`. A layer of unknown class (a custom layer) is
  pruned by shape: every float variable with >= 2 dims is a kernel (with
  `granularity="unit"`: only if it has exactly one, units on its last axis, and a
  1-D variable of matching length is its bias).
- Keras 3 `.keras` zip archives: `config.json` + `model.weights.h5` (same layout).
  The inner file is rewritten and the archive rebuilt (other members byte-for-byte).

Which weights are pruned: those `tfprune.registry` lists for the layer's class
(`Dense`, `Conv*`, `SeparableConv*` pointwise kernel, `DepthwiseConv*`, `Embedding`,
`EinsumDense`, RNN kernels, `MultiHeadAttention` projections). Non-float and
empty datasets are left alone; a kernel needs >= 2 dims.
`granularity="unit"` ranks output units by the L2 norm of their incoming weights
(layers with units only) and zeroes the unit's bias entries too; each layer is
ranked on its own (residual coupling needs the model, use training for that).

Layer names, `include` / `exclude`: a layer is named by its Keras name, nested
models joined with "/" (`"inner/dense_2"`); the regexes are matched with
`re.search` against that name. The output layer (`skip_output_layer=True`, the
default, as in the seed script) is the model's output layer from the config (each
output of a multi-output model; if it has no weights, e.g. an `Activation`, the
nearest layer before it in model order that has weights). Without a config it is
the last layer with weights in file order (`layer_names` for Keras 2; for Keras 3
`.weights.h5`, which stores no order, the layer whose variables were written last,
by HDF5 object address: Keras writes layers in model order). The report lists
what was kept and why.

Optimizer state (`optimizer_weights` in full-model h5, `optimizer/` in Keras 3
files) is left exactly as it is: only model weights change. The slots of pruned
weights matter only when training resumes from the file, and plain training
regrows pruned weights anyway; to fine-tune sparse, load the model and use
`tfprune.prune_low_magnitude`.

Safety: the result is written beside the file (`.NAME.tfprune-PID-XXXX.tmp`, same
folder), flushed and fsynced, given the original's permission bits, then renamed
over the original (`os.replace`, atomic): killed at any instant, the path holds
either the original or the fully pruned file. A killed run can leave its temp
file; the next run on the same file deletes temp files of dead processes. Bad
input (missing or unreadable file, not a Keras file, read-only file or folder, bad
arguments, nothing matched) raises before anything is written. `backup=True`
keeps the original as `PATH.orig` (a hard link when the file system allows) and
refuses to run if `PATH.orig` exists, so a first original is never overwritten by
a second run. `dry_run=True` computes the report and writes nothing (the weights
of a `.keras` archive are unpacked to an anonymous temporary file to be read).
Read-only is the OS's answer (`os.access`) or, also for root, a file or folder
with no write permission bit at all. A symlink is followed: the file it points to
is rewritten (and backed up beside it).

Speed and memory: every pruned tensor is streamed block by block
(`masks.BLOCK_SIZE` elements) through a few buffers reused for all tensors, in
any scope. The keep sets are found from the original (two passes per tensor for
weights, `masks.topk_threshold_np`; one for units, their sums of squares) while
the kernel copies the file to the temp file; then one pass zeroes each block of
the copy and writes it back in place. Memory stays a few tens of MB whatever the
tensor sizes (`benchmarks/h5_speed.py`: a 528 MB VGG-16 file in about 2x the time
of copying it with fsync).
"""

import dataclasses
import glob
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor

import h5py
import keras
import numpy as np
from keras.src.utils.naming import to_snake_case

from tfprune import masks
from tfprune import registry
from tfprune.wrappers import check_granularity

__all__ = ["LayerRow", "PruneReport", "prune_weights_file", "register_cli", "main"]

_WEIGHTS_MEMBER = "model.weights.h5"
_CONFIG_MEMBER = "config.json"
_TEMP_TAG = ".tfprune-"
_MODEL_CLASSES = ("Functional", "Sequential", "Model")

# ----------------------------------------------------------------------------- report


@dataclasses.dataclass
class LayerRow:
    """One pruned (or, in a dry run, would-be pruned) weight tensor."""

    layer: str
    weight: str
    shape: tuple
    total: int
    zeros_before: int
    zeros_after: int

    @property
    def sparsity_before(self):
        return self.zeros_before / self.total

    @property
    def sparsity_after(self):
        return self.zeros_after / self.total

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["sparsity_before"] = self.sparsity_before
        d["sparsity_after"] = self.sparsity_after
        return d


@dataclasses.dataclass
class PruneReport:
    """What `prune_weights_file` did: one `LayerRow` per tensor, and what it kept."""

    path: str
    format: str
    sparsity: float
    granularity: str
    scope: str
    dry_run: bool
    backup_path: str = None
    rows: list = dataclasses.field(default_factory=list)
    kept: list = dataclasses.field(default_factory=list)  # [(layer, reason)]

    @property
    def total(self):
        return sum(r.total for r in self.rows)

    @property
    def zeros_after(self):
        return sum(r.zeros_after for r in self.rows)

    def to_dict(self):
        """JSON-able dict (`json.dumps(report.to_dict())`)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["rows"] = [r.to_dict() for r in self.rows]
        d["kept"] = [{"layer": n, "reason": why} for n, why in self.kept]
        return d

    def table(self):
        """The report as a fixed-width text table."""
        head = ("layer", "weight", "shape", "total", "zeros before", "zeros after",
                "sparsity before", "sparsity after")
        body = [
            (r.layer, r.weight, "x".join(map(str, r.shape)), str(r.total),
             str(r.zeros_before), str(r.zeros_after),
             f"{r.sparsity_before:.2%}", f"{r.sparsity_after:.2%}")
            for r in self.rows
        ]
        if self.rows:
            body.append(("total", "", "", str(self.total), "",
                         str(self.zeros_after), "", f"{self.zeros_after / self.total:.2%}"))
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        lines = [
            f"{self.path} ({self.format}): granularity={self.granularity} "
            f"scope={self.scope} sparsity={self.sparsity}"
            + (" [dry run: nothing written]" if self.dry_run else "")
            + (f" [backup: {self.backup_path}]" if self.backup_path else "")
        ]
        for row in [head, *body]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        lines += [f"kept {name}: {why}" for name, why in self.kept]
        return "\n".join(lines)

    __str__ = table


# ----------------------------------------------------------------------------- checks


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Argument `path` must be a file path. Received: path={path!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Argument `path` must be an existing file. Received: path={path!r} "
            "(no such file)"
        )
    if not os.path.isfile(path):
        raise ValueError(f"Argument `path` must be a file. Received: path={path!r}")
    if not os.access(path, os.R_OK):
        raise PermissionError(
            f"Argument `path` must be readable. Received: path={path!r} (permission denied)"
        )
    return path


def _read_only(path):
    return not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222


def _check_writable(path):
    """Refuse a read-only file or folder before anything is written."""
    folder = os.path.dirname(os.path.abspath(path))
    if _read_only(path):
        raise PermissionError(
            f"Argument `path` must be a writable file. Received: path={path!r} "
            "(the file is read-only)"
        )
    if _read_only(folder) or not os.access(folder, os.X_OK):
        raise PermissionError(
            f"Argument `path` must be in a writable folder (the pruned file is written "
            f"beside it, then renamed). Received: path={path!r} (folder {folder!r} is "
            "read-only)"
        )


def _check_backup(path):
    orig = path + ".orig"
    if os.path.lexists(orig):
        raise FileExistsError(
            f"Argument `backup` would overwrite an existing backup. Received: backup=True "
            f"with {orig!r} already present (remove it, or pass backup=False)"
        )
    return orig


def _compile(name, pattern):
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise ValueError(
            f"Argument `{name}` must be a regular expression string. "
            f"Received: {name}={pattern!r}"
        )
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(
            f"Argument `{name}` must be a valid regular expression. "
            f"Received: {name}={pattern!r} ({e})"
        ) from None


def _check_options(sparsity, granularity, scope, round_to):
    sparsity = masks.check_sparsity(sparsity)
    check_granularity(granularity)
    masks.check_scope(scope)
    masks.check_round_to(round_to)
    return sparsity


# ----------------------------------------------------------------------------- layers


@dataclasses.dataclass
class _Var:
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
class _Layer:
    """A layer found in a file: `id` is its name path, `cls` its class (or None)."""

    id: tuple
    cls: str
    vars: list

    @property
    def name(self):
        return "/".join(self.id)


def _var(ds, slot):
    return _Var(ds.name, slot, tuple(ds.shape), ds.dtype, h5py.h5o.get_info(ds.id).addr)


def _layer_classes():
    """`{snake_case name: class name}` of every Keras layer class (and model classes)."""
    names = [n for n, obj in vars(keras.layers).items() if isinstance(obj, type)]
    return {to_snake_case(n): n for n in [*names, *_MODEL_CLASSES]}


_CLASS_BY_SNAKE = _layer_classes()
# Leaves of weights pruned by some registry class (used for layers of unknown class).
_WEIGHT_LEAVES = frozenset(
    p.split(".")[-1] for s in registry.SPECS_BY_CLASS_NAME.values() for p in s.weights
)


def _class_from_name(name):
    """Class a Keras auto-name stands for (`conv2d_3` -> Conv2D), or None."""
    if not name:
        return None
    return _CLASS_BY_SNAKE.get(name) or _CLASS_BY_SNAKE.get(re.sub(r"_\d+$", "", name))


def _text(x):
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


# ------------------------------------------------------------------ model config


def _is_model_config(entry):
    return isinstance(entry, dict) and isinstance(
        (entry.get("config") or {}).get("layers"), list
    )


def _entry_name(entry):
    return (entry.get("config") or {}).get("name") or entry.get("name")


def _output_names(cfg):
    """Names of a Functional/Sequential config's output layers."""
    inner = cfg["config"]
    if "output_layers" not in inner:  # Sequential: the last layer
        layers = [e for e in inner["layers"] if e.get("class_name") != "InputLayer"]
        return [_entry_name(layers[-1])] if layers else []
    names = []

    def collect(x):
        if isinstance(x, list) and len(x) == 3 and isinstance(x[0], str):
            names.append(x[0])
        elif isinstance(x, (list, tuple)):
            for y in x:
                collect(y)
        elif isinstance(x, dict):
            for y in x.values():
                collect(y)

    collect(inner["output_layers"])
    return names


@dataclasses.dataclass
class _Outline:
    """What a model config says: classes by layer id (in model order), output ids,
    and layer ids by Keras 3 weights-file key path."""

    classes: dict = dataclasses.field(default_factory=dict)
    outputs: list = dataclasses.field(default_factory=list)
    keys: dict = dataclasses.field(default_factory=dict)


def _outline(cfg):
    """Walk a model config (nested models too) into an `_Outline`."""
    out = _Outline(outputs=_output_ids(cfg, ()))
    _add_layers(cfg, (), "", out)
    return out


def _add_layers(cfg, prefix, key_path, out):
    """Record the classes and Keras 3 key paths of `cfg`'s layers, recursively."""
    if not _is_model_config(cfg):
        return
    sequential = cfg.get("class_name") == "Sequential"
    used = {}
    for entry in cfg["config"]["layers"]:
        cls = entry.get("class_name")
        lid = prefix + (_entry_name(entry),)
        out.classes[lid] = cls
        if sequential and cls == "InputLayer":  # not in Sequential.layers
            continue
        key = to_snake_case(cls)
        used[key] = used.get(key, -1) + 1
        key = key if used[key] == 0 else f"{key}_{used[key]}"
        out.keys[f"{key_path}layers/{key}"] = lid
        _add_layers(entry, lid, f"{key_path}layers/{key}/", out)


def _output_ids(cfg, prefix):
    """Ids of the output layers of a model config (inside nested output models)."""
    if not _is_model_config(cfg):
        return []
    by_name = {_entry_name(e): e for e in cfg["config"]["layers"]}
    ids = []
    for name in _output_names(cfg):
        entry = by_name.get(name)
        nested = _output_ids(entry, prefix + (name,)) if _is_model_config(entry) else []
        ids += nested or [prefix + (name,)]
    return ids


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
            layer = layers.setdefault(lid, _Layer(lid, cls, []))
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
    """`_Var`s of `group/vars/<i>`, named `prefix + names[i]` (None past the names)."""
    vgroup = group["vars"]
    out = []
    for key in sorted(vgroup, key=lambda k: (len(k), k)):
        i = int(key) if key.isdigit() else len(names)
        slot = prefix + names[i] if names is not None and i < len(names) else None
        out.append(_var(vgroup[key], slot))
    return out


def _keras3_known_layer(group, lid, cls):
    slots = _keras3_slots(cls)
    layer = _Layer(lid, cls, [] if slots else _vars_of(group, None))
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
            if cls in _MODEL_CLASSES:
                visit(child, cpath + "/", lid)
            elif cls in _CLASS_BY_SNAKE.values():
                layers.append(_keras3_known_layer(child, lid, cls))
            else:  # custom class: its own vars by shape, its sublayers on their own
                layers.append(_Layer(lid, None, _vars_of(child, None)))
                visit(child, cpath + "/", lid)

    visit(root, "", ())
    return [layer for layer in layers if layer.vars]


# ----------------------------------------------------------------------------- targets


def _kernel_ok(v):
    return v is not None and v.usable() and len(v.shape) >= 2


def _weight_targets(layer):
    """The `_Var`s of `layer` pruned with granularity="weight"."""
    spec = registry.SPECS_BY_CLASS_NAME.get(layer.cls)
    if spec is not None:
        leaves = {p.split(".")[-1] for p in spec.weights}
        found = [v for v in layer.vars if v.leaf in leaves]
    elif layer.cls is None:
        found = [v for v in layer.vars if v.slot is None or v.leaf in _WEIGHT_LEAVES]
    else:
        found = []
    return [v for v in found if _kernel_ok(v)]


def _unit_target(layer):
    """`(kernel, unit_kind, bias or None)` for granularity="unit", or None."""
    spec = registry.SPECS_BY_CLASS_NAME.get(layer.cls)
    if spec is not None:
        if spec.unit_kernel is None:
            return None
        kernel = next((v for v in layer.vars if v.slot == spec.unit_kernel), None)
        bias = next((v for v in layer.vars if spec.unit_bias and v.slot == spec.unit_bias), None)
        kind = spec.unit_kind
    elif layer.cls is None:
        kernels = _weight_targets(layer)
        if len(kernels) != 1:
            return None
        kernel, kind = kernels[0], "last"
        ones = [v for v in layer.vars if len(v.shape) == 1 and v.slot in (None, "bias")]
        bias = ones[0] if len(ones) == 1 else None
    else:
        return None
    if not _kernel_ok(kernel):
        return None
    units = int(np.prod(registry.unit_shape(kind, kernel.shape)))
    if bias is not None and not (bias.usable() and bias.shape == (units,)):
        bias = None
    return kernel, kind, bias


# ----------------------------------------------------------------------------- plan


@dataclasses.dataclass
class _Plan:
    """Layers to prune (with their targets) and layers kept, with reasons."""

    jobs: list  # [(layer name, [_Var]) or (layer name, (kernel, kind, bias))]
    kept: list


def _targets(layer, granularity):
    if granularity == "weight":
        return _weight_targets(layer) or None
    return _unit_target(layer)


def _output_layers(layers, outline):
    """Ids of the layers kept by `skip_output_layer` (see the module doc)."""
    if outline.outputs:
        order, outputs = list(outline.classes), outline.outputs
    else:
        order = [layer.id for layer in layers]
        outputs = order[-1:]
    weighted = {layer.id for layer in layers}
    kept = set()
    for out in outputs:
        before = order[: order.index(out) + 1] if out in order else order
        kept.update(next(([lid] for lid in reversed(before) if lid in weighted), []))
    return kept


def _plan(layers, outline, granularity, include, exclude, skip_output_layer):
    outputs = _output_layers(layers, outline) if skip_output_layer else set()
    jobs, kept, candidates = [], [], []
    for layer in layers:
        targets = _targets(layer, granularity)
        if targets is None:
            continue
        candidates.append(layer.name)
        if include is not None and not include.search(layer.name):
            continue
        if exclude is not None and exclude.search(layer.name):
            kept.append((layer.name, f"excluded by exclude={exclude.pattern!r}"))
        elif layer.id in outputs:
            kept.append((layer.name, "output layer (skip_output_layer=True)"))
        else:
            jobs.append((layer.name, targets))
    if not jobs:
        _nothing_to_prune(candidates, kept, granularity, include, exclude)
    return _Plan(jobs, kept)


def _nothing_to_prune(candidates, kept, granularity, include, exclude):
    names = ", ".join(candidates) or "none"
    if not candidates:
        raise ValueError(
            "No prunable weights in the file for this granularity. Received: "
            f"granularity={granularity!r} (prunable layers: none)"
        )
    if include is not None and len(kept) == 0:
        raise ValueError(
            f"Argument `include` matched no prunable layer. Received: "
            f"include={include.pattern!r} (prunable layers: {names})"
        )
    if exclude is not None and any("exclude" in why for _, why in kept):
        raise ValueError(
            f"Argument `exclude` left nothing to prune. Received: "
            f"exclude={exclude.pattern!r} (prunable layers: {names})"
        )
    raise ValueError(
        "Argument `skip_output_layer` left nothing to prune: the only prunable layer "
        f"is the output layer. Received: skip_output_layer=True (prunable layers: {names})"
    )


# ----------------------------------------------------------------------------- masking
#
# Each pruned tensor is streamed block by block (`masks.BLOCK_SIZE` elements) through
# buffers reused across tensors (`masks.Scratch`). `_decide` finds what to keep, a
# pass per statistic (re-reading from the page cache costs little; fresh memory
# costs more than the math); `_apply` zeroes each block and writes it back.
# Memory: a few blocks, whatever the file.


def _blocks(shape, lead):
    """Cut a C-order array of `shape` along its first `lead` axes into consecutive
    blocks of at most `masks.BLOCK_SIZE` elements (at least one `shape[lead:]` slab).

    Yields `(selection, block shape)`: the selection fixes the axes before the cut
    axis and slices the cut axis, so a block is one contiguous run of the array.
    """
    shape = tuple(shape)
    if lead == 0:
        yield (), shape
        return
    per = max(1, masks.BLOCK_SIZE // math.prod(shape[lead:]))  # slabs per block
    cut = next(i for i in range(lead) if math.prod(shape[i + 1 : lead]) <= per)
    step = per // math.prod(shape[cut + 1 : lead])
    for index in np.ndindex(*shape[:cut]):
        for j in range(0, shape[cut], step):
            stop = min(j + step, shape[cut])
            yield (*index, slice(j, stop)), (stop - j, *shape[cut + 1 :])


def _read_blocks(ds, lead, scratch):
    """Yields `(selection, block)`: `ds` cut by `_blocks`, every block read into the
    same buffer (native byte order), valid until the next one is read."""
    dtype = ds.dtype.newbyteorder("=")
    for sel, shape in _blocks(ds.shape, lead):
        block = scratch.get("block", math.prod(shape), dtype).reshape(shape)
        ds.read_direct(block, source_sel=sel)
        yield sel, block


def _zero_where_not(w, keep):
    """`w[keep == 0] = 0` in place (`keep`: bools or 0/1 ints, broadcasting), exactly
    +0.0, NaN and inf too.

    Multiplying the float's bit pattern (as an integer) by 0/1 is 4x faster than
    a masked copy and, unlike a float multiply, never leaves -0.0 or NaN.
    """
    if w.dtype.itemsize in (2, 4, 8):
        bits = w.view(f"i{w.dtype.itemsize}")
        np.multiply(bits, keep, out=bits)
    else:
        np.copyto(w, 0, where=np.logical_not(keep))


def _nonzeros(w, scratch):
    """`np.count_nonzero(w)` of a float block (+-0.0 are zeros), 2x faster on the
    bits with the sign shifted out."""
    if w.dtype.itemsize not in (2, 4, 8):
        return np.count_nonzero(w)
    bits = w.reshape(-1).view(f"i{w.dtype.itemsize}")
    return np.count_nonzero(np.left_shift(bits, 1, out=scratch.get("nz", bits.size, bits.dtype)))


def _mask_block(ds, sel, block, keep, write, scratch):
    """Zero `block` (read from `ds` at `sel`) where `keep` is 0 and, with `write`,
    write it back; returns its nonzero counts before and after."""
    before = _nonzeros(block, scratch)
    _zero_where_not(block, keep)
    if write:
        ds.write_direct(block, dest_sel=sel)
    return before, _nonzeros(block, scratch)


def _mask_dataset(ds, lead, keep, write, scratch):
    """`_mask_block` over all of `ds`, cut along its first `lead` axes (which the
    broadcasting `keep` must not span); returns the nonzero counts before, after."""
    counts = np.zeros(2, np.int64)
    for sel, block in _read_blocks(ds, lead, scratch):
        counts += _mask_block(ds, sel, block, keep, write, scratch)
    return counts


def _slot(v):
    return v.slot or v.path.rsplit("/", 2)[-2] + "/" + v.path.rsplit("/", 1)[-1]


def _row(layer, var, nonzero_before, nonzero_after):
    total = math.prod(var.shape)
    return LayerRow(layer, _slot(var), tuple(var.shape), total,
                    total - int(nonzero_before), total - int(nonzero_after))


def _scored_blocks(datasets, protect, scratch):
    """Yields `(i, selection, block, score bits)` over the blocks of `datasets` in
    turn (`masks.score_bits_np` of |w|); the item at flat index `protect[i]` (or
    None) of dataset i scores +inf, as `select_np` protects each tensor's best
    weight in global scope."""
    for i, (ds, p) in enumerate(zip(datasets, protect)):
        start = 0
        for sel, block in _read_blocks(ds, ds.ndim, scratch):
            bits = masks.score_bits_np(block.reshape(-1), scratch.get("bits", block.size, np.int32))
            if p is not None and 0 <= p - start < bits.size:
                bits[p - start] = masks.INF_BITS
            start += bits.size
            yield i, sel, block, bits


@dataclasses.dataclass
class _Ranking:
    """Weight tensors ranked as one flat vector (their concatenation, in order) and
    its keep set: the `(t, ties)` of `masks.topk_threshold_np`. `protect` holds,
    per tensor, the flat index of the weight scored +inf (or None)."""

    paths: list
    protect: list
    t: int
    ties: int


def _ranking(datasets, protect, k, scratch):
    """The `_Ranking` keeping the `k` best weights of `datasets` (exact, ties by
    index, as `masks.topk_keep_np` on their concatenation)."""
    def chunks():
        return (bits for *_, bits in _scored_blocks(datasets, protect, scratch))

    n = sum(ds.size for ds in datasets)
    t, ties = masks.topk_threshold_np(chunks, k, n, scratch)
    return _Ranking([ds.name for ds in datasets], protect, t, ties)


def _weight_rankings(f, targets, sparsity, scope, scratch):
    """`select_np` of the weight scores of `targets` (`_Var`s) as `_Ranking`s: one
    per tensor (layer scope), or one of all, each protecting its best weight."""
    datasets = [f[v.path] for v in targets]
    if scope == "layer":
        return [_ranking([ds], [None], masks.keep_count(ds.size, sparsity), scratch)
                for ds in datasets]
    protect = [
        masks.top1_index_np(bits for *_, bits in _scored_blocks([ds], [None], scratch))
        for ds in datasets
    ]
    k = masks.global_keep_count([ds.size for ds in datasets], sparsity)
    return [_ranking(datasets, protect, k, scratch)]


def _apply_ranking(f, ranking, write, scratch):
    """Zero the weights `ranking` does not keep, block by block; returns the nonzero
    counts `[before, after]` of each of its tensors."""
    datasets = [f[path] for path in ranking.paths]
    ties = ranking.ties
    counts = np.zeros((len(datasets), 2), np.int64)
    for i, sel, block, bits in _scored_blocks(datasets, ranking.protect, scratch):
        keep = scratch.get("keep", bits.size, np.int32).reshape(block.shape)
        ties = masks.keep_bits_np(bits, ranking.t, ties, keep.reshape(-1))
        counts[i] += _mask_block(datasets[i], sel, block, keep, write, scratch)
    return counts


def _unit_cut(ds, kind):
    """`(unit mask shape, lead)`: `ds`'s unit shape and how many leading axes it
    may be cut along (`masks.unit_lead_axes`)."""
    ushape = registry.unit_shape(kind, ds.shape)
    return ushape, masks.unit_lead_axes(ds.shape, ushape)


def _unit_scores(f, kernel, kind, scope, scratch):
    ds = f[kernel.path]
    ushape, lead = _unit_cut(ds, kind)
    rows = (b.reshape(-1, *ds.shape[lead:]) for _, b in _read_blocks(ds, lead, scratch))
    return masks.unit_scores_chunked_np(rows, ds.shape, ushape, scope == "global", scratch)


def _unit_keeps(f, jobs, sparsity, scope, round_to, scratch):
    """`select_np` of the unit scores of `jobs`: a bool mask per layer, each layer
    ranked on its own (layer scope) or all together."""
    scores = [_unit_scores(f, k, kind, scope, scratch) for _, (k, kind, _) in jobs]
    if scope == "layer":
        return [masks.select_np([s], sparsity, "layer", round_to=round_to)[0] for s in scores]
    return masks.select_np(scores, sparsity, "global", round_to=round_to)


def _apply_units(f, name, target, keep, write, scratch):
    kernel, kind, bias = target
    ushape, lead = _unit_cut(f[kernel.path], kind)
    keep = keep.astype(np.int32)  # an int mask multiplies the bits faster than bools
    counts = _mask_dataset(f[kernel.path], lead, keep.reshape(ushape), write, scratch)
    rows = [_row(name, kernel, *counts)]
    if bias is not None:
        rows.append(_row(name, bias, *_mask_dataset(f[bias.path], 0, keep, write, scratch)))
    return rows


def _decide(f, plan, options, scratch):
    """What to keep, from the data in `f`: `_Ranking`s (weights) or unit masks."""
    sparsity, scope = options["sparsity"], options["scope"]
    if options["granularity"] == "weight":
        targets = [v for _, vs in plan.jobs for v in vs]
        return _weight_rankings(f, targets, sparsity, scope, scratch)
    return _unit_keeps(f, plan.jobs, sparsity, scope, options["round_to"], scratch)


def _apply(f, plan, decisions, options, write, scratch):
    """Zero in `f` what `decisions` (from `_decide`) does not keep, writing it back
    with `write` (else a dry run: only counted); returns the report rows."""
    if options["granularity"] == "weight":
        counts = [c for ranking in decisions for c in _apply_ranking(f, ranking, write, scratch)]
        targets = [(name, v) for name, vs in plan.jobs for v in vs]
        return [_row(name, v, *c) for (name, v), c in zip(targets, counts)]
    rows = []
    for (name, target), keep in zip(plan.jobs, decisions):
        rows += _apply_units(f, name, target, keep, write, scratch)
    return rows


# ----------------------------------------------------------------------------- formats


def _h5_layout(f):
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
        f"Received: path={f.filename!r} (an HDF5 file of another layout)"
    )


def _plan_file(f, config, options):
    """`(format name, _Plan)` of an open h5 file; `config` (a .keras archive's)
    overrides the file's."""
    fmt, root, file_config = _h5_layout(f)
    config = config or file_config
    outline = _outline(config) if config else _Outline()
    if fmt == "keras3-weights-h5":
        layers = _keras3_layers(root, outline)
        if not outline.outputs:  # no stored order: the order Keras wrote them in
            layers.sort(key=lambda layer: min(v.addr for v in layer.vars))
    else:
        layers = _keras2_layers(root, outline)
    rank = {lid: i for i, lid in enumerate(outline.classes)}
    layers.sort(key=lambda layer: rank.get(layer.id, len(rank)))
    plan = _plan(layers, outline, options["granularity"], options["include"],
                 options["exclude"], options["skip_output_layer"])
    return fmt, plan


def _prune_open_h5(f, config, options, write):
    """Prune an open h5 file in place (`write=False`: a dry run, report only);
    returns `(format name, rows, kept)`."""
    fmt, plan = _plan_file(f, config, options)
    scratch = masks.Scratch()
    decisions = _decide(f, plan, options, scratch)
    return fmt, _apply(f, plan, decisions, options, write, scratch), plan.kept


def _open_h5(path_or_file, mode):
    try:
        return h5py.File(path_or_file, mode)
    except OSError as e:
        name = path_or_file if isinstance(path_or_file, str) else _WEIGHTS_MEMBER
        raise ValueError(
            "Argument `path` must be a readable Keras weights file. Received: "
            f"path={name!r} (HDF5 could not open it, truncated or corrupt? {e})"
        ) from None


def _kind(path):
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


def _archive_config(zf, path):
    names = zf.namelist()
    if _WEIGHTS_MEMBER not in names:
        raise ValueError(
            f"Argument `path` must be a .keras archive holding `{_WEIGHTS_MEMBER}`. "
            f"Received: path={path!r} (members: {', '.join(names) or 'none'})"
        )
    if _CONFIG_MEMBER not in names:
        return None
    try:
        return json.loads(zf.read(_CONFIG_MEMBER))
    except ValueError:
        return None


# ----------------------------------------------------------------------------- writing


def _temp(path):
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix=f".{base}{_TEMP_TAG}{os.getpid()}-", suffix=".tmp", dir=folder
    )
    os.close(fd)
    return tmp


def _remove_stale_temps(path):
    """Delete temp files that killed runs on `path` left behind (dead PIDs only)."""
    folder, base = os.path.split(os.path.abspath(path))
    pattern = os.path.join(glob.escape(folder), f".{glob.escape(base)}{_TEMP_TAG}*.tmp")
    for tmp in glob.glob(pattern):
        pid = os.path.basename(tmp)[len(base) + 1 + len(_TEMP_TAG):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            _unlink(tmp)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup(path, orig):
    """Keep the original as `orig`: a hard link, or a copy where links fail."""
    try:
        os.link(path, orig)
    except OSError:
        tmp = _temp(path)
        try:
            shutil.copy2(path, tmp)
            _fsync(tmp)
            os.replace(tmp, orig)
        finally:
            _unlink(tmp)


def _replace_atomically(path, write, orig=None):
    """Write the new content with `write(tmp)` beside `path`, then rename it over."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    _remove_stale_temps(path)
    tmp = _temp(path)
    try:
        result = write(tmp)
        os.chmod(tmp, mode)
        _fsync(tmp)
        if orig is not None:
            _backup(path, orig)
        os.replace(tmp, path)
    finally:
        _unlink(tmp)
    _fsync(os.path.dirname(os.path.abspath(path)))
    return result


def _copy_into(src, dst):
    """Copy file `src` into the new empty file `dst` without truncating it: ext4
    writes a truncated-and-rewritten file out when it is closed (`auto_da_alloc`),
    a wasted disk write here, where the pruned datasets are overwritten next."""
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        if not sys.platform.startswith("linux"):  # sendfile to a file: Linux only
            shutil.copyfileobj(fin, fout, 1 << 20)
            return
        size, done = os.fstat(fin.fileno()).st_size, 0
        while done < size:
            sent = os.sendfile(fout.fileno(), fin.fileno(), done, size - done)
            if sent == 0:
                break
            done += sent


def _write_pruned_h5(path, options):
    def write(tmp):
        scratch = masks.Scratch()
        with _open_h5(path, "r") as f, ThreadPoolExecutor(1) as pool:
            copying = pool.submit(_copy_into, path, tmp)  # in the kernel, meanwhile:
            fmt, plan = _plan_file(f, None, options)
            decisions = _decide(f, plan, options, scratch)  # read from the original
            copying.result()
        with _open_h5(tmp, "r+") as out:
            return fmt, _apply(out, plan, decisions, options, True, scratch), plan.kept

    return write


def _copy_member(zin, zout, info, src=None):
    """Copy archive member `info` into `zout`, from `src` (a file path) if given."""
    new = zipfile.ZipInfo(info.filename, info.date_time)
    new.compress_type = info.compress_type
    new.external_attr = info.external_attr
    new.create_system = info.create_system
    new.comment = info.comment
    new.file_size = os.path.getsize(src) if src else info.file_size  # zip64 if large
    with (open(src, "rb") if src else zin.open(info)) as fin, zout.open(new, "w") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def _write_pruned_archive(path, options):
    def write(tmp):
        inner = _temp(path)
        try:
            with zipfile.ZipFile(path) as zin:
                config = _archive_config(zin, path)
                with zin.open(_WEIGHTS_MEMBER) as src, open(inner, "r+b") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                with _open_h5(inner, "r+") as f:
                    _, rows, kept = _prune_open_h5(f, config, options, write=True)
                with zipfile.ZipFile(tmp, "w") as zout:
                    for info in zin.infolist():
                        src = inner if info.filename == _WEIGHTS_MEMBER else None
                        _copy_member(zin, zout, info, src)
            return "keras-archive", rows, kept
        finally:
            _unlink(inner)

    return write


def _dry_run(path, kind, options):
    if kind == "h5":
        with _open_h5(path, "r") as f:
            return _prune_open_h5(f, None, options, write=False)
    with zipfile.ZipFile(path) as zin, tempfile.TemporaryFile() as inner:
        config = _archive_config(zin, path)
        with zin.open(_WEIGHTS_MEMBER) as member:  # seeking back in a member re-reads it
            shutil.copyfileobj(member, inner, 1 << 20)
        with _open_h5(inner, "r") as f:
            _, rows, kept = _prune_open_h5(f, config, options, write=False)
    return "keras-archive", rows, kept


# ----------------------------------------------------------------------------- API


def prune_weights_file(
    path,
    sparsity,
    granularity="weight",
    scope="layer",
    include=None,
    exclude=None,
    skip_output_layer=True,
    dry_run=False,
    backup=False,
    round_to=1,
):
    """Magnitude-prune the weights stored in a Keras file, in place and atomically.

    Args:
        path: a Keras 2/3 `.h5`, `.weights.h5` or `.keras` file (see module doc).
        sparsity: fraction of each tensor's weights (or units) to zero, in [0, 1).
            Exactly `n - max(round(n * (1 - sparsity)), 1)` are pruned, ties by
            index, as in training (`tfprune.masks.select_np`).
        granularity: "weight" (single weights by |w|) or "unit" (output units by
            the L2 norm of their incoming weights; their bias entries are zeroed).
        scope: "layer" ranks each tensor (or layer's units) on its own; "global"
            ranks all pruned tensors together (units by mean square).
        include: regex; only layers whose name matches (`re.search`) are pruned.
        exclude: regex; layers whose name matches are not pruned.
        skip_output_layer: keep the model's output layer unpruned.
        dry_run: compute the report, write nothing.
        backup: keep the original file as `path + ".orig"` (refused if it exists).
        round_to: with granularity="unit", keep unit counts a multiple of this.

    Returns:
        A `PruneReport` (print it, or `report.to_dict()` for JSON).

    Raises:
        ValueError: a bad argument, not a Keras weights file, nothing to prune.
        FileNotFoundError / PermissionError / FileExistsError: missing path,
            read-only file or folder, existing backup. The file is left untouched.
    """
    sparsity = _check_options(sparsity, granularity, scope, round_to)
    path = _check_path(path)
    options = dict(
        sparsity=sparsity, granularity=granularity, scope=scope, round_to=int(round_to),
        include=_compile("include", include), exclude=_compile("exclude", exclude),
        skip_output_layer=bool(skip_output_layer),
    )
    kind = _kind(path)
    orig = None
    if dry_run:
        fmt, rows, kept = _dry_run(path, kind, options)
    else:
        target = os.path.realpath(path)  # rewrite a symlink's target, not the link
        _check_writable(target)
        orig = _check_backup(target) if backup else None
        writer = _write_pruned_h5 if kind == "h5" else _write_pruned_archive
        fmt, rows, kept = _replace_atomically(target, writer(target, options), orig)
    return PruneReport(path, fmt, sparsity, granularity, scope, bool(dry_run), orig,
                       rows, kept)


# ----------------------------------------------------------------------------- CLI
