"""keras.distillation loss classes extended with per-position weights.

`keras.distillation.LogitsDistillation` and `FeatureDistillation` (Keras
3.15) compute `mean(loss_fn(teacher, student))` over everything they are
given. A masked LM needs two things they cannot express: a per-token weight
(padding must never count; `restrict_ce_to_mask` selects only MLM positions)
and a mean over the selected rows rather than over all of them. These
subclasses keep the Keras interface (`compute_loss(teacher_outputs,
student_outputs)`, config round trips, temperature validation) and take the
weights as a keyword argument, which `Distiller.compute_loss` passes, and
optionally `denominator`, the global weight sum of a whole accumulated update
(`distil_tf.replica_sums.weighted_mean`).
"""

import keras

from distil_tf.distillation import losses


class WeightedLogitsDistillation(keras.distillation.LogitsDistillation):
    """Soft-target KL (x T^2) on the teacher's and student's `output_key` logits.

    Args:
        temperature: float > 0.
        output_key: which output of the models' dicts holds the logits
            ("mlm_logits" for the masked LM, "logits" for a task head).
    """

    def __init__(self, temperature=2.0, output_key="mlm_logits"):
        super().__init__(temperature=temperature, loss="kl_divergence")
        self.output_key = output_key

    def compute_loss(self, teacher_outputs, student_outputs, weights=None, denominator=None, **kwargs):
        teacher_logits = teacher_outputs[self.output_key]
        student_logits = student_outputs[self.output_key]
        if weights is None:
            weights = keras.ops.ones(keras.ops.shape(student_logits)[:-1])
        return losses.soft_target_kl(teacher_logits, student_logits, self.temperature, weights, denominator)

    def get_config(self):
        return {"temperature": self.temperature, "output_key": self.output_key}


def mapped_layer_pairs(layer_map):
    """`(student, teacher)` indices into `hidden_states` for a student copied from `layer_map`.

    Student layer i (output `hidden_states[i + 1]`; index 0 is the embedding
    output) against teacher layer `layer_map[i]`, the one it was copied from.
    """
    return [(index + 1, int(teacher_index) + 1) for index, teacher_index in enumerate(layer_map)]


HIDDEN_STATE_LOSSES = {"cosine": losses.hidden_state_cosine, "mse": losses.hidden_state_mse}


class HiddenStateDistillation(keras.distillation.FeatureDistillation):
    """Mean (1 - cosine) or squared error between mapped student and teacher hidden states.

    Both models' outputs must hold `hidden_states` (every `Encoder` returns
    them; `task_distiller.task_outputs_with_hidden_states` adds them to a task
    model's). The loss is averaged over the layer pairs.

    Args:
        layer_pairs: list of `(student_index, teacher_index)` into the
            models' `hidden_states` lists, e.g. `[(-1, -1)]` (the last
            layers, the paper's L_cos) or `mapped_layer_pairs(layer_map)`.
        hidden_loss: str. "cosine" or "mse".
        weight_name: str. The loss weight named in errors ("alpha_cos").
    """

    def __init__(self, layer_pairs=((-1, -1),), hidden_loss="cosine", weight_name="alpha_cos"):
        if hidden_loss not in HIDDEN_STATE_LOSSES:
            raise ValueError(
                f"unknown hidden-state loss '{hidden_loss}'; expected one of {', '.join(HIDDEN_STATE_LOSSES)}"
            )
        super().__init__(loss="cosine_similarity" if hidden_loss == "cosine" else "mse")
        self.layer_pairs = [tuple(pair) for pair in layer_pairs]
        if not self.layer_pairs:
            raise ValueError("the hidden-state loss needs at least one (student, teacher) layer pair")
        self.hidden_loss = hidden_loss
        self.weight_name = weight_name

    def validate_model_compatibility(self, teacher, student):
        # Keras's Distiller validates every loss it holds, weighted 0 or not;
        # the hidden sizes only matter when the term is on (`check_hidden_sizes`).
        return None

    def check_hidden_sizes(self, teacher, student):
        """Raise unless the two encoders' hidden sizes match (no projection here)."""
        if getattr(teacher, "hidden_dim", None) != getattr(student, "hidden_dim", None):
            noun = "cosine loss" if self.hidden_loss == "cosine" else "hidden-state loss"
            raise ValueError(
                f"the {noun} compares hidden states, but the teacher's hidden size "
                f"({getattr(teacher, 'hidden_dim', '?')}) differs from the student's "
                f"({getattr(student, 'hidden_dim', '?')}): add a projection or set {self.weight_name}=0"
            )

    def validate_outputs(self, teacher_outputs, student_outputs):
        return None

    def compute_loss(self, teacher_outputs, student_outputs, weights=None, denominator=None, **kwargs):
        loss_function = HIDDEN_STATE_LOSSES[self.hidden_loss]
        total = 0.0
        for student_index, teacher_index in self.layer_pairs:
            total += loss_function(
                teacher_outputs["hidden_states"][teacher_index],
                student_outputs["hidden_states"][student_index],
                weights,
                denominator,
            )
        return total / len(self.layer_pairs)

    def get_config(self):
        return {
            "layer_pairs": [list(pair) for pair in self.layer_pairs],
            "hidden_loss": self.hidden_loss,
            "weight_name": self.weight_name,
        }


class HiddenStateCosineDistillation(HiddenStateDistillation):
    """Mean (1 - cosine) between student and teacher hidden states (the paper's L_cos).

    Args:
        layer_pairs: list of `(student_index, teacher_index)` into the
            models' `hidden_states` lists. The paper uses only the last
            layers: `[(-1, -1)]`.
    """

    def __init__(self, layer_pairs=((-1, -1),)):
        super().__init__(layer_pairs, hidden_loss="cosine", weight_name="alpha_cos")

    def get_config(self):
        return {"layer_pairs": [list(pair) for pair in self.layer_pairs]}


class LogitsMSEDistillation(keras.distillation.LogitsDistillation):
    """Squared error between raw logits, no temperature.

    The original's optional alpha_mse term (`MSELoss(sum) / n_rows`), and
    task distillation's `soft_loss="mse"` (Tang et al., 2019, arXiv
    1903.12136: `||z_teacher - z_student||^2` on the pre-softmax logits).
    """

    def __init__(self, output_key="mlm_logits"):
        super().__init__(temperature=1.0, loss="mean_squared_error")
        self.output_key = output_key

    def compute_loss(
        self, teacher_outputs, student_outputs, weights=None, denominator=None, logit_mask=None, **kwargs
    ):
        """Squared error summed over the logit axis, weighted mean over rows.

        Args:
            weights: `[...]` per row (default: every row counts).
            denominator: optional global weight sum.
            logit_mask: optional `[..., logits]`, 0 where a logit must not
                count (span heads: padding positions, whose -1e4 offsets
                would otherwise dominate).
        """
        teacher_logits = teacher_outputs[self.output_key]
        student_logits = student_outputs[self.output_key]
        if weights is None:
            weights = keras.ops.ones(keras.ops.shape(student_logits)[:-1])
        if logit_mask is not None:
            keep = keras.ops.cast(logit_mask, "bool")
            teacher_logits = keras.ops.where(keep, keras.ops.cast(teacher_logits, "float32"), 0.0)
            student_logits = keras.ops.where(keep, keras.ops.cast(student_logits, "float32"), 0.0)
        return losses.logits_mse(teacher_logits, student_logits, weights, denominator)

    def get_config(self):
        return {"output_key": self.output_key}
