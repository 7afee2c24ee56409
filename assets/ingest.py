"""Ingest: the demo's EMOPIA clips rendered, inbox crawl batches, and the ingested catalogue."""

from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.metadata import counts_md, null_rates, value_counts
from assets.modelcache import reuses_model, table_version
from assets.partitions import crawl_batches
from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio.render import render_many
from pipelines.heal.catalogue import ingest_catalogue, select_emopia
from pipelines.heal.democorpus import emopia_midi_items
from pipelines.heal.ingest import IngestResult, ingest
from pipelines.store import DATA_DIR, StoreLayout, read_table

CRAWL_QUALITY_COLUMNS = [S.TITLE, S.ARTIST, S.YEAR, S.GENRE, S.TAGS, S.DESCRIPTION, S.PLAYBACK_COUNT, S.PERMALINK_URL]


def _rendered_files_exist(layout: StoreLayout) -> bool:
    path = layout.table("emopia_audio")
    if not path.exists():
        return False
    rendered = read_table(path).filter(pl.col("render_error").is_null())
    return all(Path(p).is_file() for p in rendered.get_column("audio_path").to_list())


@asset(group_name="ingest", compute_kind="fluidsynth", code_version="1")
@reuses_model(
    artifact=lambda layout: layout.table("emopia_audio"), data=("emopia",),
    settings=lambda s: {"emopia_limit": s.emopia_limit}, valid=_rendered_files_exist,
)
def emopia_audio(
    context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource
) -> MaterializeResult:
    """EMOPIA piano MIDI clips rendered to audio with FluidSynth (GM soundfont), one file per clip.

    The demo corpus uses them as audio-bearing tracks and the audio mood model trains on them
    (their quadrant labels stay in ``data/emopia/labels.csv``, never in track metadata).
    Re-runs skip clips whose audio is newer than the MIDI; with the same MIDI files and clip limit
    the rendered set is reused as is (``assets.modelcache``).
    """
    labels = pl.read_csv(DATA_DIR / "emopia" / "labels.csv")
    items = select_emopia(emopia_midi_items(data_dir=DATA_DIR), labels, settings.emopia_limit)
    folder = store.layout().audio("emopia")
    rendered = render_many(items=items, out_dir=folder, workers=settings.workers, progress=settings.progress)
    store.write(rendered, "emopia_audio")
    errors = rendered.filter(pl.col("render_error").is_not_null())
    for row in errors.head(5).iter_rows(named=True):
        context.log.warning(f"render failed for {row['clip_id']}: {row['render_error']}")
    return MaterializeResult(
        metadata={
            "clips": rendered.height,
            "render_errors": errors.height,
            "render_s_total": round(float(rendered.get_column("render_s").sum() or 0.0), 2),
            "folder": MetadataValue.path(str(folder)),
        }
    )


def _quarantine_md(result: IngestResult):
    return counts_md(value_counts(result.quarantine, S.REASON), key="reason") if result.quarantine.height else "none"


@asset(group_name="ingest", partitions_def=crawl_batches, compute_kind="polars", code_version="1")
def crawl_batch(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """One crawl file from the inbox (partition = its file name), ingested with quarantine.

    A re-run of a partition overwrites exactly its own two files.
    """
    key = context.partition_key
    result = ingest(path=store.inbox() / key)
    store.write(result.tracks, "crawl_batches", key)
    store.write(result.quarantine, "crawl_batch_quarantine", key)
    return MaterializeResult(
        metadata={
            **{k: v for k, v in result.stats.items() if isinstance(v, (int, float, str))},
            "quarantine_reasons": _quarantine_md(result),
        },
        data_version=table_version(result.tracks),
    )


def _preview(df: pl.DataFrame, n: int = 5) -> str:
    cols = [c for c in (S.TRACK_ID, S.TITLE, S.ARTIST, S.GENRE, S.SOURCE) if c in df.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.head(n).iter_rows(named=True):
        rows.append("| " + " | ".join(str(r[c])[:40] for c in cols) + " |")
    return "\n".join(rows)


@asset(group_name="ingest", deps=["emopia_audio", "crawl_batch"], compute_kind="polars", code_version="1")
def raw_tracks(context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource) -> MaterializeResult:
    """The crawl, ingested: typed columns, stable track ids, duplicates merged, bad rows quarantined.

    Source: the file named by ``MOODSCAPE_CRAWL`` (CSV / Parquet / JSON Lines) or, by default, the
    bundled demo corpus (MusicCaps, MTG-Jamendo, EMOPIA rendered clips, immich, librosa clips),
    plus every crawl batch ingested from the inbox (duplicates across them merged).
    """
    result, source = ingest_catalogue(
        crawl=settings.crawl,
        emopia_audio=None if settings.crawl else store.load("emopia_audio"),
        batches=[read_table(p) for p in store.layout().batch_tables("crawl_batches")],
        data_dir=DATA_DIR,
        jamendo_limit=settings.jamendo_limit,
    )
    store.write(result.tracks, "raw_tracks")
    store.write(result.quarantine, "quarantine")
    context.log.info(f"ingested {result.stats}")
    return MaterializeResult(
        metadata={
            "source": source,
            **{k: v for k, v in result.stats.items() if isinstance(v, (int, float, str))},
            "rows_by_source": counts_md(value_counts(result.tracks, S.SOURCE), key="source"),
            "null_rates": MetadataValue.json(null_rates(result.tracks, CRAWL_QUALITY_COLUMNS)),
            "quarantine_reasons": _quarantine_md(result),
            "preview": MetadataValue.md(_preview(result.tracks)),
        },
        data_version=table_version(result.tracks),
    )
