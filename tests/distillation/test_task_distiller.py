"""TaskDistiller: the DistilBERT (D) loss, T^2 scaling, and who gets trained."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.distillation.task_distiller import TaskDistiller
from tiny_task_models import task_batch, tiny_task_model
from distil_tf.tasks import task_losses




def _kl_times_t_squared(teacher_logits, student_logits, temperature, axis=-1):
    def log_softmax(x):
        x = x / temperature
        return x - np.log(np.sum(np.exp(x - x.max(axis, keepdims=True)), axis, keepdims=True)) - x.max(axis, keepdims=True)
    teacher, student = log_softmax(np.float64(teacher_logits)), log_softmax(np.float64(student_logits))
    return np.mean(np.sum(np.exp(teacher) * (teacher - student), axis)) * temperature**2


@pytest.mark.parametrize("head_type, kwargs", [("classification", {"num_classes": 3}), ("span", {})])
def test_identical_models_have_zero_distillation_loss(head_type, kwargs):
    teacher = tiny_task_model(head_type, **kwargs)
    student = tiny_task_model(head_type, **kwargs)
    student.set_weights(teacher.get_weights())
    distiller = TaskDistiller(teacher, student)
    features, labels = task_batch(head_type)
    terms = distiller.loss_terms(features, labels, student(features, training=False))
    assert float(terms["distillation"]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["task"]) > 0


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_classification_term_is_kl_times_t_squared(temperature):
    teacher = tiny_task_model("classification", num_classes=3, seed=0)
    student = tiny_task_model("classification", num_layers=1, num_classes=3, seed=1)
    distiller = TaskDistiller(teacher, student, temperature=temperature)
    features, labels = task_batch("classification")
    student_outputs = student(features, training=False)
    terms = distiller.loss_terms(features, labels, student_outputs)
    expected = _kl_times_t_squared(teacher(features, training=False)["logits"], student_outputs["logits"], temperature)
    np.testing.assert_allclose(float(terms["distillation"]), expected, rtol=1e-4)
    total = distiller.compute_loss(features, labels, student_outputs)
    np.testing.assert_allclose(float(total), 0.5 * expected + 0.5 * float(terms["task"]), rtol=1e-4)


def test_span_term_averages_start_and_end():
    teacher, student = tiny_task_model("span", seed=0), tiny_task_model("span", num_layers=1, seed=1)
    distiller = TaskDistiller(teacher, student, alpha_ce=1.0, alpha_task=0.0)
    features, labels = task_batch("span")
    student_outputs = student(features, training=False)
    teacher_outputs = teacher(features, training=False)
    expected = 0.5 * sum(
        _kl_times_t_squared(teacher_outputs[key], student_outputs[key], 2.0) for key in ("start_logits", "end_logits")
    )
    np.testing.assert_allclose(float(distiller.compute_loss(features, labels, student_outputs)), expected, rtol=1e-4)


def test_regression_soft_target_is_mse_to_the_teacher():
    teacher, student = tiny_task_model("regression", seed=0), tiny_task_model("regression", num_layers=1, seed=1)
    distiller = TaskDistiller(teacher, student, temperature=5.0)
    features, labels = task_batch("regression")
    student_outputs = student(features, training=False)
    expected = np.mean((np.asarray(teacher(features, training=False)["logits"]) - student_outputs["logits"]) ** 2)
    terms = distiller.loss_terms(features, labels, student_outputs)
    np.testing.assert_allclose(float(terms["distillation"]), expected, rtol=1e-4)
    np.testing.assert_allclose(
        float(terms["task"]), float(task_losses.supervised_loss("regression", labels, student_outputs)), rtol=1e-6
    )


def test_only_the_student_learns_and_the_teacher_never_changes():
    teacher = tiny_task_model("classification", num_classes=3, seed=0)
    student = tiny_task_model("classification", num_layers=1, num_classes=3, seed=1)
    distiller = TaskDistiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    teacher_ids = {id(variable) for variable in teacher.weights}
    assert distiller.trainable_variables and not any(id(v) in teacher_ids for v in distiller.trainable_variables)
    features, labels = task_batch("classification")
    with tf.GradientTape() as tape:
        loss = distiller.compute_loss(features, labels, distiller(features, training=True))
    gradients = tape.gradient(loss, teacher.weights + student.trainable_weights)
    assert all(gradient is None for gradient in gradients[: len(teacher.weights)])
    assert any(gradient is not None for gradient in gradients[len(teacher.weights):])
    teacher_before = [np.array(w) for w in teacher.get_weights()]
    student_before = [np.array(w) for w in student.get_weights()]
    distiller.fit(tf.data.Dataset.from_tensors((features, labels)).repeat(2), epochs=1, verbose=0)
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(student_before, student.get_weights()))


@pytest.mark.parametrize(
    "teacher_kwargs, student_kwargs, arguments, message",
    [
        (("classification", {"num_classes": 3}), ("classification", {"num_classes": 2}), {},
         "3 classes but the student a classification head of 2"),
        (("span", {}), ("regression", {}), {}, "span head but the student a regression head"),
        (("span", {}), ("span", {}), {"alpha_ce": 0.0, "alpha_task": 0.0}, "both 0"),
        (("span", {}), ("span", {}), {"temperature": 0.0}, "temperature must be > 0"),
    ],
)
def test_bad_configurations(teacher_kwargs, student_kwargs, arguments, message):
    teacher = tiny_task_model(teacher_kwargs[0], **teacher_kwargs[1])
    student = tiny_task_model(student_kwargs[0], num_layers=1, **student_kwargs[1])
    with pytest.raises(ValueError, match=message):
        TaskDistiller(teacher, student, **arguments)


@pytest.mark.parametrize("head_type, kwargs", [
    ("classification", {"num_classes": 3}), ("regression", {}), ("span", {}),
])
def test_micro_batch_shares_sum_to_the_full_batch_loss(head_type, kwargs):
    """The train step's path: per-example losses over the whole batch's count, summed over parts."""
    teacher = tiny_task_model(head_type, seed=0, **kwargs)
    student = tiny_task_model(head_type, num_layers=1, seed=1, **kwargs)
    distiller = TaskDistiller(teacher, student, alpha_ce=0.7, alpha_task=0.3)
    features, labels = task_batch(head_type)
    full_terms = distiller.loss_terms(features, labels, student(features, training=False))
    normalizers = distiller.loss_normalizers(features, labels)
    assert float(normalizers["examples"]) == 4.0
    shares = []
    for rows in (slice(0, 3), slice(3, 4)):  # uneven parts: 3 rows + 1 row
        part_features = {key: value[rows] for key, value in features.items()}
        part_labels = {key: value[rows] for key, value in labels.items()}
        outputs = student(part_features, training=False)
        shares.append(distiller.micro_batch_loss(part_features, part_labels, outputs, None, normalizers))
    for name in ("distillation", "task"):
        assert sum(float(terms[name]) for _, terms in shares) == pytest.approx(float(full_terms[name]), rel=1e-5)
    total = 0.7 * float(full_terms["distillation"]) + 0.3 * float(full_terms["task"])
    assert sum(float(loss) for loss, _ in shares) == pytest.approx(total, rel=1e-5)


@pytest.mark.parametrize("head_type, kwargs", [
    ("classification", {"num_classes": 3}), ("regression", {}), ("span", {}),
])
def test_per_example_supervised_loss_matches_the_task_loss(head_type, kwargs):
    """The train step's copy of the task losses must not drift from `task_losses`."""
    from distil_tf.distillation.task_distiller import per_example_supervised_loss

    model = tiny_task_model(head_type, seed=3, **kwargs)
    features, labels = task_batch(head_type)
    outputs = model(features, training=False)
    per_example = np.asarray(per_example_supervised_loss(head_type, labels, outputs))
    assert per_example.shape == (4,)
    expected = float(task_losses.supervised_loss(head_type, labels, outputs))
    assert float(per_example.mean()) == pytest.approx(expected, rel=1e-6)
