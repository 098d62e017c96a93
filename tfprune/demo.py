"""`tfprune demo`: the end-to-end MNIST demo (the README's main job).

Trains the seed article's MLP (784-1000-1000-500-200-10, no biases) on MNIST, prunes
it to 90% weight sparsity during `fit` with a polynomial schedule, prints per-layer
sparsity and test accuracy, strips the wrappers and saves the plain model, and
reports what that buys on disk (raw and gzipped file sizes).
"""

import argparse
import gzip
import os
import pathlib
import time

__all__ = ["seed_mlp", "run", "register_cli"]


def seed_mlp(input_dim=784, hidden=(1000, 1000, 500, 200), classes=10):
    """The seed article's MLP: Dense layers without biases, ReLU, softmax."""
    import keras

    layers = [keras.Input((input_dim,))]
    layers += [keras.layers.Dense(u, activation="relu", use_bias=False) for u in hidden]
    layers.append(keras.layers.Dense(classes, activation="softmax", use_bias=False))
    return keras.Sequential(layers, name="seed_mlp")


def _data(samples, data_path):
    from tfprune import datasets

    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(data_path)
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 255.0
    if samples:
        x_train, y_train = x_train[:samples], y_train[:samples]
    return x_train, y_train, x_test, y_test


def _gzip_size(path):
    return len(gzip.compress(pathlib.Path(path).read_bytes(), compresslevel=6))


def run(output_dir="demo_output", sparsity=0.9, dense_epochs=1, prune_epochs=3,
        batch_size=128, samples=None, data_path=None, log=print):
    """Run the demo; returns a dict of the measured figures."""
    import keras

    import tfprune

    keras.utils.set_random_seed(0)
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = _data(samples, data_path)
    steps_per_epoch = -(-len(x_train) // batch_size)
    log(f"MNIST: {len(x_train)} train / {len(x_test)} test images")

    model = seed_mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=dense_epochs, batch_size=batch_size, verbose=2)
    dense_acc = model.evaluate(x_test, y_test, verbose=0)[1]
    log(f"dense:  test accuracy {dense_acc:.4f}  ({time.perf_counter() - t0:.0f} s)")

    # Reach the target after all but the last epoch; end_step must be a multiple of
    # the frequency or the final sparsity is never applied.
    frequency = max(1, min(100, steps_per_epoch // 4))
    end_step = frequency * max(1, steps_per_epoch * max(prune_epochs - 1, 1) // frequency)
    schedule = tfprune.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end_step,
                                       frequency=frequency)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    pruned.fit(x_train, y_train, epochs=prune_epochs, batch_size=batch_size, verbose=2,
               callbacks=[tfprune.callbacks.UpdatePruningStep()])
    pruned_acc = pruned.evaluate(x_test, y_test, verbose=0)[1]
    log(f"pruned: test accuracy {pruned_acc:.4f}  ({time.perf_counter() - t0:.0f} s), "
        f"schedule {schedule}")

    stripped = tfprune.strip_pruning(pruned)
    report = tfprune.sparsity_report(stripped)
    log("\nPer-layer sparsity of the stripped model:\n" + str(report))

    model_path = out / "mnist_mlp_pruned.keras"
    stripped.save(model_path)
    # Like for like: the weights alone, dense vs pruned (zeros are stored, and compress).
    dense_path, pruned_path = out / "dense.weights.h5", out / "pruned.weights.h5"
    dense_plain = seed_mlp()  # uncompiled: no optimizer slots in the file
    dense_plain.set_weights(model.get_weights())
    dense_plain.save_weights(dense_path)
    stripped.save_weights(pruned_path)
    sizes = {p.name: (os.path.getsize(p), _gzip_size(p)) for p in (dense_path, pruned_path)}
    log("\nWeights on disk (stored dense, so only compression shrinks them):")
    for name, (raw, gz) in sizes.items():
        log(f"  {name:20s} {raw / 1e6:7.2f} MB   gzip {gz / 1e6:6.2f} MB")
    ratio = sizes[dense_path.name][1] / sizes[pruned_path.name][1]
    log(f"  gzipped, the pruned weights are {ratio:.1f}x smaller than the dense ones")
    log(f"\nSaved the stripped model to {model_path}")
    return {
        "dense_accuracy": float(dense_acc),
        "pruned_accuracy": float(pruned_acc),
        "sparsity": report.sparsity,
        "gzip_ratio": ratio,
        "report": report,
        "model_path": str(model_path),
    }


def register_cli(subparsers):
    p = subparsers.add_parser("demo", help="end-to-end MNIST demo (prune the seed MLP to 90%%)")
    p.add_argument("--output-dir", default="demo_output")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--dense-epochs", type=int, default=1)
    p.add_argument("--prune-epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=None,
                   help="use only the first N training images (quick runs)")
    p.add_argument("--data", default=None,
                   help="mnist.npz or a directory (default: $TFPRUNE_DATA_DIR, else download)")
    p.set_defaults(func=_main)


def _main(args):
    run(output_dir=args.output_dir, sparsity=args.sparsity, dense_epochs=args.dense_epochs,
        prune_epochs=args.prune_epochs, samples=args.samples, data_path=args.data)
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    raise SystemExit(_main(parser.parse_args(["demo"])))
