"""SQuAD v1.1 / v2.0: readers (official JSON or tfds), windowed features, tf.data.

Features are built by tf-models-official's `squad_lib.convert_examples_to_features`
(BERT's sliding windows: `max_seq_length` 384, `doc_stride` 128,
`max_query_length` 64, `[CLS] question [SEP] context window [SEP]`, segment
ids 0/1), with its `FullTokenizer` over the WordPiece vocabulary. Each
`squad_lib.InputFeatures` keeps what n-best decoding needs: `example_index`,
`tokens`, `token_to_orig_map`, `token_is_max_context`
(see `distil_tf.tasks.squad_decoding`).

Why the questions are not read with `squad_lib.read_squad_examples`: it only
reads a file (tfds records need the same path), it refuses questions with
more than one gold answer when positions are wanted (every dev question has
several), and it logs and silently skips an answer whose text is not where
its `answer_start` says. Here the same whitespace split is done in
`to_squad_examples`, and a misplaced answer is a `ValueError` naming the
question id (or, with `on_bad_answer="skip"`, dropped and counted in a
warning).

Example:

>>> questions = read_squad_json("dev-v1.1.json")
>>> examples = to_squad_examples(questions)
>>> features = convert_to_features(examples, "vocab.txt")
>>> dataset = make_squad_dataset(features, batch_size=32)
"""

import dataclasses
import json
from typing import Optional, Sequence

import tensorflow as tf
from absl import logging

RAISE = "raise"
SKIP = "skip"

# The BERT recipe that the DistilBERT paper follows (distilbert_recipe.md).
MAX_SEQ_LENGTH = 384
DOC_STRIDE = 128
MAX_QUERY_LENGTH = 64


@dataclasses.dataclass(frozen=True)
class SquadQuestion:
    """One SQuAD question with its context and gold answers.

    Args:
        qas_id: str. The question id.
        question_text: str.
        context: str. The paragraph.
        answers: tuple of `(text, answer_start)` pairs, `answer_start` a
            character offset into `context`. Empty for an unanswerable v2.0
            question.
        is_impossible: bool. v2.0: the question has no answer in `context`.
        title: str. The article title.
    """

    qas_id: str
    question_text: str
    context: str
    answers: tuple
    is_impossible: bool = False
    title: str = ""


def _check_answers(qas_id, context, answers, on_bad_answer, where, dropped):
    """The answers whose text sits at its `answer_start` in `context`."""
    kept = []
    for text, answer_start in answers:
        found = context[answer_start : answer_start + len(text)]
        if found == text and answer_start >= 0:
            kept.append((text, answer_start))
            continue
        if on_bad_answer == RAISE:
            raise ValueError(
                f"{where}: question '{qas_id}': answer {text!r:.60} is not at "
                f"answer_start {answer_start} of its context (found {found!r:.60}); "
                "fix the offset or pass on_bad_answer='skip'"
            )
        dropped.append(qas_id)
    return tuple(kept)


def _check_policy(on_bad_answer):
    if on_bad_answer not in (RAISE, SKIP):
        raise ValueError(f"on_bad_answer must be '{RAISE}' or '{SKIP}', got '{on_bad_answer}'")


def _warn_dropped(where, dropped):
    if dropped:
        logging.warning(
            "%s: dropped %d answer(s) whose text is not at their answer_start "
            "(questions %s)", where, len(dropped), ", ".join(sorted(set(dropped))[:10])
        )


def read_squad_json(path: str, on_bad_answer: str = RAISE) -> list:
    """Reads the questions of an official SQuAD v1.1 or v2.0 JSON file.

    Args:
        path: str. E.g. `dev-v1.1.json`.
        on_bad_answer: str. `"raise"` (default): an answer whose text is not
            at its `answer_start` raises. `"skip"`: drop it, log the count.

    Returns:
        A list of `SquadQuestion`, in file order.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: not SQuAD JSON, a misplaced answer (question id named),
            or no questions.
    """
    _check_policy(on_bad_answer)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: file not found; pass the official SQuAD JSON or use tfds")
    with tf.io.gfile.GFile(path, "r") as file:
        try:
            data = json.load(file)["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path}: not a SQuAD JSON file with a 'data' list ({error})"
            ) from None
    questions, dropped = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = tuple(
                    (answer["text"], int(answer["answer_start"])) for answer in qa["answers"]
                )
                answers = _check_answers(qa["id"], context, answers, on_bad_answer, path, dropped)
                questions.append(
                    SquadQuestion(
                        qas_id=qa["id"],
                        question_text=qa["question"],
                        context=context,
                        answers=answers,
                        is_impossible=bool(qa.get("is_impossible", False)),
                        title=article.get("title", ""),
                    )
                )
    _warn_dropped(path, dropped)
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


def read_squad_tfds(version: str, split: str, on_bad_answer: str = RAISE) -> list:
    """Reads tfds `squad/v1.1` or `squad/v2.0` (`"train"` or `"validation"`).

    Args:
        version: str. `"1.1"` or `"2.0"`.
        split: str. `"train"` or `"validation"`.
        on_bad_answer: str. As in `read_squad_json`.

    Returns:
        A list of `SquadQuestion`, in tfds order.
    """
    import tensorflow_datasets as tfds

    from distil_tf.data import task_specs as registry

    _check_policy(on_bad_answer)
    spec = registry.get_task(f"squad/v{version}")
    tfds_split = spec.tfds_split(split)
    where = f"tfds {spec.tfds_name}[{tfds_split}]"
    questions, dropped = [], []
    for record in tfds.load(spec.tfds_name, split=tfds_split).as_numpy_iterator():
        qas_id = record["id"].decode("utf-8")
        context = record["context"].decode("utf-8")
        answers = tuple(
            (text.decode("utf-8"), int(start))
            for text, start in zip(record["answers"]["text"], record["answers"]["answer_start"])
        )
        questions.append(
            SquadQuestion(
                qas_id=qas_id,
                question_text=record["question"].decode("utf-8"),
                context=context,
                answers=_check_answers(qas_id, context, answers, on_bad_answer, where, dropped),
                is_impossible=bool(record.get("is_impossible", False)),
                title=record["title"].decode("utf-8"),
            )
        )
    _warn_dropped(where, dropped)
    if not questions:
        raise ValueError(f"{where}: no questions")
    return questions


def to_official_dataset(questions: Sequence[SquadQuestion]) -> list:
    """The `data` list of the official JSON, as the official evaluation wants.

    One article per question: the evaluation only walks articles, paragraphs,
    question ids and answer texts, so the grouping does not change a score.
    """
    return [
        {
            "title": question.title,
            "paragraphs": [
                {
                    "context": question.context,
                    "qas": [
                        {
                            "id": question.qas_id,
                            "question": question.question_text,
                            "answers": [
                                {"text": text, "answer_start": start}
                                for text, start in question.answers
                            ],
                            "is_impossible": question.is_impossible,
                        }
                    ],
                }
            ],
        }
        for question in questions
    ]


def _is_whitespace(character):
    # The same set as squad_lib.read_squad_examples, so that word offsets
    # match what its featurizer and decoder expect.
    return character in " \t\r\n" or ord(character) == 0x202F


def _split_context(context):
    """Whitespace words of `context` and the word index of every character."""
    doc_tokens, char_to_word_offset = [], []
    previous_is_whitespace = True
    for character in context:
        if _is_whitespace(character):
            previous_is_whitespace = True
        else:
            if previous_is_whitespace:
                doc_tokens.append(character)
            else:
                doc_tokens[-1] += character
            previous_is_whitespace = False
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


def to_squad_examples(questions: Sequence[SquadQuestion], answer_index: Optional[int] = 0) -> list:
    """`squad_lib.SquadExample`s, with the word span of one gold answer.

    Args:
        questions: sequence of `SquadQuestion`.
        answer_index: int or None. Which gold answer sets the training
            positions (0: the first, as BERT's `run_squad.py` does); None
            for inference examples without positions.

    Returns:
        A list of `official.nlp.data.squad_lib.SquadExample`; `start_position`
        and `end_position` are word indices, -1 for an unanswerable question.

    Raises:
        ValueError: an answerable question has no answer at `answer_index`.
    """
    from official.nlp.data import squad_lib

    examples = []
    # Questions of one paragraph share a context: split it once.
    split_cache = {}
    for question in questions:
        if question.context not in split_cache:
            split_cache = {question.context: _split_context(question.context)}
        doc_tokens, char_to_word_offset = split_cache[question.context]
        start_position = end_position = None
        answer_text = None
        is_impossible = question.is_impossible
        if answer_index is not None:
            if question.is_impossible:
                start_position = end_position = -1
                answer_text = ""
            elif answer_index >= len(question.answers):
                raise ValueError(
                    f"question '{question.qas_id}' has {len(question.answers)} "
                    f"answer(s), no answer {answer_index}"
                )
            else:
                answer_text, answer_start = question.answers[answer_index]
                start_position = char_to_word_offset[answer_start]
                end_position = char_to_word_offset[answer_start + len(answer_text) - 1]
        examples.append(
            squad_lib.SquadExample(
                qas_id=question.qas_id,
                question_text=question.question_text,
                doc_tokens=doc_tokens,
                orig_answer_text=answer_text,
                start_position=start_position,
                end_position=end_position,
                is_impossible=is_impossible,
            )
        )
    return examples


def make_full_tokenizer(vocab_file: str, do_lower_case: bool = True):
    """tf-models-official's `FullTokenizer` (BERT's reference WordPiece)."""
    from official.nlp.tools import tokenization

    if not tf.io.gfile.exists(vocab_file):
        raise FileNotFoundError(f"{vocab_file}: vocabulary file not found")
    return tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)


def convert_to_features(
    examples: Sequence,
    tokenizer_or_vocab,
    max_seq_length: int = MAX_SEQ_LENGTH,
    doc_stride: int = DOC_STRIDE,
    max_query_length: int = MAX_QUERY_LENGTH,
    do_lower_case: bool = True,
) -> list:
    """Windowed features of SQuAD examples, by `squad_lib.convert_examples_to_features`.

    With positions (examples from `to_squad_examples(answer_index=k)`), each
    window carries `start_position`/`end_position` token indices of the
    answer, 0 (the `[CLS]` token) when the window misses it or the question
    is unanswerable. Without positions (`answer_index=None`) they are 0.

    Cost: pure-Python WordPiece, re-run on the context for every question.

    Args:
        examples: sequence of `squad_lib.SquadExample`.
        tokenizer_or_vocab: a `FullTokenizer` or a path to `vocab.txt`.
        max_seq_length: int. Window length, special tokens included.
        doc_stride: int. Tokens between the starts of two windows.
        max_query_length: int. Question tokens kept.
        do_lower_case: bool. Used when a vocab path is given.

    Returns:
        A list of `squad_lib.InputFeatures` in example order; `unique_id`
        counts from 1000000000.
    """
    from official.nlp.data import squad_lib

    if max_query_length + 3 >= max_seq_length:
        raise ValueError(
            f"max_query_length {max_query_length} leaves no room for the context "
            f"in max_seq_length {max_seq_length}"
        )
    if not examples:
        raise ValueError("no SQuAD examples to featurize (empty split)")
    tokenizer = tokenizer_or_vocab
    if isinstance(tokenizer_or_vocab, str) or hasattr(tokenizer_or_vocab, "__fspath__"):
        tokenizer = make_full_tokenizer(str(tokenizer_or_vocab), do_lower_case)
    has_positions = [example.start_position is not None for example in examples]
    if any(has_positions) and not all(has_positions):
        raise ValueError("mix of examples with and without answer positions; featurize them apart")
    features = []
    if all(has_positions):
        squad_lib.convert_examples_to_features(
            examples, tokenizer, max_seq_length, doc_stride, max_query_length,
            is_training=True, output_fn=features.append,
        )
    else:
        # The inference path pads the feature list to a multiple of
        # `batch_size` with copies; batch_size 1 adds none.
        squad_lib.convert_examples_to_features(
            examples, tokenizer, max_seq_length, doc_stride, max_query_length,
            is_training=False, output_fn=lambda feature, is_padding: features.append(feature),
            batch_size=1,
        )
    return features


def features_to_tensors(features: Sequence) -> tuple:
    """`(inputs, labels)` numpy-backed tensors of a list of `InputFeatures`."""
    inputs = {
        "token_ids": tf.constant([f.input_ids for f in features], tf.int32),
        "segment_ids": tf.constant([f.segment_ids for f in features], tf.int32),
        "padding_mask": tf.constant([f.input_mask for f in features], tf.int32),
    }
    labels = {
        "start_positions": tf.constant([f.start_position or 0 for f in features], tf.int32),
        "end_positions": tf.constant([f.end_position or 0 for f in features], tf.int32),
    }
    return inputs, labels


def make_squad_dataset(
    features: Sequence,
    batch_size: int,
    shuffle: bool = False,
    seed: Optional[int] = None,
    drop_remainder: bool = False,
    include_unique_ids: bool = False,
) -> tf.data.Dataset:
    """Batches of SQuAD window features and answer positions.

    Without shuffling, batches keep the order of `features`, so the logits of
    `model.predict(dataset)` line up with `features` for
    `distil_tf.tasks.squad_decoding.decode_predictions`.

    Args:
        features: sequence of `squad_lib.InputFeatures` from
            `convert_to_features`.
        batch_size: int.
        shuffle: bool. Shuffle windows every epoch (training).
        seed: int or None.
        drop_remainder: bool. Static batch shape for TPU/XLA.
        include_unique_ids: bool. Add `"unique_ids"` int64 `[batch]` to the
            inputs (for prediction loops that match outputs by id).

    Returns:
        A `tf.data.Dataset` of `(inputs, labels)`: inputs `{"token_ids",
        "segment_ids", "padding_mask"}` int32 `[batch, seq]`, labels
        `{"start_positions", "end_positions"}` int32 `[batch]`.
    """
    if not features:
        raise ValueError("no SQuAD features to build a dataset from (empty split)")
    inputs, labels = features_to_tensors(features)
    if include_unique_ids:
        inputs["unique_ids"] = tf.constant([f.unique_id for f in features], tf.int64)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle:
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

