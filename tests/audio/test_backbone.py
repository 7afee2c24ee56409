"""The musicnn backbone in torch: weights, preprocessing, per-patch outputs and tags on real clips."""

import hashlib
import json

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipelines.audio import backbone, musicnn
from pipelines.audio.backbone import BACKBONE_COLUMNS, EMBED_DIM, MSD_TAGS, MTT_TAGS
from tests.audio.clips import AUDIO_ROOT, music_ogg, needs_audio

LIBROSA = AUDIO_ROOT / "librosa"
BRAHMS = LIBROSA / "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
DRUM_BASS = LIBROSA / "admiralbob77_-_Choice_-_Drum-bass.ogg"
VOCAL = LIBROSA / "Karissa_Hobbs_-_Lets_Go_Fishin.ogg"


def _load(path, duration=30.0) -> tuple[np.ndarray, int]:
    y, sr = librosa.load(str(path), sr=22050, mono=True, duration=duration)
    return y, int(sr)


def _top(probs: np.ndarray, tags: tuple[str, ...], k: int) -> list[str]:
    return [tags[i] for i in np.argsort(-probs)[:k]]


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_weights_match_their_card(model: str) -> None:
    card = musicnn.model_card(model)
    path = musicnn.weights_path(model)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["npz_sha256"]
    with np.load(path) as npz:
        shapes = {k: list(npz[k].shape) for k in npz.files}
        assert all(npz[k].dtype == np.float32 for k in npz.files)
    assert shapes == card["variables"]
    assert not any("Adam" in k or "power" in k for k in shapes)
    assert card["npz_sha256"][:10] in backbone.BACKBONE_VERSION


def test_contract_constants() -> None:
    assert len(MSD_TAGS) == len(set(MSD_TAGS)) == 50 and len(MTT_TAGS) == len(set(MTT_TAGS)) == 50
    assert MSD_TAGS[0] == "rock" and MTT_TAGS[:2] == ("guitar", "classical")
    assert EMBED_DIM == 200
    assert BACKBONE_COLUMNS == ("msd_tags", "mtt_tags", "msd_embedding", "mtt_embedding")


def test_log_mel_is_musicnn_recipe() -> None:
    rng = np.random.default_rng(1)
    y = (0.5 * rng.standard_normal(2 * musicnn.SR)).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96).T
    expected = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)
    got = musicnn.log_mel(y)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.isfinite(got).all() and got.max() > 4.8  # loud bins: no float16 overflow
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-5)


def _reference_forward(weights: dict[str, np.ndarray], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """musicnn's layers in their original order (conv+bias → ReLU → BN → max over frequency, ...)."""
    t = {k: torch.from_numpy(v) for k, v in weights.items()}

    def bn(z, name, dim):
        shape = [1] * z.dim()
        shape[dim] = -1
        g, b, m, v = (t[f"{name}/{p}"].view(shape) for p in ("gamma", "beta", "moving_mean", "moving_variance"))
        return (z - m) / torch.sqrt(v + 1e-3) * g + b

    x = bn(x.unsqueeze(1), "batch_normalization", 1)
    blocks = []
    for conv, norm, pad in musicnn._FRONT:
        w = t[f"{conv}/kernel"].permute(3, 2, 0, 1)
        z = torch.relu(F.conv2d(F.pad(x, (0, 0, *pad)), w, t[f"{conv}/bias"]))
        blocks.append(bn(z, norm, 1).amax(dim=3))
    h = torch.cat(blocks, 1)
    feats = [h]
    for i, (conv, norm) in enumerate(musicnn._MID):
        w = t[f"{conv}/kernel"][:, :, 0, :].permute(2, 1, 0)
        z = bn(torch.relu(F.conv1d(F.pad(h, (3, 3)), w, t[f"{conv}/bias"])), norm, 1)
        h = z if i == 0 else z + h
        feats.append(h)
    mid = torch.cat(feats, 1)
    pooled = bn(torch.stack([mid.amax(2), mid.mean(2)], 2).flatten(1), "batch_normalization_9", 1)
    pen = bn(torch.relu(pooled @ t["dense/kernel"] + t["dense/bias"]), "batch_normalization_10", 1)
    return pen @ t["dense_1/kernel"] + t["dense_1/bias"], pen


@needs_audio
@pytest.mark.parametrize("model", musicnn.MODELS)
def test_network_equals_layer_by_layer_reference(model: str) -> None:
    y, sr = _load(BRAHMS, duration=7.0)
    x = torch.from_numpy(musicnn.mel_patches(backbone.to_backbone_rate(y, sr)))
    with np.load(musicnn.weights_path(model)) as npz:
        weights = {k: npz[k] for k in npz.files}
    with torch.inference_mode():
        logits, pen = musicnn.load_model(model)(x)
        ref_logits, ref_pen = _reference_forward(weights, x)
    assert logits.shape == (2, 50) and pen.shape == (2, EMBED_DIM)
    assert float((torch.sigmoid(logits) - torch.sigmoid(ref_logits)).abs().max()) < 1e-5
    assert float((pen - ref_pen).abs().max()) < 1e-4


@needs_audio
def test_patch_outputs_vary_across_patches_of_a_real_clip() -> None:
    y, sr = _load(music_ogg())
    for model in musicnn.MODELS:
        taggram, emb = backbone.patch_outputs(y, sr, model=model)
        assert taggram.shape == (10, 50) and emb.shape == (10, EMBED_DIM)
        assert ((taggram >= 0) & (taggram <= 1)).all()
        assert taggram.std(axis=0).max() > 0.05  # a silently broken port repeats one row
        assert len({row.tobytes() for row in emb}) == 10


@needs_audio
def test_top_tags_of_known_clips_make_sense() -> None:
    brahms = backbone.backbone_outputs(*_load(BRAHMS))
    assert "classical" in _top(brahms["mtt_tags"], MTT_TAGS, 2)
    assert {"strings", "violin"} & set(_top(brahms["mtt_tags"], MTT_TAGS, 3))
    drums = backbone.backbone_outputs(*_load(DRUM_BASS))
    assert {"drums", "beat", "beats"} & set(_top(drums["mtt_tags"], MTT_TAGS, 4))
    assert "classical" not in _top(drums["mtt_tags"], MTT_TAGS, 10)
    vocal = backbone.backbone_outputs(*_load(VOCAL))
    assert {"female vocalists", "female vocalist"} & set(_top(vocal["msd_tags"], MSD_TAGS, 3))


@needs_audio
def test_outputs_are_deterministic_float32_clip_means() -> None:
    y, sr = _load(music_ogg(), duration=9.0)
    first, second = backbone.backbone_outputs(y, sr), backbone.backbone_outputs(y.copy(), sr)
    assert tuple(first) == BACKBONE_COLUMNS
    for c in BACKBONE_COLUMNS:
        assert first[c].dtype == np.float32 and np.array_equal(first[c], second[c])
    assert first["msd_tags"].shape == (50,) and first["mtt_embedding"].shape == (EMBED_DIM,)
    taggram, emb = backbone.patch_outputs(y, sr, model=backbone.MTT_MODEL)
    np.testing.assert_allclose(first["mtt_tags"], taggram.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(first["mtt_embedding"], emb.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_short_clip_is_zero_padded_to_one_patch() -> None:
    rng = np.random.default_rng(2)
    y = (0.2 * rng.standard_normal(musicnn.SR)).astype(np.float32)  # 1 s at 16 kHz
    taggram, _ = backbone.patch_outputs(y, musicnn.SR)
    padded, _ = backbone.patch_outputs(np.pad(y, (0, 3 * musicnn.SR - y.size)), musicnn.SR)
    assert taggram.shape == (1, 50) and np.array_equal(taggram, padded)
    with pytest.raises(ValueError):
        backbone.backbone_outputs(np.zeros(0, dtype=np.float32), 22050)


def test_model_card_records_source() -> None:
    card = json.loads(musicnn.weights_path("MSD_musicnn").with_suffix(".json").read_text())
    assert card["source"]["licence"] == "ISC" and len(card["source"]["wheel_sha256"]) == 64
    assert card["audio_representation"] == {
        "resample_sr": musicnn.SR, "n_fft": musicnn.N_FFT, "hop": musicnn.HOP, "n_mels": musicnn.N_MELS,
        "n_frames": musicnn.PATCH_FRAMES, "pre_processing": "logC",
    }
