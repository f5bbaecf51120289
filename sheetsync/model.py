"""The competition's fixed model, exactly: nothing here may change its architecture or recipe.

ResNet50 (``weights=None``, input 32x32x3) cut at ``conv2_block3_out``, with
``resnet.preprocess_input`` in front and GlobalAveragePooling2D + Dense(num_classes) logits on
top; Adam(1e-4), categorical cross-entropy from logits, accuracy. 232,330 parameters
(229,386 trainable) for 10 classes.

Usage::

    model = compile_model(build_model(10))
    embed = embedding_model(model)    # image -> 256-d GAP output

TensorFlow is imported inside the functions so that importing sheetsync stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import keras

IMAGE_SIZE = (32, 32)
LEARNING_RATE = 1e-4
CUT_LAYER = "conv2_block3_out"


def build_model(num_classes: int = 10) -> keras.Model:
    """The fixed model, uncompiled (weights are random: ``weights=None``)."""
    import tensorflow as tf

    base = tf.keras.applications.ResNet50(
        input_shape=(*IMAGE_SIZE, 3), include_top=False, weights=None
    )
    base = tf.keras.Model(base.inputs, outputs=base.get_layer(CUT_LAYER).output)

    inputs = tf.keras.Input(shape=(*IMAGE_SIZE, 3))
    x = tf.keras.applications.resnet.preprocess_input(inputs)
    x = base(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    # Under a mixed precision policy the logits stay float32 so softmax/loss are computed
    # in full precision (the usual Keras advice; the layer and its weights are the same).
    x = tf.keras.layers.Dense(num_classes, dtype=_logits_dtype())(x)
    return tf.keras.Model(inputs, x)


def compile_model(model: keras.Model, jit_compile: bool = False, **compile_kwargs) -> keras.Model:
    """Compile with the competition's optimizer, loss and metric; returns ``model``."""
    import tensorflow as tf

    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
        **compile_kwargs,
    )
    return model


def embedding_model(model: keras.Model) -> keras.Model:
    """A model sharing ``model``'s weights that returns (embedding [n, 256], logits [n, C])."""
    import tensorflow as tf

    # Found by type, not name: Keras numbers default names per session (..._1, ..._2).
    gap = [la for la in model.layers if isinstance(la, tf.keras.layers.GlobalAveragePooling2D)]
    if len(gap) != 1:
        raise ValueError("not the fixed model: expected one GlobalAveragePooling2D layer")
    return tf.keras.Model(model.input, [gap[0].output, model.output])


def _logits_dtype() -> str | None:
    import keras

    policy = keras.mixed_precision.global_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None
