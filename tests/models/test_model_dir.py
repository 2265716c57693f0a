"""Model directories: exact round trips, keras-hub presets, atomic publishing."""

import json

import keras_hub
import numpy as np
import pytest

from distil_tf import load_model, load_tokenizer
from distil_tf.models import Encoder, init_student_from_teacher, save_model
from distil_tf.models.model_dir import atomic_directory, describe_model


def _inputs():
    token_ids = np.array([[7, 12, 30, 8, 0], [7, 40, 8, 0, 0]], "int32")
    return {"token_ids": token_ids, "padding_mask": (token_ids != 0).astype("int32")}


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_save_load_round_trip_is_exact(tmp_path, tiny_vocab_file, architecture):
    model = Encoder(architecture, vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=8,
                    intermediate_dim=16, hidden_activation="gelu_approximate")
    model(model.dummy_inputs())
    tokenizer = load_tokenizer(tiny_vocab_file)
    save_model(model, tmp_path / "m", tokenizer, provenance={"kind": "test"})
    reloaded = load_model(tmp_path / "m")
    assert reloaded.get_config() == model.get_config()
    for mine, theirs in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(model(_inputs())["mlm_logits"], reloaded(_inputs())["mlm_logits"])
    assert describe_model(tmp_path / "m") == {"kind": "test"}
    assert load_tokenizer(tmp_path / "m").get_vocabulary() == tokenizer.get_vocabulary()


def test_student_directory_from_hf_teacher_round_trip(tmp_path, tiny_hf_bert_mlm):
    teacher = load_model(tiny_hf_bert_mlm)
    student, _ = init_student_from_teacher(teacher, num_layers=2)
    save_model(student, tmp_path / "s", load_tokenizer(tiny_hf_bert_mlm))
    np.testing.assert_array_equal(student(_inputs())["mlm_logits"], load_model(tmp_path / "s")(_inputs())["mlm_logits"])


def test_local_keras_hub_preset_directory(tmp_path, tiny_vocab_file):
    backbone = keras_hub.models.BertBackbone(vocabulary_size=99, num_layers=2, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    backbone.save_to_preset(str(tmp_path))
    keras_hub.models.BertTokenizer(vocabulary=str(tiny_vocab_file)).save_to_preset(str(tmp_path))
    encoder = load_model(tmp_path)
    assert encoder.architecture == "bert" and not encoder.has_mlm_head
    inputs = {**_inputs(), "segment_ids": np.zeros((2, 5), "int32")}
    expected = backbone(inputs)["sequence_output"]
    # keras-hub presets keep the tanh GELU they were trained with: exact match.
    np.testing.assert_allclose(encoder(inputs)["sequence_output"], expected, atol=1e-6)
    assert load_tokenizer(tmp_path).vocabulary_size() == 99


def test_save_refuses_vocabulary_mismatch(tmp_path, tiny_vocab_file):
    model = Encoder("distilbert", vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16)
    model(model.dummy_inputs())
    with pytest.raises(ValueError, match=r"vocabulary \(99\) does not match the model's \(50\)"):
        save_model(model, tmp_path / "m", load_tokenizer(tiny_vocab_file))
    assert not (tmp_path / "m").exists()


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "half-written").write_text("x")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_keeps_the_old_model_until_the_new_is_complete(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("old")
    with pytest.raises(ValueError, match="already exists"):
        with atomic_directory(tmp_path / "out"):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out", overwrite=True):
            raise RuntimeError("crash")
    assert (tmp_path / "out" / "old").read_text() == "old"
    with atomic_directory(tmp_path / "out", overwrite=True) as staging:
        (staging / "new").write_text("new")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "no model in"),
        (lambda p: (p / "x.txt").write_text("x") and p / "x.txt", "is a file"),
    ],
)
def test_bad_model_paths(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        load_model(make(tmp_path))


def test_corrupted_weights_file(tmp_path, tiny_vocab_file):
    model = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16)
    model(model.dummy_inputs())
    save_model(model, tmp_path / "m", load_tokenizer(tiny_vocab_file))
    weights = tmp_path / "m" / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ValueError, match="cannot read"):
        load_model(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["distil_tf"]["format_version"] == 1


def test_compiled_task_model_loads_without_the_training_code(tmp_path, tiny_vocab_file):
    # A fine-tuned model was compiled with our custom learning-rate schedule.
    # Its directory must load in a process that never imports
    # distil_tf.training (init-student from a fine-tuned teacher did not).
    import subprocess
    import sys

    import keras

    from distil_tf.models import TaskModel
    from distil_tf.models.model_dir import CONFIG_FILE
    from distil_tf.training.optimization import LinearWarmupLinearDecay

    encoder = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="glue/sst2")
    model.compile(optimizer=keras.optimizers.AdamW(LinearWarmupLinearDecay(5e-5, 2, 10)), loss="mse")
    save_model(model, tmp_path / "new", load_tokenizer(tiny_vocab_file))
    assert "compile_config" not in json.loads((tmp_path / "new" / CONFIG_FILE).read_text())["distil_tf"]["model"]
    # A directory written before the fix still holds the compile config.
    old = tmp_path / "old"
    save_model(model, old, load_tokenizer(tiny_vocab_file))
    config = json.loads((old / CONFIG_FILE).read_text())
    config["distil_tf"]["model"]["compile_config"] = keras.saving.serialize_keras_object(
        model.get_compile_config())
    (old / CONFIG_FILE).write_text(json.dumps(config))
    script = (
        "import sys; from distil_tf.models import load_model\n"
        "for path in sys.argv[1:]: print(type(load_model(path)).__name__)\n"
        "assert 'distil_tf.training.optimization' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "new"), str(old)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["TaskModel", "TaskModel"]
