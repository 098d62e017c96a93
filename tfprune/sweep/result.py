"""`SweepResult`: the records of a sweep or a sensitivity analysis, and their files.

A record is a flat dict (one pruned model evaluated once):

| field | type | meaning |
|---|---|---|
| `layer` | str | sensitivity only: the layer (or coupled group `"a+b"`) pruned; None for the dense record |
| `sparsity` | float | requested sparsity (0.0 for the dense model) |
| `measured_sparsity` | float | zeros / size of the pruned kernels (the ranked weights), counted from the weights |
| `model_sparsity` | float | zeros / size of every weight of the model |
| `granularity` | str | "weight" or "unit" (None: the dense model) |
| `method` | str | "magnitude" or "random" (None: the dense model) |
| `scope` | str | "layer" or "global" |
| `seed` | int | seed of the random scores / the fine-tuning run (None: nothing random) |
| `finetune_epochs` | int | 0 for one-shot |
| metrics | float | every metric under the name Keras reports (`loss`, `accuracy`, ...) |
| `params`, `nonzero_params` | int | weights of the model, and those not zero |
| `flops` | int | FLOPs of the model as it runs (dense; masks do not remove FLOPs) |
| `shrunk_params`, `shrunk_flops` | int | unit pruning: after `tfprune.shrink` (None otherwise) |
| `gzip_bytes` | int | gzip size of the weights' raw bytes (`measure.gzip_bytes`) |

The first record is the dense model. `summary()` averages records over seeds
(`<metric>` is the mean, `<metric>_std` the sample standard deviation, `seeds`
how many were averaged); `table()` prints it. `to_csv` writes the records;
`to_json` writes them with the summary (and, for a sensitivity analysis, the
per-layer summary); `SweepResult.load` reads either, or a sweep's `out` directory.

Example:

>>> result = tfprune.sweep.SweepResult([
...     dict(sparsity=0.0, granularity=None, method=None, accuracy=0.98),
...     dict(sparsity=0.5, granularity="weight", method="random", seed=0, accuracy=0.9),
...     dict(sparsity=0.5, granularity="weight", method="random", seed=1, accuracy=0.8)])
>>> [(r["sparsity"], round(r["accuracy"], 4), round(r["accuracy_std"], 4), r["seeds"])
...  for r in result.summary()]
[(0.0, 0.98, 0.0, 1), (0.5, 0.85, 0.0707, 2)]
"""

import csv
import io
import json
import math
import os
import pathlib
import tempfile

import numpy as np

__all__ = ["SweepResult", "FIELDS", "KEY_FIELDS", "higher_is_better", "write_atomic"]

HEAD = ("sparsity", "measured_sparsity", "model_sparsity", "granularity", "method", "scope",
        "seed", "finetune_epochs")
TAIL = ("params", "nonzero_params", "flops", "shrunk_params", "shrunk_flops", "gzip_bytes")
FIELDS = HEAD + TAIL  # metrics go between HEAD and TAIL; sensitivity adds "layer" first
STR_FIELDS = ("layer", "granularity", "method", "scope")
INT_FIELDS = ("seed", "finetune_epochs", "params", "nonzero_params", "flops", "shrunk_params",
              "shrunk_flops", "gzip_bytes", "seeds")
KEY_FIELDS = ("layer", "granularity", "method", "scope", "finetune_epochs", "sparsity")
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mean_squared", "mean_absolute", "hinge",
                    "crossentropy", "divergence", "perplexity")


def higher_is_better(metric):
    """False for losses and errors (names containing "loss", "error", "mse", ...)."""
    return not any(word in metric.lower() for word in _LOWER_IS_BETTER)


def write_atomic(path, text):
    """Write `text` to `path` through a temporary file in the same folder + rename."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `path` must be a file path. Received: path={path!r}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def record_key(record):
    """What identifies a level (seed included)."""
    return tuple(record.get(k) for k in KEY_FIELDS) + (record.get("seed"),)


def _typed(field, text):
    if text == "" or text is None:
        return None
    if field in STR_FIELDS:
        return text
    if field in INT_FIELDS:
        return int(float(text))
    return float(text)


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], 0.0
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1))


class SweepResult:
    """Records of a sweep (`kind="sweep"`) or sensitivity analysis (`"sensitivity"`).

    Args:
        records: list of flat dicts (see the module doc).
        kind: "sweep" or "sensitivity".
        metrics: the metric names, in the order Keras reported them (default: the
            record fields that are not standard fields).
        config: the arguments of the run (JSON-able), kept in `to_json`.
    """

    def __init__(self, records, kind="sweep", metrics=None, config=None):
        self.records = [dict(r) for r in records]
        self.kind = kind
        self.metrics = list(metrics) if metrics is not None else self._metric_names()
        self.config = dict(config or {})

    def _metric_names(self):
        known = set(FIELDS) | {"layer"}
        names = []
        for r in self.records:
            names += [k for k in r if k not in known and k not in names]
        return names

    @property
    def fields(self):
        """Record fields in file order."""
        head = ("layer",) + HEAD if self.kind == "sensitivity" else HEAD
        extra = [k for r in self.records for k in r
                 if k not in head + TAIL and k not in self.metrics]
        return list(head) + self.metrics + list(TAIL) + list(dict.fromkeys(extra))

    @property
    def dense(self):
        """The dense model's summary record (sparsity 0, no granularity; averaged
        when several results were merged), or None."""
        return next((s for s in self.summary() if s.get("granularity") is None), None)

    def check_metric(self, metric):
        """`metric`, or the default one for None; an error naming it unless it is
        one of `metrics` (TypeError for a non-string)."""
        if metric is None:
            return self.default_metric()
        if not isinstance(metric, str):
            raise TypeError(f"Argument `metric` must be a metric name, one of {self.metrics}. "
                            f"Received: metric={metric!r}")
        if metric not in self.metrics:
            raise ValueError(f"Argument `metric` must be one of {self.metrics}. "
                             f"Received: metric={metric!r}")
        return metric

    def default_metric(self):
        """The first reported metric that is not the loss (else the loss)."""
        return next((m for m in self.metrics if m != "loss"), self.metrics[0] if self.metrics else None)

    # ------------------------------------------------------------------ summary

    def summary(self):
        """One record per level averaged over seeds: numeric fields hold the mean,
        `<metric>_std` the sample std (0.0 for one seed), `seeds` the count."""
        groups = {}
        for r in self.records:
            groups.setdefault(tuple(r.get(k) for k in KEY_FIELDS), []).append(r)
        out = []
        for key, rows in groups.items():
            s = {k: v for k, v in zip(KEY_FIELDS, key) if k != "layer" or self.kind == "sensitivity"}
            s["seeds"] = len(rows)
            for field in [f for f in self.fields if f not in KEY_FIELDS and f not in ("seed",)]:
                values = [r.get(field) for r in rows]
                if all(v is None for v in values):
                    s[field] = None
                    continue
                if field in STR_FIELDS:
                    s[field] = values[0]
                    continue
                mean, std = _mean_std(values)
                if field in INT_FIELDS and all(v == values[0] for v in values):
                    mean = values[0]
                s[field] = mean
                if field in self.metrics:
                    s[f"{field}_std"] = std
            out.append(s)
        return out

    def curves(self, metric=None):
        """`{(granularity, method, finetune_epochs): [summary records by sparsity]}`
        (layer added first in the key for a sensitivity analysis); the dense record
        is left out (see `dense`)."""
        out = {}
        for s in self.summary():
            if s.get("granularity") is None:
                continue
            key = (s["granularity"], s["method"], s["finetune_epochs"])
            if self.kind == "sensitivity":
                key = (s.get("layer"),) + key
            out.setdefault(key, []).append(s)
        return {k: sorted(v, key=lambda s: s["sparsity"]) for k, v in out.items()}

    def layer_summary(self, metric=None, tolerance=0.01):
        """Sensitivity per layer: `{layer, <metric> at dense, auc, max_sparsity,
        worst}` where `auc` is the area under the metric-vs-sparsity curve (dense
        point at 0 included, trapezoids) divided by the largest level, i.e. the
        mean metric over the levels' range; `max_sparsity` the highest level up to
        which every level is within `tolerance` of dense (0.0 if none is), the
        metric read as higher-is-better unless it is a loss/error; `worst` the
        metric at the highest level."""
        metric = self.check_metric(metric)
        dense = self.dense[metric] if self.dense else None
        sign = 1.0 if higher_is_better(metric) else -1.0
        rows = []
        for key, points in self.curves(metric).items():
            xs = [0.0] + [p["sparsity"] for p in points]
            ys = [dense] + [p[metric] for p in points]
            if dense is None:
                xs, ys = xs[1:], ys[1:]
            auc = float(np.trapezoid(ys, xs) / (xs[-1] - xs[0])) if len(xs) > 1 and xs[-1] > xs[0] else ys[-1]
            best = 0.0
            for p in points:
                if dense is not None and sign * (dense - p[metric]) > tolerance + 1e-12:
                    break
                best = p["sparsity"]
            rows.append({"layer": key[0], "granularity": key[1], "method": key[2],
                         f"{metric}_dense": dense, "auc": auc, "max_sparsity": best,
                         "worst": points[-1][metric], "tolerance": tolerance})
        return rows

    def plot(self, **kwargs):
        """`tfprune.plot.curves(self, ...)` (or `.sensitivity` for a sensitivity
        analysis); returns the matplotlib figure."""
        from tfprune import plot

        return (plot.sensitivity if self.kind == "sensitivity" else plot.curves)(self, **kwargs)

    # ------------------------------------------------------------------ printing

    def table(self, metric=None):
        """The summary as a text table (mean ± std over seeds)."""
        metric = self.check_metric(metric)
        pct = metric is not None and higher_is_better(metric) and "acc" in metric
        cols = (["layer"] if self.kind == "sensitivity" else []) + [
            "sparsity", "granularity", "method", "finetune", metric or "-", "measured",
            "nonzero", "shrunk", "gzip_bytes"]
        lines = []
        for s in self.summary():
            m, sd = s.get(metric), s.get(f"{metric}_std")
            value = "-" if m is None else (f"{m:.2%}" if pct else f"{m:.4g}")
            if m is not None and s["seeds"] > 1:
                value += f" ± {sd:.2%}" if pct else f" ± {sd:.2g}"
            row = ([str(s.get("layer") or "-")] if self.kind == "sensitivity" else []) + [
                f"{s['sparsity']:.2%}", s.get("granularity") or "dense", s.get("method") or "-",
                f"{s.get('finetune_epochs') or 0} ep" if s.get("finetune_epochs") else "one-shot",
                value, _fmt_pct(s.get("measured_sparsity")), _fmt_int(s.get("nonzero_params")),
                _fmt_int(s.get("shrunk_params")), _fmt_int(s.get("gzip_bytes"))]
            lines.append(row)
        widths = [max(len(c), *(len(l[i]) for l in lines)) if lines else len(c)
                  for i, c in enumerate(cols)]
        fmt = "  ".join("{:<%d}" % w if i < (len(cols) - 7) else "{:>%d}" % w
                        for i, w in enumerate(widths))
        out = [fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*l) for l in lines]
        return "\n".join(out)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return f"SweepResult(kind={self.kind!r}, records={len(self.records)}, metrics={self.metrics})"

    def __len__(self):
        return len(self.records)

    # ------------------------------------------------------------------ files

    def to_csv(self, path):
        """Write the records as CSV (empty cell = None); returns the path."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n")
        writer.writeheader()
        for r in self.records:
            writer.writerow({k: ("" if r.get(k) is None else _csv_value(r.get(k)))
                             for k in self.fields})
        return write_atomic(path, buf.getvalue())

    def to_dict(self):
        out = {"kind": self.kind, "metrics": self.metrics, "config": self.config,
               "records": self.records, "summary": self.summary()}
        if self.kind == "sensitivity" and self.metrics:
            out["layers"] = self.layer_summary(tolerance=self.config.get("tolerance", 0.01))
        return out

    def to_json(self, path):
        """Write records, summary (and per-layer summary) as JSON; returns the path."""
        return write_atomic(path, json.dumps(_jsonable(self.to_dict()), indent=1) + "\n")

    @classmethod
    def load(cls, path):
        """Read a result written by `to_csv`, `to_json`, or a sweep's `out` folder."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Argument `path` must be a .csv/.json file or a sweep folder. "
                            f"Received: path={path!r}")
        path = pathlib.Path(path)
        if path.is_dir():
            from tfprune.sweep.store import Store

            return Store.read(path)
        if not path.is_file():
            raise FileNotFoundError(f"Argument `path` must be an existing .csv/.json file or "
                                    f"a sweep folder. Received: path={str(path)!r}")
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"File {str(path)!r} is not valid JSON ({e}).") from None
            if not isinstance(data, dict) or not isinstance(data.get("records"), list):
                raise ValueError(f"File {str(path)!r} is not a sweep result (no `records` "
                                 "list): write it with `SweepResult.to_json`.")
            return cls(data["records"], data.get("kind", "sweep"), data.get("metrics"),
                       data.get("config"))
        if path.suffix == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            kind = "sensitivity" if rows and "layer" in rows[0] else "sweep"
            records = [{k: _typed(k, v) for k, v in r.items()} for r in rows]
            return cls(records, kind)
        raise ValueError(f"Argument `path` must end in .csv or .json. Received: path={str(path)!r}")

    @classmethod
    def merge(cls, results):
        """One result with the records of several (e.g. one per trained model)."""
        results = list(results)
        if not results:
            raise ValueError("Argument `results` must hold at least one SweepResult.")
        records = [r for res in results for r in res.records]
        dense = [r for r in records if r.get("granularity") is None]
        others = [r for r in records if r.get("granularity") is not None]
        return cls(dense + others, results[0].kind, results[0].metrics, results[0].config)


def _csv_value(v):
    return repr(v) if isinstance(v, float) else v


def _fmt_pct(v):
    return "-" if v is None else f"{v:.2%}"


def _fmt_int(v):
    return "-" if v is None else f"{int(round(v)):,}"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else obj
    return obj
