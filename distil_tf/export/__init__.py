"""SavedModels for TF Serving: text-in, tf.Example and ids-in signatures,
warmup records, atomic numbered versions."""

from distil_tf.export.export_module import ExportModule
from distil_tf.export.exporter import export_command, export_model
from distil_tf.export.fused_encoder import FusedEncoder
from distil_tf.export.inference_options import InferenceOptions

__all__ = ["ExportModule", "FusedEncoder", "InferenceOptions", "export_command", "export_model"]
