"""General-purpose distillation: a BERT teacher into a DistilBERT student on raw text.

    distil-tf distill --teacher bert-base-uncased/ --student 0,2,4,7,9,11 \
        --corpus 'wiki/*.txt' --out runs/distilbert [--config paper.yaml]

Output directory: `config.yaml` (resolved config), `token_counts.npy`,
`checkpoints/` (resume state), `tensorboard/`, `student/` (the distilled
student, loadable by `distil_tf.load_model`), `metrics.json`.
"""

import dataclasses
import json
import pathlib
import time
import typing

import numpy as np

from distil_tf import config as config_lib
from distil_tf import run_dir
from distil_tf.training.optimization import OptimizerConfig, build_optimizer
from distil_tf.training.runtime import RuntimeConfig, is_chief, setup_runtime


@dataclasses.dataclass
class CorpusConfig:
    # Text files (globs, .gz), TFRecords, or tfds names ("tfds:wikipedia/20230601.en").
    corpus: typing.List[str] = dataclasses.field(default_factory=list)
    # Held-out text for the validation MLM loss (optional).
    validation_corpus: typing.List[str] = dataclasses.field(default_factory=list)
    # Token counts from `distil-tf count-tokens`; counted into the run dir if unset.
    token_counts: typing.Optional[str] = None
    max_seq_length: int = 128
    # Global batch size (sequences per step, across replicas).
    batch_size: int = 32
    # Fixed [batch, max_seq_length] shapes and static predictions (TPU / XLA).
    fixed_shapes: bool = False
    shuffle_buffer: int = 10000


@dataclasses.dataclass
class DistillationConfig:
    # The released model's weights (transformers#2013): 5 / 2 / 1, T = 2.
    alpha_ce: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    alpha_mse: float = 0.0
    temperature: float = 2.0
    restrict_ce_to_mask: bool = False
    # "last" (the paper) or "all": cosine also on every student layer and the
    # teacher layer it was copied from.
    cosine_layers: str = "last"
    mask_proportion: float = 0.15
    mlm_smoothing: float = 0.7
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1


@dataclasses.dataclass
class DistillConfig:
    teacher: str = ""
    # A student directory, a layer map ("0,2,4,7,9,11"), or a depth ("6").
    student: str = "6"
    out: str = ""
    # Random student weights (Table 4's ablation) instead of teacher layers.
    random_init: bool = False
    steps: int = 1000
    checkpoint_every: int = 500
    log_every: int = 50
    data: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    distillation: DistillationConfig = dataclasses.field(default_factory=DistillationConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


def parse_student(spec):
    """("dir", path) | ("layers", [..]) | ("depth", n)."""
    path = pathlib.Path(spec)
    if path.exists():
        return "dir", path
    try:
        values = [int(item) for item in spec.split(",") if item.strip()]
    except ValueError:
        raise ValueError(
            f"--student '{spec}' is neither an existing directory nor a layer map like 0,2,4,7,9,11"
        ) from None
    if len(values) == 1 and "," not in spec:
        return "depth", values[0]
    return "layers", values


def build_models(config):
    """Teacher, student (initialized per the config) and the tokenizer."""
    from distil_tf.models import init_student_from_teacher, load_model_and_tokenizer
    from distil_tf.models.student_init import validate_layer_map

    teacher, tokenizer = load_model_and_tokenizer(config.teacher)
    teacher = getattr(teacher, "encoder", teacher)
    kind, value = parse_student(config.student)
    if kind == "dir":
        student, student_tokenizer = load_model_and_tokenizer(value)
        if student_tokenizer.get_vocabulary() != tokenizer.get_vocabulary():
            raise ValueError(
                f"the student's vocabulary ({student_tokenizer.vocabulary_size()} tokens) differs "
                f"from the teacher's ({tokenizer.vocabulary_size()}): distillation needs one vocabulary"
            )
        layer_map = None
    else:
        layers = value if kind == "layers" else None
        depth = value if kind == "depth" else None
        if layers is not None:
            validate_layer_map(layers, teacher.num_layers)
        student, layer_map = init_student_from_teacher(
            teacher, layer_map=layers, num_layers=depth, random_init=config.random_init
        )
    return teacher, student, tokenizer, layer_map


def _cosine_pairs(config, student, layer_map):
    if config.distillation.cosine_layers == "last":
        return [(-1, -1)]
    if config.distillation.cosine_layers == "all":
        if layer_map is None:
            raise ValueError("cosine_layers=all needs a layer map (the student was given as a directory)")
        return [(index + 1, teacher_index + 1) for index, teacher_index in enumerate(layer_map)]
    raise ValueError(f"cosine_layers must be 'last' or 'all', got '{config.distillation.cosine_layers}'")


def _token_counts(config, tokenizer, out_dir):
    from distil_tf.data.token_counts import count_tokens, load_token_counts

    if config.data.token_counts:
        return load_token_counts(config.data.token_counts, tokenizer.vocabulary_size())
    path = out_dir / "token_counts.npy"
    if path.is_file():
        return load_token_counts(path, tokenizer.vocabulary_size())
    print(f"counting tokens of the corpus into {path} (pass --set data.token_counts=... to reuse)")
    return count_tokens(config.data.corpus, tokenizer, config.data.max_seq_length, path,
                        vocabulary_size=tokenizer.vocabulary_size())


def mlm_dataset_factory(config, tokenizer, counts, corpus, seed_offset=0):
    from distil_tf.data.batching import build_mlm_dataset

    def make(input_context, batch_size):
        return build_mlm_dataset(
            corpus, tokenizer, counts,
            max_length=config.data.max_seq_length,
            batch_size=batch_size,
            fixed_shapes=config.data.fixed_shapes,
            seed=config.runtime.seed + seed_offset,
            input_context=input_context,
            shuffle_buffer=config.data.shuffle_buffer,
            mask_proportion=config.distillation.mask_proportion,
            mlm_smoothing=config.distillation.mlm_smoothing,
            mask_token_rate=config.distillation.mask_token_rate,
            random_token_rate=config.distillation.random_token_rate,
        )

    return make


def evaluate_mlm(distiller, make_dataset, max_batches=50):
    """Mean held-out loss terms of the student (no weight update)."""
    dataset = make_dataset(None, 32).take(max_batches)
    totals, batches = {}, 0
    for batch in dataset:
        outputs = distiller.student(batch, training=False)
        terms = distiller.loss_terms(batch, outputs)
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value)
        batches += 1
    return {name: value / max(batches, 1) for name, value in totals.items()}


def run_distillation(config, callbacks=()):
    """Run a general-purpose distillation; returns a summary dict.

    Args:
        config: `DistillConfig`.
        callbacks: extra Keras callbacks (progress hooks, tests).
    """
    import keras

    if not config.teacher:
        raise ValueError("no teacher: pass --teacher")
    if not config.out:
        raise ValueError("no output directory: pass --out")
    if not config.data.corpus:
        raise ValueError("no corpus: pass --corpus")
    if config.runtime.strategy == "tpu" and not config.data.fixed_shapes:
        # A TPU compiles one program per batch shape: dynamic padding would
        # recompile constantly (or fail), so TPU runs always use fixed shapes.
        print("strategy tpu: using fixed shapes (data.fixed_shapes=true)")
        config.data.fixed_shapes = True
    out_dir = pathlib.Path(config.out)
    student_dir = out_dir / "student"
    out_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save_config(config, out_dir)
    if is_chief():
        run_dir.mark_run_started(out_dir, "distill")

    strategy = setup_runtime(config.runtime)
    try:
        return _run(config, strategy, out_dir, student_dir, callbacks)
    finally:
        # The precision policy is process-global; leave the process as found.
        keras.config.set_dtype_policy("float32")


def _run(config, strategy, out_dir, student_dir, callbacks):
    from distil_tf.distillation import MaskedLMDistiller
    from distil_tf.models import save_model
    from distil_tf.training.fit import fit

    with strategy.scope():
        teacher, student, tokenizer, layer_map = build_models(config)
        distiller = MaskedLMDistiller(
            teacher, student,
            alpha_ce=config.distillation.alpha_ce,
            alpha_mlm=config.distillation.alpha_mlm,
            alpha_cos=config.distillation.alpha_cos,
            alpha_mse=config.distillation.alpha_mse,
            temperature=config.distillation.temperature,
            restrict_ce_to_mask=config.distillation.restrict_ce_to_mask,
            cosine_layer_pairs=_cosine_pairs(config, student, layer_map),
        )
        distiller.compile(
            optimizer=build_optimizer(config.optimizer, config.steps),
            jit_compile=config.runtime.jit_compile,
        )
    counts = _token_counts(config, tokenizer, out_dir)
    make_train = mlm_dataset_factory(config, tokenizer, counts, config.data.corpus)
    make_validation = None
    if config.data.validation_corpus:
        make_validation = mlm_dataset_factory(config, tokenizer, counts, config.data.validation_corpus, 1)
    before = evaluate_mlm(distiller, make_validation) if make_validation else None

    started = time.perf_counter()
    result = fit(
        distiller, make_train, out_dir, config.steps,
        strategy=strategy, global_batch_size=config.data.batch_size,
        checkpoint_every=config.checkpoint_every, log_every=config.log_every,
        callbacks=callbacks,
    )
    elapsed = time.perf_counter() - started
    after = evaluate_mlm(distiller, make_validation) if make_validation else None

    summary = {
        "steps": config.steps,
        "resumed_from_step": result["initial_step"],
        "seconds": round(elapsed, 2),
        "final_train_loss": {k: float(v[-1]) for k, v in result["history"].items()},
        "validation_before": before,
        "validation_after": after,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "precision": config.runtime.precision,
        "jit_compile": config.runtime.jit_compile,
    }
    if is_chief():
        provenance = {
            "kind": "distilled_student",
            "teacher": config.teacher,
            "teacher_layers": teacher.num_layers,
            "layer_map": layer_map,
            "initialization": "random" if config.random_init else "teacher_layers",
            "distillation": dataclasses.asdict(config.distillation),
            "steps": config.steps,
        }
        # The float32 copy: a run under a mixed policy still writes float32
        # weights (Keras keeps float32 variables), loadable anywhere.
        save_model(distiller.student, student_dir, tokenizer, provenance=provenance, overwrite=True)
        run_dir.mark_model_saved(out_dir, student_dir)
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        run_dir.mark_run_finished(out_dir)
    return summary
