"""Task objects: the family per task name, their models, losses and training batches."""

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.data import squad
from distil_tf.data.glue import TextExample
from distil_tf.models import Encoder, TaskModel
from distil_tf.tasks import registry
from distil_tf.tasks.question_answering import QuestionAnsweringTask
from distil_tf.tasks.sentence_prediction import SentencePredictionTask
from distil_tf.text import load_tokenizer


def _encoder():
    encoder = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, mlm_head=True)
    encoder(encoder.dummy_inputs())
    return encoder


def _cross_entropy(labels, logits):
    """Mean of -log softmax(logits)[label], by hand in float64."""
    logits = np.asarray(logits, "float64")
    log_softmax = logits - logits.max(axis=-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_softmax[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("name, family, head_type", [
    ("glue/sst2", SentencePredictionTask, "classification"),
    ("glue/mrpc", SentencePredictionTask, "classification"),
    ("glue/stsb", SentencePredictionTask, "regression"),
    ("imdb", SentencePredictionTask, "classification"),
    ("squad/v1.1", QuestionAnsweringTask, "span"),
    ("squad/v2.0", QuestionAnsweringTask, "span"),
])
def test_registry_builds_the_task_family_of_each_name(name, family, head_type):
    task = registry.build_task(name)
    assert type(task) is family
    assert task.spec is registry.get_task(name)
    assert (task.name, task.head_type) == (name, head_type)
    # Only SQuAD featurizes from the model's vocab.txt.
    assert task.needs_vocab_file == (family is QuestionAnsweringTask)
    assert repr(task) == f"{family.__name__}({name!r})"


def test_question_answering_knows_its_squad_version():
    assert registry.build_task("squad/v1.1").version == "1.1"
    assert registry.build_task("squad/v2.0").version == "2.0"


def test_unknown_task_name_is_a_one_line_value_error():
    with pytest.raises(ValueError, match=r"^unknown task 'glue/foo'; valid tasks: .*glue/cola") as error:
        registry.build_task("glue/foo")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, head_type, num_classes", [
    ("glue/sst2", "classification", 2),
    ("glue/mnli", "classification", 3),
    ("glue/stsb", "regression", None),
    ("imdb", "classification", 2),
    ("squad/v2.0", "span", None),
])
def test_build_model_gives_the_task_head(name, head_type, num_classes):
    task = registry.build_task(name)
    assert task.num_classes() == num_classes
    model = task.build_model(_encoder())
    assert isinstance(model, TaskModel)
    assert (model.head_type, model.num_classes, model.task_name) == (head_type, num_classes, name)
    assert not model.encoder.has_mlm_head
    # A model already trained for the task keeps its head.
    assert task.build_model(model) is model


def test_build_model_replaces_another_tasks_head():
    encoder = _encoder()
    mnli = registry.build_task("glue/mnli").build_model(encoder)
    squad_model = registry.build_task("squad/v1.1").build_model(mnli)
    assert squad_model is not mnli
    # The new head sits on the same (trained) encoder weights.
    assert len(squad_model.encoder.get_weights()) == len(mnli.encoder.get_weights())
    for kept, trained in zip(squad_model.encoder.get_weights(), mnli.encoder.get_weights()):
        np.testing.assert_array_equal(kept, trained)
    assert (squad_model.head_type, squad_model.task_name) == ("span", "squad/v1.1")


def test_classification_loss_is_the_hand_computed_cross_entropy():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]], "float32")
    labels = np.array([0, 2])
    loss = registry.build_task("glue/mnli").supervised_loss({"logits": labels}, {"logits": logits})
    assert float(loss) == pytest.approx(_cross_entropy(labels, logits), rel=1e-6)
    assert float(loss) == pytest.approx((0.2414 + 0.0949) / 2, abs=1e-4)


def test_regression_loss_is_the_hand_computed_mean_squared_error():
    loss = registry.build_task("glue/stsb").supervised_loss(
        {"logits": np.array([1.0, 3.0, 5.0], "float32")}, {"logits": np.array([2.0, 3.5, 5.0], "float32")}
    )
    assert float(loss) == pytest.approx((1.0 + 0.25 + 0.0) / 3, rel=1e-6)


def test_span_loss_is_the_mean_of_the_hand_computed_start_and_end_cross_entropies():
    start = np.array([[3.0, 0.0, -1.0], [0.0, 1.0, 0.0]], "float32")
    end = np.array([[0.0, 0.0, 4.0], [2.0, 0.0, 0.0]], "float32")
    starts, ends = np.array([0, 1]), np.array([2, 2])
    loss = registry.build_task("squad/v1.1").supervised_loss(
        {"start_logits": starts, "end_logits": ends}, {"start_logits": start, "end_logits": end}
    )
    expected = 0.5 * (_cross_entropy(starts, start) + _cross_entropy(ends, end))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name, keys", [
    ("glue/sst2", ("logits",)), ("glue/stsb", ("logits",)), ("squad/v1.1", ("start_logits", "end_logits")),
])
def test_compile_arguments_score_the_head_outputs(name, keys):
    assert tuple(registry.build_task(name).compile_arguments()["loss"]) == keys


def test_sentence_prediction_train_factory_yields_features_and_dict_labels(tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    task = registry.build_task("glue/sst2")
    examples = [TextExample("a", "the movie was good", None, 1), TextExample("b", "bad", None, 0),
                TextExample("c", "a very boring film", None, 0)]
    items = task.training_items(examples, tokenizer, None, 32)
    assert items == examples
    make = task.train_dataset_factory(items, tokenizer, 32, seed=1, trim=False)
    batches = list(make(None, 2))
    assert [int(batch[0]["token_ids"].shape[0]) for batch in batches] == [2, 1]
    features, labels = batches[0]
    assert set(features) == {"token_ids", "segment_ids", "padding_mask"}
    for value in features.values():
        assert value.shape == (2, 32) and value.dtype == tf.int32
    assert set(labels) == {"logits"} and labels["logits"].shape == (2,)
    # One shuffled pass over every example.
    seen = sorted(int(label) for _, batch_labels in batches for label in batch_labels["logits"])
    assert seen == [0, 0, 1]
    # Trimmed: the longest row (6 tokens with [CLS] and [SEP]) rounds up to 16.
    trimmed, _ = next(iter(task.train_dataset_factory(items, tokenizer, 32, seed=1)(None, 3)))
    assert trimmed["token_ids"].shape == (3, 16)
    # Static shapes for XLA: the last, short batch is dropped.
    static = list(task.train_dataset_factory(items, tokenizer, 32, seed=1, trim=False, drop_remainder=True)(None, 2))
    assert len(static) == 1


def test_sentence_prediction_pairs_and_scores_reach_the_batches(tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    task = registry.build_task("glue/stsb")
    examples = [TextExample("a", "the movie", "a film", 4.5), TextExample("b", "good", "bad", 0.5)]
    features, labels = next(iter(task.train_dataset_factory(examples, tokenizer, 16, seed=0, trim=False)(None, 2)))
    # [CLS] the movie [SEP] a film [SEP]: the second text has segment id 1.
    assert sorted(np.asarray(features["segment_ids"]).sum(axis=1).tolist()) == [2, 3]
    assert labels["logits"].dtype == tf.float32
    np.testing.assert_allclose(sorted(labels["logits"].numpy()), [0.5, 4.5])


def test_train_factory_shards_per_input_pipeline(tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    task = registry.build_task("glue/sst2")
    examples = [TextExample(str(index), "good", None, index % 2) for index in range(4)]
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    batches = list(task.train_dataset_factory(examples, tokenizer, 16, seed=0)(context, 4))
    # Pipeline 1 of 2 reads examples 1 and 3, both labelled 1.
    assert [batch_labels["logits"].numpy().tolist() for _, batch_labels in batches] == [[1, 1]]


def test_question_answering_trains_on_windows_labelled_with_answer_positions(tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    task = registry.build_task("squad/v1.1")
    context = "the movie was good and the film was fun"
    question = squad.SquadQuestion("q", "was the movie good ?", context, (("fun", context.index("fun")),), False)
    windows = task.training_items([question], tokenizer, tiny_vocab_file, 32, max_query_length=8)
    assert task.training_windows(windows) == len(windows) >= 1
    features, labels = next(iter(task.train_dataset_factory(windows, tokenizer, 32, seed=0)(None, 8)))
    assert features["token_ids"].shape == (len(windows), 32)
    assert set(labels) == {"start_logits", "end_logits"}
    # "fun" is one WordPiece: the answer starts and ends on it.
    token_ids = features["token_ids"].numpy()[0]
    start, end = int(labels["start_logits"][0]), int(labels["end_logits"][0])
    assert start == end and tokenizer.get_vocabulary()[token_ids[start]] == "fun"
