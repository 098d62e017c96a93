"""`run`: accuracy-vs-sparsity curves (one-shot and fine-tuned); `quick_curve`."""

from tfprune import oneshot
from tfprune.sweep import finetune as finetune_lib
from tfprune.sweep import inputs
from tfprune.sweep.levels import (
    DEFAULT_SPARSITIES,
    Runner,
    check_choices,
    check_common,
    check_levels,
    check_seeds,
    Progress,
)
from tfprune.sweep.result import SweepResult, record_key
from tfprune.sweep.store import Store

__all__ = ["run", "quick_curve"]


def run(model, data, sparsities=DEFAULT_SPARSITIES, granularities=("weight", "unit"),
        methods=("magnitude", "random"), scope="layer", finetune=None, seeds=(0,),
        metrics=None, evaluate=None, skip_output_layer=True, out=None, resume=True,
        progress=True, batch_size=256, sizes=True, samples=None):
    """Evaluate `model` pruned at each sparsity: one curve per granularity × method
    (× fine-tuning).

    Args:
        model: a Keras model (Sequential / functional), or a `.keras` / `.h5` file.
            Never modified: a working copy is masked in place, level by level,
            from the saved dense values (no clone or re-trace per level).
        data: evaluation data: `(x, y)`, a batched `tf.data.Dataset`, a loader name
            ("mnist", "fashion_mnist", "cifar10": the test half, scaled to [0, 1] and
            reshaped to the model's input) or a `.npz` (`x_test`/`y_test` or `x`/`y`).
        sparsities: levels in (0, 1); the dense model (0) is always the first record.
        granularities: "weight" (|w|) and/or "unit" (units by L2 norm; coupled
            units pruned as one group, dead units removed by `shrink` for
            `shrunk_params` / `shrunk_flops`).
        methods: "magnitude" and/or "random" (random scores, same exact counts,
            granularity and scope; one draw per seed).
        scope: "layer" or "global" ranking.
        finetune: None (one-shot only) or a dict (see `tfprune.sweep.finetune`):
            adds a fine-tuned magnitude curve per granularity, one training run per
            level and seed from the dense weights.
        seeds: seeds of the random scores and of fine-tuning runs. Magnitude
            one-shot is deterministic: evaluated once (`seed=None`).
        metrics: metrics to evaluate with (default: those the model was compiled
            with; an uncompiled classifier gets cross-entropy + accuracy).
        evaluate: None, or a function `(model, data) -> dict of metrics` used
            instead of `model.evaluate`.
        skip_output_layer: keep the output layer dense by weight (as the seed
            script); output units are always kept.
        out: a folder: records are appended as each level finishes, and
            `sweep.csv` / `sweep.json` written at the end.
        resume: with `out`, skip the levels a previous run with the same
            arguments finished.
        progress: show a Keras `Progbar` over levels.
        batch_size: evaluation batch size (arrays).
        sizes: measure `gzip_bytes` and, for units, the shrunk size (False: None,
            faster).
        samples: evaluate on the first N examples only (arrays, a loader or a .npz
            file; with a `tf.data.Dataset`, take them in the dataset instead).

    Returns:
        A `SweepResult` (`.records`, `.summary()`, `.table()`, `.plot()`, `.to_csv`).

    Example:

    ```python
    result = tfprune.sweep.run(model, (x_test, y_test), sparsities=(0.5, 0.9))
    print(result.table())
    result.plot(path="sweep.png")
    ```
    """
    levels = check_levels(sparsities)
    granularities = check_choices("granularities", granularities, oneshot.GRANULARITIES)
    methods = check_choices("methods", methods, oneshot.METHODS)
    oneshot.check_choice("scope", scope, oneshot.SCOPES)
    seeds = check_seeds(seeds)
    batch_size, samples, out = check_common(batch_size, samples, out, data, resume=resume,
                                            progress=progress, sizes=sizes,
                                            skip_output_layer=skip_output_layer)
    options = None if finetune is None else finetune_lib.FinetuneOptions(finetune)
    if options is not None and "magnitude" not in methods:
        raise ValueError("Argument `finetune` makes fine-tuned magnitude curves: include "
                         f"'magnitude' in `methods`. Received: methods={methods!r}")

    runner = Runner(model, data, metrics, evaluate, batch_size, samples, sizes)
    train = loss = None
    if options is not None:
        train, loss = _finetune_inputs(runner, options, data)
    store = Store(out, runner.fingerprint(
        kind="sweep", scope=scope, skip_output_layer=bool(skip_output_layer),
        finetune=None if options is None else options.fingerprint()), resume, "sweep")

    one_shot = [(g, m, seed, s) for g in granularities for m in methods
                for seed in (seeds if m == "random" else (None,)) for s in levels]
    tuned = [] if options is None else [(g, seed, s) for g in granularities for seed in seeds
                                        for s in levels]
    bar = Progress(1 + len(one_shot) + len(tuned), progress)
    state = _State(runner, store, bar)

    state.level(dict(sparsity=0.0, granularity=None, method=None, scope=scope, seed=None,
                     finetune_epochs=0), lambda: runner.record(
        runner.working, runner.evaluate(runner.working), 0.0, 0.0, None, None, scope, None))
    for g in granularities:
        masker = None
        for _, m, seed, s in [job for job in one_shot if job[0] == g]:
            key = dict(sparsity=s, granularity=g, method=m, scope=scope, seed=seed,
                       finetune_epochs=0)
            if masker is None and store.get(_key(key)) is None:
                masker = oneshot.OneShot(runner.working, g, scope, skip_output_layer)
            state.level(key, lambda: _one_shot(runner, masker, g, m, seed, s, scope))
        if masker is not None:
            masker.restore()
    if tuned:
        skip = oneshot.output_layers(runner.working) if skip_output_layer else set()
        optimizer = options.make_optimizer(runner.source)
        for g, seed, s in tuned:
            key = dict(sparsity=s, granularity=g, method="magnitude", scope=scope, seed=seed,
                       finetune_epochs=options.epochs)
            state.level(key, lambda: _fine_tuned(runner, options, train, loss, optimizer, g,
                                                 seed, s, scope, skip, skip_output_layer))
    config = dict(sparsities=list(levels), granularities=list(granularities),
                  methods=list(methods), scope=scope, seeds=list(seeds),
                  finetune_epochs=0 if options is None else options.epochs,
                  skip_output_layer=bool(skip_output_layer), data=runner.data.name,
                  model=runner.source.name)
    result = SweepResult(store.records, "sweep", runner.metric_names or None, config)
    return store.finish(result)


def _key(fields, layer=None, with_layer=False):
    return record_key(dict(fields, **({"layer": layer} if with_layer else {})))


class _State:
    """Runs or resumes levels, in order, with the progress bar."""

    def __init__(self, runner, store, bar, with_layer=False):
        self.runner, self.store, self.bar = runner, store, bar
        self.done = 0
        self.with_layer = with_layer

    def level(self, key_fields, compute, layer=None):
        old = self.store.get(_key(key_fields, layer, self.with_layer))
        if old is not None:
            self.store.add(old, fresh=False)
            if self.runner.metric_names is None:
                from tfprune.sweep.result import FIELDS

                self.runner.metric_names = [k for k in old if k not in FIELDS and k != "layer"]
            record = old
        else:
            record = compute()
            self.store.add(record)
        self.done += 1
        self.bar.update(self.done, record, self.runner.metric_names)
        return record


def _one_shot(runner, masker, g, m, seed, s, scope):
    masker.apply(s, m, 0 if seed is None else seed)
    metrics = runner.evaluate(runner.working)
    return runner.record(runner.working, metrics, s, masker.measured_sparsity(), g, m, scope,
                         seed)


def _fine_tuned(runner, options, train, loss, optimizer, g, seed, s, scope, skip,
                skip_output_layer):
    import keras

    opt = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    with finetune_lib.quiet_retracing():
        stripped = finetune_lib.finetune_model(runner.working, s, g, scope, skip, options,
                                               train, loss, opt, seed)
        if runner.custom_evaluate is None:
            stripped.compile(**_eval_compile(runner))
        metrics = runner.evaluate(stripped)
    measured = oneshot.OneShot(stripped, g, scope, skip_output_layer).measured_sparsity()
    return runner.record(stripped, metrics, s, measured, g, "magnitude", scope, seed,
                         options.epochs)


def _eval_compile(runner):
    import keras

    config = runner.working.get_compile_config()
    return {k: keras.saving.deserialize_keras_object(config.get(k))
            for k in ("loss", "metrics", "weighted_metrics") if config.get(k) is not None}


def _finetune_inputs(runner, options, data):
    if options.train_data is not None:
        train = inputs.resolve_data(options.train_data, runner.source, "train")
    elif isinstance(data, str) or hasattr(data, "__fspath__"):
        train = inputs.resolve_data(data, runner.source, "train")
    else:
        raise ValueError("Argument `finetune` needs `train_data` (the sweep's `data` is "
                         "evaluation data; only a loader name or .npz gives a training half).")
    loss = options.loss
    if loss is None:
        if runner.custom_evaluate is None:
            loss = _eval_compile(runner)["loss"]
        else:
            loss = inputs.compile_args(runner.source, train, None)["loss"]
    return train, loss


def quick_curve(model, data, path, sparsities=(0.5, 0.8, 0.9, 0.95, 0.98),
                granularities=("weight", "unit"), metric=None, title=None, **kwargs):
    """A fast one-shot magnitude sweep (no sizes, no progress bar) drawn to `path`.

    What the demo ends with: seconds on the seed MLP and the MNIST test set.
    Returns the `SweepResult`; `kwargs` go to `run`.

    Example:

    ```python
    tfprune.sweep.quick_curve(model, (x_test, y_test), "demo_output/sweep.png")
    ```
    """
    from tfprune import plot

    kwargs = dict(dict(methods=("magnitude",), progress=False, sizes=False), **kwargs)
    result = run(model, data, sparsities=sparsities, granularities=granularities, **kwargs)
    plot.curves(result, metric=metric, path=path,
                title=title or "One-shot magnitude pruning: weight vs unit")
    return result
