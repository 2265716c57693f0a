"""Issue 16's table: sentence-embedding students of all-MiniLM-L6-v2 (STS-B, size, latency, throughput).

Same as `distil-tf benchmark embedding-students` (this script passes its flags on):

    distil-tf benchmark embedding-students --out runs/embedding-students   # full budget (the config's steps)
    distil-tf benchmark embedding-students --out /tmp/smoke --steps 3 --limit 20 \
        --latency-texts 5 --throughput-batches 1 --rounds 1               # smoke run

Writes OUT/embedding_students.md and .json; finished runs are reused. The
logic lives in `distil_tf.benchmarks.embedding_students`, the flags in
`distil_tf.cli.benchmarks`.
"""

import sys

from distil_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "embedding-students", *sys.argv[1:]]))
