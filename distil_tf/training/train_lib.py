"""The one training driver: trainers for `finetune` and `distill-task`, its pieces for `distill` and `fit-mlm-head`.

    summary = train_lib.run(config, trainer)

`run` owns what every task run does, in the order of Model Garden's
`official/core/train_lib.py` and `nlp/train.py`:

1. check the required fields, build the `Task`, let the trainer check its
   own options (all before any model loads);
2. `setup_runtime`: seeds, precision policy, strategy;
3. load the starting model and its tokenizer inside `strategy.scope()`;
4. read the run's data (`TaskRun`: training items, evaluation splits);
5. write `config.yaml` and `run.json` ("running");
6. build and compile the trainee inside `strategy.scope()`;
7. `fit` it for the run's steps, resuming from `checkpoints/`;
8. save the final model and mark it in `run.json` *before* scoring, so a
   failing evaluation never loses the training;
9. score it on the task's evaluation splits, write `metrics.json`, mark the
   run finished;

and resets the process-global dtype policy on the way out, whatever happened.

`distill` and `fit-mlm-head` train on a corpus, not on a task's data, and keep
their own order (`distill` writes its config before the runtime is set up,
`fit-mlm-head` only once the teacher is accepted, so a refused teacher writes
nothing), but no copy of the steps above: they call the pieces `run` is made of,

    use_fixed_shapes_on_tpu(config)                     # corpus runs: static batches on a TPU
    with training_runtime(config.runtime) as strategy:  # step 2, and the policy reset
        start_run(config, out_dir, command)             # step 5
        result, seconds = timed_fit(trainee, make_train, out_dir, steps, strategy, config)  # step 7
        summary = {..., **fit_summary(steps, result, seconds), ...}
        save_final_model(out_dir, model, model_dir, tokenizer, provenance)  # step 8
        finish_run(out_dir, summary)                    # step 9

so their metrics.json has the same training entries (`train_loop_seconds` too).

A `TaskTrainer` supplies the per-command part: which model is loaded first,
how the trainee is built and compiled, what it trains on, which model is
saved and what that model records. `TaskRunConfig` holds the fields every
task run shares, once; `FinetuneConfig` and `DistillTaskConfig`
(`distil_tf.training.finetune`) add their own models and options.
"""

import abc
import contextlib
import dataclasses
import json
import math
import pathlib
import time
import typing

from distil_tf import config as config_lib
from distil_tf.run_dir import mark_model_saved, mark_run_finished, mark_run_started, resolve_model_path
from distil_tf.training.optimization import OptimizerConfig
from distil_tf.training.runtime import RuntimeConfig, is_chief, setup_runtime

METRICS_FILE = "metrics.json"


@dataclasses.dataclass
class TaskDataConfig:
    # The task family's local folder (original layout); unset: $DISTIL_TF_DATA/<family>, else tfds.
    data_dir: typing.Optional[str] = None
    # 0: the task's default (GLUE 128, SQuAD 384, IMDb 512).
    max_seq_length: int = 0
    # Global batch size (sequences per step, across replicas).
    batch_size: int = 32
    train_split: str = "train"
    # Use only the first N training examples (questions for SQuAD).
    train_limit: typing.Optional[int] = None
    # Skip the first N training examples (with train_limit: a slice).
    train_skip: int = 0
    # Split(s) scored at the end; unset: the task's evaluation splits.
    eval_split: typing.Optional[str] = None
    eval_limit: typing.Optional[int] = None
    # Skip the first N evaluation examples, e.g. those a smoke run trained on.
    eval_skip: int = 0
    # SQuAD windows (BERT's run_squad).
    doc_stride: int = 128
    max_query_length: int = 64
    # Cut each batch's padding beyond its longest row (off under XLA).
    trim_padding: bool = True
    # Train on batches of similar length (Hugging Face's group_by_length:
    # 50-batch groups sorted by length, batch order shuffled): on SST-2 at
    # length 64, 2.2x fewer padded tokens than trimming alone. Text tasks
    # only, and only where batches are trimmed.
    group_by_length: bool = True


@dataclasses.dataclass
class EvaluationConfig:
    batch_size: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    # SQuAD v2.0: predict "" when null score - best span score exceeds this.
    null_score_diff_threshold: float = 0.0


def finetune_optimizer():
    """Hugging Face run_glue/run_squad defaults plus BERT's 10% warmup (`distil_tf.training.finetune`)."""
    return OptimizerConfig(
        learning_rate=5e-5, warmup_proportion=0.1, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, weight_decay=0.0, clip_global_norm=1.0,
    )


def finetune_runtime():
    # run_squad_w_distillation.py's seed.
    return RuntimeConfig(seed=42)


@dataclasses.dataclass
class TaskRunConfig:
    """The fields of every task run; a command's config adds its models (and options) after them."""

    task: str = ""
    out: str = ""
    # 0: epochs x training examples / batch size.
    steps: int = 0
    epochs: float = 3.0
    checkpoint_every: int = 500
    log_every: int = 50
    data: TaskDataConfig = dataclasses.field(default_factory=TaskDataConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=finetune_optimizer)
    runtime: RuntimeConfig = dataclasses.field(default_factory=finetune_runtime)


# ---------------------------------------------------------------------------
# The run's data
# ---------------------------------------------------------------------------


def _static_shapes(config):
    return config.runtime.jit_compile or config.runtime.strategy == "tpu"


def use_fixed_shapes_on_tpu(config):
    """Turn on `config.data.fixed_shapes` of a corpus run (`CorpusConfig`) under a TPU strategy, saying so.

    A TPU compiles one program per batch shape: dynamic padding would
    recompile constantly (or fail), so TPU runs always use fixed shapes. Task
    runs need no switch: their batches are static under a TPU by
    `trimmed_batches`.
    """
    if config.runtime.strategy == "tpu" and not config.data.fixed_shapes:
        print("strategy tpu: using fixed shapes (data.fixed_shapes=true)")
        config.data.fixed_shapes = True


def trimmed_batches(config):
    """`(trim, drop_remainder, group_by_length_batches)` of a training pipeline under `config`."""
    from distil_tf.tasks import task_inputs

    # XLA and TPUs compile one program per shape: static batches there.
    static = _static_shapes(config)
    trim = config.data.trim_padding and not static
    groups = task_inputs.LENGTH_GROUP_BATCHES if trim and config.data.group_by_length else 0
    return trim, static, groups


def _require(value, flag):
    if not value:
        raise ValueError(f"missing {flag}")


def _vocab_path(model_path):
    path = pathlib.Path(resolve_model_path(model_path)) / "vocab.txt"
    if not path.is_file():
        raise ValueError(f"{model_path} has no vocab.txt (SQuAD features need the WordPiece vocabulary file)")
    return path


def vocab_path_for(task, model_path):
    """The model's vocab.txt when the task featurizes from it (SQuAD), else None."""
    return _vocab_path(model_path) if task.needs_vocab_file else None


class TaskRun:
    """Data of one training run: its `Task`, tokenizer, source, training items, evaluation splits."""

    def __init__(self, config, task, tokenizer, vocab_path):
        from distil_tf.tasks import task_inputs

        self.task = task
        self.spec = task.spec
        self.tokenizer = tokenizer
        self.vocab_path = vocab_path
        self.source = task_inputs.resolve_source(self.spec, config.data.data_dir)
        self.sequence_length = config.data.max_seq_length or task.default_sequence_length()
        examples = task_inputs.read_split(self.spec, config.data.train_split, self.source)
        self.train_examples = task_inputs.subset(examples, config.data.train_limit, config.data.train_skip)
        self.split_sizes = {config.data.train_split: len(examples)}
        self.train_items = task.training_items(
            self.train_examples, tokenizer, vocab_path, self.sequence_length,
            doc_stride=config.data.doc_stride, max_query_length=config.data.max_query_length,
        )
        self.eval_splits = task_inputs.evaluation_splits(self.spec, self.source, config.data.eval_split)

    def steps(self, config, examples=None):
        """Batches of the run: `--steps`, else epochs over `examples` (default: the training items)."""
        examples = len(self.train_items) if examples is None else examples
        if config.steps:
            return config.steps
        if config.epochs <= 0:
            raise ValueError(f"epochs must be > 0 (or pass --steps), got {config.epochs}")
        steps = max(1, math.ceil(config.epochs * examples / config.data.batch_size))
        # Whole updates (an explicit --steps must be a multiple; see build_optimizer).
        accumulation = max(config.optimizer.gradient_accumulation_steps, 1)
        return accumulation * math.ceil(steps / accumulation)

    def data_summary(self, config):
        return {
            "source": self.source.describe(self.spec),
            "train_split": config.data.train_split,
            "train_examples": len(self.train_examples),
            "train_split_size": self.split_sizes[config.data.train_split],
            "train_windows": self.task.training_windows(self.train_items),
            "train_skip": config.data.train_skip,
            "max_seq_length": self.sequence_length,
            "batch_size": config.data.batch_size,
            "doc_stride": config.data.doc_stride,
            "max_query_length": config.data.max_query_length,
        }

    def provenance(self, config, steps):
        """What every task model records about its data and training."""
        return {
            "data": self.data_summary(config),
            "steps": steps,
            "epochs": None if config.steps else config.epochs,
            "max_seq_length": self.sequence_length,
            # Read back by export, so the served signature cleans, truncates and
            # packs texts exactly as training did (distil_tf.text.preprocessing).
            "preprocessing": self.task.preprocessing_for(self.sequence_length).to_dict(),
            "optimizer": dataclasses.asdict(config.optimizer),
            "seed": config.runtime.seed,
        }


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def evaluation_options(config, sequence_length):
    from distil_tf.tasks.evaluation import EvaluationOptions

    return EvaluationOptions(
        batch_size=config.evaluation.batch_size,
        max_seq_length=sequence_length,
        n_best_size=config.evaluation.n_best_size,
        max_answer_length=config.evaluation.max_answer_length,
        null_score_diff_threshold=config.evaluation.null_score_diff_threshold,
        doc_stride=config.data.doc_stride,
        max_query_length=config.data.max_query_length,
    )


def evaluate_on_splits(model, tokenizer, task, source, splits, options, vocab_path=None, limit=None, skip=0):
    """`{split: metrics}` of `model` on each split (examples `[skip:skip+limit]`), by `task.evaluate`."""
    from distil_tf.tasks import task_inputs

    results = {}
    for split in splits:
        examples = task_inputs.subset(task_inputs.read_split(task.spec, split, source), limit, skip)
        results[split] = task.evaluate(model, tokenizer, examples, options, vocab_path)
    return results


# ---------------------------------------------------------------------------
# The per-command part
# ---------------------------------------------------------------------------


def load_model_for_run(path, precision):
    """`(model, tokenizer)` of `path`, its compute dtype the run's precision."""
    from distil_tf.models import load_model_and_tokenizer

    return load_model_and_tokenizer(path, dtype=None if precision == "float32" else precision)


class TaskTrainer(abc.ABC):
    """What one task command adds to `run`; the hooks below are called in this order.

    One object serves one run: hooks may keep what later hooks need (the
    layer map `build` chose, the transfer set `prepare` made) on `self`.

    Attributes:
        command: str, the command recorded in run.json ("finetune").
        required: `(field, flag)` pairs of the config that must be set,
            checked in order ("missing --task").
        start: str, the config field of the model loaded first (the model
            to fine-tune, the teacher): its tokenizer, and its vocab.txt for
            SQuAD, are the run's.
        model_dir: str, the folder of `out` the final model is saved to.
    """

    command = ""
    required = ()
    start = ""
    model_dir = ""

    def validate(self, config, task):
        """Check the command's own options; runs before any model loads, so keep it cheap."""

    def load(self, config, task):
        """`(model, tokenizer)` the run starts from; called inside the strategy scope."""
        return load_model_for_run(getattr(config, self.start), config.runtime.precision)

    def prepare(self, config, run, start_model):
        """After the run's data is read: the examples one epoch covers (what `steps` counts)."""
        return len(run.train_items)

    @abc.abstractmethod
    def build(self, config, run, start_model, steps):
        """The compiled trainee (its optimizer scheduled over `steps`); called inside the strategy scope."""

    def training_input(self, config, run, trainee, out_dir, strategy):
        """`make_train(input_context, batch_size)` of `fit`, or None for the task's own pipeline."""
        return None

    def saved_model(self, trainee):
        """The model saved and scored: the trainee itself, or the part of it that is kept."""
        return trainee

    def provenance(self, config, run):
        """What the saved model records about this command, ahead of the shared run record."""
        return {}

    def summary(self):
        """Entries of metrics.json beyond the shared ones."""
        return {}


# ---------------------------------------------------------------------------
# The driver, and the pieces every training command shares
# ---------------------------------------------------------------------------


def run(config, trainer):
    """Run one task command: `config` (a `TaskRunConfig`) trained and scored the `trainer`'s way.

    Returns:
        The summary written to `metrics.json`.
    """
    from distil_tf.tasks import registry

    for field, flag in trainer.required:
        _require(getattr(config, field), flag)
    task = registry.build_task(config.task)
    trainer.validate(config, task)
    out_dir = pathlib.Path(config.out)
    with training_runtime(config.runtime) as strategy:
        with strategy.scope():
            start_model, tokenizer = trainer.load(config, task)
        task_run = TaskRun(config, task, tokenizer, vocab_path_for(task, getattr(config, trainer.start)))
        epoch_examples = trainer.prepare(config, task_run, start_model)
        start_run(config, out_dir, trainer.command)
        steps = task_run.steps(config, epoch_examples)
        with strategy.scope():
            trainee = trainer.build(config, task_run, start_model, steps)
        make_train = (trainer.training_input(config, task_run, trainee, out_dir, strategy)
                      or _task_pipeline(config, task_run))
        _build_on_features(trainee, make_train, strategy)
        result, seconds = timed_fit(trainee, make_train, out_dir, steps, strategy, config)
        model = trainer.saved_model(trainee)
        model_dir = out_dir / trainer.model_dir
        # Saved before scoring: a failing evaluation must not lose the training.
        provenance = {**trainer.provenance(config, task_run), **task_run.provenance(config, steps)}
        save_final_model(out_dir, model, model_dir, tokenizer, provenance)
        options = evaluation_options(config, task_run.sequence_length)
        evaluation = evaluate_on_splits(
            model, tokenizer, task, task_run.source, task_run.eval_splits, options, task_run.vocab_path,
            config.data.eval_limit, config.data.eval_skip,
        )
        summary = {
            "task": task_run.spec.name,
            "model": str(model_dir),
            **fit_summary(steps, result, seconds),
            "data": dict(task_run.data_summary(config), eval_limit=config.data.eval_limit,
                         eval_skip=config.data.eval_skip),
            "evaluation": evaluation,
            **trainer.summary(),
        }
        finish_run(out_dir, summary)
        return summary


@contextlib.contextmanager
def training_runtime(runtime):
    """`setup_runtime(runtime)`'s strategy for the block; the float32 dtype policy again after it, whatever happened.

    The precision policy is process-global: a run (or a failed one) leaves
    the process as found, so the next model built in it is float32.
    """
    import keras

    try:
        yield setup_runtime(runtime)
    finally:
        keras.config.set_dtype_policy("float32")


def start_run(config, out_dir, command):
    """Write the run's config and its run.json marker ("running", no final model yet)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save_config(config, out_dir)
    if is_chief():
        mark_run_started(out_dir, command)


def _task_pipeline(config, run):
    """The task's own `make_train`: its training items in (trimmed, length-grouped) batches."""
    trim, static, groups = trimmed_batches(config)
    return run.task.train_dataset_factory(
        run.train_items, run.tokenizer, run.sequence_length, seed=config.runtime.seed,
        trim=trim, drop_remainder=static, group_by_length_batches=groups,
    )


def _build_on_features(trainee, make_train, strategy):
    """Build an unbuilt trainee on the features of one `(features, labels)` element of `make_train`.

    `fit` would build it by calling it on the whole element, labels included.
    """
    if not trainee.built:
        features, _ = next(iter(make_train(None, 1).take(1)))
        with strategy.scope():
            trainee(features, training=False)


def timed_fit(trainee, make_train, out_dir, steps, strategy, config, callbacks=()):
    """`(fit's result, seconds)` of `steps` batches of `make_train`, resuming from `out_dir/checkpoints`.

    `config` gives the global batch size (`data.batch_size`) and the
    `checkpoint_every` and `log_every` cadences; the seconds include the
    final checkpoint write, fit's `loop_seconds` do not.
    """
    from distil_tf.training.fit import fit

    started = time.perf_counter()
    result = fit(
        trainee, make_train, out_dir, steps, strategy=strategy, global_batch_size=config.data.batch_size,
        checkpoint_every=config.checkpoint_every, log_every=config.log_every, callbacks=callbacks,
    )
    return result, time.perf_counter() - started


def fit_summary(steps, result, seconds):
    """The training entries of metrics.json, from `timed_fit`'s `(result, seconds)`."""
    return {
        "steps": steps,
        "resumed_from_step": result["initial_step"],
        "seconds": round(seconds, 2),
        # The training batches alone (no final checkpoint write): what step times divide.
        "train_loop_seconds": round(result.get("loop_seconds", 0.0), 2),
        "final_train_loss": {name: float(values[-1]) for name, values in result["history"].items()},
    }


def save_final_model(out_dir, model, model_dir, tokenizer, provenance):
    """Save `model` (with `tokenizer` and `provenance`) to `model_dir` and mark it the run's final model (chief only).

    Called before metrics.json is written (and, by `run`, before scoring):
    a run that fails after training keeps its model. Under a mixed policy
    the weights saved are the float32 variables, loadable anywhere.
    """
    from distil_tf.models import save_model

    if is_chief():
        save_model(model, model_dir, tokenizer, provenance=provenance, overwrite=True)
        mark_model_saved(out_dir, model_dir)


def finish_run(out_dir, summary):
    """Write `summary` to metrics.json and mark the run finished (chief only); after `save_final_model`."""
    if is_chief():
        (pathlib.Path(out_dir) / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        mark_run_finished(out_dir)
