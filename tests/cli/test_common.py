"""One precedence order for every training command: defaults < YAML < flags < --set, each applied once."""

from distil_tf.cli import build_parser


def _args(argv):
    return build_parser().parse_args(argv)


def test_precedence_defaults_yaml_flags_set(tmp_path):
    from distil_tf.cli.tasks import _resolve
    from distil_tf.training.finetune import FinetuneConfig

    yaml = tmp_path / "run.yaml"
    yaml.write_text("data:\n  batch_size: 8\n  data_dir: /from/yaml\n  train_limit: 100\nsteps: 7\n")
    base = ["finetune", "--task", "glue/sst2", "--model", "m", "--out", "o", "--config", str(yaml)]
    config = _resolve(FinetuneConfig, _args(base), task="glue/sst2", model="m", out="o")
    assert (config.data.batch_size, config.data.data_dir, config.steps) == (8, "/from/yaml", 7)
    assert config.optimizer.learning_rate == 5e-5  # untouched default
    config = _resolve(FinetuneConfig, _args(base + ["--batch-size", "16", "--data-dir", "/from/flag"]),
                      task="glue/sst2", model="m", out="o")
    assert (config.data.batch_size, config.data.data_dir, config.data.train_limit) == (16, "/from/flag", 100)
    argv = base + ["--batch-size", "16", "--data-dir", "/from/flag", "--set", "data.batch_size=4",
                   "--set", "data.data_dir=/from/set", "--set", "optimizer.learning_rate=1e-4"]
    config = _resolve(FinetuneConfig, _args(argv), task="glue/sst2", model="m", out="o")
    assert (config.data.batch_size, config.data.data_dir, config.optimizer.learning_rate) == (4, "/from/set", 1e-4)


def test_set_is_applied_once(monkeypatch):
    from distil_tf import config as config_lib
    from distil_tf.cli.tasks import _resolve
    from distil_tf.training.finetune import FinetuneConfig

    calls = []
    original = config_lib.apply_overrides

    def counting(config, overrides):
        calls.append(list(overrides or []))
        return original(config, overrides)

    monkeypatch.setattr(config_lib, "apply_overrides", counting)
    argv = ["finetune", "--task", "glue/sst2", "--model", "m", "--out", "o", "--set", "steps=3"]
    config = _resolve(FinetuneConfig, _args(argv), task="glue/sst2", model="m", out="o")
    assert config.steps == 3
    assert sum("steps=3" in overrides for overrides in calls) == 1


def test_explicit_top_level_flags_beat_the_yaml(tmp_path):
    from distil_tf.cli.common import resolve_training_config
    from distil_tf.training.distill import DistillConfig

    yaml = tmp_path / "run.yaml"
    yaml.write_text("student: '3'\nteacher: /from/yaml\nsteps: 9\n")
    argv = ["distill", "--teacher", "t", "--student", "0,2", "--out", "o", "--corpus", "c.txt",
            "--config", str(yaml)]
    config = resolve_training_config(DistillConfig, _args(argv), {"steps": "steps"},
                                     teacher="t", student="0,2", out="o")
    assert (config.teacher, config.student, config.out, config.steps) == ("t", "0,2", "o", 9)
    # Without the flag the YAML's value stands.
    config = resolve_training_config(DistillConfig, _args(argv), {"steps": "steps"}, teacher="t", out="o")
    assert config.student == "3"
