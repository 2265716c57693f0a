"""Attention distillation terms: exact recomputation, NumPy parity with padding, gradients, head checks, CLI."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.cli import main
from distil_tf.distillation import MaskedLMDistiller
from distil_tf.distillation import attention_terms as attention
from distil_tf.models import Encoder, init_student_from_teacher, save_model
from distil_tf.text import load_tokenizer
from distil_tf.training.distill import DistillationConfig, describe_loss_terms, resolve_loss_weights
from tests.conftest import TINY_VOCAB_SIZE, _tiny_vocabulary
from tiny_task_models import masked_lm_batch

VOCAB = 30
ALL_TERMS = ("attention_mse", "attention_kl", "value_relation")


def _encoder(architecture="bert", num_layers=3, num_heads=2, hidden_dim=16, vocabulary_size=VOCAB, mlm_head=False):
    encoder = Encoder(architecture, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                      hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim, max_sequence_length=32, dropout=0.0,
                      mlm_head=mlm_head, pooling="mean")
    encoder(encoder.dummy_inputs())
    return encoder


def _batch(seed=0, batch=4, length=8):
    return masked_lm_batch(VOCAB, seed, batch, length)  # rows 0 and 2 padded


def _perturbed_student(teacher, layer_map=(0, 2), scale=0.3):
    student, _ = init_student_from_teacher(teacher, layer_map=list(layer_map))
    rng = np.random.default_rng(7)
    student.set_weights([w + rng.normal(0, scale, w.shape).astype(w.dtype) for w in student.get_weights()])
    return student


def _attention_distiller(teacher, student, pairs, **alphas):
    alphas = {f"alpha_{name}": 1.0 for name in ALL_TERMS} if not alphas else alphas
    return MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0,
                             attention_mse_layer_pairs=pairs, **alphas)


# --- The recomputation is the layer's own attention -----------------------------------


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_recomputed_attention_equals_keras_own_scores_and_output(architecture):
    keras.utils.set_random_seed(1)
    encoder = _encoder(architecture)
    batch = _batch()
    hidden_states = encoder(batch)["hidden_states"]
    padding = tf.constant(batch["padding_mask"])
    for layer, block in enumerate(encoder.transformer_layers):
        # hidden_states[layer] is this layer's input: the block reproduces the next state from it.
        np.testing.assert_allclose(block(hidden_states[layer], padding_mask=padding), hidden_states[layer + 1],
                                   atol=1e-5)
        query, key, value = (attention.self_attention_projection(encoder, hidden_states, layer, name)
                             for name in ("query", "key", "value"))
        probabilities = tf.exp(attention.masked_log_softmax(attention.scaled_dot_products(query, key), padding))
        keras_output, keras_probabilities = block._self_attention_layer(
            query=hidden_states[layer], value=hidden_states[layer],
            attention_mask=tf.cast(padding, tf.bool)[:, None, :], return_attention_scores=True,
        )
        np.testing.assert_allclose(probabilities, keras_probabilities, atol=1e-5)
        # Probabilities x V through the output projection: the layer's attention output.
        context = tf.einsum("bhqk,bkhd->bqhd", probabilities, value)
        np.testing.assert_allclose(block._self_attention_layer.output_dense(context), keras_output, atol=1e-5)
        # Padding keys get no attention; every row is a distribution.
        assert float(tf.reduce_max(probabilities[0, :, :, 3:])) == 0.0
        np.testing.assert_allclose(tf.reduce_sum(probabilities, -1), 1.0, atol=1e-6)


# --- The pure losses against a NumPy reference (2 heads, seq 3) ------------------------


def _numpy_softmax(scores, real_keys):
    scores = np.where(real_keys, scores, -np.inf)
    exponentials = np.exp(scores - scores.max())
    return exponentials / exponentials.sum()


def _numpy_terms(teacher_qkv, student_qkv, mask):
    """Explicit loops over sentences, heads, real queries and real keys."""
    mse_rows, kl_rows, relation_rows = [], [], []
    for b in range(mask.shape[0]):
        real = np.flatnonzero(mask[b])
        for q in real:
            mse, kl, relation = [], [], []
            for h in range(2):
                def per_head(qkv):
                    query, key, value = (array[b, :, h, :].astype(np.float64) for array in qkv)
                    d = query.shape[-1]
                    scores = np.array([query[q] @ key[k] / np.sqrt(d) for k in range(3)])
                    relations = np.array([value[q] @ value[k] / np.sqrt(d) for k in range(3)])
                    return scores, relations

                (teacher_scores, teacher_relations), (student_scores, student_relations) = (
                    per_head(teacher_qkv), per_head(student_qkv))
                mse.append(np.mean([(student_scores[k] - teacher_scores[k]) ** 2 for k in real]))
                keys = mask[b].astype(bool)
                for target, teacher_values, student_values in ((kl, teacher_scores, student_scores),
                                                               (relation, teacher_relations, student_relations)):
                    p, r = _numpy_softmax(teacher_values, keys), _numpy_softmax(student_values, keys)
                    target.append(sum(p[k] * np.log(p[k] / r[k]) for k in real))
            mse_rows.append(np.mean(mse))
            kl_rows.append(np.mean(kl))
            relation_rows.append(np.mean(relation))
    return np.mean(mse_rows), np.mean(kl_rows), np.mean(relation_rows)


def _pure_terms(teacher_qkv, student_qkv, mask):
    (teacher_query, teacher_key, teacher_value), (student_query, student_key, student_value) = teacher_qkv, student_qkv
    teacher_scores = attention.scaled_dot_products(teacher_query, teacher_key)
    student_scores = attention.scaled_dot_products(student_query, student_key)
    return (
        float(attention.attention_score_mse(teacher_scores, student_scores, mask, mask)),
        float(attention.attention_kl(attention.masked_log_softmax(teacher_scores, mask),
                                     attention.masked_log_softmax(student_scores, mask), mask, mask)),
        float(attention.attention_kl(attention.value_relation_log_probabilities(teacher_value, mask),
                                     attention.value_relation_log_probabilities(student_value, mask), mask, mask)),
    )


def test_the_three_terms_match_numpy_on_two_heads_and_three_tokens_with_padding():
    rng = np.random.default_rng(0)
    # [batch 2, seq 3, heads 2, head_dim]: the student's heads are narrower (2 vs 4).
    teacher_qkv = [rng.normal(size=(2, 3, 2, 4)).astype("float32") for _ in range(3)]
    student_qkv = [rng.normal(size=(2, 3, 2, 2)).astype("float32") for _ in range(3)]
    mask = np.array([[1, 1, 1], [1, 1, 0]], "float32")
    expected = _numpy_terms(teacher_qkv, student_qkv, mask)
    assert min(expected) > 0.05, expected
    np.testing.assert_allclose(_pure_terms(teacher_qkv, student_qkv, mask), expected, rtol=1e-5)
    # The padding token's query, key and value: any value, the same losses.
    garbage = [array.copy() for array in student_qkv]
    for array in garbage:
        array[1, 2] = 1e3
    np.testing.assert_allclose(_pure_terms(teacher_qkv, garbage, mask), expected, rtol=1e-5)
    # Identical attention (same head size): all three are 0.
    np.testing.assert_allclose(_pure_terms(teacher_qkv, teacher_qkv, mask), 0.0, atol=1e-6)


# --- The distiller's terms ---------------------------------------------------------------


def test_terms_are_zero_for_a_student_copied_from_every_teacher_layer():
    teacher = _encoder()
    student, _ = init_student_from_teacher(teacher, layer_map=[0, 1, 2])
    distiller = _attention_distiller(teacher, student, [(1, 1), (2, 2), (3, 3)])
    batch = _batch()
    terms = distiller.loss_terms(batch, student(batch))
    for name in ALL_TERMS:
        assert abs(float(terms[name])) < 1e-6, (name, float(terms[name]))


# Which of the student's last-layer projections each term trains: the KL and
# MSE read only Q and K there, the value relation only V.
_TRAINED = {"attention_mse": ("query", "key"), "attention_kl": ("query", "key"), "value_relation": ("value",)}


@pytest.mark.parametrize("name", ALL_TERMS)
def test_each_term_is_positive_and_trains_the_students_projections(name):
    teacher = _encoder()
    student = _perturbed_student(teacher)
    distiller = _attention_distiller(teacher, student, [(1, 1), (2, 3)], **{f"alpha_{name}": 1.0})
    assert set(distiller.term_weights) == {"ce", "mlm", "cos", "mse", name}
    batch = _batch()
    last = student.transformer_layers[-1]._self_attention_layer
    kernels = {projection: getattr(last, f"{projection}_dense").kernel for projection in ("query", "key", "value")}
    with tf.GradientTape() as tape:
        value = distiller.loss_terms(batch, student(batch))[name]
    assert float(value) > 1e-3
    gradients = dict(zip(kernels, tape.gradient(value, list(kernels.values()))))
    for projection, gradient in gradients.items():
        trained = projection in _TRAINED[name]
        norm = 0.0 if gradient is None else float(tf.norm(gradient))
        assert (norm > 1e-6) == trained, (projection, norm)
    # The frozen teacher gets none.
    teacher_query = teacher.transformer_layers[-1]._self_attention_layer.query_dense.kernel
    with tf.GradientTape() as tape:
        value = distiller.loss_terms(batch, student(batch))[name]
    assert tape.gradient(value, teacher_query) is None


def test_micro_batch_shares_sum_to_the_full_batch_and_the_total_weights_each_term():
    """Row 0 holds 3 real tokens, the rest 6-8: per-part means would differ from the update's."""
    teacher = _encoder()
    student = _perturbed_student(teacher)
    distiller = _attention_distiller(teacher, student, [(1, 1), (2, 3)], alpha_attention_mse=0.5,
                                     alpha_attention_kl=2.0, alpha_value_relation=3.0)
    batch = _batch()
    outputs = student(batch)
    full = {name: float(value) for name, value in distiller.loss_terms(batch, outputs).items()}
    normalizers = distiller.loss_normalizers(batch)
    parts = [{key: value[rows] for key, value in batch.items()} for rows in (slice(0, 1), slice(1, 4))]
    shares = [distiller.micro_batch_loss(part, None, student(part), None, normalizers) for part in parts]
    for name in ALL_TERMS:
        assert full[name] > 1e-3, name
        assert sum(float(terms[name]) for _, terms in shares) == pytest.approx(full[name], rel=1e-5), name
    total = float(distiller.compute_loss(batch, y_pred=outputs, training=False))
    expected = 0.5 * full["attention_mse"] + 2.0 * full["attention_kl"] + 3.0 * full["value_relation"]
    assert total == pytest.approx(expected, rel=1e-5)
    config = distiller.get_config()
    assert (config["alpha_attention_mse"], config["alpha_attention_kl"], config["alpha_value_relation"]) == (
        0.5, 2.0, 3.0)
    assert config["attention_mse_layer_pairs"] == [[1, 1], [2, 3]]


def test_a_narrower_student_with_as_many_heads_is_fine_and_pairs_default_to_the_hidden_ones():
    teacher = _encoder()
    narrow = _encoder(num_layers=2, hidden_dim=8)  # head size 4 vs the teacher's 8
    # keras-hub's 0.02-scale initial kernels give near-uniform attention (terms ~1e-5): make it sharp.
    rng = np.random.default_rng(3)
    narrow.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in narrow.get_weights()])
    distiller = MaskedLMDistiller(teacher, narrow, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0,
                                  alpha_attention_mse=1.0, alpha_attention_kl=1.0, alpha_value_relation=1.0,
                                  hidden_mse_layer_pairs=[(2, 3)])
    assert distiller.attention_mse_layer_pairs == [(2, 3)]
    batch = _batch()
    terms = distiller.loss_terms(batch, narrow(batch))
    assert all(float(terms[name]) > 1e-3 for name in ALL_TERMS)


def test_the_terms_compile_with_xla_and_run_under_mixed_bfloat16():
    teacher = _encoder()
    student = _perturbed_student(teacher)
    distiller = _attention_distiller(teacher, student, [(1, 1), (2, 3)])
    batch = {key: tf.constant(value) for key, value in _batch().items()}
    eager = {name: float(value) for name, value in distiller.loss_terms(batch, student(batch)).items()}
    compiled = tf.function(lambda inputs: distiller.loss_terms(inputs, student(inputs)), jit_compile=True)(batch)
    for name in ALL_TERMS:
        assert float(compiled[name]) == pytest.approx(eager[name], rel=1e-4), name
    # Half-precision projections, float32 scores and losses: finite and close.
    policy = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        half_teacher = _encoder()
        half_teacher.set_weights(teacher.get_weights())
        half_student = _perturbed_student(half_teacher)
        half_student.set_weights(student.get_weights())
        half = _attention_distiller(half_teacher, half_student, [(1, 1), (2, 3)])
        terms = half.loss_terms(batch, half_student(batch))
    finally:
        keras.config.set_dtype_policy(policy)
    for name in ALL_TERMS:
        assert terms[name].dtype == tf.float32, name
        assert float(terms[name]) == pytest.approx(eager[name], rel=0.1), name


@pytest.mark.parametrize("name", ALL_TERMS)
def test_different_head_counts_are_one_line_naming_the_method_and_both_counts(name):
    teacher = _encoder()
    student = _encoder(num_layers=2, num_heads=4)
    with pytest.raises(ValueError) as error:
        _attention_distiller(teacher, student, [(-1, -1)], **{f"alpha_{name}": 1.0})
    message = str(error.value)
    assert "\n" not in message
    assert f"alpha_{name} ({attention.ATTENTION_TERMS[f'alpha_{name}']})" in message
    assert "the teacher has 2 heads and the student 4" in message and f"set alpha_{name}=0" in message
    # Off, the same pair is fine.
    MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_pooled_relation=1.0)


def test_the_embedding_output_has_no_attention():
    teacher = _encoder()
    student = _perturbed_student(teacher)
    with pytest.raises(ValueError, match="index 0 is the embedding output"):
        _attention_distiller(teacher, student, [(0, 0)], alpha_attention_mse=1.0)
    with pytest.raises(ValueError, match="out of range"):
        _attention_distiller(teacher, student, [(3, 1)], alpha_attention_mse=1.0)


# --- The driver: weights, announcement, a short CLI run ----------------------------------


def test_weights_are_reported_only_when_set_and_announced():
    weights, _ = resolve_loss_weights(DistillationConfig(), teacher_has_mlm_head=True, teacher_pooling="mean")
    assert not set(ALL_TERMS) & set(weights)
    config = DistillationConfig(alpha_attention_mse=1.0, alpha_attention_kl=0.5, alpha_value_relation=2.0)
    weights, reason = resolve_loss_weights(config, teacher_has_mlm_head=True, teacher_pooling="mean")
    assert (weights["attention_mse"], weights["attention_kl"], weights["value_relation"]) == (1.0, 0.5, 2.0)
    line = describe_loss_terms(weights, reason, True, "last", "all", None)
    assert "attention_mse(all) 1.0, attention_kl(last) 0.5, value_relation(last) 2.0" in line


WORDS = ["the", "a", "movie", "good", "bad", "is", "was", "not", "great", "film", "i", "it", "and", "to",
         "of", "very", "fun", "boring", "hello", "world", "this", "test"]


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    """A random 2-layer hidden-16 BERT teacher with an MLM head, as a model directory, and a corpus."""
    directory = tmp_path_factory.mktemp("attention_run")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(_tiny_vocabulary()) + "\n")
    keras.utils.set_random_seed(5)
    teacher = _encoder(num_layers=2, vocabulary_size=TINY_VOCAB_SIZE, mlm_head=True)
    teacher_dir = save_model(teacher, directory / "teacher", load_tokenizer(vocab), provenance={"kind": "test"})
    rng = np.random.default_rng(0)
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, rng.integers(8, 20))) + " ." for _ in range(200)) + "\n")
    return teacher_dir, corpus


def _distill(capsys, teacher_dir, student, corpus, out, *overrides):
    args = ["distill", "--teacher", str(teacher_dir), "--student", str(student), "--corpus", str(corpus),
            "--out", str(out), "--steps", "3", "--batch-size", "8", "--max-seq-length", "24",
            "--set", "data.min_seq_length=4", "--set", "log_every=1"]
    for override in overrides:
        args += ["--set", override]
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.large  # ~60 s on the shared 2-core machine: a real 3-step run, token counting and saving
def test_a_short_distill_run_with_the_attention_terms_announces_them_and_finishes(tmp_path, capsys,
                                                                                  tiny_run_inputs):
    teacher_dir, corpus = tiny_run_inputs
    out = tmp_path / "run"
    code, stdout, stderr = _distill(capsys, teacher_dir, "0,1", corpus, out, "distillation.alpha_attention_mse=1",
                                    "distillation.alpha_attention_kl=0.5", "distillation.alpha_value_relation=2")
    assert code == 0, stderr[-2000:]
    assert stdout.count("attention_mse(all) 1.0, attention_kl(last) 0.5, value_relation(last) 2.0") == 1, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ALL_TERMS:
        assert np.isfinite(metrics["final_train_loss"][f"loss_{name}"]), name
    assert metrics["loss_weights"]["value_relation"] == 2.0
    provenance = json.loads((out / "student" / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["distillation"]["alpha_attention_kl"] == 0.5


def test_a_student_with_other_head_counts_is_refused_before_training_in_one_line(tmp_path, capsys,
                                                                                 tiny_run_inputs):
    teacher_dir, corpus = tiny_run_inputs
    four_heads = tmp_path / "four_heads"
    assert main(["init-student", "--teacher", str(teacher_dir), "--out", str(four_heads), "--num-layers", "1",
                 "--hidden-size", "16", "--num-heads", "4"]) == 0
    capsys.readouterr()
    code, _, stderr = _distill(capsys, teacher_dir, four_heads, corpus, tmp_path / "refused",
                               "distillation.alpha_attention_kl=1")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert ("alpha_attention_kl (MiniLM's self-attention KL) compares attention head by head, but the teacher has "
            "2 heads and the student 4" in stderr and "--set distillation.alpha_attention_kl=0" in stderr), stderr
    assert not (tmp_path / "refused" / "checkpoints").exists()
