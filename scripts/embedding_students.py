"""Issue 16's table: sentence-embedding students of all-MiniLM-L6-v2 (STS-B, size, latency, throughput).

    python scripts/embedding_students.py --out runs/embedding-students            # full budget (the config's steps)
    python scripts/embedding_students.py --out /tmp/smoke --steps 3 --limit 20 \
        --latency-texts 5 --throughput-batches 1 --rounds 1                        # smoke run

Writes OUT/embedding_students.md and .json; finished runs are reused. The
logic lives in `distil_tf.benchmarks.embedding_students`.
"""

import sys

from distil_tf.benchmarks.embedding_students import main

if __name__ == "__main__":
    sys.exit(main())
