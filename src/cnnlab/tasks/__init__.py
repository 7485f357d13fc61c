"""Tasks: what a model predicts, how it is scored, shown and augmented at test time.

Importing this package registers every task; ``get_task(name)`` returns one.
"""

from cnnlab.tasks import classify, detect, generate, keypoints, multilabel, segment
from cnnlab.tasks.base import Task, as_targets, get_task, list_tasks, register_task

__all__ = [
    "Task",
    "as_targets",
    "classify",
    "detect",
    "generate",
    "get_task",
    "keypoints",
    "list_tasks",
    "multilabel",
    "register_task",
    "segment",
]
