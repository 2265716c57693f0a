"""`distil-tf finetune`, `evaluate` and `distill-task`: thin subcommands over `training.finetune`.

`register(commands)` adds the three subparsers; `distil_tf.cli` calls it
from its `_EXTRA_COMMANDS` list.
"""

import json

_FLAG_FIELDS = {"steps": "steps", "batch_size": "data.batch_size", "max_seq_length": "data.max_seq_length"}


def _add_data_flags(parser):
    parser.add_argument("--data-dir", help="the task family's local folder, e.g. data/glue (else "
                        "$DISTIL_TF_DATA/<family>, else tfds)")
    parser.add_argument("--epochs", type=float, help="epochs when --steps is not given (default 3)")
    parser.add_argument("--train-limit", type=int, help="train on the first N examples only")
    parser.add_argument("--eval-limit", type=int, help="score the first N dev examples only")
    parser.add_argument("--eval-skip", type=int, help="skip the first N dev examples when scoring")


def _data_fields(args):
    fields = {
        "data.data_dir": args.data_dir, "epochs": args.epochs, "data.train_limit": args.train_limit,
        "data.eval_limit": args.eval_limit, "data.eval_skip": args.eval_skip,
    }
    return [f"{key}={value}" for key, value in fields.items() if value is not None]


def _resolve(cls, args, extra=(), **fields):
    from distil_tf.cli.common import resolve_training_config

    # Explicit data flags sit with the training flags: after the YAML, before --set.
    return resolve_training_config(cls, args, _FLAG_FIELDS, extra_flag_overrides=[*_data_fields(args), *extra],
                                   **{k: v for k, v in fields.items() if v})


def _print_summary(summary, model_dir):
    print(f"model written to {model_dir} ({summary['steps']} steps, {summary['seconds']:.0f} s, "
          f"{summary['data']['train_examples']} training examples)")
    print(format_metrics_table(summary["task"], model_dir, summary["evaluation"]))


def cmd_finetune(args):
    from distil_tf.training.finetune import FINETUNED_MODEL_DIR, FinetuneConfig, run_finetune

    config = _resolve(FinetuneConfig, args, task=args.task, model=args.model, out=args.out)
    summary = run_finetune(config)
    _print_summary(summary, f"{config.out}/{FINETUNED_MODEL_DIR}")


def cmd_distill_task(args):
    from distil_tf.training.finetune import DISTILLED_MODEL_DIR, DistillTaskConfig, run_task_distillation

    transfer = []
    if args.no_cache:
        transfer.append("distillation.cache_teacher_outputs=false")
    if args.augment is not None:
        transfer.append(f"distillation.augment={args.augment}")
    config = _resolve(DistillTaskConfig, args, extra=transfer, task=args.task, teacher=args.teacher,
                      student=args.student, out=args.out)
    if args.unlabeled:
        config.distillation.unlabeled = list(args.unlabeled)
    summary = run_task_distillation(config)
    _print_summary(summary, f"{config.out}/{DISTILLED_MODEL_DIR}")


def cmd_evaluate(args):
    from distil_tf.tasks.sts_embedding import STS_EMBEDDING_TASK, run_embedding_evaluation
    from distil_tf.training.finetune import run_evaluation

    if args.task == STS_EMBEDDING_TASK:
        # Zero-shot: cosine of sentence embeddings, an encoder or its export.
        result = run_embedding_evaluation(
            args.model, data_dir=args.data_dir, split=args.split, limit=args.limit, skip=args.skip or 0,
            batch_size=args.batch_size, max_seq_length=args.max_seq_length or 0, output=args.output,
        )
        embedding = result["embedding"]
        print(f"embedding: {embedding.get('pooling')} pooling, "
              f"{'L2-normalized' if embedding.get('normalize') else 'not normalized'}, "
              f"max {embedding.get('max_sequence_length')} tokens ({embedding['kind'].replace('_', ' ')})")
    else:
        result = run_evaluation(
            args.model, args.task, data_dir=args.data_dir, split=args.split, output=args.output,
            limit=args.limit, skip=args.skip or 0, batch_size=args.batch_size,
            max_seq_length=args.max_seq_length or 0, null_score_diff_threshold=args.null_score_diff_threshold,
        )
    print(format_metrics_table(result["task"], args.model, result["evaluation"]))
    if args.output:
        print(f"metrics written to {args.output}")
    elif args.json:
        print(json.dumps(result["evaluation"], indent=2))


def register(commands):
    """Add `finetune`, `evaluate` and `distill-task` to the `distil-tf` subparsers."""
    from distil_tf.cli.common import add_training_flags

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune a model on a GLUE, IMDb or SQuAD task",
        description="Add the task's head to an encoder (teacher, student or Hugging Face dir), "
        "train it on the task's train split, save it and score it on dev.",
    )
    finetune.add_argument("--task", required=True, help="task name, e.g. glue/sst2, imdb, squad/v1.1")
    finetune.add_argument("--model", required=True, help="encoder, student, Hugging Face or task model directory")
    finetune.add_argument("--out", required=True, help="run directory (the model goes to OUT/model)")
    _add_data_flags(finetune)
    add_training_flags(finetune)
    finetune.set_defaults(handler=cmd_finetune)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a task model with the task's official metrics",
        description="GLUE metrics per task (MNLI matched and mismatched), IMDb accuracy, "
        "SQuAD EM/F1 with n-best decoding; --task stsb-embedding scores an encoder (or its "
        "exported SavedModel) zero-shot: Pearson/Spearman of embedding cosines on STS-B.",
    )
    evaluate.add_argument("--task", required=True, help="task name, e.g. glue/cola, or stsb-embedding")
    evaluate.add_argument("--model", required=True,
                          help="task model directory (from finetune or distill-task); for "
                               "stsb-embedding an encoder directory or an exported SavedModel")
    evaluate.add_argument("--data-dir", help="the task family's local folder, e.g. data/glue")
    evaluate.add_argument("--split", help="dev (default), validation, train, validation_matched, ...")
    evaluate.add_argument("--output", help="write the metrics as JSON here")
    evaluate.add_argument("--limit", type=int, help="score the first N examples only")
    evaluate.add_argument("--skip", type=int, help="skip the first N examples")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--max-seq-length", type=int, help="default: the model's fine-tuning length")
    evaluate.add_argument("--null-score-diff-threshold", type=float, default=0.0, help="SQuAD v2.0")
    evaluate.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    evaluate.set_defaults(handler=cmd_evaluate)

    distill = commands.add_parser(
        "distill-task",
        help="task-specific distillation from a fine-tuned teacher (DistilBERT (D))",
        description="L = a_ce * T^2 * KL(teacher || student) + a_task * L_task on the task's "
        "train split (defaults 0.5 / 0.5, T = 2); the student goes to OUT/student.",
    )
    distill.add_argument("--task", required=True, help="task name, e.g. squad/v1.1")
    distill.add_argument("--teacher", required=True, help="task model fine-tuned on --task")
    distill.add_argument("--student", required=True,
                         help="student directory, or a layer map (0,3,5) / depth (3) from the teacher's encoder")
    distill.add_argument("--out", required=True, help="run directory")
    distill.add_argument("--augment", metavar="N|auto",
                         help="N perturbed copies of each training example, labelled by the teacher only "
                              "(masking, embedding-neighbour substitution, word dropout, n-grams; Tang et al. "
                              "2019); not for SQuAD. Default auto: 2 for an epoch-sized run over fewer than "
                              "10,000 labelled examples (MRPC, STS-B, RTE), else 0")
    distill.add_argument("--unlabeled", nargs="+", metavar="FILE",
                         help="in-domain text, one example a line (text_a<TAB>text_b for pair tasks), "
                              "labelled by the teacher only")
    distill.add_argument("--no-cache", action="store_true",
                         help="run the teacher in every train step instead of scoring the transfer set once "
                              "into OUT/teacher_outputs")
    _add_data_flags(distill)
    add_training_flags(distill)
    distill.set_defaults(handler=cmd_distill_task)


def format_metrics_table(task, model, results):
    """A plain-text table of `{split: metrics}` (values x100, counts as is)."""
    rows = [f"task: {task}    model: {model}"]
    width = max([len(name) for split in results.values() for name in split] + [6])
    for split, values in results.items():
        rows.append(f"  {split} ({values.get('examples', '?')} examples)")
        for name, value in values.items():
            if name in ("examples", "windows") or name.endswith(("_total", "_threshold")) or name == "total":
                continue
            rows.append(f"    {name:<{width}}  {100.0 * value:7.2f}")
    return "\n".join(rows)
