"""MaskedLMDistiller: the triple loss, frozen teacher, student-only gradients, validation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.distillation import MaskedLMDistiller, losses
from distil_tf.models import Encoder, init_student_from_teacher

VOCAB = 30


def _teacher(hidden=16, mlm_head=True):
    teacher = Encoder("bert", vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=hidden,
                      intermediate_dim=32, max_sequence_length=16, dropout=0.0, mlm_head=mlm_head)
    teacher(teacher.dummy_inputs())
    return teacher


def _batch(seed=0, batch=4, length=8):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, (batch, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[0, 5:] = 0
    ids = ids * mask
    labels = np.where((rng.random(ids.shape) < 0.3) & (mask == 1), ids, -100).astype("int32")
    return {"token_ids": ids, "padding_mask": mask, "mlm_labels": labels}


def test_total_loss_is_the_weighted_sum_of_the_pure_losses():
    teacher = _teacher()
    student, _ = init_student_from_teacher(teacher, num_layers=1)
    distiller = MaskedLMDistiller(teacher, student, alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    batch = _batch()
    teacher_out, student_out = teacher(batch), student(batch)
    padding = batch["padding_mask"].astype("float32")
    expected = {
        "ce": float(losses.soft_target_kl(teacher_out["mlm_logits"], student_out["mlm_logits"], 2.0, padding)),
        "mlm": float(losses.masked_lm_cross_entropy(batch["mlm_labels"], student_out["mlm_logits"])),
        "cos": float(losses.hidden_state_cosine(teacher_out["sequence_output"], student_out["sequence_output"], padding)),
    }
    terms = {name: float(value) for name, value in distiller.loss_terms(batch, student_out).items()}
    for name, value in expected.items():
        assert terms[name] == pytest.approx(value, rel=1e-5)
    total = float(distiller.compute_loss(batch, y_pred=student_out, training=False))
    assert total == pytest.approx(5 * expected["ce"] + 2 * expected["mlm"] + expected["cos"], rel=1e-5)


def test_restrict_ce_to_mask_uses_only_selected_positions():
    teacher = _teacher()
    student, _ = init_student_from_teacher(teacher, num_layers=1)
    distiller = MaskedLMDistiller(teacher, student, restrict_ce_to_mask=True)
    batch = _batch()
    out_t, out_s = teacher(batch), student(batch)
    selected = (batch["mlm_labels"] != -100).astype("float32")
    expected = float(losses.soft_target_kl(out_t["mlm_logits"], out_s["mlm_logits"], 2.0, selected))
    assert float(distiller.loss_terms(batch, out_s)["ce"]) == pytest.approx(expected, rel=1e-5)


def test_teacher_frozen_and_only_student_trained():
    teacher = _teacher()
    student, _ = init_student_from_teacher(teacher, num_layers=1)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]
    distiller = MaskedLMDistiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.AdamW(1e-2))
    assert {id(v) for v in distiller.trainable_variables} == {id(v) for v in student.trainable_variables}
    history = distiller.fit(tf.data.Dataset.from_tensors(_batch()).repeat(3), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(student_before, student.get_weights()))


def test_gradients_reach_only_the_student():
    teacher = _teacher()
    student, _ = init_student_from_teacher(teacher, num_layers=1)
    distiller = MaskedLMDistiller(teacher, student)
    batch = _batch()
    with tf.GradientTape() as tape:
        loss = distiller.compute_loss(batch, y_pred=student(batch, training=True))
    gradients = tape.gradient(loss, teacher.trainable_variables + student.trainable_variables)
    teacher_gradients = gradients[: len(teacher.trainable_variables)]
    assert all(gradient is None for gradient in teacher_gradients)
    assert sum(gradient is not None for gradient in gradients) > len(student.trainable_variables) // 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha_ce=0, alpha_mlm=0, alpha_cos=0, alpha_mse=0), "all loss weights are 0"),
        (dict(alpha_ce=-1), "alpha_ce must be >= 0"),
    ],
)
def test_bad_loss_weights(kwargs, message):
    teacher = _teacher()
    student, _ = init_student_from_teacher(teacher, num_layers=1)
    with pytest.raises(ValueError, match=message):
        MaskedLMDistiller(teacher, student, **kwargs)


def test_hidden_size_mismatch_with_cosine():
    teacher = _teacher(hidden=16)
    student = Encoder("distilbert", vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16)
    with pytest.raises(ValueError, match="add a projection or set alpha_cos=0"):
        MaskedLMDistiller(teacher, student)
    MaskedLMDistiller(teacher, student, alpha_cos=0.0)  # fine without the cosine term


def test_vocabulary_mismatch():
    teacher = _teacher()
    student = Encoder("distilbert", vocabulary_size=VOCAB + 1, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=16)
    with pytest.raises(ValueError, match="vocabularies differ"):
        MaskedLMDistiller(teacher, student)


def test_teacher_without_mlm_head():
    teacher = _teacher(mlm_head=False)
    student = Encoder("distilbert", vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=16)
    with pytest.raises(ValueError, match="teacher has no MLM head"):
        MaskedLMDistiller(teacher, student)
    MaskedLMDistiller(teacher, student, alpha_ce=0.0)  # MLM + cosine still work


def test_micro_batch_shares_sum_to_the_full_batch_loss():
    """The train step's path: each term over the whole batch's token counts, summed over parts.

    Rows 0-1 and 2-3 hold different numbers of real and MLM-selected tokens
    (row 0 is padded), so a mean of per-part means would differ.
    """
    teacher = _teacher()
    student, _ = init_student_from_teacher(teacher, num_layers=1)
    # Move the student away from the teacher so every term is far above round-off.
    rng = np.random.default_rng(7)
    student.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in student.get_weights()])
    distiller = MaskedLMDistiller(teacher, student, alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, alpha_mse=0.5)
    batch = _batch()
    full = distiller.loss_terms(batch, student(batch))
    assert min(float(value) for value in full.values()) > 1e-3
    normalizers = distiller.loss_normalizers(batch)
    assert float(normalizers["padding"]) == float(batch["padding_mask"].sum())
    assert float(normalizers["selected"]) == float((batch["mlm_labels"] != -100).sum())
    parts = [{key: value[rows] for key, value in batch.items()} for rows in (slice(0, 1), slice(1, 4))]
    shares = [distiller.micro_batch_loss(part, None, student(part), None, normalizers) for part in parts]
    for name in ("ce", "mlm", "cos", "mse"):
        assert sum(float(terms[name]) for _, terms in shares) == pytest.approx(float(full[name]), rel=1e-5), name
    expected = 5 * float(full["ce"]) + 2 * float(full["mlm"]) + float(full["cos"]) + 0.5 * float(full["mse"])
    assert sum(float(loss) for loss, _ in shares) == pytest.approx(expected, rel=1e-5)
    # The mean of per-part means (5 real tokens vs 24) is another number.
    naive = [distiller.loss_terms(part, student(part)) for part in parts]
    assert abs(np.mean([float(t["cos"]) for t in naive]) - float(full["cos"])) > 1e-3
