"""Students narrower than the teacher: the learned hidden-state projection (TinyBERT's W_h) and `init-student --hidden-size`.

Tiny models: a hidden-16 BERT teacher against hidden-8 students, as in the
other tests of this folder; the end-to-end runs use a generated corpus of the
tiny vocabulary's words (`tests/conftest.py`).
"""

import json

import h5py
import keras
import numpy as np
import pytest

from distil_tf import config as config_lib
from distil_tf import load_model
from distil_tf.cli import main
from distil_tf.distillation import MaskedLMDistiller
from distil_tf.models import Encoder, init_student_from_teacher, save_model
from distil_tf.text import load_tokenizer
from distil_tf.training.distill import (
    DistillConfig,
    DistillationConfig,
    describe_loss_terms,
    describe_projection,
    resolve_hidden_projection,
    resolve_loss_weights,
    run_distillation,
)
from tests.conftest import TINY_VOCAB_SIZE, _tiny_vocabulary
from tiny_task_models import masked_lm_batch

VOCAB = 30


def _encoder(hidden, architecture="bert", num_layers=2, mlm_head=True, vocabulary_size=VOCAB, pooling="mean"):
    encoder = Encoder(architecture, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=2,
                      hidden_dim=hidden, intermediate_dim=2 * hidden, max_sequence_length=32, dropout=0.0,
                      mlm_head=mlm_head, pooling=pooling)
    encoder(encoder.dummy_inputs())
    return encoder


def _batch(seed=0, batch=4, length=8):
    return masked_lm_batch(VOCAB, seed, batch, length)


def _weighted_mean(values, weights):
    return np.sum(values * weights) / np.sum(weights)


def _mean_pool(sequence, mask):
    mask = mask[:, :, None].astype("float64")
    return np.sum(sequence * mask, axis=1) / mask.sum(axis=1)


def _cosine(a, b):
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# --- The projected terms against NumPy -----------------------------------------------


def test_projected_hidden_terms_equal_numpy_with_the_dense_kernel():
    teacher = _encoder(16, mlm_head=False)
    student = _encoder(8, architecture="distilbert", mlm_head=False)
    pairs = [(1, 1), (2, 2)]
    distiller = MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0,
                                  alpha_hidden_mse=1.0, hidden_mse_layer_pairs=pairs, alpha_pooled_cos=1.0,
                                  alpha_pooled_mse=1.0, hidden_projection="auto")
    assert isinstance(distiller.projection, keras.layers.Dense) and distiller.projection.activation is keras.activations.linear
    kernel, bias = distiller.projection.get_weights()
    assert kernel.shape == (8, 16) and bias.shape == (16,)
    # A bias away from 0, so the test sees it is applied.
    rng = np.random.default_rng(4)
    kernel = rng.normal(0, 0.5, (8, 16)).astype("float32")
    bias = rng.normal(0, 0.5, 16).astype("float32")
    distiller.projection.set_weights([kernel, bias])

    batch = _batch()
    student_out, teacher_out = student(batch), teacher(batch)
    terms = {name: float(value) for name, value in distiller.loss_terms(batch, student_out).items()}
    mask = batch["padding_mask"].astype("float64")

    def teacher_state(index):
        return np.asarray(teacher_out["hidden_states"][index], np.float64)

    def projected(index):
        return np.asarray(student_out["hidden_states"][index], np.float64) @ kernel + bias

    expected_mse = np.mean([_weighted_mean(np.mean((projected(s) - teacher_state(t)) ** 2, -1), mask)
                            for s, t in pairs])
    expected_cos = _weighted_mean(1 - _cosine(projected(-1), teacher_state(-1)), mask)
    teacher_pooled = _mean_pool(teacher_state(-1), batch["padding_mask"])
    student_pooled = _mean_pool(projected(-1), batch["padding_mask"])
    assert terms["hidden_mse"] == pytest.approx(expected_mse, rel=1e-4)
    assert terms["cos"] == pytest.approx(expected_cos, rel=1e-4)
    assert terms["pooled_cos"] == pytest.approx(np.mean(1 - _cosine(student_pooled, teacher_pooled)), rel=1e-4)
    assert terms["pooled_mse"] == pytest.approx(np.mean((student_pooled - teacher_pooled) ** 2), rel=1e-4)
    # The projection trains with the student and belongs to the distiller, not to it.
    trainable = {variable.path for variable in distiller.trainable_weights}
    assert {"hidden_projection/kernel", "hidden_projection/bias"} <= trainable
    assert not [weight for weight in student.weights if "projection" in weight.path]
    assert len(distiller.trainable_weights) == len(student.trainable_weights) + 2
    assert distiller.get_config()["hidden_projection"] == "auto"


def test_the_relation_term_keeps_the_unprojected_student():
    teacher = _encoder(16, mlm_head=False)
    student = _encoder(8, architecture="distilbert", mlm_head=False)
    kwargs = dict(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_pooled_relation=1.0)
    with_projection = MaskedLMDistiller(teacher, student, alpha_pooled_mse=1.0, hidden_projection="auto", **kwargs)
    without = MaskedLMDistiller(teacher, student, **kwargs)
    assert without.projection is None  # no hidden-state term: nothing to project for
    batch = _batch(batch=6)
    outputs = student(batch)
    relation = float(with_projection.loss_terms(batch, outputs)["pooled_relation"])
    assert relation > 0.01
    assert relation == pytest.approx(float(without.loss_terms(batch, outputs)["pooled_relation"]), rel=1e-6)


def test_never_with_different_widths_is_one_line_naming_the_option():
    teacher = _encoder(16, mlm_head=False)
    student = _encoder(8, architecture="distilbert", mlm_head=False)
    with pytest.raises(ValueError, match=r"hidden_projection='auto'") as error:
        MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_hidden_mse=1.0,
                          hidden_projection="never")
    assert "\n" not in str(error.value) and "alpha_cos=0" in str(error.value)
    with pytest.raises(ValueError, match="hidden_projection must be one of auto, always, never"):
        MaskedLMDistiller(teacher, student, alpha_ce=0.0, alpha_mlm=0.0, hidden_projection="sometimes")

    # The run's check, on the resolved weights: names the option and both ways out.
    config = config_lib.apply_overrides(DistillConfig(), ["distillation.hidden_projection=never"])
    weights, _ = resolve_loss_weights(config.distillation, teacher_has_mlm_head=False, teacher_pooling="mean")
    with pytest.raises(ValueError) as error:
        resolve_hidden_projection(config.distillation, weights, 16, 8)
    message = str(error.value)
    assert "\n" not in message and "distillation.hidden_projection=never" in message
    assert "--set distillation.hidden_projection=auto" in message
    assert "--set distillation.alpha_hidden_mse=0" in message and "--set distillation.alpha_cos=0" in message
    assert "teacher's hidden size (16) differs from the student's (8)" in message
    # Equal widths or no hidden-state term: nothing to refuse.
    assert resolve_hidden_projection(config.distillation, weights, 16, 16) is False
    relation_only = dict(weights, cos=0.0, hidden_mse=0.0, pooled_cos=0.0, pooled_relation=1.0)
    assert resolve_hidden_projection(config.distillation, relation_only, 16, 8) is False
    assert resolve_hidden_projection(DistillationConfig(), weights, 16, 8) is True  # auto
    with pytest.raises(ValueError, match="must be 'auto', 'always' or 'never'"):
        resolve_hidden_projection(DistillationConfig(hidden_projection="yes"), weights, 16, 8)


def test_equal_widths_with_an_explicit_projection_start_as_the_identity_and_are_announced():
    teacher = _encoder(16, mlm_head=False)
    student, _ = init_student_from_teacher(teacher, layer_map=[0, 1])  # every layer: a copy
    rng = np.random.default_rng(7)
    student.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in student.get_weights()])
    kwargs = dict(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0, alpha_hidden_mse=1.0,
                  hidden_mse_layer_pairs=[(1, 1), (2, 2)], alpha_pooled_cos=1.0)
    projected = MaskedLMDistiller(teacher, student, hidden_projection="always", **kwargs)
    plain = MaskedLMDistiller(teacher, student, **kwargs)
    assert MaskedLMDistiller(teacher, student, hidden_projection="auto", **kwargs).projection is None
    kernel, bias = projected.projection.get_weights()
    np.testing.assert_array_equal(kernel, np.eye(16, dtype="float32"))
    np.testing.assert_array_equal(bias, np.zeros(16, "float32"))
    batch = _batch()
    outputs = student(batch)
    with_terms, without_terms = projected.loss_terms(batch, outputs), plain.loss_terms(batch, outputs)
    for name in ("cos", "hidden_mse", "pooled_cos"):
        assert float(with_terms[name]) > 1e-4, name
        assert float(with_terms[name]) == pytest.approx(float(without_terms[name]), rel=1e-6), name
    text = describe_projection(16, 16)
    assert text == "learned 16->16 (hidden_projection=always; widths equal: harmless, it starts as the identity)"
    assert describe_projection(16, 8) == "learned 8->16 (the student is narrower: TinyBERT's W_h)"
    weights, reason = resolve_loss_weights(DistillationConfig(), False, "mean")
    line = describe_loss_terms(weights, reason, False, "last", "all", "mean", text)
    assert line.endswith(f"; input: unmasked text (no MLM term); hidden projection: {text}")
    # Without a projection the line is unchanged.
    assert "projection" not in describe_loss_terms(weights, reason, False, "last", "all", "mean")


# --- End to end: init-student --hidden-size, distill, save, resume -------------------


WORDS = ["the", "a", "movie", "good", "bad", "is", "was", "not", "great", "film", "i", "it", "and", "to",
         "of", "very", "fun", "boring", "hello", "world", "this", "test"]


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory):
    """A random hidden-16 BERT with an MLM head, as a distil-tf model directory of the tiny vocabulary."""
    directory = tmp_path_factory.mktemp("narrow")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(_tiny_vocabulary()) + "\n")
    keras.utils.set_random_seed(5)
    teacher = _encoder(16, num_layers=2, vocabulary_size=TINY_VOCAB_SIZE, pooling="mean")
    return save_model(teacher, directory / "teacher", load_tokenizer(vocab),
                      provenance={"kind": "test teacher"})


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, rng.integers(8, 20))) + " ." for _ in range(400)]
    path = tmp_path_factory.mktemp("narrow_corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def narrow_student_dir(tiny_teacher_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("narrow_student") / "student"
    assert main(["init-student", "--teacher", str(tiny_teacher_dir), "--out", str(out), "--num-layers", "1",
                 "--hidden-size", "8", "--num-heads", "2"]) == 0
    return out


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_student_hidden_size_writes_a_random_narrow_student(tmp_path, capsys, tiny_teacher_dir):
    out = tmp_path / "s"
    code, stdout, stderr = _run(capsys, "init-student", "--teacher", str(tiny_teacher_dir), "--out", str(out),
                                "--hidden-size", "8", "--num-heads", "2")
    assert code == 0, stderr
    assert "random init: hidden size 8 (2 heads, feed-forward 32) vs the teacher's 16" in stdout
    assert "layer map:" not in stdout
    student = load_model(out)
    assert (student.hidden_dim, student.num_heads, student.intermediate_dim) == (8, 2, 32)  # 4 x 8
    assert student.num_layers == 1 and student.vocabulary_size == TINY_VOCAB_SIZE  # half of 2 layers
    provenance = json.loads((out / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["initialization"] == "random" and provenance["layer_map"] is None
    assert (provenance["hidden_size"], provenance["teacher_hidden_size"]) == (8, 16)
    code, stdout, _ = _run(capsys, "info", str(out))
    assert code == 0
    assert "hidden size:    8  heads: 2  feed-forward: 32" in stdout
    assert ("initialization: random init (hidden size 8 vs the teacher's 16: teacher layers cannot be copied)"
            in stdout)

    # A head count that does not divide the hidden size: one line, exit 2, nothing written.
    bad = tmp_path / "bad"
    code, _, stderr = _run(capsys, "init-student", "--teacher", str(tiny_teacher_dir), "--out", str(bad),
                           "--hidden-size", "8", "--num-heads", "3")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert stderr == ("distil-tf: error: the student's hidden size 8 is not divisible by its 3 attention heads: "
                      "choose a head count that divides it (--num-heads)\n")
    assert not bad.exists()


def test_init_student_help_documents_random_init(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["init-student", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--hidden-size" in text and "random init" in text and "narrower width" in text
    assert "4 x --hidden-size" in text


class _Recorder(keras.callbacks.Callback):
    """Batch losses and the projection's weights at the start, after each batch and at the end."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.losses, self.after_batch = [], []
        self.stop_after = stop_after

    def _projection(self):
        return [np.array(weight) for weight in self.model.projection.get_weights()]

    def on_train_begin(self, logs=None):
        self.initial = self._projection()

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.after_batch.append(self._projection())
        if self.stop_after is not None and batch + 1 == self.stop_after:
            # After StepCheckpoint (earlier in the callback list) saved this step.
            raise _Interrupted()

    def on_train_end(self, logs=None):
        self.final = self._projection()


class _Interrupted(Exception):
    pass


def _config(teacher, student, corpus, out, steps, *overrides):
    config = DistillConfig(teacher=str(teacher), student=str(student), out=str(out), steps=steps)
    config.data.corpus = [str(corpus)]
    return config_lib.apply_overrides(config, [
        "data.batch_size=8", "data.max_seq_length=24", "data.min_seq_length=4", "runtime.seed=3",
        "optimizer.learning_rate=3e-3", "optimizer.warmup_proportion=0", "log_every=1",
        # Every hidden-state term on, so the projection serves all four.
        "distillation.alpha_hidden_mse=1.0", "distillation.alpha_pooled_cos=1.0",
        "distillation.alpha_pooled_mse=1.0", *overrides,
    ])


def _h5_arrays(path):
    """`{dataset path: array}` of a Keras `.weights.h5` file."""
    arrays = {}
    with h5py.File(path, "r") as weights:
        weights.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                           if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_a_narrow_student_distils_its_projection_trains_and_is_left_out_of_the_saved_student(
        tmp_path, capsys, tiny_teacher_dir, narrow_student_dir, tiny_corpus):
    out = tmp_path / "run"
    recorder = _Recorder()
    summary = run_distillation(_config(tiny_teacher_dir, narrow_student_dir, tiny_corpus, out, 16,
                                       "checkpoint_every=8"), callbacks=[recorder])
    announcement = capsys.readouterr().out
    assert "hidden projection: learned 8->16 (the student is narrower: TinyBERT's W_h)" in announcement
    assert summary["hidden_projection"] is True
    assert {"loss_cos", "loss_hidden_mse", "loss_pooled_cos", "loss_pooled_mse", "loss_ce",
            "loss_mlm"} <= set(summary["final_train_loss"])
    losses = recorder.losses
    assert len(losses) == 16 and all(np.isfinite(losses))
    # Keras logs the epoch's running mean: its fall is learning.
    assert losses[-1] < losses[0] - 0.05, losses
    kernel_change = np.abs(recorder.final[0] - recorder.initial[0]).max()
    bias_change = np.abs(recorder.final[1] - recorder.initial[1]).max()
    assert kernel_change > 1e-3 and bias_change > 1e-3, (kernel_change, bias_change)

    # The run's checkpoint holds the projection; the student directory does not.
    # Keras names the h5 groups by layer class: the projection is the distiller's one `dense`.
    checkpoint = _h5_arrays(next((out / "checkpoints").glob("*.weights.h5")))
    np.testing.assert_array_equal(checkpoint["layers/dense/vars/0"], recorder.final[0])
    np.testing.assert_array_equal(checkpoint["layers/dense/vars/1"], recorder.final[1])
    student_dir = out / "student"
    (saved_file,) = student_dir.glob("*.weights.h5")
    (initial_file,) = narrow_student_dir.glob("*.weights.h5")
    saved, initial = _h5_arrays(saved_file), _h5_arrays(initial_file)
    # Exactly the encoder's arrays, no (8, 16) kernel or 16-bias among them.
    assert {name: array.shape for name, array in saved.items()} == {
        name: array.shape for name, array in initial.items()}
    assert not [name for name in saved if "dense/vars" in name and name.count("/") == 3]
    student = load_model(student_dir)
    assert isinstance(student, Encoder) and student.hidden_dim == 8
    assert not [weight for weight in student.weights if "projection" in weight.path]
    fresh = load_model(narrow_student_dir)
    assert [w.shape for w in student.get_weights()] == [w.shape for w in fresh.get_weights()]
    assert max(np.abs(a - b).max() for a, b in zip(student.get_weights(), fresh.get_weights())) > 1e-3
    provenance = json.loads((student_dir / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["initialization"] == "random"  # the student directory's own record
    assert provenance["distillation"]["hidden_projection"] == "auto"


def test_resume_restores_the_projection_exactly(tmp_path, capsys, tiny_teacher_dir, narrow_student_dir,
                                                tiny_corpus):
    def config(out):
        return _config(tiny_teacher_dir, narrow_student_dir, tiny_corpus, out, 8, "checkpoint_every=4")

    reference = _Recorder()
    run_distillation(config(tmp_path / "a"), callbacks=[reference])
    interrupted = _Recorder(stop_after=4)
    with pytest.raises(_Interrupted):
        run_distillation(config(tmp_path / "b"), callbacks=[interrupted])
    assert json.loads((tmp_path / "b/checkpoints/checkpoint.json").read_text())["step"] == 4
    assert not (tmp_path / "b" / "student").exists()
    resumed = _Recorder()
    summary = run_distillation(config(tmp_path / "b"), callbacks=[resumed])
    assert summary["resumed_from_step"] == 4
    # The projection the resumed run starts from is the step-4 one, to the bit.
    for restored, saved in zip(resumed.initial, interrupted.after_batch[3]):
        np.testing.assert_array_equal(restored, saved)
    assert np.abs(resumed.initial[0] - interrupted.initial[0]).max() > 1e-4  # it had moved by step 4
    # ...and the rest of the run ends where the uninterrupted one did.
    for a, b in zip(reference.final, resumed.final):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(load_model(tmp_path / "a" / "student").get_weights(),
                    load_model(tmp_path / "b" / "student").get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_equal_widths_with_hidden_projection_always_runs_and_is_reported(tmp_path, capsys, tiny_teacher_dir,
                                                                          narrow_student_dir, tiny_corpus):
    out = tmp_path / "equal"
    code, stdout, stderr = _run(
        capsys, "distill", "--teacher", str(tiny_teacher_dir), "--student", "0,1", "--corpus", str(tiny_corpus),
        "--out", str(out), "--steps", "4", "--batch-size", "8", "--max-seq-length", "24",
        "--set", "data.min_seq_length=4", "--set", "distillation.alpha_hidden_mse=1",
        "--set", "distillation.hidden_projection=always",
    )
    assert code == 0, stderr[-2000:]
    assert stdout.count("hidden projection: learned 16->16 (hidden_projection=always; widths equal: harmless, "
                        "it starts as the identity)") == 1, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hidden_projection"] is True and all(np.isfinite(list(metrics["final_train_loss"].values())))
    student = load_model(out / "student")
    assert student.hidden_dim == 16 and not [w for w in student.weights if "projection" in w.path]

    # A narrower student under "never": the run refuses in one line naming the option, before training.
    code, _, stderr = _run(
        capsys, "distill", "--teacher", str(tiny_teacher_dir), "--student", str(narrow_student_dir),
        "--corpus", str(tiny_corpus), "--out", str(tmp_path / "never"), "--steps", "2",
        "--set", "distillation.hidden_projection=never",
    )
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert ("distillation.alpha_cos=1 compares hidden states, but the teacher's hidden size (16) differs from "
            "the student's (8) and distillation.hidden_projection=never: --set distillation.hidden_projection=auto"
            in stderr), stderr
    assert not (tmp_path / "never" / "checkpoints").exists()
