"""Shipped run configs load, and YAML/--set overrides are typed and strict."""

import pathlib

import pytest

from distil_tf import config as config_lib
from distil_tf.training.distill import DistillConfig

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "distil_tf" / "configs"


def test_paper_config_reproduces_the_released_recipe():
    config = config_lib.resolve(DistillConfig, CONFIGS / "distilbert_base_paper.yaml")
    assert config.student == "0,2,4,7,9,11"
    d = config.distillation
    assert (d.alpha_ce, d.alpha_mlm, d.alpha_cos, d.temperature) == (5.0, 2.0, 1.0, 2.0)
    assert config.data.batch_size * config.optimizer.gradient_accumulation_steps == 4096
    assert (config.optimizer.beta_2, config.optimizer.epsilon, config.optimizer.clip_global_norm) == (0.98, 1e-6, 5.0)


def test_tiny_config_and_overrides(tmp_path):
    config = config_lib.resolve(DistillConfig, CONFIGS / "tiny_cpu.yaml",
                                ["optimizer.learning_rate=3e-4", "data.corpus=a.txt,b.txt", "runtime.jit_compile=true"])
    assert config.steps == 300 and config.optimizer.learning_rate == 3e-4
    assert config.data.corpus == ["a.txt", "b.txt"] and config.runtime.jit_compile is True
    path = config_lib.save_config(config, tmp_path)
    assert config_lib.resolve(DistillConfig, path) == config


@pytest.mark.parametrize("override, message", [
    ("optimizer.learnin_rate=1", "unknown config key 'optimizer.learnin_rate'"),
    ("steps=many", "expects int"),
    ("runtime.jit_compile=maybe", "expects true/false"),
    ("steps", "expects key=value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        config_lib.resolve(DistillConfig, None, [override])


def test_bad_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("data: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        config_lib.resolve(DistillConfig, tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("dat:\n  batch_size: 3\n")
    with pytest.raises(ValueError, match="unknown config key 'dat'"):
        config_lib.resolve(DistillConfig, tmp_path / "typo.yaml")


def test_min_seq_length_reaches_the_corpus_filter_and_the_token_counts(tmp_path, tiny_vocab_file):
    """`data.min_seq_length` keeps short sentences in training's sequences and in the counts of its masking."""
    from distil_tf.text import load_tokenizer
    from distil_tf.training.distill import _token_counts

    corpus = tmp_path / "corpus.txt"
    # 3 + 2 = 5 ids with [CLS]/[SEP], and 12 + 2 = 14 ids.
    corpus.write_text("good fun film\n" + " ".join(["the movie is great"] * 3) + "\n")
    tokenizer = load_tokenizer(tiny_vocab_file)
    counts = {}
    for minimum in (12, 5):
        config = config_lib.resolve(DistillConfig, None, [f"data.min_seq_length={minimum}"])
        config.data.corpus = [str(corpus)]
        out = tmp_path / f"min{minimum}"
        out.mkdir()
        counts[minimum] = _token_counts(config, tokenizer, out)
    fun = tokenizer.token_to_id("fun")
    assert counts[12][fun] == 0 and counts[5][fun] == 1  # the short line counts only when kept
    assert counts[5].sum() == counts[12].sum() + 5
