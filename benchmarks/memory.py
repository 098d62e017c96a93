"""Peak extra memory of computing the mask of a very large kernel, against the kernel.

A 100M-weight kernel (VGG-16's fc6, `(25088, 4096)` float32, 411 MB) is masked at
90% sparsity by weight, each way in a fresh subprocess of its own:

- `tf_graph`: training's kernel, `tfprune.masks.select([tfprune.masks.weight_scores(w)])`
  (the `keras.ops` kernel: |w|, then the radix select) in a `tf.function`, on a
  `tf.Variable` holding the kernel (TensorFlow backend);
- `tf_xla`: the same under `jit_compile=True`;
- `jax_jit`: the same in `jax.jit` (`KERAS_BACKEND=jax`), if JAX is installed;
- `numpy`: `tfprune.masks.select_np([weight_scores_np(w)])` (one-shot masking);
- `h5`: `tfprune.h5.prune_weights_file` of a `.weights.h5` file holding the kernel
  (streamed in blocks);
- `tf_fit`: the kernel as a pruned `Dense` trained one batch at a time
  (`train_on_batch`, SGD, `ConstantSparsity(0.9, frequency=2)`): steps 1 and 3 update
  no mask, steps 2 and 4 do; what the update adds is the difference;
- `tf_scores`, `tf_topk`, `tf_radix_*`: the pieces of `tf_graph` (what each
  temporary costs), with `--breakdown`.

Memory is the process's resident set (Linux `/proc/self/status`): the kernel is
created first, then the peak-RSS mark is reset (`/proc/self/clear_refs` = 5) and
the computation runs; `VmHWM - VmRSS before` is its peak extra memory (a thread
sampling `VmRSS` every millisecond cross-checks it). The first call includes
tracing/compilation; the second is the steady state a training loop sees. Each
peak is printed as a ratio to the kernel's own size (target: <= 2x).

    .venv/bin/python benchmarks/memory.py                 # all, ~2 min; writes nothing
    .venv/bin/python benchmarks/memory.py --breakdown --output benchmarks/results/memory.json
    .venv/bin/python benchmarks/memory.py --rows 4096 --cols 1024 --only tf_graph   # quick
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
MAIN = ("tf_graph", "tf_xla", "jax_jit", "numpy", "h5", "tf_fit")
BREAKDOWN = ("tf_scores", "tf_topk", "tf_radix_hist", "tf_radix_low", "tf_radix_keep")
TARGET = 2.0


# --------------------------------------------------------------------- child side


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class Peak:
    """Peak RSS above the current RSS while the block runs (VmHWM after a reset,
    and the max of VmRSS sampled every millisecond)."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        self.before = _status("VmRSS")
        self.sampled = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.sampled = max(self.sampled, _status("VmRSS"))
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.hwm = _status("VmHWM")
        self.extra = self.hwm - self.before
        self.sampled_extra = self.sampled - self.before


def _kernel(rows, cols):
    import numpy as np

    return np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)


def _ops_fn(name):
    """The computation `name` on a kernel tensor, with keras.ops (any backend)."""
    from keras import ops

    from tfprune import masks
    from tfprune.masks import ops_kernel

    sparsity = SPARSITY

    def select(w):
        return masks.select([masks.weight_scores(w)], sparsity)[0]

    def scores(w):
        return masks.weight_scores(w)

    def topk(s):  # on precomputed scores
        n = int(s.shape[0])
        return ops_kernel.topk_keep(s, masks.keep_count(n, sparsity))

    def radix_hist(s):  # the high-16-bit histogram
        bits = ops.view(s, "int32")
        hi = ops.right_shift(bits, 16)
        return ops.segment_sum(ops.ones_like(hi), hi, num_segments=32768)

    def radix_low(s):  # the low-16-bit histogram of one bucket
        bits = ops.view(s, "int32")
        hi = ops.right_shift(bits, 16)
        lo = ops.where(ops.equal(hi, 16000), ops.bitwise_and(bits, 0xFFFF), 65536)
        return ops.segment_sum(ops.ones_like(hi), lo, num_segments=65537)

    def radix_keep(s):  # the keep vector of a threshold (ties by index)
        bits = ops.view(s, "int32")
        t = ops.convert_to_tensor(1065353216)  # bits of 1.0
        return ops_kernel._keep_first_ties(bits, t, ops.greater(bits, t), 1000)

    return {"select": select, "scores": scores, "topk": topk, "radix_hist": radix_hist,
            "radix_low": radix_low, "radix_keep": radix_keep}[name]


SPARSITY = 0.9


def _check(keep, n):
    """The mask keeps exactly `keep_count(n, 0.9)` (a wrong mask is no benchmark)."""
    import numpy as np

    from tfprune import masks

    got = int(np.count_nonzero(np.asarray(keep)))
    want = masks.keep_count(n, SPARSITY)
    if got != want:
        raise SystemExit(f"mask keeps {got}, expected {want}")


def _fit_steps(rows, cols, runs):
    """A pruned `Dense(cols)` on `rows` inputs trained one batch at a time: steps 1
    and 3 update no mask, steps 2 and 4 do (frequency 2); each step is measured."""
    import keras
    import numpy as np

    import tfprune

    model = keras.Sequential([keras.Input((rows,)), keras.layers.Dense(cols, use_bias=False)])
    model.layers[0].kernel.assign(_kernel(rows, cols))
    pruned = tfprune.prune_low_magnitude(
        model, tfprune.ConstantSparsity(SPARSITY, begin_step=0, frequency=2))
    del model
    pruned.compile(keras.optimizers.SGD(1e-3), "mse")
    x, y = np.ones((1, rows), np.float32), np.zeros((1, cols), np.float32)
    cb = tfprune.callbacks.UpdatePruningStep()
    cb.set_model(pruned)
    cb.on_train_begin()
    for _ in range(4):
        with Peak() as p:
            pruned.train_on_batch(x, y)
        runs.append(p)
    wrapper = pruned.layers[0]
    _check(np.asarray(wrapper.targets[0].mask) != 0, rows * cols)
    if int(np.asarray(wrapper.last_update_step)) != 4:
        raise SystemExit("the fourth step did not update the mask")


def child(name, rows, cols, path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    n = rows * cols
    runs = []

    def measure(fn, *args):
        for _ in range(2):  # first: tracing + compilation; second: steady state
            with Peak() as p:
                out = fn(*args)
            runs.append(p)
        return out

    if name == "tf_fit":
        _fit_steps(rows, cols, runs)
    elif name == "h5":
        import tfprune.h5

        with Peak() as p:
            tfprune.h5.prune_weights_file(path, SPARSITY, skip_output_layer=False)
        runs.append(p)
    elif name == "numpy":
        from tfprune import masks

        w = _kernel(rows, cols)
        keep = measure(lambda a: masks.select_np([masks.weight_scores_np(a)], SPARSITY)[0], w)
        _check(keep, n)
    elif name == "jax_jit":
        import jax
        import jax.numpy as jnp

        w = jax.device_put(jnp.asarray(_kernel(rows, cols)))
        fn = jax.jit(_ops_fn("select"))
        keep = measure(lambda a: fn(a).block_until_ready(), w)
        _check(keep, n)
    else:
        import numpy as np
        import tensorflow as tf

        from tfprune import masks

        kernel = _kernel(rows, cols)
        if name in ("tf_graph", "tf_xla", "tf_scores"):
            w = tf.Variable(kernel)
        else:  # pieces after the scores: start from a flat score vector
            w = tf.Variable(np.abs(kernel).reshape(-1))
        del kernel
        piece = {"tf_graph": "select", "tf_xla": "select", "tf_scores": "scores",
                 "tf_topk": "topk", "tf_radix_hist": "radix_hist", "tf_radix_low": "radix_low",
                 "tf_radix_keep": "radix_keep"}[name]
        inner = _ops_fn(piece)
        fn = tf.function(lambda v: inner(v.value() if hasattr(v, "value") else v),
                         jit_compile=name == "tf_xla")
        out = measure(fn, w)  # the output tensor stays alive, counted; no numpy copy
        if piece in ("select", "topk"):
            _check(out.numpy(), n)
    kernel_bytes = n * 4
    print(json.dumps({
        "name": name, "rows": rows, "cols": cols, "kernel_bytes": kernel_bytes,
        "calls": [{"extra_bytes": p.extra, "sampled_extra_bytes": p.sampled_extra,
                   "ratio": round(p.extra / kernel_bytes, 3), "seconds": round(p.seconds, 3)}
                  for p in runs],
    }))


# --------------------------------------------------------------------- parent side


def _make_file(path, rows, cols):
    """A `.weights.h5` of `Dense(cols)` on `rows` inputs holding the random kernel."""
    code = (
        "import keras, numpy as np, sys\n"
        "sys.path.insert(0, %r)\n"
        "from memory import _kernel\n"
        "m = keras.Sequential([keras.Input((%d,)), keras.layers.Dense(%d, name='fc6')])\n"
        "m.layers[0].kernel.assign(_kernel(%d, %d))\n"
        "m.save_weights(%r)\n" % (str(HERE), rows, cols, rows, cols, str(path))
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2"))


def _run_child(name, rows, cols, path, log):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["KERAS_BACKEND"] = "jax" if name == "jax_jit" else "tensorflow"
    argv = [sys.executable, __file__, "--child", name, "--rows", str(rows), "--cols", str(cols),
            "--path", str(path)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        log(f"{name}: failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(b):
    return f"{b / 2**20:8.1f} MB"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=25088, help="kernel rows (default: 25088)")
    p.add_argument("--cols", type=int, default=4096, help="kernel columns (default: 4096)")
    p.add_argument("--only", nargs="+", choices=MAIN + BREAKDOWN, default=None,
                   help="measure only these (default: all main measurements)")
    p.add_argument("--breakdown", action="store_true",
                   help="also measure the pieces of tf_graph (default: off)")
    p.add_argument("--output", default=None, help="write the results JSON here (default: none)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.rows, args.cols, args.path)
        return 0

    names = list(args.only or MAIN) + (list(BREAKDOWN) if args.breakdown and not args.only else [])
    if "jax_jit" in names:
        try:
            import jax  # noqa: F401
        except ImportError:
            names.remove("jax_jit")
            print("jax not installed: jax_jit skipped")
    results = []
    kernel_bytes = args.rows * args.cols * 4
    print(f"kernel ({args.rows}, {args.cols}) float32 = {_mb(kernel_bytes)}; sparsity "
          f"{SPARSITY}; each measurement in its own process; target <= {TARGET}x the kernel")
    print(f"{'measurement':<15} {'call':<6} {'peak extra':>11} {'sampled':>11} {'ratio':>7} "
          f"{'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "fc6.weights.h5"
        for name in names:
            if name == "h5":
                _make_file(path, args.rows, args.cols)
            r = _run_child(name, args.rows, args.cols, path, print)
            if r is None:
                continue
            results.append(r)
            for i, c in enumerate(r["calls"]):
                if name == "tf_fit":
                    call = f"step{i + 1}"
                else:
                    call = "once" if len(r["calls"]) == 1 else ("first" if i == 0 else "steady")
                print(f"{name:<15} {call:<6} {_mb(c['extra_bytes']):>11} "
                      f"{_mb(c['sampled_extra_bytes']):>11} {c['ratio']:>6.2f}x "
                      f"{c['seconds']:>8.2f}")
    steady = {r["name"]: r["calls"][-1]["ratio"] for r in results}
    fit = next((r for r in results if r["name"] == "tf_fit"), None)
    if fit is not None:
        added = (fit["calls"][3]["extra_bytes"] - fit["calls"][2]["extra_bytes"]) / kernel_bytes
        steady["tf_fit_update_minus_plain_step"] = round(added, 3)
        print(f"tf_fit: a step with a mask update peaks {added:.2f}x the kernel above a step "
              "without one")
    over = [n for n in ("tf_graph", "tf_xla", "jax_jit", "h5", "numpy",
                        "tf_fit_update_minus_plain_step") if steady.get(n, 0) > TARGET]
    print("over the target: " + (", ".join(over) if over else "none"))
    if args.output:
        import platform

        import tfprune

        sys.path.insert(0, str(HERE))
        from _common import tfprune_source

        doc = {"kernel_shape": [args.rows, args.cols], "kernel_bytes": kernel_bytes,
               "sparsity": SPARSITY, "target_ratio": TARGET, "results": results,
               "steady_ratio": steady, "over_target": over,
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "tfprune": tfprune.__version__, "tfprune_source": tfprune_source()}
        out = pathlib.Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
