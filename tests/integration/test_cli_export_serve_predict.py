"""Task models and encoders through `distil-tf export`, the local server and `distil-tf predict`."""

import json
import shutil

import numpy as np
import pytest

from distil_tf import load_model, load_tokenizer
from distil_tf.cli import main
from distil_tf.models import TaskModel, save_model
from distil_tf.serving.client import ServingClient
from distil_tf.serving.server import ModelServer, ServerOptions, single_model_config
from distil_tf.tasks import sts_embedding


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_hf_distilbert_mlm):
    directory = tmp_path_factory.mktemp("export")
    model = TaskModel.from_encoder(load_model(tiny_hf_distilbert_mlm), "classification", num_classes=2,
                                   task_name="glue/sst2", label_names=["negative", "positive"])
    save_model(model, directory / "model", load_tokenizer(tiny_hf_distilbert_mlm))
    assert main(["export", "--model", str(directory / "model"), "--out", str(directory / "base"),
                 "--max-sequence-length", "32"]) == 0
    return directory


def test_export_writes_version_1_then_2(exported, capsys):
    assert (exported / "base" / "1" / "saved_model.pb").is_file()
    assert (exported / "base" / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    code = main(["export", "--model", str(exported / "model"), "--out", str(exported / "base"), "--version", "1"])
    assert code == 2 and "exists" in capsys.readouterr().err


def test_predict_over_grpc_and_rest(exported, capsys):
    options = ServerOptions(port=0, rest_api_port=-1,
                            model_server_config=single_model_config("sst2", str(exported / "base")),
                            file_system_poll_wait_seconds=0)
    with ModelServer(options) as server:
        for extra, target in (([], server.grpc_target), (["--rest"], server.rest_url.split("//")[-1].rstrip("/"))):
            code = main(["predict", "--server", target, "--model", "sst2", *extra,
                         "a gripping, funny film", "a dull mess"])
            output = capsys.readouterr().out
            assert code == 0, output
            assert "a gripping, funny film" in output and "a dull mess" in output
            assert "positive" in output or "negative" in output
        code = main(["predict", "--server", server.grpc_target, "--model", "nope", "hi"])
        assert code == 2 and "NOT_FOUND" in capsys.readouterr().err


def test_export_refuses_an_encoder_without_known_pooling(tmp_path, capsys, tiny_hf_distilbert_mlm):
    # A DistilBertForMaskedLM names no pooling (no 1_Pooling, no pooler).
    code = main(["export", "--model", str(tiny_hf_distilbert_mlm), "--out", str(tmp_path / "b")])
    error = capsys.readouterr().err
    assert code == 2 and "no known pooling" in error and "--pooling cls|mean" in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


# --- Encoders: sentence embeddings ------------------------------------------

_ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
# Words of the tiny vocabulary, so that texts are real WordPieces, and "".
_TEXTS = ["this movie is great", "a bad film", "", "hello world, this is a test"]


@pytest.fixture(scope="module")
def embedding_export(tmp_path_factory, tiny_hf_bert_model):
    """The tiny BERT laid out as a sentence-transformers model (mean, Normalize), exported by the CLI."""
    directory = tmp_path_factory.mktemp("embedding")
    source = directory / "st"
    shutil.copytree(tiny_hf_bert_model, source)
    (source / "modules.json").write_text(json.dumps(_ST_MODULES))
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    assert main(["export", "--model", str(source), "--out", str(directory / "base"),
                 "--max-sequence-length", "32"]) == 0
    return directory


def _two_model_server(exported, embedding_export):
    config = single_model_config("sst2", str(exported / "base"))
    entry = config.model_config_list.config.add()
    entry.name, entry.base_path, entry.model_platform = "minilm", str(embedding_export / "base"), "tensorflow"
    return ModelServer(ServerOptions(port=0, rest_api_port=-1, model_server_config=config,
                                     file_system_poll_wait_seconds=0))


def test_served_embeddings_equal_the_model_directory(exported, embedding_export, capsys):
    embed, info = sts_embedding.embedder_for(embedding_export / "st", max_sequence_length=32)
    assert (info["pooling"], info["normalize"]) == ("mean", True)
    expected = embed(_TEXTS)  # the Keras model (keras-hub layers), in process
    with _two_model_server(exported, embedding_export) as server:
        rest_target = server.rest_url.split("//")[-1].rstrip("/")
        for rest, target in ((False, server.grpc_target), (True, rest_target)):
            with ServingClient(target, "minilm", rest=rest) as client:
                served = client.embed_texts(_TEXTS)
            assert served.shape == (4, 32)
            np.testing.assert_allclose(served, expected, atol=1e-5)
            np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, rtol=1e-5)

        for extra, target in (([], server.grpc_target), (["--rest"], rest_target)):
            code = main(["predict", "--server", target, "--model", "minilm", "--embed", *extra, *_TEXTS[:3]])
            output = capsys.readouterr().out
            assert code == 0, output
            assert "3 embeddings of 32 dimensions" in output and '""' in output
            lines = output.splitlines()
            cosine_row = lines[lines.index(next(line for line in lines if line.startswith("cosine"))) + 2]
            unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
            assert cosine_row.split()[1:] == [f"{value:.4f}" for value in unit[1] @ unit[:3].T]

        # --embed against a classification model: one line, exit 2.
        code = main(["predict", "--server", server.grpc_target, "--model", "sst2", "--embed", "a fine film"])
        error = capsys.readouterr().err
        assert code == 2 and "not an exported encoder" in error and len(error.strip().splitlines()) == 1


def test_served_embeddings_parity_script_on_real_stsb_pairs(embedding_export, shared_data, tmp_path):
    """`scripts/served_embeddings_parity.py`: the served cosines (gRPC and REST) are the directory's."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "served_embeddings_parity.py"
    spec = importlib.util.spec_from_file_location("served_embeddings_parity", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "parity.json"
    assert script.main(["--model", str(embedding_export / "st"), "--export", str(embedding_export / "base"),
                        "--data-dir", str(shared_data / "glue"), "--limit", "6", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["pairs"] == 6 and set(report["transports"]) == {"grpc", "rest"}
    for figures in report["transports"].values():
        assert figures["max_abs_cosine_difference"] < 1e-5
        assert figures["spearman"] == pytest.approx(report["directory_spearman"], abs=1e-6)
