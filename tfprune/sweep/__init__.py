"""Sparsity sweeps: accuracy-vs-sparsity curves, per-layer sensitivity, quick curves.

Stages (one module each): `inputs` (model file or object, data, the working copy),
`levels` (argument checks; a `Runner` that evaluates a pruned working copy and
turns it into a record), `measure` (params, FLOPs, shrunk size, gzip size,
latency), `finetune` (fine-tuned levels), `curves` (`run`, `quick_curve`),
`layerwise` (`sensitivity`), `result` (`SweepResult`: records, summary, CSV/JSON),
`store` (the `out` folder and resuming), `models` (VGG-16 for 32x32 inputs).
Masks come from `tfprune.oneshot` (the `tfprune.masks` ranking, applied in place).

Example:

```python
result = tfprune.sweep.run(model, (x_test, y_test))       # weight & unit, magnitude & random
print(result.table())
result.plot(path="sweep.png")                            # tfprune.plot.curves
sens = tfprune.sweep.sensitivity(model, (x_test, y_test))
tfprune.plot.sensitivity(sens, path="sensitivity.png")
```
"""

from tfprune.sweep import models  # noqa: F401
from tfprune.sweep.curves import quick_curve, run  # noqa: F401
from tfprune.sweep.finetune import default_schedule  # noqa: F401
from tfprune.sweep.layerwise import sensitivity  # noqa: F401
from tfprune.sweep.levels import DEFAULT_SPARSITIES  # noqa: F401
from tfprune.sweep.measure import latency_ms  # noqa: F401
from tfprune.sweep.result import FIELDS, SweepResult  # noqa: F401

__all__ = ["run", "sensitivity", "quick_curve", "SweepResult", "FIELDS", "DEFAULT_SPARSITIES",
           "latency_ms", "default_schedule", "models"]
