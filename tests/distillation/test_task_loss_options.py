"""Loss options of task distillation, and frozen position embeddings in both distillations.

- `soft_loss="mse"` (Tang et al., 2019) against a numpy formula, spans
  without their padding positions;
- the hidden-state term (`alpha_hidden`) against numpy, padding masked,
  zero for an exact copy, exact over uneven micro-batches;
- `freeze_position_embeddings` through the real `distill` / `distill-task`
  drivers (and a resume), `budget_counts_special_tokens` from YAML/--set to
  the masker; bad options fail with one line.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.distillation import distillation_losses
from distil_tf.distillation.task_distiller import TaskDistiller, task_outputs_with_hidden_states
from distil_tf.models import Encoder
from tiny_task_models import task_batch, tiny_task_model




def _pair(head_type, **kwargs):
    return tiny_task_model(head_type, seed=0, **kwargs), tiny_task_model(head_type, num_layers=1, seed=1, **kwargs)


# --- soft_loss="mse" ---------------------------------------------------------


def test_mse_soft_loss_is_the_squared_logit_distance():
    teacher, student = _pair("classification", num_classes=3)
    distiller = TaskDistiller(teacher, student, soft_loss="mse", temperature=4.0)
    features, labels = task_batch("classification")
    student_outputs = student(features, training=False)
    terms = distiller.loss_terms(features, labels, student_outputs)
    teacher_logits = np.float64(teacher(features, training=False)["logits"])
    # ||z_teacher - z_student||^2 per example, mean over examples; no temperature.
    expected = np.mean(np.sum((teacher_logits - np.float64(student_outputs["logits"])) ** 2, axis=-1))
    np.testing.assert_allclose(float(terms["distillation"]), expected, rtol=1e-5)
    assert expected > 0.1


def test_mse_soft_loss_on_spans_averages_start_and_end_over_real_positions():
    teacher, student = _pair("span")
    distiller = TaskDistiller(teacher, student, soft_loss="mse", alpha_ce=1.0, alpha_task=0.0)
    features, labels = task_batch("span")
    student_outputs = student(features, training=False)
    teacher_outputs = teacher(features, training=False)
    real = np.asarray(features["padding_mask"], bool)
    expected = 0.5 * sum(
        np.mean(np.sum(np.where(real, np.float64(teacher_outputs[key]) - np.float64(student_outputs[key]), 0) ** 2, -1))
        for key in ("start_logits", "end_logits")
    )
    np.testing.assert_allclose(float(distiller.compute_loss(features, labels, student_outputs)), expected, rtol=1e-5)


def test_regression_keeps_its_mse_under_either_soft_loss():
    teacher, student = _pair("regression")
    features, labels = task_batch("regression")
    outputs = student(features, training=False)
    values = [float(TaskDistiller(teacher, student, soft_loss=soft).loss_terms(features, labels, outputs)["distillation"])
              for soft in ("kl", "mse")]
    assert values[0] == values[1]


# --- the hidden-state term ---------------------------------------------------


def _numpy_hidden(teacher_states, student_states, mask, pairs, kind):
    values = []
    for student_index, teacher_index in pairs:
        teacher_hidden = np.float64(teacher_states[teacher_index])
        student_hidden = np.float64(student_states[student_index])
        if kind == "mse":
            per_token = np.mean((student_hidden - teacher_hidden) ** 2, axis=-1)
        else:
            cosine = np.sum(teacher_hidden * student_hidden, -1) / (
                np.linalg.norm(teacher_hidden, axis=-1) * np.linalg.norm(student_hidden, axis=-1))
            per_token = 1.0 - cosine
        values.append(np.sum(per_token * mask) / np.sum(mask))
    return np.mean(values)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_hidden_state_term_matches_numpy_over_real_tokens(kind):
    teacher, student = _pair("classification", num_classes=3)
    pairs = [(1, 2), (0, 0)]
    distiller = TaskDistiller(teacher, student, alpha_hidden=2.0, hidden_loss=kind, hidden_layer_pairs=pairs)
    features, labels = task_batch("classification")
    student_outputs = distiller(features, training=False)
    terms = distiller.loss_terms(features, labels, student_outputs)
    teacher_states = teacher.encoder(features, training=False)["hidden_states"]
    student_states = student.encoder(features, training=False)["hidden_states"]
    mask = np.asarray(features["padding_mask"], np.float64)
    expected = _numpy_hidden(teacher_states, student_states, mask, pairs, kind)
    np.testing.assert_allclose(float(terms["hidden"]), expected, rtol=1e-5)
    # The padding mask matters here: counting the 3 padding positions would give another value.
    unmasked = _numpy_hidden(teacher_states, student_states, np.ones_like(mask), pairs, kind)
    assert abs(unmasked - expected) > 1e-3 * expected
    total = distiller.compute_loss(features, labels, student_outputs)
    np.testing.assert_allclose(
        float(total), 0.5 * float(terms["distillation"]) + 0.5 * float(terms["task"]) + 2.0 * expected, rtol=1e-5
    )


def test_hidden_state_term_is_zero_for_an_exact_copy_of_the_teacher():
    from distil_tf.models.student_init import student_task_model

    teacher = tiny_task_model("classification", num_classes=3)
    # Every teacher layer, token types folded: the student reproduces the teacher.
    student, layer_map, _ = student_task_model(teacher, layer_map=[0, 1])
    pairs = distillation_losses.mapped_layer_pairs(layer_map)
    assert pairs == [(1, 1), (2, 2)]
    features, labels = task_batch("classification")
    for kind in ("mse", "cosine"):
        distiller = TaskDistiller(teacher, student, alpha_hidden=1.0, hidden_loss=kind, hidden_layer_pairs=pairs)
        terms = distiller.loss_terms(features, labels, distiller(features, training=False))
        assert float(terms["hidden"]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("head_type, kwargs", [("classification", {"num_classes": 3}), ("span", {})])
def test_outputs_with_hidden_states_are_the_models_own(head_type, kwargs):
    model = tiny_task_model(head_type, **kwargs)
    features, _ = task_batch(head_type)
    outputs = task_outputs_with_hidden_states(model, features, training=False)
    for key, value in model(features, training=False).items():
        np.testing.assert_array_equal(outputs[key], value)
    assert len(outputs["hidden_states"]) == 3
    np.testing.assert_array_equal(outputs["hidden_states"][-1], model.encoder(features)["sequence_output"])


@pytest.mark.parametrize("options", [
    {"soft_loss": "mse"},
    {"alpha_hidden": 1.5},
    {"alpha_hidden": 1.0, "hidden_loss": "cosine", "soft_loss": "mse", "alpha_task": 0.0},
])
def test_micro_batch_shares_sum_to_the_full_batch_loss(options):
    """Uneven parts (3 rows with 18 real tokens, 1 row with 3) sum to the full batch's loss."""
    teacher, student = _pair("span")
    distiller = TaskDistiller(teacher, student, **options)
    features, labels = task_batch("span")
    full_terms = distiller.loss_terms(features, labels, distiller(features, training=False))
    normalizers = distiller.loss_normalizers(features, labels)
    assert float(normalizers["tokens"]) == 21.0
    shares = []
    for rows in (slice(0, 3), slice(3, 4)):
        part_features = {key: value[rows] for key, value in features.items()}
        part_labels = {key: value[rows] for key, value in labels.items()}
        outputs = distiller(part_features, training=False)
        shares.append(distiller.micro_batch_loss(part_features, part_labels, outputs, None, normalizers))
    for name in ("distillation", "task", "hidden"):
        assert sum(float(terms[name]) for _, terms in shares) == pytest.approx(float(full_terms[name]), rel=1e-5)
    assert sum(float(loss) for loss, _ in shares) == pytest.approx(float(distiller._total(full_terms)), rel=1e-5)


def test_hidden_term_trains_logs_and_round_trips_its_config():
    teacher, student = _pair("classification", num_classes=3)
    distiller = TaskDistiller(teacher, student, alpha_hidden=1.0, soft_loss="mse")
    assert distiller.needs_teacher_forward
    assert not TaskDistiller(teacher, student).needs_teacher_forward
    # The default map over depth: a 1-layer student against the teacher's first layer.
    assert distiller.hidden_layer_pairs == [(1, 1)]
    config = distiller.get_config()
    assert (config["soft_loss"], config["alpha_hidden"], config["hidden_layer_pairs"]) == ("mse", 1.0, [[1, 1]])
    restored = TaskDistiller.from_config(config)
    assert restored.hidden_layer_pairs == [(1, 1)] and restored.soft_loss == "mse"
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    features, labels = task_batch("classification")
    history = distiller.fit(tf.data.Dataset.from_tensors((features, labels)).repeat(3), epochs=1, verbose=0)
    losses = history.history["hidden_loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] > 0


# --- bad options: one line each ----------------------------------------------


@pytest.mark.parametrize("arguments, hidden_dims, message", [
    ({"soft_loss": "cross_entropy"}, (8, 8), "unknown soft_loss 'cross_entropy'; expected one of kl, mse"),
    ({"alpha_hidden": 1.0, "hidden_loss": "l1"}, (8, 8), "unknown hidden_loss 'l1'; expected one of cosine, mse"),
    ({"alpha_hidden": -1.0}, (8, 8), "alpha_hidden must be >= 0"),
    ({"alpha_hidden": 1.0}, (8, 4),
     r"teacher's hidden size \(8\) differs from the student's \(4\): add a projection or set "
     r"distillation.alpha_hidden=0"),
    ({"alpha_hidden": 1.0, "hidden_layer_pairs": [(1, 7)]}, (8, 8), "hidden-state index 7 is out of range"),
])
def test_bad_options_fail_with_one_line(arguments, hidden_dims, message):
    teacher = tiny_task_model("classification", num_classes=3, hidden_dim=hidden_dims[0])
    student = tiny_task_model("classification", num_layers=1, num_classes=3, hidden_dim=hidden_dims[1])
    with pytest.raises(ValueError, match=message) as error:
        TaskDistiller(teacher, student, **arguments)
    assert "\n" not in str(error.value)


def test_mismatched_hidden_sizes_are_fine_without_the_hidden_term():
    teacher = tiny_task_model("classification", num_classes=3, hidden_dim=8)
    student = tiny_task_model("classification", num_layers=1, num_classes=3, hidden_dim=4)
    assert TaskDistiller(teacher, student).hidden_state_loss is None


def test_unknown_soft_loss_fails_before_loading_anything(tmp_path):
    from distil_tf.training.finetune import DistillTaskConfig, run_task_distillation

    config = DistillTaskConfig(task="glue/sst2", teacher=str(tmp_path / "absent"), student="1", out=str(tmp_path / "o"))
    config.distillation.soft_loss = "kld"
    with pytest.raises(ValueError, match="^unknown distillation.soft_loss 'kld'; expected one of kl, mse$"):
        run_task_distillation(config)
    assert not (tmp_path / "o").exists()


# --- the hidden layer map of a student directory ------------------------------


def test_hidden_layer_map_of_a_student_directory(tmp_path, tiny_hf_bert_model, tiny_hf_distilbert_mlm):
    from distil_tf.models import load_model
    from distil_tf.models.student_init import write_student
    from distil_tf.training.finetune import DistillTaskConfig, build_task_model, hidden_layer_map
    from distil_tf.tasks import registry

    spec = registry.get_task("glue/sst2")
    teacher = build_task_model(load_model(tiny_hf_bert_model), spec)
    config = DistillTaskConfig(student="0,1")
    assert hidden_layer_map(config, teacher, None, [0, 1])[0] == [0, 1]
    write_student(tiny_hf_bert_model, tmp_path / "student", layer_map=[1])
    config = DistillTaskConfig(student=str(tmp_path / "student"))
    student = build_task_model(load_model(tmp_path / "student"), spec)
    assert hidden_layer_map(config, teacher, student, None) == ([1], "recorded with the student directory")
    # A Hugging Face DistilBERT records nothing: the evenly spread map.
    config = DistillTaskConfig(student=str(tiny_hf_distilbert_mlm))
    student = build_task_model(load_model(tiny_hf_distilbert_mlm), spec)
    layer_map, source = hidden_layer_map(config, teacher, student, None)
    assert layer_map == [0, 1] and source.startswith("evenly spread")


# --- frozen position embeddings ---------------------------------------------
# Fast: the distillers' own fit with the student's positions frozen as the
# drivers freeze them. Large: the real `distill` / `distill-task` drivers.


def _position_weights(encoder):
    return np.array(encoder.position_embedding.get_weights()[0])


def _changed(before, after):
    return [not np.array_equal(b, a) for b, a in zip(before, after)]


def test_frozen_positions_stay_put_in_task_distillation_steps():
    teacher, student = _pair("classification", num_classes=3)
    student.encoder.position_embedding.trainable = False
    distiller = TaskDistiller(teacher, student, alpha_hidden=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [np.array(w) for w in student.get_weights()]
    positions = _position_weights(student.encoder)
    distiller.fit(tf.data.Dataset.from_tensors(task_batch("classification")).repeat(3), epochs=1, verbose=0)
    np.testing.assert_array_equal(_position_weights(student.encoder), positions)
    changed = _changed(before, student.get_weights())
    assert sum(changed) > len(changed) // 2


def test_frozen_positions_stay_put_in_masked_lm_distillation_steps():
    from distil_tf.distillation import MaskedLMDistiller
    from distil_tf.models import init_student_from_teacher

    keras.utils.set_random_seed(0)
    teacher = Encoder("bert", vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
                      max_sequence_length=16)
    teacher(teacher.dummy_inputs())
    student, _ = init_student_from_teacher(teacher, layer_map=[1])
    student.position_embedding.trainable = False
    distiller = MaskedLMDistiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    features, _ = task_batch("classification")
    labels = np.full((4, 6), -100)
    labels[:, 2] = np.asarray(features["token_ids"])[:, 2]
    batch = {"token_ids": features["token_ids"], "padding_mask": features["padding_mask"],
             "mlm_labels": tf.constant(labels, tf.int32)}
    before = [np.array(w) for w in student.get_weights()]
    positions = _position_weights(student)
    distiller.fit(tf.data.Dataset.from_tensors(batch).repeat(3), epochs=1, verbose=0)
    np.testing.assert_array_equal(_position_weights(student), positions)
    changed = _changed(before, student.get_weights())
    assert sum(changed) > len(changed) // 2


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    words = ["the", "a", "movie", "good", "bad", "is", "was", "not", "great", "film", "i", "it", "and", "to",
             "of", "very", "fun", "boring", "hello", "world", "this", "test"]
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, size=rng.integers(14, 28))) for _ in range(64)]
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.large
def test_distill_freezes_position_embeddings_and_resumes(tmp_path, tiny_hf_bert_mlm, tiny_corpus):
    from distil_tf.models import init_student_from_teacher, load_model
    from distil_tf.training.distill import run_distillation

    def config(steps):
        return _distill_config(tiny_hf_bert_mlm, tiny_corpus, tmp_path / "run", steps)

    initial, _ = init_student_from_teacher(load_model(tiny_hf_bert_mlm), layer_map=[0, 2])
    run_distillation(config(2))
    summary = run_distillation(config(4))  # resumes from the step-2 checkpoint
    assert summary["resumed_from_step"] == 2
    student = load_model(tmp_path / "run" / "student")
    np.testing.assert_array_equal(_position_weights(student), _position_weights(initial))
    changed = _changed(initial.get_weights(), student.get_weights())
    assert sum(changed) > len(changed) // 2
    provenance = json.loads((tmp_path / "run" / "student" / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["distillation"]["freeze_position_embeddings"] is True
    # A loaded student trains its positions again (freezing is a choice of the run).
    assert student.position_embedding.trainable


def _distill_config(teacher, corpus, out, steps):
    from distil_tf import config as config_lib
    from distil_tf.training.distill import DistillConfig

    config = config_lib.resolve(DistillConfig, None, [
        "distillation.freeze_position_embeddings=true", f"steps={steps}", "checkpoint_every=2",
        "data.batch_size=4", "data.max_seq_length=32", "optimizer.learning_rate=1e-2", "log_every=1",
    ], teacher=str(teacher), student="0,2", out=str(out))
    config.data.corpus = [str(corpus)]
    return config


def _write_sst2(root):
    sst2 = root / "glue" / "SST-2"
    sst2.mkdir(parents=True)
    rows = [("the movie was good", 1), ("a bad film", 0), ("very fun", 1), ("boring and bad", 0),
            ("it was great !", 1), ("not good", 0)]
    body = "".join(f"{text}\t{label}\n" for text, label in rows)
    (sst2 / "train.tsv").write_text("sentence\tlabel\n" + body)
    (sst2 / "dev.tsv").write_text("sentence\tlabel\n" + body)
    return root / "glue"


@pytest.mark.large
def test_distill_task_freezes_position_embeddings_with_mse_and_hidden_terms(tmp_path, tiny_hf_bert_model, capsys):
    from distil_tf import cli
    from distil_tf.models import load_model
    from distil_tf.models.student_init import student_task_model

    data = _write_sst2(tmp_path)
    flags = ["--steps", "3", "--batch-size", "4", "--max-seq-length", "16", "--data-dir", str(data)]
    assert cli.main(["finetune", "--task", "glue/sst2", "--model", str(tiny_hf_bert_model),
                     "--out", str(tmp_path / "teacher"), *flags]) == 0
    teacher = load_model(tmp_path / "teacher" / "model")
    initial, _, _ = student_task_model(teacher, num_layers=1)
    code = cli.main([
        "distill-task", "--task", "glue/sst2", "--teacher", str(tmp_path / "teacher" / "model"), "--student", "1",
        "--out", str(tmp_path / "d"), *flags, "--set", "optimizer.learning_rate=1e-2",
        "--set", "distillation.freeze_position_embeddings=true", "--set", "distillation.soft_loss=mse",
        "--set", "distillation.alpha_hidden=1.0",
    ])
    assert code == 0, capsys.readouterr().err
    assert "hidden-state loss: student layers 0..0 against teacher layers [0]" in capsys.readouterr().out
    student = load_model(tmp_path / "d" / "student")
    np.testing.assert_array_equal(_position_weights(student.encoder), _position_weights(initial.encoder))
    changed = _changed(initial.get_weights(), student.get_weights())
    assert sum(changed) > len(changed) // 2
    provenance = json.loads((tmp_path / "d" / "student" / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["hidden_layer_map"] == [0]
    assert provenance["distillation"]["soft_loss"] == "mse" and provenance["distillation"]["freeze_position_embeddings"]
    summary = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert np.isfinite(summary["final_train_loss"]["hidden_loss"])


# --- the masking budget flag ---------------------------------------------------


@pytest.mark.parametrize("yaml_value, overrides, expected", [
    (None, [], False),
    ("true", [], True),
    ("true", ["distillation.budget_counts_special_tokens=false"], False),
    (None, ["distillation.budget_counts_special_tokens=true"], True),
])
def test_budget_flag_reaches_the_masker(tmp_path, monkeypatch, tiny_vocab_file, yaml_value, overrides, expected):
    from distil_tf import config as config_lib
    from distil_tf.data import batching
    from distil_tf.text.loading import load_tokenizer
    from distil_tf.training.distill import DistillConfig, mlm_dataset_factory

    yaml_path = None
    if yaml_value is not None:
        yaml_path = tmp_path / "run.yaml"
        yaml_path.write_text(f"distillation:\n  budget_counts_special_tokens: {yaml_value}\n")
    config = config_lib.resolve(DistillConfig, yaml_path, overrides)
    seen = []

    class Recorder(batching.DynamicMasker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.budget_counts_special_tokens)

    monkeypatch.setattr(batching, "DynamicMasker", Recorder)
    (tmp_path / "c.txt").write_text("the movie was good and it was very fun to see this test film again\n")
    tokenizer = load_tokenizer(tiny_vocab_file)
    make = mlm_dataset_factory(config, tokenizer, np.ones(tokenizer.vocabulary_size(), int), [str(tmp_path / "c.txt")])
    make(None, 2)
    assert seen == [expected]
    path = config_lib.save_config(config, tmp_path / "saved")
    assert config_lib.resolve(DistillConfig, path).distillation.budget_counts_special_tokens is expected


def test_paper_config_freezes_positions():
    import pathlib

    from distil_tf import config as config_lib
    from distil_tf.training.distill import DistillConfig

    paper = pathlib.Path(__file__).resolve().parents[2] / "distil_tf" / "configs" / "distilbert_base_paper.yaml"
    config = config_lib.resolve(DistillConfig, paper)
    assert config.distillation.freeze_position_embeddings is True
    assert config.distillation.budget_counts_special_tokens is False
