"""`distil-tf`: thin subcommands over the library.

The package owns every flag: `common` (the training flags and their one
precedence order: defaults < --config YAML < flags < --set), `tasks`
(finetune, evaluate, distill-task), `benchmarks` (`distil-tf benchmark ...`)
and this module (the rest, and `main`). Library functions return data;
the commands print it.

Each subcommand parses its flags, calls one library function and prints the
result. Bad input (a `ValueError` from the library) is one line on stderr and
exit code 2; nothing half-written is left behind (outputs are published
atomically by the library).
"""

import argparse
import sys

from distil_tf.cli.common import UsageError, add_training_flags, parse_layers, resolve_training_config  # noqa: F401



def cmd_init_student(args):
    from distil_tf.models.student_init import write_student

    layer_map = parse_layers(args.layers) if args.layers else None
    student, layer_map = write_student(
        args.teacher,
        args.out,
        layer_map=layer_map,
        num_layers=args.num_layers,
        fold_token_type=not args.no_fold_token_type,
        random_init=args.random_init,
        overwrite=args.overwrite,
        hidden_size=args.hidden_size,
        num_heads=args.num_heads,
        intermediate_size=args.intermediate_size,
    )
    from distil_tf.models import describe_model

    provenance = describe_model(args.out)
    encoder = getattr(student, "encoder", student)
    print(f"wrote a {encoder.num_layers}-layer student to {args.out}")
    if provenance.get("teacher_hidden_size") is not None:
        print(f"random init: hidden size {encoder.hidden_dim} ({encoder.num_heads} heads, feed-forward "
              f"{encoder.intermediate_dim}) vs the teacher's {provenance['teacher_hidden_size']}; teacher layers "
              "cannot be copied into another width (distil it with --student DIR: a learned projection maps "
              "its hidden states to the teacher's)")
    elif not args.random_init:
        print(f"layer map: student layers 0..{len(layer_map) - 1} <- teacher layers {layer_map}")
    if encoder is not student:
        print(f"task head ({student.task_name}): {provenance.get('head')}")
    print(f"parameters: {student.count_params():,}")


def cmd_info(args):
    from distil_tf.models.summary import summarize

    print(summarize(args.model))


def _corpus_run_config(cls, args, extra_flag_overrides=(), **fields):
    """The config of a corpus command (distill, fit-mlm-head) from its flags.

    `resolve_training_config`'s order (defaults < --config < flags < --set),
    the length and batch flags on `data`; `fields` (explicit flags such as
    --teacher, unset ones None) win over the YAML; --corpus and
    --validation-corpus, when given, replace the YAML's lists.
    """
    config = resolve_training_config(
        cls, args,
        {"steps": "steps", "batch_size": "data.batch_size", "max_seq_length": "data.max_seq_length"},
        extra_flag_overrides=extra_flag_overrides,
        **{key: value for key, value in fields.items() if value is not None},
    )
    if args.corpus:
        config.data.corpus = list(args.corpus)
    if args.validation_corpus:
        config.data.validation_corpus = list(args.validation_corpus)
    return config


def cmd_distill(args):
    from distil_tf.training.distill import DistillConfig, run_distillation

    config = _corpus_run_config(DistillConfig, args, teacher=args.teacher, student=args.student, out=args.out)
    if args.random_init:
        config.random_init = True
    summary = run_distillation(config)
    print(f"student written to {config.out}/student")
    if summary["validation_after"]:
        before, after = summary["validation_before"], summary["validation_after"]
        # The terms the run trains (a teacher without an MLM head has no MLM loss to show).
        shown = [name for name in after if before.get(name, 0.0) != 0.0 or after[name] != 0.0]
        changes = ", ".join(f"{name} {before.get(name, 0.0):.4f} -> {after[name]:.4f}" for name in shown)
        print(f"held-out student losses: {changes or 'none of the active terms'}")


def cmd_fit_mlm_head(args):
    from distil_tf.training.mlm_head import FitMlmHeadConfig, fit_mlm_head

    config = _corpus_run_config(
        FitMlmHeadConfig, args,
        extra_flag_overrides=[f"optimizer.learning_rate={args.learning_rate}"] if args.learning_rate else [],
        teacher=args.teacher, out=args.out,
    )
    if args.overwrite_head:
        config.overwrite_head = True
    summary = fit_mlm_head(config)
    before, after = summary["heldout_before"], summary["heldout_after"]
    print(f"held-out MLM loss {before['mlm_loss']:.4f} -> {after['mlm_loss']:.4f}, accuracy "
          f"{before['mlm_accuracy']:.4f} -> {after['mlm_accuracy']:.4f} ({after['tokens']} masked tokens)")
    print(f"teacher with a fitted MLM head written to {summary['model_dir']} "
          f"(distil-tf distill --teacher {config.out} ... now uses the ce and mlm terms)")


def cmd_count_tokens(args):
    from distil_tf.data.token_counts import count_tokens
    from distil_tf.text import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    out = args.out if args.out.endswith(".npy") else args.out + ".npy"
    counts = count_tokens(args.corpus, tokenizer, args.max_seq_length, out,
                          vocabulary_size=tokenizer.vocabulary_size())
    print(f"counted {int(counts.sum()):,} tokens ({int((counts > 0).sum()):,} distinct ids) into {out}")


def cmd_pretokenize(args):
    from distil_tf.data import sequence_shards
    from distil_tf.text import load_tokenizer

    manifest = sequence_shards.write_sequence_shards(
        args.corpus, load_tokenizer(args.tokenizer), args.out, args.max_seq_length,
        min_length=args.min_seq_length, sequences_per_shard=args.sequences_per_shard, overwrite=args.overwrite,
    )
    print(f"wrote {manifest['sequences']:,} sequences ({manifest['tokens']:,} tokens) in "
          f"{len(manifest['shards'])} shards to {args.out}; pass --corpus {args.out} to distill, "
          f"count-tokens or fit-mlm-head at --max-seq-length {args.max_seq_length}")


def wait_for_model(server, model, rest=False, seconds=60.0):
    """Block until `model` has an AVAILABLE version on `server`, or raise after `seconds`.

    For scripts that start a server in the background and query it next (the
    README's tour): a server that is still loading answers UNAVAILABLE or
    NOT_FOUND, which is a reason to wait, not an error.
    """
    import time

    from distil_tf.serving.client import ServingClient, ServingRequestError

    deadline = time.monotonic() + seconds
    last = "no answer"
    while True:
        try:
            with ServingClient(server, model, rest=rest, timeout=2.0, retries=0) as client:
                states = [status["state"] for status in client.model_status()]
            if "AVAILABLE" in states:
                return
            last = f"versions {states}"
        except ServingRequestError as error:
            if error.code not in ("UNAVAILABLE", "NOT_FOUND", "DEADLINE_EXCEEDED"):
                raise ValueError(f"the server answered {error.code}: {error.message}") from None
            last = f"{error.code}: {error.message}"
        if time.monotonic() > deadline:
            raise ValueError(f"model '{model}' not available on {server} after {seconds:g} s ({last})")
        time.sleep(0.5)


def cmd_predict(args):
    from distil_tf.serving.client import ServingRequestError, predict_command

    if args.wait:
        wait_for_model(args.server, args.model, rest=args.rest, seconds=args.wait)
    try:
        print(predict_command(args.server, args.model, args.texts, rest=args.rest,
                              signature=args.signature, timeout=args.timeout, text_pairs=args.pair,
                              embed=args.embed))
    except ServingRequestError as error:
        raise ValueError(f"the server answered {error.code}: {error.message}") from None


def cmd_serve(args):
    from distil_tf.serving.server.main import main as server_main

    code = server_main(args.server_flags)
    if code:
        sys.exit(code)


def cmd_export(args):
    if args.format != "saved_model":
        from distil_tf.export.ecosystem import export_to_format

        serving_only = [flag for flag, value in (("--version", args.version), ("--no-warmup", args.no_warmup),
                        ("--keras-layers", args.keras_layers), ("--pair/--no-pair", args.pair is not None),
                        ("--pooling", args.pooling), ("--normalize/--no-normalize", args.normalize is not None),
                        ("--precision", args.precision != "float32"))
                        if value]
        if serving_only:
            raise ValueError(f"{', '.join(serving_only)} only apply to --format saved_model")
        options = {} if args.format == "hf" else {"sequence_length": args.max_sequence_length}
        print(export_to_format(args.model, args.out, args.format, **options))
        return
    from distil_tf.export import export_command

    print(export_command(args.model, args.out, version=args.version,
                         max_sequence_length=args.max_sequence_length,
                         warmup=not args.no_warmup, pair=args.pair, keras_layers=args.keras_layers,
                         pooling=args.pooling, normalize=args.normalize, precision=args.precision))


def cmd_demo(args):
    from distil_tf.demo import DemoConfig, run_demo

    fields = {key: value for key, value in vars(args).items()
              if key in {f.name for f in __import__("dataclasses").fields(DemoConfig)} and value is not None}
    run_demo(DemoConfig(**fields))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="distil-tf",
        description="DistilBERT in TensorFlow/Keras: distil, fine-tune, export, serve.",
    )
    from distil_tf.version import __version__

    parser.add_argument("--version", action="version", version=f"distil-tf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init-student",
        help="initialize a DistilBERT student from a BERT teacher's layers",
        description="Write a student directory (weights, config, tokenizer) whose "
        "layers are copied from the teacher's (paper section 3). With --hidden-size (or "
        "--num-heads / --intermediate-size) other than the teacher's, the student is narrower "
        "(or otherwise shaped) and randomly initialized: teacher layers cannot be copied into "
        "another width. `distil-tf distill` then projects its hidden states to the teacher's "
        "(distillation.hidden_projection).",
    )
    init.add_argument("--teacher", required=True, help="teacher: model dir, Hugging Face dir or keras-hub preset")
    init.add_argument("--out", required=True, help="student directory to write")
    init.add_argument("--layers", help="teacher layer per student layer, e.g. 0,2,4,7,9,11")
    init.add_argument("--num-layers", type=int, help="student depth with the default evenly spread map")
    init.add_argument("--random-init", action="store_true", help="random weights (ablation)")
    init.add_argument("--hidden-size", type=int,
                      help="student hidden size (default the teacher's); another size means random init, "
                           "since teacher layers cannot be copied into a narrower width")
    init.add_argument("--num-heads", type=int,
                      help="attention heads (default the teacher's); must divide the hidden size")
    init.add_argument("--intermediate-size", type=int,
                      help="feed-forward width (default the teacher's, or 4 x --hidden-size when that differs)")
    init.add_argument("--no-fold-token-type", action="store_true",
                      help="drop the token-type embedding like the released script instead of folding row 0")
    init.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    init.set_defaults(handler=cmd_init_student)

    info = commands.add_parser("info", help="architecture, parameters and layer map of a model")
    info.add_argument("model", help="model directory, Hugging Face dir or keras-hub preset")
    info.set_defaults(handler=cmd_info)

    distill = commands.add_parser(
        "distill",
        help="general-purpose distillation on raw text (the paper's triple loss)",
        description="Distil a BERT teacher into a DistilBERT student with "
        "L = a_ce*L_ce + a_mlm*L_mlm + a_cos*L_cos on dynamically masked text.",
    )
    distill.add_argument("--teacher", help="teacher with an MLM head (model dir or Hugging Face dir)")
    distill.add_argument("--student", help="student directory, layer map (0,2,4,7,9,11) or depth (6)")
    distill.add_argument("--corpus", nargs="+", help="text files/globs (.gz ok), TFRecords, or tfds:NAME")
    distill.add_argument("--validation-corpus", nargs="+", help="held-out text for the MLM loss")
    distill.add_argument("--out", help="run directory")
    distill.add_argument("--random-init", action="store_true", help="random student (Table 4 ablation)")
    add_training_flags(distill)
    distill.set_defaults(handler=cmd_distill)

    fit_head = commands.add_parser(
        "fit-mlm-head",
        help="fit a masked-LM head to a frozen teacher that has none (then distill gets ce and mlm)",
        description="Add a masked-LM head tied to the teacher's token embedding, train only the head "
        "(transform, layer norm, output bias) on masked text of --corpus with every encoder weight frozen, "
        "and write OUT/teacher: the teacher's encoder bit for bit plus the head. The held-out MLM loss and "
        "accuracy before and after are printed and in OUT/metrics.json (held out: --validation-corpus, "
        "else every 20th corpus line, never trained on). `distil-tf distill --teacher OUT` then uses the "
        "ce and mlm terms by default.",
    )
    fit_head.add_argument("--teacher", help="teacher without an MLM head (model dir, Hugging Face or "
                                            "sentence-transformers dir, or a run directory)")
    fit_head.add_argument("--corpus", nargs="+", help="text files/globs (.gz ok), TFRecords, or tfds:NAME")
    fit_head.add_argument("--validation-corpus", nargs="+",
                          help="held-out text for the before/after loss (default: every 20th corpus line)")
    fit_head.add_argument("--out", help="run directory (the fitted teacher goes to OUT/teacher)")
    fit_head.add_argument("--learning-rate", type=float, help="peak learning rate of the head (default 5e-3)")
    fit_head.add_argument("--overwrite-head", action="store_true",
                          help="the teacher already has an MLM head: replace it with a newly fitted one")
    add_training_flags(fit_head)
    fit_head.set_defaults(handler=cmd_fit_mlm_head)

    count = commands.add_parser("count-tokens", help="count token ids of a corpus (for MLM smoothing)")
    count.add_argument("--corpus", nargs="+", required=True)
    count.add_argument("--tokenizer", required=True, help="model directory or vocab.txt")
    count.add_argument("--out", required=True, help="output .npy path")
    count.add_argument("--max-seq-length", type=int, default=512)
    count.set_defaults(handler=cmd_count_tokens)

    pretokenize = commands.add_parser(
        "pretokenize", help="tokenize a corpus once into TFRecord shards of ids (read back by --corpus DIR)",
        description="Stream the corpus through general distillation's cleaning, tokenization, chunking and "
        "filters (corpus order) into OUT/shard-*.tfrecord plus OUT/sequences.json, which pins the vocabulary "
        "and lengths: runs with --corpus OUT skip tokenizing, and a mismatched tokenizer or length is refused.")
    pretokenize.add_argument("--corpus", nargs="+", required=True, help="text files/globs (.gz ok), "
                             "TFRecords, or tfds:NAME")
    pretokenize.add_argument("--tokenizer", required=True, help="model directory or vocab.txt")
    pretokenize.add_argument("--out", required=True, help="directory to create")
    pretokenize.add_argument("--max-seq-length", type=int, default=128, help="the distillation's max length")
    pretokenize.add_argument("--min-seq-length", type=int, default=None, help="drop shorter sequences "
                             "(default 12, the original's)")
    pretokenize.add_argument("--sequences-per-shard", type=int, default=100_000)
    pretokenize.add_argument("--overwrite", action="store_true")
    pretokenize.set_defaults(handler=cmd_pretokenize)

    export = commands.add_parser(
        "export", help="export a task model or an encoder as a TF Serving SavedModel version",
        description="Write BASE/<version>/ (next free version by default, published "
        "atomically) with serving_default (text in), classify/regress (tf.Example) and "
        "predict_ids signatures and warmup requests; an encoder gets serving_default "
        "(text in, embedding out) and embed_ids instead.")
    export.add_argument("--model", required=True,
                        help="task model directory (from finetune or distill-task), or an encoder "
                             "(teacher, student, Hugging Face or sentence-transformers directory), "
                             "exported for sentence embeddings")
    export.add_argument("--out", required=True, help="the model's base path (--model_base_path); "
                        "for the other formats, the directory to create")
    export.add_argument("--format", choices=["saved_model", "hf", "keras-hub", "tflite"], default="saved_model",
                        help="saved_model (TF Serving, default); hf (a Hugging Face directory for transformers); "
                             "keras-hub (a preset for from_preset); tflite (fp32 + int8, ids in). Each gets a "
                             "README.md model card; a head the format cannot hold exactly is refused")
    export.add_argument("--version", type=int, help="version number (default: next free)")
    export.add_argument("--max-sequence-length", type=int,
                        help="longest packed input (default: the length the model was trained at, "
                             "recorded in its directory; 128 for models without one)")
    export.add_argument("--no-warmup", action="store_true", help="write no warmup requests")
    export.add_argument("--keras-layers", action="store_true",
                        help="serve the keras-hub layer graph instead of the fused encoder graph "
                             "(same outputs to float32 rounding; the fused one is faster on CPU)")
    pair = export.add_mutually_exclusive_group()
    pair.add_argument("--pair", dest="pair", action="store_true", default=None,
                      help="text-pair inputs (only for tasks the registry does not know)")
    pair.add_argument("--no-pair", dest="pair", action="store_false")
    export.add_argument("--pooling", choices=["cls_pooler", "cls", "mean"],
                        help="encoders: how to pool the embedding (default: the checkpoint's own, "
                             "e.g. mean for sentence-transformers models)")
    normalize = export.add_mutually_exclusive_group()
    normalize.add_argument("--normalize", dest="normalize", action="store_true", default=None,
                           help="encoders: L2-normalize the embeddings (default: as the checkpoint "
                                "records, on for all-MiniLM-L6-v2)")
    normalize.add_argument("--no-normalize", dest="normalize", action="store_false")
    export.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="float32",
                        help="compute dtype, no XLA: auto = bfloat16 where this CPU has AVX512-BF16 or AMX "
                             "(/proc/cpuinfo), else float32; bfloat16 runs the fused graph's projections in bfloat16 "
                             "(with --keras-layers: every keras-hub layer) (default: float32, the fused graph)")
    export.set_defaults(handler=cmd_export)

    predict = commands.add_parser(
        "predict", help="classify texts through a TF Serving (or distil-tf-model-server) endpoint")
    predict.add_argument("--server", required=True, help="HOST:PORT (gRPC, or REST with --rest)")
    predict.add_argument("--model", required=True, help="model name on the server")
    predict.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    predict.add_argument("--signature", help="signature name (default serving_default)")
    predict.add_argument("--pair", action="append", help="second text of a pair task, one per TEXT")
    predict.add_argument("--timeout", type=float, default=30.0, help="deadline per request, seconds")
    predict.add_argument("--wait", type=float, metavar="SECONDS",
                         help="first wait up to SECONDS for the model to become available "
                              "(a server just started in the background)")
    predict.add_argument("--embed", action="store_true",
                         help="the model serves sentence embeddings: print each text's norm and "
                              "the pairwise cosine similarities")
    predict.add_argument("texts", nargs="+", metavar="TEXT")
    predict.set_defaults(handler=cmd_predict)

    serve = commands.add_parser(
        "serve", help="run the local TF Serving-compatible server (tensorflow_model_server's flags)",
        description="Same as distil-tf-model-server: e.g. distil-tf serve --port=8500 "
        "--rest_api_port=8501 --model_name=sst2 --model_base_path=/abs/exports/sst2",
        prefix_chars="+",  # every flag after `serve` goes to the server untouched
    )
    serve.add_argument("server_flags", nargs=argparse.REMAINDER)
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser(
        "demo", help="the main job: fine-tune a real teacher, distil a 3-layer student, serve it",
        description="Fine-tune all-MiniLM-L6-v2 on SST-2, distil a 3-layer student on the task, "
        "score both on the SST-2 dev set, export both, serve the student with the local TF "
        "Serving-compatible server, query it over gRPC and print one table. Reruns reuse "
        "finished stages.")
    demo.add_argument("--data-dir", help="GLUE TSV directory (or one holding glue/); default $DISTIL_TF_DATA, else tfds")
    demo.add_argument("--out", help="working directory (default runs/demo)")
    demo.add_argument("--teacher", help="Hugging Face BERT directory (default: all-MiniLM-L6-v2)")
    demo.add_argument("--train-limit", type=int, help="SST-2 training sentences used (default 4000)")
    demo.add_argument("--teacher-steps", type=int)
    demo.add_argument("--student-steps", type=int)
    demo.add_argument("--max-seq-length", type=int)
    demo.add_argument("--batch-size", type=int)
    demo.add_argument("--latency-sentences", type=int)
    demo.add_argument("--seed", type=int)
    demo.add_argument("--fresh", action="store_true", default=None, help="start over, discarding finished stages")
    demo.set_defaults(handler=cmd_demo)

    for register in _EXTRA_COMMANDS:
        register(commands)
    return parser


# Subcommands of later modules register here (each a function taking the
# subparsers object), so this file stays a flat list of thin wrappers.
def _task_commands(commands):
    from distil_tf.cli.tasks import register

    register(commands)


def _benchmark_commands(commands):
    from distil_tf.cli.benchmarks import register

    register(commands)


_EXTRA_COMMANDS = [_task_commands, _benchmark_commands]


def _one_line_warnings():
    """Warnings meant for the user print as one line, like the CLI's errors."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"distil-tf: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def main(argv=None):
    from distil_tf.training.callbacks import NonFiniteLossError

    _one_line_warnings()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line, for reports that record it
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, NonFiniteLossError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"distil-tf: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("distil-tf: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
