"""The real audio clips the audio tests use: bundled librosa examples and immich tracks."""

from pathlib import Path

import pytest

from pipelines.store import DATA_DIR

SHARED_AUDIO = Path("/work/shared/data/open/audio")
AUDIO_ROOT = DATA_DIR / "audio" if (DATA_DIR / "audio").is_dir() else SHARED_AUDIO
OGG = sorted((AUDIO_ROOT / "librosa").glob("*.ogg"))
OPUS = sorted((AUDIO_ROOT / "immich" / "tracks").glob("*/*.opus"))
SHORT = AUDIO_ROOT / "librosa" / "198-209-0000.ogg"  # speech clip, 74 kB
MUSIC = AUDIO_ROOT / "librosa" / "Karissa_Hobbs_-_Lets_Go_Fishin.ogg"  # music, 734 kB
needs_audio = pytest.mark.skipif(
    not (OGG and OPUS and SHORT.is_file() and MUSIC.is_file()), reason="bundled librosa / immich audio missing"
)


def music_ogg() -> Path:
    """A real music clip (Kevin MacLeod, Vibe Ace) from the bundled librosa examples."""
    return next(p for p in OGG if "Vibe_Ace" in p.name)
