"""Zero-shot STS-B with embeddings: metrics against scipy, one code path for directories and exports."""

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.cli import main
from distil_tf.export import export_model
from distil_tf.models import Encoder, TaskModel, save_model
from distil_tf.tasks import sts_embedding
from distil_tf.text import load_tokenizer

LIMIT = 40  # STS-B dev pairs scored in these tests (the full 1,500 are a one-off run)


@pytest.fixture(scope="module")
def tiny_encoder_dirs(tmp_path_factory, bert_vocab):
    """A 1-layer BERT encoder on the real vocabulary (mean pooling, normalized) and its export."""
    tokenizer = load_tokenizer(bert_vocab)
    tf.keras.utils.set_random_seed(5)
    encoder = Encoder("bert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                      hidden_dim=16, intermediate_dim=32, max_sequence_length=64, mlm_head=False,
                      pooling="mean", normalize_embeddings=True)
    encoder(encoder.dummy_inputs())
    directory = tmp_path_factory.mktemp("sts")
    save_model(encoder, directory / "encoder", tokenizer)
    version_dir = export_model(directory / "encoder", directory / "base", max_sequence_length=64, warmup=False)
    return directory, version_dir


def test_correlations_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    scores = np.round(rng.uniform(0, 5, size=200), 1)  # ties, as STS-B gold scores have
    embeddings_a = rng.normal(size=(200, 8))
    embeddings_b = embeddings_a * scores[:, None] / 5 + rng.normal(size=(200, 8))
    texts_a = [f"a{index}" for index in range(200)]
    texts_b = [f"b{index}" for index in range(200)]
    table = dict(zip(texts_a + texts_b, np.concatenate([embeddings_a, embeddings_b]).astype("float32")))

    def embed(texts):
        return np.stack([table[text] for text in texts])

    result = sts_embedding.evaluate_sts_embeddings(embed, (texts_a, texts_b, scores), batch_size=7)
    expected_cosines = np.array([
        np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
        for a, b in zip(embeddings_a.astype("float32").astype("float64"),
                        embeddings_b.astype("float32").astype("float64"))
    ])  # float64 from the float32 embeddings embed() returns
    np.testing.assert_allclose(result["cosines"], expected_cosines, rtol=1e-12)
    assert result["metrics"]["pearson"] == pytest.approx(stats.pearsonr(scores, expected_cosines)[0], abs=1e-9)
    assert result["metrics"]["spearman"] == pytest.approx(stats.spearmanr(scores, expected_cosines)[0], abs=1e-9)
    assert result["metrics"]["spearman"] > 0.3  # the synthetic similarity is real signal


def test_model_directory_and_export_score_the_same(tiny_encoder_dirs, shared_data):
    directory, version_dir = tiny_encoder_dirs
    pairs = sts_embedding.read_sts_pairs(shared_data / "glue", limit=LIMIT)
    assert len(pairs[0]) == LIMIT and pairs[2].max() <= 5.0
    from_directory = sts_embedding.evaluate_sts_embeddings(
        sts_embedding.embedder_for(directory / "encoder", max_sequence_length=64)[0], pairs)
    # The base path resolves to its newest version.
    embed, info = sts_embedding.embedder_for(directory / "base")
    assert info["kind"] == "saved_model" and info["pooling"] == "mean"
    from_export = sts_embedding.evaluate_sts_embeddings(embed, pairs)
    np.testing.assert_allclose(from_export["cosines"], from_directory["cosines"], atol=1e-5)
    assert from_export["metrics"]["spearman"] == pytest.approx(from_directory["metrics"]["spearman"], abs=1e-3)


def test_cli_evaluate_stsb_embedding(tiny_encoder_dirs, shared_data, tmp_path, capsys):
    directory, version_dir = tiny_encoder_dirs
    code = main(["evaluate", "--task", "stsb-embedding", "--model", str(version_dir),
                 "--data-dir", str(shared_data / "glue"), "--limit", "16", "--output", str(tmp_path / "m.json")])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "mean pooling, L2-normalized, max 64 tokens (saved model)" in output
    assert "spearman" in output and "pearson" in output and "(16 examples)" in output
    code = main(["evaluate", "--task", "stsb-embedding", "--model", str(version_dir), "--max-seq-length", "128",
                 "--data-dir", str(shared_data / "glue"), "--limit", "4"])
    assert code == 2 and "exported with max sequence length 64" in capsys.readouterr().err


def test_task_models_and_task_exports_are_refused(tmp_path, bert_vocab, capsys):
    tokenizer = load_tokenizer(bert_vocab)
    encoder = Encoder("distilbert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                      hidden_dim=8, intermediate_dim=16, max_sequence_length=32, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="glue/sst2",
                                   label_names=["negative", "positive"])
    save_model(model, tmp_path / "task", tokenizer)
    with pytest.raises(ValueError, match="classification task model"):
        sts_embedding.embedder_for(tmp_path / "task")
    version_dir = export_model(tmp_path / "task", tmp_path / "base", max_sequence_length=32, warmup=False)
    assert main(["evaluate", "--task", "stsb-embedding", "--model", str(version_dir), "--limit", "2"]) == 2
    assert "serves no 'embedding' output" in capsys.readouterr().err
