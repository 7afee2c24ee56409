"""Column names and table contracts shared by every stage (one place, no string literals elsewhere)."""

# --- crawl schema (what a user's crawl file may contain) -------------------------------------
TRACK_ID = "track_id"
TITLE = "title"
ARTIST = "artist"
YEAR = "year"
CREATED_AT = "created_at"
GENRE = "genre"
TAGS = "tags"
DESCRIPTION = "description"
PLAYBACK_COUNT = "playback_count"
PERMALINK_URL = "permalink_url"
VIBE_TEXT = "extracted_vibe_text"
AUDIO_PATH = "audio_path"
SOURCE = "source"  # provenance of the row (dataset name or crawl file), never a label

CRAWL_COLUMNS: tuple[str, ...] = (
    TRACK_ID, TITLE, ARTIST, YEAR, CREATED_AT, GENRE, TAGS, DESCRIPTION,
    PLAYBACK_COUNT, PERMALINK_URL, VIBE_TEXT, AUDIO_PATH, SOURCE,
)
# Text columns of the crawl (strings or null). `tags` is a comma-separated string in a crawl file.
CRAWL_TEXT_COLUMNS: tuple[str, ...] = (
    TRACK_ID, TITLE, ARTIST, CREATED_AT, GENRE, TAGS, DESCRIPTION, PERMALINK_URL, VIBE_TEXT,
    AUDIO_PATH, SOURCE,
)

# --- link status --------------------------------------------------------------------------
URL_STATUS = "url_status"
HTTP_CODE = "http_code"
FINAL_URL = "final_url"
REASON = "reason"
CHECKED_AT = "checked_at"
VALID = "VALID"
MOVED = "MOVED"
REQUIRES_AUTH = "REQUIRES_AUTH"
DEAD = "DEAD"
UNKNOWN = "UNKNOWN"
BLOCKED = "BLOCKED"
LINK_STATUSES: tuple[str, ...] = (VALID, MOVED, REQUIRES_AUTH, DEAD, UNKNOWN, BLOCKED)

# --- music filter / imputation -----------------------------------------------------------
IS_MUSIC = "is_music"
MUSIC_REASON = "music_reason"
GENRE_SOURCE = "genre_source"  # observed / imputed / null
TAGS_SOURCE = "tags_source"
DESCRIPTION_SOURCE = "description_source"
TEXT_DOC = "text_doc"  # the text a track is embedded from

# --- audio -------------------------------------------------------------------------------
AUDIO_SOURCE = "audio_source"  # extracted / knn / prototype / regression / ensemble / none
AUDIO_CONFIDENCE = "audio_confidence"
AUDIO_ERROR = "audio_error"

# --- mood --------------------------------------------------------------------------------
VALENCE = "valence"
AROUSAL = "arousal"
MOOD_SOURCE = "mood_source"  # audio / text / imputed / genre / artist / fused (null: no evidence)
MOOD_CONFIDENCE = "mood_confidence"

# --- ingest quarantine ---------------------------------------------------------------------
ROW_NUMBER = "row_number"  # 1-based data row in the crawl file (header not counted)
RAW = "raw"  # JSON of the row's raw values as read
# (the quarantine reason uses REASON above)

# --- link status table (appended by linkcheck) ----------------------------------------------
LINK_URL = "url"  # the URL a link-status row checked (the crawl's PERMALINK_URL value)

# --- derived link status and recovery -------------------------------------------------------------
LINK_SUSPECT = "SUSPECT"  # derived only: one DEAD check, or DEAD checks not yet far enough apart (still served)
DEAD_CHECKS = "dead_checks"  # DEAD checks since the last conclusive live one
FIRST_DEAD_AT = "first_dead_at"  # checked_at of the first of those
URL_ORIGINAL = "permalink_url_original"  # the crawled URL before MOVED/resolver replaced it
URL_RESOLUTION_SOURCE = "url_resolution_source"  # resolver name that replaced a DEAD link, else null
URL_RESOLUTION_SCORE = "url_resolution_score"  # that resolver's match score in [0, 1]
URL_RESOLVED_FROM = "url_resolved_from"  # track_id of the catalogue row whose live link was taken
MUSIC_PROBABILITY = "music_probability"  # learned classifier's P(music), null where not scored
DONOR_TRACK_ID = "donor_track_id"  # live track whose genre/tags a DEAD track inherited
TAGS_DONOR_TRACK_ID = "tags_donor_track_id"  # live track whose tags a DEAD track inherited

# --- multi-valued cells ------------------------------------------------------------------------
# A genre cell may hold several genres ("rock, indie / pop"); every reader splits on these.
GENRE_SEPARATORS = ",|;/"
GENRE_SPLIT_PATTERN = r"\s*[,|;/]\s*"  # regex (Python and DuckDB) splitting a genre cell
PRIMARY_GENRE_PATTERN = r"^\s*([^,|;/]*[^,|;/\s])"  # regex capturing a cell's first genre
