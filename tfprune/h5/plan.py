"""Which tensors to prune: the plan, from the layers a file holds and the options.

`plan(layers, outline, options)` picks, per layer, what `tfprune.registry` lists for
its class (`granularity="weight"`: its kernels; `"unit"`: its unit kernel, the unit
layout and the bias), drops the layers `include` / `exclude` / `skip_output_layer`
keep (saying why), and raises when nothing is left to prune.

A layer of unknown class (a custom layer) is pruned by shape: every float variable
with >= 2 dims is a kernel (with `granularity="unit"`: only if it has exactly one,
units on its last axis, and a 1-D variable of matching length is its bias).

The output layer (`skip_output_layer`) is the model's output layer from the config
(each output of a multi-output model; if it has no weights, e.g. an `Activation`,
the nearest layer before it in model order that has weights). Without a config it
is the last layer with weights in file order.

Example:

>>> import numpy as np
>>> from tfprune.h5 import config, formats, options
>>> def dense(name, n_in, n_out):
...     return formats.Layer((name,), "Dense", [
...         formats.Var(f"{name}/kernel", "kernel", (n_in, n_out), np.dtype("float32"), 0),
...         formats.Var(f"{name}/bias", "bias", (n_out,), np.dtype("float32"), 0)])
>>> layers = [dense("hidden", 3, 4), dense("logits", 4, 2)]
>>> p = plan(layers, config.Outline(), options.check_options(0.5, granularity="unit"))
>>> [(name, kernel.slot, kind, bias.slot) for name, (kernel, kind, bias) in p.jobs]
[('hidden', 'kernel', 'last', 'bias')]
>>> p.kept
[('logits', 'output layer (skip_output_layer=True)')]
"""

import dataclasses

import numpy as np

from tfprune import registry
from tfprune.h5 import formats

__all__ = ["Plan", "plan"]


def _kernel_ok(v):
    return v is not None and v.usable() and len(v.shape) >= 2


def _weight_targets(layer):
    """The `Var`s of `layer` pruned with granularity="weight"."""
    spec = registry.SPECS_BY_CLASS_NAME.get(layer.cls)
    if spec is not None:
        leaves = {p.split(".")[-1] for p in spec.weights}
        found = [v for v in layer.vars if v.leaf in leaves]
    elif layer.cls is None:
        found = [v for v in layer.vars if v.slot is None or v.leaf in formats.WEIGHT_LEAVES]
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


def _targets(layer, granularity):
    if granularity == "weight":
        return _weight_targets(layer) or None
    return _unit_target(layer)


@dataclasses.dataclass
class Plan:
    """Layers to prune (with their targets) and layers kept, with reasons.

    jobs: `[(layer name, [Var])]` (weights) or `[(layer name, (kernel, unit kind,
        bias or None))]` (units), in model order.
    kept: `[(layer name, reason)]`.
    """

    jobs: list
    kept: list

    def scored(self):
        """`[(layer name, Var)]` of the tensors whose values are ranked: every weight
        target, or every unit kernel (a bias is zeroed with its unit, never ranked)."""
        return [(name, v) for name, t in self.jobs for v in (t if isinstance(t, list) else t[:1])]


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


def plan(layers, outline, options, path=None):
    """The `Plan` for `layers` (`formats.Layer`s in model order) of the file `path`
    (named in errors) whose config says `outline`, pruned with `options`
    (`options.Options`)."""
    wrapped = [lid[-1] for lid, cls in outline.classes.items() if cls == "PruneLowMagnitude"]
    if wrapped:  # its masks would not match the pruned kernels (and are not weights)
        raise ValueError(
            f"The file {path!r} holds a model still wrapped for pruning (layers "
            f"{wrapped[:3]}{' ...' if len(wrapped) > 3 else ''}); its masks are set in "
            "training. Prune it further in training, or strip it "
            "(`tfprune.strip_pruning`), save that, and prune the stripped file."
        )
    include, exclude = options.include, options.exclude
    outputs = _output_layers(layers, outline) if options.skip_output_layer else set()
    jobs, kept, candidates = [], [], []
    for layer in layers:
        targets = _targets(layer, options.granularity)
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
        _nothing_to_prune(candidates, kept, options, path)
    return Plan(jobs, kept)


def _nothing_to_prune(candidates, kept, options, path):
    names = f"prunable layers of {path!r}: " + (", ".join(candidates) or "none")
    include, exclude = options.include, options.exclude
    if not candidates:
        raise ValueError(
            "No prunable weights in the file for this granularity. Received: "
            f"granularity={options.granularity!r} ({names})"
        )
    if include is not None and len(kept) == 0:
        raise ValueError(
            f"Argument `include` matched no prunable layer. Received: "
            f"include={include.pattern!r} ({names})"
        )
    if exclude is not None and any("exclude" in why for _, why in kept):
        raise ValueError(
            f"Argument `exclude` left nothing to prune. Received: "
            f"exclude={exclude.pattern!r} ({names})"
        )
    raise ValueError(
        "Argument `skip_output_layer` left nothing to prune: the only prunable layer "
        f"is the output layer. Received: skip_output_layer=True ({names})"
    )
