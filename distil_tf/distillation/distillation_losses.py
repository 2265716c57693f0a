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
(`distil_tf.distillation.losses._weighted_mean`).
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


class HiddenStateCosineDistillation(keras.distillation.FeatureDistillation):
    """Mean (1 - cosine) between student and teacher hidden states.

    Args:
        layer_pairs: list of `(student_index, teacher_index)` into the
            models' `hidden_states` lists. The paper uses only the last
            layers: `[(-1, -1)]`.
    """

    def __init__(self, layer_pairs=((-1, -1),)):
        super().__init__(loss="cosine_similarity")
        self.layer_pairs = [tuple(pair) for pair in layer_pairs]

    def validate_model_compatibility(self, teacher, student):
        # Keras's Distiller validates every loss it holds, weighted 0 or not;
        # the hidden sizes only matter when the term is on (`check_hidden_sizes`).
        return None

    def check_hidden_sizes(self, teacher, student):
        if getattr(teacher, "hidden_dim", None) != getattr(student, "hidden_dim", None):
            raise ValueError(
                f"the cosine loss compares hidden states, but the teacher's hidden size "
                f"({getattr(teacher, 'hidden_dim', '?')}) differs from the student's "
                f"({getattr(student, 'hidden_dim', '?')}): add a projection or set alpha_cos=0"
            )

    def validate_outputs(self, teacher_outputs, student_outputs):
        return None

    def compute_loss(self, teacher_outputs, student_outputs, weights=None, denominator=None, **kwargs):
        total = 0.0
        for student_index, teacher_index in self.layer_pairs:
            total += losses.hidden_state_cosine(
                teacher_outputs["hidden_states"][teacher_index],
                student_outputs["hidden_states"][student_index],
                weights,
                denominator,
            )
        return total / len(self.layer_pairs)

    def get_config(self):
        return {"layer_pairs": [list(pair) for pair in self.layer_pairs]}


class LogitsMSEDistillation(keras.distillation.LogitsDistillation):
    """Squared error between logits (the original's optional alpha_mse term)."""

    def __init__(self, output_key="mlm_logits"):
        super().__init__(temperature=1.0, loss="mean_squared_error")
        self.output_key = output_key

    def compute_loss(self, teacher_outputs, student_outputs, weights=None, denominator=None, **kwargs):
        return losses.logits_mse(
            teacher_outputs[self.output_key], student_outputs[self.output_key], weights, denominator
        )

    def get_config(self):
        return {"output_key": self.output_key}
