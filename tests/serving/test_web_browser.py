"""The page in a real headless Chromium (Selenium + the Debian chromedriver) against the real app.

The app (real test bundle, see conftest) is served by uvicorn on a free 127.0.0.1 port in a thread.
Chromium is started with its background networking off and every non-loopback request sent to a
closed proxy port, so the test talks to loopback only. Screenshots go to
``test-artifacts/screenshots/``. Skipped when chromium or chromedriver is absent.
"""

import shutil
from collections.abc import Iterator

import pytest

from pipelines import store
from pipelines.rank import recommender as ranking
from serving.app import create_app
from tests.helpers import uvicorn_on_loopback
from tests.serving.conftest import CHROMEDRIVER, CHROMIUM

SCREENSHOTS = store.REPO_ROOT / "test-artifacts" / "screenshots"
WAIT_S = 30

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()) or shutil.which(str(CHROMEDRIVER)) is None,
    reason="chromium / chromedriver not installed",
)


@pytest.fixture(scope="module")
def base_url(bundle_dir, mood_adapter) -> Iterator[str]:
    app = create_app(
        bundle_dir=bundle_dir,
        recommender_factory=lambda b: ranking.Recommender(b, query_mood=mood_adapter),
    )
    with uvicorn_on_loopback(app) as url:
        yield url


def _shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


_RESULTS_JS = """
return [...document.querySelectorAll('#results > li[data-track-id]')].map(li => ({
  id: li.dataset.trackId,
  artist: (li.querySelector('.artist') || {textContent: ''}).textContent,
  title: li.querySelector('.result-title').textContent,
  origin: li.querySelector('.track-id').textContent,
  audio: [...li.querySelectorAll('audio')].map(a => [a.getAttribute('src'), a.getAttribute('preload'), a.controls]),
  meta: (li.querySelector('.meta') || {textContent: ''}).textContent,
  href: (li.querySelector('.result-title a') || {href: null}).href,
  rel: (li.querySelector('.result-title a') || {rel: null}).rel,
}));
"""


def _has_genre(result: dict, genre: str) -> bool:
    """The result's year · genre line lists ``genre`` (the page joins a track's genres with ", ")."""
    parts = [p.strip() for p in result["meta"].split("·")]
    return any(genre in {g.strip() for g in part.split(",")} for part in parts)


def _seq(driver) -> int:
    return int(driver.execute_script("return Number(document.getElementById('results').dataset.seq || 0)"))


def _wait_for_answer(driver, *, after: int, query: str | None = None) -> list[dict]:
    """Wait until a request newer than ``after`` (for ``query``, when given) has been answered and
    rendered; its results."""
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d) -> bool:
        results = d.find_element("id", "results")
        return (
            _seq(d) > after and results.get_attribute("aria-busy") == "false"
            and (query is None or results.get_attribute("data-query") == query)
        )

    WebDriverWait(driver, WAIT_S).until(done)
    status = driver.find_element("id", "status")
    assert status.get_attribute("data-kind") != "error", status.text
    return driver.execute_script(_RESULTS_JS)


def test_search_filter_more_like_this(base_url, driver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base_url + "/")
    # the corpus density is drawn from GET /mood-map
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#mood-map .density rect")
    )
    assert driver.find_element(By.CSS_SELECTOR, "#mood-map .density").get_attribute("data-tracks-with-mood") == "500"

    assert not driver.find_element(By.ID, "seeds").is_displayed()

    # 1. type a query: live (debounced) results, no submit needed
    box = driver.find_element(By.CSS_SELECTOR, "input[type=search]#q")
    assert driver.switch_to.active_element == box  # autofocus: keyboard users can type at once
    seq = _seq(driver)
    box.send_keys("electronic dance music with heavy bass")
    first = _wait_for_answer(driver, after=seq, query="electronic dance music with heavy bass")
    assert len(first) == 20
    # every result is named by what identifies it (title, caption words, tags, source id), never "Untitled"
    assert all(r["title"].strip() and "Untitled" not in r["title"] for r in first)
    assert all(r["origin"].startswith(("MusicCaps · ", "catalogue · track_")) for r in first), first
    assert all(r["audio"] == [] for r in first)  # this bundle holds no audio: no players
    assert all(r["href"] and r["href"].startswith("https://") and "noopener" in r["rel"] for r in first)
    points = driver.find_elements(By.CSS_SELECTOR, "#mood-map .points circle")
    assert len(points) == 20  # every test track has a mood
    assert "Detected mood" in driver.find_element(By.ID, "mood-readout").text
    # per-signal breakdown: a bar, and (explain=true) a table of similarity × weight per signal
    top = driver.find_element(By.CSS_SELECTOR, "#results > li[data-track-id]")
    assert top.find_elements(By.CSS_SELECTOR, ".signal-bar .seg-text")
    why = top.find_element(By.CSS_SELECTOR, "details.why")
    why.find_element(By.TAG_NAME, "summary").send_keys(Keys.ENTER)  # keyboard opens it
    assert why.get_attribute("open") is not None
    rows = {r.find_element(By.TAG_NAME, "th").text: r for r in why.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert {"text", "mood"} <= set(rows)
    sim, value, weight, contribution = (float(td.text) for td in rows["text"].find_elements(By.TAG_NAME, "td"))
    assert contribution == pytest.approx(value * weight, abs=2e-3) and contribution > 0 and sim > 0
    _shot(driver, "01-results")

    # 2. a filter: only "electronic" genres
    seq = _seq(driver)
    driver.find_element(By.CSS_SELECTOR, "#genre-list input[value=electronic]").click()
    electronic = _wait_for_answer(driver, after=seq)
    assert electronic, "no electronic tracks returned"
    assert all(_has_genre(r, "electronic") for r in electronic), electronic
    assert {r["id"] for r in electronic} != {r["id"] for r in first}

    # 3. "not this artist" on the first result with a known artist
    items = driver.find_elements(By.CSS_SELECTOR, "#results > li[data-track-id]")
    target = next(li for li in items if li.find_element(By.CSS_SELECTOR, ".not-this-artist").is_enabled())
    artist = target.find_element(By.CSS_SELECTOR, ".artist").text
    assert artist in {r["artist"] for r in electronic}
    seq = _seq(driver)
    target.find_element(By.CSS_SELECTOR, ".not-this-artist").click()
    without = _wait_for_answer(driver, after=seq)
    assert without and artist not in {r["artist"] for r in without}
    assert all(_has_genre(r, "electronic") for r in without)
    chips = driver.find_elements(By.CSS_SELECTOR, "#excluded-artists [data-artist]")
    assert [c.get_attribute("data-artist") for c in chips] == [artist]
    _shot(driver, "02-filtered")

    # 4. "more like this" on the first result: the seed is sent, never returned, results change
    seed = without[0]["id"]
    seq = _seq(driver)
    driver.find_element(By.CSS_SELECTOR, f'#results > li[data-track-id="{seed}"] .more-like-this').click()
    similar = _wait_for_answer(driver, after=seq)
    assert similar and seed not in {r["id"] for r in similar}
    assert [r["id"] for r in similar] != [r["id"] for r in without]
    assert artist not in {r["artist"] for r in similar}  # the other filters still hold
    assert all(_has_genre(r, "electronic") for r in similar)
    seeds = driver.find_elements(By.CSS_SELECTOR, "#seed-list [data-seed-id]")
    assert [s.get_attribute("data-seed-id") for s in seeds] == [seed]
    _shot(driver, "03-more-like-this")

    # 5. keyboard only: focus the mood marker, arrow keys set a target mood, results follow
    marker = driver.find_element(By.CSS_SELECTOR, "#mood-map .marker")
    before = marker.get_attribute("aria-valuetext")
    seq = _seq(driver)
    marker.send_keys(Keys.SHIFT, Keys.ARROW_DOWN)
    marker.send_keys(Keys.ARROW_LEFT)
    targeted = _wait_for_answer(driver, after=seq)
    assert targeted and marker.get_attribute("aria-valuetext") != before
    assert driver.find_element(By.ID, "mood-readout").text.startswith("Target mood")
    assert driver.find_element(By.ID, "reset-target").is_enabled()
    _shot(driver, "04-target-mood")

    # 6. mouse: a click on the map's upper-right quadrant moves the target there (pleasant, energetic)
    from selenium.webdriver.common.action_chains import ActionChains

    m = driver.find_element(By.ID, "mood-map")
    scale = m.rect["width"] / 320  # viewBox 0 0 320 320; plot square x 40..296, y 12..268
    dx, dy = (40 + 256 * 0.875 - 160) * scale, (12 + 256 * 0.125 - 160) * scale
    seq = _seq(driver)
    ActionChains(driver).move_to_element_with_offset(m, int(dx), int(dy)).click().perform()
    assert _wait_for_answer(driver, after=seq)
    x, y = driver.execute_script(
        "const t = document.querySelector('#mood-map .marker').getAttribute('transform');"
        "return t.match(/translate\\(([-\\d.]+) ([-\\d.]+)\\)/).slice(1).map(Number);"
    )
    assert x == pytest.approx(40 + 256 * 0.875, abs=4) and y == pytest.approx(12 + 256 * 0.125, abs=4)
    assert "pleasant, energetic" in driver.find_element(By.ID, "mood-readout").text

    # no script errors, CSP violations or failed loads on the way
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_phone_width_has_no_horizontal_scroll(base_url, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(375, 812)
    try:
        driver.get(base_url + "/")
        assert not driver.find_element(By.ID, "seeds").is_displayed()  # no seeds yet
        assert driver.find_element(By.ID, "filters").get_attribute("open") is None  # folded on phones
        seq = _seq(driver)
        driver.find_element(By.ID, "q").send_keys("sad piano")
        assert _wait_for_answer(driver, after=seq, query="sad piano")
        width = driver.execute_script("return window.innerWidth")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width
        box = driver.find_element(By.ID, "q").rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
        _shot(driver, "05-phone")
    finally:
        driver.set_window_size(1280, 1000)
