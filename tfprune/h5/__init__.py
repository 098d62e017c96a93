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

The stages, one module each:

- `options`: the arguments, checked before any file is opened;
- `formats`: the four layouts (Keras 2 full-model and `save_weights` `.h5`, Keras 3
  `.weights.h5` and `.keras`), detected from the content, read into layers and
  tensors; `config`: what a model config says (classes, outputs, file keys);
- `plan`: which tensors of which layers to prune, which to keep and why;
- `select`: what each tensor keeps (every `tfprune.masks` scoring and selection
  call), and zeroing the rest; `stream`: the blocked reads and writes under it;
- `rewrite`: the pipeline on an HDF5 file or a `.keras` archive, written through
  `tfprune.atomic` (temp file, fsync, lock, rename); `report`: the result.

Which weights are pruned: those `tfprune.registry` lists for the layer's class
(`Dense`, `Conv*`, `SeparableConv*` pointwise kernel, `DepthwiseConv*`, `Embedding`,
`EinsumDense`, RNN kernels, `MultiHeadAttention` projections). Non-float and
empty datasets are left alone; a kernel needs >= 2 dims. A layer of unknown class
(a custom layer) is pruned by shape (see `tfprune.h5.plan`).
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

Refused before anything is written (the file byte for byte untouched; every
message names the file you passed, never a temporary copy): bad arguments; a
missing, unreadable, read-only (file or folder), non-Keras, truncated or corrupt
file; a `.keras` archive without weights, or whose `config.json` does not
describe its weights (other layers, another number of variables, other shapes);
NaN or inf in a tensor to prune (the error names the layer, the tensor and how
many values); nothing matched; an existing `PATH.orig` with `backup=True`;
another tfprune run writing the same file.

Safety (`tfprune.atomic`): the result is written beside the file
(`.NAME.tfprune-PID-XXXX.tmp`), flushed and fsynced, given the original's
permission bits, then renamed over the original (`os.replace`, atomic): killed at
any instant, the path holds either the original or the fully pruned file. A
killed run can leave its temp file; the next run on the same file deletes temp
files of dead processes. One writer per file: a second run on the same file
(thread or process) fails at once naming the running one's PID, so `backup=True`
(keep the original as `PATH.orig`, a hard link when the file system allows) can
never back up a pruned file. `dry_run=True` computes the report and writes
nothing (the weights of a `.keras` archive are unpacked to an anonymous temporary
file to be read). A symlink is followed: the file it points to is rewritten (and
backed up beside it).

Speed and memory: every pruned tensor is streamed block by block
(`masks.BLOCK_SIZE` elements) through a few buffers reused for all tensors, in
any scope. The keep sets are found from the original (one pass to check the
values are finite, two per tensor for weights, `masks.topk_threshold_np`; one for
units, their sums of squares) while the kernel copies the file to the temp file;
then one pass zeroes each block of the copy and writes it back in place. Memory
stays a few tens of MB whatever the tensor sizes (`benchmarks/h5_speed.py`).
"""

from tfprune.h5 import formats
from tfprune.h5 import options as options_lib
from tfprune.h5 import rewrite
from tfprune.h5.report import LayerRow, PruneReport

__all__ = ["LayerRow", "PruneReport", "prune_weights_file"]


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
    block_size=(1, 1),
    block_pooling_type="AVG",
    sparsity_m_by_n=None,
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
        block_size: `(rows, cols)`: prune 2-D kernels in whole blocks (exact block
            counts), scored by `block_pooling_type` ("AVG" or "MAX") of |w|, as in
            training (`tfprune.prune_low_magnitude(..., block_size=...)`).
        sparsity_m_by_n: `(m, n)`: zero the `m` smallest of every `n` consecutive
            weights along each kernel's input axis (`sparsity` is not used).

    Returns:
        A `PruneReport` (print it, or `report.to_dict()` for JSON).

    Raises:
        ValueError: a bad argument, not a Keras weights file, a `.keras` config
            that does not match its weights, NaN/inf weights, nothing to prune.
        TypeError: `path`, `include` or `exclude` of the wrong type.
        FileNotFoundError / PermissionError / FileExistsError: missing path,
            read-only file or folder, existing backup.
        BlockingIOError: another tfprune run is writing the same file.
        The file is left untouched whenever it raises.
    """
    options = options_lib.check_options(sparsity, granularity, scope, round_to, include,
                                        exclude, skip_output_layer, block_size,
                                        block_pooling_type, sparsity_m_by_n)
    path = options_lib.check_path(path)
    kind = formats.detect(path)
    orig = None
    if dry_run:
        fmt, rows, kept = rewrite.dry_run(path, kind, options)
    else:
        (fmt, rows, kept), orig = rewrite.prune_file(path, kind, options, backup=backup)
    return PruneReport(path, fmt, options.sparsity, granularity, scope, bool(dry_run), orig,
                       rows, kept)
