"""`distil-tf fit-mlm-head`: an MLM head fitted to a frozen teacher without one, then used by `distill`.

A tiny random BERT (hidden 16, no MLM head) of the tiny vocabulary stands in
for all-MiniLM-L6-v2; the corpus repeats one word per line, so a masked
position's neighbours say what it was.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf import load_model
from distil_tf.cli import main
from distil_tf.data.batching import build_mlm_dataset
from distil_tf.models import Encoder, describe_model, save_model
from distil_tf.text import load_tokenizer
from distil_tf.training.mlm_head import (
    FitMlmHeadConfig,
    MaskedLMHeadFitter,
    evaluate_heldout,
    start_as_unigram,
    unigram_output_bias,
    with_new_mlm_head,
)
from tests.conftest import TINY_VOCAB_SIZE, _tiny_vocabulary

WORDS = ["the", "a", "movie", "good", "bad", "is", "was", "not", "great", "film", "i", "it", "and", "to",
         "of", "very", "fun", "boring", "hello", "world", "this", "test"]
HEAD_WEIGHTS = ["mlm_head/intermediate_dense/kernel", "mlm_head/intermediate_dense/bias",
                "mlm_head/intermediate_layer_norm/gamma", "mlm_head/intermediate_layer_norm/beta", "mlm_head/output_bias"]


def _encoder(mlm_head=False):
    keras.utils.set_random_seed(5)
    encoder = Encoder("bert", vocabulary_size=TINY_VOCAB_SIZE, num_layers=2, num_heads=2, hidden_dim=16,
                      intermediate_dim=32, max_sequence_length=32, dropout=0.1, mlm_head=mlm_head,
                      pooling="mean")
    encoder(encoder.dummy_inputs())
    return encoder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mlm_head")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(_tiny_vocabulary()) + "\n")
    save_model(_encoder(), directory / "teacher", load_tokenizer(vocab), provenance={"kind": "test teacher"})
    rng = np.random.default_rng(0)
    lines = [" ".join([word] * int(rng.integers(10, 20))) for word in rng.choice(WORDS, 400)]
    (directory / "corpus.txt").write_text("\n".join(lines) + "\n")
    return directory


def _fit_args(workspace, out, *extra, teacher=None):
    return ["fit-mlm-head", "--teacher", str(teacher or workspace / "teacher"), "--corpus",
            str(workspace / "corpus.txt"), "--out", str(out), "--batch-size", "8", "--max-seq-length", "24",
            "--seed", "3", "--learning-rate", "3e-2", *extra]


@pytest.fixture(scope="module")
def fitted(workspace):
    """One 60-step fit through the CLI, its head starting as keras-hub's (random, zero bias)."""
    out = workspace / "fitted"
    code = main(_fit_args(workspace, out, "--steps", "60", "--set", "head_init=keras_hub",
                          "--set", "heldout_every=5"))
    assert code == 0
    return out


def test_fitting_lowers_the_heldout_mlm_loss_and_reports_it(fitted, capsys):
    metrics = json.loads((fitted / "metrics.json").read_text())
    before, after = metrics["heldout_before"], metrics["heldout_after"]
    # Observed with seed 3: 4.60 -> 3.54 (from the zero-bias head). Same
    # held-out masks before and after: the same tokens are scored.
    assert before["tokens"] == after["tokens"] > 100
    assert after["mlm_loss"] < before["mlm_loss"] - 0.5, (before, after)
    assert metrics["split"]["heldout_lines"] == 80 and metrics["split"]["train_lines"] == 320
    heldout = (fitted / "data" / "heldout.txt").read_text().splitlines()
    train = set((fitted / "data" / "train.txt").read_text().splitlines())
    assert heldout and len(heldout) == 80 and len(train) > 0
    assert sorted(metrics["trained_weights"]) == sorted(HEAD_WEIGHTS)
    assert 0 < metrics["train_loop_seconds"] <= metrics["seconds"]  # as the task commands record it


def test_the_saved_encoder_is_the_teacher_bit_for_bit_with_a_trained_head(workspace, fitted):
    teacher = load_model(workspace / "teacher")
    model = load_model(fitted)  # the run directory resolves to fitted/teacher
    assert model.has_mlm_head and model.mlm_head is not None
    assert model.pooling == "mean" and model.num_layers == 2
    teacher_weights = {weight.path: np.asarray(weight) for weight in teacher.backbone.weights}
    model_weights = {weight.path: np.asarray(weight) for weight in model.backbone.weights}
    assert teacher_weights.keys() == model_weights.keys() and len(teacher_weights) > 20
    for path, value in teacher_weights.items():
        assert np.array_equal(value, model_weights[path]), path
    head = model.mlm_head
    # Zero bias, unit gamma and zero beta at the start: all moved.
    assert np.abs(np.asarray(head._bias)).max() > 0.05
    assert np.abs(np.asarray(head._intermediate_layer_norm.gamma) - 1.0).max() > 0.01
    assert np.abs(np.asarray(head._intermediate_layer_norm.beta)).max() > 0.01
    # The head still reads the token embedding, the teacher's own.
    assert head.token_embedding is model.token_embedding
    provenance = describe_model(fitted)
    assert provenance["kind"] == "test teacher"
    record = provenance["mlm_head"]
    assert record["fitted"] and record["steps"] == 60 and record["batch_size"] == 8
    assert record["corpus"] == [str(workspace / "corpus.txt")]
    assert record["heldout_after"]["mlm_loss"] < record["heldout_before"]["mlm_loss"]
    assert (fitted / "teacher" / "vocab.txt").is_file() and (fitted / "teacher" / "tokenizer_config.json").is_file()


def test_distill_on_the_fitted_teacher_turns_on_ce_and_mlm(workspace, fitted, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "student"
    code = main(["distill", "--teacher", str(fitted), "--student", "1", "--corpus", str(workspace / "corpus.txt"),
                 "--out", str(out), "--steps", "2", "--batch-size", "8", "--max-seq-length", "24"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "teacher has an MLM head; active: ce 5.0, mlm 2.0, cos(last) 1.0; input: masked" in stdout, stdout
    weights = json.loads((out / "metrics.json").read_text())["loss_weights"]
    assert weights["ce"] == 5.0 and weights["mlm"] == 2.0
    history = json.loads((out / "metrics.json").read_text())["final_train_loss"]
    assert history["loss_ce"] > 0 and history["loss_mlm"] > 0


def test_a_teacher_with_a_head_is_refused_unless_overwrite_head(workspace, fitted, tmp_path, capsys):
    capsys.readouterr()
    code = main(_fit_args(workspace, tmp_path / "again", "--steps", "2", teacher=fitted))
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.count("\n") == 0 and "already has a masked-LM head" in error and "--overwrite-head" in error
    assert not (tmp_path / "again").exists()  # nothing written for a refused teacher
    code = main(_fit_args(workspace, tmp_path / "again", "--steps", "2", "--overwrite-head", teacher=fitted))
    assert code == 0
    assert describe_model(tmp_path / "again")["mlm_head"]["replaced_existing_head"] is True


@pytest.mark.parametrize("corpus, message", [
    (None, "no corpus: pass --corpus"),
    ("missing/*.txt", "missing/*.txt"),
])
def test_missing_corpus_is_one_line_and_exit_2(workspace, tmp_path, capsys, corpus, message):
    args = ["fit-mlm-head", "--teacher", str(workspace / "teacher"), "--out", str(tmp_path / "o"), "--steps", "2"]
    if corpus:
        args += ["--corpus", str(tmp_path / corpus)]
    code = main(args)
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("distil-tf: error: ") and message in error and "\n" not in error


def test_unigram_output_bias_is_the_log_frequency_of_selected_tokens():
    counts = np.array([0, 1, 8, 1000, 0], np.int64)
    bias = unigram_output_bias(counts, mlm_smoothing=0.7, unseen_mass=0.01)
    probabilities = np.exp(bias.astype(np.float64))
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-6)
    seen = np.array([1.0, 8.0, 1000.0]) ** 0.3
    np.testing.assert_allclose(probabilities[1:4], 0.99 * seen / seen.sum(), rtol=1e-5)
    np.testing.assert_allclose(probabilities[[0, 4]], [0.005, 0.005], rtol=1e-5)


def test_a_head_started_as_unigram_predicts_the_unigram_everywhere_and_learns_from_there(workspace):
    encoder = with_new_mlm_head(_encoder())
    counts = np.arange(TINY_VOCAB_SIZE, dtype=np.int64) % 7
    start_as_unigram(encoder.mlm_head, counts, 0.7)
    expected = unigram_output_bias(counts, 0.7)
    batch = next(iter(_masked_batches(workspace, workspace / "corpus.txt", False)))
    logits = encoder(batch, training=False)["mlm_logits"].numpy()  # [batch, seq, vocab]
    np.testing.assert_allclose(logits, np.broadcast_to(expected, logits.shape), atol=1e-6)
    # One update moves the layer-norm scale off 0: the context gets in.
    fitter = MaskedLMHeadFitter(encoder)
    fitter.compile(optimizer=keras.optimizers.Adam(1e-2))
    fitter.train_on_batch(batch)
    assert np.abs(np.asarray(encoder.mlm_head._intermediate_layer_norm.gamma)).max() > 1e-3


def _masked_batches(tokenizer_dir, corpus, fixed_shapes):
    tokenizer = load_tokenizer(tokenizer_dir / "vocab.txt")
    counts = np.ones(tokenizer.vocabulary_size(), np.int64)
    return build_mlm_dataset(str(corpus), tokenizer, counts, max_length=24, batch_size=4, seed=1,
                             fixed_shapes=fixed_shapes)


@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_the_fitter_scores_exactly_the_selected_positions_and_trains_only_the_head(workspace, fixed_shapes):
    encoder = with_new_mlm_head(_encoder())
    fitter = MaskedLMHeadFitter(encoder)
    assert sorted(weight.path for weight in fitter.trainable_weights) == sorted(HEAD_WEIGHTS)
    batch = next(iter(_masked_batches(workspace, workspace / "corpus.txt", fixed_shapes)))
    outputs = fitter(batch)
    full = encoder(batch, training=False)["mlm_logits"].numpy()  # [batch, seq, vocab]
    labels = batch["mlm_labels"].numpy()
    rows, columns = np.nonzero(labels != -100)
    if fixed_shapes:
        weights = batch["mask_weights"].numpy()
        real = weights > 0
        positions = batch["mask_positions"].numpy()
        expected = np.take_along_axis(full, positions[..., None], axis=1)[real]
        np.testing.assert_allclose(outputs["logits"].numpy()[real], expected, atol=1e-5)
        np.testing.assert_array_equal(outputs["labels"].numpy()[real], batch["mask_ids"].numpy()[real])
        assert int(real.sum()) == len(rows)
    else:
        np.testing.assert_allclose(outputs["logits"].numpy()[0], full[rows, columns], atol=1e-5)
        np.testing.assert_array_equal(outputs["labels"].numpy()[0], labels[rows, columns])
        assert outputs["weights"].shape == (1, len(rows))
    # evaluate_heldout's mean is the plain numpy cross-entropy over those tokens.
    logits, targets = full[rows, columns], labels[rows, columns]
    log_probabilities = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    expected_loss = -np.mean(log_probabilities[np.arange(len(targets)), targets])
    scores = evaluate_heldout(fitter, lambda _, size: tf.data.Dataset.from_tensors(batch), 4, 1)
    np.testing.assert_allclose(scores["mlm_loss"], expected_loss, rtol=1e-4)
    assert scores["tokens"] == len(rows)


def test_config_defaults():
    config = FitMlmHeadConfig()
    assert config.optimizer.learning_rate == 5e-3 and config.head_init == "unigram"
    assert config.masking.mask_proportion == 0.15 and config.masking.mlm_smoothing == 0.7
