"""Raw text out of labelled TSV files: one text per line, ready for `distil-tf distill --corpus`.

General distillation reads plain text (`distil_tf.data.corpus`). Text that
sits in a column of a labelled TSV (the SST-2 train sentences, IMDb reviews)
is written out once, labels dropped, with `write_text_corpus`:

- `PATH`: a plain-text file, copied line by line;
- `tsv:PATH:COLUMN`: one column of a TSV with CSV-style quoting (a field
  holding a quote or a tab is wrapped in `"`, inner quotes doubled: the IMDb
  file's convention; files without quotes, such as GLUE SST-2, read the same);
- `tsv-unquoted:PATH:COLUMN`: the same with quotes as plain characters (GLUE
  files with stray quotes, e.g. CoLA).

`COLUMN` is a header name (`sentence`, `text`: the first row is the header)
or a 0-based index (no header row, e.g. CoLA's `3`). Every text has its
`<br />` tags replaced by spaces and its line breaks by spaces (one text, one
line), is stripped, and is dropped when blank.

Example:

>>> write_text_corpus(["tsv:glue/SST-2/train.tsv:sentence", "tsv:imdb/dev.tsv:text"], "/tmp/corpus.txt")
{'tsv:glue/SST-2/train.tsv:sentence': 67349, 'tsv:imdb/dev.tsv:text': 2500}
"""

import csv
import io
import os
import re

import tensorflow as tf

from distil_tf.text.preprocessing import clean_line_breaks

TSV_PREFIX = "tsv:"
TSV_UNQUOTED_PREFIX = "tsv-unquoted:"
_LINE_BREAKS = re.compile(r"[\r\n]+")


def parse_source(spec):
    """`(path, column, quoted)`; column None for a plain-text file.

    Raises:
        ValueError: a `tsv:` spec without `:COLUMN`.
    """
    for prefix, quoted in ((TSV_UNQUOTED_PREFIX, False), (TSV_PREFIX, True)):
        if spec.startswith(prefix):
            path, separator, column = spec[len(prefix):].rpartition(":")
            if not separator or not path or not column:
                raise ValueError(f"{spec!r}: expected {prefix}PATH:COLUMN (a header name or a 0-based index)")
            return path, (int(column) if column.isdigit() else column), quoted
    return spec, None, False


def read_texts(spec):
    """The texts of one source (see the module docstring), in file order.

    Raises:
        ValueError: a missing file, an unknown column, or a row too short for it.
    """
    path, column, quoted = parse_source(spec)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path}: file not found")
    with tf.io.gfile.GFile(path, "rb") as file:
        text = file.read().decode("utf-8-sig")
    if column is None:
        rows = ((line,) for line in text.splitlines())
        index = 0
    else:
        # newline="": line breaks inside quoted fields stay in the field.
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t",
                            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
        rows = iter(reader)
        if isinstance(column, int):
            index = column
        else:
            header = next(rows, [])
            if column not in header:
                raise ValueError(f"{path}: no column {column!r} in the header {header!r:.120}")
            index = header.index(column)
    texts = []
    for number, row in enumerate(rows, 1):
        if not row:
            continue
        if index >= len(row):
            raise ValueError(f"{path}: row {number} has {len(row)} fields, no column {column!r}")
        line = _LINE_BREAKS.sub(" ", clean_line_breaks(row[index])).strip()
        if line:
            texts.append(line)
    return texts


def write_text_corpus(sources, out_path):
    """Write the texts of `sources` to `out_path`, one per line (UTF-8); returns `{source: lines}`.

    Raises:
        ValueError: no sources, a bad source (see `read_texts`), or no text at all.
    """
    if not sources:
        raise ValueError("no sources: pass text files or tsv:PATH:COLUMN specs")
    counts, lines = {}, []
    for spec in sources:
        texts = read_texts(spec)
        counts[spec] = len(texts)
        lines.extend(texts)
    if not lines:
        raise ValueError(f"no text in {', '.join(sources)}")
    directory = os.path.dirname(os.fspath(out_path))
    if directory:
        tf.io.gfile.makedirs(directory)
    temporary = f"{out_path}.partial"
    with tf.io.gfile.GFile(temporary, "w") as file:
        file.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(temporary, out_path, overwrite=True)
    return counts
