"""WordPiece tokenization whose ids equal Hugging Face's BertTokenizer, and the one text preprocessor."""

from distil_tf.text.bert_word_piece_tokenizer import BertWordPieceTokenizer
from distil_tf.text.loading import load_tokenizer, save_tokenizer
from distil_tf.text.text_preprocessor import TextPreprocessor

__all__ = ["BertWordPieceTokenizer", "TextPreprocessor", "load_tokenizer", "save_tokenizer"]
