"""Small shared helpers for the tests."""

import numpy as np

import tfprune


def fit(model, x, y, steps, batch_size=8, optimizer="adam", loss="mse", callbacks=None, **kw):
    """Compile (if needed) and train `model` for exactly `steps` steps, with the step callback."""
    if not model.compiled:
        model.compile(optimizer, loss)
    n = steps * batch_size
    reps = -(-n // len(x))
    xs = np.concatenate([x] * reps)[:n] if not isinstance(x, list) else [np.concatenate([a] * reps)[:n] for a in x]
    ys = np.concatenate([y] * reps)[:n]
    cbs = [tfprune.callbacks.UpdatePruningStep()] + list(callbacks or [])
    return model.fit(xs, ys, batch_size=batch_size, epochs=1, verbose=0, shuffle=False, callbacks=cbs, **kw)


def every_step(sparsity):
    return tfprune.ConstantSparsity(sparsity, begin_step=0, frequency=1)
