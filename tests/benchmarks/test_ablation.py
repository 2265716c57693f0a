"""`distil-tf benchmark ablation`: the Table 4 miniature's rows, weights, table and refusals, and one tiny real report."""

import json
import os

import numpy as np
import pytest

from distil_tf.benchmarks import ablation
from distil_tf.benchmarks.ablation import AblationConfig

ALL = dict(ablation.ALL_TERMS)


def _row(name, label, sst2, stsb, distill=None, paper_delta=None):
    return {"name": name, "label": label, "removed": [], "random_init": name == "random-init",
            "paper_delta": paper_delta, "distill": distill,
            "scores": {"glue/sst2": sst2, "glue/stsb": stsb}}


def _distill(steps, seconds_per_step, tokens_per_second, attention=True):
    return {"steps": steps, "seconds_per_step": seconds_per_step, "tokens_per_second": tokens_per_second,
            "attention_terms": attention}


def _hand_made_report():
    return {
        "teacher": "/runs/minilm-mlm/teacher", "student": "0,2,4",
        "corpus": ["/runs/table4/corpus.txt"], "corpus_tokens": 1_712_345,
        "teacher_mlm_head": {"steps": 2000, "batch_size": 32, "max_seq_length": 128,
                             "heldout_before": {"mlm_loss": 9.7407, "mlm_accuracy": 0.0009},
                             "heldout_after": {"mlm_loss": 4.1234, "mlm_accuracy": 0.3512}},
        "distillation": {"steps": 1000, "batch_size": 32, "max_seq_length": 128, "seed": 56, "options": [],
                         "weights_of_a": {"ce": 5.0, "mlm": 2.0, "cos": 1.0}},
        "finetune": {"steps": 0, "epochs": 2.0, "train_limit": 8000, "batch_size": 32, "max_seq_length": 128,
                     "options": []},
        "seeds": [1, 2],
        "tasks": [{"task": "glue/sst2", "metric": "accuracy", "dev_examples": 872},
                  {"task": "glue/stsb", "metric": "pearson", "dev_examples": 1500}],
        "rows": [
            _row("all-terms", "(a) teacher layers, all terms", [0.82, 0.83], [0.80, 0.81],
                 _distill(1000, 4.0, 1234.4)),
            _row("without-ce", "(b) without L_ce", [0.81, 0.815], [0.79, 0.795], _distill(1000, 3.5, 1400.0),
                 paper_delta=-2.96),
            _row("without-hidden_mse", "(b) without L_hidden_mse", [0.82, 0.82], [0.80, 0.80],
                 _distill(1000, 3.9, 1250.0)),
            _row("without-attention", "(b) without the attention terms", [0.82, 0.82], [0.79, 0.79],
                 _distill(1000, 3.8, 1300.0, attention=False)),
            _row("random-init", "(c) random init, all terms", [0.70, 0.72], [0.30, 0.34],
                 _distill(1000, 4.0, 1230.0), paper_delta=-3.69),
            _row("no-distillation", "(d) teacher layers, no distillation", [0.83, 0.84], [0.77, 0.78]),
        ],
        "complete": True,
    }


def test_format_report_computes_means_deltas_and_the_closing_notes():
    text = ablation.format_report(_hand_made_report())
    lines = text.splitlines()
    header = lines.index("| start | glue/sst2 accuracy | glue/stsb pearson | macro | delta vs (a) "
                         "| paper's delta (GLUE macro) |")
    # Mean +- sample std over seeds x 100; macro = per-seed mean over tasks; deltas of the macro means vs (a).
    assert lines[header + 2:header + 8] == [
        "| (a) teacher layers, all terms | 82.50 +- 0.71 | 80.50 +- 0.71 | 81.50 +- 0.71 | reference | reference |",
        "| (b) without L_ce | 81.25 +- 0.35 | 79.25 +- 0.35 | 80.25 +- 0.35 | -1.25 | -2.96 |",
        "| (b) without L_hidden_mse | 82.00 +- 0.00 | 80.00 +- 0.00 | 81.00 +- 0.00 | -0.50 | - |",
        "| (b) without the attention terms | 82.00 +- 0.00 | 79.00 +- 0.00 | 80.50 +- 0.00 | -1.00 | - |",
        "| (c) random init, all terms | 71.00 +- 1.41 | 32.00 +- 2.83 | 51.50 +- 2.12 | -30.00 | -3.69 |",
        "| (d) teacher layers, no distillation | 83.50 +- 0.71 | 77.50 +- 0.71 | 80.50 +- 0.71 | -1.00 | - |",
    ]
    assert "| (a) teacher layers, all terms | on | 1000 | 4.00 | 1,234 |" in lines
    assert "| (b) without the attention terms | off | 1000 | 3.80 | 1,300 |" in lines
    assert not any(line.startswith("| (d)") and "| off |" in line for line in lines)  # (d) was not distilled
    # (d) beats (a) on SST-2 by 1.00, inside their summed std (0.71 + 0.71); (a) is best on STS-B.
    assert ("- NOT met: (a) is not the best start on glue/sst2 (82.50 +- 0.71): (d) teacher layers, no distillation "
            "83.50 +- 0.71 by 1.00 (within the two rows' summed std, 1.41).") in lines
    assert ("- met: (a) is the best start on glue/stsb: 80.50 +- 0.71; next (b) without L_hidden_mse 80.00."
            in lines)
    assert ("- The teacher's MLM head was fitted by fit-mlm-head (2000 steps of 32 x 128): held-out MLM loss 9.74 "
            "-> 4.12 nats, accuracy 0.09% -> 35.12%; the ce and mlm terms teach what that head knows.") in lines
    assert "1,712,345 tokens" in lines[0] and "(a)'s weights: ce 5, mlm 2, cos 1." in lines[0]
    assert "2 epochs over the first 8,000 training examples" in lines[1]


def test_score_table_keeps_fractions_and_deltas_in_points():
    table = ablation.score_table(_hand_made_report())
    by_name = {entry["name"]: entry for entry in table}
    assert by_name["all-terms"]["macro"]["scores"] == pytest.approx([0.81, 0.82])
    assert by_name["random-init"]["delta"] == pytest.approx(-30.0)
    assert by_name["all-terms"]["delta"] == 0.0


def test_an_incomplete_report_says_so_and_judges_nothing():
    report = _hand_made_report()
    report["rows"], report["complete"] = report["rows"][:2], False
    lines = ablation.format_report(report).splitlines()
    assert "- incomplete: 2 of the starts done; rerun the same command to resume." in lines
    assert not any(line.startswith(("- met", "- NOT met")) for line in lines)


def test_with_one_seed_the_note_does_not_judge_the_spread():
    report = _hand_made_report()
    report["seeds"], report["teacher_mlm_head"] = [1], None
    for row in report["rows"]:
        row["scores"] = {task: scores[:1] for task, scores in row["scores"].items()}
    lines = ablation.format_report(report).splitlines()
    assert ("- NOT met: (a) is not the best start on glue/sst2 (82.00 (one seed)): (d) teacher layers, no distillation "
            "83.00 (one seed) by 1.00 (one seed: no spread to judge it against).") in lines
    assert not any("MLM head was fitted" in line for line in lines)


def test_a_report_without_its_reference_row_has_no_deltas():
    report = _hand_made_report()
    report["rows"], report["complete"] = report["rows"][1:2], False
    assert "| (b) without L_ce | 81.25 +- 0.35 | 79.25 +- 0.35 | 80.25 +- 0.35 | - | -2.96 |" in (
        ablation.format_report(report).splitlines())


# ---------------------------------------------------------------------------
# The runs and their weights
# ---------------------------------------------------------------------------


def _config(**fields):
    return AblationConfig(teacher="t", corpus=("c.txt",), out="o", **fields)


def test_the_plot_draws_each_start_s_mean_per_task_and_macro(tmp_path):
    report = _hand_made_report()
    drawn = ablation.plot_report(report, tmp_path / "ablation.png")
    assert list(drawn) == ["glue/sst2 accuracy", "glue/stsb pearson", "macro (mean over tasks)"]
    # The same means x 100 as the table above, in row order.
    np.testing.assert_allclose(drawn["glue/sst2 accuracy"], [82.5, 81.25, 82.0, 82.0, 71.0, 83.5])
    np.testing.assert_allclose(drawn["macro (mean over tasks)"], [81.5, 80.25, 81.0, 80.5, 51.5, 80.5])
    from matplotlib import image

    picture = image.imread(tmp_path / "ablation.png")
    # One row of labels per start: the height grows with the rows (0.42 in x 120 dpi each, plus margins).
    assert picture.shape[0] == round(120 * (0.42 * 6 + 1.6)) and picture.shape[1] > picture.shape[0]


def test_a_has_every_term_and_the_default_ablation_removes_each_then_the_attention_then_the_head_terms():
    base = ablation.base_distill_config(_config(distill_steps=7, distill_batch_size=8), "/t")
    assert (base.teacher, base.student, base.steps, base.data.batch_size) == ("/t", "0,2,4", 7, 8)
    active = ablation.active_weights(base.distillation, True, None)
    assert active == ALL == {"ce": 5.0, "mlm": 2.0, "cos": 1.0, "hidden_mse": 1.0, "attention_mse": 1.0,
                             "attention_kl": 1.0, "value_relation": 1.0}
    terms = ablation.terms_to_ablate([], active)
    assert terms == ["ce", "mlm", "cos", "hidden_mse", "attention_mse", "attention_kl", "value_relation",
                     "attention", "mlm_head"]
    starts = ablation.plan_starts(terms, active)
    assert [start.name for start in starts] == [
        "all-terms", "without-ce", "without-mlm", "without-cos", "without-hidden_mse", "without-attention_mse",
        "without-attention_kl", "without-value_relation", "without-attention", "without-mlm_head", "random-init",
        "no-distillation"]
    assert [start.paper_delta for start in starts if start.paper_delta is not None] == [-2.96, -0.31, -1.46, -3.69]
    for start in starts:
        if not start.distilled:
            assert start.name == "no-distillation"
            continue
        run = ablation.distill_config_for(start, base, f"/o/{start.name}")
        assert run.out == f"/o/{start.name}" and run.random_init == (start.name == "random-init")
        # What `distill` resolves from the run's config: (a)'s weights minus the removed terms, exactly.
        assert ablation.active_weights(run.distillation, True, None) == {
            name: weight for name, weight in ALL.items() if name not in start.removed}, start.name
    by_name = {start.name: start for start in starts}
    assert by_name["without-attention"].removed == ("attention_mse", "attention_kl", "value_relation")
    # mse is a head term too, but (a) has it off: only what (a) has on is removed.
    assert by_name["without-mlm_head"].removed == ("ce", "mlm")
    assert by_name["without-mlm_head"].label == "(b) without the MLM-head terms (L_ce, L_mlm)"
    assert by_name["random-init"].removed == () and by_name["all-terms"].removed == ()
    assert base.distillation.alpha_ce == 5.0  # the variants are copies: (a)'s config is untouched


def test_distill_set_changes_a_and_what_is_ablated():
    config = _config(distill_overrides=("distillation.alpha_attention_kl=0", "distillation.alpha_value_relation=0",
                                        "distillation.alpha_pooled_cos=1", "optimizer.learning_rate=0.0003"))
    base = ablation.base_distill_config(config, "/t")
    assert base.optimizer.learning_rate == 0.0003
    active = ablation.active_weights(base.distillation, True, "mean")
    assert list(active) == ["ce", "mlm", "cos", "hidden_mse", "attention_mse", "pooled_cos"]
    # One attention term left: no separate "attention" group run; ce and mlm still make a head group.
    assert ablation.terms_to_ablate([], active) == ["ce", "mlm", "cos", "hidden_mse", "attention_mse", "pooled_cos",
                                                    "mlm_head"]
    no_mlm = {name: weight for name, weight in active.items() if name != "mlm"}
    assert "mlm_head" not in ablation.terms_to_ablate([], no_mlm)  # it would repeat without-ce
    assert ablation.terms_to_ablate(["attention", "ce", "ce"], active) == ["attention", "ce"]
    assert ablation.plan_starts(["attention"], active)[1].removed == ("attention_mse",)


def test_refusals_are_one_actionable_line():
    active = dict(ALL)
    with pytest.raises(ValueError) as raised:
        ablation.terms_to_ablate(["ce", "kl"], active)
    assert str(raised.value) == ("unknown term 'kl' in --ablate; choose from ce, mlm, cos, hidden_mse, attention_mse, "
                                 "attention_kl, value_relation, mse, pooled_cos, pooled_mse, pooled_relation, attention, "
                                 "mlm_head")
    with pytest.raises(ValueError) as raised:
        ablation.terms_to_ablate(["pooled_cos"], active)
    assert str(raised.value) == ("--ablate pooled_cos: (a) has it off already (weight 0), so its run would be (a) "
                                 "again; on in (a): ce, mlm, cos, hidden_mse, attention_mse, attention_kl, "
                                 "value_relation")
    base = ablation.base_distill_config(_config(), "/t")
    with pytest.raises(ValueError) as raised:
        ablation.check_teacher_head(base.distillation, "minilm/", has_mlm_head=False)
    assert str(raised.value) == (
        "the teacher minilm/ has no masked-LM head, which the ce and mlm terms of (a) need: fit one first "
        "(distil-tf fit-mlm-head --teacher minilm/ --corpus CORPUS --out T_MLM) and pass --teacher T_MLM")
    ablation.check_teacher_head(base.distillation, "minilm/", has_mlm_head=True)
    # Without ce and mlm, a teacher without a head is fine (its hidden states still teach).
    no_mlm = ablation.base_distill_config(
        _config(distill_overrides=("distillation.alpha_ce=0", "distillation.alpha_mlm=0")), "/t")
    ablation.check_teacher_head(no_mlm.distillation, "minilm/", has_mlm_head=False)


# ---------------------------------------------------------------------------
# A whole (tiny) report
# ---------------------------------------------------------------------------

WORDS = ["the", "a", "movie", "good", "bad", "is", "was", "not", "great", "film", "i", "it", "and", "to",
         "of", "very", "fun", "boring", "hello", "world", "this", "test"]


@pytest.mark.large  # ~3 min on the shared 2-core machine: 4 distillations and 10 fine-tunes, each saved and scored
def test_a_tiny_ablation_end_to_end(tmp_path, tiny_hf_bert_mlm, shared_data, capsys):
    from distil_tf import cli
    from distil_tf.models import describe_model

    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, int(rng.integers(14, 30)))) for _ in range(60)) + "\n")
    out = tmp_path / "table4"
    argv = ["benchmark", "ablation", "--teacher", str(tiny_hf_bert_mlm), "--corpus", str(corpus), "--out", str(out),
            "--student", "0,2", "--distill-steps", "2", "--distill-batch-size", "4", "--distill-max-seq-length", "32",
            "--ablate", "ce,attention", "--seeds", "1", "--data-dir", str(shared_data / "glue"),
            "--steps", "2", "--batch-size", "4", "--max-seq-length", "32", "--train-limit", "16",
            "--set", "data.eval_limit=32", "--task-set", "glue/stsb:steps=3"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "ablation.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["all-terms", "without-ce", "without-attention", "random-init", "no-distillation"]
    assert report["complete"] and report["corpus_tokens"] > 60 * 14
    assert report["teacher_mlm_head"] is None  # a BertForMaskedLM's own head, not a fitted one
    assert (out / "ablation.md").read_text() in printed + "\n"
    for row in report["rows"]:
        # The same budget for every start; --task-set gave STS-B its own.
        assert row["finetune_steps"] == {"glue/sst2": 2, "glue/stsb": 3}
        assert 0.0 <= row["scores"]["glue/sst2"][0] <= 1.0 and -1.0 <= row["scores"]["glue/stsb"][0] <= 1.0
        for task in ("glue-sst2", "glue-stsb"):
            assert (out / "finetune" / row["name"] / task / "seed-1" / "config.yaml").is_file()
    assert [item["dev_examples"] for item in report["tasks"]] == [32, 32]

    # Each distillation run trained the weights it says, and recorded its throughput.
    rows = {row["name"]: row for row in report["rows"]}
    assert rows["no-distillation"]["distill"] is None
    for name, missing in (("all-terms", ()), ("without-ce", ("ce",)),
                          ("without-attention", ("attention_mse", "attention_kl", "value_relation")),
                          ("random-init", ())):
        metrics = json.loads((out / "distill" / name / "metrics.json").read_text())
        active = {term: value for term, value in metrics["loss_weights"].items() if value > 0}
        assert active == {term: value for term, value in ALL.items() if term not in missing}, name
        assert rows[name]["distill"]["tokens_per_second"] > 0
        assert rows[name]["distill"]["attention_terms"] == (name != "without-attention")
        # One count of the corpus for every run, not one per run.
        assert f"token_counts: {out / 'token_counts.npy'}" in (out / "distill" / name / "config.yaml").read_text()
        assert not (out / "distill" / name / "token_counts.npy").exists()
    assert describe_model(out / "distill" / "random-init" / "student")["initialization"] == "random"
    assert describe_model(out / "distill" / "all-terms" / "student")["initialization"] == "teacher_layers"
    assert describe_model(out / "student-init")["layer_map"] == [0, 2]
    saved = json.loads((out / "ablation_config.json").read_text())
    assert saved["corpus"] == [str(corpus)] and saved["ablate"] == ["ce", "attention"]

    # A rerun reuses every finished run...
    finished = out / "finetune" / "all-terms" / "glue-sst2" / "seed-1" / "run.json"
    stamp = os.stat(finished).st_mtime_ns
    assert cli.main(argv) == 0
    assert json.loads((out / "ablation.json").read_text())["rows"] == report["rows"]
    assert os.stat(finished).st_mtime_ns == stamp
    # ...and refuses one trained with another budget instead of mixing two recipes in one table.
    capsys.readouterr()
    argv[argv.index("--steps") + 1] = "3"
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.splitlines()
    assert error == [f"distil-tf: error: the fine-tuning run {out / 'finetune' / 'all-terms' / 'glue-sst2' / 'seed-1'} "
                     "was trained with another recipe (differs in: steps); pass another --out, or delete that run "
                     "directory to train it again"]


def test_task_set_gives_one_task_its_own_budget():
    from distil_tf.benchmarks.task_runs import task_run_config
    from distil_tf.training.finetune import FinetuneConfig

    config = AblationConfig(tasks=("glue/sst2", "glue/stsb"), epochs=1.0, task_overrides=("glue/stsb:epochs=3",))
    per_task = ablation.task_overrides(config.task_overrides, config.tasks)
    assert per_task == {"glue/sst2": [], "glue/stsb": ["epochs=3"]}
    epochs = {task: task_run_config(FinetuneConfig, config, 1, "o", task=task, extra_overrides=per_task[task]).epochs
              for task in config.tasks}
    assert epochs == {"glue/sst2": 1.0, "glue/stsb": 3.0}
