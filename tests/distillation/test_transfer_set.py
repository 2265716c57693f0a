"""The transfer set and the teacher-output cache: hit, stale, exact losses, resume, bad input."""

import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf import cli
from distil_tf.data.glue import TextExample
from distil_tf.distillation import transfer_set
from distil_tf.distillation.task_distiller import TaskDistiller
from distil_tf.models import Encoder, TaskModel
from distil_tf.tasks import registry
from distil_tf.text import load_tokenizer
from distil_tf.training.fit import fit

SST2 = registry.get_task("glue/sst2")
RTE = registry.get_task("glue/rte")
SENTENCES = ["the movie was good", "a bad film", "very fun !", "boring and bad", "it was great",
             "not good", "this test is fun", "hello world , the film"]


def _examples(count=8):
    return [TextExample(f"t:{i}", SENTENCES[i % len(SENTENCES)], None, i % 2) for i in range(count)]


def _task_model(seed, num_layers=1, head_type="classification", length=32):
    keras.utils.set_random_seed(seed)
    encoder = Encoder("bert", vocabulary_size=99, num_layers=num_layers, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, max_sequence_length=length, dropout=0.0, mlm_head=False)
    encoder(encoder.dummy_inputs())
    kwargs = {"num_classes": 2} if head_type == "classification" else {}
    model = TaskModel.from_encoder(encoder, head_type, classifier_dropout=0.0, **kwargs)
    # Scale the head up so the soft-target KL is far above float32 noise.
    kernel = model.classifier.kernel
    kernel.assign(np.random.default_rng(seed).normal(0, 3, kernel.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def tokenizer(tiny_vocab_file):
    return load_tokenizer(tiny_vocab_file)


@pytest.fixture(scope="module")
def teacher():
    return _task_model(0, num_layers=2)


def _cache(tmp_path, transfer, teacher, notes=None):
    print_note = notes.append if notes is not None else print
    return transfer_set.TeacherOutputCache(
        tmp_path / transfer_set.CACHE_DIR, transfer, teacher, transfer_set.fingerprint(transfer, teacher),
        batch_size=3, note=print_note,
    )


def test_cache_hit_miss_and_stale(tmp_path, tokenizer, teacher):
    transfer = transfer_set.TransferSet(SST2, _examples(), tokenizer, 32)
    notes = []
    cache = _cache(tmp_path, transfer, teacher, notes)
    assert cache.ensure() == transfer_set.BUILT and not notes
    manifest = json.loads((tmp_path / "teacher_outputs" / "manifest.json").read_text())
    assert manifest["records"] == 8 and manifest["counts"] == {"labelled": 8, "augmented": 0, "unlabeled": 0}
    assert _cache(tmp_path, transfer, teacher, notes).ensure() == transfer_set.HIT and not notes
    # Another teacher: recomputed, with a one-line note that says why.
    other = _task_model(5, num_layers=2)
    assert _cache(tmp_path, transfer, other, notes).ensure() == transfer_set.BUILT
    assert len(notes) == 1 and "stale" in notes[0] and "teacher weights" in notes[0]
    # Another sequence length: recomputed too.
    shorter = transfer_set.TransferSet(SST2, _examples(), tokenizer, 16)
    assert _cache(tmp_path, shorter, other, notes).ensure() == transfer_set.BUILT
    assert len(notes) == 2 and "sequence length" in notes[1]
    # A foreign manifest is never reused.
    (tmp_path / "teacher_outputs" / "manifest.json").write_text('{"something": "else"}')
    assert _cache(tmp_path, shorter, other, notes).ensure() == transfer_set.BUILT
    assert "not a teacher-output cache" in notes[2]


def test_cached_records_hold_the_ids_and_logits_the_teacher_scored(tmp_path, tokenizer, teacher):
    transfer = transfer_set.TransferSet(SST2, _examples(), tokenizer, 32)
    cache = _cache(tmp_path, transfer, teacher)
    cache.ensure()
    features, labels = next(iter(cache.dataset_factory(seed=1)(None, 8)))
    assert "teacher_outputs" in labels and set(labels["label_weight"].numpy()) == {1.0}
    expected = teacher(features, training=False)["logits"]
    np.testing.assert_allclose(labels["teacher_outputs"]["logits"], expected, atol=1e-5)
    # The same ids as the ordinary pipeline (same tokenizer, packer, length).
    from distil_tf.tasks import task_inputs

    plain, plain_labels = next(iter(task_inputs.text_batches(SST2, _examples(), tokenizer, 32, 8)))
    as_rows = lambda ids, mask: sorted(tuple(row[: int(m.sum())]) for row, m in zip(ids.numpy(), mask.numpy()))
    assert as_rows(features["token_ids"], features["padding_mask"]) == \
        as_rows(plain["token_ids"], plain["padding_mask"])


def test_length_grouped_cached_batches_keep_each_row_with_its_teacher_logits(tmp_path, tokenizer, teacher):
    transfer = transfer_set.TransferSet(SST2, _examples(), tokenizer, 32)
    cache = _cache(tmp_path, transfer, teacher)
    cache.ensure()
    batches = list(cache.dataset_factory(seed=1, group_by_length_batches=2)(None, 3))
    assert sum(int(f["token_ids"].shape[0]) for f, _ in batches) == 8
    for features, labels in batches:
        # Trimmed after grouping: no all-padding column beyond a multiple of 16.
        assert int(features["token_ids"].shape[1]) == 16
        np.testing.assert_allclose(labels["teacher_outputs"]["logits"],
                                   teacher(features, training=False)["logits"], atol=1e-5)


def _distiller(teacher, seed=1):
    student = _task_model(seed)
    distiller = TaskDistiller(teacher, student)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    return distiller


def test_a_step_from_the_cache_equals_the_on_the_fly_teacher(tmp_path, tokenizer, teacher):
    examples = _examples()
    transfer = transfer_set.TransferSet(SST2, examples, tokenizer, 32)
    cache = _cache(tmp_path, transfer, teacher)
    cache.ensure()
    features, labels = next(iter(cache.dataset_factory(seed=3)(None, 8)))
    on_the_fly = {key: value for key, value in labels.items() if key != "teacher_outputs"}
    cached_run, live_run = _distiller(teacher), _distiller(teacher)
    calls = []
    original_call = teacher.call
    teacher.call = lambda *args, **kwargs: calls.append(1) or original_call(*args, **kwargs)
    try:
        cached_logs = cached_run.train_step((features, labels))
        assert not calls, "the train step ran the teacher although its outputs were cached"
        live_logs = live_run.train_step((features, on_the_fly))
        assert calls
    finally:
        del teacher.call
    for key in ("loss", "distillation_loss", "student_loss"):
        np.testing.assert_allclose(float(cached_logs[key]), float(live_logs[key]), atol=1e-5)
    assert float(cached_logs["distillation_loss"]) > 1e-2
    for a, b in zip(cached_run.student.get_weights(), live_run.student.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_span_logits_come_back_from_float16_within_its_precision(tmp_path, tokenizer):
    span_teacher = _task_model(0, head_type="span")
    rng = np.random.default_rng(0)

    class Window:  # the fields of squad_lib.InputFeatures the transfer set reads
        def __init__(self, length):
            ids = [7] + rng.integers(9, 99, length - 2).tolist() + [8]
            self.input_ids = ids + [0] * (32 - length)
            self.segment_ids = [0] * 4 + [1] * (length - 4) + [0] * (32 - length)
            self.input_mask = [1] * length + [0] * (32 - length)
            self.start_position, self.end_position = 5, 6

    windows = [Window(length) for length in (12, 20, 32, 9)]
    spec = registry.get_task("squad/v1.1")
    transfer = transfer_set.TransferSet(spec, windows, tokenizer, 32)
    cache = _cache(tmp_path, transfer, span_teacher)
    cache.ensure()
    features, labels = next(iter(cache.dataset_factory(seed=0, trim=False)(None, 4)))
    outputs = span_teacher(features, training=False)
    mask = features["padding_mask"].numpy().astype(bool)
    for key in ("start_logits", "end_logits"):
        cached = labels["teacher_outputs"][key].numpy()
        np.testing.assert_allclose(cached[mask], outputs[key].numpy()[mask], rtol=2e-3, atol=2e-3)
        assert np.all(cached[~mask] == transfer_set.PADDING_LOGIT)


def _make_model(teacher, steps):
    from distil_tf.training.optimization import OptimizerConfig, build_optimizer

    student = _task_model(1)
    distiller = TaskDistiller(teacher, student)
    distiller.compile(optimizer=build_optimizer(OptimizerConfig(learning_rate=0.05), steps))
    return distiller


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, updates):
        super().__init__()
        self.updates = updates

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.updates:
            raise KeyboardInterrupt


def _batches(dataset, count):
    return [(f["token_ids"].numpy().tolist(), l["teacher_outputs"]["logits"].numpy().tolist())
            for f, l in dataset.take(count)]


def test_cached_batches_replay_exactly_where_a_resumed_fit_restarts(tmp_path, tokenizer, teacher):
    # `fit` resumes with `make(...).repeat().skip(done)`: the cached stream
    # must be a function of the seed only, epoch after epoch.
    transfer = transfer_set.TransferSet(SST2, _examples(6), tokenizer, 32)
    cache = _cache(tmp_path, transfer, teacher)
    cache.ensure()
    uninterrupted = _batches(cache.dataset_factory(seed=7)(None, 2).repeat(), 7)
    again = _cache(tmp_path, transfer, teacher)
    assert again.ensure() == transfer_set.HIT
    resumed = _batches(again.dataset_factory(seed=7)(None, 2).repeat().skip(4), 3)
    assert resumed == uninterrupted[4:]
    # Epochs are reshuffled, and another seed gives another order.
    assert uninterrupted[:3] != uninterrupted[3:6]
    assert _batches(cache.dataset_factory(seed=8)(None, 2).repeat(), 6) != uninterrupted[:6]


@pytest.mark.large
def test_resume_from_the_cache_ends_with_the_uninterrupted_weights(tmp_path, tokenizer, teacher):
    transfer = transfer_set.TransferSet(SST2, _examples(6), tokenizer, 32)
    cache = _cache(tmp_path, transfer, teacher)
    cache.ensure()
    make = cache.dataset_factory(seed=7)
    steps = 6  # two epochs of 3 batches: the resumed run crosses an epoch boundary
    reference = _make_model(teacher, steps)
    fit(reference, make, tmp_path / "a", steps, global_batch_size=2, checkpoint_every=2, verbose=0)
    crashed = _make_model(teacher, steps)
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, make, tmp_path / "b", steps, global_batch_size=2, checkpoint_every=2, verbose=0,
            callbacks=[_StopAfter(3)])
    resumed = _make_model(teacher, steps)
    # The cache is read again, as a restarted command would.
    again = _cache(tmp_path, transfer, teacher)
    assert again.ensure() == transfer_set.HIT
    result = fit(resumed, again.dataset_factory(seed=7), tmp_path / "b", steps, global_batch_size=2,
                 checkpoint_every=2, verbose=0)
    assert result["initial_step"] == 2
    for a, b in zip(reference.student.get_weights(), resumed.student.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    fresh = _make_model(teacher, steps)
    assert max(np.abs(a - b).max() for a, b in zip(reference.student.get_weights(), fresh.student.get_weights())) > 1e-4


def test_augmented_and_unlabeled_records_carry_teacher_targets_only(tmp_path, tokenizer, teacher):
    from distil_tf.data.augmentation import WordAugmenter

    lines = tmp_path / "in_domain.txt"
    lines.write_text("the film was fun\n\nit is not boring\n")
    augmenter = WordAugmenter(tokenizer.get_vocabulary(), None, mask=0.3, substitute=0.0)
    transfer = transfer_set.TransferSet(SST2, _examples(4), tokenizer, 32,
                                        transfer_set.AugmentationSettings(copies=2, substitute=0.0),
                                        augmenter=lambda: augmenter, unlabeled=[str(lines)], seed=3)
    assert transfer.counts == {"labelled": 4, "augmented": 8, "unlabeled": 2} and len(transfer) == 14
    records = transfer.records()
    assert inspect.isgenerator(records)
    parse = transfer_set.batch_parser("classification", 2, 32, tokenizer.pad_token_id, with_teacher=False)
    _, labels = parse(tf.constant(list(records)))
    np.testing.assert_array_equal(labels["label_weight"], [1, 0, 0] * 4 + [0, 0])
    cache = _cache(tmp_path, transfer, teacher)
    cache.ensure()
    features, labels = next(iter(cache.dataset_factory(seed=0)(None, 14)))
    assert float(tf.reduce_sum(labels["label_weight"])) == 4.0
    # The supervised term averages over the 4 labelled rows only.
    distiller = _distiller(teacher)
    student_outputs = distiller.student(features, training=False)
    terms = distiller.loss_terms(features, labels, student_outputs)
    per_example = keras.losses.sparse_categorical_crossentropy(labels["logits"], student_outputs["logits"],
                                                               from_logits=True).numpy()
    weights = labels["label_weight"].numpy()
    np.testing.assert_allclose(float(terms["task"]), (per_example * weights).sum() / 4, rtol=1e-5)
    # ... also in the exact-accumulation train step (update-wide labelled count).
    normalizers = distiller.loss_normalizers(features, labels)
    assert float(normalizers["labelled"]) == 4.0 and float(normalizers["examples"]) == 14.0
    _, step_terms = distiller.micro_batch_loss(features, labels, student_outputs, None, normalizers)
    np.testing.assert_allclose(float(step_terms["task"]), float(terms["task"]), rtol=1e-5)


@pytest.mark.parametrize("pair, content, message", [
    (False, "fine\ntwo\ttexts\n", "{path}:2: expected one text and no tab per line"),
    (True, "a\tb\nonly one text\n", "{path}:2: expected two texts separated by one tab"),
    (True, "a\t\n", "{path}:1: expected two texts separated by one tab per line for this task, got 2 "
                    "tab-separated field(s) (one empty)"),
])
def test_unlabeled_format_errors_name_file_and_line(tmp_path, pair, content, message):
    path = tmp_path / "lines.txt"
    path.write_text(content)
    with pytest.raises(ValueError) as error:
        transfer_set.count_unlabeled([str(path)], pair)
    assert message.format(path=path) in str(error.value)


def test_unlabeled_in_a_transfer_set_is_checked_up_front(tmp_path, tokenizer):
    path = tmp_path / "pairs.txt"
    path.write_text("premise\thypothesis\nno second text\n")
    examples = [TextExample("r:1", "a", "b", 0)]
    with pytest.raises(ValueError, match=f"{path}:2: expected two texts"):
        transfer_set.TransferSet(RTE, examples, tokenizer, 32, unlabeled=[str(path)])
    with pytest.raises(ValueError, match="absent.txt: unlabeled file not found"):
        transfer_set.TransferSet(RTE, examples, tokenizer, 32, unlabeled=[str(tmp_path / "absent.txt")])


def test_augment_on_squad_is_refused(capsys, tmp_path):
    with pytest.raises(ValueError, match="--augment cannot be used with squad/v1.1: span labels are answer"):
        transfer_set.check_transfer_options(registry.get_task("squad/v1.1"), 1, [])
    # At the CLI: one line, exit 2, before any model is loaded.
    code = cli.main(["distill-task", "--task", "squad/v1.1", "--teacher", str(tmp_path / "none"),
                     "--student", "1", "--out", str(tmp_path / "o"), "--augment", "1"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--augment cannot be used with squad/v1.1" in lines[0]
    assert not (tmp_path / "o").exists()


def test_augment_auto_copies_small_sets_sized_in_epochs_only():
    pick = transfer_set.augment_copies
    assert pick("auto", RTE, 2_490, sized_in_epochs=True) == (
        2, "auto: 2,490 labelled examples, under 10,000; --augment 0 turns the copies off")
    assert pick("AUTO", RTE, 9_999, sized_in_epochs=True)[0] == 2
    assert pick("auto", RTE, 10_000, sized_in_epochs=True) == (0, "auto: 10,000 labelled examples, not under 10,000")
    assert pick("auto", SST2, 67_349, sized_in_epochs=True)[0] == 0
    assert pick("auto", SST2, 4_000, sized_in_epochs=False) == (
        0, "auto: the run is sized in --steps, where copies would displace labelled examples")
    assert pick("auto", registry.get_task("squad/v1.1"), 100, sized_in_epochs=True) == (
        0, "auto: squad/v1.1's answer positions cannot be augmented")
    assert pick("auto", RTE, 500, sized_in_epochs=True, auto_below=100)[0] == 0
    # A number is taken as given, whatever the set's size or budget.
    assert pick("3", SST2, 67_349, sized_in_epochs=False) == (3, "--augment 3")
    assert pick(0, RTE, 10, sized_in_epochs=True) == (0, "--augment 0")
    # auto never trips the span refusal; a number does.
    transfer_set.check_transfer_options(registry.get_task("squad/v1.1"), "auto", [])
    with pytest.raises(ValueError, match="--augment cannot be used with squad/v1.1"):
        transfer_set.check_transfer_options(registry.get_task("squad/v1.1"), "2", [])


@pytest.mark.parametrize("value, message", [("two", "--augment expects 'auto' or a number of copies, got 'two'"),
                                            ("-1", "--augment must be >= 0, got -1")])
def test_bad_augment_values_are_one_line_errors(capsys, tmp_path, value, message):
    code = cli.main(["distill-task", "--task", "glue/sst2", "--teacher", str(tmp_path / "none"),
                     "--student", "1", "--out", str(tmp_path / "o"), "--augment", value])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def sst2_teacher_dir(tmp_path_factory, tokenizer):
    from distil_tf.models import save_model

    keras.utils.set_random_seed(0)
    encoder = Encoder("bert", vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
                      max_sequence_length=32, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="glue/sst2",
                                   label_names=list(SST2.label_names))
    directory = tmp_path_factory.mktemp("teacher") / "model"
    save_model(model, directory, tokenizer)
    return directory


def _write_tiny_sst2(glue_dir):
    """SST-2 train and dev of the first 6 `SENTENCES` (the same 6 both ways)."""
    data = glue_dir / "SST-2"
    data.mkdir(parents=True)
    body = "".join(f"{text}\t{i % 2}\n" for i, text in enumerate(SENTENCES[:6]))
    (data / "train.tsv").write_text("sentence\tlabel\n" + body)
    (data / "dev.tsv").write_text("sentence\tlabel\n" + body)


@pytest.mark.large
def test_distill_task_with_augment_runs_end_to_end(tmp_path, sst2_teacher_dir, capsys):
    _write_tiny_sst2(tmp_path / "glue")
    lines = tmp_path / "unlabeled.txt"
    lines.write_text("the film was fun\nit is not boring\n")
    out = tmp_path / "run"
    argv = ["distill-task", "--task", "glue/sst2", "--teacher", str(sst2_teacher_dir), "--student", "1",
            "--out", str(out), "--data-dir", str(tmp_path / "glue"), "--steps", "2", "--batch-size", "4",
            "--max-seq-length", "32", "--augment", "1", "--unlabeled", str(lines)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "teacher outputs: scored 14 examples once" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["transfer_set"]
    assert (summary["labelled"], summary["augmented"], summary["unlabeled"]) == (6, 6, 2)
    assert summary["teacher_outputs"] == "built" and (out / "teacher_outputs" / "manifest.json").is_file()
    provenance = json.loads((out / "student" / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["transfer_set"]["total"] == 14 and provenance["transfer_set"]["augment"] == 1
    assert provenance["distillation"]["augment"] == "1"  # the setting as given, beside what it resolved to
    # The same command again: the cache is hit (the finished run is not retrained).
    assert cli.main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["transfer_set"]["teacher_outputs"] == "hit"
    # --no-cache: the teacher runs every step, nothing is cached.
    assert cli.main([*argv[:argv.index("--out") + 1], str(tmp_path / "live"), *argv[argv.index("--out") + 2:],
                     "--no-cache"]) == 0
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())["transfer_set"]
    assert summary["teacher_outputs"] == "bypassed" and summary["cache_bypass_reason"] == "--no-cache"
    assert not (tmp_path / "live" / "teacher_outputs").exists()


@pytest.mark.large
def test_distill_task_on_squad_trains_from_cached_span_logits(tmp_path, tokenizer, capsys):
    from distil_tf.models import save_model

    keras.utils.set_random_seed(0)
    encoder = Encoder("bert", vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
                      max_sequence_length=64, mlm_head=False)
    encoder(encoder.dummy_inputs())
    save_model(TaskModel.from_encoder(encoder, "span", task_name="squad/v1.1"), tmp_path / "teacher", tokenizer)
    context = "the movie was good . it was fun and not boring ."
    qas = [{"id": f"q{i}", "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}
           for i, (question, answer) in enumerate([("what was the movie ?", "good"), ("was it fun ?", "fun")])]
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    (tmp_path / "squad").mkdir()
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (tmp_path / "squad" / name).write_text(json.dumps(data))
    code = cli.main(["distill-task", "--task", "squad/v1.1", "--teacher", str(tmp_path / "teacher"), "--student", "1",
                     "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path / "squad"), "--steps", "2",
                     "--batch-size", "2", "--max-seq-length", "32", "--set", "data.max_query_length=8",
                     "--set", "data.doc_stride=8"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())["transfer_set"]
    assert summary["teacher_outputs"] == "built" and summary["labelled"] >= 2
    manifest = json.loads((tmp_path / "run" / "teacher_outputs" / "manifest.json").read_text())
    assert manifest["span_dtype"] == "float16"


def test_distill_task_default_augments_a_small_epoch_sized_set(tmp_path, sst2_teacher_dir, capsys):
    """The default (auto) on 6 labelled sentences and --epochs: 2 teacher-labelled copies each, 3x the steps."""
    _write_tiny_sst2(tmp_path / "glue")
    out = tmp_path / "run"
    assert cli.main(["distill-task", "--task", "glue/sst2", "--teacher", str(sst2_teacher_dir), "--student", "1",
                     "--out", str(out), "--data-dir", str(tmp_path / "glue"), "--epochs", "1", "--batch-size", "4",
                     "--max-seq-length", "32"]) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert ("transfer set: 2 augmented copies per example (auto: 6 labelled examples, under 10,000; "
            "--augment 0 turns the copies off)") in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["transfer_set"]
    assert (summary["labelled"], summary["augmented"], summary["augment"], summary["augment_setting"]) == (
        6, 12, 2, "auto")
    assert metrics["steps"] == 5  # one epoch over 18 records at batch 4
