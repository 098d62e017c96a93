"""What `prune_weights_file` did: a `LayerRow` per pruned tensor, in a `PruneReport`."""

import dataclasses
import math

__all__ = ["LayerRow", "PruneReport", "row", "tensor_name"]


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
    """What `prune_weights_file` did: one `LayerRow` per tensor, and what it kept.

    Example:

    >>> report = PruneReport("m.h5", "keras2-weights-h5", 0.5, "weight", "layer",
    ...                      dry_run=True, rows=[LayerRow("d", "kernel", (4, 2), 8, 0, 4)],
    ...                      kept=[("out", "output layer (skip_output_layer=True)")])
    >>> print(report)
    m.h5 (keras2-weights-h5): granularity=weight scope=layer sparsity=0.5 [dry run: nothing written]
    layer  weight  shape  total  zeros before  zeros after  sparsity before  sparsity after
    d      kernel  4x2    8      0             4            0.00%            50.00%
    total                 8                    4                             50.00%
    kept out: output layer (skip_output_layer=True)
    >>> report.to_dict()["rows"][0]["sparsity_after"]
    0.5
    """

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


def tensor_name(var):
    """A tensor's name in the report: its slot ("kernel"), else its place in the
    file ("vars/0")."""
    return var.slot or var.path.rsplit("/", 2)[-2] + "/" + var.path.rsplit("/", 1)[-1]


def row(layer, var, nonzero_before, nonzero_after):
    """The `LayerRow` of tensor `var` (a `formats.Var`) of layer `layer`."""
    total = math.prod(var.shape)
    return LayerRow(layer, tensor_name(var), tuple(var.shape), total,
                    total - int(nonzero_before), total - int(nonzero_after))
