"""Models the sweep notebooks and benchmarks prune: VGG-16 for 32x32 images.

`vgg16(width=1.0)` is `keras.applications.VGG16(weights=None, include_top=False,
input_shape=(32, 32, 3))` with a small classifier head (Flatten, Dense(head,
relu), Dense(classes, softmax)). `width < 1` builds the same 13 convolutions and 5
poolings, with the same layer names, with every convolution's filter count scaled
by `width` (at least 1): quick runs and small CPUs.
"""

import keras

__all__ = ["vgg16", "VGG16_FILTERS"]

# (block, [filters of its convolutions]) as in keras.applications.VGG16
VGG16_FILTERS = ((1, (64, 64)), (2, (128, 128)), (3, (256, 256, 256)),
                 (4, (512, 512, 512)), (5, (512, 512, 512)))


def vgg16(width=1.0, input_shape=(32, 32, 3), classes=10, head=256, name="vgg16"):
    """VGG-16 features (keras.applications at width 1) + a small dense head.

    Example:

    >>> model = tfprune.sweep.models.vgg16(width=0.125)
    >>> [l.filters for l in model.layers if hasattr(l, "filters")][:3]
    [8, 8, 16]
    """
    if not (isinstance(width, (int, float)) and 0 < width <= 1):
        raise ValueError(f"Argument `width` must be in (0, 1]. Received: width={width!r}")
    inputs = keras.Input(input_shape)
    if width == 1:
        base = keras.applications.VGG16(weights=None, include_top=False, input_tensor=inputs)
        x = base.output
    else:
        x = inputs
        for block, filters in VGG16_FILTERS:
            for i, f in enumerate(filters, 1):
                x = keras.layers.Conv2D(max(1, round(f * width)), 3, padding="same",
                                        activation="relu", name=f"block{block}_conv{i}")(x)
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(head, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)
