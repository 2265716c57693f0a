"""One test harness for the model classes (keras-hub's `TestCase.run_backbone_test` shape).

`run_model_class_test(make_model, inputs)` checks what every model class here
must do, on one instance built by `make_model(dtype)`:

- config round trip: `serialize -> deserialize` gives the same config and,
  with the same weights, the same outputs (to 1e-6);
- weights round trip: `save_weights` / `load_weights` into a fresh instance;
- variable lengths: every length from 1 to the inputs' width runs, and
  padding never changes a real position (`[batch, seq, ...]` outputs) or a
  pooled output (`[batch, ...]`) beyond 1e-5;
- `predict` on a `tf.data` dataset equals calling the model;
- dtype policies: under `mixed_float16`, `mixed_bfloat16` and `bfloat16`
  the outputs have the policy's compute dtype (or float32 where the class
  says so: `float32_outputs`, `mixed_float32_outputs`), the
  weights its variable dtype, and the values stay close to float32 (`atol`
  per policy, relative to the output's largest magnitude).

`inputs` is a dict of int32 `[batch, seq]` arrays with `token_ids` and
`padding_mask`; its rows must have real tokens first.
"""

import keras
import numpy as np
import tensorflow as tf

POLICIES = {"mixed_float16": 1e-2, "mixed_bfloat16": 6e-2, "bfloat16": 6e-2}


def _numpy(outputs):
    """Outputs as `{key: array}`; a list of tensors becomes `key[i]` entries."""
    flat = {}
    for key, value in outputs.items():
        if isinstance(value, (list, tuple)):
            flat.update({f"{key}[{index}]": np.asarray(item, "float32") for index, item in enumerate(value)})
        else:
            flat[key] = np.asarray(value, "float32")
    return flat


def assert_same_outputs(first, second, atol, where):
    first, second = _numpy(first), _numpy(second)
    assert first.keys() == second.keys(), f"{where}: output keys differ"
    for key in first:
        np.testing.assert_allclose(first[key], second[key], atol=atol, err_msg=f"{where}: {key}")


def _built(model, inputs):
    model(inputs)
    return model


def check_config_round_trip(model, inputs):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert clone.get_config() == model.get_config()
    _built(clone, inputs)
    clone.set_weights(model.get_weights())
    assert_same_outputs(clone(inputs), model(inputs), 1e-6, "config round trip")


def check_weights_round_trip(make_model, model, inputs, tmp_path):
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    fresh = _built(make_model(None), inputs)
    fresh.load_weights(path)
    assert_same_outputs(fresh(inputs), model(inputs), 0.0, "weights round trip")


def check_variable_lengths(model, inputs):
    width = inputs["token_ids"].shape[1]
    full = _numpy(model(inputs))
    lengths = inputs["padding_mask"].sum(axis=1)
    for length in range(1, width + 1):
        cut = {key: value[:, :length] for key, value in inputs.items()}
        outputs = _numpy(model(cut))
        for key, value in outputs.items():
            per_position = full[key].ndim >= 2 and full[key].shape[1] == width
            if per_position:
                assert value.shape[1] == length, f"length {length}: {key} has shape {value.shape}"
            for row in np.flatnonzero(lengths <= length):
                # A row whose real tokens all fit: cutting its padding changes nothing.
                got, expected = value[row], full[key][row]
                if per_position:
                    got, expected = got[: lengths[row]], expected[: lengths[row]]
                np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"length {length}: {key}")


def check_predict_on_tf_data(model, inputs):
    dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(max(1, len(inputs["token_ids"]) // 2))
    assert_same_outputs(model.predict(dataset, verbose=0), model(inputs), 1e-5, "predict on tf.data")


def check_dtype_policies(make_model, model, inputs, float32_outputs=(), mixed_float32_outputs=()):
    reference = _numpy(model(inputs))
    for policy, atol in POLICIES.items():
        other = _built(make_model(policy), inputs)
        other.set_weights([np.asarray(w) for w in model.get_weights()])
        outputs = other(inputs)
        policy_object = keras.DTypePolicy(policy)
        for key, value in outputs.items():
            keep_float32 = key in float32_outputs or (key in mixed_float32_outputs and policy.startswith("mixed"))
            expected = "float32" if keep_float32 else policy_object.compute_dtype
            for item in value if isinstance(value, (list, tuple)) else [value]:
                assert keras.backend.standardize_dtype(item.dtype) == expected, f"{policy}: {key} is {item.dtype}"
        assert {w.dtype for w in other.weights} == {policy_object.variable_dtype}, policy
        for key, value in _numpy(outputs).items():
            scale = max(1.0, float(np.abs(reference[key]).max()))
            np.testing.assert_allclose(value, reference[key], atol=atol * scale, err_msg=f"{policy}: {key}")


def run_model_class_test(make_model, inputs, tmp_path, float32_outputs=(), mixed_float32_outputs=()):
    """Every check above on `make_model(None)` (float32) and `make_model(policy)`.

    Args:
        make_model: `f(dtype) -> keras.Model`, unbuilt or built, the same
            weights shapes for every dtype; `dtype` None means float32.
        inputs: dict of int32 `[batch, seq]` arrays (`token_ids`,
            `padding_mask`, optionally `segment_ids`).
        tmp_path: a directory for the weights file.
        float32_outputs: output keys the class always computes in float32
            (a task model's logits).
        mixed_float32_outputs: output keys in float32 under the mixed
            policies only (the encoder's MLM logits).
    """
    keras.utils.set_random_seed(0)
    model = _built(make_model(None), inputs)
    check_config_round_trip(model, inputs)
    check_weights_round_trip(make_model, model, inputs, tmp_path)
    check_variable_lengths(model, inputs)
    check_predict_on_tf_data(model, inputs)
    check_dtype_policies(make_model, model, inputs, float32_outputs, mixed_float32_outputs)
