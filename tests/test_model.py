import numpy as np

from bench.reference_keras3 import build_model as reference_model
from sheetsync.model import build_model, compile_model, embedding_model


def _params(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable


def _structure(model):
    """Layer types at the top, layer names inside the cut ResNet, weight shapes in order."""
    top = [type(layer).__name__ for layer in model.layers]
    # The input layer's name carries a per-session counter (input_layer_3): compare the rest.
    inner = [layer.name for layer in model.layers[1].layers[1:]]
    shapes = [tuple(w.shape) for w in model.weights]
    return top, inner, shapes


def test_fixed_model_matches_the_reference():
    ours = compile_model(build_model(10))
    ref = reference_model(10)
    assert _params(ours) == (232_330, 229_386)
    assert _params(ref) == (232_330, 229_386)
    assert _structure(ours) == _structure(ref)
    top, inner, _ = _structure(ours)
    assert top == ["InputLayer", "Functional", "GlobalAveragePooling2D", "Dense"]
    assert inner[0] == "conv1_pad" and inner[-1] == "conv2_block3_out"


def test_compile_uses_the_competition_recipe():
    model = compile_model(build_model(4))
    assert type(model.optimizer).__name__ == "Adam"
    assert np.isclose(float(model.optimizer.learning_rate), 1e-4)
    assert model.loss.get_config()["from_logits"] is True
    assert model.output_shape == (None, 4)


def test_embedding_model_gives_gap_output_and_logits():
    model = build_model(10)
    emb, logits = embedding_model(model)(np.zeros((2, 32, 32, 3), np.float32))
    assert emb.shape == (2, 256) and logits.shape == (2, 10)
    np.testing.assert_allclose(
        np.asarray(logits), np.asarray(model(np.zeros((2, 32, 32, 3)))), rtol=1e-5, atol=1e-5
    )
