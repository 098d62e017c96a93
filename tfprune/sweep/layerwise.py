"""`sensitivity`: prune one layer (or one coupled group) at a time, the rest dense."""

from tfprune import oneshot
from tfprune.sweep.curves import _State
from tfprune.sweep.levels import (
    DEFAULT_SPARSITIES,
    Runner,
    check_choices,
    check_common,
    check_levels,
    check_tolerance,
    check_seeds,
    Progress,
)
from tfprune.sweep.result import SweepResult
from tfprune.sweep.store import Store

__all__ = ["sensitivity"]


def sensitivity(model, data, layers=None, sparsities=DEFAULT_SPARSITIES, granularity="weight",
                methods=("magnitude",), scope="layer", seeds=(0,), metrics=None, evaluate=None,
                skip_output_layer=False, tolerance=0.01, out=None, resume=True, progress=True,
                batch_size=256, sizes=False, samples=None):
    """Per-layer sensitivity: each layer (or coupled unit group) pruned on its own
    at each sparsity, every other layer dense, no retraining (as Distiller's and
    NNI's sensitivity analyses).

    Args:
        layers: names of the layers to analyse (default: every prunable layer; by
            unit, every coupled group that may lose units: a residual block's
            layers are pruned together, otherwise each looks falsely robust).
        granularity: "weight" or "unit".
        skip_output_layer: leave the output layer out (default False: analysed too).
        tolerance: the metric drop allowed for `layer_summary()["max_sparsity"]`.
        sizes: measure `gzip_bytes` / shrunk sizes (off by default here).
        Other arguments as in `tfprune.sweep.run`.

    Returns:
        A `SweepResult` of kind "sensitivity": records carry `layer`; the first is
        the dense model (`layer=None`). `result.layer_summary(tolerance=...)` gives
        per layer the area under its metric-vs-sparsity curve and the highest
        sparsity within `tolerance` of dense; `tfprune.plot.sensitivity` draws it.

    Example:

    ```python
    result = tfprune.sweep.sensitivity(model, (x_test, y_test), sparsities=(0.5, 0.9))
    for row in result.layer_summary(tolerance=0.01):
        print(row["layer"], row["max_sparsity"])
    ```
    """
    levels = check_levels(sparsities)
    oneshot.check_choice("granularity", granularity, oneshot.GRANULARITIES)
    methods = check_choices("methods", methods, oneshot.METHODS)
    oneshot.check_choice("scope", scope, oneshot.SCOPES)
    seeds = check_seeds(seeds)
    tolerance = check_tolerance(tolerance)
    layers = oneshot.check_layers(layers)
    batch_size, samples, out = check_common(batch_size, samples, out, data, resume=resume,
                                            progress=progress, sizes=sizes,
                                            skip_output_layer=skip_output_layer)

    runner = Runner(model, data, metrics, evaluate, batch_size, samples, sizes)
    everything = oneshot.OneShot(runner.working, granularity, scope, skip_output_layer, layers)
    groups = [g.layers for g in everything.groups]
    groups = list(dict.fromkeys(groups))  # weight groups are tensors: one entry per layer
    store = Store(out, runner.fingerprint(kind="sensitivity", scope=scope,
                                          skip_output_layer=bool(skip_output_layer),
                                          granularity=granularity), resume, "sensitivity")
    jobs = [(names, m, seed, s) for names in groups for m in methods
            for seed in (seeds if m == "random" else (None,)) for s in levels]
    bar = Progress(1 + len(jobs), progress)
    state = _State(runner, store, bar, with_layer=True)
    state.level(dict(sparsity=0.0, granularity=None, method=None, scope=scope, seed=None,
                     finetune_epochs=0), lambda: runner.record(
        runner.working, runner.evaluate(runner.working), 0.0, 0.0, None, None, scope, None,
        layer=None), layer=None)
    for names in groups:
        label = "+".join(names)
        masker = None
        for _, m, seed, s in [j for j in jobs if j[0] == names]:
            key = dict(sparsity=s, granularity=granularity, method=m, scope=scope, seed=seed,
                       finetune_epochs=0)
            if masker is None:
                masker = oneshot.OneShot(runner.working, granularity, scope, skip_output_layer,
                                         list(names))

            def compute(masker=masker, m=m, seed=seed, s=s):
                masker.apply(s, m, 0 if seed is None else seed)
                metrics = runner.evaluate(runner.working)
                return runner.record(runner.working, metrics, s, masker.measured_sparsity(),
                                     granularity, m, scope, seed, layer=label)

            state.level(key, compute, layer=label)
        if masker is not None:
            masker.restore()
    config = dict(sparsities=list(levels), granularity=granularity, methods=list(methods),
                  scope=scope, seeds=list(seeds), tolerance=tolerance,
                  skip_output_layer=bool(skip_output_layer), data=runner.data.name,
                  model=runner.source.name, layers=["+".join(n) for n in groups])
    result = SweepResult(store.records, "sensitivity", runner.metric_names or None, config)
    return store.finish(result)
