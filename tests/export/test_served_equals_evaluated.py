"""What TF Serving runs is what `evaluate` scores: same logits, same labels, on real dev examples.

Each model is a tiny random task model on the real bert-base-uncased
vocabulary, saved the way `finetune` saves it (its preprocessing recorded in
the model directory), then exported with `distil-tf export`'s defaults: no
length flag. Its `serving_default`, called on the raw dev text as a client
would, must give the logits of the evaluation pipeline (`text_batches` +
`model.predict`) within 1e-4. IMDb is the case that once differed: trained
at 256 tokens with head + tail truncation and `<br />` tags removed, it
used to be served at 128 tokens, head-only, tags kept.
"""

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.export import export_model
from distil_tf.export.exporter import PreprocessingMismatchWarning
from distil_tf.models import Encoder, TaskModel, load_model, save_model
from distil_tf.tasks import registry, task_inputs
from distil_tf.tasks.evaluation import predict_outputs

CASES = {
    # task: (trained length, dev examples scored)
    "glue/sst2": (64, 48),
    "glue/mrpc": (96, 32),
    "glue/stsb": (80, 32),
    "imdb": (256, 24),
}


def _save_trained_like(tokenizer, task, length, directory):
    spec = registry.get_task(task)
    tf.keras.utils.set_random_seed(7)
    encoder = Encoder("bert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                      hidden_dim=16, intermediate_dim=32, max_sequence_length=512, mlm_head=False)
    encoder(encoder.dummy_inputs())
    kwargs = {"task_name": task}
    if spec.head_type == "classification":
        kwargs.update(num_classes=len(spec.label_names), label_names=list(spec.label_names))
    model = TaskModel.from_encoder(encoder, spec.head_type, **kwargs)
    provenance = {"kind": "finetuned", "task": task, "max_seq_length": length,
                  "preprocessing": task_inputs.preprocessing_for(spec, length).to_dict()}
    save_model(model, directory, tokenizer, provenance=provenance)
    return directory


def _dev_examples(shared_data, task, count):
    spec = registry.get_task(task)
    family_dir = shared_data / spec.family
    examples = task_inputs.read_split(spec, "validation", task_inputs.DataSource(str(family_dir)))
    if task == "imdb":
        # The longest reviews with line-break tags: truncation and cleaning both matter.
        examples = sorted((e for e in examples if "  " in e.text_a or len(e.text_a) > 2000),
                          key=lambda e: -len(e.text_a))
    return examples[:count]


def _raw_imdb_texts(shared_data, examples):
    """The reviews as a client sends them: with their `<br />` tags."""
    import csv

    with open(shared_data / "imdb" / "dev.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    raw = {}
    from distil_tf.text.preprocessing import clean_line_breaks

    for text, _ in rows:
        raw.setdefault(clean_line_breaks(text), text)
    return [raw[example.text_a] for example in examples]


@pytest.mark.parametrize("task", sorted(CASES))
def test_served_logits_equal_evaluated_logits(task, tmp_path, shared_data, bert_tokenizer):
    length, count = CASES[task]
    spec = registry.get_task(task)
    model_dir = _save_trained_like(bert_tokenizer, task, length, tmp_path / "model")
    examples = _dev_examples(shared_data, task, count)
    # The evaluation path, as `distil-tf evaluate` runs it.
    model = load_model(model_dir)
    dataset = task_inputs.text_batches(spec, examples, bert_tokenizer, length, 8)
    evaluated = np.asarray(predict_outputs(model, dataset)["logits"])
    # The served path: defaults only, raw text in.
    with_warnings = []
    import warnings

    with warnings.catch_warnings(record=True) as with_warnings:
        warnings.simplefilter("always")
        version = export_model(model_dir, tmp_path / "export", warmup=False)
    assert not [w for w in with_warnings if issubclass(w.category, PreprocessingMismatchWarning)]
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    if spec.is_pair:
        outputs = serve(text=tf.constant([e.text_a for e in examples]),
                        text_pair=tf.constant([e.text_b for e in examples]))
    else:
        texts = _raw_imdb_texts(shared_data, examples) if task == "imdb" else [e.text_a for e in examples]
        if task == "imdb":
            assert sum("<br" in text.lower() for text in texts) >= count // 2
            lengths = [len(bert_tokenizer.tokenize_ragged(tf.constant([t]))[0]) for t in texts]
            assert sum(n > 254 for n in lengths) >= count // 2, "the case must exercise head + tail truncation"
        outputs = serve(text=tf.constant(texts))
    served = outputs["score" if spec.head_type == "regression" else "logits"].numpy()
    np.testing.assert_allclose(served.reshape(evaluated.shape), evaluated, atol=1e-4)
    if spec.head_type == "classification":
        np.testing.assert_array_equal(outputs["label_ids"].numpy().reshape(-1), evaluated.argmax(-1))


def test_an_export_shorter_than_training_warns_and_says_what_is_cut(tmp_path, bert_tokenizer):
    model_dir = _save_trained_like(bert_tokenizer, "imdb", 256, tmp_path / "model")
    with pytest.warns(PreprocessingMismatchWarning,
                      match="exporting at 128 tokens, but the model was trained at 256: longer inputs lose "
                            "more of their text than in training"):
        export_model(model_dir, tmp_path / "export", max_sequence_length=128, warmup=False)


def test_cli_export_reports_the_served_preprocessing(tmp_path, bert_tokenizer, capsys):
    from distil_tf import cli

    model_dir = _save_trained_like(bert_tokenizer, "imdb", 256, tmp_path / "model")
    assert cli.main(["export", "--model", str(model_dir), "--out", str(tmp_path / "e"), "--no-warmup"]) == 0
    assert ("text in: max 256 tokens, head_tail truncation, <br /> tags removed (as trained)"
            in capsys.readouterr().out)
    assert cli.main(["export", "--model", str(model_dir), "--out", str(tmp_path / "e"), "--no-warmup",
                     "--max-sequence-length", "64"]) == 0
    captured = capsys.readouterr()
    assert "text in: max 64 tokens, head_tail truncation, <br /> tags removed (trained at 256 tokens)" in captured.out
    assert captured.err.strip().startswith("distil-tf: warning: exporting at 64 tokens, but the model was trained at 256")


def _save_span_model(tokenizer, directory, length=128, doc_stride=48, max_query_length=24):
    spec = registry.get_task("squad/v1.1")
    tf.keras.utils.set_random_seed(11)
    encoder = Encoder("bert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                      hidden_dim=16, intermediate_dim=32, max_sequence_length=512, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "span", task_name=spec.name)
    provenance = {"kind": "finetuned", "task": spec.name, "max_seq_length": length,
                  "data": {"doc_stride": doc_stride, "max_query_length": max_query_length},
                  "preprocessing": task_inputs.preprocessing_for(spec, length).to_dict()}
    save_model(model, directory, tokenizer, provenance=provenance)
    return directory


@pytest.mark.parametrize("task", ["glue/sst2", "squad/v1.1"])
def test_evaluate_scores_the_export_like_the_model_directory(task, tmp_path, shared_data, bert_tokenizer):
    from distil_tf.training.finetune import run_evaluation

    if task == "squad/v1.1":
        model_dir = _save_span_model(bert_tokenizer, tmp_path / "model")
        data_dir, limit = shared_data / "squad", 24
    else:
        model_dir = _save_trained_like(bert_tokenizer, task, 64, tmp_path / "model")
        data_dir, limit = shared_data / "glue", 200
    export_model(model_dir, tmp_path / "export", warmup=False)
    direct = run_evaluation(model_dir, task, data_dir=data_dir, limit=limit)
    # A base path (its newest version) and a version directory both work.
    served = run_evaluation(tmp_path / "export", task, data_dir=data_dir, limit=limit)
    assert served["data"]["served"] is True and served["model"] == str(tmp_path / "export" / "1")
    for name, value in direct["evaluation"]["validation"].items():
        if name != "windows":
            assert served["evaluation"]["validation"][name] == pytest.approx(value, abs=1e-9), name


def test_evaluate_refuses_a_savedmodel_that_does_not_fit_the_task(tmp_path, shared_data, bert_tokenizer, capsys):
    from distil_tf import cli

    model_dir = _save_trained_like(bert_tokenizer, "glue/sst2", 64, tmp_path / "model")
    export_model(model_dir, tmp_path / "export", warmup=False)
    code = cli.main(["evaluate", "--task", "glue/mrpc", "--model", str(tmp_path / "export" / "1"),
                     "--data-dir", str(shared_data / "glue")])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"distil-tf: error: {tmp_path / 'export' / '1'}: serving_default takes (text) but task 'glue/mrpc' "
        "needs (text, text_pair)")
    regression_dir = _save_trained_like(bert_tokenizer, "glue/stsb", 64, tmp_path / "stsb")
    export_model(regression_dir, tmp_path / "stsb_export", warmup=False)
    code = cli.main(["evaluate", "--task", "glue/mrpc", "--model", str(tmp_path / "stsb_export"),
                     "--data-dir", str(shared_data / "glue")])
    assert code == 2
    assert "serving_default has no 'logits' output (outputs: score); task 'glue/mrpc' needs a classification head" \
        in capsys.readouterr().err
