"""Tiny task models and batches shared by the task-distillation tests."""

import keras
import numpy as np
import tensorflow as tf

from distil_tf.models import Encoder, TaskModel


def tiny_task_model(head_type, num_layers=2, seed=0, hidden_dim=8, **kwargs):
    keras.utils.set_random_seed(seed)
    encoder = Encoder("bert", vocabulary_size=99, num_layers=num_layers, num_heads=2, hidden_dim=hidden_dim,
                      intermediate_dim=16, max_sequence_length=16, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, head_type, **kwargs)
    # Large logits, so the terms are far above float32 noise.
    kernel = model.classifier.kernel
    kernel.assign(np.random.default_rng(seed).normal(0, 3, kernel.shape).astype("float32"))
    return model


def task_batch(head_type, batch_size=4, length=6):
    rng = np.random.default_rng(0)
    features = {
        "token_ids": tf.constant(rng.integers(5, 99, (batch_size, length)), tf.int32),
        "segment_ids": tf.zeros((batch_size, length), tf.int32),
        # The last row has 3 real tokens and 3 padding positions.
        "padding_mask": tf.constant(np.r_[np.ones((batch_size - 1, length)), [[1] * 3 + [0] * (length - 3)]], tf.int32),
    }
    if head_type == "span":
        labels = {"start_logits": tf.constant([1, 2, 0, 1]), "end_logits": tf.constant([2, 3, 0, 2])}
    elif head_type == "regression":
        labels = {"logits": tf.constant([0.5, 4.0, 2.0, 1.0])}
    else:
        labels = {"logits": tf.constant([0, 1, 2, 1])}
    return features, labels


def masked_lm_batch(vocabulary_size, seed=0, batch=4, length=8):
    """A masked-LM distillation batch of random ids `[batch, length]`: rows 0 and 2 padded, no MLM targets."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocabulary_size, (batch, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[0, 3:] = 0
    mask[2, 6:] = 0
    return {"token_ids": ids * mask, "padding_mask": mask, "mlm_labels": np.full_like(ids, -100)}
