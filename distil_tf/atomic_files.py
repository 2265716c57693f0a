"""Directories that appear whole or not at all: the one publisher of models, exports and run outputs.

Everything distil-tf writes that another process may read while it is
written (a model directory `load_model` opens, a SavedModel version TF
Serving polls every second, tensorflow/tensorflow#20635) is written into a
hidden temporary directory beside its target, then renamed into place with
one `os.rename`, atomic on a POSIX file system when both names are on it.
A hidden name (`.NAME.tmp-XXXX`) is not an integer, so TF Serving ignores
it while it is written.
"""

import contextlib
import os
import pathlib
import shutil
import tempfile


def _holds_something(path):
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def check_output_available(target, overwrite=False):
    """Raise when `target` holds something and `overwrite` is off."""
    target = pathlib.Path(target)
    if not overwrite and _holds_something(target):
        raise ValueError(f"{target} already exists and is not empty (choose another --out)")


@contextlib.contextmanager
def atomic_directory(target, overwrite=False):
    """Yield a temporary directory that becomes `target` on success.

    On an exception the temporary directory is removed and `target` is left
    as it was. With `overwrite`, an existing target is moved aside and only
    deleted once the new directory is in place; without, a target that holds
    something (before, or by the time the writing ends) is never replaced.

    Args:
        target: path of the directory to publish.
        overwrite: bool. Replace an existing, non-empty `target`.
    """
    target = pathlib.Path(target).absolute()
    check_output_available(target, overwrite)
    # An empty directory the user made for the output may be replaced; anything
    # that appears meanwhile (another export of the same version) may not.
    replaceable = overwrite or target.is_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        if target.exists() and not (replaceable and (overwrite or not _holds_something(target))):
            raise ValueError(f"{target} appeared while it was being written; not replacing it")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if target.exists():
        backup = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, backup)
    os.rename(staging, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
