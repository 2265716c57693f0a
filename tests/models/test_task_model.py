"""Task heads: shapes, parity with Hugging Face heads, save/load round trips."""

import numpy as np
import pytest

from distil_tf import load_model, load_tokenizer
from distil_tf.models import Encoder, TaskModel, save_model


def _inputs():
    token_ids = np.array([[7, 12, 30, 8, 0], [7, 40, 8, 0, 0]], "int32")
    return {"token_ids": token_ids, "padding_mask": (token_ids != 0).astype("int32")}


def _encoder(architecture, mlm_head=True):
    encoder = Encoder(architecture, vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, mlm_head=mlm_head)
    encoder(encoder.dummy_inputs())
    return encoder


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
@pytest.mark.parametrize("head_type, num_classes, key, shape", [
    ("classification", 3, "logits", (2, 3)), ("regression", None, "logits", (2,)),
    ("span", None, "start_logits", (2, 5)),
])
def test_heads(architecture, head_type, num_classes, key, shape):
    model = TaskModel.from_encoder(_encoder(architecture), head_type, num_classes=num_classes)
    outputs = model(_inputs())
    assert outputs[key].shape == shape
    assert not model.encoder.has_mlm_head  # the MLM head is dropped for tasks
    if head_type == "span":
        assert float(outputs["end_logits"][1, 4]) < -1e3  # padding never wins


def test_from_encoder_copies_backbone_weights():
    encoder = _encoder("distilbert")
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2)
    np.testing.assert_array_equal(
        model.encoder(_inputs())["sequence_output"], encoder(_inputs())["sequence_output"]
    )


@pytest.mark.parametrize("head_type", ["classification", "regression", "span"])
def test_save_load_round_trip(tmp_path, tiny_vocab_file, head_type):
    model = TaskModel.from_encoder(_encoder("distilbert"), head_type, num_classes=2 if head_type == "classification" else None,
                                   task_name="glue/sst2", label_names=["negative", "positive"])
    save_model(model, tmp_path / "m", load_tokenizer(tiny_vocab_file))
    reloaded = load_model(tmp_path / "m")
    assert isinstance(reloaded, TaskModel) and reloaded.task_name == "glue/sst2"
    assert reloaded.label_names == ["negative", "positive"]
    for name, value in model(_inputs()).items():
        np.testing.assert_array_equal(value, reloaded(_inputs())[name])


def test_bert_classifier_matches_hugging_face(tiny_hf_bert_model):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertForSequenceClassification.from_pretrained(tiny_hf_bert_model, num_labels=3).eval()
    model = TaskModel.from_encoder(load_model(tiny_hf_bert_model), "classification", num_classes=3)
    model.classifier.kernel.assign(reference.classifier.weight.detach().numpy().T)
    model.classifier.bias.assign(reference.classifier.bias.detach().numpy())
    inputs = _inputs()
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(inputs["token_ids"], dtype=torch.long),
                             attention_mask=torch.tensor(inputs["padding_mask"])).logits.numpy()
    np.testing.assert_allclose(model(inputs)["logits"], expected, atol=1e-5)


def test_bad_heads():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        TaskModel(_encoder("bert"), "classification", num_classes=1)
    with pytest.raises(ValueError, match="unknown head_type"):
        TaskModel(_encoder("bert"), "ner")


@pytest.mark.parametrize("architecture, head_type, num_classes", [
    ("bert", "classification", 3), ("distilbert", "regression", None), ("bert", "span", None),
])
def test_task_model_passes_the_model_class_harness(tmp_path, architecture, head_type, num_classes):
    # The encoder's harness, on each head (span logits: real positions only).
    from model_test_harness import run_model_class_test

    def make(dtype):
        encoder = Encoder(architecture, vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=8,
                          intermediate_dim=16, mlm_head=False, dtype=dtype)
        return TaskModel(encoder, head_type, num_classes=num_classes, task_name="t")

    token_ids = np.array([[7, 12, 30, 8, 9, 0, 0], [7, 40, 8, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10, 11]], "int32")
    inputs = {"token_ids": token_ids, "padding_mask": (token_ids != 0).astype("int32")}
    # Logits are float32 under every policy (softmax, KL and span decoding).
    run_model_class_test(make, inputs, tmp_path, float32_outputs=("logits", "start_logits", "end_logits"))
