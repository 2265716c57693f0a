"""The three task-head types, named once for models, task specs, losses, export and serving code.

A leaf module (no distil_tf imports), so every layer can use it without an
import cycle.
"""

CLASSIFICATION = "classification"
REGRESSION = "regression"
SPAN = "span"
HEAD_TYPES = (CLASSIFICATION, REGRESSION, SPAN)
