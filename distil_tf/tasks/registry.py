"""Registry of downstream tasks: a task name -> its `TaskSpec` and its `Task` object.

The specs are defined once, in `distil_tf.data.task_specs` (the readers in
`data/` need them and never import `tasks/`); this module is their public
name for everything above `data/`. `build_task` adds the behaviour: the
task family's `Task` (`base_task.py`) holding the spec.

>>> from distil_tf.tasks import registry
>>> registry.get_task("glue/mrpc").label_names
('not_equivalent', 'equivalent')
>>> registry.build_task("squad/v2.0")
QuestionAnsweringTask('squad/v2.0')
"""

from distil_tf.data.task_specs import (  # noqa: F401
    CLASSIFICATION,
    GLUE_TASKS,
    HEAD_TYPES,
    REGRESSION,
    SPAN,
    TASKS,
    TaskSpec,
    get_task,
)


def build_task(name):
    """The `Task` of task `name`: a `SentencePredictionTask` (GLUE, IMDb) or a `QuestionAnsweringTask` (SQuAD).

    Raises:
        ValueError: unknown task name (one line listing the valid ones).
    """
    # Imported here: the Task modules pull in TensorFlow, and reading specs
    # (the CLI's argument checks, the data readers' callers) must stay cheap.
    from distil_tf.tasks.question_answering import QuestionAnsweringTask
    from distil_tf.tasks.sentence_prediction import SentencePredictionTask

    families = {"glue": SentencePredictionTask, "imdb": SentencePredictionTask, "squad": QuestionAnsweringTask}
    spec = get_task(name)
    return families[spec.family](spec)
