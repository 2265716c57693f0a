"""The general-distillation input pipeline alone: tokens/s it can feed, per source and worker count.

    distil-tf benchmark input-pipeline --corpus ../shared/data/wikitext-2-raw/wiki.test.raw \
        --vocab ../shared/data/bert-base-uncased/vocab.txt [--workers 1,2] [--epochs 2] [--json OUT]

What is timed is exactly what `distil-tf distill` reads: `build_mlm_dataset`
(read, clean, tokenize, chunk, filter, shuffle, length-grouped batches,
dynamic masking), iterated to the end with no model. Three sources of the
same text:
- `text`: the corpus as given (plain or `.gz` lines);
- `gzip text`: the same lines gzip-compressed (written once to a temp dir);
- `pre-tokenized shards`: `distil-tf pretokenize`'s TFRecord shards of ids
  (`distil_tf.data.sequence_shards`), whose one-off writing time is reported.

Each worker is its own process building input pipeline `i` of `N`
(`tf.distribute.InputContext`), as each host of a multi-worker run does; the
workers run at once and the figure is all real (non-pad) tokens over the
slowest worker's time. Compare it with the training throughput
(`distil-tf benchmark training`, tokens/s per device) to see how many
devices one host's pipeline keeps busy. With N workers on fewer than N cores
the workers share the cores: the figure then shows the host's ceiling, not
N times one worker.
"""

import gzip
import multiprocessing
import os
import pathlib
import shutil
import tempfile
import time

TEXT, GZIP_TEXT, SHARDS = "text", "gzip text", "pre-tokenized shards"


def _worker(arguments):
    """One input pipeline of `workers`, iterated `epochs` times: (sequences, tokens, seconds)."""
    source, vocab, pipeline_id, workers, max_length, batch_size, epochs, seed = arguments
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from distil_tf.data.batching import build_mlm_dataset
    from distil_tf.text import load_tokenizer

    tokenizer = load_tokenizer(vocab)
    counts = np.ones(tokenizer.vocabulary_size(), np.int64)  # masking's smoothing is not what is timed
    context = tf.distribute.InputContext(num_input_pipelines=workers, input_pipeline_id=pipeline_id)
    dataset = build_mlm_dataset(source, tokenizer, counts, max_length=max_length, batch_size=batch_size,
                                seed=seed, input_context=context)
    sequences = tokens = 0
    started = time.perf_counter()
    for _ in range(epochs):
        for batch in dataset:
            mask = batch["padding_mask"].numpy()
            sequences += mask.shape[0]
            tokens += int(mask.sum())
    return sequences, tokens, time.perf_counter() - started


def _time_source(source, vocab, workers, max_length, batch_size, epochs, seed):
    jobs = [(source, vocab, index, workers, max_length, batch_size, epochs, seed) for index in range(workers)]
    # spawn: TensorFlow is not fork-safe once imported.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        started = time.perf_counter()
        results = pool.map(_worker, jobs)
        wall = time.perf_counter() - started
    sequences = sum(result[0] for result in results)
    tokens = sum(result[1] for result in results)
    slowest = max(result[2] for result in results)
    return {"workers": workers, "sequences": sequences, "tokens": tokens, "seconds": slowest,
            "wall_seconds_with_start_up": wall, "tokens_per_second": tokens / slowest,
            "worker_seconds": [round(result[2], 3) for result in results]}


def run(corpus, vocab, workers=(1, 2), max_length=128, batch_size=32, epochs=1, seed=0, work_dir=None):
    """Time the pipeline on each source and worker count; returns the report dict."""
    from distil_tf.benchmarks.fast_inference import cpu_info
    from distil_tf.data import sequence_shards
    from distil_tf.text import load_tokenizer

    if not workers or min(workers) < 1:
        raise ValueError(f"workers must be counts >= 1, got {list(workers)}")
    own_dir = work_dir is None
    work_dir = pathlib.Path(work_dir or tempfile.mkdtemp(prefix="input-pipeline-"))
    try:
        compressed = work_dir / "corpus.txt.gz"
        opener = gzip.open if str(corpus).endswith(".gz") else open
        with opener(corpus, "rb") as source, gzip.open(compressed, "wb") as target:
            shutil.copyfileobj(source, target)
        started = time.perf_counter()
        manifest = sequence_shards.write_sequence_shards(
            str(corpus), load_tokenizer(vocab), work_dir / "shards", max_length, overwrite=True,
            # Enough shards for file-level sharding at every worker count.
            sequences_per_shard=max(1, _count_lines(corpus) // (4 * max(workers))), progress=lambda line: None,
        )
        pretokenize_seconds = time.perf_counter() - started
        sources = {TEXT: str(corpus), GZIP_TEXT: str(compressed), SHARDS: str(work_dir / "shards")}
        results = []
        for name, path in sources.items():
            for count in workers:
                result = _time_source(path, vocab, count, max_length, batch_size, epochs, seed)
                results.append({"source": name, **result})
        return {
            "results": results,
            "pretokenize": {"seconds": pretokenize_seconds, "sequences": manifest["sequences"],
                            "tokens": manifest["tokens"], "shards": len(manifest["shards"])},
            "settings": {"corpus": str(corpus), "vocab": str(vocab), "max_length": max_length,
                         "batch_size": batch_size, "epochs": epochs, "cpu": cpu_info()["model"],
                         "cores": os.cpu_count()},
        }
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def _count_lines(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def format_table(report):
    settings, once = report["settings"], report["pretokenize"]
    lines = [
        f"Input pipeline of `distil-tf distill` alone on {settings['cpu']} ({settings['cores']} cores): "
        f"{settings['corpus']}, batches of {settings['batch_size']} x up to {settings['max_length']} tokens, "
        f"{settings['epochs']} epoch(s) per worker, dynamic masking on; tokens are real (non-pad) tokens.",
        "",
        "| source | workers | sequences | tokens | seconds (slowest worker) | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for result in report["results"]:
        lines.append(f"| {result['source']} | {result['workers']} | {result['sequences']:,} | {result['tokens']:,} | "
                     f"{result['seconds']:.2f} | {result['tokens_per_second']:,.0f} |")
    lines += ["", f"Pre-tokenizing once (`distil-tf pretokenize`): {once['seconds']:.1f} s for "
                  f"{once['sequences']:,} sequences ({once['tokens']:,} tokens) in {once['shards']} shards."]
    return "\n".join(lines)
