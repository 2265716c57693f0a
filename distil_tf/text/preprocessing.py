"""Text preprocessing settings a model was trained with, saved with it and reused by export.

What is served must be what was trained: a task model records, in its model
directory (`config.json` -> provenance -> `preprocessing`), how its texts were
turned into ids:

- `max_seq_length`: packed length, special tokens included;
- `truncation`: "round_robin" (GLUE: one token at a time from each text of a
  pair, as keras-hub's `MultiSegmentPacker`) or "head_tail" / "head" (IMDb,
  single texts: keep the first `head_length` tokens and the end of the review,
  Sun et al. 2019);
- `clean_line_breaks`: replace HTML `<br />` tags by spaces (IMDb's scraped
  reviews) before tokenizing.

Training reads these from the task and its length; `distil-tf export` reads
them from the model directory, so the served signature cuts and cleans texts
exactly as training did without the user repeating a flag. The functions
below are the one implementation both sides call: `clean_line_breaks_in_graph`
and `truncate_head_tail` use only core TF ops (regex_replace, ragged slicing),
so they run inside `tf.data` and inside stock TF Serving alike.
"""

import dataclasses
import re

import tensorflow as tf

ROUND_ROBIN = "round_robin"
HEAD_TAIL = "head_tail"
HEAD = "head"
TRUNCATIONS = (ROUND_ROBIN, HEAD_TAIL, HEAD)
# Sun et al. 2019 keep 128 head tokens (with 382 tail tokens at length 512).
DEFAULT_HEAD_LENGTH = 128

# `<br>`, `<br/>`, `<br />` in any case. Written with an explicit whitespace
# class so that Python's `re` (training's readers) and RE2 (the graph, TF
# Serving) match exactly the same strings: their `\s` differ on Unicode spaces.
LINE_BREAK_PATTERN = r"<[bB][rR][ \t\n\r\f\v]*/?>"
_LINE_BREAK = re.compile(LINE_BREAK_PATTERN)


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    max_seq_length: int
    truncation: str = ROUND_ROBIN
    head_length: int = DEFAULT_HEAD_LENGTH
    clean_line_breaks: bool = False

    def __post_init__(self):
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"unknown truncation '{self.truncation}'; expected one of {TRUNCATIONS}")
        if self.max_seq_length < 3:
            raise ValueError(f"max_seq_length must be >= 3, got {self.max_seq_length}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown preprocessing settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def with_length(self, max_seq_length):
        return dataclasses.replace(self, max_seq_length=int(max_seq_length))


def clean_line_breaks(text):
    """A review with its `<br />` tags replaced by spaces (Python side, readers)."""
    return _LINE_BREAK.sub(" ", text)


def clean_line_breaks_in_graph(texts):
    """The same on a string tensor `[batch]` (graph side: tf.data, exported signatures)."""
    return tf.strings.regex_replace(texts, LINE_BREAK_PATTERN, " ")


def truncate_head_tail(token_ids, max_length, truncation=HEAD_TAIL, head_length=DEFAULT_HEAD_LENGTH):
    """Truncate ragged token ids `[batch, (tokens)]` to at most `max_length` per row.

    Args:
        token_ids: `tf.RaggedTensor` `[batch, (tokens)]`, no special tokens.
        max_length: int. Tokens to keep per row (special tokens excluded).
        truncation: "head_tail" (first `head_length` tokens + the last
            `max_length - head_length`) or "head" (the first `max_length`).
        head_length: int. Head tokens kept by "head_tail".

    Returns:
        `tf.RaggedTensor` `[batch, (<= max_length)]`; rows that fit are unchanged.
    """
    if truncation not in (HEAD_TAIL, HEAD):
        raise ValueError(f"truncation strategy '{truncation}' is unknown; use '{HEAD_TAIL}' or '{HEAD}'")
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    head_length = max_length if truncation == HEAD else min(head_length, max_length)
    tail_length = max_length - head_length
    head = token_ids[:, :head_length]
    if tail_length == 0:
        return head
    # Everything after the head, then its last `tail_length` tokens: a row
    # that fits keeps all of its rest, a long row loses its middle.
    tail = token_ids[:, head_length:][:, -tail_length:]
    return tf.concat([head, tail], axis=1)
