"""The one publisher: a directory appears whole or not at all, and is never replaced unasked."""

import pytest

from distil_tf.atomic_files import atomic_directory
from distil_tf.export.publish import publish_directory


def test_published_whole_and_nothing_left_on_failure(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "weights").write_text("1")
        assert not target.exists()
    assert (target / "weights").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "broken") as staging:
            (staging / "half").write_text("x")
            raise RuntimeError("interrupted")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_overwrite_replaces_and_refusal_keeps(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True) as staging:
        (staging / "new").write_text("new")
    assert [path.name for path in target.iterdir()] == ["new"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_a_version_that_appears_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "3"
    with pytest.raises(ValueError, match="appeared while it was being written"):
        with publish_directory(target) as staging:
            (staging / "saved_model.pb").write_text("ours")
            target.mkdir()
            (target / "saved_model.pb").write_text("theirs")
    assert (target / "saved_model.pb").read_text() == "theirs"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["3"]
