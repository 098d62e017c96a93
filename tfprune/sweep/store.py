"""A sweep's `out` folder: records appended as levels finish, resumed on rerun.

Layout of `out/`:

- `meta.json`: what the records depend on (a hash of the model's weights, of the
  data, the scope, metrics, fine-tuning settings...: `Store.fingerprint`), written
  once;
- `records.jsonl`: one JSON record per finished level, appended and flushed as
  each finishes (a line cut short by a kill is ignored);
- `sweep.csv` / `sweep.json` (or `sensitivity.*`): written at the end, atomically.

Rerunning with the same arguments skips the levels already in `records.jsonl`
(`resume=True`); new levels (more sparsities, another granularity) are added. A
folder holding records of a different model, data or settings is refused with
an error naming what differs; `resume=False` starts the folder over.
"""

import json
import os
import pathlib

from tfprune.sweep.result import SweepResult, record_key, write_atomic

__all__ = ["Store"]

RECORDS = "records.jsonl"
META = "meta.json"


class Store:
    """Records of one sweep in memory, mirrored to `out` when given."""

    def __init__(self, out, fingerprint, resume=True, kind="sweep"):
        self.out = None if out is None else pathlib.Path(out)
        self.kind = kind
        self.records = []
        self._done = {}
        if self.out is None:
            return
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"Argument `out` must be a folder. Received: out={str(out)!r} (a file)")
        self.out.mkdir(parents=True, exist_ok=True)
        meta = self.out / META
        if resume and meta.is_file():
            old = json.loads(meta.read_text())
            diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            if diff:
                raise ValueError(
                    f"Folder {str(self.out)!r} holds records of a different {kind} (differs in: "
                    f"{', '.join(diff)}). Use another `out`, or `resume=False` to start it over."
                )
            for r in _read_lines(self.out / RECORDS):
                self._done[record_key(r)] = r
        else:
            (self.out / RECORDS).write_text("")
        write_atomic(meta, json.dumps({**fingerprint}, indent=1, sort_keys=True) + "\n")

    def get(self, key):
        """The finished record of a level (from an earlier run), or None."""
        return self._done.get(key)

    def add(self, record, fresh=True):
        """Keep `record`; when `fresh`, append it to `records.jsonl` at once."""
        self.records.append(record)
        self._done[record_key(record)] = record
        if fresh and self.out is not None:
            with open(self.out / RECORDS, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def finish(self, result):
        """Write `<kind>.csv` and `<kind>.json` into `out` (if any)."""
        if self.out is not None:
            result.to_csv(self.out / f"{self.kind}.csv")
            result.to_json(self.out / f"{self.kind}.json")
        return result

    @staticmethod
    def read(folder):
        """The records found in a sweep folder, as a `SweepResult`."""
        folder = pathlib.Path(folder)
        for kind in ("sweep", "sensitivity"):
            if (folder / f"{kind}.json").is_file():
                return SweepResult.load(folder / f"{kind}.json")
        if not (folder / RECORDS).is_file():
            raise FileNotFoundError(f"No sweep records in folder {str(folder)!r}.")
        records = list(_read_lines(folder / RECORDS))
        kind = "sensitivity" if any("layer" in r for r in records) else "sweep"
        return SweepResult(records, kind)


def _read_lines(path):
    if not path.is_file():
        return
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
