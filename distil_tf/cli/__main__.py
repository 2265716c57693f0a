"""`python -m distil_tf.cli ...` is `distil-tf ...`."""

import sys

from distil_tf.cli import main

sys.exit(main())
