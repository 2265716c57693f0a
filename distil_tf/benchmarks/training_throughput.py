"""Training throughput: distillation versus training the student alone on MLM.

    distil-tf benchmark training --corpus ../shared/data/wikitext-2-raw/wiki.test.raw \
        --vocab ../shared/data/bert-base-uncased/vocab.txt [--steps 30] [--precision float32] [--jit-compile] \
        [--attention-terms]

Both runs use the same student initialization, data pipeline (real corpus,
dynamic masking), batch shape and runtime settings; the only difference is
the teacher's forward pass and the soft-target/cosine terms. The ratio is
what distilling costs over plain MLM training of the student. `run` returns
the figures; `format_table` is the markdown table with the settings each
figure used.

`--attention-terms` adds a third run: the same distillation plus the three
attention terms (TinyBERT's score MSE over every mapped layer pair, MiniLM's
attention and value-relation KL, weight 1 each), so one run prints tokens/s
with and without them.
"""

import os
import time

import keras


class _StepTimer(keras.callbacks.Callback):
    """Wall time and real (non-pad) tokens of each step after the warm-up."""

    def __init__(self, warmup_steps):
        super().__init__()
        self.warmup_steps = warmup_steps
        self.times, self.tokens = [], []
        self.tokens_so_far = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self.started  # logs are synced: the step is done
        cumulative = float(logs["tokens"])  # the epoch's running sum
        if batch >= self.warmup_steps:
            self.times.append(elapsed)
            self.tokens.append(cumulative - self.tokens_so_far)
        self.tokens_so_far = cumulative


def _cpu_name():
    from distil_tf.benchmarks.fast_inference import cpu_info

    return cpu_info()["model"]


DISTILLATION = "distillation (5/2/1)"
WITH_ATTENTION = "distillation (5/2/1) + attention terms"
MLM_ONLY = "student MLM only"


def run(corpus, vocab, steps=30, warmup_steps=5, batch_size=16, max_length=128, teacher_layers=6,
        student_layers=3, hidden_dim=256, num_heads=4, precision="float32", jit_compile=False, seed=0,
        attention_terms=False):
    """Measure tokens/s of distillation and of MLM-only training; returns a dict.

    `attention_terms`: also time distillation with the attention terms on
    (`alpha_attention_mse`, `alpha_attention_kl`, `alpha_value_relation` = 1).
    """
    from distil_tf.data.batching import build_mlm_dataset
    from distil_tf.data.token_counts import count_tokens
    from distil_tf.distillation import MaskedLMDistiller
    from distil_tf.models import Encoder, init_student_from_teacher
    from distil_tf.text import load_tokenizer
    from distil_tf.training.optimization import OptimizerConfig, build_optimizer
    from distil_tf.training.runtime import RuntimeConfig, setup_runtime

    tokenizer = load_tokenizer(vocab)
    counts = count_tokens(corpus, tokenizer, max_length, vocabulary_size=tokenizer.vocabulary_size(), progress=False)
    from distil_tf.distillation.distillation_losses import mapped_layer_pairs

    results = {}
    modes = [(DISTILLATION, (5.0, 2.0, 1.0), 0.0), (MLM_ONLY, (0.0, 1.0, 0.0), 0.0)]
    if attention_terms:
        modes.insert(1, (WITH_ATTENTION, (5.0, 2.0, 1.0), 1.0))
    for mode, alphas, alpha_attention in modes:
        strategy = setup_runtime(RuntimeConfig(strategy="default", precision=precision, seed=seed, jit_compile=jit_compile))
        with strategy.scope():
            teacher = Encoder("bert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=teacher_layers,
                              num_heads=num_heads, hidden_dim=hidden_dim, intermediate_dim=4 * hidden_dim,
                              max_sequence_length=max(max_length, 128))
            teacher(teacher.dummy_inputs())
            student, layer_map = init_student_from_teacher(teacher, num_layers=student_layers)
            distiller = MaskedLMDistiller(
                teacher, student, alpha_ce=alphas[0], alpha_mlm=alphas[1], alpha_cos=alphas[2],
                alpha_attention_mse=alpha_attention, attention_mse_layer_pairs=mapped_layer_pairs(layer_map),
                alpha_attention_kl=alpha_attention, alpha_value_relation=alpha_attention,
            )
            distiller.compile(optimizer=build_optimizer(OptimizerConfig(), steps + warmup_steps), jit_compile=jit_compile)
        dataset = build_mlm_dataset(corpus, tokenizer, counts, max_length=max_length, batch_size=batch_size,
                                    fixed_shapes=jit_compile, seed=seed).repeat()
        timer = _StepTimer(warmup_steps)
        distiller.fit(dataset, steps_per_epoch=steps + warmup_steps, epochs=1, verbose=0, callbacks=[timer])
        seconds, tokens = float(sum(timer.times)), float(sum(timer.tokens))
        results[mode] = {
            "tokens_per_second": tokens / seconds if seconds else 0.0,
            "seconds_per_step": seconds / max(len(timer.times), 1),
            "measured_steps": len(timer.times),
        }
    keras.config.set_dtype_policy("float32")
    distill, alone = results[DISTILLATION], results[MLM_ONLY]
    report = {
        "results": results,
        "overhead_ratio": alone["tokens_per_second"] / distill["tokens_per_second"],
        "settings": {
            "strategy": "default (1 device)", "precision": precision, "jit_compile": jit_compile,
            "batch_size": batch_size, "max_length": max_length, "steps": steps, "warmup_steps": warmup_steps,
            "teacher": f"BERT {teacher_layers} layers, hidden {hidden_dim}, vocab {tokenizer.vocabulary_size()}",
            "student": f"DistilBERT {student_layers} layers", "corpus": str(corpus),
            "cpu": _cpu_name(), "cores": os.cpu_count(),
        },
    }
    if attention_terms:
        # How much slower the attention terms make a distillation step.
        report["attention_overhead_ratio"] = (
            distill["tokens_per_second"] / results[WITH_ATTENTION]["tokens_per_second"])
    return report


def format_table(report):
    settings = report["settings"]
    lines = [
        f"Training throughput on {settings['cpu']} ({settings['cores']} cores); strategy "
        f"{settings['strategy']}, precision {settings['precision']}, XLA {'on' if settings['jit_compile'] else 'off'}, "
        f"batch {settings['batch_size']} x {settings['max_length']} tokens (max), "
        f"teacher {settings['teacher']}, student {settings['student']}.",
        "",
        "| run | tokens/s | s/step | steps timed |",
        "|---|---|---|---|",
    ]
    for mode, result in report["results"].items():
        lines.append(f"| {mode} | {result['tokens_per_second']:.0f} | {result['seconds_per_step']:.3f} | {result['measured_steps']} |")
    lines.append("")
    lines.append(f"Distillation overhead: MLM-only training is {report['overhead_ratio']:.2f}x as fast as distilling.")
    if "attention_overhead_ratio" in report:
        lines.append(f"Attention-term overhead: distilling without them is {report['attention_overhead_ratio']:.2f}x "
                     "as fast as with them.")
    return "\n".join(lines)
