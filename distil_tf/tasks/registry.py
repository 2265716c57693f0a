"""Registry of downstream tasks: a task name -> its `TaskSpec`.

The specs are defined once, in `distil_tf.data.task_specs` (the readers in
`data/` need them and never import `tasks/`); this module is their public
name for everything above `data/`.

>>> from distil_tf.tasks import registry
>>> registry.get_task("glue/mrpc").label_names
('not_equivalent', 'equivalent')
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
