"""Downstream drivers: fine-tune, evaluate, and task-specific distillation ("DistilBERT (D)").

    distil-tf finetune --task glue/sst2 --model student/ --out runs/sst2 --data-dir data/glue
    distil-tf evaluate --task glue/sst2 --model runs/sst2/model --data-dir data/glue --split dev
    distil-tf distill-task --task glue/sst2 --teacher runs/teacher/model --student 0,3,5 \\
        --out runs/sst2-d --data-dir data/glue

`finetune` and `distill-task` are two `TaskTrainer`s over one driver,
`train_lib.run` (runtime, config.yaml and run.json, fit with resume, save,
score, metrics.json); this module holds what each command adds: its config
fields, the model it loads first, how it builds and compiles its trainee,
what the saved model records.

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
import pathlib
import typing

from distil_tf.heads import SPAN
from distil_tf.tasks.served_evaluation import resolve_saved_model
from distil_tf.training import train_lib
from distil_tf.training.optimization import build_optimizer

# The shared pieces live in train_lib; the CLI, scripts, benchmarks and tests
# import them from here.
from distil_tf.training.train_lib import (  # noqa: F401
    METRICS_FILE,
    EvaluationConfig,
    TaskDataConfig,
    TaskRunConfig,
    evaluate_on_splits,
    finetune_optimizer,
    finetune_runtime,
)
from distil_tf.training.train_lib import TaskRun as _TaskRun  # noqa: F401

FINETUNED_MODEL_DIR = "model"
DISTILLED_MODEL_DIR = "student"


@dataclasses.dataclass
class FinetuneConfig(TaskRunConfig):
    # Encoder dir, student dir, Hugging Face dir, or a task model to train on.
    model: str = ""


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
    # "auto": 2 copies for a run sized in epochs over fewer than
    # augment_auto_below labelled examples (MRPC, STS-B, RTE), none otherwise (SST-2,
    # IMDb, SQuAD, any --steps run): where the measurements found them to pay
    # (transfer_set.augment_copies). The copies triple such a run's steps.
    augment: str = "auto"
    augment_auto_below: int = 10_000
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
class DistillTaskConfig(TaskRunConfig):
    # A TaskModel fine-tuned on the task.
    teacher: str = ""
    # A student/encoder/task-model directory, a layer map ("0,3,5") or a
    # depth ("3") taken from the teacher's encoder.
    student: str = ""
    distillation: TaskDistillationConfig = dataclasses.field(default_factory=TaskDistillationConfig)


def build_task_model(encoder_or_model, spec):
    """A `TaskModel` for `spec` from an encoder or another task model (`Task.build_model`)."""
    from distil_tf.tasks import registry

    return registry.build_task(spec.name).build_model(encoder_or_model)


# ---------------------------------------------------------------------------
# finetune
# ---------------------------------------------------------------------------


class _Finetuning(train_lib.TaskTrainer):
    """`finetune`: the model itself, with the task's head, trained on the task's labels."""

    command, start, model_dir = "finetune", "model", FINETUNED_MODEL_DIR
    required = (("task", "--task"), ("model", "--model"), ("out", "--out"))

    def build(self, config, run, base, steps):
        model = run.task.build_model(base)
        model.compile(
            optimizer=build_optimizer(config.optimizer, steps),
            jit_compile=config.runtime.jit_compile,
            **run.task.compile_arguments(),
        )
        return model

    def provenance(self, config, run):
        return {"kind": "finetuned", "task": run.task.name, "base_model": str(config.model)}


def run_finetune(config):
    """Fine-tune a model on a task's train split, save it, score it on dev; returns the metrics.json summary."""
    return train_lib.run(config, _Finetuning())


# ---------------------------------------------------------------------------
# distill-task
# ---------------------------------------------------------------------------


def build_student(config, teacher, tokenizer, task):
    """The student `TaskModel` of a `distill-task` run, its layer map (or None) and where its head came from."""
    from distil_tf.models.student_init import student_task_model, validate_layer_map
    from distil_tf.training.distill import load_student_dir, parse_student

    kind, value = parse_student(config.student)
    if kind == "dir":
        return task.build_model(load_student_dir(value, tokenizer)), None, "from the student directory"
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
    copies, why = transfer_set.augment_copies(settings.augment, run.spec, len(run.train_examples),
                                              sized_in_epochs=not config.steps,
                                              auto_below=settings.augment_auto_below)
    if transfer_set.parse_augment(settings.augment) == transfer_set.AUTO:
        print(f"transfer set: {copies} augmented {'copy' if copies == 1 else 'copies'} per example ({why})")
    augmentation = transfer_set.AugmentationSettings(
        copies=copies, mask=settings.augment_mask, substitute=settings.augment_substitute,
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

    summary = dict(transfer.counts, total=len(transfer), augment=transfer.augmentation.copies,
                   augment_setting=str(config.distillation.augment),
                   unlabeled_files=list(transfer.unlabeled), teacher_outputs=transfer_set.BYPASSED)
    trim, static, groups = train_lib.trimmed_batches(config)
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


class _TaskDistillation(train_lib.TaskTrainer):
    """`distill-task`: a student trained on a fine-tuned teacher's outputs and the task's labels."""

    command, start, model_dir = "distill-task", "teacher", DISTILLED_MODEL_DIR
    required = (("task", "--task"), ("teacher", "--teacher"), ("student", "--student"), ("out", "--out"))

    def validate(self, config, task):
        from distil_tf.distillation import transfer_set
        from distil_tf.distillation.distillation_losses import HIDDEN_STATE_LOSSES
        from distil_tf.distillation.task_distiller import SOFT_LOSSES

        # Before the (slow) model loads; TaskDistiller checks the rest.
        for name, value, choices in (("soft_loss", config.distillation.soft_loss, SOFT_LOSSES),
                                     ("hidden_loss", config.distillation.hidden_loss, HIDDEN_STATE_LOSSES)):
            if value not in choices:
                raise ValueError(f"unknown distillation.{name} '{value}'; expected one of {', '.join(choices)}")
        transfer_set.check_transfer_options(task.spec, config.distillation.augment, config.distillation.unlabeled)

    def load(self, config, task):
        teacher, tokenizer = super().load(config, task)
        task.check_model(teacher, config.teacher)
        return teacher, tokenizer

    def prepare(self, config, run, teacher):
        self.transfer = _transfer_set(config, run, teacher, run.tokenizer)
        return len(self.transfer)  # an epoch is one pass over the transfer set, its extra rows included

    def build(self, config, run, teacher, steps):
        from distil_tf.distillation.distillation_losses import mapped_layer_pairs
        from distil_tf.distillation.task_distiller import TaskDistiller

        student, self.layer_map, self.head = build_student(config, teacher, run.tokenizer, run.task)
        if config.distillation.freeze_position_embeddings:
            student.encoder.position_embedding.trainable = False
        hidden_pairs, self.hidden_map = None, None
        if config.distillation.alpha_hidden > 0:
            self.hidden_map, hidden_source = hidden_layer_map(config, teacher, student, self.layer_map)
            hidden_pairs = mapped_layer_pairs(self.hidden_map)
            print(f"hidden-state loss: student layers 0..{len(self.hidden_map) - 1} against teacher layers "
                  f"{self.hidden_map} ({hidden_source})")
        settings = config.distillation
        distiller = TaskDistiller(
            teacher, student, alpha_ce=settings.alpha_ce, alpha_task=settings.alpha_task,
            temperature=settings.temperature, soft_loss=settings.soft_loss, alpha_hidden=settings.alpha_hidden,
            hidden_loss=settings.hidden_loss, hidden_layer_pairs=hidden_pairs,
        )
        distiller.compile(optimizer=build_optimizer(config.optimizer, steps), jit_compile=config.runtime.jit_compile)
        return distiller

    def training_input(self, config, run, distiller, out_dir, strategy):
        make_train, self.transfer_summary = _transfer_set_input(config, self.transfer, distiller, out_dir, strategy)
        return make_train

    def saved_model(self, distiller):
        return distiller.student

    def provenance(self, config, run):
        return {
            "kind": "task_distilled",
            "task": run.task.name,
            "teacher": str(config.teacher),
            "student_init": str(config.student),
            "layer_map": self.layer_map,
            "head": self.head,
            "distillation": dataclasses.asdict(config.distillation),
            "hidden_layer_map": self.hidden_map,
            "transfer_set": self.transfer_summary,
        }

    def summary(self):
        return {"transfer_set": self.transfer_summary}


def run_task_distillation(config):
    """Distil a fine-tuned teacher into a student on a task, save and score the student; returns the summary."""
    return train_lib.run(config, _TaskDistillation())


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
    vocab_path = train_lib.vocab_path_for(task, model_path)
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
