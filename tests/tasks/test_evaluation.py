"""Task/model checks of evaluation, and the printed table."""

import pytest

from distil_tf.models import Encoder, TaskModel
from distil_tf.tasks import registry
from distil_tf.tasks.evaluation import check_model_matches_task


def _encoder():
    return Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                   intermediate_dim=16, mlm_head=False)


@pytest.mark.parametrize(
    "head, kwargs, task, message",
    [
        ("classification", {"num_classes": 2}, "glue/mnli", "predicts 2 classes but task 'glue/mnli' has 3"),
        ("span", {}, "glue/sst2", "has a span head but task 'glue/sst2' needs a classification head"),
        ("classification", {"num_classes": 2, "task_name": "glue/sst2"}, "glue/cola", "fine-tuned for 'glue/sst2'"),
        ("regression", {}, "squad/v1.1", "needs a span head"),
    ],
)
def test_mismatched_heads_are_refused(head, kwargs, task, message):
    model = TaskModel.from_encoder(_encoder(), head, **kwargs)
    with pytest.raises(ValueError, match=message):
        check_model_matches_task(model, registry.get_task(task), "m")


def test_matching_model_passes_and_encoder_is_refused():
    encoder = _encoder()
    check_model_matches_task(TaskModel.from_encoder(encoder, "regression", task_name="glue/stsb"),
                             registry.get_task("glue/stsb"), "m")
    with pytest.raises(ValueError, match="encoder without a task head: fine-tune it first"):
        check_model_matches_task(encoder, registry.get_task("glue/stsb"), "m")
