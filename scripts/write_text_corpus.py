"""Write a raw-text corpus for `distil-tf distill` from text files and TSV columns (labels dropped).

    python scripts/write_text_corpus.py --out /tmp/corpus/sst2_imdb.txt \
        tsv:../shared/data/glue/SST-2/train.tsv:sentence tsv:../shared/data/imdb/dev.tsv:text

Then `distil-tf distill --corpus ../shared/data/wikitext-2-raw/wiki.test.raw /tmp/corpus/sst2_imdb.txt ...`.
Source forms (`distil_tf.data.raw_text`): `PATH`, `tsv:PATH:COLUMN` (CSV quoting, as IMDb),
`tsv-unquoted:PATH:COLUMN` (GLUE files with stray quotes); COLUMN is a header name or a 0-based index.
Write the corpus outside the repository: data files are never committed.
"""

import argparse
import sys

from distil_tf.data.raw_text import write_text_corpus


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="PATH, tsv:PATH:COLUMN or tsv-unquoted:PATH:COLUMN")
    parser.add_argument("--out", required=True, help="the text file to write (one text per line)")
    args = parser.parse_args(argv)
    try:
        counts = write_text_corpus(args.sources, args.out)
    except ValueError as error:
        print(f"write_text_corpus: error: {error}", file=sys.stderr)
        return 2
    for source, lines in counts.items():
        print(f"{lines:>8,} lines  {source}")
    print(f"wrote {sum(counts.values()):,} lines to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
