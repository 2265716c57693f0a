"""Numbered version directories, published atomically.

TF Serving polls `base_path` (every second by default) and loads any
directory whose name is an integer. A version copied or written in place can
be seen half-written (tensorflow/tensorflow#20635), so a version is written
into a hidden temporary directory beside it (a non-numeric name, which the
server ignores) and renamed into place in one `os.rename`
(`distil_tf.atomic_files`, the one publisher of every output).
"""

import pathlib

from distil_tf.atomic_files import atomic_directory


def existing_versions(base_path):
    """Sorted integer version numbers under `base_path` (non-numeric names ignored)."""
    base_path = pathlib.Path(base_path)
    if not base_path.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in base_path.iterdir()
        if child.name.isdigit() and child.is_dir()
    )


def next_version(base_path):
    """One more than the highest existing version; 1 for an empty or new `base_path`."""
    versions = existing_versions(base_path)
    return versions[-1] + 1 if versions else 1


def resolve_version(base_path, version=None):
    """The version directory to write: `version`, or the next free one.

    Raises:
        ValueError: `version` is not a non-negative integer or already exists.
    """
    base_path = pathlib.Path(base_path)
    if version is None:
        version = next_version(base_path)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    target = base_path / str(version)
    if target.exists():
        raise ValueError(
            f"version {version} already exists at {target}; pick another --version "
            f"(next free: {next_version(base_path)}) or remove it"
        )
    return version, target


def publish_directory(target):
    """Yield a temporary directory beside `target` that becomes `target` on success.

    `distil_tf.atomic_files.atomic_directory` without overwrite: on an
    exception nothing appears at `target`, and an existing version is never
    replaced.
    """
    return atomic_directory(target, overwrite=False)
