"""Exported signatures against the Keras model, on real sentences."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from distil_tf.data.squad import _split_context
from distil_tf.export import create_export_module
from distil_tf.export.export_module import resolve_pair
from distil_tf.export.warmup import make_example

ATOL = 1e-5
MAX_SEQUENCE_LENGTH = 64  # what conftest exports with (and the models' positions)


def as_strings(values):
    return tf.constant([value.encode("utf-8") if isinstance(value, str) else value for value in values])


def numpy_outputs(outputs):
    return {key: np.asarray(value) for key, value in outputs.items()}


def _keras_outputs(exported, texts, text_pairs=None):
    """The Keras model on training's packing (keras-hub packer, round robin, padded to max)."""
    tokenizer = exported.tokenizer
    pad_id = tokenizer.token_to_id("[PAD]")
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=MAX_SEQUENCE_LENGTH,
        start_value=tokenizer.token_to_id("[CLS]"),
        end_value=tokenizer.token_to_id("[SEP]"),
        pad_value=pad_id,
        truncate="round_robin",
    )
    segments = [tokenizer.tokenize_ragged(texts)]
    if text_pairs is not None:
        segments.append(tokenizer.tokenize_ragged(text_pairs))
    token_ids, segment_ids = packer(tuple(segments))
    features = {
        "token_ids": tf.cast(token_ids, tf.int32),
        "segment_ids": tf.cast(segment_ids, tf.int32),
        "padding_mask": tf.cast(token_ids != pad_id, tf.int32),
    }
    if exported.model.encoder.architecture != "bert":
        features.pop("segment_ids")
    return numpy_outputs(exported.model(features, training=False))


def _signature_def(exported, name):
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((exported.version_dir / "saved_model.pb").read_bytes())
    return saved_model.meta_graphs[0].signature_def[name]


def _io(signature_def):
    """{name: (dtype name, shape)} of a SignatureDef's inputs and outputs, as TF Serving reads them."""

    def describe(tensors):
        return {
            key: (tf.dtypes.as_dtype(info.dtype).name, [dim.size for dim in info.tensor_shape.dim])
            for key, info in tensors.items()
        }

    return describe(signature_def.inputs), describe(signature_def.outputs)


# ---------------------------------------------------------------------------
# Parity with Keras
# ---------------------------------------------------------------------------


def test_single_text_classification_matches_keras(sst2_export, sst2_sentences):
    outputs = numpy_outputs(sst2_export.signature()(text=as_strings(sst2_sentences)))
    reference = _keras_outputs(sst2_export, sst2_sentences)
    np.testing.assert_allclose(outputs["logits"], reference["logits"], atol=ATOL)
    probabilities = tf.nn.softmax(reference["logits"]).numpy()
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=ATOL)
    np.testing.assert_array_equal(outputs["label_ids"], reference["logits"].argmax(-1))
    names = np.array([b"negative", b"positive"])
    np.testing.assert_array_equal(outputs["labels"], names[reference["logits"].argmax(-1)])


def test_pair_classification_with_segment_ids_matches_keras(mrpc_export, stsb_pairs):
    first, second = zip(*stsb_pairs)
    outputs = numpy_outputs(mrpc_export.signature()(text=as_strings(first), text_pair=as_strings(second)))
    reference = _keras_outputs(mrpc_export, list(first), list(second))
    np.testing.assert_allclose(outputs["logits"], reference["logits"], atol=ATOL)
    # Swapping the texts changes BERT's segment ids: the pair is really read as a pair.
    swapped = numpy_outputs(mrpc_export.signature()(text=as_strings(second), text_pair=as_strings(first)))
    assert not np.allclose(swapped["logits"], outputs["logits"], atol=1e-7)


def test_pair_regression_matches_keras(stsb_export, stsb_pairs):
    first, second = zip(*stsb_pairs)
    outputs = numpy_outputs(stsb_export.signature()(text=as_strings(first), text_pair=as_strings(second)))
    reference = _keras_outputs(stsb_export, list(first), list(second))
    assert set(outputs) == {"score"}
    np.testing.assert_allclose(outputs["score"], reference["logits"], atol=ATOL)


def test_long_pairs_truncate_round_robin_like_training(mrpc_export, sst2_sentences):
    long_text = " ".join(sst2_sentences)  # far past 64 WordPieces
    texts, pairs = [long_text, "short", long_text], ["short", long_text, long_text]
    outputs = numpy_outputs(mrpc_export.signature()(text=as_strings(texts), text_pair=as_strings(pairs)))
    reference = _keras_outputs(mrpc_export, texts, pairs)
    np.testing.assert_allclose(outputs["logits"], reference["logits"], atol=ATOL)


@pytest.mark.parametrize("fixture", ["mrpc_export", "squad_export", "stsb_export"])
def test_predict_ids_matches_keras(request, fixture):
    exported = request.getfixturevalue(fixture)
    token_ids = np.array([[101, 7592, 2088, 102, 2023, 102], [101, 2204, 102, 2307, 102, 0]], "int32")
    features = {"token_ids": token_ids, "padding_mask": (token_ids != 0).astype("int32")}
    if exported.model.encoder.architecture == "bert":
        features["segment_ids"] = np.array([[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]], "int32")
    outputs = numpy_outputs(exported.signature("predict_ids")(**{k: tf.constant(v) for k, v in features.items()}))
    reference = numpy_outputs(exported.model(features, training=False))
    assert set(outputs) == set(reference)
    for key in reference:
        np.testing.assert_allclose(outputs[key], reference[key], atol=ATOL)


# ---------------------------------------------------------------------------
# Question answering
# ---------------------------------------------------------------------------


def _reference_answer(exported, question, context, max_query_length, doc_stride, max_answer_length=30):
    """run_squad's windows, max-context rule and span search, in plain Python + NumPy."""
    tokenizer = exported.tokenizer
    words, _ = _split_context(context)
    word_starts, search_from = [], 0
    for word in words:
        word_starts.append(context.index(word, search_from))
        search_from = word_starts[-1] + len(word)
    word_ends = [start + len(word) for start, word in zip(word_starts, words)]
    pieces = tokenizer.tokenize_ragged(words).to_list() if words else []
    context_ids = [piece for word_pieces in pieces for piece in word_pieces]
    piece_words = [index for index, word_pieces in enumerate(pieces) for _ in word_pieces]
    question_ids = tokenizer.tokenize_ragged([question]).to_list()[0][:max_query_length]
    budget = MAX_SEQUENCE_LENGTH - 3 - len(question_ids)
    windows, window_start = [], 0
    while window_start < len(context_ids):
        length = min(len(context_ids) - window_start, budget)
        windows.append((window_start, length))
        if window_start + length == len(context_ids):
            break
        window_start += min(length, doc_stride)

    def is_max_context(window_index, position):
        best_score, best_window = None, None
        for index, (start, length) in enumerate(windows):
            if start <= position < start + length:
                score = min(position - start, start + length - 1 - position) + 0.01 * length
                if best_score is None or score > best_score:
                    best_score, best_window = score, index
        return best_window == window_index

    best = None
    for window_index, (window_start, length) in enumerate(windows):
        token_ids = [101] + question_ids + [102] + context_ids[window_start:window_start + length] + [102]
        segment_ids = [0] * (len(question_ids) + 2) + [1] * (length + 1)
        features = {
            "token_ids": np.array([token_ids], "int32"),
            "padding_mask": np.ones((1, len(token_ids)), "int32"),
            "segment_ids": np.array([segment_ids], "int32"),
        }
        logits = numpy_outputs(exported.model(features, training=False))
        begin = len(question_ids) + 2
        for start in range(length):
            if not is_max_context(window_index, window_start + start):
                continue
            for end in range(start, min(start + max_answer_length, length)):
                score = logits["start_logits"][0, begin + start] + logits["end_logits"][0, begin + end]
                if best is None or score > best[0]:
                    best = (score, window_start + start, window_start + end)
    score, start, end = best
    return word_starts[piece_words[start]], word_ends[piece_words[end]], score


def test_answers_are_exact_substrings_of_the_context(squad_export, squad_examples):
    questions, contexts = zip(*squad_examples)
    outputs = numpy_outputs(squad_export.signature()(question=as_strings(questions), context=as_strings(contexts)))
    for index, context in enumerate(contexts):
        start, end = int(outputs["start"][index]), int(outputs["end"][index])
        answer = outputs["answer"][index].decode("utf-8")
        assert 0 <= start < end <= len(context)
        assert context[start:end] == answer
        # Word granularity: the answer neither starts nor ends inside a word.
        assert start == 0 or context[start - 1].isspace()
        assert end == len(context) or context[end].isspace()


def test_answers_match_keras_decoded_in_numpy(squad_export, squad_examples):
    questions, contexts = zip(*squad_examples)
    # A non-ASCII context checks byte -> character offsets.
    questions = list(questions) + ["Who won?"]
    contexts = list(contexts) + ["Les Broncos de Denver — vainqueurs à Santa Clara, Californie: 24–10 ★ fin."]
    outputs = numpy_outputs(squad_export.signature()(question=as_strings(questions), context=as_strings(contexts)))
    max_query_length = doc_stride = MAX_SEQUENCE_LENGTH // 2  # the defaults at length 64
    past_first_window = 0
    for index, (question, context) in enumerate(zip(questions, contexts)):
        start, end, score = _reference_answer(squad_export, question, context, max_query_length, doc_stride)
        assert (int(outputs["start"][index]), int(outputs["end"][index])) == (start, end), index
        np.testing.assert_allclose(outputs["score"][index], score, atol=ATOL)
        past_first_window += len(squad_export.tokenizer.tokenize_ragged([context[:start]]).to_list()[0]) > 40
    # SQuAD contexts span several 64-token windows; some answers come from later ones.
    assert past_first_window >= 1


def test_empty_context_gives_no_answer(squad_export):
    outputs = numpy_outputs(squad_export.signature()(question=as_strings(["who?", ""]), context=as_strings(["", "  "])))
    np.testing.assert_array_equal(outputs["answer"], [b"", b""])
    np.testing.assert_array_equal(outputs["start"], [0, 0])
    np.testing.assert_array_equal(outputs["end"], [0, 0])


# ---------------------------------------------------------------------------
# Signature names, dtypes, shapes
# ---------------------------------------------------------------------------


def test_classification_signatures(sst2_export):
    assert set(sst2_export.loaded.signatures) == {"serving_default", "classify", "predict_ids"}
    inputs, outputs = _io(_signature_def(sst2_export, "serving_default"))
    assert inputs == {"text": ("string", [-1])}
    assert outputs == {
        "logits": ("float32", [-1, 2]),
        "probabilities": ("float32", [-1, 2]),
        "label_ids": ("int64", [-1]),
        "labels": ("string", [-1]),
    }
    assert _signature_def(sst2_export, "classify").method_name == "tensorflow/serving/classify"
    assert _signature_def(sst2_export, "serving_default").method_name == "tensorflow/serving/predict"
    inputs, outputs = _io(_signature_def(sst2_export, "classify"))
    assert inputs == {"inputs": ("string", [-1])}
    assert set(outputs) == {"classes", "scores"}
    assert outputs["classes"][0] == "string" and outputs["scores"][0] == "float32"
    assert len(outputs["classes"][1]) == len(outputs["scores"][1]) == 2
    inputs, outputs = _io(_signature_def(sst2_export, "predict_ids"))
    assert inputs == {"token_ids": ("int32", [-1, -1]), "padding_mask": ("int32", [-1, -1])}
    assert outputs == {"logits": ("float32", [-1, 2])}


def test_pair_and_bert_signatures(mrpc_export):
    inputs, _ = _io(_signature_def(mrpc_export, "serving_default"))
    assert inputs == {"text": ("string", [-1]), "text_pair": ("string", [-1])}
    inputs, _ = _io(_signature_def(mrpc_export, "predict_ids"))
    assert set(inputs) == {"token_ids", "padding_mask", "segment_ids"}


def test_regression_signatures(stsb_export):
    assert set(stsb_export.loaded.signatures) == {"serving_default", "regress", "predict_ids"}
    _, outputs = _io(_signature_def(stsb_export, "serving_default"))
    assert outputs == {"score": ("float32", [-1])}
    assert _signature_def(stsb_export, "regress").method_name == "tensorflow/serving/regress"
    inputs, outputs = _io(_signature_def(stsb_export, "regress"))
    assert inputs == {"inputs": ("string", [-1])}
    assert outputs == {"outputs": ("float32", [-1])}


def test_span_signatures(squad_export):
    assert set(squad_export.loaded.signatures) == {"serving_default", "predict_ids"}
    inputs, outputs = _io(_signature_def(squad_export, "serving_default"))
    assert inputs == {"question": ("string", [-1]), "context": ("string", [-1])}
    assert outputs == {
        "answer": ("string", [-1]),
        "start": ("int64", [-1]),
        "end": ("int64", [-1]),
        "score": ("float32", [-1]),
    }
    _, outputs = _io(_signature_def(squad_export, "predict_ids"))
    assert outputs == {"start_logits": ("float32", [-1, -1]), "end_logits": ("float32", [-1, -1])}


# ---------------------------------------------------------------------------
# tf.Example signatures
# ---------------------------------------------------------------------------


def _examples(texts, text_pairs=None):
    return tf.constant([
        make_example(text, None if text_pairs is None else text_pairs[index]).SerializeToString()
        for index, text in enumerate(texts)
    ])


def test_classify_parses_examples(sst2_export, sst2_sentences):
    outputs = numpy_outputs(sst2_export.signature("classify")(inputs=_examples(sst2_sentences)))
    expected = numpy_outputs(sst2_export.signature()(text=as_strings(sst2_sentences)))
    np.testing.assert_allclose(outputs["scores"], expected["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(outputs["classes"], [[b"negative", b"positive"]] * len(sst2_sentences))


def test_classify_reads_pairs(mrpc_export, stsb_pairs):
    first, second = (list(column) for column in zip(*stsb_pairs))
    outputs = numpy_outputs(mrpc_export.signature("classify")(inputs=_examples(first, second)))
    expected = numpy_outputs(mrpc_export.signature()(text=as_strings(first), text_pair=as_strings(second)))
    np.testing.assert_allclose(outputs["scores"], expected["probabilities"], atol=1e-6)


def test_regress_parses_examples(stsb_export, stsb_pairs):
    first, second = (list(column) for column in zip(*stsb_pairs))
    outputs = numpy_outputs(stsb_export.signature("regress")(inputs=_examples(first, second)))
    expected = numpy_outputs(stsb_export.signature()(text=as_strings(first), text_pair=as_strings(second)))
    np.testing.assert_allclose(outputs["outputs"], expected["score"], atol=1e-6)


def test_example_without_text_feature_is_an_invalid_argument(sst2_export):
    wrong = tf.train.Example(features=tf.train.Features(feature={
        "sentence": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"hi"]))
    }))
    with pytest.raises(tf.errors.InvalidArgumentError):
        sst2_export.signature("classify")(inputs=tf.constant([wrong.SerializeToString()]))


# ---------------------------------------------------------------------------
# Inputs that must not raise
# ---------------------------------------------------------------------------

_TEN_THOUSAND_WORDS = " ".join(["wonderful"] * 5000 + ["terrible"] * 5000)
_AWKWARD_TEXTS = [b"", b"   ", _TEN_THOUSAND_WORDS.encode(), b"caf\xc3 \xff\xfe broken \x80 bytes", "ok ☃".encode()]


def test_awkward_texts_do_not_raise(sst2_export, mrpc_export):
    outputs = numpy_outputs(sst2_export.signature()(text=tf.constant(_AWKWARD_TEXTS)))
    assert outputs["logits"].shape == (len(_AWKWARD_TEXTS), 2)
    assert np.isfinite(outputs["logits"]).all()
    reversed_texts = tf.constant(_AWKWARD_TEXTS[::-1])
    outputs = numpy_outputs(mrpc_export.signature()(text=tf.constant(_AWKWARD_TEXTS), text_pair=reversed_texts))
    assert np.isfinite(outputs["logits"]).all()
    # The 10,000-word text is truncated to the max length, not refused.
    single = numpy_outputs(sst2_export.signature()(text=tf.constant([_AWKWARD_TEXTS[2]])))
    np.testing.assert_allclose(single["logits"][0], _keras_outputs(sst2_export, [_TEN_THOUSAND_WORDS])["logits"][0], atol=ATOL)


def test_awkward_contexts_do_not_raise(squad_export):
    questions = tf.constant([b"what?", b"\xff\xfe?", _TEN_THOUSAND_WORDS.encode(), b"", b"who?"])
    contexts = tf.constant([_TEN_THOUSAND_WORDS.encode(), b"caf\xc3 \xff broken \x80 bytes", b"short context", b"x", b""])
    outputs = numpy_outputs(squad_export.signature()(question=questions, context=contexts))
    # Offsets index the context decoded with U+FFFD replacement.
    for index, context in enumerate(contexts.numpy()):
        text = context.decode("utf-8", errors="replace")
        start, end = int(outputs["start"][index]), int(outputs["end"][index])
        assert text[start:end] == outputs["answer"][index].decode("utf-8")
    assert outputs["answer"][1].decode("utf-8") in {"caf\ufffd", "\ufffd", "broken", "bytes"}
    # 16 windows (budget 59, stride 32) read the first 539 one-piece words of
    # the 10,000-word context; the rest is truncated.
    assert outputs["end"][0] <= len("wonderful ") * (15 * 32 + 59)
    assert b"terrible" not in outputs["answer"][0]


def test_empty_batch(sst2_export, squad_export):
    outputs = numpy_outputs(sst2_export.signature()(text=tf.constant([], tf.string)))
    assert outputs["logits"].shape == (0, 2) and outputs["labels"].shape == (0,)
    empty = tf.constant([], tf.string)
    outputs = numpy_outputs(squad_export.signature()(question=empty, context=empty))
    assert outputs["answer"].shape == outputs["start"].shape == outputs["score"].shape == (0,)


# ---------------------------------------------------------------------------
# What the module refuses
# ---------------------------------------------------------------------------


def test_unregistered_task_needs_an_explicit_pair_flag(bert_tokenizer, task_model_builder):
    model = task_model_builder(bert_tokenizer, "distilbert", "classification", "my/task", label_names=["a", "b"])
    with pytest.raises(ValueError, match="pass pair=True or pair=False"):
        create_export_module(model, bert_tokenizer, max_sequence_length=MAX_SEQUENCE_LENGTH)
    module = create_export_module(model, bert_tokenizer, max_sequence_length=MAX_SEQUENCE_LENGTH, pair=True)
    assert module.pair and module.serving_default_input_names() == ("text", "text_pair")


def test_pair_flag_contradicting_the_registry_is_refused():
    with pytest.raises(ValueError, match="contradicts"):
        resolve_pair("glue/sst2", "classification", pair=True)
    assert resolve_pair("squad/v1.1", "span") is True


def test_lengths_are_checked(bert_tokenizer, task_model_builder):
    model = task_model_builder(bert_tokenizer, "bert", "span", "squad/v1.1")
    with pytest.raises(ValueError, match="exceeds the model's 64 position embeddings"):
        create_export_module(model, bert_tokenizer, max_sequence_length=128)
    with pytest.raises(ValueError, match="max_query_length 61"):
        create_export_module(model, bert_tokenizer, max_sequence_length=64, max_query_length=61)


def test_bare_encoder_is_refused(bert_tokenizer, task_model_builder):
    model = task_model_builder(bert_tokenizer, "distilbert", "regression", "glue/stsb")
    with pytest.raises(ValueError, match="only task models can be exported"):
        create_export_module(model.encoder, bert_tokenizer)


# ---------------------------------------------------------------------------
# One module per task family, over one base
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("task, head_type, family, signatures", [
    ("glue/sst2", "classification", "SentencePredictionExportModule",
     ["classify", "predict_ids", "serving_default"]),
    ("glue/stsb", "regression", "SentencePredictionExportModule", ["predict_ids", "regress", "serving_default"]),
    ("squad/v1.1", "span", "QuestionAnsweringExportModule", ["predict_ids", "serving_default"]),
])
def test_the_task_object_and_the_saved_head_pick_the_same_family_module(
        task, head_type, family, signatures, bert_tokenizer, task_model_builder):
    from distil_tf import export
    from distil_tf.export.export_base import ExportModuleBase
    from distil_tf.tasks import registry

    label_names = list(registry.get_task(task).label_names) or None
    model = task_model_builder(bert_tokenizer, "bert", head_type, task, label_names=label_names)
    task_object = registry.build_task(task)
    from_task = task_object.export_module(model, bert_tokenizer, 48)
    from_head = create_export_module(model, bert_tokenizer, 48, preprocessing=task_object.preprocessing_for(48))
    assert type(from_task) is type(from_head) is getattr(export, family)
    assert isinstance(from_task, ExportModuleBase)
    assert sorted(from_task.get_signatures()) == signatures
    # Every family holds one preprocessor, training's config at the export's length.
    from distil_tf.text.text_preprocessor import TextPreprocessor

    assert isinstance(from_task.preprocessor, TextPreprocessor)
    assert from_task.preprocessor.config == task_object.preprocessing_for(48)
    # The same head on the same ids: one forward pass, whichever way it was built.
    features = from_task.pack(as_strings(["a gripping, funny film", "what is it?"]),
                              as_strings(["a dull mess", "it is a film."]) if from_task.pair else None)
    expected = numpy_outputs(from_head.run_model(features))
    for name, value in numpy_outputs(from_task.run_model(features)).items():
        np.testing.assert_array_equal(value, expected[name])


def test_a_task_object_refuses_to_export_another_tasks_model(bert_tokenizer, task_model_builder):
    from distil_tf.tasks import registry

    model = task_model_builder(bert_tokenizer, "bert", "classification", "glue/sst2",
                               label_names=["negative", "positive"])
    with pytest.raises(ValueError, match="^runs/sst2 was fine-tuned for 'glue/sst2', not 'glue/mrpc'$"):
        registry.build_task("glue/mrpc").export_module(model, bert_tokenizer, 48, where="runs/sst2")
    with pytest.raises(ValueError, match="has a classification head but task 'squad/v1.1' needs a span head"):
        registry.build_task("squad/v1.1").export_module(model, bert_tokenizer, 48)
