"""`distil-tf distill` with a teacher without an MLM head (a sentence-transformers layout), end to end."""

import json
import pathlib

import pytest

from distil_tf import load_model
from distil_tf.cli import main
from distil_tf.data.raw_text import read_texts, write_text_corpus

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "distil_tf/configs/embedding_student.yaml"
ANNOUNCEMENT = ("teacher has no MLM head: ce and mlm off; active: cos(last) 1.0, hidden_mse(all) 1.0, "
                "pooled_cos(mean) 1.0; input: unmasked text (no MLM term)")


@pytest.fixture(scope="module")
def tiny_sentence_teacher(tmp_path_factory):
    """A random 4-layer `BertModel` (no MLM head) with sentence-transformers' mean pooling + Normalize."""
    transformers = pytest.importorskip("transformers")
    import torch

    from tests.conftest import TINY_VOCAB_SIZE, _write_hf_checkpoint

    torch.manual_seed(3)
    config = transformers.BertConfig(
        vocab_size=TINY_VOCAB_SIZE, hidden_size=32, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
    )
    directory = _write_hf_checkpoint(tmp_path_factory.mktemp("sentence_teacher"), transformers.BertModel(config))
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling/config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    return directory


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory, shared_data):
    """wiki.test.raw lines plus SST-2 train sentences and IMDb reviews without labels (in tmp)."""
    directory = tmp_path_factory.mktemp("corpus")
    wiki = directory / "wiki.txt"
    lines = (shared_data / "wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8").splitlines()
    wiki.write_text("\n".join(lines[:200]), encoding="utf-8")
    # Small TSVs cut from the real ones, to keep the test fast.
    sst2 = directory / "sst2.tsv"
    sst2.write_text("\n".join((shared_data / "glue/SST-2/train.tsv").read_text().splitlines()[:400]) + "\n")
    labelled = directory / "labelled.txt"
    counts = write_text_corpus([f"tsv:{sst2}:sentence", f"tsv:{shared_data / 'imdb/dev.tsv'}:text"], labelled)
    assert counts[f"tsv:{sst2}:sentence"] == 399 and counts[f"tsv:{shared_data / 'imdb/dev.tsv'}:text"] == 2500
    return [wiki, labelled]


def _args(teacher, corpus, out, *extra):
    return ["distill", "--config", str(CONFIG), "--teacher", str(teacher), "--student", "0,2",
            "--corpus", *map(str, corpus), "--out", str(out), "--steps", "4", "--batch-size", "8",
            "--max-seq-length", "32", "--set", "checkpoint_every=4", "--set", "log_every=2", *extra]


def test_teacher_without_mlm_head_distils_with_the_hidden_state_terms(tmp_path, capsys, tiny_sentence_teacher,
                                                                       mixed_corpus):
    out = tmp_path / "run"
    # The shipped config, but its weights left to the teacher (the defaults): same terms.
    defaults = ["--set", "distillation.alpha_ce=null", "--set", "distillation.alpha_mlm=null",
                "--set", "distillation.alpha_hidden_mse=null", "--set", "distillation.alpha_pooled_cos=null"]
    code = main(_args(tiny_sentence_teacher, mixed_corpus, out, *defaults))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert captured.out.count(ANNOUNCEMENT) == 1, captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["masked_inputs"] is False
    assert {k: v for k, v in metrics["loss_weights"].items() if v} == {"cos": 1.0, "hidden_mse": 1.0, "pooled_cos": 1.0}
    assert {"loss_hidden_mse", "loss_pooled_cos"} <= set(metrics["final_train_loss"])
    assert not (out / "token_counts.npy").exists()  # unmasked: no counting pass
    student = load_model(out / "student")
    assert student.num_layers == 2 and student.pooling == "mean" and student.normalize_embeddings


def test_the_shipped_config_announces_the_same_terms(tmp_path, capsys, tiny_sentence_teacher, mixed_corpus):
    code = main(_args(tiny_sentence_teacher, mixed_corpus, tmp_path / "run", "--steps", "2",
                      "--set", "checkpoint_every=2"))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert captured.out.count(ANNOUNCEMENT) == 1, captured.out


@pytest.mark.parametrize("term", ["alpha_mlm", "alpha_ce"])
def test_an_explicit_mlm_term_on_a_teacher_without_a_head_exits_2_with_one_line(
        tmp_path, capsys, tiny_sentence_teacher, mixed_corpus, term):
    code = main(_args(tiny_sentence_teacher, mixed_corpus, tmp_path / "bad", "--set", f"distillation.{term}=2"))
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"distillation.{term}=2 needs the teacher's masked-LM head" in stderr
    assert f"--set distillation.{term}=0" in stderr and "use a teacher with an MLM head" in stderr


def test_tsv_columns_read_with_and_without_quoting(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text('text\tlabel\n"He said ""wow"".<br />Then\tleft."\t1\nplain one\t0\n\t1\n')
    assert read_texts(f"tsv:{path}:text") == ['He said "wow". Then\tleft.', "plain one"]
    headerless = tmp_path / "cola.tsv"
    headerless.write_text('src\t1\t\t"quoted start\nsrc\t0\t\tnext one\n')
    assert read_texts(f"tsv-unquoted:{headerless}:3") == ['"quoted start', "next one"]
    with pytest.raises(ValueError, match="no column 'sentence'"):
        read_texts(f"tsv:{path}:sentence")
    with pytest.raises(ValueError, match="expected tsv:PATH:COLUMN"):
        read_texts(f"tsv:{path}")
