"""Find a model directory's tokenizer: ours, Hugging Face's, or a keras-hub preset's.

A model directory written by distil-tf keeps its tokenizer the way Hugging Face
does (`vocab.txt` + `tokenizer_config.json`), so the same directory also works
with `transformers.BertTokenizer.from_pretrained`.
"""

import json
import pathlib

from distil_tf.run_dir import resolve_model_path
from distil_tf.text.bert_word_piece_tokenizer import BertWordPieceTokenizer

VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
_KERAS_HUB_VOCAB = pathlib.Path("assets") / "tokenizer" / "vocabulary.txt"


def _read_vocabulary(path):
    tokens = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    if not tokens:
        raise ValueError(f"vocabulary file {path} is empty")
    missing = [token for token in ("[UNK]", "[CLS]", "[SEP]", "[PAD]") if token not in tokens]
    if missing:
        raise ValueError(
            f"vocabulary file {path} is not a BERT WordPiece vocabulary: "
            f"no {', '.join(missing)} token"
        )
    return tokens


def _tokenizer_options(directory):
    """Casing options from tokenizer_config.json, tokenizer.json or a keras-hub config."""
    options = {}
    config_path = directory / TOKENIZER_CONFIG_FILE
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        options["lowercase"] = bool(config.get("do_lower_case", True))
        options["strip_accents"] = config.get("strip_accents")
        options["tokenize_chinese_chars"] = bool(config.get("tokenize_chinese_chars", True))
        return options
    hf_tokenizer_path = directory / "tokenizer.json"
    if hf_tokenizer_path.is_file():
        normalizer = json.loads(hf_tokenizer_path.read_text()).get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            options["lowercase"] = bool(normalizer.get("lowercase", True))
            options["strip_accents"] = normalizer.get("strip_accents")
            options["tokenize_chinese_chars"] = bool(
                normalizer.get("handle_chinese_chars", True)
            )
            return options
        # keras-hub presets keep their tokenizer config in tokenizer.json too.
        config = json.loads(hf_tokenizer_path.read_text()).get("config", {})
        if "lowercase" in config:
            options["lowercase"] = bool(config["lowercase"])
    return options


def load_tokenizer(path, lowercase=None):
    """Load the WordPiece tokenizer of a model directory or a `vocab.txt`.

    Args:
        path: a distil-tf model or run directory, a Hugging Face model directory
            (`vocab.txt` + `tokenizer_config.json`), a keras-hub preset
            directory, or a `vocab.txt` file.
        lowercase: bool or None. Overrides the casing found on disk; with a bare
            `vocab.txt` and no override, uncased is assumed.

    Returns:
        A `BertWordPieceTokenizer`. Called on a list of strings it returns
        their WordPiece ids without special tokens, `[batch, None]`.
    """
    path = pathlib.Path(resolve_model_path(path))
    if not path.exists():
        raise ValueError(f"no tokenizer at {path}: the path does not exist")
    if path.is_file():
        vocab_path, options = path, {}
    elif (path / VOCAB_FILE).is_file():
        vocab_path, options = path / VOCAB_FILE, _tokenizer_options(path)
    elif (path / _KERAS_HUB_VOCAB).is_file():
        vocab_path, options = path / _KERAS_HUB_VOCAB, _tokenizer_options(path)
    else:
        raise ValueError(
            f"no tokenizer in {path}: expected {VOCAB_FILE} (Hugging Face or "
            f"distil-tf layout) or {_KERAS_HUB_VOCAB} (keras-hub preset)"
        )
    if lowercase is not None:
        options["lowercase"] = lowercase
    return BertWordPieceTokenizer(vocabulary=_read_vocabulary(vocab_path), **options)


def save_tokenizer(tokenizer, directory):
    """Write `vocab.txt` and `tokenizer_config.json` (Hugging Face's layout)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / VOCAB_FILE).write_text(
        "\n".join(tokenizer.get_vocabulary()) + "\n", encoding="utf-8"
    )
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": tokenizer.hf_lowercase,
        "strip_accents": tokenizer.hf_strip_accents,
        "tokenize_chinese_chars": tokenizer.tokenize_chinese_chars,
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
