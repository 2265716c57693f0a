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


def student_config(teacher, num_layers, dropout=None, pooling=None):
    """The DistilBERT config of a student of a teacher: same widths, fewer layers.

    `pooling` overrides the teacher encoder's (a task model's head pooling).
    """
    return dict(
        architecture="distilbert",
        vocabulary_size=teacher.vocabulary_size,
        num_layers=num_layers,
        num_heads=teacher.num_heads,
        hidden_dim=teacher.hidden_dim,
        intermediate_dim=teacher.intermediate_dim,
        dropout=teacher.dropout if dropout is None else dropout,
        max_sequence_length=teacher.max_sequence_length,
        hidden_activation=teacher.hidden_activation,
        mlm_head=teacher.has_mlm_head,
        pooling=student_pooling(pooling or teacher.pooling),
        normalize_embeddings=teacher.normalize_embeddings,
    )


def init_student_from_teacher(
    teacher, layer_map=None, num_layers=None, fold_token_type=True, random_init=False, pooling=None
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

    Returns:
        `(student, layer_map)`.
    """
    if layer_map is None:
        if num_layers is None:
            num_layers = (teacher.num_layers + 1) // 2
        layer_map = default_layer_map(teacher.num_layers, num_layers)
    layer_map = validate_layer_map(layer_map, teacher.num_layers)
    student = Encoder(**student_config(teacher, len(layer_map), pooling=pooling))
    student(student.dummy_inputs())
    if random_init:
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


def student_task_model(teacher_model, layer_map=None, num_layers=None, fold_token_type=True, random_init=False):
    """A DistilBERT student of a fine-tuned `TaskModel`, with the teacher's head.

    The student copies the teacher's task head: the same type (pooling,
    pre-classifier or not, dropout) and the same weights, so a student that
    keeps every teacher layer reproduces the teacher's logits (to float32
    rounding, token-type row folded). Where the head cannot move (a head on
    BERT's tanh pooler: DistilBERT has none) the student gets a fresh head of
    its architecture's reference type; `inherited_head_note` says why.

    Returns:
        `(student TaskModel, layer_map, head)`: head is "inherited from the
        teacher" or the reason it is fresh.
    """
    from distil_tf.models.task_model import TaskModel

    encoder, layer_map = init_student_from_teacher(
        teacher_model.encoder, layer_map=layer_map, num_layers=num_layers, fold_token_type=fold_token_type,
        random_init=random_init, pooling=teacher_model.pooling,
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
):
    """Load a teacher, initialize a student from it, and save the student directory.

    Validates everything before writing; the directory is published atomically,
    so a failure never leaves a half-written `out`.

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
    if getattr(teacher, "encoder", None) is not None:
        # A fine-tuned task model: the student is a task model too, with its head.
        student, layer_map, head = student_task_model(
            teacher, layer_map=layer_map, num_layers=num_layers, fold_token_type=fold_token_type,
            random_init=random_init,
        )
        teacher = teacher.encoder
    else:
        student, layer_map = init_student_from_teacher(
            teacher,
            layer_map=layer_map,
            num_layers=num_layers,
            fold_token_type=fold_token_type,
            random_init=random_init,
        )
    provenance = {
        "kind": "student",
        "teacher": str(teacher_source),
        "teacher_architecture": teacher.architecture,
        "teacher_layers": teacher.num_layers,
        "layer_map": None if random_init else layer_map,
        "initialization": "random" if random_init else "teacher_layers",
        "token_type_folded": bool(fold_token_type and teacher.architecture == "bert"),
    }
    if head is not None:
        provenance["task"] = student.task_name
        provenance["head"] = head
    save_model(student, out, tokenizer, provenance=provenance, overwrite=overwrite)
    return student, layer_map
