"""The Encoder: outputs, shapes, activations; serialization, lengths, tf.data and dtypes by the harness."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.models import Encoder

TINY = dict(vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
            max_sequence_length=12)


def _inputs(batch=2, length=5, seed=0):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, 20, (batch, length)).astype("int32")
    padding_mask = np.ones((batch, length), "int32")
    padding_mask[0, -2:] = 0
    return {"token_ids": token_ids, "padding_mask": padding_mask}


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_outputs_and_shapes(architecture):
    encoder = Encoder(architecture, **TINY)
    outputs = encoder(_inputs())
    assert outputs["sequence_output"].shape == (2, 5, 8)
    assert len(outputs["hidden_states"]) == 3
    assert all(state.shape == (2, 5, 8) for state in outputs["hidden_states"])
    assert outputs["mlm_logits"].shape == (2, 5, 20)
    np.testing.assert_array_equal(outputs["hidden_states"][-1], outputs["sequence_output"])
    assert ("pooled_output" in outputs) == (architecture == "bert")


def test_no_mlm_head():
    encoder = Encoder("distilbert", mlm_head=False, **TINY)
    assert "mlm_logits" not in encoder(_inputs())


def test_segment_ids_default_to_zero():
    encoder = Encoder("bert", **TINY)
    inputs = _inputs()
    without = encoder(inputs)["sequence_output"]
    with_zeros = encoder({**inputs, "segment_ids": np.zeros_like(inputs["token_ids"])})
    np.testing.assert_allclose(without, with_zeros["sequence_output"], atol=1e-6)


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_feed_forward_uses_the_requested_gelu(architecture):
    from scipy.special import erf

    x = np.linspace(-4, 4, 101).astype("float32")
    exact_gelu = 0.5 * x * (1 + erf(x / np.sqrt(2)))
    tanh_gelu = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    for name, reference in (("gelu", exact_gelu), ("gelu_approximate", tanh_gelu)):
        encoder = Encoder(architecture, hidden_activation=name, **TINY)
        for layer in encoder.transformer_layers:
            activation = layer._feedforward_intermediate_dense.activation
            np.testing.assert_allclose(np.asarray(activation(x)), reference, atol=2e-6)
    # The two differ by up to ~1e-3 at |x| ~ 2: the drift measured on MiniLM.
    assert np.abs(exact_gelu - tanh_gelu).max() > 1e-4


def test_bad_configs():
    with pytest.raises(ValueError, match="not divisible"):
        Encoder("distilbert", **{**TINY, "num_heads": 3})
    with pytest.raises(ValueError, match="unknown architecture"):
        Encoder("roberta", **TINY)
    with pytest.raises(ValueError, match="unknown hidden_activation"):
        Encoder("bert", hidden_activation="relu", **TINY)


@pytest.mark.parametrize("architecture, mlm_head, activation", [
    ("bert", True, "gelu_approximate"), ("distilbert", False, "gelu"),
])
def test_encoder_passes_the_model_class_harness(tmp_path, architecture, mlm_head, activation):
    # Config and weights round trips, every length with padding, tf.data predict, dtype policies.
    from model_test_harness import run_model_class_test

    def make(dtype):
        return Encoder(architecture, mlm_head=mlm_head, dtype=dtype, pooling=None if mlm_head else "mean",
                       hidden_activation=activation, **TINY)

    inputs = _inputs(batch=3, length=7)
    inputs["padding_mask"][1, -4:] = 0
    inputs["token_ids"] = inputs["token_ids"] * inputs["padding_mask"]
    # The MLM head computes its logits in float32 under mixed precision (loss stability).
    run_model_class_test(make, inputs, tmp_path, mixed_float32_outputs=("mlm_logits",))
