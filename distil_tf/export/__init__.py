"""SavedModels for TF Serving: text-in, tf.Example and ids-in signatures,
warmup records, atomic numbered versions."""

from distil_tf.export.embedding_module import EmbeddingExportModule
from distil_tf.export.export_module import create_export_module
from distil_tf.export.exporter import export_command, export_model
from distil_tf.export.fused_encoder import FusedEncoder
from distil_tf.export.inference_options import InferenceOptions
from distil_tf.export.question_answering_module import QuestionAnsweringExportModule
from distil_tf.export.sentence_prediction_module import SentencePredictionExportModule

__all__ = [
    "EmbeddingExportModule",
    "FusedEncoder",
    "InferenceOptions",
    "QuestionAnsweringExportModule",
    "SentencePredictionExportModule",
    "create_export_module",
    "export_command",
    "export_model",
]
