"""`distil-tf benchmark end-to-end`: every runner answers the same real SST-2 sentences alike.

A tiny DistilBERT classifier on the real bert-base-uncased vocabulary: our
export's `serving_default` (text in), its `predict_ids`, the Hugging Face
pipeline and ONNX Runtime + Rust tokenizers on its Hugging Face export must
give the same labels and top probabilities (float32 rounding apart). No
timing is asserted.
"""

import pytest

from distil_tf.benchmarks import end_to_end


def _tiny_classifier(directory, bert_vocab, pooling=None):
    import keras

    from distil_tf.models import Encoder, TaskModel, save_model
    from distil_tf.tasks import registry
    from distil_tf.text import load_tokenizer

    keras.utils.set_random_seed(3)
    tokenizer = load_tokenizer(bert_vocab)
    encoder = Encoder("distilbert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
                      hidden_dim=32, intermediate_dim=64, max_sequence_length=128, mlm_head=False)
    encoder(encoder.dummy_inputs())
    kwargs = {} if pooling is None else {"pooling": pooling}
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="glue/sst2",
                                   label_names=["negative", "positive"], **kwargs)
    task = registry.build_task("glue/sst2")
    save_model(model, directory, tokenizer,
               provenance={"kind": "finetuned", "task": "glue/sst2", "max_seq_length": 64,
                           "preprocessing": task.preprocessing_for(64).to_dict()})
    return directory


def _run_on_tiny_classifier(tmp_path, shared_data, bert_vocab, **options):
    """`end_to_end.run` on real SST-2 dev sentences with the tiny classifier (the peers need the bench extra)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("transformers")
    model_dir = _tiny_classifier(tmp_path / "model", bert_vocab)
    return end_to_end.run(shared_data / "glue" / "SST-2" / "dev.tsv", bert_vocab, model_dir=model_dir,
                          work_dir=tmp_path / "work", warmup=2, **options)


@pytest.mark.large
def test_every_runner_gives_the_served_labels_on_real_sentences(tmp_path, shared_data, bert_vocab):
    report = _run_on_tiny_classifier(tmp_path, shared_data, bert_vocab, sentences=24,
                                     runners=["tf-predict-ids", "hf-pipeline", "ort+tokenizers"])
    rows = {row["runner"]: row for row in report["rows"]}
    # The reference always runs first, with the stock server's oneDNN setting.
    assert [row["runner"] for row in report["rows"]][0] == "tf-serving-default"
    assert rows["tf-serving-default"]["onednn_enabled_in_child"] is False
    assert report["model_details"]["max_sequence_length"] == 64  # the trained length, read from the model
    for name in ("tf-predict-ids", "hf-pipeline", "ort+tokenizers"):
        assert "skipped" not in rows[name], rows[name]
        assert rows[name]["labels_agree"] == 24, name
        assert rows[name]["max_probability_difference"] < 1e-4, name
    # ORT's BERT fusions fired on the classifier graph (the peer at its best).
    assert rows["ort+tokenizers"]["ort_fused_operators"].get("Attention", 0) == 2
    table = end_to_end.format_table(report)
    assert "| tf-serving-default |" in table and "1.00x" in table


@pytest.mark.large
def test_throughput_answers_every_request_right_through_the_server_and_the_peers(tmp_path, shared_data, bert_vocab):
    """Concurrent clients get the batch-1 labels back from every path: server (batching off, on; two thread
    settings) and peers."""
    report = _run_on_tiny_classifier(tmp_path, shared_data, bert_vocab, sentences=10,
                                     runners=["hf-pipeline", "ort+tokenizers"], clients=(1, 3), requests=14,
                                     threads=2, server_threads=((0, 0), (1, 2)))
    cells = [(row["runner"], row["mode"], row["batching"], row["threads"], row["clients"])
             for row in report["throughput"]]
    ours, auto, one_two = "tf-serving-default", [0, 0], [1, 2]
    assert cells == [(ours, "in-process", None, [2, 1], 1), (ours, "in-process", None, [2, 1], 3),
                     (ours, "grpc", False, auto, 1), (ours, "grpc", False, auto, 3),
                     (ours, "grpc", True, auto, 1), (ours, "grpc", True, auto, 3),
                     (ours, "grpc", False, one_two, 1), (ours, "grpc", False, one_two, 3),
                     (ours, "grpc", True, one_two, 1), (ours, "grpc", True, one_two, 3),
                     ("hf-pipeline", "in-process", None, [2, None], 1), ("hf-pipeline", "in-process", None, [2, None], 3),
                     ("ort+tokenizers", "in-process", None, [2, None], 1),
                     ("ort+tokenizers", "in-process", None, [2, None], 3)]
    for row in report["throughput"]:
        # 14 requests over 10 sentences: the last 4 repeat the first, and must still agree.
        assert (row["requests"], row["errors"], row["labels_agree"]) == (14, 0, 14), row
        assert row["p50_ms"] <= row["p99_ms"]
    assert report["requests_per_cell"] == 14
    table = end_to_end.format_table(report)
    assert "| tf-serving-default | distil-tf-model-server gRPC | on | auto/auto | 3 |" in table
    assert "| tf-serving-default | distil-tf-model-server gRPC | off | 1/2 | 3 |" in table
    assert "| ort+tokenizers | in-process | - | 2/- | 3 |" in table
    assert table.count("| 14/14 |") == 14


def test_a_head_without_a_hugging_face_class_skips_the_peers_with_the_reason(tmp_path, bert_vocab):
    model_dir = _tiny_classifier(tmp_path / "model", bert_vocab, pooling="mean")
    prepared = end_to_end.prepare(model_dir, tmp_path / "work")
    assert prepared["hf_dir"] is None and prepared["onnx"] is None
    assert prepared["peer_skip_reason"].startswith("no Hugging Face export of this model: ")
    assert "mean" in prepared["peer_skip_reason"]


def test_the_ids_runner_gets_the_ids_the_served_signature_packs(tmp_path, shared_data, bert_vocab):
    import numpy as np
    import tensorflow as tf

    from distil_tf.export.exporter import trained_preprocessing
    from distil_tf.export.sentence_prediction_module import SentencePredictionExportModule
    from distil_tf.models import load_model_and_tokenizer

    model_dir = _tiny_classifier(tmp_path / "model", bert_vocab)
    prepared = end_to_end.prepare(model_dir, tmp_path / "work")
    assert prepared["label_names"] == ["negative", "positive"]
    assert prepared["max_sequence_length"] == 64 and prepared["preprocessing"]["max_seq_length"] == 64
    sentences = end_to_end.read_sst2_sentences(shared_data / "glue" / "SST-2" / "dev.tsv", 5)
    arrays = np.load(end_to_end._packed_ids(prepared, sentences, tmp_path / "ids.npz"))
    model, tokenizer = load_model_and_tokenizer(model_dir)
    module = SentencePredictionExportModule(model, tokenizer, 64, preprocessing=trained_preprocessing(model_dir))
    assert sorted(arrays.files) == sorted(f"{key}_{index}" for key in ("token_ids", "padding_mask")
                                          for index in range(5))  # DistilBERT reads no segment ids
    for index, sentence in enumerate(sentences):
        served = module.pack(tf.constant([sentence]))
        np.testing.assert_array_equal(arrays[f"token_ids_{index}"], served["token_ids"].numpy())
        np.testing.assert_array_equal(arrays[f"padding_mask_{index}"], served["padding_mask"].numpy())
        assert arrays[f"token_ids_{index}"][0, 0] == tokenizer.token_to_id("[CLS]")


def test_unknown_runners_and_regression_models_are_refused(tmp_path, shared_data, bert_vocab):
    with pytest.raises(ValueError, match="unknown runner.*tf-serving-defualt"):
        end_to_end.run(shared_data / "glue" / "SST-2" / "dev.tsv", bert_vocab, runners=["tf-serving-defualt"])
