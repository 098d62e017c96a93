"""Speed and memory of `tfprune.h5.prune_weights_file` on a VGG-16 weights file.

Prunes `keras.applications.VGG16(weights=None)` saved with `save_weights` (~528 MB,
Keras 3 `.weights.h5` layout) to 90%, by weight and by unit, and compares:

- tfprune: `prune_weights_file(path, 0.9, granularity=...)`, the whole safe
  in-place job (copy to a temp file, prune, fsync, rename over the original);
- seed: the seed article's script (`scipy.stats.rankdata(method="dense")`, one
  layer at a time, all kernels but the last, `ranks` kept in a dict, h5py `r+`
  in place), run on the same file layout. Its semantics differ (it prunes by
  dense rank, not an exact count); only its speed is compared. Its unit script
  (`LA.norm(w, axis=0)` + `np.tile`) only works on 2-D kernels, so for units it
  runs on the Dense kernels only (fc1, fc2) while tfprune prunes all 15 layers;
- copy: `shutil.copyfile` of the file; copy+fsync: the same, then `os.fsync` (the
  floor for a durable rewrite; tfprune fsyncs its result before the rename).

Each method runs in its own subprocess, on a fresh copy of the file (the copy made
before the timer starts), `--repeats` times (median; the seed once). Memory: the
tracemalloc peak (NumPy arrays) and the growth of the RSS high-water mark
(`ru_maxrss`) during the run, against the largest tensor (fc1, 25088x4096 float32).

On this VM, memory a process touches for the first time costs ~1-2.5 s/GB (page
faults the host must back; `sys` time below), a cost bare metal mostly does not
have and that every method pays in proportion to its peak memory. tfprune streams
each tensor through a few reused 1M-element buffers, so its peak is tens of MB.
The main rows are cold (a fresh process, as a user runs it); the `+prefault` rows
touch and free 2.5 GB in the worker before the timer starts (warm memory: what is
left is not page faults). The VM is shared: timings move by 2x with other load;
compare rows of one run (the ratios), not runs.
Run:

    .venv/bin/python benchmarks/h5_speed.py [--workdir DIR] [--repeats 3]

Writes benchmarks/results/h5_speed.json.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT = os.path.join(HERE, "results", "h5_speed.json")
SPARSITY = 0.9
METHODS = ("copy", "copy+fsync", "tfprune-weight", "tfprune-unit", "seed-weight", "seed-unit",
           "tfprune-weight+prefault", "tfprune-unit+prefault")
PREFAULT_MB = 2500


# ----------------------------------------------------------------------------- workers


def _seed_kernels(f):
    """The seed's loop order on this layout: layers with a kernel, in h5py (name) order."""
    names = [n for n in f["layers"] if "vars" in f["layers"][n] and "0" in f["layers"][n]["vars"]]
    return [f"layers/{n}/vars/0" for n in names if f[f"layers/{n}/vars/0"].ndim >= 2]


def seed_weight(path, k=SPARSITY):
    """The article's weight-pruning script, for one k."""
    import h5py
    import numpy as np
    from scipy.stats import rankdata

    f = h5py.File(path, "r+")
    ranks = {}
    for l in _seed_kernels(f)[:-1]:
        data = f[l]
        w = np.array(data)
        ranks[l] = (rankdata(np.abs(w), method="dense") - 1).astype(int).reshape(w.shape)
        lower_bound_rank = np.ceil(np.max(ranks[l]) * k).astype(int)
        ranks[l][ranks[l] <= lower_bound_rank] = 0
        ranks[l][ranks[l] > lower_bound_rank] = 1
        w = w * ranks[l]
        data[...] = w
    f.close()


def seed_unit(path, k=SPARSITY):
    """The article's unit-pruning script, for one k (2-D kernels only, see module doc)."""
    import h5py
    import numpy as np
    from numpy import linalg as LA
    from scipy.stats import rankdata

    f = h5py.File(path, "r+")
    ranks = {}
    for l in [p for p in _seed_kernels(f) if f[p].ndim == 2][:-1]:
        data = f[l]
        w = np.array(data)
        norm = LA.norm(w, axis=0)
        norm = np.tile(norm, (w.shape[0], 1))
        ranks[l] = (rankdata(norm, method="dense") - 1).astype(int).reshape(norm.shape)
        lower_bound_rank = np.ceil(np.max(ranks[l]) * k).astype(int)
        ranks[l][ranks[l] <= lower_bound_rank] = 0
        ranks[l][ranks[l] > lower_bound_rank] = 1
        w = w * ranks[l]
        data[...] = w
    f.close()


def _copy(src, work):
    shutil.copyfile(src, work)


def _copy_fsync(src, work):
    shutil.copyfile(src, work)
    with open(work, "rb") as f:
        os.fsync(f.fileno())


def _method(name):
    """`fn(src, work)` timing one method; prune methods work on `work` in place."""
    name = name.split("+prefault")[0]
    if name == "copy":
        return _copy
    if name == "copy+fsync":
        return _copy_fsync
    if name.startswith("tfprune"):
        import tfprune.h5

        granularity = name.split("-")[1]
        return lambda src, work: tfprune.h5.prune_weights_file(
            work, SPARSITY, granularity=granularity)
    seed = {"seed-weight": seed_weight, "seed-unit": seed_unit}[name]
    return lambda src, work: seed(work)


def worker(name, src, work):
    """Run one method in this (fresh) process; print a JSON line of measurements."""
    import gc
    import resource
    import tracemalloc

    import numpy as np

    fn = _method(name)  # imports happen here, outside the timer
    if not name.startswith("copy"):
        shutil.copyfile(src, work)  # a fresh file to prune in place
    if name.endswith("+prefault"):
        np.ones(PREFAULT_MB * 2**20 // 8)  # touched, then freed for reuse
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF)
    tracemalloc.start()
    t0 = time.perf_counter()
    fn(src, work)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(dict(
        seconds=seconds, user_s=after.ru_utime - before.ru_utime,
        sys_s=after.ru_stime - before.ru_stime, tracemalloc_peak_mb=peak / 2**20,
        maxrss_growth_mb=(after.ru_maxrss - before.ru_maxrss) / 1024,
    )))


# ----------------------------------------------------------------------------- driver


def _python(*args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=env, check=True, **kwargs)


def _make_vgg(path):
    code = ("import sys, keras; "
            "keras.applications.VGG16(weights=None).save_weights(sys.argv[1])")
    _python("-c", code, path)


def _largest_tensor_mb(path):
    code = ("import sys, h5py; f = h5py.File(sys.argv[1]); s = []; "
            "f.visititems(lambda n, o: s.append(o.nbytes) if hasattr(o, 'nbytes') else None); "
            "print(max(s) / 2**20)")
    return float(_python("-c", code, path).stdout)


def _run(name, src, workdir):
    work = os.path.join(workdir, f"work-{name}.weights.h5")
    out = _python(os.path.abspath(__file__), "--worker", name, src, work).stdout
    os.unlink(work)
    return json.loads(out.strip().splitlines()[-1])


def _table(results, largest_mb):
    lines = [f"{'method':<25}{'seconds':>8}{'user s':>8}{'sys s':>8}"
             f"{'peak MB (tracemalloc)':>23}{'RSS growth MB':>15}{'x largest tensor':>18}"]
    for name, r in results.items():
        lines.append(f"{name:<25}{r['seconds']:>8.2f}{r['user_s']:>8.2f}{r['sys_s']:>8.2f}"
                     f"{r['tracemalloc_peak_mb']:>23.0f}{r['maxrss_growth_mb']:>15.0f}"
                     f"{r['tracemalloc_peak_mb'] / largest_mb:>18.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", help="where the ~528 MB file goes (default: a temp dir)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", nargs=3, metavar=("METHOD", "SRC", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    workdir = args.workdir or tempfile.mkdtemp(prefix="h5_speed-")
    src = os.path.join(workdir, "vgg16.weights.h5")
    try:
        if not os.path.exists(src):
            _make_vgg(src)
        size_mb, largest_mb = os.path.getsize(src) / 2**20, _largest_tensor_mb(src)
        results = {}
        for name in METHODS:
            n = 1 if name.startswith("seed") else args.repeats
            runs = [_run(name, src, workdir) for _ in range(n)]
            results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            results[name]["runs_seconds"] = [round(r["seconds"], 3) for r in runs]
            print(f"{name}: {results[name]['runs_seconds']}", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    t = {k: v["seconds"] for k, v in results.items()}
    peak = {k: v["tracemalloc_peak_mb"] / largest_mb for k, v in results.items()}
    ratios = {
        "seed_over_tfprune_weight": t["seed-weight"] / t["tfprune-weight"],
        "seed_over_tfprune_unit": t["seed-unit"] / t["tfprune-unit"],
        "tfprune_weight_over_copy": t["tfprune-weight"] / t["copy"],
        "tfprune_unit_over_copy": t["tfprune-unit"] / t["copy"],
        "tfprune_weight_over_copy_fsync": t["tfprune-weight"] / t["copy+fsync"],
        "tfprune_unit_over_copy_fsync": t["tfprune-unit"] / t["copy+fsync"],
        "tfprune_weight_prefault_over_copy": t["tfprune-weight+prefault"] / t["copy"],
        "tfprune_unit_prefault_over_copy": t["tfprune-unit+prefault"] / t["copy"],
        "tfprune_weight_peak_over_largest_tensor": peak["tfprune-weight"],
        "tfprune_unit_peak_over_largest_tensor": peak["tfprune-unit"],
    }
    print(f"\nVGG-16 weights file: {size_mb:.0f} MB, largest tensor {largest_mb:.0f} MB, "
          f"sparsity {SPARSITY}, {os.cpu_count()} CPUs")
    print(_table(results, largest_mb))
    for k, v in ratios.items():
        print(f"{k:<36}{v:>8.2f}x")
    print("note: seed-unit prunes only the 2-D (Dense) kernels; tfprune-unit all layers")
    os.makedirs(os.path.dirname(RESULT), exist_ok=True)
    with open(RESULT, "w") as f:
        json.dump(dict(file_mb=round(size_mb, 1), largest_tensor_mb=round(largest_mb, 1),
                       sparsity=SPARSITY, cpus=os.cpu_count(), machine=platform.machine(),
                       repeats=args.repeats, prefault_mb=PREFAULT_MB, results=results,
                       ratios=ratios,
                       notes="median of repeats (seed: one run); seed-unit prunes only "
                             "Dense kernels (its script fails on 4-D conv kernels)"),
                  f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
