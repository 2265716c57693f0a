"""Transfer-set augmentation for task distillation (Tang et al., 2019), on WordPiece ids.

"Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"
(Tang et al., 2019, section 3.3, arXiv 1903.12136) grows the transfer set
with perturbed copies of each training sentence, labelled by the teacher
only. Per word, with one uniform draw:

- with probability `mask`, the word becomes one `[MASK]`;
- with probability `substitute`, it becomes a similar word;
- else it is kept;

then each word is dropped with probability `word_dropout` (our addition; at
least one word stays) and, with probability `ngram`, only a random n-gram of
the result is kept (n uniform in 1..5).

Words are whole words over WordPiece ids: a piece and its `##` pieces go
together. Tang et al. pick substitutes by part of speech; we have no tagger
offline, so a word's substitute is one of its nearest neighbours in the
teacher's own word-embedding matrix (`neighbour_table`, cosine, computed
once). Only single-piece words are substituted: a multi-piece word has no
one-token neighbour, and averaging its pieces' vectors would cost a
vocabulary-wide search per word; it is kept (or masked) instead.

Special tokens ([CLS], [SEP], [PAD], ...) are never altered: they split
words and stay in place, so a packed row keeps its layout, and substitutes
are never special tokens nor `##` pieces.

Example:

>>> augmenter = WordAugmenter(vocabulary, neighbour_table(embeddings, vocabulary))
>>> augmenter.augment([2023, 3185, 2001, 2307], np.random.default_rng([42, 0, 1]))  # "this movie was great"
"""

import numpy as np

# Tang et al. (2019), section 4.2: p_mask = p_pos = 0.1, p_ng = 0.25, n <= 5.
DEFAULT_MASK = 0.1
DEFAULT_SUBSTITUTE = 0.1
DEFAULT_NGRAM = 0.25
DEFAULT_WORD_DROPOUT = 0.1
MAX_NGRAM = 5
DEFAULT_NEIGHBOURS = 10
# Rows of the similarity matrix computed at a time: 1024 x vocabulary float32
# (~120 MB for BERT's 30,522 tokens) instead of the whole 3.7 GB square.
_NEIGHBOUR_CHUNK = 1024


def _is_special(token):
    return token.startswith("[") and token.endswith("]")


def _is_continuation(token):
    return token.startswith("##")


def substitutable(token):
    """Whether `token` is a whole word that may replace, or be replaced by, another."""
    return not _is_special(token) and not _is_continuation(token) and any(c.isalnum() for c in token)


def neighbour_table(embeddings, vocabulary, neighbours=DEFAULT_NEIGHBOURS):
    """Each token's nearest whole-word neighbours by cosine in `embeddings`.

    Args:
        embeddings: float array `[vocabulary_size, hidden]`, the teacher's
            word-embedding matrix.
        vocabulary: list of str, the tokens in id order.
        neighbours: int. Neighbours kept per token.

    Returns:
        int32 array `[vocabulary_size, neighbours]`; the row of a token that
        is not `substitutable` (special, `##` piece, punctuation) is -1.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape[0] < len(vocabulary):
        raise ValueError(f"{embeddings.shape[0]} embedding rows for a vocabulary of {len(vocabulary)} tokens")
    candidates = np.array([i for i, token in enumerate(vocabulary) if substitutable(token)], dtype=np.int64)
    table = np.full((len(vocabulary), neighbours), -1, dtype=np.int32)
    if len(candidates) < 2:
        return table
    vectors = embeddings[candidates]
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    keep = min(neighbours, len(candidates) - 1)
    for start in range(0, len(candidates), _NEIGHBOUR_CHUNK):
        rows = np.arange(start, min(start + _NEIGHBOUR_CHUNK, len(candidates)))
        similarity = vectors[rows] @ vectors.T  # [chunk, candidates]
        similarity[np.arange(len(rows)), rows] = -np.inf  # never oneself
        best = np.argpartition(-similarity, keep - 1, axis=1)[:, :keep]
        # argpartition leaves the k best unordered: sort them, best first
        # (ties by id, so the table does not depend on the BLAS build's order).
        order = np.lexsort((best, -np.take_along_axis(similarity, best, axis=1)), axis=1)
        best = np.take_along_axis(best, order, axis=1)
        table[candidates[rows], :keep] = candidates[best]
    return table


class WordAugmenter:
    """Perturbs WordPiece id sequences by whole words (module docstring).

    Args:
        vocabulary: list of str. The tokens in id order (`##` marks a
            continuation piece, `[...]` a special token).
        neighbours: int array `[vocabulary_size, k]` from `neighbour_table`
            (-1: no substitute), or None to skip substitution.
        mask: float. Probability that a word becomes `[MASK]`.
        substitute: float. Probability that a word becomes a neighbour.
        ngram: float. Probability of keeping only a random n-gram.
        word_dropout: float. Probability of dropping each word.
        mask_token: str.

    Examples:
    >>> augmenter = WordAugmenter(vocabulary, table, mask=0.1, substitute=0.1)
    >>> augmenter.augment(ids, np.random.default_rng(0))
    """

    def __init__(self, vocabulary, neighbours=None, mask=DEFAULT_MASK, substitute=DEFAULT_SUBSTITUTE,
                 ngram=DEFAULT_NGRAM, word_dropout=DEFAULT_WORD_DROPOUT, mask_token="[MASK]"):
        for name, value in (("mask", mask), ("substitute", substitute), ("ngram", ngram),
                            ("word_dropout", word_dropout)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augmentation probability {name} must be in [0, 1], got {value}")
        if mask + substitute > 1.0:
            raise ValueError(f"augmentation mask + substitute must be <= 1, got {mask} + {substitute}")
        vocabulary = list(vocabulary)
        if mask > 0 and mask_token not in vocabulary:
            raise ValueError(f"the vocabulary has no {mask_token} token to mask words with")
        self.mask_id = vocabulary.index(mask_token) if mask_token in vocabulary else -1
        self.continuation = np.array([_is_continuation(token) for token in vocabulary], dtype=bool)
        self.special = np.array([_is_special(token) for token in vocabulary], dtype=bool)
        if neighbours is not None:
            neighbours = np.asarray(neighbours, dtype=np.int32)
            # Python lists: indexing them per word is much faster than numpy scalars.
            self.substitutes = [[int(i) for i in row if i >= 0] for row in neighbours]
        else:
            self.substitutes = None
        self.mask = mask
        self.substitute = substitute if neighbours is not None else 0.0
        self.ngram = ngram
        self.word_dropout = word_dropout
        self._continuation = self.continuation.tolist()
        self._special = self.special.tolist()

    def _words(self, ids):
        """Runs of `ids`: `(is_word, [ids])`, a word being a piece and its ## pieces."""
        runs = []
        for token in ids:
            if self._special[token]:
                runs.append((False, [token]))
            elif self._continuation[token] and runs and runs[-1][0]:
                runs[-1][1].append(token)
            else:
                runs.append((True, [token]))
        return runs

    def augment(self, ids, rng):
        """One perturbed copy of the id list `ids` (any special ids stay in place).

        Args:
            ids: sequence of int, WordPiece ids (one segment, or a packed row).
            rng: `numpy.random.Generator`; the copy is a function of its state.

        Returns:
            list of int.
        """
        ids = [int(token) for token in ids]
        runs = self._words(ids)
        word_positions = [i for i, (is_word, _) in enumerate(runs) if is_word]
        if not word_positions:
            return ids
        draws = rng.random(len(word_positions))
        drops = rng.random(len(word_positions))
        picks = rng.integers(0, 1 << 30, len(word_positions))
        changed = {}
        for draw, pick, position in zip(draws.tolist(), picks.tolist(), word_positions):
            word = runs[position][1]
            if draw < self.mask:
                changed[position] = [self.mask_id]
            elif draw < self.mask + self.substitute and len(word) == 1 and self.substitutes[word[0]]:
                options = self.substitutes[word[0]]
                changed[position] = [options[pick % len(options)]]
        kept = [position for position, drop in zip(word_positions, drops.tolist()) if drop >= self.word_dropout]
        if not kept:
            kept = [word_positions[int(rng.integers(len(word_positions)))]]
        if rng.random() < self.ngram:
            length = int(rng.integers(1, MAX_NGRAM + 1))
            if length < len(kept):
                start = int(rng.integers(0, len(kept) - length + 1))
                kept = kept[start : start + length]
        kept = set(kept)
        output = []
        for position, (is_word, tokens) in enumerate(runs):
            if not is_word:
                output.extend(tokens)
            elif position in kept:
                output.extend(changed.get(position, tokens))
        return output
