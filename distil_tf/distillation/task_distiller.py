"""Task-specific distillation ("DistilBERT (D)"): a fine-tuned teacher's task outputs as soft targets.

`L = alpha_ce * T^2 * KL(teacher || student) + alpha_task * L_task`
(Sanh et al., 2019, section 4.2, Table 2; `run_squad_w_distillation.py`
L230-241, defaults alpha_ce = alpha_task = 0.5, T = 2):

- classification: KL on the class logits `[batch, classes]`, L_task the
  cross-entropy on the labels;
- span (SQuAD): `(KL_start + KL_end) / 2` over token positions `[batch, seq]`,
  L_task `(CE_start + CE_end) / 2`;
- regression (STS-B): a single score has no distribution to soften, so the
  soft target is the teacher's prediction itself: `MSE(student, teacher)`
  with no temperature and no T^2 factor, L_task the MSE to the gold score.
  (This is our choice; the paper does not distil a regression task.)
"""

import keras
import tensorflow as tf
from keras import ops

from distil_tf.distillation import losses
from distil_tf.distillation.distiller import num_replicas
from distil_tf.distillation.distillation_losses import WeightedLogitsDistillation
from distil_tf.models.distributed_build import DistributedBuildMixin
from distil_tf.tasks import task_losses


@keras.saving.register_keras_serializable(package="distil_tf")
class RegressionDistillation(keras.distillation.LogitsDistillation):
    """MSE between the student's and the teacher's regression scores `[batch]`."""

    def __init__(self, output_key="logits"):
        super().__init__(temperature=1.0, loss="mean_squared_error")
        self.output_key = output_key

    def compute_loss(self, teacher_outputs, student_outputs, denominator=None, **kwargs):
        return losses.regression_mse(
            teacher_outputs[self.output_key], student_outputs[self.output_key], denominator=denominator
        )

    def get_config(self):
        return {"output_key": self.output_key}


def per_example_supervised_loss(head_type, labels, outputs):
    """`task_losses.supervised_loss` per example, `[batch]`, before any mean.

    The same definitions (cross-entropy; squared error; the mean of the start
    and end cross-entropies), kept here so the train step can divide by the
    update's example count without the all-reduce `task_losses.global_mean`
    runs (MirroredStrategy cannot all-reduce inside the micro-batch loop).
    `tests/distillation/test_task_distiller.py` checks that both agree.
    """

    def cross_entropy(key):
        return ops.sparse_categorical_crossentropy(
            ops.cast(labels[key], "int32"), ops.cast(outputs[key], "float32"), from_logits=True
        )

    if head_type == task_losses.CLASSIFICATION:
        return cross_entropy("logits")
    if head_type == task_losses.REGRESSION:
        return ops.square(ops.cast(outputs["logits"], "float32") - ops.cast(labels["logits"], "float32"))
    if head_type == task_losses.SPAN:
        start, end = task_losses.SPAN_KEYS
        return 0.5 * (cross_entropy(start) + cross_entropy(end))
    raise ValueError(f"unknown head type '{head_type}'; expected classification, regression or span")


# Label keys of transfer-set batches (`distil_tf.distillation.transfer_set`).
CACHED_TEACHER_OUTPUTS = "teacher_outputs"
LABEL_WEIGHT = "label_weight"


def label_weights(labels):
    """The batch's label weights, float32 `[batch]` (1 labelled, 0 teacher-only), or None: all labelled."""
    if not isinstance(labels, dict) or LABEL_WEIGHT not in labels:
        return None
    return ops.cast(labels[LABEL_WEIGHT], "float32")


def global_sum(value):
    """`value` summed over replicas (one scalar all-reduce under several)."""
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    return value


def _describe_head(model):
    if model.head_type == "classification":
        return f"classification head of {model.num_classes} classes"
    return f"{model.head_type} head"


@keras.saving.register_keras_serializable(package="distil_tf")
class TaskDistiller(DistributedBuildMixin, keras.distillation.Distiller):
    """Distil a frozen, fine-tuned teacher `TaskModel` into a student `TaskModel`.

    The teacher's logits come from one of two places. By default
    `distill-task` scores the whole transfer set once, in inference mode,
    and caches the outputs with the exact token ids
    (`distil_tf.distillation.transfer_set`): batches then carry them as
    `labels["teacher_outputs"]` and the train step never runs the teacher.
    Without them (`--no-cache`, or when `needs_teacher_forward`), the frozen
    teacher runs inside every train step (inference mode, gradients
    stopped), as `MaskedLMDistiller` does: about +60% step time with a
    6-layer teacher and a 3-layer student on a CPU (a forward pass is
    roughly a third of a training step).

    Batches are `(features, labels)` with labels keyed like the outputs
    (`distil_tf.tasks.task_losses`), optionally with `label_weight` `[batch]`
    (1 labelled, 0 teacher-only: augmented copies, unlabeled text; the
    supervised term averages over labelled rows only) and `teacher_outputs`.

    Args:
        teacher: `TaskModel`, fine-tuned on the task (frozen here).
        student: `TaskModel` with the same head (type and class count).
        alpha_ce: float >= 0. Weight of the soft-target term.
        alpha_task: float >= 0. Weight of the supervised term.
        temperature: float > 0. Softmax temperature of the soft targets
            (unused for regression).

    Examples:
    >>> distiller = TaskDistiller(teacher, student)
    >>> distiller.compile(optimizer=keras.optimizers.AdamW(5e-5))
    >>> distiller.fit(dataset)   # then save distiller.student
    """

    def __init__(self, teacher, student, alpha_ce=0.5, alpha_task=0.5, temperature=2.0, **kwargs):
        for name, value in (("alpha_ce", alpha_ce), ("alpha_task", alpha_task)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if alpha_ce == 0 and alpha_task == 0:
            raise ValueError("alpha_ce and alpha_task are both 0: set at least one loss weight")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        for role, model in (("teacher", teacher), ("student", student)):
            if not hasattr(model, "head_type"):
                raise ValueError(f"the {role} is not a task model; fine-tune or build a TaskModel first")
        if teacher.head_type != student.head_type or teacher.num_classes != student.num_classes:
            raise ValueError(
                f"the teacher has a {_describe_head(teacher)} but the student a {_describe_head(student)}"
            )
        if teacher.encoder.vocabulary_size != student.encoder.vocabulary_size:
            raise ValueError(
                f"teacher and student vocabularies differ ({teacher.encoder.vocabulary_size} vs "
                f"{student.encoder.vocabulary_size}): both must read the same token ids"
            )
        head_type = student.head_type
        if head_type == "regression":
            distillation_losses = [RegressionDistillation("logits")]
        else:
            distillation_losses = [
                WeightedLogitsDistillation(temperature, output_key=key)
                for key in task_losses.output_keys(head_type)
            ]
        super().__init__(
            teacher=teacher,
            student=student,
            distillation_losses=distillation_losses,
            # Averaged: (KL_start + KL_end) / 2 for spans, the KL itself otherwise.
            distillation_loss_weights=[1.0 / len(distillation_losses)] * len(distillation_losses),
            # Unused: `compute_loss` weights each term by its own alpha (the
            # base class's convex combination cannot express 0.5 / 0.5 with
            # other ratios, nor alpha sums other than 1).
            student_loss_weight=0.5,
            **kwargs,
        )
        self.head_type = head_type
        self.alpha_ce = alpha_ce
        self.alpha_task = alpha_task
        self.temperature = temperature
        self.tokens_tracker = keras.metrics.Sum(name="tokens")

    def compile(self, optimizer="adam", **kwargs):
        kwargs.pop("loss", None)
        super().compile(
            optimizer=optimizer,
            loss=lambda labels, outputs: task_losses.supervised_loss(self.head_type, labels, outputs),
            **kwargs,
        )

    @property
    def metrics(self):
        # "loss" already is the total: drop the base class's duplicate.
        inherited = [metric for metric in super().metrics if metric.name != "total_loss"]
        return inherited + [self.tokens_tracker]

    @property
    def needs_teacher_forward(self):
        """True when the loss needs more of the teacher than its task logits.

        A cache of the teacher's logits (`distil_tf.distillation.transfer_set`)
        cannot serve a term on its hidden states: the teacher must then run
        every step.
        """
        return getattr(self, "alpha_hidden", 0) > 0

    def loss_normalizers(self, x, y=None):
        """This replica's example counts, all and labelled (train-step hook)."""
        normalizers = super().loss_normalizers(x, y)
        # The supervised term's count: labelled rows only (transfer sets).
        weights = label_weights(y)
        normalizers["labelled"] = normalizers["examples"] if weights is None else ops.sum(weights)
        return normalizers

    def loss_terms(self, inputs, labels, student_outputs, normalizers=None):
        """`{"distillation": ..., "task": ...}`, unweighted float32 scalars.

        With `normalizers` (`{"examples"}`, the example count of a whole
        update across replicas, from the train step) each term is this
        batch's share of the mean over the update, computed without a
        collective; without, the mean over this batch (all-reduced).
        """
        if isinstance(labels, dict) and CACHED_TEACHER_OUTPUTS in labels:
            # Scored once before training (`transfer_set.TeacherOutputCache`): no teacher pass here.
            teacher_outputs = labels[CACHED_TEACHER_OUTPUTS]
        else:
            teacher_outputs = self.teacher(inputs, training=False)
        teacher_outputs = keras.tree.map_structure(ops.stop_gradient, teacher_outputs)
        denominator = None if normalizers is None else normalizers["examples"]
        zero = ops.zeros((), "float32")
        distillation = zero
        if self.alpha_ce > 0:
            for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
                value = loss.compute_loss(teacher_outputs, student_outputs, denominator=denominator)
                distillation = distillation + weight * value
        task = zero
        if self.alpha_task > 0:
            weights = label_weights(labels)
            if denominator is None and weights is None:
                task = task_losses.supervised_loss(self.head_type, labels, student_outputs)
            elif weights is None:
                per_example = per_example_supervised_loss(self.head_type, labels, student_outputs)
                task = ops.sum(per_example) / ops.maximum(denominator, 1.0)
            else:
                # Augmented and unlabeled rows (weight 0) carry the teacher's targets only.
                per_example = per_example_supervised_loss(self.head_type, labels, student_outputs)
                labelled = global_sum(ops.sum(weights)) if normalizers is None else normalizers["labelled"]
                task = ops.sum(weights * per_example) / ops.maximum(labelled, 1.0)
        return {"distillation": distillation, "task": task}

    def _total(self, terms):
        return self.alpha_ce * terms["distillation"] + self.alpha_task * terms["task"]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        terms = self.loss_terms(x, y, y_pred)
        self._track(x, terms)
        return self._total(terms)

    def _track(self, x, terms):
        # Every term is this replica's share of the global mean (of the batch,
        # or of the whole update in the train step), so replica losses sum to
        # the single-device loss: no 1/N scaling. Trackers get the global
        # value (Keras averages them over replicas).
        replicas = num_replicas()
        self.student_loss_tracker.update_state(terms["task"] * replicas)
        self.distillation_loss_tracker.update_state(terms["distillation"] * replicas)
        self.tokens_tracker.update_state(ops.sum(ops.cast(x["padding_mask"], "float32")))

    def micro_batch_loss(self, x, y, y_pred, sample_weight, normalizers):
        """Train-step hook: this micro-batch's share of the update's loss, and its terms."""
        terms = self.loss_terms(x, y, y_pred, normalizers=normalizers)
        return self._total(terms), terms

    def record_update(self, x, loss, terms):
        """Train-step hook: the update's terms (this replica's sums) into the trackers."""
        super().record_update(x, loss, terms)
        self._track(x, terms)

    def get_config(self):
        return {
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "alpha_ce": self.alpha_ce,
            "alpha_task": self.alpha_task,
            "temperature": self.temperature,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)
