"""Export pruned Keras models to TFLite / LiteRT, and say what each tensor became.

- `to_tflite(model, path, ...)` -> `ExportReport`: strip (and optionally shrink),
  convert through `TFLiteConverter.from_keras_model` (keeps the weights), store
  weights sparse only where that is smaller and known to load and run correctly,
  never write a file larger than the dense one, verify in the interpreter.
- `inspect(path)` -> `InspectReport`: per-tensor encoding read from any `.tflite`
  flatbuffer (dense / CSR / block 1x4 / block 1x16), the ops on sparse kernels
  and those whose weights are DENSIFY'd, warnings for known-bad patterns.
- `check(model, target="tflite")` -> `CheckReport`: before converting, predict
  each pruned weight's encoding and speed effect; warn about what will not pay.

Which zeros buy speed (measured, TF 2.21 / ai-edge-litert 2.3, x86 AVX2, 1 thread,
`benchmarks/tflite.py`): a Keras Dense kernel is `(in, out)`, TFLite's
FULLY_CONNECTED weight `(out, in)`. TFLite's block 1x4 (float) / 1x16 (int8) is
1 output row x 4 (16) consecutive *inputs*, i.e. a Keras-kernel block of shape
`(4, 1)` / `(16, 1)` (4 input rows of one output column). Those weights need no
DENSIFY and run the sparse kernel: the seed MLP at 90% in float32 is 5.1x faster
than dense (7.5x at 95%, 2.3x at 80%, but 0.76x at 50%). Zeros in Keras-kernel
`(1, 4)` blocks (tfmot's `block_size=(1, 4)`: 1 input row x 4 output columns) are
stored CSR + DENSIFY: smaller, not faster; so are unstructured zeros and every
convolution weight. The int8 1x16 kernel runs outside XNNPACK and is slower than
XNNPACK's dense int8 on x86. Removing units (`shrink=True`) is faster on every
runtime (2.3x at 50% of units).

See `rules` for the known-bad combinations and what `to_tflite` does about each.
"""

from tfprune.export.analyze import inspect
from tfprune.export.check import check
from tfprune.export.convert import to_tflite
from tfprune.export.report import CheckReport, ExportReport, InspectReport

__all__ = ["to_tflite", "inspect", "check", "ExportReport", "InspectReport", "CheckReport"]
