"""CLaMP 2's towers: the M3 patch encoder, the dual tower, and loading a checkpoint saved in the released layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tunespace.encoders.clamp import (
    M3_SIZES,
    CLaMP2,
    CLaMP2Config,
    ClampCheckpointError,
    M3Config,
    M3Encoder,
    PatchInputError,
    infer_m3_config,
    load_clamp2,
    m3_config,
    save_clamp2,
)
from tunespace.symbolic.patches import BOS_ID, EOS_ID

CLAMP2_ONE_HOT = 128  # the released one-hot width
TINY_M3 = M3Config(hidden=32, layers=2, heads=2, max_patches=12, patch_length=8, decoder_layers=1, dropout=0.0)
TEXTS = ["a fast reel in G major played on the fiddle", "eine schnelle Melodie in G-Dur",
         "一首快速的乐曲，G大调，由长笛演奏。", "a slow air"]


def random_pieces(generator: torch.Generator, lengths: list[int], config: M3Config = TINY_M3,
                  patches: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded pieces of random bar-like patches: bos, characters, eos, pads; `lengths` real patches each."""
    patches = patches or max(lengths)
    ids = torch.zeros(len(lengths), patches, config.patch_length, dtype=torch.long)
    mask = torch.zeros(len(lengths), patches, dtype=torch.long)
    for row, length in enumerate(lengths):
        for patch in range(length):
            chars = int(torch.randint(1, config.patch_length - 1, (1,), generator=generator))
            body = torch.randint(4, config.vocab_size, (chars,), generator=generator)
            ids[row, patch, : chars + 2] = torch.cat([torch.tensor([BOS_ID]), body, torch.tensor([EOS_ID])])
        mask[row, :length] = 1
    return ids, mask


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random XLM-RoBERTa with a Unigram tokenizer trained on a few captions, saved as a model folder."""
    from tokenizers import SentencePieceUnigramTokenizer

    folder = tmp_path_factory.mktemp("xlmr")
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(TEXTS * 4, vocab_size=80, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                unk_token="<unk>", show_progress=False)
    tokenizer = transformers.XLMRobertaTokenizerFast(
        tokenizer_object=unigram._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    tokenizer.save_pretrained(folder)
    config = transformers.XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=72,
                                           pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    transformers.XLMRobertaModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clamp(xlmr_dir: Path) -> CLaMP2:
    torch.manual_seed(1)
    return CLaMP2(CLaMP2Config(text_model=str(xlmr_dir), music=TINY_M3, embed_dim=24, max_text_length=64,
                               batch_size=3)).eval()


def test_named_sizes_and_base_is_clamp2s_release():
    base = M3_SIZES["base"]
    assert (base.hidden, base.layers, base.heads, base.max_patches, base.patch_length, base.vocab_size,
            base.decoder_layers) == (768, 12, 12, 512, 64, 128, 3)
    assert m3_config("small", max_patches=256).max_patches == 256
    for config in M3_SIZES.values():
        assert config.hidden % config.heads == 0 and config.hidden // config.heads == 64
    with pytest.raises(ValueError, match="unknown M3 size"):
        m3_config("huge")


def test_patch_embedding_is_clamp2s_one_hot_linear():
    """The embedding_bag shortcut gives the numbers of a linear layer over the flattened one-hot characters."""
    encoder = M3Encoder(TINY_M3)
    ids, _ = random_pieces(torch.Generator().manual_seed(0), [5, 3])
    one_hot = F.one_hot(ids, TINY_M3.vocab_size).reshape(*ids.shape[:2], -1).float()
    torch.testing.assert_close(encoder.embed(ids), encoder.patch_embedding(one_hot), rtol=1e-5, atol=1e-6)


def test_padded_patches_change_nothing():
    """Appending padded patches, or batching with a longer piece, leaves every piece's pooled vector unchanged."""
    torch.manual_seed(0)
    encoder = M3Encoder(TINY_M3).eval()
    ids, mask = random_pieces(torch.Generator().manual_seed(1), [4, 2, 6])
    with torch.no_grad():
        pooled = encoder.pool(ids, mask)
        padded = encoder.pool(F.pad(ids, (0, 0, 0, 5)), F.pad(mask, (0, 5)))
        alone = torch.cat([encoder.pool(ids[i:i + 1, :n], mask[i:i + 1, :n]) for i, n in enumerate([4, 2, 6])])
    torch.testing.assert_close(padded, pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, pooled, rtol=1e-5, atol=1e-5)


def test_bad_patch_input_is_named():
    encoder = M3Encoder(TINY_M3)
    ids, mask = random_pieces(torch.Generator().manual_seed(2), [3])
    with pytest.raises(PatchInputError, match="vocabulary"):
        encoder(ids.masked_fill(ids == EOS_ID, TINY_M3.vocab_size), mask)
    with pytest.raises(PatchInputError, match="at most 12"):
        encoder(ids.repeat(1, 5, 1), mask.repeat(1, 5))
    with pytest.raises(PatchInputError, match="expected"):
        encoder(ids[..., :4], mask)


def test_encoders_give_unit_vectors_batched_like_unbatched(tiny_clamp: CLaMP2):
    text = tiny_clamp.encode_text(TEXTS)
    assert text.shape == (4, 24)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(text, tiny_clamp.encode_text(TEXTS, batch_size=1), rtol=1e-5, atol=1e-5)
    ids, mask = random_pieces(torch.Generator().manual_seed(3), [4, 1, 7, 2])
    music = tiny_clamp.encode_music(ids.numpy(), mask.numpy())
    assert music.shape == (4, 24)
    torch.testing.assert_close(music.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(music, tiny_clamp.encode_music(ids, mask, batch_size=1), rtol=1e-5, atol=1e-5)
    assert tiny_clamp.encode_text([]).shape == (0, 24)


def test_training_path_carries_gradients(tiny_clamp: CLaMP2):
    ids, mask = random_pieces(torch.Generator().manual_seed(4), [3, 5])
    text, music = tiny_clamp(TEXTS[:2], ids, mask)
    (text.sum() + music.sum()).backward()
    assert tiny_clamp.music_model.patch_embedding.weight.grad is not None
    assert tiny_clamp.text_model.get_input_embeddings().weight.grad is not None
    tiny_clamp.zero_grad(set_to_none=True)


def test_music_norm_standardises_pooled_features_and_encodes_batch_free(xlmr_dir: Path):
    """With `music_norm` the projection sees each pooled dimension centred and scaled by batch statistics in
    training (a direction every piece shares is removed) and by running statistics in eval, so encoding a piece
    does not depend on its batch."""
    torch.manual_seed(2)
    model = CLaMP2(CLaMP2Config(text_model=str(xlmr_dir), music=TINY_M3, embed_dim=24, max_text_length=64,
                                batch_size=3, music_norm=True))
    assert CLaMP2(CLaMP2Config(text_model=str(xlmr_dir), music=TINY_M3, embed_dim=24)).music_norm is None
    ids, mask = random_pieces(torch.Generator().manual_seed(5), [4, 1, 7, 2, 3, 6])
    seen: list[torch.Tensor] = []
    model.music_proj.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    model.train()
    model.music_features(ids, mask)
    torch.testing.assert_close(seen[-1].mean(dim=0), torch.zeros(TINY_M3.hidden), atol=1e-5, rtol=0)
    raw_variance = model.music_model.pool(ids, mask).detach().var(dim=0, unbiased=False)
    torch.testing.assert_close(seen[-1].var(dim=0, unbiased=False),
                               raw_variance / (raw_variance + model.music_norm.eps), atol=1e-4, rtol=0)
    model.eval()
    music = model.encode_music(ids, mask)
    torch.testing.assert_close(music, model.encode_music(ids, mask, batch_size=1), rtol=1e-5, atol=1e-5)
    running = model.music_norm
    pooled = model.music_model.pool(ids, mask)
    expected = (pooled - running.running_mean) / torch.sqrt(running.running_var + running.eps)
    torch.testing.assert_close(music, F.normalize(model.music_proj(expected), dim=-1), rtol=1e-5, atol=1e-5)


class ReleasedMusicModel(nn.Module):
    """CLaMP 2's M3PatchEncoder as its public code lays it out, computing the one-hot product literally."""

    def __init__(self, config: M3Config) -> None:
        super().__init__()
        self.config = config
        self.patch_embedding = nn.Linear(config.patch_length * CLAMP2_ONE_HOT, config.hidden)
        self.base = transformers.BertModel(config.bert_config())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        width = self.config.patch_length * CLAMP2_ONE_HOT
        one_hot = F.one_hot(ids, CLAMP2_ONE_HOT).reshape(len(ids), -1, width).float()
        return self.base(inputs_embeds=self.patch_embedding(one_hot), attention_mask=mask).last_hidden_state


class ReleasedCLaMP2(nn.Module):
    """CLaMP2Model's module tree and forward path (avg pooling, then the projections), built independently."""

    def __init__(self, text_dir: Path, config: M3Config, hidden: int) -> None:
        super().__init__()
        self.text_model = transformers.AutoModel.from_pretrained(text_dir, local_files_only=True)
        self.text_proj = nn.Linear(self.text_model.config.hidden_size, hidden)
        self.music_model = ReleasedMusicModel(config)
        self.music_proj = nn.Linear(config.hidden, hidden)

    @staticmethod
    def avg_pooling(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        masks = masks.unsqueeze(-1)
        return (features * masks).sum(dim=1) / masks.sum(dim=1)

    def text(self, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        hidden = self.text_model(inputs, attention_mask=masks).last_hidden_state
        return self.text_proj(self.avg_pooling(hidden, masks))

    def music(self, ids: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.music_proj(self.avg_pooling(self.music_model(ids, masks), masks))


def test_checkpoint_in_the_released_layout_loads_and_matches(xlmr_dir: Path, tmp_path: Path):
    music = M3Config(hidden=64, layers=2, heads=1, max_patches=10, patch_length=8, dropout=0.0)
    torch.manual_seed(5)
    released = ReleasedCLaMP2(xlmr_dir, music, hidden=16).eval()
    for parameter in released.parameters():  # away from initial values, so a skipped key would show
        parameter.data.add_(0.01 * torch.randn_like(parameter))
    file = tmp_path / "weights_clamp2_h_size_16_tiny.pth"
    torch.save({"model": released.state_dict(), "optimizer": {}, "lr_sched": {}, "epoch": 3, "best_epoch": 3,
                "min_eval_loss": 1.25}, file)

    loaded = load_clamp2(tmp_path, xlmr_dir)  # sizes read off the weights
    assert set(loaded.state_dict()) == set(released.state_dict())
    assert not loaded.training
    ids, mask = random_pieces(torch.Generator().manual_seed(6), [5, 2, 8], config=music, patches=10)
    tokens = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.music_features(ids, mask), released.music(ids, mask.float()),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(loaded.text_features(TEXTS),
                                   released.text(tokens["input_ids"], tokens["attention_mask"].float()),
                                   rtol=1e-4, atol=1e-5)


def test_sizes_are_read_off_the_weights_and_saved_models_reload(tiny_clamp: CLaMP2, xlmr_dir: Path,
                                                                 tmp_path: Path):
    inferred = infer_m3_config(tiny_clamp.state_dict())
    assert (inferred.hidden, inferred.layers, inferred.max_patches, inferred.patch_length) == (32, 2, 12, 8)
    file = save_clamp2(tiny_clamp, tmp_path / "clamp2_tiny.pth", epoch=2, min_eval_loss=0.5)
    saved = torch.load(file, weights_only=True)
    assert set(saved) == {"model", "epoch", "best_epoch", "min_eval_loss"}
    loaded = load_clamp2(file, xlmr_dir, music=TINY_M3)
    ids, mask = random_pieces(torch.Generator().manual_seed(7), [3, 6])
    torch.testing.assert_close(loaded.encode_music(ids, mask), tiny_clamp.encode_music(ids, mask))
    torch.testing.assert_close(loaded.encode_text(TEXTS), tiny_clamp.encode_text(TEXTS))


def test_checkpoint_problems_are_named(tiny_clamp: CLaMP2, xlmr_dir: Path, tmp_path: Path):
    with pytest.raises(ClampCheckpointError, match="0 files match"):
        load_clamp2(tmp_path, xlmr_dir)
    with pytest.raises(ClampCheckpointError, match="no such file"):
        load_clamp2(tmp_path / "absent.pth", xlmr_dir)
    state = dict(tiny_clamp.state_dict())
    state.pop("music_proj.bias")
    state["music_model.extra.weight"] = torch.zeros(1)
    torch.save({"model": state, "epoch": 1}, tmp_path / "clamp2_broken.pth")
    with pytest.raises(ClampCheckpointError, match=r"missing \(1\): music_proj.bias.*unexpected \(1\)"):
        load_clamp2(tmp_path, xlmr_dir, music=TINY_M3)


def test_abc_and_mtf_patches_from_symbolic_feed_one_encoder(tiny_clamp: CLaMP2):
    """`symbolic.encode_patches` / `pad_batch` output is what the music tower reads, ABC and MTF alike."""
    from tunespace.symbolic import PatchConfig, abc_patches, encode_patches, pad_batch

    config = PatchConfig(patch_length=TINY_M3.patch_length, max_patches=TINY_M3.max_patches)
    abc = abc_patches("X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\n|:GAG GAB|ABA ABd|edd gdd|edB dBA:|\n")
    mtf = ["ticks_per_beat 480", "note_on 0 0 67 80", "note_off 240 0 67 0"]
    ids, mask = pad_batch([encode_patches(abc, config).ids, encode_patches(mtf, config).ids])
    vectors = tiny_clamp.encode_music(ids, mask)
    assert vectors.shape == (2, 24) and torch.isfinite(vectors).all()
