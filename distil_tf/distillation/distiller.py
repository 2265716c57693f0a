"""The masked-LM Distiller: the paper's triple loss on keras.distillation.Distiller."""

import keras
import tensorflow as tf
from keras import ops

from distil_tf.distillation import losses
from distil_tf.distillation.attention_terms import AttentionTerms
from distil_tf.models import pooling as pooling_lib
from distil_tf.models.distributed_build import DistributedBuildMixin
from distil_tf.distillation.distillation_losses import (
    HiddenStateCosineDistillation,
    HiddenStateDistillation,
    LogitsMSEDistillation,
    WeightedLogitsDistillation,
)


# How `MaskedLMDistiller` maps student hidden states to the teacher's width.
HIDDEN_PROJECTION_MODES = ("auto", "always", "never")


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


@keras.saving.register_keras_serializable(package="distil_tf")
class MaskedLMDistiller(DistributedBuildMixin, keras.distillation.Distiller):
    """Distil a frozen teacher into a student on masked-LM batches.

    `L = alpha_ce * L_ce + alpha_mlm * L_mlm + alpha_cos * L_cos + alpha_mse * L_mse`
    (Sanh et al., 2019, section 3; defaults are the released model's 5/2/1,
    T = 2). `keras.distillation.Distiller` combines a supervised loss and
    distillation losses convexly (`student_loss_weight` in [0, 1]) and passes
    the losses no input mask; this subclass keeps its structure (frozen
    teacher, `student` attribute, distillation-loss objects, trackers) and
    overrides `compute_loss` to weight each term by its own alpha and hand
    each loss its per-token weights.

    Batches are dicts with `token_ids` (masked), `padding_mask` and
    `mlm_labels` (original ids at MLM-selected positions, -100 elsewhere),
    all `[batch, seq]`.

    Teachers without an MLM head (sentence-transformers models such as
    all-MiniLM-L6-v2) teach through their hidden states alone: L_cos, a
    per-layer hidden-state MSE under the layer map (`alpha_hidden_mse`,
    TinyBERT's eq. 8; with its W_h when `hidden_projection` maps a narrower
    student to the teacher's width) and, for embedding students, the cosine
    and/or MSE of the sentence embeddings pooled the teacher's way
    (`alpha_pooled_cos`, `alpha_pooled_mse`; mean over real tokens for
    sentence-transformers checkpoints). Token terms are means over the real
    tokens of the update, sentence terms over its sentences, so multi-replica
    and accumulated updates stay exact (`loss_normalizers`).

    Attention terms (`distil_tf.distillation.attention_terms`), each off at
    weight 0: TinyBERT's MSE of the unnormalized attention scores over layer
    pairs (Jiao et al., 2020, eq. 7), and MiniLM's KL of the last layer's
    attention distributions and of its value relations (Wang et al., 2020).
    They compare head by head: each needs equal head counts (head sizes may
    differ), and reads no projection.

    Args:
        teacher: `Encoder` (frozen here); an MLM head only for ce and mse.
        student: `Encoder`; an MLM head for ce, mlm and mse.
        alpha_ce, alpha_mlm, alpha_cos, alpha_mse: float loss weights; 0
            switches a term off (the paper's Table 4 ablations).
        temperature: float. Softmax temperature of L_ce.
        restrict_ce_to_mask: bool. L_ce on MLM-selected positions only
            (the original's `--restrict_ce_to_mask`); default: every
            non-pad position, [CLS]/[SEP] included.
        cosine_layer_pairs: `(student, teacher)` indices into
            `hidden_states` for L_cos; default the last layers only.
        alpha_hidden_mse: float. Weight of the hidden-state MSE.
        hidden_mse_layer_pairs: `(student, teacher)` pairs for it, e.g.
            `mapped_layer_pairs(layer_map)`; default the last layers only.
        alpha_pooled_cos, alpha_pooled_mse: float. Weights of the pooled
            sentence-embedding cosine and MSE.
        alpha_pooled_relation: float. Weight of the in-batch similarity
            relation of the pooled embeddings
            (`losses.pooled_similarity_relation`); the one pooled term that
            works across hidden sizes without a projection.
        pooling: str or None. "mean" or "cls", how the pooled terms pool
            both models' last layers; default the teacher's recorded pooling.
        hidden_projection: str. "never" (the default: the hidden-state terms
            need equal hidden sizes), "auto" (a learned projection only when
            the widths differ) or "always". The projection is TinyBERT's W_h
            (Jiao et al., 2020, eq. 8): one `keras.layers.Dense` without
            activation, `[batch, seq, student hidden] -> [batch, seq, teacher
            hidden]`, shared by every layer pair, applied to the student's
            states before L_cos, the hidden-state MSE and the pooled cosine
            and MSE (never before the relation term, which compares
            similarities and needs no common width). It trains with the
            student and is part of this distiller's weights (its checkpoint),
            not of the student: `self.student` stays a plain `Encoder`.
        alpha_attention_mse: float. Weight of TinyBERT's attention-score MSE.
        attention_mse_layer_pairs: `(student, teacher)` indices into
            `hidden_states` for it, index i >= 1 being the layer whose output
            is `hidden_states[i]`; default None: `hidden_mse_layer_pairs`.
        alpha_attention_kl: float. Weight of MiniLM's last-layer
            self-attention KL(teacher || student).
        alpha_value_relation: float. Weight of MiniLM's last-layer
            value-relation KL.

    Attributes:
        projection: the `Dense` layer, or None when no projection is used.
    """

    def __init__(
        self,
        teacher,
        student,
        alpha_ce=5.0,
        alpha_mlm=2.0,
        alpha_cos=1.0,
        alpha_mse=0.0,
        temperature=2.0,
        restrict_ce_to_mask=False,
        cosine_layer_pairs=((-1, -1),),
        alpha_hidden_mse=0.0,
        hidden_mse_layer_pairs=((-1, -1),),
        alpha_pooled_cos=0.0,
        alpha_pooled_mse=0.0,
        pooling=None,
        alpha_pooled_relation=0.0,
        hidden_projection="never",
        alpha_attention_mse=0.0,
        attention_mse_layer_pairs=None,
        alpha_attention_kl=0.0,
        alpha_value_relation=0.0,
        **kwargs,
    ):
        alphas = {"alpha_ce": alpha_ce, "alpha_mlm": alpha_mlm, "alpha_cos": alpha_cos, "alpha_mse": alpha_mse,
                  "alpha_hidden_mse": alpha_hidden_mse, "alpha_pooled_cos": alpha_pooled_cos,
                  "alpha_pooled_mse": alpha_pooled_mse, "alpha_pooled_relation": alpha_pooled_relation,
                  "alpha_attention_mse": alpha_attention_mse, "alpha_attention_kl": alpha_attention_kl,
                  "alpha_value_relation": alpha_value_relation}
        for name, value in alphas.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not any(alphas.values()):
            raise ValueError(f"all loss weights are 0: set at least one of {', '.join(alphas)}")
        if teacher.vocabulary_size != student.vocabulary_size:
            raise ValueError(
                f"teacher and student vocabularies differ ({teacher.vocabulary_size} vs "
                f"{student.vocabulary_size}): soft targets need the same vocabulary"
            )
        needs_teacher_head = alpha_ce > 0 or alpha_mse > 0
        if needs_teacher_head and teacher.mlm_head is None:
            raise ValueError(
                "the teacher has no MLM head (e.g. all-MiniLM-L6-v2, a keras-hub preset): "
                "use a BertForMaskedLM teacher, fit a head with `distil-tf fit-mlm-head`, "
                "or set alpha_ce=0 and alpha_mse=0"
            )
        if (needs_teacher_head or alpha_mlm > 0) and student.mlm_head is None:
            raise ValueError("the student has no MLM head; initialize it from a teacher with one")
        cosine = HiddenStateCosineDistillation(cosine_layer_pairs)
        if hidden_projection not in HIDDEN_PROJECTION_MODES:
            raise ValueError(
                f"hidden_projection must be one of {', '.join(HIDDEN_PROJECTION_MODES)}, got {hidden_projection!r}"
            )
        hidden_terms = {"alpha_cos": alpha_cos, "alpha_hidden_mse": alpha_hidden_mse,
                        "alpha_pooled_cos": alpha_pooled_cos, "alpha_pooled_mse": alpha_pooled_mse}
        hidden_terms_on = [name for name, value in hidden_terms.items() if value > 0]
        widths_differ = teacher.hidden_dim != student.hidden_dim
        # Only with a term to train it: a projection no loss reads would get no
        # gradient (and would only add unused weights to the checkpoint).
        use_projection = bool(hidden_terms_on) and (
            hidden_projection == "always" or (hidden_projection == "auto" and widths_differ)
        )
        if widths_differ and not use_projection:
            for name in hidden_terms_on:
                raise ValueError(
                    f"{name} compares hidden states, but the teacher's hidden size ({teacher.hidden_dim}) "
                    f"differs from the student's ({student.hidden_dim}): add a projection or set {name}=0 "
                    "(hidden_projection='auto' learns one, TinyBERT's W_h)"
                )
        pooled_terms_on = alpha_pooled_cos > 0 or alpha_pooled_mse > 0 or alpha_pooled_relation > 0
        if pooling is None and pooled_terms_on:
            pooling = teacher.pooling
            if pooling not in (pooling_lib.MEAN, pooling_lib.CLS):
                raise ValueError(
                    f"the pooled-embedding terms pool both models the teacher's way, but the teacher "
                    f"records pooling {pooling!r} (not 'mean' or 'cls'): pass pooling='mean' or "
                    "set alpha_pooled_cos, alpha_pooled_mse and alpha_pooled_relation to 0"
                )
        elif pooling is not None and pooling not in (pooling_lib.MEAN, pooling_lib.CLS):
            raise ValueError(f"pooling for the pooled-embedding terms must be 'mean' or 'cls', got {pooling!r}")
        hidden_mse_layer_pairs = [tuple(pair) for pair in hidden_mse_layer_pairs]
        if not hidden_mse_layer_pairs:
            raise ValueError("hidden_mse_layer_pairs needs at least one (student, teacher) layer pair")
        if attention_mse_layer_pairs is None:
            attention_mse_layer_pairs = hidden_mse_layer_pairs
        attention_mse_layer_pairs = [tuple(pair) for pair in attention_mse_layer_pairs]
        if not attention_mse_layer_pairs:
            raise ValueError("attention_mse_layer_pairs needs at least one (student, teacher) layer pair")
        # Checks head counts and layer indices of the terms that are on.
        attention_terms = AttentionTerms(
            teacher, student,
            attention_mse_layer_pairs=attention_mse_layer_pairs if alpha_attention_mse > 0 else None,
            attention_kl=alpha_attention_kl > 0,
            value_relation=alpha_value_relation > 0,
        )
        super().__init__(
            teacher=teacher,
            student=student,
            distillation_losses=[
                WeightedLogitsDistillation(temperature, output_key="mlm_logits"),
                cosine,
                LogitsMSEDistillation(output_key="mlm_logits"),
            ],
            distillation_loss_weights=[alpha_ce, alpha_cos, alpha_mse],
            # Unused: `compute_loss` weights every term by its own alpha.
            student_loss_weight=0.5,
            **kwargs,
        )
        self.alpha_ce, self.alpha_mlm = alpha_ce, alpha_mlm
        self.alpha_cos, self.alpha_mse = alpha_cos, alpha_mse
        self.temperature = temperature
        self.restrict_ce_to_mask = restrict_ce_to_mask
        self.cosine_layer_pairs = [tuple(pair) for pair in cosine_layer_pairs]
        self.alpha_hidden_mse = alpha_hidden_mse
        self.hidden_mse_layer_pairs = hidden_mse_layer_pairs
        # The task distiller's hidden-state term, per layer pair: the mean of
        # `losses.hidden_state_mse` over the pairs.
        self.hidden_mse_loss = HiddenStateDistillation(
            hidden_mse_layer_pairs, hidden_loss="mse", weight_name="alpha_hidden_mse"
        )
        self.alpha_pooled_cos, self.alpha_pooled_mse = alpha_pooled_cos, alpha_pooled_mse
        self.alpha_pooled_relation = alpha_pooled_relation
        self.pooling = pooling
        self.hidden_projection = hidden_projection
        self.alpha_attention_mse = alpha_attention_mse
        self.attention_mse_layer_pairs = attention_mse_layer_pairs
        self.alpha_attention_kl, self.alpha_value_relation = alpha_attention_kl, alpha_value_relation
        self.attention_terms = attention_terms
        self.projection = None
        if use_projection:
            # Equal widths ("always"): the identity to start with, so a student
            # copied from the teacher starts from the unprojected losses (the
            # projection is harmless and only adds freedom). Different widths:
            # Keras's default Glorot-uniform kernel, as TinyBERT's nn.Linear
            # starts random; the bias (TinyBERT's fit_dense has one) starts at 0.
            self.projection = keras.layers.Dense(
                teacher.hidden_dim,
                kernel_initializer="identity" if not widths_differ else "glorot_uniform",
                name="hidden_projection",
            )
            # Built here, under the caller's strategy scope, so its variables
            # exist before the optimizer and a checkpoint restore look for them.
            self.projection.build((None, None, student.hidden_dim))
        # The paper's four terms always (a run's logs keep their keys); the
        # hidden-state terms only when on.
        self.term_weights = {"ce": alpha_ce, "mlm": alpha_mlm, "cos": alpha_cos, "mse": alpha_mse}
        for name, value in (("hidden_mse", alpha_hidden_mse), ("pooled_cos", alpha_pooled_cos),
                            ("pooled_mse", alpha_pooled_mse), ("pooled_relation", alpha_pooled_relation),
                            ("attention_mse", alpha_attention_mse), ("attention_kl", alpha_attention_kl),
                            ("value_relation", alpha_value_relation)):
            if value > 0:
                self.term_weights[name] = value
        self.term_trackers = {name: keras.metrics.Mean(name=f"loss_{name}") for name in self.term_weights}
        self.tokens_tracker = keras.metrics.Sum(name="tokens")

    def compile(self, optimizer="adam", **kwargs):
        kwargs.pop("loss", None)
        super().compile(optimizer=optimizer, loss=losses.masked_lm_cross_entropy, **kwargs)

    @property
    def metrics(self):
        # The base class's student/distillation/total trackers describe its
        # convex combination, not this loss: "loss" already is the total.
        inherited = [
            metric for metric in super().metrics
            if metric.name not in ("student_loss", "distillation_loss", "total_loss")
        ]
        return inherited + list(self.term_trackers.values()) + [self.tokens_tracker]

    def _term_weights(self, inputs):
        """Per-token weights `[batch, seq]` of each term, and their normalizer names."""
        padding = ops.cast(inputs["padding_mask"], "float32")
        selected = ops.cast(ops.not_equal(inputs["mlm_labels"], losses.IGNORE_LABEL), "float32")
        if self.restrict_ce_to_mask:
            ce = (selected, "selected")
        else:
            ce = (padding, "padding")
        sentences = (losses.sequence_weights(inputs["padding_mask"]), "sequences")
        return {"ce": ce, "mlm": (selected, "selected"), "cos": (padding, "padding"), "mse": ce,
                "hidden_mse": (padding, "padding"), "pooled_cos": sentences, "pooled_mse": sentences,
                "pooled_relation": sentences,
                # Per real query token, like the hidden-state MSE.
                "attention_mse": (padding, "padding"), "attention_kl": (padding, "padding"),
                "value_relation": (padding, "padding")}

    def loss_normalizers(self, x, y=None):
        """This replica's real-token, MLM-selected-token and sentence counts (train-step hook)."""
        weights = self._term_weights(x)
        return {"padding": ops.sum(weights["cos"][0]), "selected": ops.sum(weights["mlm"][0]),
                "sequences": ops.sum(weights["pooled_cos"][0])}

    def loss_terms(self, inputs, student_outputs, training=False, normalizers=None):
        """Each loss term (unweighted), float32 scalars, as a dict.

        Args:
            inputs: the batch dict, `[batch, seq]` tensors.
            student_outputs: the student's output dict.
            training: unused (the student's mode is the caller's).
            normalizers: optional `{"padding", "selected", "sequences"}`
                global token and sentence counts of a whole update (`loss_normalizers` summed over
                replicas); default: each term is the mean over this batch,
                all-reduced across replicas.
        """
        teacher_outputs = None
        if any(value > 0 for name, value in self.term_weights.items() if name != "mlm"):
            # An MLM-only run (the paper's baseline) skips the teacher's forward pass.
            teacher_outputs = self.teacher(inputs, training=False)
            teacher_outputs = keras.tree.map_structure(ops.stop_gradient, teacher_outputs)
        weights = self._term_weights(inputs)
        projected_outputs = self._projected(student_outputs)

        def weight_and_denominator(name):
            values, normalizer = weights[name]
            return {"weights": values, "denominator": None if normalizers is None else normalizers[normalizer]}

        logits_loss, cosine_loss, mse_loss = self.distillation_losses
        zero = ops.zeros((), "float32")
        mlm = weight_and_denominator("mlm")
        terms = {
            "ce": logits_loss.compute_loss(teacher_outputs, student_outputs, **weight_and_denominator("ce"))
            if self.alpha_ce > 0 else zero,
            "mlm": losses.masked_lm_cross_entropy(
                inputs["mlm_labels"], student_outputs["mlm_logits"], mlm["weights"], mlm["denominator"]
            ) if self.alpha_mlm > 0 else zero,
            "cos": cosine_loss.compute_loss(teacher_outputs, projected_outputs, **weight_and_denominator("cos"))
            if self.alpha_cos > 0 else zero,
            "mse": mse_loss.compute_loss(teacher_outputs, student_outputs, **weight_and_denominator("mse"))
            if self.alpha_mse > 0 else zero,
        }
        if "hidden_mse" in self.term_weights:
            terms["hidden_mse"] = self.hidden_mse_loss.compute_loss(
                teacher_outputs, projected_outputs, **weight_and_denominator("hidden_mse")
            )
        if any(name in self.term_weights for name in ("pooled_cos", "pooled_mse", "pooled_relation")):
            # Both models pooled the same (the teacher's) way, before any L2
            # normalization; `pool` sums in float32.
            padding_mask = inputs["padding_mask"]
            teacher_pooled = pooling_lib.pool(teacher_outputs["sequence_output"], padding_mask, self.pooling)
            student_pooled = pooling_lib.pool(student_outputs["sequence_output"], padding_mask, self.pooling)
            # Mean and [CLS] pooling commute with the affine projection, so
            # pooling the projected states is projecting the pooled embedding.
            projected_pooled = student_pooled
            if projected_outputs is not student_outputs:
                projected_pooled = pooling_lib.pool(projected_outputs["sequence_output"], padding_mask, self.pooling)
            for name, loss_function, student_embedding in (
                ("pooled_cos", losses.pooled_embedding_cosine, projected_pooled),
                ("pooled_mse", losses.pooled_embedding_mse, projected_pooled),
                # The relation compares in-batch similarities, which need no
                # common width: the student's own embeddings, as without a projection.
                ("pooled_relation", losses.pooled_similarity_relation, student_pooled),
            ):
                if name in self.term_weights:
                    terms[name] = loss_function(teacher_pooled, student_embedding, **weight_and_denominator(name))
        if any(name in self.term_weights for name in ("attention_mse", "attention_kl", "value_relation")):
            # The unprojected student: the terms compare [seq, seq] maps per head.
            terms.update(self.attention_terms.compute(
                teacher_outputs, student_outputs, inputs["padding_mask"], **weight_and_denominator("attention_kl")
            ))
        return terms

    def _projected(self, student_outputs):
        """The student's outputs with the hidden states the hidden-state terms read projected.

        `hidden_states[i]` (for the layer pairs of L_cos and the hidden-state
        MSE) and `sequence_output` (for the pooled terms), `[batch, seq,
        student hidden] -> [batch, seq, teacher hidden]`; the other entries
        (MLM logits) unchanged. Without a projection: `student_outputs` itself.
        """
        if self.projection is None:
            return student_outputs
        hidden_states = list(student_outputs["hidden_states"])
        count = len(hidden_states)
        used = set()
        if self.alpha_cos > 0:
            used.update(student_index % count for student_index, _ in self.cosine_layer_pairs)
        if self.alpha_hidden_mse > 0:
            used.update(student_index % count for student_index, _ in self.hidden_mse_layer_pairs)
        # Only the layers a term reads: the others would cost a matmul each for nothing.
        for index in used:
            hidden_states[index] = self.projection(hidden_states[index])
        projected = dict(student_outputs, hidden_states=hidden_states)
        if self.alpha_pooled_cos > 0 or self.alpha_pooled_mse > 0:
            projected["sequence_output"] = self.projection(student_outputs["sequence_output"])
        return projected

    def _total(self, terms):
        return sum(self.term_weights[name] * value for name, value in terms.items())

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        terms = self.loss_terms(x, y_pred, training=training)
        # Each term is already this replica's share of the global mean (the
        # losses normalize by the global token count), so replica losses and
        # gradients *sum* to the single-device values: no 1/N scaling here.
        # Keras logs `loss` times N averaged over replicas, i.e. the global
        # value; the term trackers get the same treatment.
        replicas = num_replicas()
        for name, value in terms.items():
            self.term_trackers[name].update_state(value * replicas)
        self.tokens_tracker.update_state(ops.sum(ops.cast(x["padding_mask"], "float32")))
        return self._total(terms)

    def micro_batch_loss(self, x, y, y_pred, sample_weight, normalizers):
        """Train-step hook: this micro-batch's share of the update's loss, and its terms."""
        terms = self.loss_terms(x, y_pred, training=True, normalizers=normalizers)
        return self._total(terms), terms

    def record_update(self, x, loss, terms):
        """Train-step hook: the update's terms (this replica's sums) into the trackers."""
        super().record_update(x, loss, terms)
        replicas = num_replicas()
        for name, value in terms.items():
            self.term_trackers[name].update_state(value * replicas)
        self.tokens_tracker.update_state(ops.sum(ops.cast(x["padding_mask"], "float32")))

    def get_config(self):
        return {
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "alpha_ce": self.alpha_ce,
            "alpha_mlm": self.alpha_mlm,
            "alpha_cos": self.alpha_cos,
            "alpha_mse": self.alpha_mse,
            "temperature": self.temperature,
            "restrict_ce_to_mask": self.restrict_ce_to_mask,
            "cosine_layer_pairs": [list(pair) for pair in self.cosine_layer_pairs],
            "alpha_hidden_mse": self.alpha_hidden_mse,
            "hidden_mse_layer_pairs": [list(pair) for pair in self.hidden_mse_layer_pairs],
            "alpha_pooled_cos": self.alpha_pooled_cos,
            "alpha_pooled_mse": self.alpha_pooled_mse,
            "alpha_pooled_relation": self.alpha_pooled_relation,
            "pooling": self.pooling,
            "hidden_projection": self.hidden_projection,
            "alpha_attention_mse": self.alpha_attention_mse,
            "attention_mse_layer_pairs": [list(pair) for pair in self.attention_mse_layer_pairs],
            "alpha_attention_kl": self.alpha_attention_kl,
            "alpha_value_relation": self.alpha_value_relation,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)
