"""Helpers several test packages share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def tiny_bert(folder: Path, words: Sequence[str], hidden: int = 32, layers: int = 2) -> Path:
    """A random BERT with its own small WordPiece vocabulary, saved as a transformers folder: a real text tower,
    nothing downloaded."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden)).save_pretrained(folder)
    return folder
