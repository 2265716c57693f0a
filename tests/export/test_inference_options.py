"""The export modules under each `InferenceOptions`: the same outputs as the keras-hub graph.

Signatures are called as traced concrete functions (no SavedModel round
trip, which `test_exporter.py` and `tests/benchmarks/test_speed.py` cover),
on a 2-layer, hidden-32 model.
"""

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.export import create_export_module
from distil_tf.export import inference_options
from distil_tf.export.fused_encoder import FusedEncoder
from distil_tf.export.inference_options import InferenceOptions
from distil_tf.models import Encoder, TaskModel
from distil_tf.text import load_tokenizer

LENGTHS = (5, 9, 16, 17, 23)
BUCKETS = (8, 16, 32)


def _task_model(tokenizer, architecture, head_type, task_name):
    tf.keras.utils.set_random_seed(0)
    encoder = Encoder(
        architecture, vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
        hidden_dim=32, intermediate_dim=64, max_sequence_length=64, mlm_head=False,
    )
    encoder(encoder.dummy_inputs())
    num_classes = 2 if head_type == "classification" else None
    return TaskModel.from_encoder(encoder, head_type, task_name=task_name, num_classes=num_classes)


@pytest.fixture(scope="module")
def tokenizer(tiny_vocab_file):
    return load_tokenizer(tiny_vocab_file)


def _id_inputs(length, uses_segment_ids, seed):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(5, 99, size=(1, length)).astype(np.int32)
    inputs = {"token_ids": tf.constant(token_ids), "padding_mask": tf.ones([1, length], tf.int32)}
    if uses_segment_ids:
        inputs["segment_ids"] = tf.constant((np.arange(length) >= length // 2).astype(np.int32)[None])
    return inputs


def _predict_ids(module):
    """`run_model` traced with `predict_ids`' input signature (what it serves)."""
    spec = tf.TensorSpec([None, None], tf.int32)
    keys = ["token_ids", "padding_mask"] + (["segment_ids"] if module.uses_segment_ids else [])
    return tf.function(module.run_model, input_signature=[{key: spec for key in keys}])


KERAS_LAYERS = InferenceOptions(fused_graph=False)


@pytest.mark.parametrize(
    "architecture, head_type, task_name",
    [("bert", "regression", "glue/stsb"), ("distilbert", "span", "squad/v1.1"),
     ("bert", "classification", "glue/mrpc"), ("distilbert", "classification", "glue/sst2")],
)
def test_levers_keep_outputs_on_real_positions(tokenizer, architecture, head_type, task_name):
    model = _task_model(tokenizer, architecture, head_type, task_name)
    reference = _predict_ids(create_export_module(model, tokenizer, max_sequence_length=64, options=KERAS_LAYERS))
    for options in (
        InferenceOptions(),  # the default: fused graph
        InferenceOptions(fused_graph=False, buckets=BUCKETS),
        InferenceOptions(fused_graph=False, buckets=BUCKETS, jit_compile=True),
        InferenceOptions(buckets=BUCKETS, jit_compile=True),
    ):
        module = create_export_module(model, tokenizer, max_sequence_length=64, options=options)
        fast = _predict_ids(module)
        for seed, length in enumerate(LENGTHS):
            inputs = _id_inputs(length, module.uses_segment_ids, seed)
            expected, actual = reference(inputs), fast(inputs)
            assert set(actual) == set(expected)
            for key in expected:
                # Span logits come back at the caller's length, not the bucket's.
                assert actual[key].shape == expected[key].shape
                np.testing.assert_allclose(
                    actual[key].numpy(), expected[key].numpy(), atol=1e-5, rtol=0,
                    err_msg=f"{options.label}, length {length}, {key}",
                )


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_fused_encoder_matches_keras_hub_on_real_positions(tokenizer, architecture):
    model = _task_model(tokenizer, architecture, "regression", "glue/stsb")
    fused = FusedEncoder(model.encoder)
    inputs = _id_inputs(11, architecture == "bert", seed=3)
    # Two rows, the second padded after 7 tokens: padding must stay masked.
    inputs = {key: tf.concat([value, value], 0) for key, value in inputs.items()}
    inputs["padding_mask"] = tf.constant([[1] * 11, [1] * 7 + [0] * 4], tf.int32)
    expected = model.encoder(inputs)["sequence_output"].numpy()
    actual = tf.function(fused)(inputs).numpy()
    np.testing.assert_allclose(actual[0], expected[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(actual[1, :7], expected[1, :7], atol=1e-5, rtol=0)


def test_default_export_saves_the_fused_graph_without_the_keras_hub_encoder(tokenizer, tmp_path):
    model = _task_model(tokenizer, "distilbert", "regression", "glue/stsb")
    module = create_export_module(model, tokenizer, max_sequence_length=64)
    assert module.options.fused_graph and module.model is None
    inputs = _id_inputs(9, False, seed=4)
    expected = model(inputs)["logits"].numpy()
    tf.saved_model.save(module, str(tmp_path), signatures=module.get_signatures())
    loaded = tf.saved_model.load(str(tmp_path))
    np.testing.assert_allclose(loaded.signatures["predict_ids"](**inputs)["logits"].numpy(), expected,
                               atol=1e-5, rtol=0)
    # One copy of the layer weights: the encoder's keras-hub variables are not saved.
    checkpoint = tf.train.list_variables(str(tmp_path / "variables" / "variables"))
    saved = sum(int(np.prod(shape)) for name, shape in checkpoint if name.endswith("VARIABLE_VALUE"))
    assert saved == model.count_params()


def test_mixed_precision_model_exports_in_float32(tokenizer):
    tf.keras.utils.set_random_seed(0)
    encoder = Encoder(
        "distilbert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
        hidden_dim=32, intermediate_dim=64, max_sequence_length=64, mlm_head=False, dtype="mixed_bfloat16",
    )
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "regression", task_name="glue/stsb")
    module = create_export_module(model, tokenizer, max_sequence_length=64)
    outputs = _predict_ids(module)(_id_inputs(9, False, seed=5))
    assert outputs["logits"].dtype == tf.float32
    assert {variable.dtype for variable in module.fused_encoder.variables} == {tf.float32}


def test_bfloat16_lever_casts_weights_and_stays_close(tokenizer):
    model = _task_model(tokenizer, "distilbert", "regression", "glue/stsb")
    cast = inference_options.with_compute_dtype(model, "bfloat16")
    assert {weight.dtype for weight in cast.encoder.weights} == {"bfloat16"}
    inputs = _id_inputs(12, False, 0)
    reference = model.encoder(inputs)["sequence_output"].numpy()
    candidate = np.asarray(cast.encoder(inputs)["sequence_output"], np.float32)
    # bfloat16 keeps 8 mantissa bits: close, not equal (why it is opt-in).
    assert 0 < np.abs(reference - candidate).max() < 0.5
    assert inference_options.with_compute_dtype(model, "float32") is model


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_fused_bfloat16_rounds_only_the_projections_and_beats_the_keras_bfloat16_graph(tokenizer, architecture):
    model = _task_model(tokenizer, architecture, "regression", "glue/stsb")
    fused = FusedEncoder(model.encoder, compute_dtype="bfloat16")
    projections = {name: weights[name].dtype for weights in fused.layers for name in weights
                   if name.endswith(("_kernel", "_bias"))}
    assert set(projections.values()) == {tf.bfloat16} and len(projections) == 8
    assert {weights["attention_gamma"].dtype for weights in fused.layers} == {tf.float32}
    assert fused.token_table.dtype == tf.float32  # the encoder's own table, shared, never cast
    inputs = _id_inputs(12, architecture == "bert", 0)
    reference = model.encoder(inputs)["sequence_output"].numpy()
    actual = tf.function(fused)(inputs)
    assert actual.dtype == tf.float32
    keras_bf16 = inference_options.with_compute_dtype(model, "bfloat16").encoder(inputs)["sequence_output"]
    fused_error = np.abs(reference - actual.numpy()).max()
    keras_error = np.abs(reference - np.asarray(keras_bf16, np.float32)).max()
    # Rounded (not float32), and closer to float32 than the all-bfloat16 keras-hub graph,
    # which also rounds LayerNorm, softmax and the residual stream.
    assert 0 < fused_error < keras_error, (fused_error, keras_error)
    with pytest.raises(ValueError, match="compute_dtype must be"):
        FusedEncoder(model.encoder, compute_dtype="float16")


def test_bucket_lengths_numpy_and_graph_agree():
    lengths = np.array([1, 8, 9, 16, 31, 32, 33, 70])
    expected = [8, 8, 16, 16, 32, 32, 33, 70]  # past the last bucket: unpadded
    assert inference_options.bucket_lengths(lengths, BUCKETS).tolist() == expected
    for length, padded_length in zip(lengths, expected):
        features = {"token_ids": tf.ones([1, int(length)], tf.int32)}
        padded, original = inference_options.pad_to_bucket(features, BUCKETS)
        assert padded["token_ids"].shape == (1, padded_length)
        assert int(original) == length
        assert int(tf.reduce_sum(padded["token_ids"])) == length  # zeros appended


def test_options_validate_and_label():
    assert InferenceOptions().label == "default"
    assert InferenceOptions().fused_graph
    options = InferenceOptions(fused_graph=False, buckets=[32, 16, 16], jit_compile=True, compute_dtype="bfloat16")
    assert options.buckets == (16, 32)
    assert options.label == "keras-layers+xla+buckets+bf16"
    with pytest.raises(ValueError, match="compute_dtype"):
        InferenceOptions(compute_dtype="float16")
    with pytest.raises(ValueError, match="positive"):
        InferenceOptions(buckets=(0, 16))
    assert InferenceOptions(compute_dtype="bfloat16").label == "bf16"  # the fused graph in bfloat16
    assert InferenceOptions(buckets=(8,), jit_compile=True).label == "xla+buckets"
