"""Task heads on an Encoder: classification, regression and span (question answering)."""

import keras
from keras import ops

from distil_tf.models.distributed_build import DistributedBuildMixin
from distil_tf.models import pooling as pooling_lib
from distil_tf.models.encoder import Encoder

from distil_tf.heads import CLASSIFICATION, HEAD_TYPES, REGRESSION, SPAN  # noqa: F401
# Added to span logits at padding positions, so softmax, KL and decoding never
# pick them. Finite (not -inf) so that float16 and KL stay NaN-free.
PADDING_LOGIT = -1e4


def head_outputs(head_type, sequence_output, padding_mask, classifier, pooling=None, pooled_output=None,
                 pooler_dense=None, pre_classifier=None, dropout=None, training=None):
    """A task head on an encoder's outputs: the one definition `TaskModel.call` and the fused export share.

    Args:
        head_type: "classification", "regression" or "span".
        sequence_output: `[batch, seq, hidden]`, the encoder's last layer.
        padding_mask: int `[batch, seq]`, 1 on real tokens.
        classifier: the output `Dense(K)` (`Dense(1)` regression, `Dense(2)` span).
        pooling: "cls_pooler", "cls" or "mean" (not span).
        pooled_output: `[batch, hidden]` BERT's tanh pooler output when the
            encoder computed it; else `pooler_dense` (the pooler's Dense) is
            applied to [CLS] here ("cls_pooler" only).
        pre_classifier: DistilBERT's `Dense(hidden, relu)` or None.
        dropout: the dropout before `classifier`, or None (inference graphs).

    Returns:
        classification `{"logits": [batch, K]}`, regression `{"logits": [batch]}`,
        span `{"start_logits", "end_logits": [batch, seq]}` with -1e4 at padding;
        float32.
    """

    def drop(x):
        return x if dropout is None else dropout(x, training=training)

    if head_type == SPAN:
        logits = ops.cast(classifier(drop(sequence_output)), "float32")  # [batch, seq, 2]
        padding = ops.cast(ops.equal(padding_mask, 0), "float32") * PADDING_LOGIT
        return {"start_logits": logits[..., 0] + padding, "end_logits": logits[..., 1] + padding}
    if pooling == pooling_lib.CLS_POOLER and pooled_output is not None:
        x = pooled_output
    else:
        x = pooling_lib.pool(sequence_output, padding_mask, pooling, pooler_dense)  # [batch, hidden]
    if pre_classifier is not None:
        x = pre_classifier(x)
    logits = ops.cast(classifier(drop(x)), "float32")
    return {"logits": logits[:, 0] if head_type == REGRESSION else logits}


@keras.saving.register_keras_serializable(package="distil_tf")
class TaskModel(DistributedBuildMixin, keras.Model):
    """An `Encoder` with a task head, as Hugging Face builds them.

    Heads follow the reference implementations, per architecture:
    - classification / regression, BERT: pooled vector -> dropout -> Dense(K)
      (`BertForSequenceClassification`, whose pooled vector is the tanh pooler);
    - classification / regression, DistilBERT: pooled vector -> Dense(hidden,
      relu) -> dropout (0.2, `seq_classif_dropout`) -> Dense(K)
      (`DistilBertForSequenceClassification`, which pools with [CLS]);
    - span: dropout -> Dense(2) on every position (`*ForQuestionAnswering`).

    The pooled vector is the checkpoint's own pooling when it records one
    (`encoder.pooling`: "mean" for sentence-transformers models such as
    all-MiniLM-L6-v2, whose pooler was never trained), else the reference
    head's ("cls_pooler" for BERT, "cls" for DistilBERT); see
    `distil_tf.models.pooling`.

    Args:
        encoder: `Encoder` or its config dict.
        head_type: str. "classification", "regression" or "span".
        num_classes: int. Classes (classification only).
        task_name: str. Registry name, e.g. "glue/sst2" (recorded, shown by
            `distil-tf info`, checked by `evaluate`).
        label_names: list of str. Class names in label-id order.
        classifier_dropout: float. Dropout before the output layer; default
            0.1 for BERT and span heads, 0.2 for DistilBERT classifiers.
        pooling: str or None. "cls_pooler", "cls" or "mean" (classification
            and regression); None: the encoder's recorded pooling, else the
            architecture's reference head. Recorded resolved in the config.
        pre_classifier: bool or None. The Dense(hidden, relu) layer before
            the output layer; None: DistilBERT's reference head has one,
            BERT's has not. A student that inherits a BERT teacher's head
            (`student_init.student_task_model`) sets False.

    Call inputs: `token_ids`, `padding_mask` (+ `segment_ids`), `[batch, seq]`.

    Call outputs:
    - classification: `logits` `[batch, num_classes]`;
    - regression: `logits` `[batch]`;
    - span: `start_logits`, `end_logits` `[batch, seq]` (padding positions
      set to -1e4).
    """

    def __init__(
        self,
        encoder,
        head_type,
        num_classes=None,
        task_name=None,
        label_names=None,
        classifier_dropout=None,
        pooling=None,
        pre_classifier=None,
        **kwargs,
    ):
        if head_type not in HEAD_TYPES:
            raise ValueError(f"unknown head_type '{head_type}'; expected one of {HEAD_TYPES}")
        if head_type == CLASSIFICATION and (num_classes is None or num_classes < 2):
            raise ValueError(f"a classification head needs num_classes >= 2, got {num_classes}")
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if head_type == "span":
            pooling = None  # span heads read every position
        else:
            pooling = pooling or encoder.pooling or pooling_lib.default_head_pooling(encoder.architecture)
            pooling_lib.validate_pooling(pooling, encoder.architecture)
        super().__init__(dtype=encoder.dtype_policy, **kwargs)
        dtype = encoder.dtype_policy

        # === Layers ===
        self.encoder = encoder
        if encoder.architecture == "bert" and pooling != pooling_lib.CLS_POOLER:
            # A head that reads mean/[CLS] vectors or every position never
            # touches BERT's tanh pooler: frozen, it keeps its checkpoint
            # weights (still saved) and the optimizer neither tracks it nor
            # warns at every fit that it has no gradient.
            encoder.backbone.pooled_dense.trainable = False
        if classifier_dropout is None:
            classifier_dropout = 0.2 if (encoder.architecture == "distilbert" and head_type != "span") else 0.1
        if pre_classifier is None:
            pre_classifier = head_type != SPAN and encoder.architecture == "distilbert"
        self.pre_classifier = None
        if pre_classifier and head_type != SPAN:
            self.pre_classifier = keras.layers.Dense(
                encoder.hidden_dim, activation="relu", dtype=dtype, name="pre_classifier",
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        self.classifier_dropout_layer = keras.layers.Dropout(classifier_dropout, dtype=dtype, name="classifier_dropout")
        units = {CLASSIFICATION: num_classes, REGRESSION: 1, SPAN: 2}[head_type]
        # Logits in float32 under mixed precision (softmax / KL stability).
        self.classifier = keras.layers.Dense(
            units, dtype="float32" if dtype.name.startswith("mixed") else dtype, name="classifier",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )

        # === Config ===
        self.head_type = head_type
        self.num_classes = num_classes
        self.task_name = task_name
        self.label_names = list(label_names) if label_names is not None else None
        self.classifier_dropout = classifier_dropout
        self.pooling = pooling
        self.has_pre_classifier = self.pre_classifier is not None

    def call(self, inputs, training=None):
        encoded = self.encoder(inputs, training=training)
        return head_outputs(
            self.head_type, encoded["sequence_output"], inputs["padding_mask"], self.classifier,
            pooling=self.pooling, pooled_output=encoded.get("pooled_output"), pre_classifier=self.pre_classifier,
            dropout=self.classifier_dropout_layer, training=training,
        )

    def dummy_inputs(self, batch_size=1, sequence_length=4):
        return self.encoder.dummy_inputs(batch_size, sequence_length)

    @classmethod
    def from_encoder(cls, encoder, head_type, **kwargs):
        """A task model whose encoder copies `encoder`'s weights, minus any MLM head."""
        config = dict(encoder.get_config(), mlm_head=False)
        config.pop("name", None)
        fresh = Encoder.from_config(config)
        fresh(fresh.dummy_inputs())
        fresh.backbone.set_weights(encoder.backbone.get_weights())
        model = cls(fresh, head_type, **kwargs)
        model(model.dummy_inputs())
        return model

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "head_type": self.head_type,
            "num_classes": self.num_classes,
            "task_name": self.task_name,
            "label_names": self.label_names,
            "classifier_dropout": self.classifier_dropout,
            "pooling": self.pooling,
            "pre_classifier": self.has_pre_classifier,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
