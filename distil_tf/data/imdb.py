"""IMDb sentiment reviews: a local TSV or tfds `imdb_reviews`, and tf.data features.

Reviews are long: on the local 2,500-review sample, bert-base-uncased
WordPieces per review have median 215, 90th percentile 571 and maximum 1,972;
13% exceed 510 and 88% exceed 126. The DistilBERT paper does not say how it
truncated them.
`make_imdb_dataset` offers two strategies:

- `"head_tail"` (default): keep the first `head_length` tokens and the last
  `sequence_length - 2 - head_length`. Sun et al. 2019, "How to Fine-Tune
  BERT for Text Classification?" (arXiv 1905.05583), Table 3: head 128 + tail
  382 at length 512 beat head-only and tail-only on IMDb (5.42% vs 5.63%
  error), since reviews tend to end with the verdict.
- `"head"`: keep the first `sequence_length - 2` tokens.

When `head_length >= sequence_length - 2` both strategies are the same.

Why not tf-models-official's `ImdbProcessor`: it reads the `aclImdb/{train,
test}/{neg,pos}/*.txt` layout, not a TSV, and its tfds twin (`TfdsProcessor`)
needs a parameter string; the tfds path here calls `tfds.load` directly.
"""

import csv
import io
from typing import Optional, Sequence

import tensorflow as tf

from distil_tf.data import glue
from distil_tf.data import task_specs as registry
from distil_tf.text import preprocessing

# One implementation of the cleaning and truncation for training and export
# (`distil_tf.text.preprocessing`); re-exported under this module's names.
HEAD_TAIL = preprocessing.HEAD_TAIL
HEAD = preprocessing.HEAD
DEFAULT_HEAD_LENGTH = preprocessing.DEFAULT_HEAD_LENGTH
clean_review = preprocessing.clean_line_breaks
truncate_token_ids = preprocessing.truncate_head_tail

_LABEL_VALUES = registry.get_task("imdb").local_label_values


def read_imdb_tsv(path: str) -> list:
    """Reads reviews from a TSV with header `text\\tlabel` and labels 0/1.

    Fields follow CSV quoting: a field holding a quote or a tab is wrapped in
    `"` with inner quotes doubled (unlike the GLUE files, which use no quoting).

    Args:
        path: str. The TSV file, e.g. `<imdb_dir>/dev.tsv`.

    Returns:
        A list of `distil_tf.data.glue.TextExample` (0 = neg, 1 = pos), with
        `<br />` replaced by spaces.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a bad header, a row without exactly two fields, a label
            other than 0/1 (file and line named), or no reviews.
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: file not found; pass an IMDb TSV or use tfds")
    with tf.io.gfile.GFile(path, "rb") as file:
        text = file.read().decode("utf-8-sig")
    # newline="" hands embedded line breaks inside quoted fields to the csv
    # module instead of splitting the record there.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    examples = []
    header_seen = False
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not row:
            continue
        if not header_seen:
            if row != ["text", "label"]:
                raise ValueError(f"{where}: expected the header 'text<TAB>label', got {row!r:.80}")
            header_seen = True
            continue
        if len(row) != 2:
            raise ValueError(
                f"{where}: expected 2 tab-separated fields (text, label), got {len(row)}"
            )
        review, label = row
        if label not in _LABEL_VALUES:
            raise ValueError(f"{where}: label '{label}' is not one of {', '.join(_LABEL_VALUES)}")
        examples.append(
            glue.TextExample(where, clean_review(review), None, _LABEL_VALUES.index(label))
        )
    if not examples:
        raise ValueError(f"{path}: no reviews")
    return examples


def read_imdb_tfds(split: str) -> list:
    """Reads tfds `imdb_reviews` (`"train"` or `"test"`) as `TextExample`s."""
    import tensorflow_datasets as tfds

    tfds_split = registry.get_task("imdb").tfds_split(split)
    examples = [
        glue.TextExample(
            f"{tfds_split}-{index}",
            clean_review(record["text"].decode("utf-8")),
            None,
            int(record["label"]),
        )
        for index, record in enumerate(
            tfds.load("imdb_reviews", split=tfds_split).as_numpy_iterator()
        )
    ]
    if not examples:
        raise ValueError(f"tfds 'imdb_reviews' split '{tfds_split}' is empty")
    return examples


def make_imdb_dataset(
    examples: Sequence,
    tokenizer,
    sequence_length: int,
    batch_size: int,
    truncation: str = HEAD_TAIL,
    head_length: int = DEFAULT_HEAD_LENGTH,
    shuffle: bool = False,
    seed: Optional[int] = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of packed review features and labels.

    Args:
        examples: sequence of `TextExample` (from `read_imdb_tsv` or
            `read_imdb_tfds`).
        tokenizer: a keras-hub WordPiece tokenizer.
        sequence_length: int. Packed length, `[CLS]` and `[SEP]` included.
        batch_size: int.
        truncation: str. `"head_tail"` or `"head"` (see the module docstring).
        head_length: int. Head tokens kept by `"head_tail"`.
        shuffle, seed, drop_remainder: as in `glue.make_text_dataset`.

    Returns:
        A `tf.data.Dataset` of `(features, labels)`: features
        `{"token_ids", "segment_ids", "padding_mask"}` int32
        `[batch, sequence_length]`, labels int32 `[batch]`.
    """
    settings = preprocessing.PreprocessingConfig(sequence_length, truncation, head_length, clean_line_breaks=True)
    # Validate eagerly, before the pipeline is traced.
    truncate_token_ids(tf.ragged.constant([[0]]), sequence_length - 2, truncation, head_length)
    # The reviews are cleaned when read; the preprocessor cleans again in
    # graph (a no-op here), as the served model does on a client's raw text.
    return glue.make_text_dataset(examples, tokenizer, sequence_length, batch_size, task="imdb", shuffle=shuffle,
                                  seed=seed, preprocessing=settings, drop_remainder=drop_remainder)
