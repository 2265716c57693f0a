"""Initialize a DistilBERT student from a BERT teacher by taking layers out of it.

Paper section 3: "we initialize the student from the teacher by taking one
layer out of two". The released script (`scripts/extract_distilbert.py`)
copies teacher layers [0, 2, 4, 7, 9, 11] into student layers 0-5, plus the
word and position embeddings, the embedding LayerNorm and the MLM head
(decoder tied to the word embeddings, bias copied).

One departure, on by default (`fold_token_type=True`): DistilBERT has no
token-type embeddings, and the released script simply drops BERT's. Every
single-segment input the teacher saw had token type 0, so its embedding sum
was word + position + type[0]; adding type[0] to every position-embedding row
makes the student's embeddings equal the teacher's for those inputs, and a
student that keeps all teacher layers then reproduces the teacher exactly.
The position table (not the word table) absorbs it because the word table is
tied to the MLM decoder.

A student narrower than the teacher (`hidden_size` below the teacher's, or
another head count or feed-forward width) cannot take teacher layers: their
`[hidden, hidden]` kernels do not fit a smaller width, and slicing them would
be a different model, not a copy. Such a student is randomly initialized (its
provenance says "random"), keeps the teacher's vocabulary, depth rule, pooling
and MLM head choice, and is distilled through a learned projection of its
hidden states to the teacher's width (`distillation.hidden_projection`).

The student keeps the teacher's pooling ("mean" or "cls", and its L2
normalization), so that its task heads and embedding exports pool the way
the teacher was trained to. BERT's tanh pooler is the exception: a DistilBERT
student has no pooler layer, so it records no pooling and its task heads use
DistilBERT's [CLS] head.
"""

import numpy as np

from distil_tf.models import pooling as pooling_lib
from distil_tf.models.encoder import Encoder

# The released DistilBERT's map for a 12-layer teacher and a 6-layer student.
RELEASED_LAYER_MAP = (0, 2, 4, 7, 9, 11)


def default_layer_map(teacher_layers, student_layers):
    """Evenly spread teacher layers, first and last included.

    Student layer i takes teacher layer floor(i * (T - 1) / (S - 1) + 0.5).
    For 12 -> 6 this is exactly the released map [0, 2, 4, 7, 9, 11]; for
    6 -> 3 it is [0, 3, 5]; a 1-layer student takes layer 0.
    """
    if student_layers < 1:
        raise ValueError(f"a student needs at least one layer, got {student_layers}")
    if student_layers > teacher_layers:
        raise ValueError(
            f"a student of {student_layers} layers is deeper than its "
            f"{teacher_layers}-layer teacher"
        )
    if student_layers == 1:
        return [0]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [int(np.floor(i * step + 0.5)) for i in range(student_layers)]


def validate_layer_map(layer_map, teacher_layers):
    layer_map = [int(index) for index in layer_map]
    if not layer_map:
        raise ValueError("the layer map is empty")
    if len(layer_map) > teacher_layers:
        raise ValueError(
            f"a student of {len(layer_map)} layers is deeper than its "
            f"{teacher_layers}-layer teacher"
        )
    for index in layer_map:
        if not 0 <= index < teacher_layers:
            raise ValueError(
                f"layer index {index} is out of range for a {teacher_layers}-layer "
                f"teacher (valid: 0..{teacher_layers - 1})"
            )
    if len(set(layer_map)) != len(layer_map):
        raise ValueError(f"layer map {layer_map} repeats a teacher layer")
    return layer_map


def student_pooling(pooling):
    """The student's pooling for a teacher pooling `pooling` (None for BERT's pooler)."""
    return None if pooling == pooling_lib.CLS_POOLER else pooling


def student_widths(teacher, hidden_size=None, num_heads=None, intermediate_size=None):
    """`(hidden_dim, num_heads, intermediate_dim)` of a student, checked.

    Defaults are the teacher's; a `hidden_size` other than the teacher's
    defaults the feed-forward width to 4 x `hidden_size` (BERT's ratio).

    Raises:
        ValueError: a non-positive size, or a head count not dividing the
            hidden size (one line).
    """
    hidden = teacher.hidden_dim if hidden_size is None else int(hidden_size)
    heads = teacher.num_heads if num_heads is None else int(num_heads)
    if intermediate_size is None:
        intermediate = teacher.intermediate_dim if hidden == teacher.hidden_dim else 4 * hidden
    else:
        intermediate = int(intermediate_size)
    for name, value in (("hidden size", hidden), ("head count", heads), ("intermediate size", intermediate)):
        if value < 1:
            raise ValueError(f"the student's {name} must be >= 1, got {value}")
    if hidden % heads:
        raise ValueError(
            f"the student's hidden size {hidden} is not divisible by its {heads} attention heads: "
            f"choose a head count that divides it (--num-heads)"
        )
    return hidden, heads, intermediate


def copies_teacher_widths(teacher, widths):
    """Whether a student of `widths` (`student_widths`) can take the teacher's layers."""
    return tuple(widths) == (teacher.hidden_dim, teacher.num_heads, teacher.intermediate_dim)


def student_config(teacher, num_layers, dropout=None, pooling=None, widths=None):
    """The DistilBERT config of a student of a teacher: same widths, fewer layers.

    `pooling` overrides the teacher encoder's (a task model's head pooling);
    `widths` (`student_widths`) the hidden size, heads and feed-forward width.
    """
    hidden, heads, intermediate = widths or (teacher.hidden_dim, teacher.num_heads, teacher.intermediate_dim)
    return dict(
        architecture="distilbert",
        vocabulary_size=teacher.vocabulary_size,
        num_layers=num_layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=intermediate,
        dropout=teacher.dropout if dropout is None else dropout,
        max_sequence_length=teacher.max_sequence_length,
        hidden_activation=teacher.hidden_activation,
        mlm_head=teacher.has_mlm_head,
        pooling=student_pooling(pooling or teacher.pooling),
        normalize_embeddings=teacher.normalize_embeddings,
    )


def init_student_from_teacher(
    teacher, layer_map=None, num_layers=None, fold_token_type=True, random_init=False, pooling=None,
    hidden_size=None, num_heads=None, intermediate_size=None,
):
    """A DistilBERT `Encoder` built from a teacher `Encoder`.

    Args:
        teacher: `Encoder` (BERT or DistilBERT).
        layer_map: list of teacher layer indices, one per student layer.
        num_layers: student depth when `layer_map` is None (default: half the
            teacher's, rounded up); the map is then `default_layer_map`.
        fold_token_type: add the teacher's token-type row 0 to the position
            embeddings (see the module docstring).
        random_init: build the student with random weights instead (the
            paper's Table 4 ablation); the map only sets the depth.
        pooling: str or None. The teacher's pooling when it is not the
            encoder's own (a task model's head); None: `teacher.pooling`.
        hidden_size, num_heads, intermediate_size: int or None. The
            student's widths (default the teacher's; `intermediate_size`
            defaults to 4 x `hidden_size` when that differs). Any width other
            than the teacher's means random weights (see the module docstring).

    Returns:
        `(student, layer_map)`.
    """
    widths = student_widths(teacher, hidden_size, num_heads, intermediate_size)
    if layer_map is None:
        if num_layers is None:
            num_layers = (teacher.num_layers + 1) // 2
        layer_map = default_layer_map(teacher.num_layers, num_layers)
    layer_map = validate_layer_map(layer_map, teacher.num_layers)
    student = Encoder(**student_config(teacher, len(layer_map), pooling=pooling, widths=widths))
    student(student.dummy_inputs())
    if random_init or not copies_teacher_widths(teacher, widths):
        return student, layer_map

    student.token_embedding.embeddings.assign(teacher.token_embedding.embeddings)
    positions = np.asarray(teacher.position_embedding.position_embeddings)
    if fold_token_type and teacher.architecture == "bert":
        positions = positions + np.asarray(teacher.backbone.segment_embedding.embeddings)[0]
    student.position_embedding.position_embeddings.assign(positions)
    student.embeddings_layer_norm.set_weights(teacher.embeddings_layer_norm.get_weights())
    # Both backbones build their blocks from keras-hub's TransformerEncoder,
    # so a block's weights move across as one list.
    for student_layer, teacher_index in zip(student.transformer_layers, layer_map):
        student_layer.set_weights(teacher.transformer_layers[teacher_index].get_weights())
    if teacher.mlm_head is not None:
        head, teacher_head = student.mlm_head, teacher.mlm_head
        head._intermediate_dense.set_weights(teacher_head._intermediate_dense.get_weights())
        head._intermediate_layer_norm.set_weights(
            teacher_head._intermediate_layer_norm.get_weights()
        )
        head._bias.assign(teacher_head._bias)
    return student, layer_map


def inherited_head_note(teacher_model):
    """Why a student of `teacher_model` cannot copy its head, or None when it can."""
    if teacher_model.pooling == pooling_lib.CLS_POOLER:
        return ("fresh: the teacher's head reads BERT's tanh pooler, which a DistilBERT student "
                "does not have")
    return None


def student_task_model(teacher_model, layer_map=None, num_layers=None, fold_token_type=True, random_init=False,
                       hidden_size=None, num_heads=None, intermediate_size=None):
    """A DistilBERT student of a fine-tuned `TaskModel`, with the teacher's head.

    The student copies the teacher's task head: the same type (pooling,
    pre-classifier or not, dropout) and the same weights, so a student that
    keeps every teacher layer reproduces the teacher's logits (to float32
    rounding, token-type row folded). Where the head cannot move (a head on
    BERT's tanh pooler: DistilBERT has none) the student gets a fresh head of
    its architecture's reference type; `inherited_head_note` says why.

    Other widths (`hidden_size`, `num_heads`, `intermediate_size`, as in
    `init_student_from_teacher`) make a random student with a fresh head.

    Returns:
        `(student TaskModel, layer_map, head)`: head is "inherited from the
        teacher" or the reason it is fresh.
    """
    from distil_tf.models.task_model import TaskModel

    widths = student_widths(teacher_model.encoder, hidden_size, num_heads, intermediate_size)
    random_init = random_init or not copies_teacher_widths(teacher_model.encoder, widths)
    encoder, layer_map = init_student_from_teacher(
        teacher_model.encoder, layer_map=layer_map, num_layers=num_layers, fold_token_type=fold_token_type,
        random_init=random_init, pooling=teacher_model.pooling,
        hidden_size=widths[0], num_heads=widths[1], intermediate_size=widths[2],
    )
    note = "fresh: random initialization" if random_init else inherited_head_note(teacher_model)
    kwargs = dict(num_classes=teacher_model.num_classes, task_name=teacher_model.task_name,
                  label_names=teacher_model.label_names)
    if note is not None:
        student = TaskModel(encoder, teacher_model.head_type, **kwargs)
        student(student.dummy_inputs())
        return student, layer_map, note
    student = TaskModel(
        encoder, teacher_model.head_type, classifier_dropout=teacher_model.classifier_dropout,
        pooling=teacher_model.pooling, pre_classifier=teacher_model.has_pre_classifier, **kwargs,
    )
    student(student.dummy_inputs())
    student.classifier.set_weights(teacher_model.classifier.get_weights())
    if teacher_model.pre_classifier is not None:
        student.pre_classifier.set_weights(teacher_model.pre_classifier.get_weights())
    return student, layer_map, "inherited from the teacher"


def write_student(
    teacher_source,
    out,
    layer_map=None,
    num_layers=None,
    fold_token_type=True,
    random_init=False,
    overwrite=False,
    hidden_size=None,
    num_heads=None,
    intermediate_size=None,
):
    """Load a teacher, initialize a student from it, and save the student directory.

    Validates everything before writing; the directory is published atomically,
    so a failure never leaves a half-written `out`. A student of other widths
    than the teacher's (`hidden_size`, `num_heads`, `intermediate_size`; see
    `init_student_from_teacher`) is randomly initialized, and its provenance
    records "random" with its hidden size next to the teacher's.

    Returns:
        `(student, layer_map)`.
    """
    from distil_tf.models.model_dir import (
        check_output_available,
        load_model_and_tokenizer,
        save_model,
    )

    check_output_available(out, overwrite)  # before the (slow) teacher load
    teacher, tokenizer = load_model_and_tokenizer(teacher_source)
    head = None
    teacher_encoder = getattr(teacher, "encoder", None) or teacher
    widths = student_widths(teacher_encoder, hidden_size, num_heads, intermediate_size)
    widths_kwargs = dict(hidden_size=widths[0], num_heads=widths[1], intermediate_size=widths[2])
    # Teacher layers do not fit other widths: such a student is random.
    random_init = random_init or not copies_teacher_widths(teacher_encoder, widths)
    if getattr(teacher, "encoder", None) is not None:
        # A fine-tuned task model: the student is a task model too, with its head.
        student, layer_map, head = student_task_model(
            teacher, layer_map=layer_map, num_layers=num_layers, fold_token_type=fold_token_type,
            random_init=random_init, **widths_kwargs,
        )
        teacher = teacher.encoder
    else:
        student, layer_map = init_student_from_teacher(
            teacher,
            layer_map=layer_map,
            num_layers=num_layers,
            fold_token_type=fold_token_type,
            random_init=random_init,
            **widths_kwargs,
        )
    provenance = {
        "kind": "student",
        "teacher": str(teacher_source),
        "teacher_architecture": teacher.architecture,
        "teacher_layers": teacher.num_layers,
        "layer_map": None if random_init else layer_map,
        "initialization": "random" if random_init else "teacher_layers",
        # (As before for `random_init` at the teacher's widths; a student of
        # other widths copied no embeddings, so nothing was folded.)
        "token_type_folded": bool(fold_token_type and teacher.architecture == "bert"
                                  and copies_teacher_widths(teacher, widths)),
    }
    if not copies_teacher_widths(teacher, widths):
        provenance["hidden_size"] = widths[0]
        provenance["teacher_hidden_size"] = teacher.hidden_dim
    if head is not None:
        provenance["task"] = student.task_name
        provenance["head"] = head
    save_model(student, out, tokenizer, provenance=provenance, overwrite=overwrite)
    return student, layer_map
