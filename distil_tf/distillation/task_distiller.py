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

Options beyond the paper:
- `soft_loss="mse"`: the squared error between the raw student and teacher
  logits instead of the KL, no temperature (Tang et al., 2019, arXiv
  1903.12136), per start/end for spans (padding positions excluded);
  regression keeps its MSE either way.
- `alpha_hidden > 0`: `+ alpha_hidden * L_hidden`, the MSE (or 1 - cosine)
  between each student layer's output and the teacher layer it was copied
  from, averaged over real tokens (`HiddenStateDistillation`, the machinery
  of `MaskedLMDistiller`'s L_cos).
"""

import keras
import tensorflow as tf
from keras import ops

from distil_tf.distillation import losses
from distil_tf.distillation.distiller import num_replicas
from distil_tf.distillation.distillation_losses import (
    HIDDEN_STATE_LOSSES,
    HiddenStateDistillation,
    LogitsMSEDistillation,
    WeightedLogitsDistillation,
    mapped_layer_pairs,
)
from distil_tf.models.distributed_build import DistributedBuildMixin
from distil_tf.replica_sums import global_sum
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


SOFT_LOSSES = ("kl", "mse")


class _EncodedTaskModel:
    """A task model whose encoder returns an encoding already computed.

    Lets `task_outputs_with_hidden_states` run `TaskModel.call`'s own head
    code (pooling, pre-classifier, span padding) on one encoder pass, rather
    than copying it here or running the encoder twice.
    """

    def __init__(self, model, encoded):
        self._model = model
        self._encoded = encoded

    def encoder(self, inputs, training=None):
        return self._encoded

    def __getattr__(self, name):
        return getattr(self._model, name)


def task_outputs_with_hidden_states(model, inputs, training=None):
    """A `TaskModel`'s outputs plus its encoder's `hidden_states` (one forward pass).

    Returns:
        The task outputs dict with `hidden_states`: `num_layers + 1` tensors
        `[batch, seq, hidden]`, the embedding output first.
    """
    encoded = model.encoder(inputs, training=training)
    outputs = type(model).call(_EncodedTaskModel(model, encoded), inputs, training=training)
    return dict(outputs, hidden_states=encoded["hidden_states"])


def uniform_layer_pairs(teacher, student):
    """`(student, teacher)` hidden-state pairs of the evenly spread map (`default_layer_map`)."""
    from distil_tf.models.student_init import default_layer_map

    return mapped_layer_pairs(default_layer_map(teacher.encoder.num_layers, student.encoder.num_layers))


def _checked_layer_pairs(pairs, teacher, student):
    """`pairs` as int tuples, each index inside its model's `hidden_states`."""
    checked = [tuple(int(index) for index in pair) for pair in pairs]
    if not checked:
        raise ValueError("hidden_layer_pairs is empty: give at least one (student, teacher) pair")
    for student_index, teacher_index in checked:
        for role, index, model in (("student", student_index, student), ("teacher", teacher_index, teacher)):
            states = model.encoder.num_layers + 1
            if not -states <= index < states:
                raise ValueError(
                    f"hidden-state index {index} is out of range for the {role}'s {states} hidden states "
                    f"(the embedding output and {states - 1} layers)"
                )
    return checked


# Label keys of transfer-set batches (`distil_tf.distillation.transfer_set`).
CACHED_TEACHER_OUTPUTS = "teacher_outputs"
LABEL_WEIGHT = "label_weight"


def label_weights(labels):
    """The batch's label weights, float32 `[batch]` (1 labelled, 0 teacher-only), or None: all labelled."""
    if not isinstance(labels, dict) or LABEL_WEIGHT not in labels:
        return None
    return ops.cast(labels[LABEL_WEIGHT], "float32")


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
            (unused for regression and `soft_loss="mse"`).
        soft_loss: str. "kl" (KL x T^2, the paper) or "mse" (squared error
            between raw logits summed over classes/positions, mean over
            examples; Tang et al., 2019).
        alpha_hidden: float >= 0. Weight of the hidden-state term (0: off,
            and no hidden states are kept).
        hidden_loss: str. "mse" (squared error averaged over the hidden
            size) or "cosine" (1 - cosine), per real token.
        hidden_layer_pairs: `(student, teacher)` indices into the encoders'
            `hidden_states` (`mapped_layer_pairs(layer_map)`); None: the
            evenly spread map over depth (`uniform_layer_pairs`).

    Examples:
    >>> distiller = TaskDistiller(teacher, student)
    >>> distiller.compile(optimizer=keras.optimizers.AdamW(5e-5))
    >>> distiller.fit(dataset)   # then save distiller.student
    """

    def __init__(
        self,
        teacher,
        student,
        alpha_ce=0.5,
        alpha_task=0.5,
        temperature=2.0,
        soft_loss="kl",
        alpha_hidden=0.0,
        hidden_loss="mse",
        hidden_layer_pairs=None,
        **kwargs,
    ):
        for name, value in (("alpha_ce", alpha_ce), ("alpha_task", alpha_task), ("alpha_hidden", alpha_hidden)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if alpha_ce == 0 and alpha_task == 0 and alpha_hidden == 0:
            raise ValueError("alpha_ce and alpha_task are both 0: set at least one loss weight")
        if soft_loss not in SOFT_LOSSES:
            raise ValueError(f"unknown soft_loss '{soft_loss}'; expected one of {', '.join(SOFT_LOSSES)}")
        if hidden_loss not in HIDDEN_STATE_LOSSES:
            raise ValueError(
                f"unknown hidden_loss '{hidden_loss}'; expected one of {', '.join(HIDDEN_STATE_LOSSES)}"
            )
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
        elif soft_loss == "mse":
            distillation_losses = [LogitsMSEDistillation(output_key=key) for key in task_losses.output_keys(head_type)]
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
        self.soft_loss = soft_loss
        self.alpha_hidden = alpha_hidden
        self.hidden_loss = hidden_loss
        self.hidden_layer_pairs = None
        # Kept apart from `distillation_losses` (the soft terms, weighted by alpha_ce).
        self.hidden_state_loss = None
        if alpha_hidden > 0:
            if hidden_layer_pairs is None:
                hidden_layer_pairs = uniform_layer_pairs(teacher, student)
            self.hidden_layer_pairs = _checked_layer_pairs(hidden_layer_pairs, teacher, student)
            self.hidden_state_loss = HiddenStateDistillation(
                self.hidden_layer_pairs, hidden_loss=hidden_loss, weight_name="distillation.alpha_hidden"
            )
            self.hidden_state_loss.check_hidden_sizes(teacher.encoder, student.encoder)
            self.hidden_tracker = keras.metrics.Mean(name="hidden_loss")
        self.tokens_tracker = keras.metrics.Sum(name="tokens")

    @property
    def needs_teacher_forward(self):
        """True when the loss needs more of the teacher than its task logits.

        The hidden-state term reads the teacher's hidden states, which a cache
        of its logits does not hold: the teacher must then run every step.
        """
        return self.alpha_hidden > 0

    def call(self, inputs, training=None, **kwargs):
        if self.alpha_hidden > 0:
            return task_outputs_with_hidden_states(self.student, inputs, training=training)
        return super().call(inputs, training=training, **kwargs)

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
        hidden = [self.hidden_tracker] if self.alpha_hidden > 0 else []
        return inherited + hidden + [self.tokens_tracker]

    def loss_normalizers(self, x, y=None):
        """This replica's example and real-token counts (train-step hook)."""
        normalizers = super().loss_normalizers(x, y)
        normalizers["tokens"] = ops.sum(ops.cast(x["padding_mask"], "float32"))
        # The supervised term's count: labelled rows only (transfer sets).
        weights = label_weights(y)
        normalizers["labelled"] = normalizers["examples"] if weights is None else ops.sum(weights)
        return normalizers

    def loss_terms(self, inputs, labels, student_outputs, normalizers=None):
        """`{"distillation": ..., "task": ..., "hidden": ...}`, unweighted float32 scalars.

        With `normalizers` (`{"examples", "tokens"}`, the example and
        real-token counts of a whole update across replicas, from the train
        step) each term is this batch's share of the mean over the update
        (the soft and supervised terms per example, the hidden-state term
        per real token), computed without a collective; without, the mean
        over this batch (all-reduced).
        """
        if self.alpha_hidden > 0:
            teacher_outputs = task_outputs_with_hidden_states(self.teacher, inputs, training=False)
        elif isinstance(labels, dict) and CACHED_TEACHER_OUTPUTS in labels:
            # Scored once before training (`transfer_set.TeacherOutputCache`): no teacher pass here.
            teacher_outputs = labels[CACHED_TEACHER_OUTPUTS]
        else:
            teacher_outputs = self.teacher(inputs, training=False)
        teacher_outputs = keras.tree.map_structure(ops.stop_gradient, teacher_outputs)
        denominator = None if normalizers is None else normalizers["examples"]
        zero = ops.zeros((), "float32")
        distillation = zero
        if self.alpha_ce > 0:
            # Span MSE: padding positions' logits must not count (ignored by the KL).
            extra = {"logit_mask": inputs["padding_mask"]} if self.head_type == task_losses.SPAN else {}
            for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
                value = loss.compute_loss(teacher_outputs, student_outputs, denominator=denominator, **extra)
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
        hidden = zero
        if self.alpha_hidden > 0:
            hidden = self.hidden_state_loss.compute_loss(
                teacher_outputs, student_outputs, weights=inputs["padding_mask"],
                denominator=None if normalizers is None else normalizers["tokens"],
            )
        return {"distillation": distillation, "task": task, "hidden": hidden}

    def _total(self, terms):
        return (
            self.alpha_ce * terms["distillation"]
            + self.alpha_task * terms["task"]
            + self.alpha_hidden * terms["hidden"]
        )

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
        if self.alpha_hidden > 0:
            self.hidden_tracker.update_state(terms["hidden"] * replicas)
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
            "soft_loss": self.soft_loss,
            "alpha_hidden": self.alpha_hidden,
            "hidden_loss": self.hidden_loss,
            "hidden_layer_pairs": None if self.hidden_layer_pairs is None else [
                list(pair) for pair in self.hidden_layer_pairs
            ],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)
