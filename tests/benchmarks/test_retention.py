"""`distil-tf benchmark retention`: the exact McNemar test and a tiny end-to-end report."""

import json

import pytest

from distil_tf.benchmarks import retention
from distil_tf.benchmarks.task_runs import summarize


@pytest.mark.parametrize("b, c", [(0, 0), (1, 0), (10, 2), (2, 10), (7, 7), (25, 11), (0, 9), (40, 60)])
def test_mcnemar_exact_equals_scipy_binomial_test(b, c):
    stats = pytest.importorskip("scipy.stats")
    expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    assert retention.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_on_known_tables():
    # Agresti's textbook case: 10 vs 2 discordant pairs, exact two-sided p = 0.0386.
    assert retention.mcnemar_exact(10, 2) == pytest.approx(0.03857421875)
    assert retention.mcnemar_exact(3, 3) == 1.0


def test_discordant_counts():
    labels = [1, 0, 1, 1, 0]
    assert retention.discordant_counts(labels, [1, 0, 0, 1, 1], [0, 0, 1, 1, 0]) == (1, 2)


def _write_sst2(root):
    sst2 = root / "SST-2"
    sst2.mkdir(parents=True)
    rows = [("the movie was good", 1), ("a bad film", 0), ("very fun", 1), ("boring and bad", 0),
            ("it was great !", 1), ("not good", 0), ("a fun film", 1), ("bad , boring", 0)]
    body = "".join(f"{text}\t{label}\n" for text, label in rows)
    (sst2 / "train.tsv").write_text("sentence\tlabel\n" + body)
    (sst2 / "dev.tsv").write_text("sentence\tlabel\n" + body)
    return root


def _rows(teacher, **scores):
    return {name: summarize(values, teacher) for name, values in scores.items()}


def test_checks_on_full_sst2_with_the_logit_mse():
    # 2026-12-07, Zen 4: distill-task --distill-set distillation.soft_loss=mse vs plain, seeds 1-3.
    # Dev sentences right, of 872: the teacher 788; distilled 779, 780, 778; plain 776, 778, 772.
    report = {"rows": _rows(788 / 872, distilled=[779 / 872, 780 / 872, 778 / 872],
                            plain=[776 / 872, 778 / 872, 772 / 872])}
    retention_check, versus_plain = retention.acceptance_checks(report)
    assert retention_check == {"met": True, "text": "retention: distill-task keeps 98.9% of the teacher (the paper's 97%)"}
    # 0.42 ahead, but the spreads sum to 0.115 + 0.350 = 0.465.
    assert versus_plain == {"met": False, "text": "distill-task vs same student, finetune (labels only): +0.42 points "
                                                  "(within the two rows' summed std, 0.47)"}


def test_checks_beyond_the_spread_below_retention_and_with_one_seed():
    # MRPC, --augment 2 against the equal-steps plain student (README): 1.26 F1 ahead, spreads 0.25 + 0.76.
    report = {"rows": _rows(0.8502, distilled=[0.8424, 0.8448, 0.8397], plain=[0.8397, 0.8251, 0.8251],
                            plain_same_steps=[0.8355, 0.8325, 0.8212])}
    _, versus_plain, versus_same_steps = retention.acceptance_checks(report)
    assert versus_same_steps["met"] is True and "+1.26 points (beyond the two rows' summed std, 1.01)" in \
        versus_same_steps["text"], versus_same_steps
    assert versus_plain["met"] is True
    low = retention.acceptance_checks({"rows": _rows(0.90, distilled=[0.85], plain=[0.84])})
    assert low[0]["met"] is False and "94.4%" in low[0]["text"]
    assert low[1] == {"met": None, "text": "distill-task vs same student, finetune (labels only): +1.00 points "
                                           "(one seed: no spread to judge it against)"}


def test_the_plot_pairs_each_seed_across_the_rows(tmp_path):
    report = {"task": "glue/mrpc", "metric": "f1", "dev_examples": 408, "teacher": {"score": 0.8502},
              "rows": {"distilled": {"scores": [0.8424, 0.8448], "mean": 0.8436},
                       "plain": {"scores": [0.8397, 0.8251], "mean": 0.8324},
                       "plain_same_steps": {"scores": [0.8301, 0.8350], "mean": 0.83255}},
              "seeds": [{"seed": 1}, {"seed": 2}]}
    drawn = retention.plot_report(report, tmp_path / "retention.png")
    assert drawn == {"distilled": pytest.approx([84.24, 84.48]), "plain": pytest.approx([83.97, 82.51]),
                     "plain_same_steps": pytest.approx([83.01, 83.50])}
    assert (tmp_path / "retention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_tiny_report_end_to_end(tmp_path, tiny_hf_bert_model, capsys):
    from distil_tf import cli

    glue = _write_sst2(tmp_path / "glue")
    flags = ["--steps", "2", "--batch-size", "4", "--max-seq-length", "16"]
    assert cli.main(["finetune", "--task", "glue/sst2", "--model", str(tiny_hf_bert_model), "--out",
                     str(tmp_path / "teacher"), "--data-dir", str(glue), *flags]) == 0
    capsys.readouterr()
    argv = ["benchmark", "retention", "--teacher", str(tmp_path / "teacher"), "--student", "0,1", "--seeds", "1",
            "--out", str(tmp_path / "report"), "--data-dir", str(glue), *flags]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "retention.json").read_text())
    assert report["dev_examples"] == 8 and len(report["rows"]["distilled"]["scores"]) == 1
    for seed in report["seeds"]:
        assert seed["only_distilled_right"] + seed["only_plain_right"] <= 8
        assert 0.0 < seed["mcnemar_p"] <= 1.0
    assert "| same student, finetune (labels only) |" in printed and "McNemar p (exact)" in printed
    # One seed has no spread: the table says so rather than printing "+- 0.00".
    distilled_row = next(line for line in printed.splitlines() if line.startswith("| student, distill-task |"))
    assert f"| {100 * report['rows']['distilled']['mean']:.2f} (one seed) |" in distilled_row, distilled_row
    # ...and the verdict on distillation paying is left open, in the table and in the JSON.
    assert "- not judged: distill-task vs same student, finetune (labels only): " in printed
    assert [check["met"] for check in report["checks"]][1:] == [None]
    assert (tmp_path / "report" / "retention.png").is_file()
    # Each row is an ordinary run directory with its config beside the model.
    assert (tmp_path / "report" / "seed-1" / "distilled" / "config.yaml").is_file()
    assert json.loads((tmp_path / "report" / "seed-1" / "plain" / "run.json").read_text())[
        "distil_tf_run"]["status"] == "finished"
    # The teacher scored the transfer set once for the whole report, not once per seed.
    assert (tmp_path / "report" / "teacher_outputs" / "manifest.json").is_file()
    assert not (tmp_path / "report" / "seed-1" / "distilled" / "teacher_outputs").exists()
    # A rerun reuses the finished runs.
    assert cli.main(argv) == 0
    rerun = json.loads((tmp_path / "report" / "retention.json").read_text())
    assert rerun["rows"] == report["rows"]
    # ...and reports the time those runs took, not the rerun's near-zero wall time.
    recorded = sum(json.loads((tmp_path / "report" / "seed-1" / name / "metrics.json").read_text())["seconds"]
                   for name in ("distilled", "plain"))
    assert recorded > 0
    assert rerun["seeds"][0]["seconds"] == report["seeds"][0]["seconds"] == pytest.approx(recorded, abs=0.05)

    # A variant of the distillation reuses the baseline of the same recipe.
    variant = ["benchmark", "retention", "--teacher", str(tmp_path / "teacher"), "--student", "0,1", "--seeds", "1",
               "--out", str(tmp_path / "variant"), "--data-dir", str(glue), *flags,
               "--distill-set", "distillation.temperature=1.0", "--plain-from", str(tmp_path / "report")]
    assert cli.main(variant) == 0
    assert not (tmp_path / "variant" / "seed-1" / "plain").exists()
    distilled_config = (tmp_path / "variant" / "seed-1" / "distilled" / "config.yaml").read_text()
    assert "temperature: 1.0" in distilled_config
    varied = json.loads((tmp_path / "variant" / "retention.json").read_text())
    assert varied["rows"]["plain"] == report["rows"]["plain"]
    assert varied["distillation_options"] == ["distillation.temperature=1.0"]
    # ...and refuses a baseline trained with another recipe.
    capsys.readouterr()
    other_recipe = variant[:] + ["--set", "optimizer.learning_rate=0.001"]
    other_recipe[other_recipe.index(str(tmp_path / "variant"))] = str(tmp_path / "other")
    assert cli.main(other_recipe) == 2
    assert "another recipe (differs in: optimizer)" in capsys.readouterr().err


def test_plain_same_steps_matches_an_augmented_distillation_step_for_step(tmp_path, tiny_hf_bert_model, capsys):
    """augment=1 doubles the distilled run's epoch; the extra plain row trains that many steps."""
    from distil_tf import cli

    glue = _write_sst2(tmp_path / "glue")
    flags = ["--batch-size", "4", "--max-seq-length", "16"]
    assert cli.main(["finetune", "--task", "glue/sst2", "--model", str(tiny_hf_bert_model), "--out",
                     str(tmp_path / "teacher"), "--data-dir", str(glue), "--steps", "2", *flags]) == 0
    argv = ["benchmark", "retention", "--teacher", str(tmp_path / "teacher"), "--student", "0,1", "--seeds", "1",
            "--out", str(tmp_path / "report"), "--data-dir", str(glue), "--epochs", "1", *flags,
            "--distill-set", "distillation.augment=1", "--plain-same-steps"]
    capsys.readouterr()
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "retention.json").read_text())
    (seed,) = report["seeds"]
    # 8 labelled sentences + 8 augmented copies at batch 4: 4 steps; the plain epoch is 2.
    assert (seed["distilled_steps"], seed["plain_steps"], seed["plain_same_steps_steps"]) == (4, 2, 4)
    same_steps_run = tmp_path / "report" / "seed-1" / "plain-steps-4"
    assert json.loads((same_steps_run / "metrics.json").read_text())["steps"] == 4
    assert len(report["rows"]["plain_same_steps"]["scores"]) == 1
    versus = seed["versus_plain_same_steps"]
    assert versus["only_distilled_right"] + versus["only_plain_right"] <= 8 and 0.0 < versus["mcnemar_p"] <= 1.0
    assert seed["transfer_set"] == {"labelled": 8, "augmented": 8, "unlabeled": 0}
    assert "Distillation options: distillation.augment=1 (transfer set: 8 labelled + 8 augmented);" in printed
    assert "| same student, finetune, as many steps as distill-task |" in printed
    assert "Against the plain student trained for as many steps as the distilled one" in printed

    # Without augmentation both budgets are 2 steps: the plain run is the row, nothing more is trained.
    argv = ["benchmark", "retention", "--teacher", str(tmp_path / "teacher"), "--student", "0,1", "--seeds", "1",
            "--out", str(tmp_path / "equal"), "--data-dir", str(glue), "--epochs", "1", *flags, "--plain-same-steps",
            "--distill-set", "distillation.augment=0"]
    assert cli.main(argv) == 0
    equal = json.loads((tmp_path / "equal" / "retention.json").read_text())
    assert equal["rows"]["plain_same_steps"] == equal["rows"]["plain"]
    assert equal["seeds"][0]["transfer_set"] == {"labelled": 8, "augmented": 0, "unlabeled": 0}
    assert not list((tmp_path / "equal" / "seed-1").glob("plain-steps-*"))
