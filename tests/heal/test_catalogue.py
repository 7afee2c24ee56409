"""The catalogue steps on small real-shaped frames: inbox listing, EMOPIA subsets, ingest with batches,
the music split with MOVED / resolved links."""

import polars as pl

from pipelines import schema as S
from pipelines.heal import democorpus
from pipelines.heal.catalogue import ingest_catalogue, music_catalogue, new_inbox_files, select_emopia
from pipelines.store import DATA_DIR


def test_new_inbox_files_lists_unknown_crawl_files_only(tmp_path) -> None:
    assert new_inbox_files(folder=tmp_path / "absent", known=set()) == []
    for name in ("b.csv", "a.parquet", "notes.txt", ".hidden.csv", "old.jsonl"):
        (tmp_path / name).write_text("x")
    (tmp_path / "dir.csv").mkdir()
    assert new_inbox_files(folder=tmp_path, known={"old.jsonl"}) == ["a.parquet", "b.csv"]


def test_select_emopia_balances_quadrant_and_split() -> None:
    labels = pl.DataFrame(
        {"clip_id": [f"c{i}" for i in range(8)], "quadrant": [1, 1, 2, 2, 3, 3, 4, 4], "split": ["train", "val"] * 4}
    )
    items = [(c, f"{c}.mid") for c in labels["clip_id"]]
    assert select_emopia(items, labels, None) == items and select_emopia(items, labels, 99) == items
    picked = select_emopia(items, labels, 4)
    assert len(picked) == 4 and picked == items[:4]  # one per (quadrant, split) group, in input order


def test_ingest_catalogue_merges_inbox_batches_into_the_crawl(tmp_path) -> None:
    rows = democorpus.musiccaps_rows(data_dir=DATA_DIR)
    rows.head(4).write_csv(tmp_path / "crawl.csv")
    batch = ingest_catalogue(
        crawl=str(tmp_path / "crawl.csv"), emopia_audio=None, batches=[], data_dir=DATA_DIR, jamendo_limit=None
    )[0].tracks
    extra, _ = ingest_catalogue(
        crawl=str(tmp_path / "crawl.csv"),
        emopia_audio=None,
        batches=[pl.concat([rows.slice(4, 2), rows.head(1)], how="diagonal_relaxed")],
        data_dir=DATA_DIR,
        jamendo_limit=None,
    )
    result, source = ingest_catalogue(
        crawl=str(tmp_path / "crawl.csv"),
        emopia_audio=None,
        batches=[extra.tracks],
        data_dir=DATA_DIR,
        jamendo_limit=None,
    )
    assert batch.height == 4 and extra.tracks.height == 6
    assert result.tracks.height == 6 and result.stats["batches"] == 1
    assert source.endswith("+ 1 inbox batch(es)")


def _tracks() -> pl.DataFrame:
    columns = (
        S.TRACK_ID,
        S.TITLE,
        S.ARTIST,
        S.GENRE,
        S.TAGS,
        S.DESCRIPTION,
        S.VIBE_TEXT,
        S.PERMALINK_URL,
        S.AUDIO_PATH,
    )
    return pl.DataFrame(
        {
            S.TRACK_ID: ["a", "b", "c"],
            S.TITLE: ["Song", "Song", "Talk"],
            S.ARTIST: ["X", "X", "Y"],
            S.GENRE: ["rock", "rock", "podcast"],
            S.TAGS: [None, None, "podcast, interview"],
            S.DESCRIPTION: [None, None, "a weekly podcast episode"],
            S.VIBE_TEXT: [None, None, None],
            S.PERMALINK_URL: ["http://h/a", "http://h/b", "http://h/c"],
            S.AUDIO_PATH: [None, None, None],
        },
        schema=dict.fromkeys(columns, pl.Utf8),
    )


def test_music_catalogue_moves_links_and_rejects_non_music() -> None:
    status = pl.DataFrame(
        {
            S.TRACK_ID: ["a", "b", "c"],
            S.URL_STATUS: ["MOVED", "VALID", "VALID"],
            S.HTTP_CODE: [301, 200, 200],
            S.FINAL_URL: ["http://h/new-a", None, None],
        }
    )
    audio = pl.DataFrame({S.TRACK_ID: [], S.AUDIO_ERROR: []}, schema={S.TRACK_ID: pl.Utf8, S.AUDIO_ERROR: pl.Utf8})
    got = music_catalogue(tracks=_tracks(), audio_features=audio, link_status=status, classifier=None)
    music = {r[S.TRACK_ID]: r for r in got.music.iter_rows(named=True)}
    assert set(music) == {"a", "b"} and got.rejected[S.TRACK_ID].to_list() == ["c"]
    assert music["a"][S.PERMALINK_URL] == "http://h/new-a" and music["a"][S.URL_ORIGINAL] == "http://h/a"
    assert music["b"][S.PERMALINK_URL] == "http://h/b"
    assert got.verdict[S.MUSIC_PROBABILITY].null_count() == 3  # no classifier: nothing scored
    assert got.resolutions.height == 0
