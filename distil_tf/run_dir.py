"""Run directories are models: one rule that maps a run to its final model.

`finetune`, `distill` and `distill-task` write into a run directory
(`--out`): the resolved config, checkpoints, TensorBoard logs, the final
model in a subfolder and `metrics.json`. Each also writes `run.json`, the
marker this module reads:

    {"distil_tf_run": {"format_version": 1, "command": "finetune",
                       "status": "running" | "finished",
                       "final_model": null | "model"}}

`final_model` is set the moment the final model is saved (before the dev
evaluation, so a failing evaluation never hides a trained model) and
`status` becomes "finished" once `metrics.json` is written. Wherever a
command or `distil_tf.load_model` takes a model, `resolve_model_path` turns
a run directory into `RUN/<final_model>`; any other path is returned as is.

This module imports nothing from distil_tf, so that `text/`, `models/` and
`training/` can all use it without an import cycle.
"""

import json
import os
import pathlib
import tempfile

RUN_FILE = "run.json"
FORMAT_VERSION = 1


class RunNotFinishedError(ValueError):
    """The run directory has no final model yet."""


def is_run_directory(path):
    return (pathlib.Path(path) / RUN_FILE).is_file()


def read_run(path):
    """The `distil_tf_run` section of `path/run.json`."""
    marker = pathlib.Path(path) / RUN_FILE
    try:
        return json.loads(marker.read_text())["distil_tf_run"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{marker} is not a distil-tf run marker ({type(error).__name__}: {error})") from None


def _write(run_dir, record):
    """Replace run.json atomically: a reader never sees half a file."""
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{RUN_FILE}.", dir=run_dir)
    with os.fdopen(handle, "w") as file:
        file.write(json.dumps({"distil_tf_run": record}, indent=2) + "\n")
    os.replace(staging, run_dir / RUN_FILE)


def mark_run_started(run_dir, command):
    """Record that `command` is writing into `run_dir` and has no final model yet."""
    _write(run_dir, {"format_version": FORMAT_VERSION, "command": command, "status": "running",
                     "final_model": None})


def mark_model_saved(run_dir, model_dir):
    """Record `model_dir` (inside `run_dir`) as the run's final model."""
    run_dir = pathlib.Path(run_dir)
    record = read_run(run_dir) if is_run_directory(run_dir) else {"format_version": FORMAT_VERSION}
    record["final_model"] = os.path.relpath(pathlib.Path(model_dir).absolute(), run_dir.absolute())
    _write(run_dir, record)


def mark_run_finished(run_dir):
    run_dir = pathlib.Path(run_dir)
    record = read_run(run_dir)
    record["status"] = "finished"
    _write(run_dir, record)


def final_model_path(run_dir):
    """`RUN/<final_model>` of a run directory, or a one-line error saying why there is none."""
    run_dir = pathlib.Path(run_dir)
    record = read_run(run_dir)
    command = record.get("command", "the run")
    if not record.get("final_model"):
        raise RunNotFinishedError(
            f"{run_dir} is a {command} run in progress (or stopped) with no final model yet: "
            "resume it with the same command"
        )
    model = run_dir / record["final_model"]
    if not (model / "config.json").is_file():
        raise ValueError(
            f"{run_dir}: the run's final model {model} is missing (deleted or moved?); "
            "rerun the same command to write it again"
        )
    return model


def resolve_model_path(path):
    """A run directory's final model; any other path unchanged (same type as given)."""
    if path is None or not is_run_directory(path):
        return path
    resolved = final_model_path(path)
    return str(resolved) if isinstance(path, str) else resolved
