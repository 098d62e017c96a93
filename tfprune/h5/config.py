"""What a saved model config says: layer classes, output layers, Keras 3 file keys.

Pure dict walking, no file access. `outline(config)` reads a model config (a
`.keras` archive's `config.json`, or a Keras 2 h5's `model_config` attribute),
nested models too, into an `Outline`; `expected_variables(config)` builds the
model the config describes, without allocating its weights, and lists the
variables a Keras 3 weights file of it holds (`formats.check_config_matches`
compares them with the file).

Example:

>>> import keras
>>> model = keras.Sequential([keras.Input((3,), name="x"), keras.layers.Dense(4, name="hidden"),
...                           keras.layers.Dense(2, name="logits")])
>>> config = keras.saving.serialize_keras_object(model)
>>> found = outline(config)
>>> found.classes
{('x',): 'InputLayer', ('hidden',): 'Dense', ('logits',): 'Dense'}
>>> found.outputs, found.keys["layers/dense_1"]
([('logits',)], ('logits',))
>>> expected_variables(config)
{'layers/dense/vars/0': (3, 4), 'layers/dense/vars/1': (4,), 'layers/dense_1/vars/0': (4, 2), 'layers/dense_1/vars/1': (2,)}
"""

import copy
import dataclasses

import keras
from tfprune._compat import global_state, saving_lib, to_snake_case

__all__ = ["Outline", "outline", "expected_variables", "MODEL_CLASSES"]

MODEL_CLASSES = ("Functional", "Sequential", "Model")


def _is_model_config(entry):
    return isinstance(entry, dict) and isinstance(
        (entry.get("config") or {}).get("layers"), list
    )


def _entry_name(entry):
    return (entry.get("config") or {}).get("name") or entry.get("name")


def _output_names(cfg):
    """Names of a Functional/Sequential config's output layers."""
    inner = cfg["config"]
    if "output_layers" not in inner:  # Sequential: the last layer
        layers = [e for e in inner["layers"] if e.get("class_name") != "InputLayer"]
        return [_entry_name(layers[-1])] if layers else []
    names = []

    def collect(x):
        if isinstance(x, list) and len(x) == 3 and isinstance(x[0], str):
            names.append(x[0])
        elif isinstance(x, (list, tuple)):
            for y in x:
                collect(y)
        elif isinstance(x, dict):
            for y in x.values():
                collect(y)

    collect(inner["output_layers"])
    return names


@dataclasses.dataclass
class Outline:
    """What a model config says: classes by layer id (a tuple of names, nested
    models first; in model order), output layer ids, and layer ids by Keras 3
    weights-file key path (`"layers/dense_1"`, `"layers/sequential/layers/dense"`)."""

    classes: dict = dataclasses.field(default_factory=dict)
    outputs: list = dataclasses.field(default_factory=list)
    keys: dict = dataclasses.field(default_factory=dict)


def outline(cfg):
    """Walk a model config (nested models too) into an `Outline` (empty for None)."""
    if not cfg:
        return Outline()
    out = Outline(outputs=_output_ids(cfg, ()))
    _add_layers(cfg, (), "", out)
    return out


def _add_layers(cfg, prefix, key_path, out):
    """Record the classes and Keras 3 key paths of `cfg`'s layers, recursively."""
    if not _is_model_config(cfg):
        return
    sequential = cfg.get("class_name") == "Sequential"
    used = {}
    for entry in cfg["config"]["layers"]:
        cls = entry.get("class_name")
        lid = prefix + (_entry_name(entry),)
        out.classes[lid] = cls
        if sequential and cls == "InputLayer":  # not in Sequential.layers
            continue
        key = to_snake_case(cls)
        used[key] = used.get(key, -1) + 1
        key = key if used[key] == 0 else f"{key}_{used[key]}"
        out.keys[f"{key_path}layers/{key}"] = lid
        _add_layers(entry, lid, f"{key_path}layers/{key}/", out)


def _output_ids(cfg, prefix):
    """Ids of the output layers of a model config (inside nested output models)."""
    if not _is_model_config(cfg):
        return []
    by_name = {_entry_name(e): e for e in cfg["config"]["layers"]}
    ids = []
    for name in _output_names(cfg):
        entry = by_name.get(name)
        nested = _output_ids(entry, prefix + (name,)) if _is_model_config(entry) else []
        ids += nested or [prefix + (name,)]
    return ids


# ------------------------------------------------------------------ expected variables
#
# Private Keras API (keep it here): `saving_lib._save_state` is the walk Keras itself
# saves a weights file with, so the paths it gives are exactly the file's; and the
# global list of variables a stateless scope left uninitialized.


class _ShapeStore(saving_lib.H5IOStore):
    """Stands for the weights file in `saving_lib._save_state`: records the shape
    of each variable saved, reads no value (the variables have none)."""

    def __init__(self):  # no file
        self.shapes = {}

    def __bool__(self):
        return True

    def make(self, path, metadata=None):
        shapes, prefix = self.shapes, (path + "/" if path else "") + "vars/"

        class Entry(dict):
            def __setitem__(self, key, variable):
                shapes[prefix + str(key)] = tuple(variable.shape)

        return Entry()


def expected_variables(cfg):
    """`{dataset path: shape}` of the model weights a Keras 3 weights file of the
    model `cfg` describes holds (`"layers/dense/vars/0": (3, 4)`; the optimizer's
    are not listed).

    The model is built from `cfg` in a `keras.StatelessScope` that never
    initializes its variables: shapes only, no weight memory. Raises what Keras
    raises when it cannot build the model (an unregistered custom class, a config
    of another Keras version).
    """
    cfg = {k: copy.deepcopy(v) for k, v in cfg.items() if k != "compile_config"}
    pending = list(global_state.get_global_attribute("uninitialized_variables", []))
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = keras.saving.deserialize_keras_object(cfg)
            store = _ShapeStore()
            saving_lib._save_state(model, store, None, "", set())
    finally:  # forget the variables built here, keep any the caller had pending
        global_state.set_global_attribute("uninitialized_variables", pending)
    return store.shapes
