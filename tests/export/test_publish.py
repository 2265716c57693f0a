"""Version numbering and atomic publishing."""

import pytest

from distil_tf.export import publish


def test_next_version_ignores_non_numeric_names(tmp_path):
    assert publish.next_version(tmp_path / "missing") == 1
    for name in ("1", "7", "latest", ".7.tmp-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert publish.existing_versions(tmp_path) == [1, 7]
    assert publish.next_version(tmp_path) == 8


def test_existing_or_bad_version_is_refused(tmp_path):
    (tmp_path / "2").mkdir()
    with pytest.raises(ValueError, match="version 2 already exists.*next free: 3"):
        publish.resolve_version(tmp_path, 2)
    for bad in (-1, "3", 1.5, True):
        with pytest.raises(ValueError, match="non-negative integer"):
            publish.resolve_version(tmp_path, bad)
    assert publish.resolve_version(tmp_path, 5) == (5, tmp_path / "5")


def test_publish_renames_into_place(tmp_path):
    with publish.publish_directory(tmp_path / "base" / "1") as staging:
        assert staging.parent == tmp_path / "base" and not staging.name.isdigit()
        (staging / "saved_model.pb").write_bytes(b"x")
    assert (tmp_path / "base" / "1" / "saved_model.pb").read_bytes() == b"x"
    assert [path.name for path in (tmp_path / "base").iterdir()] == ["1"]


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with publish.publish_directory(tmp_path / "1") as staging:
            (staging / "saved_model.pb").write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_version_appearing_meanwhile_is_not_replaced(tmp_path):
    with pytest.raises(ValueError, match="appeared while"):
        with publish.publish_directory(tmp_path / "1"):
            (tmp_path / "1").mkdir()
    assert [path.name for path in tmp_path.iterdir()] == ["1"]
