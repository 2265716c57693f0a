"""Downstream drivers: fine-tune, evaluate, and task-specific distillation ("DistilBERT (D)").

    distil-tf finetune --task glue/sst2 --model student/ --out runs/sst2 --data-dir data/glue
    distil-tf evaluate --task glue/sst2 --model runs/sst2/model --data-dir data/glue --split dev
    distil-tf distill-task --task glue/sst2 --teacher runs/teacher/model --student 0,3,5 \
        --out runs/sst2-d --data-dir data/glue

Output directory of `finetune` and `distill-task`: `config.yaml` (resolved
config), `checkpoints/` (resume state), `tensorboard/`, the task model
(`model/` for finetune, `student/` for distill-task; loadable by
`distil_tf.load_model`, `evaluate` and export) and `metrics.json` (training
summary and the dev metrics of the saved model).

Optimizer defaults follow Hugging Face `run_glue.py` / `run_squad.py` and
the recipe's SQuAD distillation settings: AdamW, lr 5e-5, betas 0.9/0.999,
epsilon 1e-8, weight decay 0, global-norm clipping at 1.0, 3 epochs, seed 42.
One departure: 10% linear warmup (BERT's `run_classifier.py`) instead of
Hugging Face's default of none; set `--set optimizer.warmup_proportion=0`
for theirs.
"""

import dataclasses
import json
import math
import pathlib
import time
import typing

from distil_tf import config as config_lib
from distil_tf.heads import SPAN
from distil_tf.run_dir import mark_model_saved, mark_run_finished, mark_run_started, resolve_model_path
from distil_tf.tasks.served_evaluation import resolve_saved_model
from distil_tf.training.optimization import OptimizerConfig, build_optimizer
from distil_tf.training.runtime import RuntimeConfig, is_chief, setup_runtime

FINETUNED_MODEL_DIR = "model"
DISTILLED_MODEL_DIR = "student"
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
    """Hugging Face run_glue/run_squad defaults plus BERT's 10% warmup (module docstring)."""
    return OptimizerConfig(
        learning_rate=5e-5, warmup_proportion=0.1, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, weight_decay=0.0, clip_global_norm=1.0,
    )


def finetune_runtime():
    # run_squad_w_distillation.py's seed.
    return RuntimeConfig(seed=42)


@dataclasses.dataclass
class FinetuneConfig:
    task: str = ""
    # Encoder dir, student dir, Hugging Face dir, or a task model to train on.
    model: str = ""
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


@dataclasses.dataclass
class TaskDistillationConfig:
    # run_squad_w_distillation.py's defaults.
    alpha_ce: float = 0.5
    alpha_task: float = 0.5
    temperature: float = 2.0
    # "kl": KL x T^2 (the paper); "mse": squared error between raw logits, no
    # temperature (Tang et al., 2019). Regression heads always use the MSE.
    soft_loss: str = "kl"
    # Weight of the hidden-state term: each student layer against the teacher
    # layer it was copied from, per real token (0: off).
    alpha_hidden: float = 0.0
    # "mse" or "cosine" (1 - cos).
    hidden_loss: str = "mse"
    # Keep the student's position embeddings at their initial values.
    freeze_position_embeddings: bool = False
    # Score the transfer set with the teacher once (inference mode) into
    # OUT/teacher_outputs and train from it: no teacher pass per step.
    # False (--no-cache): the teacher runs inside every train step.
    cache_teacher_outputs: bool = True
    # Where that cache lives; unset: OUT/teacher_outputs. Runs that differ
    # only in seed (without --augment) score the same examples and can share
    # one: the fingerprint decides whether it is reused. One writer at a time.
    teacher_outputs_dir: typing.Optional[str] = None
    # Perturbed copies of each training example, labelled by the teacher only
    # (Tang et al., 2019; distil_tf.data.augmentation). Not for span tasks.
    augment: int = 0
    # Per-word probabilities of the copies: [MASK], an embedding neighbour,
    # dropping the word; then keeping only a random 1..5-gram.
    augment_mask: float = 0.1
    augment_substitute: float = 0.1
    augment_word_dropout: float = 0.1
    augment_ngram: float = 0.25
    # Nearest neighbours per word in the teacher's word embeddings.
    augment_neighbours: int = 10
    # In-domain text files, one example a line (text_a<TAB>text_b for pair
    # tasks), labelled by the teacher only.
    unlabeled: typing.List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DistillTaskConfig:
    task: str = ""
    # A TaskModel fine-tuned on the task.
    teacher: str = ""
    # A student/encoder/task-model directory, a layer map ("0,3,5") or a
    # depth ("3") taken from the teacher's encoder.
    student: str = ""
    out: str = ""
    steps: int = 0
    epochs: float = 3.0
    checkpoint_every: int = 500
    log_every: int = 50
    data: TaskDataConfig = dataclasses.field(default_factory=TaskDataConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    distillation: TaskDistillationConfig = dataclasses.field(default_factory=TaskDistillationConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=finetune_optimizer)
    runtime: RuntimeConfig = dataclasses.field(default_factory=finetune_runtime)


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------


def _static_shapes(config):
    return config.runtime.jit_compile or config.runtime.strategy == "tpu"


def _trimmed_batches(config):
    """`(trim, drop_remainder, group_by_length_batches)` of a training pipeline under `config`."""
    from distil_tf.tasks import task_inputs

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


def build_task_model(encoder_or_model, spec):
    """A `TaskModel` for `spec` from an encoder or another task model (`Task.build_model`)."""
    from distil_tf.tasks import registry

    return registry.build_task(spec.name).build_model(encoder_or_model)


def _vocab_path_for(task, model_path):
    """The model's vocab.txt when the task featurizes from it (SQuAD), else None."""
    return _vocab_path(model_path) if task.needs_vocab_file else None


class _TaskRun:
    """Data of one training run: its `Task`, source, training items, evaluation splits."""

    def __init__(self, config, task, tokenizer, vocab_path):
        from distil_tf.tasks import task_inputs

        self.task = task
        self.spec = task.spec
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


def _evaluation_options(config, sequence_length):
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


def _train(model, config, run, tokenizer, out_dir, strategy, make_train=None):
    from distil_tf.training.fit import fit

    # XLA and TPUs compile one program per shape: static batches there.
    trim, static, groups = _trimmed_batches(config)
    make_train = make_train or run.task.train_dataset_factory(
        run.train_items, tokenizer, run.sequence_length, seed=config.runtime.seed,
        trim=trim, drop_remainder=static, group_by_length_batches=groups,
    )
    steps = run.steps(config)
    if not model.built:
        # Build on features only: `fit` builds an unbuilt model by calling it
        # on a whole dataset element, which here is a (features, labels) pair.
        features, _ = next(iter(make_train(None, 1).take(1)))
        with strategy.scope():
            model(features, training=False)
    started = time.perf_counter()
    result = fit(
        model, make_train, out_dir, steps, strategy=strategy, global_batch_size=config.data.batch_size,
        checkpoint_every=config.checkpoint_every, log_every=config.log_every,
    )
    return steps, result, time.perf_counter() - started


def _run_provenance(config, run, steps):
    """What every task run records about its data and training."""
    return {
        "data": run.data_summary(config),
        "steps": steps,
        "epochs": None if config.steps else config.epochs,
        "max_seq_length": run.sequence_length,
        # Read back by export, so the served signature cleans, truncates and
        # packs texts exactly as training did (distil_tf.text.preprocessing).
        "preprocessing": run.task.preprocessing_for(run.sequence_length).to_dict(),
        "optimizer": dataclasses.asdict(config.optimizer),
        "seed": config.runtime.seed,
    }


def _start_run(config, out_dir, command):
    """Write the run's config and its run.json marker ("running", no final model yet)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save_config(config, out_dir)
    if is_chief():
        mark_run_started(out_dir, command)


def _finish(config, run, model, tokenizer, out_dir, model_dir, provenance, steps, result, seconds, vocab_path,
            extra=None):
    from distil_tf.models import save_model

    # Saved before scoring: a failing evaluation must not lose the training.
    if is_chief():
        save_model(model, model_dir, tokenizer, provenance=provenance, overwrite=True)
        mark_model_saved(out_dir, model_dir)
    options = _evaluation_options(config, run.sequence_length)
    evaluation = evaluate_on_splits(
        model, tokenizer, run.task, run.source, run.eval_splits, options, vocab_path,
        config.data.eval_limit, config.data.eval_skip,
    )
    summary = {
        "task": run.spec.name,
        "model": str(model_dir),
        "steps": steps,
        "resumed_from_step": result["initial_step"],
        "seconds": round(seconds, 2),
        "final_train_loss": {key: float(values[-1]) for key, values in result["history"].items()},
        "data": dict(run.data_summary(config), eval_limit=config.data.eval_limit, eval_skip=config.data.eval_skip),
        "evaluation": evaluation,
        **(extra or {}),
    }
    if is_chief():
        (out_dir / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        mark_run_finished(out_dir)
    return summary


def _load(path, precision):
    from distil_tf.models import load_model_and_tokenizer

    return load_model_and_tokenizer(path, dtype=None if precision == "float32" else precision)


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def run_finetune(config):
    """Fine-tune a model on a task's train split; save it, score it on dev.

    Returns:
        The summary written to `metrics.json`.
    """
    import keras

    from distil_tf.tasks import registry

    _require(config.task, "--task")
    _require(config.model, "--model")
    _require(config.out, "--out")
    task = registry.build_task(config.task)
    out_dir = pathlib.Path(config.out)
    strategy = setup_runtime(config.runtime)
    try:
        with strategy.scope():
            base, tokenizer = _load(config.model, config.runtime.precision)
        vocab_path = _vocab_path_for(task, config.model)
        run = _TaskRun(config, task, tokenizer, vocab_path)
        _start_run(config, out_dir, "finetune")
        steps = run.steps(config)
        with strategy.scope():
            model = task.build_model(base)
            model.compile(
                optimizer=build_optimizer(config.optimizer, steps),
                jit_compile=config.runtime.jit_compile,
                **task.compile_arguments(),
            )
        steps, result, seconds = _train(model, config, run, tokenizer, out_dir, strategy)
        provenance = {
            "kind": "finetuned",
            "task": task.name,
            "base_model": str(config.model),
            **_run_provenance(config, run, steps),
        }
        return _finish(config, run, model, tokenizer, out_dir, out_dir / FINETUNED_MODEL_DIR, provenance,
                       steps, result, seconds, vocab_path)
    finally:
        keras.config.set_dtype_policy("float32")


def build_student(config, teacher, tokenizer, task):
    """The student `TaskModel` of a `distill-task` run, its layer map (or None) and where its head came from."""
    from distil_tf.models import load_model_and_tokenizer
    from distil_tf.models.student_init import student_task_model, validate_layer_map
    from distil_tf.training.distill import parse_student

    kind, value = parse_student(config.student)
    if kind == "dir":
        student, student_tokenizer = load_model_and_tokenizer(value)
        if student_tokenizer.get_vocabulary() != tokenizer.get_vocabulary():
            raise ValueError(
                f"the student's vocabulary ({student_tokenizer.vocabulary_size()} tokens) differs "
                f"from the teacher's ({tokenizer.vocabulary_size()}): distillation needs one vocabulary"
            )
        return task.build_model(student), None, "from the student directory"
    layers = validate_layer_map(value, teacher.encoder.num_layers) if kind == "layers" else None
    # The student starts from the teacher's layers and its task head.
    student, layer_map, head = student_task_model(
        teacher, layer_map=layers, num_layers=value if kind == "depth" else None
    )
    return task.build_model(student), layer_map, head


def hidden_layer_map(config, teacher, student, layer_map):
    """The teacher layer each student layer's hidden state is compared to, and where it came from.

    A student built here from teacher layers has its map. A student given as
    a directory uses the map recorded with it (`init-student`, `distill`)
    when that map fits this teacher's depth, else the evenly spread map over
    depth (`default_layer_map`: for 12 -> 6 the released map).
    """
    from distil_tf.models import describe_model
    from distil_tf.models.student_init import default_layer_map

    if layer_map is not None:
        return list(layer_map), "the student's initialization"
    student_layers, teacher_layers = student.encoder.num_layers, teacher.encoder.num_layers
    provenance = describe_model(config.student)
    recorded = provenance.get("layer_map")
    if (
        isinstance(recorded, list) and len(recorded) == student_layers
        and all(isinstance(index, int) and 0 <= index < teacher_layers for index in recorded)
        and provenance.get("teacher_layers", teacher_layers) == teacher_layers
    ):
        return recorded, "recorded with the student directory"
    return default_layer_map(teacher_layers, student_layers), "evenly spread (the student directory records none)"


def _transfer_set(config, run, teacher, tokenizer):
    """The run's `TransferSet`: training items, augmented copies, unlabeled lines (validated here)."""
    from distil_tf.distillation import transfer_set

    settings = config.distillation
    augmentation = transfer_set.AugmentationSettings(
        copies=settings.augment, mask=settings.augment_mask, substitute=settings.augment_substitute,
        ngram=settings.augment_ngram, word_dropout=settings.augment_word_dropout,
        neighbours=settings.augment_neighbours,
    )
    return transfer_set.TransferSet(
        run.spec, run.train_items, tokenizer, run.sequence_length, augmentation,
        # Built on first use only: a cache hit never needs the neighbour table.
        augmenter=lambda: transfer_set.build_augmenter(teacher, tokenizer, augmentation),
        unlabeled=settings.unlabeled, seed=config.runtime.seed,
    )


def _transfer_set_input(config, transfer, distiller, out_dir, strategy):
    """`(make_train or None, summary)`: batches from the teacher-output cache, the augmented stream, or today's.

    None means the plain pipeline of `_train` (no cache, no extra examples).
    """
    import tensorflow as tf

    from distil_tf.distillation import transfer_set

    summary = dict(transfer.counts, total=len(transfer), augment=config.distillation.augment,
                   unlabeled_files=list(transfer.unlabeled), teacher_outputs=transfer_set.BYPASSED)
    trim, static, groups = _trimmed_batches(config)
    if transfer.spec.head_type == SPAN:
        groups = 0  # SQuAD windows fill their length: nothing to group.
    reason = None
    if not config.distillation.cache_teacher_outputs:
        reason = "--no-cache"
    elif distiller.needs_teacher_forward:
        reason = "the hidden-state term (alpha_hidden > 0) needs the teacher's hidden states every step"
        print(f"teacher outputs: not cached: {reason}")
    elif isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        reason = "a multi-worker run (the cache is written by one process)"
        print(f"teacher outputs: not cached: {reason}")
    if reason is not None:
        summary["cache_bypass_reason"] = reason
        if not (transfer.counts["augmented"] or transfer.counts["unlabeled"]):
            return None, summary
        return transfer_set.on_the_fly_factory(
            transfer, distiller.student.num_classes, config.runtime.seed, trim=trim, drop_remainder=static,
            group_by_length_batches=groups,
        ), summary
    directory = pathlib.Path(config.distillation.teacher_outputs_dir or out_dir / transfer_set.CACHE_DIR)
    fingerprint = transfer_set.fingerprint(transfer, distiller.teacher, config.runtime.precision, extra={
        "train_split": config.data.train_split, "train_limit": config.data.train_limit,
        "train_skip": config.data.train_skip, "doc_stride": config.data.doc_stride,
        "max_query_length": config.data.max_query_length,
    })
    cache = transfer_set.TeacherOutputCache(directory, transfer, distiller.teacher, fingerprint,
                                            batch_size=config.evaluation.batch_size)
    status = cache.ensure()
    if status == transfer_set.BUILT:
        print(f"teacher outputs: scored {cache.manifest['records']} examples once into {directory}")
    summary.update(teacher_outputs=status, cache_dir=str(directory))
    return cache.dataset_factory(config.runtime.seed, trim=trim, drop_remainder=static,
                                 group_by_length_batches=groups), summary


def run_task_distillation(config):
    """Distil a fine-tuned teacher into a student on a task; save and score the student.

    Returns:
        The summary written to `metrics.json`.
    """
    import keras

    from distil_tf.distillation.distillation_losses import HIDDEN_STATE_LOSSES, mapped_layer_pairs
    from distil_tf.distillation import transfer_set
    from distil_tf.distillation.task_distiller import SOFT_LOSSES, TaskDistiller
    from distil_tf.tasks import registry

    _require(config.task, "--task")
    _require(config.teacher, "--teacher")
    _require(config.student, "--student")
    _require(config.out, "--out")
    # Before the (slow) model loads; TaskDistiller checks the rest.
    for name, value, choices in (("soft_loss", config.distillation.soft_loss, SOFT_LOSSES),
                                 ("hidden_loss", config.distillation.hidden_loss, HIDDEN_STATE_LOSSES)):
        if value not in choices:
            raise ValueError(f"unknown distillation.{name} '{value}'; expected one of {', '.join(choices)}")
    task = registry.build_task(config.task)
    transfer_set.check_transfer_options(task.spec, config.distillation.augment, config.distillation.unlabeled)
    out_dir = pathlib.Path(config.out)
    strategy = setup_runtime(config.runtime)
    try:
        with strategy.scope():
            teacher, tokenizer = _load(config.teacher, config.runtime.precision)
        task.check_model(teacher, config.teacher)
        vocab_path = _vocab_path_for(task, config.teacher)
        run = _TaskRun(config, task, tokenizer, vocab_path)
        transfer = _transfer_set(config, run, teacher, tokenizer)
        _start_run(config, out_dir, "distill-task")
        steps = run.steps(config, len(transfer))
        with strategy.scope():
            student, layer_map, head = build_student(config, teacher, tokenizer, task)
            if config.distillation.freeze_position_embeddings:
                student.encoder.position_embedding.trainable = False
            hidden_pairs, hidden_map = None, None
            if config.distillation.alpha_hidden > 0:
                hidden_map, hidden_source = hidden_layer_map(config, teacher, student, layer_map)
                hidden_pairs = mapped_layer_pairs(hidden_map)
                print(f"hidden-state loss: student layers 0..{len(hidden_map) - 1} against teacher layers "
                      f"{hidden_map} ({hidden_source})")
            distiller = TaskDistiller(
                teacher, student,
                alpha_ce=config.distillation.alpha_ce,
                alpha_task=config.distillation.alpha_task,
                temperature=config.distillation.temperature,
                soft_loss=config.distillation.soft_loss,
                alpha_hidden=config.distillation.alpha_hidden,
                hidden_loss=config.distillation.hidden_loss,
                hidden_layer_pairs=hidden_pairs,
            )
            distiller.compile(
                optimizer=build_optimizer(config.optimizer, steps), jit_compile=config.runtime.jit_compile
            )
        make_train, transfer_summary = _transfer_set_input(config, transfer, distiller, out_dir, strategy)
        steps, result, seconds = _train(distiller, config, run, tokenizer, out_dir, strategy, make_train)
        provenance = {
            "kind": "task_distilled",
            "task": task.name,
            "teacher": str(config.teacher),
            "student_init": str(config.student),
            "layer_map": layer_map,
            "head": head,
            "distillation": dataclasses.asdict(config.distillation),
            "hidden_layer_map": hidden_map,
            "transfer_set": transfer_summary,
            **_run_provenance(config, run, steps),
        }
        return _finish(config, run, distiller.student, tokenizer, out_dir, out_dir / DISTILLED_MODEL_DIR,
                       provenance, steps, result, seconds, vocab_path, extra={"transfer_set": transfer_summary})
    finally:
        keras.config.set_dtype_policy("float32")


def _evaluate_served(version_dir, spec, source, split, output, limit, skip, batch_size, max_seq_length):
    """`run_evaluation` of an exported SavedModel: its serving_default on raw text."""
    from distil_tf.tasks import served_evaluation, task_inputs

    if max_seq_length:
        raise ValueError(f"{version_dir} is an exported SavedModel: it serves the length it was exported "
                         "with; drop --max-seq-length")
    evaluation = {}
    for name in task_inputs.evaluation_splits(spec, source, split):
        examples = task_inputs.subset(task_inputs.read_split(spec, name, source), limit, skip)
        evaluation[name] = served_evaluation.evaluate_saved_model(version_dir, spec, examples, batch_size)
    result = {
        "task": spec.name,
        "model": str(version_dir),
        "data": {"source": source.describe(spec), "limit": limit, "skip": skip, "served": True},
        "evaluation": evaluation,
    }
    _write_json(output, result)
    return result


def _write_json(output, result):
    if output:
        output = pathlib.Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")


def run_evaluation(model_path, task, data_dir=None, split=None, output=None, limit=None, skip=0,
                   batch_size=64, max_seq_length=0, null_score_diff_threshold=0.0):
    """Score a task model directory, or what is served, on a task split; optionally write JSON.

    Args:
        model_path: a task model directory (from `finetune` or `distill-task`)
            or its run directory; or an exported SavedModel (a version
            directory, or a base path: its newest version), scored through
            `serving_default` on raw text as TF Serving runs it.
        task: registry name, e.g. "glue/cola".
        data_dir: the task family's local folder (else $DISTIL_TF_DATA or tfds).
        split: "dev"/"validation" (MNLI: both matched and mismatched), or
            any split the task has; default: the task's evaluation splits.
        output: JSON path to write.
        limit, skip: score examples `[skip:skip+limit]` only.
        batch_size: int.
        max_seq_length: 0 = the length recorded at fine-tuning, else the
            task default.
        null_score_diff_threshold: SQuAD v2.0 null threshold.

    Returns:
        `{"task", "model", "data", "evaluation": {split: metrics}}`.
    """
    from distil_tf.models import describe_model, load_model_and_tokenizer
    from distil_tf.tasks import registry, task_inputs
    from distil_tf.tasks.evaluation import EvaluationOptions

    task = registry.build_task(task)  # the name becomes its Task object
    spec = task.spec
    source = task_inputs.resolve_source(spec, data_dir)
    version_dir = resolve_saved_model(model_path)
    if version_dir is not None:
        return _evaluate_served(version_dir, spec, source, split, output, limit, skip, batch_size, max_seq_length)
    model, tokenizer = load_model_and_tokenizer(model_path)
    task.check_model(model, model_path)
    # Score with the windows the model was fine-tuned with, unless told otherwise.
    provenance = describe_model(model_path)
    trained_data = provenance.get("data") or {}
    length = max_seq_length or provenance.get("max_seq_length") or 0
    options = EvaluationOptions(
        batch_size=batch_size, max_seq_length=length,
        null_score_diff_threshold=null_score_diff_threshold,
        doc_stride=trained_data.get("doc_stride") or EvaluationOptions.doc_stride,
        max_query_length=trained_data.get("max_query_length") or EvaluationOptions.max_query_length,
    )
    vocab_path = _vocab_path_for(task, model_path)
    splits = task_inputs.evaluation_splits(spec, source, split)
    evaluation = evaluate_on_splits(model, tokenizer, task, source, splits, options, vocab_path, limit, skip)
    result = {
        "task": spec.name,
        "model": str(model_path),
        "data": {
            "source": source.describe(spec),
            "limit": limit,
            "skip": skip,
            "max_seq_length": options.max_seq_length or task.default_sequence_length(),
        },
        "evaluation": evaluation,
    }
    _write_json(output, result)
    return result
