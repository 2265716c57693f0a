"""Hidden-state MSE and pooled-embedding terms (teachers without an MLM head): numpy parity, padding, exactness."""

import numpy as np
import pytest

from distil_tf.distillation import MaskedLMDistiller, losses
from distil_tf.models import Encoder, init_student_from_teacher
from distil_tf.training.distill import (
    DistillationConfig,
    _unmask,
    describe_loss_terms,
    inputs_are_masked,
    resolve_loss_weights,
)
from tiny_task_models import masked_lm_batch

VOCAB = 30


def _teacher(pooling="mean", mlm_head=False):
    teacher = Encoder("bert", vocabulary_size=VOCAB, num_layers=3, num_heads=2, hidden_dim=16,
                      intermediate_dim=32, max_sequence_length=16, dropout=0.0, mlm_head=mlm_head,
                      pooling=pooling)
    teacher(teacher.dummy_inputs())
    return teacher


def _batch(seed=0, batch=4, length=8):
    return masked_lm_batch(VOCAB, seed, batch, length)


def _perturbed_student(teacher, layer_map=(0, 2), scale=0.3):
    student, _ = init_student_from_teacher(teacher, layer_map=list(layer_map))
    rng = np.random.default_rng(7)
    student.set_weights([w + rng.normal(0, scale, w.shape).astype(w.dtype) for w in student.get_weights()])
    return student


# --- The pure losses against numpy ---------------------------------------------------


def _numpy_hidden_mse(teacher, student, weights):
    per_position = np.mean((student - teacher) ** 2, axis=-1)
    return np.sum(per_position * weights) / np.sum(weights)


def test_hidden_state_mse_matches_numpy_and_ignores_padding():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(2, 2, 5, 4)).astype("float32")
    weights = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")
    expected = _numpy_hidden_mse(teacher, student, weights)
    assert float(losses.hidden_state_mse(teacher, student, weights)) == pytest.approx(expected, rel=1e-6)
    garbage = student.copy()
    garbage[0, 3:] = 1e3  # padded positions: any value, same loss
    assert float(losses.hidden_state_mse(teacher, garbage, weights)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.hidden_state_mse(teacher, teacher, weights)) == 0.0


def test_pooled_terms_match_numpy_and_skip_empty_rows():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(2, 3, 6)).astype("float32")
    padding = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    weights = np.asarray(losses.sequence_weights(padding))
    np.testing.assert_array_equal(weights, [1.0, 0.0, 1.0])
    cosine = np.sum(teacher * student, -1) / (np.linalg.norm(teacher, axis=-1) * np.linalg.norm(student, axis=-1))
    expected_cos = np.sum((1 - cosine) * weights) / 2
    expected_mse = np.sum(np.mean((teacher - student) ** 2, -1) * weights) / 2
    assert float(losses.pooled_embedding_cosine(teacher, student, weights)) == pytest.approx(expected_cos, rel=1e-5)
    assert float(losses.pooled_embedding_mse(teacher, student, weights)) == pytest.approx(expected_mse, rel=1e-6)
    assert float(losses.pooled_embedding_cosine(teacher, teacher, weights)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.pooled_embedding_mse(teacher, teacher, weights)) == 0.0


# --- The distiller's terms on tiny encoders -----------------------------------------


def _numpy_mean_pool(sequence, mask):
    mask = mask[:, :, None].astype("float64")
    return np.sum(sequence * mask, axis=1) / np.maximum(mask.sum(axis=1), 1e-9)


def test_distiller_terms_match_numpy_on_a_teacher_without_mlm_head():
    teacher = _teacher()
    student = _perturbed_student(teacher)
    pairs = [(1, 1), (2, 3)]  # student layers 0, 1 <- teacher layers 0, 2
    distiller = MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0,
                                  alpha_hidden_mse=1.0, hidden_mse_layer_pairs=pairs,
                                  alpha_pooled_cos=2.0, alpha_pooled_mse=0.5)
    assert distiller.pooling == "mean"  # read from the teacher
    batch = _batch()
    student_out, teacher_out = student(batch), teacher(batch)
    terms = {name: float(value) for name, value in distiller.loss_terms(batch, student_out).items()}
    mask = batch["padding_mask"].astype("float64")
    hidden = lambda outputs, index: np.asarray(outputs["hidden_states"][index], np.float64)  # noqa: E731
    expected_hidden = np.mean([_numpy_hidden_mse(hidden(teacher_out, t), hidden(student_out, s), mask)
                               for s, t in pairs])
    teacher_pooled = _numpy_mean_pool(hidden(teacher_out, -1), batch["padding_mask"])
    student_pooled = _numpy_mean_pool(hidden(student_out, -1), batch["padding_mask"])
    cosine = np.sum(teacher_pooled * student_pooled, -1) / (
        np.linalg.norm(teacher_pooled, axis=-1) * np.linalg.norm(student_pooled, axis=-1))
    assert terms["hidden_mse"] == pytest.approx(expected_hidden, rel=1e-4)
    assert terms["pooled_cos"] == pytest.approx(np.mean(1 - cosine), rel=1e-4)
    assert terms["pooled_mse"] == pytest.approx(np.mean((teacher_pooled - student_pooled) ** 2), rel=1e-4)
    assert terms["ce"] == terms["mlm"] == terms["mse"] == 0.0
    total = float(distiller.compute_loss(batch, y_pred=student_out, training=False))
    expected_total = terms["cos"] + terms["hidden_mse"] + 2.0 * terms["pooled_cos"] + 0.5 * terms["pooled_mse"]
    assert total == pytest.approx(expected_total, rel=1e-5)


def test_terms_are_zero_for_a_student_equal_to_the_teacher():
    teacher = _teacher()
    student, layer_map = init_student_from_teacher(teacher, layer_map=[0, 1, 2])  # every layer: a copy
    distiller = MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0,
                                  alpha_hidden_mse=1.0, hidden_mse_layer_pairs=[(1, 1), (2, 2), (3, 3)],
                                  alpha_pooled_cos=1.0, alpha_pooled_mse=1.0)
    batch = _batch()
    terms = distiller.loss_terms(batch, student(batch))
    for name in ("hidden_mse", "pooled_cos", "pooled_mse"):
        assert abs(float(terms[name])) < 1e-5, name


def test_micro_batch_shares_of_the_new_terms_sum_to_the_full_batch():
    """Row 0 holds 3 real tokens, the rest 6-8: per-part means would differ from the update's."""
    teacher = _teacher()
    student = _perturbed_student(teacher)
    distiller = MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0,
                                  alpha_hidden_mse=1.0, hidden_mse_layer_pairs=[(1, 1), (2, 3)],
                                  alpha_pooled_cos=1.0, alpha_pooled_mse=1.0)
    batch = _batch()
    batch["padding_mask"][3] = 0  # an all-pad row counts as no sentence
    batch["token_ids"][3] = 0
    full = distiller.loss_terms(batch, student(batch))
    normalizers = distiller.loss_normalizers(batch)
    assert float(normalizers["sequences"]) == 3.0
    parts = [{key: value[rows] for key, value in batch.items()} for rows in (slice(0, 1), slice(1, 4))]
    shares = [distiller.micro_batch_loss(part, None, student(part), None, normalizers) for part in parts]
    for name in ("cos", "hidden_mse", "pooled_cos", "pooled_mse"):
        assert float(full[name]) > 1e-3, name
        assert sum(float(terms[name]) for _, terms in shares) == pytest.approx(float(full[name]), rel=1e-5), name


def test_config_round_trip_and_bad_pooling():
    teacher = _teacher(pooling=None)
    student = _perturbed_student(teacher)
    with pytest.raises(ValueError, match="teacher records pooling None"):
        MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_pooled_cos=1.0)
    distiller = MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_pooled_cos=1.0,
                                  pooling="cls", alpha_hidden_mse=0.5, hidden_mse_layer_pairs=[(1, 1)])
    config = distiller.get_config()
    assert (config["pooling"], config["alpha_pooled_cos"], config["alpha_hidden_mse"]) == ("cls", 1.0, 0.5)
    assert config["hidden_mse_layer_pairs"] == [[1, 1]]
    assert sorted(distiller.term_trackers) == ["ce", "cos", "hidden_mse", "mlm", "mse", "pooled_cos"]


# --- Which terms a teacher gets, and the input it sees ---------------------------------


def test_defaults_without_an_mlm_head_turn_on_the_hidden_state_terms():
    config = DistillationConfig()
    weights, reason = resolve_loss_weights(config, teacher_has_mlm_head=False, teacher_pooling="mean")
    assert weights == {"ce": 0.0, "mlm": 0.0, "mse": 0.0, "hidden_mse": 1.0, "pooled_cos": 1.0,
                       "cos": 1.0, "pooled_mse": 0.0, "pooled_relation": 0.0}
    masked = inputs_are_masked(config, weights)
    assert masked is False
    assert describe_loss_terms(weights, reason, masked, "last", "all", "mean") == (
        "teacher has no MLM head: ce and mlm off; active: cos(last) 1.0, hidden_mse(all) 1.0, "
        "pooled_cos(mean) 1.0; input: unmasked text (no MLM term)")


def test_defaults_with_an_mlm_head_are_the_papers_triple_loss():
    config = DistillationConfig()
    weights, _ = resolve_loss_weights(config, teacher_has_mlm_head=True, teacher_pooling="cls_pooler")
    assert {name: value for name, value in weights.items() if value} == {"ce": 5.0, "mlm": 2.0, "cos": 1.0}
    assert inputs_are_masked(config, weights) is True


def test_a_teacher_without_pooling_gets_no_pooled_term_and_says_why():
    weights, reason = resolve_loss_weights(DistillationConfig(), False, "cls_pooler")
    assert weights["pooled_cos"] == 0.0 and "pooled_cos off" in reason and "cls_pooler" in reason


@pytest.mark.parametrize("name", ["alpha_mlm", "alpha_ce", "alpha_mse"])
def test_an_explicit_mlm_term_without_a_head_is_one_line_naming_both_ways_out(name):
    config = DistillationConfig(**{name: 2.0})
    with pytest.raises(ValueError) as error:
        resolve_loss_weights(config, False, "mean", "minilm/")
    message = str(error.value)
    assert "\n" not in message and f"distillation.{name}=2" in message and "minilm/ has none" in message
    assert f"--set distillation.{name}=0" in message and "teacher with an MLM head" in message
    # Zero is "off", not a request.
    resolve_loss_weights(DistillationConfig(**{name: 0.0}), False, "mean")


def test_unmask_restores_the_real_text():
    import tensorflow as tf

    ids = tf.constant([[101, 7, 103, 9, 102]], tf.int32)
    batch = {"token_ids": ids, "mlm_labels": tf.constant([[-100, -100, 8, -100, -100]]),
             "mlm_mask": tf.constant([[False, False, True, False, False]]),
             "padding_mask": tf.ones_like(ids, tf.bool)}
    restored = _unmask(batch)
    np.testing.assert_array_equal(restored["token_ids"], [[101, 7, 8, 9, 102]])
    assert int(tf.reduce_max(restored["mlm_labels"])) == -100 and not bool(tf.reduce_any(restored["mlm_mask"]))


# --- The relational term (in-batch similarity matrix) --------------------------------


def _numpy_relation(teacher, student, weights):
    def similarities(embedding):
        unit = embedding / np.linalg.norm(embedding, axis=-1, keepdims=True)
        return unit @ unit.T

    squared = (similarities(student) - similarities(teacher)) ** 2
    rows = []
    for i in np.flatnonzero(weights):
        others = [j for j in np.flatnonzero(weights) if j != i]
        rows.append(np.mean(squared[i, others]))
    return np.mean(rows)


def test_pooled_relation_matches_numpy_skips_empty_rows_and_ignores_norms_and_width():
    rng = np.random.default_rng(3)
    teacher = rng.normal(size=(5, 6)).astype("float32")
    student = rng.normal(size=(5, 4)).astype("float32")  # narrower: similarities still compare
    weights = np.array([1, 1, 0, 1, 1], "float32")
    expected = _numpy_relation(teacher.astype("float64"), student.astype("float64"), weights)
    assert expected > 0.05
    assert float(losses.pooled_similarity_relation(teacher, student, weights)) == pytest.approx(expected, rel=1e-5)
    garbage = student.copy()
    garbage[2] = 1e3  # the empty row: any value, same loss
    scaled = garbage * rng.uniform(0.1, 10, (5, 1)).astype("float32")  # norms do not matter
    assert float(losses.pooled_similarity_relation(teacher, scaled, weights)) == pytest.approx(expected, rel=1e-4)
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    rotated = (teacher @ rotation).astype("float32")  # same geometry, other basis: nothing to learn
    assert float(losses.pooled_similarity_relation(teacher, rotated, weights)) == pytest.approx(0.0, abs=1e-6)


def test_pooled_relation_trains_a_narrower_student_and_is_announced():
    teacher = _teacher()
    narrow = Encoder("bert", vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=8,
                     intermediate_dim=16, max_sequence_length=16, dropout=0.0, mlm_head=False, pooling="mean")
    narrow(narrow.dummy_inputs())
    with pytest.raises(ValueError, match="hidden size"):
        MaskedLMDistiller(teacher, narrow, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_pooled_cos=1.0)
    distiller = MaskedLMDistiller(teacher, narrow, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0,
                                  alpha_pooled_relation=1.0)
    batch = _batch(batch=6)
    terms = distiller.loss_terms(batch, narrow(batch))
    assert float(terms["pooled_relation"]) > 0
    assert distiller.get_config()["alpha_pooled_relation"] == 1.0
    config = DistillationConfig(alpha_pooled_relation=2.0)
    weights, reason = resolve_loss_weights(config, teacher_has_mlm_head=False, teacher_pooling="mean")
    assert weights["pooled_relation"] == 2.0
    line = describe_loss_terms(weights, reason, False, "last", "all", "mean")
    assert "pooled_relation(mean) 2.0" in line
