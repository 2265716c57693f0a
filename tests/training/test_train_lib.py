"""`train_lib.run`, the one driver of `finetune` and `distill-task`: what it writes, in which order, on failure.

A recording `TaskTrainer` fine-tunes a tiny encoder (1 layer, hidden 8, the
99-token test vocabulary) on six SST-2 rows for two steps; each hook, and
the evaluation, records what the run directory holds when it is called. One
test trains for real (~30 s on a busy 2-core CPU, mostly tracing the first
train step); the others stop before `fit` or replace it.
"""

import dataclasses
import json

import keras
import pytest

from distil_tf import config as config_lib
from distil_tf.models import Encoder, load_model
from distil_tf.text import load_tokenizer
from distil_tf.training import finetune, train_lib
from distil_tf.training.optimization import build_optimizer

_EVALUATE_ON_SPLITS = train_lib.evaluate_on_splits
ROWS = [("the movie was good", 1), ("a bad film", 0), ("very fun", 1), ("boring and bad", 0),
        ("it was great !", 1), ("not good", 0)]


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    sst2 = tmp_path_factory.mktemp("glue") / "SST-2"
    sst2.mkdir()
    body = "".join(f"{text}\t{label}\n" for text, label in ROWS)
    (sst2 / "train.tsv").write_text("sentence\tlabel\n" + body)
    (sst2 / "dev.tsv").write_text("sentence\tlabel\n" + body)
    return sst2.parent


def _config(out, glue_dir, **fields):
    data = train_lib.TaskDataConfig(data_dir=str(glue_dir), batch_size=4, max_seq_length=16, eval_limit=3)
    return finetune.FinetuneConfig(task="glue/sst2", model="tiny", out=str(out), data=data, **fields)


def _state(out):
    """What the run directory holds: its files, run.json's status and final model."""
    record = json.loads((out / "run.json").read_text())["distil_tf_run"] if (out / "run.json").is_file() else {}
    return {
        "config.yaml": (out / "config.yaml").is_file(),
        "status": record.get("status"),
        "final_model": record.get("final_model"),
        "model": (out / "model" / "config.json").is_file(),
        "metrics.json": (out / "metrics.json").is_file(),
    }


class RecordingTrainer(train_lib.TaskTrainer):
    """Fine-tunes a tiny in-memory encoder; each hook notes the run directory's state."""

    command, start, model_dir = "finetune", "model", "model"
    required = (("task", "--task"), ("model", "--model"), ("out", "--out"))

    def __init__(self, vocab_file, out, epoch_examples=None, fail_load=False):
        self.vocab_file, self.out = vocab_file, out
        self.epoch_examples, self.fail_load = epoch_examples, fail_load
        self.events = []

    def load(self, config, task):
        self.policy_at_load = keras.config.dtype_policy().name
        if self.fail_load:
            raise RuntimeError("the starting model is broken")
        encoder = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                          intermediate_dim=16, max_sequence_length=32)
        return encoder, load_tokenizer(self.vocab_file)

    def prepare(self, config, run, start_model):
        self.events.append(("prepare", _state(self.out)))
        return self.epoch_examples or super().prepare(config, run, start_model)

    def build(self, config, run, encoder, steps):
        self.events.append(("build", _state(self.out)))
        self.build_steps = steps
        model = run.task.build_model(encoder)
        model.compile(optimizer=build_optimizer(config.optimizer, steps), **run.task.compile_arguments())
        return model

    def saved_model(self, trainee):
        self.events.append(("trained", _state(self.out)))
        self.trainee = trainee
        return trainee

    def provenance(self, config, run):
        return {"kind": "recorded"}

    def summary(self):
        return {"recorded": True}


def _recording_evaluation(monkeypatch, trainer, error=None):
    """Wrap the driver's evaluation: note the run directory's state, then score (or fail)."""

    def evaluate(*args, **kwargs):
        trainer.events.append(("evaluate", _state(trainer.out)))
        if error is not None:
            raise error
        return _EVALUATE_ON_SPLITS(*args, **kwargs)

    monkeypatch.setattr(train_lib, "evaluate_on_splits", evaluate)


def test_saved_before_scored_then_a_rerun_resumes_and_finishes(tmp_path, glue_dir, tiny_vocab_file, monkeypatch):
    """The one real training of this file: a failing evaluation keeps the model; the same command finishes the run."""
    out = tmp_path / "run"
    trainer = RecordingTrainer(tiny_vocab_file, out)
    _recording_evaluation(monkeypatch, trainer, error=RuntimeError("dev split unreadable"))
    with pytest.raises(RuntimeError, match="dev split unreadable"):
        train_lib.run(_config(out, glue_dir, steps=2), trainer)
    states = dict(trainer.events)
    assert list(states) == ["prepare", "build", "trained", "evaluate"]
    # The data is read before anything is written: a bad split leaves no run directory.
    assert states["prepare"] == {"config.yaml": False, "status": None, "final_model": None, "model": False,
                                 "metrics.json": False}
    assert states["build"] == {"config.yaml": True, "status": "running", "final_model": None, "model": False,
                               "metrics.json": False}
    assert states["trained"] == states["build"]
    # Saved and marked before it is scored, and still there after the failure.
    saved = {"config.yaml": True, "status": "running", "final_model": "model", "model": True, "metrics.json": False}
    assert states["evaluate"] == saved and _state(out) == saved
    assert int(trainer.trainee.optimizer.iterations) == 2
    assert load_model(out).num_classes == 2  # the run directory stands for the trained model
    provenance = json.loads((out / "model" / "config.json").read_text())["distil_tf"]["provenance"]
    # The command's record first, then what every task run records.
    assert list(provenance)[:3] == ["kind", "data", "steps"] and provenance["kind"] == "recorded"
    assert (provenance["steps"], provenance["data"]["train_examples"], provenance["seed"]) == (2, 6, 42)
    assert config_lib.resolve(finetune.FinetuneConfig, out / "config.yaml") == _config(out, glue_dir, steps=2)

    # The same command again: resumed at the end (no step trained twice), scored, finished.
    again = RecordingTrainer(tiny_vocab_file, out)
    _recording_evaluation(monkeypatch, again)
    summary = train_lib.run(_config(out, glue_dir, steps=2), again)
    assert (summary["steps"], summary["resumed_from_step"], summary["final_train_loss"]) == (2, 2, {})
    assert summary["train_loop_seconds"] == 0.0  # nothing left to train
    assert int(again.trainee.optimizer.iterations) == 2
    assert dict(again.events)["evaluate"] == saved
    assert _state(out) == {"config.yaml": True, "status": "finished", "final_model": "model", "model": True,
                           "metrics.json": True}
    assert json.loads((out / "metrics.json").read_text()) == summary
    assert summary["recorded"] is True and summary["evaluation"]["validation"]["examples"] == 3
    assert summary["data"]["eval_limit"] == 3 and summary["model"] == str(out / "model")


def test_the_dtype_policy_is_reset_after_a_failure(tmp_path, glue_dir, tiny_vocab_file):
    out = tmp_path / "run"
    trainer = RecordingTrainer(tiny_vocab_file, out, fail_load=True)
    config = _config(out, glue_dir, steps=2)
    config.runtime.precision = "mixed_bfloat16"
    try:
        with pytest.raises(RuntimeError, match="the starting model is broken"):
            train_lib.run(config, trainer)
        assert trainer.policy_at_load == "mixed_bfloat16"  # the runtime was set up before the failure
        assert keras.config.dtype_policy().name == "float32"
    finally:
        keras.config.set_dtype_policy("float32")
    assert not out.exists()


class _FitCalled(Exception):
    pass


def test_steps_count_the_epoch_the_trainer_prepares(tmp_path, glue_dir, tiny_vocab_file, monkeypatch):
    """The optimizer's schedule and `fit` get the same steps: epochs over `prepare`'s examples (a transfer set)."""
    from distil_tf.training import fit

    def recording_fit(model, make_dataset, out_dir, steps, **kwargs):
        trainer.fit_steps = steps
        raise _FitCalled

    monkeypatch.setattr(fit, "fit", recording_fit)
    # 6 training rows, 16 examples an epoch: ceil(0.5 x 16 / 4) = 2 steps, not ceil(0.5 x 6 / 4) = 1.
    trainer = RecordingTrainer(tiny_vocab_file, tmp_path / "run", epoch_examples=16)
    with pytest.raises(_FitCalled):
        train_lib.run(_config(tmp_path / "run", glue_dir, epochs=0.5), trainer)
    assert trainer.build_steps == trainer.fit_steps == 2


def test_missing_required_fields_name_the_flag(tmp_path, tiny_vocab_file):
    trainer = RecordingTrainer(tiny_vocab_file, tmp_path)
    with pytest.raises(ValueError, match="^missing --model$"):
        train_lib.run(finetune.FinetuneConfig(task="glue/sst2", out=str(tmp_path)), trainer)
    assert trainer.events == []


def test_shared_fields_are_declared_once():
    shared = [field.name for field in dataclasses.fields(train_lib.TaskRunConfig)]
    assert shared == ["task", "out", "steps", "epochs", "checkpoint_every", "log_every", "data", "evaluation",
                      "optimizer", "runtime"]
    own = {finetune.FinetuneConfig: ["model"], finetune.DistillTaskConfig: ["teacher", "student", "distillation"]}
    for cls, fields in own.items():
        assert issubclass(cls, train_lib.TaskRunConfig)
        assert list(cls.__annotations__) == fields  # nothing of the base declared again
        assert [field.name for field in dataclasses.fields(cls)] == shared + fields
    # Both commands keep the task-run defaults (Hugging Face's optimizer, seed 42).
    assert finetune.FinetuneConfig().optimizer == finetune.DistillTaskConfig().optimizer == train_lib.finetune_optimizer()
    assert finetune.DistillTaskConfig().runtime.seed == 42


@pytest.mark.parametrize("cls, overrides", [
    (finetune.FinetuneConfig, ["model=m", "steps=5", "data.batch_size=8", "runtime.seed=3"]),
    (finetune.DistillTaskConfig, ["teacher=t", "student=0,2", "epochs=1.5", "distillation.alpha_hidden=0.5",
                                  "optimizer.learning_rate=1e-4"]),
])
def test_every_field_round_trips_through_config_yaml(tmp_path, cls, overrides):
    config = config_lib.resolve(cls, None, overrides, task="glue/sst2", out="o")
    path = config_lib.save_config(config, tmp_path)
    assert config_lib.resolve(cls, path) == config
    assert list(config_lib.to_dict(config)) == [field.name for field in dataclasses.fields(cls)]
    with pytest.raises(ValueError, match="unknown config key 'modle'"):
        config_lib.resolve(cls, None, ["modle=x"])
