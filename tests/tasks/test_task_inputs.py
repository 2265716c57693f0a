"""Task data: where it is read from, splits, subsets, batches with dict labels."""

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.data.glue import TextExample
from distil_tf.tasks import registry, task_inputs
from distil_tf.text import load_tokenizer


def _write_sst2(glue_dir, rows=(("the movie was good", 1), ("a bad film", 0))):
    folder = glue_dir / "SST-2"
    folder.mkdir(parents=True)
    body = "".join(f"{text}\t{label}\n" for text, label in rows)
    (folder / "train.tsv").write_text("sentence\tlabel\n" + body)
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + body)


def test_local_dir_then_root_dir_then_environment(tmp_path, monkeypatch):
    spec = registry.get_task("glue/sst2")
    _write_sst2(tmp_path / "glue")
    assert task_inputs.resolve_source(spec, tmp_path / "glue").directory == str(tmp_path / "glue")
    # A root data dir holding glue/ is accepted too.
    assert task_inputs.resolve_source(spec, tmp_path).directory == str(tmp_path / "glue")
    monkeypatch.setenv("DISTIL_TF_DATA", str(tmp_path))
    assert task_inputs.resolve_source(spec).directory == str(tmp_path / "glue")
    monkeypatch.delenv("DISTIL_TF_DATA")
    assert task_inputs.resolve_source(spec).directory is None
    examples = task_inputs.read_split(spec, "dev", task_inputs.resolve_source(spec, tmp_path))
    assert [example.label for example in examples] == [1, 0]


def test_missing_data_dir_and_file(tmp_path):
    spec = registry.get_task("glue/sst2")
    with pytest.raises(ValueError, match="does not exist"):
        task_inputs.resolve_source(spec, tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="SST-2/train.tsv"):
        task_inputs.read_split(spec, "train", task_inputs.resolve_source(spec, tmp_path))


def test_evaluation_splits():
    local, tfds = task_inputs.DataSource("/data"), task_inputs.DataSource(None)
    mnli = registry.get_task("glue/mnli")
    assert task_inputs.evaluation_splits(mnli, local, "dev") == ["validation_matched", "validation_mismatched"]
    assert task_inputs.evaluation_splits(mnli, local, "dev_mismatched") == ["validation_mismatched"]
    # The local IMDb folder only has a validation sample; tfds has the test set.
    assert task_inputs.evaluation_splits(registry.get_task("imdb"), local) == ["validation"]
    assert task_inputs.evaluation_splits(registry.get_task("imdb"), tfds) == ["test"]


def test_subset():
    assert task_inputs.subset([1, 2, 3, 4], limit=2, skip=1) == [2, 3]
    with pytest.raises(ValueError, match="no examples left"):
        task_inputs.subset([1, 2], skip=2)


def test_trim_to_longest_rounds_up_to_16():
    mask = np.zeros((2, 64), "int32")
    mask[0, :17] = 1
    features, labels = task_inputs.trim_to_longest({"padding_mask": tf.constant(mask)}, tf.constant([0, 1]))
    assert features["padding_mask"].shape == (2, 32)


def test_text_batches_have_dict_labels_and_trimmed_length(tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    spec = registry.get_task("glue/sst2")
    examples = [TextExample("a", "the movie was good", None, 1), TextExample("b", "bad", None, 0)]
    features, labels = next(iter(task_inputs.text_batches(spec, examples, tokenizer, 64, 2)))
    assert features["token_ids"].shape == (2, 16)
    np.testing.assert_array_equal(labels["logits"], [1, 0])
    make = registry.build_task(spec.name).train_dataset_factory(examples, tokenizer, 64, seed=1, trim=False)
    features, _ = next(iter(make(None, 2)))
    assert features["token_ids"].shape == (2, 64)


def test_imdb_reads_every_local_split_it_finds(tmp_path):
    spec = registry.get_task("imdb")
    source = task_inputs.DataSource(str(tmp_path))
    header = "text\tlabel\n"
    (tmp_path / "dev.tsv").write_text(header + "a fine film<br />truly\t1\n")
    assert task_inputs.local_splits(spec, source) == ["validation"]
    # Only dev.tsv: the test split it lacks falls back to validation.
    assert task_inputs.evaluation_splits(spec, source) == ["validation"]
    with pytest.raises(FileNotFoundError) as error:
        task_inputs.read_split(spec, "train", source)
    assert str(error.value) == (f"{tmp_path / 'train.tsv'}: file not found; the imdb folder holds "
                                "train.tsv, dev.tsv, test.tsv (found: dev.tsv)")
    (tmp_path / "train.tsv").write_text(header + "dull\t0\ngreat\t1\n")
    (tmp_path / "test.tsv").write_text(header + "boring\t0\nfun\t1\nok\t1\n")
    assert task_inputs.local_splits(spec, source) == ["train", "validation", "test"]
    assert task_inputs.evaluation_splits(spec, source) == ["test"]
    assert [e.label for e in task_inputs.read_split(spec, "train", source)] == [0, 1]
    assert [e.label for e in task_inputs.read_split(spec, "test", source)] == [0, 1, 1]
    assert [e.label for e in task_inputs.read_split(spec, "dev", source)] == [1]


def test_squad_names_the_expected_files(tmp_path):
    spec = registry.get_task("squad/v1.1")
    with pytest.raises(FileNotFoundError, match=r"train-v1.1.json: file not found; the squad/v1.1 folder "
                                                r"holds train-v1.1.json, dev-v1.1.json \(found: none of them\)"):
        task_inputs.read_split(spec, "train", task_inputs.DataSource(str(tmp_path)))


def test_environment_without_the_family_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTIL_TF_DATA", str(tmp_path))
    with pytest.raises(ValueError) as error:
        task_inputs.resolve_source(registry.get_task("glue/sst2"))
    assert str(error.value) == (f"$DISTIL_TF_DATA={tmp_path} has no glue/ folder (expected "
                                f"{tmp_path / 'glue' / 'SST-2/train.tsv'}); fix it, pass --data-dir, "
                                "or unset it to read tfds")


def _rows_of_lengths(lengths, width=64):
    """A dataset of one group: row i holds ids i+1 over `lengths[i]` tokens, label i."""
    ids = np.zeros([len(lengths), width], np.int32)
    for row, length in enumerate(lengths):
        ids[row, :length] = row + 1
    features = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": (ids > 0).astype(np.int32)}
    labels = {"logits": np.arange(len(lengths), dtype=np.int32),
              "teacher_outputs": {"logits": np.arange(len(lengths), dtype=np.float32)[:, None] * [1.0, -1.0]}}
    return tf.data.Dataset.from_tensors((features, labels))


def _grouped(lengths, seed, **kwargs):
    dataset = task_inputs.group_by_length(_rows_of_lengths(lengths), batch_size=5, seed=seed, group_batches=4,
                                          **kwargs)
    return [(f, l) for f, l in dataset.map(task_inputs.trim_to_longest)]


def test_group_by_length_keeps_every_row_with_its_labels_and_pads_less():
    lengths = np.random.default_rng(0).integers(1, 64, size=20)
    batches = _grouped(lengths, seed=3)
    assert [int(f["token_ids"].shape[0]) for f, _ in batches] == [5, 5, 5, 5]
    rows = []
    for features, labels in batches:
        for ids, mask, label, teacher in zip(features["token_ids"].numpy(), features["padding_mask"].numpy(),
                                             labels["logits"].numpy(), labels["teacher_outputs"]["logits"].numpy()):
            # Each row's ids, length and both labels still belong together.
            assert set(ids[mask == 1]) == {label + 1} and mask.sum() == lengths[label]
            np.testing.assert_array_equal(teacher, [label, -label])
            rows.append(int(label))
    assert sorted(rows) == list(range(20))
    grouped_width = sum(int(f["token_ids"].shape[1]) for f, _ in batches)
    plain = task_inputs.trim_to_longest
    plain_width = 0
    for start in range(0, 20, 5):  # the same rows batched in their original order
        features, labels = next(iter(_rows_of_lengths(lengths[start:start + 5])))
        plain_width += int(plain(features, labels)[0]["token_ids"].shape[1])
    assert grouped_width < plain_width
    # Batches come out sorted groups, in an order fixed by the seed.
    assert [l["logits"].numpy().tolist() for _, l in _grouped(lengths, seed=3)] == \
        [l["logits"].numpy().tolist() for _, l in batches]
    orders = {tuple(tuple(l["logits"].numpy()) for _, l in _grouped(lengths, seed=s)) for s in range(6)}
    assert len(orders) > 1


def test_group_by_length_drops_only_the_partial_batch():
    lengths = list(range(1, 18))
    kept = _grouped(lengths, seed=1, drop_remainder=True)
    assert [int(f["token_ids"].shape[0]) for f, _ in kept] == [5, 5, 5]
    assert len(_grouped(lengths, seed=1)) == 4


def test_grouped_text_batches_hold_the_same_examples(tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    spec = registry.get_task("glue/sst2")
    words = ["the movie was good", "a bad film", "very fun !", "boring", "it was great , the film was fun"]
    examples = [TextExample(f"t:{i}", " ".join(words[: 1 + i % 5]), None, i % 2) for i in range(23)]

    def rows(dataset):
        return sorted((tuple(f[f > 0]), int(y)) for features, labels in dataset
                      for f, y in zip(features["token_ids"].numpy(), labels["logits"].numpy()))

    grouped = task_inputs.text_batches(spec, examples, tokenizer, 64, 4, shuffle=True, seed=2,
                                       group_by_length_batches=3)
    assert rows(grouped) == rows(task_inputs.text_batches(spec, examples, tokenizer, 64, 4))
    assert max(int(f["token_ids"].shape[0]) for f, _ in grouped) == 4
