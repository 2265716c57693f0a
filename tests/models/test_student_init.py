"""Student initialization from teacher layers (paper section 3)."""

import numpy as np
import pytest

from distil_tf.models import (
    RELEASED_LAYER_MAP,
    default_layer_map,
    init_student_from_teacher,
    load_model,
)
from distil_tf.models.summary import parameter_counts


def test_default_map_for_12_to_6_is_the_released_one():
    assert default_layer_map(12, 6) == list(RELEASED_LAYER_MAP) == [0, 2, 4, 7, 9, 11]


@pytest.mark.parametrize(
    "teacher_layers, student_layers, expected",
    [(6, 3, [0, 3, 5]), (12, 4, [0, 4, 7, 11]), (6, 6, [0, 1, 2, 3, 4, 5]), (6, 1, [0]), (24, 6, [0, 5, 9, 14, 18, 23])],
)
def test_default_map_spreads_evenly(teacher_layers, student_layers, expected):
    assert default_layer_map(teacher_layers, student_layers) == expected


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, 99, (3, 8)).astype("int32")
    padding_mask = np.ones_like(token_ids)
    padding_mask[0, 5:] = 0
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def test_all_layers_reproduce_the_teacher_with_zero_segments(tiny_hf_bert_mlm):
    teacher = load_model(tiny_hf_bert_mlm)
    student, layer_map = init_student_from_teacher(teacher, layer_map=list(range(teacher.num_layers)))
    assert student.architecture == "distilbert" and layer_map == [0, 1, 2, 3]
    inputs = _inputs()
    teacher_outputs, student_outputs = teacher(inputs), student(inputs)
    keep = inputs["padding_mask"].astype(bool)
    for name in ("sequence_output", "mlm_logits"):
        difference = np.abs(np.asarray(teacher_outputs[name]) - np.asarray(student_outputs[name]))[keep]
        assert difference.max() < 1e-5, (name, difference.max())


def test_without_folding_the_copy_drops_token_types(tiny_hf_bert_mlm):
    teacher = load_model(tiny_hf_bert_mlm)
    student, _ = init_student_from_teacher(teacher, layer_map=[0, 1, 2, 3], fold_token_type=False)
    inputs = _inputs()
    difference = np.abs(teacher(inputs)["sequence_output"] - student(inputs)["sequence_output"]).max()
    assert difference > 1e-2  # the released script's student differs from its teacher


def test_selected_layers_weights_are_copied(tiny_hf_bert_mlm):
    teacher = load_model(tiny_hf_bert_mlm)
    student, layer_map = init_student_from_teacher(teacher, layer_map=[1, 3])
    for student_layer, teacher_index in zip(student.transformer_layers, layer_map):
        for mine, theirs in zip(student_layer.get_weights(), teacher.transformer_layers[teacher_index].get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(student.token_embedding.embeddings, teacher.token_embedding.embeddings)
    np.testing.assert_array_equal(student.mlm_head._bias, teacher.mlm_head._bias)
    assert "segment_embedding" not in [w.path.split("/")[0] for w in student.weights]


def test_random_init_differs_from_teacher(tiny_hf_bert_mlm):
    teacher = load_model(tiny_hf_bert_mlm)
    student, _ = init_student_from_teacher(teacher, num_layers=2, random_init=True)
    assert not np.allclose(student.token_embedding.embeddings, teacher.token_embedding.embeddings)


@pytest.mark.parametrize(
    "layer_map, message",
    [([0, 9], "out of range"), ([0, 1, 2, 3, 0], "deeper than its 4-layer teacher"),
     ([1, 1], "repeats"), ([], "empty"), ([-1], "out of range")],
)
def test_bad_layer_maps(tiny_hf_bert_mlm, layer_map, message):
    teacher = load_model(tiny_hf_bert_mlm)
    with pytest.raises(ValueError, match=message):
        init_student_from_teacher(teacher, layer_map=layer_map)


def test_bert_base_and_distilbert_base_parameter_counts(shared_data):
    """Paper: BERT-base 110M, DistilBERT 66M (built from bert_config.json)."""
    import json

    from distil_tf.models import Encoder
    from distil_tf.models.hf_checkpoint import encoder_config_from_hf

    config = json.loads((shared_data / "bert-base-uncased/bert_config.json").read_text())
    config.setdefault("model_type", "bert")
    teacher = Encoder(**encoder_config_from_hf(config), mlm_head=True)
    teacher(teacher.dummy_inputs())
    student, layer_map = init_student_from_teacher(teacher, num_layers=6)
    assert layer_map == [0, 2, 4, 7, 9, 11]
    teacher_counts, student_counts = parameter_counts(teacher), parameter_counts(student)
    assert teacher_counts["backbone"] == 109_482_240  # BERT-base with pooler: "110M"
    assert student_counts["backbone"] == 66_362_880  # DistilBERT-base: "66M"
    assert student_counts["total"] == 66_985_530  # + MLM head transform and bias


def _task_teacher(tiny_hf_bert_mlm, head_type, pooling):
    from distil_tf.models import TaskModel

    encoder = load_model(tiny_hf_bert_mlm)
    kwargs = {"num_classes": 3, "label_names": ["a", "b", "c"]} if head_type == "classification" else {}
    teacher = TaskModel.from_encoder(encoder, head_type, task_name="t", pooling=pooling, **kwargs)
    for weights in teacher.classifier.weights:  # a head that is not all zeros
        weights.assign(np.random.default_rng(3).normal(0, 0.5, weights.shape))
    return teacher


@pytest.mark.parametrize("head_type, pooling, output", [
    ("classification", "mean", "logits"), ("classification", "cls", "logits"), ("regression", "mean", "logits"),
    ("span", None, "start_logits"),
])
def test_a_full_depth_student_inherits_the_head_and_reproduces_the_teacher(tiny_hf_bert_mlm, head_type, pooling,
                                                                           output):
    from distil_tf.models.student_init import student_task_model

    teacher = _task_teacher(tiny_hf_bert_mlm, head_type, pooling)
    student, layer_map, head = student_task_model(teacher, layer_map=list(range(teacher.encoder.num_layers)))
    assert head == "inherited from the teacher"
    assert student.encoder.architecture == "distilbert" and student.pre_classifier is None
    assert (student.head_type, student.pooling, student.num_classes) == (teacher.head_type, teacher.pooling,
                                                                         teacher.num_classes)
    inputs = _inputs(1)
    expected, actual = np.asarray(teacher(inputs)[output]), np.asarray(student(inputs)[output])
    if head_type == "span":
        keep = inputs["padding_mask"].astype(bool)
        expected, actual = expected[keep], actual[keep]
    assert np.abs(expected - actual).max() < 1e-5
    # A 2-layer student still carries the head's exact weights.
    student, _, _ = student_task_model(teacher, layer_map=[0, 3])
    for a, b in zip(student.classifier.get_weights(), teacher.classifier.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_bert_pooler_head_cannot_move_and_says_so(tiny_hf_bert_mlm):
    from distil_tf.models.student_init import student_task_model

    teacher = _task_teacher(tiny_hf_bert_mlm, "classification", "cls_pooler")
    student, _, head = student_task_model(teacher, num_layers=2)
    assert head.startswith("fresh: the teacher's head reads BERT's tanh pooler")
    assert student.pre_classifier is not None  # DistilBERT's reference head


def test_init_student_from_a_task_model_writes_a_task_model(tmp_path, tiny_hf_bert_mlm, capsys):
    from distil_tf import cli
    from distil_tf.models import describe_model, save_model
    from distil_tf.text import load_tokenizer

    teacher = _task_teacher(tiny_hf_bert_mlm, "classification", "mean")
    save_model(teacher, tmp_path / "teacher", load_tokenizer(tiny_hf_bert_mlm))
    assert cli.main(["init-student", "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "s"),
                     "--layers", "0,3"]) == 0
    assert "task head (t): inherited from the teacher" in capsys.readouterr().out
    student = load_model(tmp_path / "s")
    assert student.task_name == "t" and student.encoder.num_layers == 2
    assert describe_model(tmp_path / "s")["head"] == "inherited from the teacher"
    assert cli.main(["info", str(tmp_path / "s")]) == 0
    assert "head:           inherited from the teacher" in capsys.readouterr().out
