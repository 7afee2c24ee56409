/* Moodscape page: live search against POST /recommend, filters, a draggable mood map.
   Plain ES2020, no dependencies, no build step. All data is rendered with textContent /
   setAttribute (never innerHTML), so titles and tags from the crawl cannot inject markup. */
(() => {
  "use strict";

  const SVG_NS = "http://www.w3.org/2000/svg";
  const DEBOUNCE_MS = 250;
  const TOP_K = 20;
  const MAX_SEEDS = 10;
  const KEY_STEP = 0.05;
  const KEY_BIG_STEP = 0.25;
  // Mood map geometry (viewBox 0 0 320 320): the plot square and its margins for axis labels.
  const PLOT = { x: 40, y: 12, size: 256 };
  const SIGNALS = ["text", "audio", "mood", "collab"];

  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const els = {
    form: $("search-form"), q: $("q"), status: $("status"), results: $("results"),
    resultsTitle: $("results-title"), seeds: $("seeds"), seedList: $("seed-list"),
    clearSeeds: $("clear-seeds"), minYear: $("min-year"), maxYear: $("max-year"),
    genreList: $("genre-list"), excluded: $("excluded-artists"), excludeInput: $("exclude-artist"),
    excludeAdd: $("exclude-artist-add"), diversity: $("diversity"), diversityValue: $("diversity-value"),
    map: $("mood-map"), readout: $("mood-readout"), resetTarget: $("reset-target"),
  };

  const state = {
    seeds: [],            // [{id, label}]
    excludedArtists: [],  // [name]
    target: null,         // {valence, arousal} set by the user, or null = use the detected mood
    detected: null,       // {valence, arousal, confidence} of the last response
    results: [],
    defaultDiversity: Number(app.dataset.defaultDiversity || 0.3),
  };

  let debounceTimer = 0;
  let inFlight = null;
  let requestSeq = 0;

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "className") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
  const fmt = (x, digits = 2) => (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(digits);

  function moodWords(v, a) {
    if (Math.abs(v) < 0.15 && Math.abs(a) < 0.15) return "neutral";
    const val = v >= 0.15 ? "pleasant" : v <= -0.15 ? "unpleasant" : "";
    const aro = a >= 0.15 ? "energetic" : a <= -0.15 ? "calm" : "";
    return [val, aro].filter(Boolean).join(", ");
  }

  function moodColour(v, a) {
    // valence → hue (blue-violet for unpleasant, warm yellow for pleasant), arousal → lightness
    const hue = 250 - (clamp(v, -1, 1) + 1) * 100;
    const light = 42 + clamp(a, -1, 1) * 12;
    return `hsl(${hue.toFixed(0)} 70% ${light.toFixed(0)}%)`;
  }

  function safeHref(url) {
    try {
      const u = new URL(url, window.location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  // ------------------------------------------------------------------ request
  function currentFilters() {
    const f = {};
    const lo = els.minYear.value.trim();
    const hi = els.maxYear.value.trim();
    if (lo !== "" && Number.isFinite(Number(lo))) f.min_year = Math.trunc(Number(lo));
    if (hi !== "" && Number.isFinite(Number(hi))) f.max_year = Math.trunc(Number(hi));
    const genres = [...els.genreList.querySelectorAll('input[name="genre"]:checked')].map((i) => i.value);
    if (genres.length) f.genres = genres;
    if (state.excludedArtists.length) f.exclude_artists = [...state.excludedArtists];
    return f;
  }

  function buildRequest(query) {
    const body = { query, top_k: TOP_K, explain: true };
    const filters = currentFilters();
    if (Object.keys(filters).length) body.filters = filters;
    if (state.seeds.length) body.seed_track_ids = state.seeds.map((s) => s.id);
    if (state.target) body.target = { valence: state.target.valence, arousal: state.target.arousal };
    const diversity = Number(els.diversity.value);
    if (Math.abs(diversity - state.defaultDiversity) > 1e-9) body.diversity = diversity;
    return body;
  }

  function setStatus(text, kind = "") {
    els.status.textContent = text;
    els.status.dataset.kind = kind;
  }

  function scheduleSearch(delay = DEBOUNCE_MS) {
    window.clearTimeout(debounceTimer);
    debounceTimer = window.setTimeout(runSearch, delay);
  }

  async function runSearch() {
    window.clearTimeout(debounceTimer);
    const query = els.q.value.trim();
    if (!query) {
      if (inFlight) inFlight.abort();
      state.results = [];
      renderResults(null);
      setStatus(state.seeds.length ? "Type a query to search with these seeds." : "");
      return;
    }
    const f = currentFilters();
    if (f.min_year !== undefined && f.max_year !== undefined && f.min_year > f.max_year) {
      setStatus("The year range is empty: “from” is after “to”.", "error");
      return;
    }
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    const seq = ++requestSeq;
    els.results.setAttribute("aria-busy", "true");
    app.classList.add("loading");
    const started = performance.now();
    try {
      const resp = await fetch("/recommend", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(buildRequest(query)),
        signal: controller.signal,
      });
      const data = await resp.json().catch(() => ({}));
      if (seq !== requestSeq) return; // a newer request owns the page
      els.results.dataset.seq = String(seq); // answered request number and its query, for automation
      els.results.dataset.query = query;
      if (!resp.ok) {
        setStatus(`Request failed (${resp.status}): ${data.detail || resp.statusText}`, "error");
        return;
      }
      state.results = data.results || [];
      state.detected = data.mood_detected || null;
      renderResults(data, performance.now() - started);
      renderMarker();
      renderPoints();
    } catch (err) {
      if (err.name !== "AbortError" && seq === requestSeq) setStatus(`Network error: ${err.message}`, "error");
    } finally {
      if (seq === requestSeq) {
        els.results.setAttribute("aria-busy", "false");
        app.classList.remove("loading");
        inFlight = null;
      }
    }
  }

  // ------------------------------------------------------------------ results
  function renderResults(data, elapsedMs) {
    els.results.replaceChildren();
    if (!data) return;
    const n = state.results.length;
    const md = data.metadata || {};
    const parts = [`${n} result${n === 1 ? "" : "s"}`];
    if (data.query_type) parts.push(`${data.query_type} query`);
    if (data.mood_detected) {
      parts.push(`mood ${moodWords(data.mood_detected.valence, data.mood_detected.arousal)}`);
    }
    if (md.processing_time_ms !== undefined) parts.push(`${md.processing_time_ms.toFixed(0)} ms server`);
    else if (elapsedMs !== undefined) parts.push(`${elapsedMs.toFixed(0)} ms`);
    setStatus(n ? parts.join(" · ") : "No tracks match. Try loosening the filters.");
    state.results.forEach((t, i) => els.results.appendChild(renderTrack(t, i)));
  }

  function renderTrack(t, i) {
    const li = el("li", { className: "result", "data-track-id": t.track_id });
    const head = el("div", { className: "result-head" });
    const titleText = displayTitle(t);
    const titleId = `result-title-${i}`;
    const h = el("h3", { className: "result-title", id: titleId });
    const href = t.permalink_url ? safeHref(t.permalink_url) : null;
    if (href) {
      const a = el("a", { href, target: "_blank", rel: "noopener noreferrer" }, titleText);
      a.appendChild(el("span", { className: "visually-hidden" }, " (opens in a new tab)"));
      h.appendChild(a);
    } else {
      h.textContent = titleText;
    }
    head.appendChild(h);
    const status = t.url_status || "UNKNOWN";
    head.appendChild(el("span", { className: `badge link-${status.toLowerCase()}`, title: "Link status" }, linkLabel(status)));
    li.appendChild(head);

    // Who made it, as stored (catalogue ids included), then where the track comes from.
    const d = t.display || {};
    if (t.artist) li.appendChild(el("p", { className: "artist" }, t.artist));
    const origin = d.source ? `${d.source} · ${d.source_id}` : t.track_id;
    li.appendChild(el("p", { className: "track-id muted" }, origin));
    if (!t.title && d.caption && d.title_from !== "caption") {
      li.appendChild(el("p", { className: "caption muted" }, d.caption));
    }
    if (t.audio_url) {
      const player = el("audio", {
        controls: true, preload: "none", src: t.audio_url, className: "player",
        "aria-label": `Play ${titleText}`,
      });
      li.appendChild(player);
    }

    const meta = [];
    if (t.year !== null && t.year !== undefined) meta.push(String(t.year));
    if (t.genre) meta.push(t.genre.split(/\s*[,|;/]\s*/).filter(Boolean).join(", "));
    if (meta.length) li.appendChild(el("p", { className: "meta" }, meta.join(" · ")));
    if (t.tags && t.tags.length) {
      const tags = el("ul", { className: "tags", "aria-label": "Tags" });
      t.tags.slice(0, 8).forEach((tag) => tags.appendChild(el("li", {}, tag)));
      li.appendChild(tags);
    }

    li.appendChild(renderScore(t));
    li.appendChild(renderMood(t.mood));

    const actions = el("div", { className: "actions" });
    const more = el("button", {
      type: "button", className: "more-like-this", "aria-describedby": titleId,
      disabled: state.seeds.length >= MAX_SEEDS && !state.seeds.some((s) => s.id === t.track_id),
    }, "More like this");
    more.addEventListener("click", () => addSeed(t));
    const notArtist = el("button", {
      type: "button", className: "not-this-artist", disabled: !t.artist,
      "aria-label": t.artist ? `Not this artist: ${t.artist}` : "Not this artist (artist unknown)",
    }, "Not this artist");
    notArtist.addEventListener("click", () => excludeArtist(t.artist));
    actions.append(more, notArtist);
    li.appendChild(actions);
    return li;
  }

  // The title, else what identifies the track (the server's display title: caption words, tags, source id).
  function displayTitle(t) {
    if (t.title) return t.title;
    if (t.display && t.display.title) return t.display.title;
    return t.track_id;
  }

  function linkLabel(status) {
    return {
      VALID: "link OK", MOVED: "link moved", REQUIRES_AUTH: "login needed", UNKNOWN: "link unchecked",
      SUSPECT: "link suspect", DEAD: "link dead", BLOCKED: "link blocked",
    }[status] || `link ${status.toLowerCase()}`;
  }

  function renderScore(t) {
    const wrap = el("div", { className: "score" });
    const sig = t.signals || {};
    const label = el("p", { className: "score-label" });
    label.append(el("span", { className: "score-value" }, `score ${t.score.toFixed(3)}`));
    const parts = SIGNALS.filter((s) => (sig[s] || 0) > 0.0005).map((s) => `${s} ${sig[s].toFixed(2)}`);
    if ((sig.popularity_penalty || 0) < 0) parts.push(`popularity −${Math.abs(sig.popularity_penalty).toFixed(2)}`);
    if (parts.length) label.append(el("span", { className: "signal-text muted" }, ` (${parts.join(", ")})`));
    wrap.appendChild(label);
    if (Object.keys(sig).length) {
      // Scores are at most 1: each segment is its contribution on that absolute scale.
      const bar = el("div", { className: "signal-bar", "aria-hidden": "true" });
      for (const s of SIGNALS) {
        const v = sig[s] || 0;
        if (v <= 0) continue;
        const seg = el("span", { className: `seg seg-${s}`, title: `${s}: ${v.toFixed(3)}` });
        seg.style.width = `${(clamp(v, 0, 1) * 100).toFixed(2)}%`;
        bar.appendChild(seg);
      }
      if ((sig.popularity_penalty || 0) < 0) {
        const seg = el("span", { className: "seg seg-penalty", title: `popularity penalty: ${sig.popularity_penalty.toFixed(3)}` });
        seg.style.width = `${(clamp(-sig.popularity_penalty, 0, 1) * 100).toFixed(2)}%`;
        bar.appendChild(seg);
      }
      wrap.appendChild(bar);
    }
    if (t.explanation) wrap.appendChild(renderExplanation(t.explanation, sig));
    return wrap;
  }

  // explanation (explain=true): raw similarity, its value after normalisation over the candidates
  // (when the server reports one), effective weight; value × weight = contribution, per signal
  function renderExplanation(ex, sig) {
    const details = el("details", { className: "why" });
    details.appendChild(el("summary", {}, "Why this score?"));
    const table = el("table");
    const head = el("tr");
    ["signal", "similarity", "value", "weight", "contribution"].forEach((h) => head.appendChild(el("th", { scope: "col" }, h)));
    table.appendChild(el("thead")).appendChild(head);
    const tbody = el("tbody");
    const simKey = { text: "text_sim", audio: "audio_sim", mood: "mood_sim", collab: "collab" };
    for (const s of SIGNALS) {
      const simv = ex[simKey[s]];
      const w = ex[`w_${s}`];
      if (simv === undefined && w === undefined) continue;
      const value = ex[`${s}_value`] !== undefined ? ex[`${s}_value`] : simv;
      const row = el("tr");
      row.appendChild(el("th", { scope: "row" }, s));
      row.appendChild(el("td", {}, simv === undefined ? "–" : simv.toFixed(3)));
      row.appendChild(el("td", {}, value === undefined ? "–" : value.toFixed(3)));
      row.appendChild(el("td", {}, w === undefined ? "–" : w.toFixed(3)));
      row.appendChild(el("td", {}, (sig[s] || 0).toFixed(3)));
      tbody.appendChild(row);
    }
    table.appendChild(tbody);
    details.appendChild(table);
    const notes = [];
    if (ex.mood_confidence !== undefined) notes.push(`track mood confidence ${ex.mood_confidence.toFixed(2)}`);
    if (ex.query_mood_confidence !== undefined) notes.push(`query mood confidence ${ex.query_mood_confidence.toFixed(2)}`);
    if ((sig.popularity_penalty || 0) < 0) notes.push(`popularity penalty ${sig.popularity_penalty.toFixed(3)}`);
    if (notes.length) details.appendChild(el("p", { className: "muted" }, notes.join(" · ")));
    return details;
  }

  function renderMood(m) {
    const p = el("p", { className: "mood" });
    if (!m || m.valence === null || m.valence === undefined || m.arousal === null || m.arousal === undefined) {
      p.textContent = "Mood unknown";
      return p;
    }
    const sw = el("span", { className: "swatch", "aria-hidden": "true" });
    sw.style.background = moodColour(m.valence, m.arousal);
    p.appendChild(sw);
    let text = `${moodWords(m.valence, m.arousal)} (valence ${fmt(m.valence)}, arousal ${fmt(m.arousal)}`;
    if (m.source) text += `, from ${m.source}`;
    if (m.confidence !== null && m.confidence !== undefined) text += `, confidence ${m.confidence.toFixed(2)}`;
    p.appendChild(document.createTextNode(text + ")"));
    return p;
  }

  // ------------------------------------------------------------------ seeds and exclusions
  function addSeed(t) {
    if (!state.seeds.some((s) => s.id === t.track_id)) {
      if (state.seeds.length >= MAX_SEEDS) state.seeds.shift();
      state.seeds.push({ id: t.track_id, label: displayTitle(t) });
    }
    renderSeeds();
    els.resultsTitle.focus();
    runSearch();
  }

  function renderSeeds() {
    els.seedList.replaceChildren();
    state.seeds.forEach((s) => {
      const li = el("li", { className: "chip", "data-seed-id": s.id });
      li.appendChild(el("span", {}, s.label));
      const rm = el("button", { type: "button", "aria-label": `Remove seed ${s.label}` }, "×");
      rm.addEventListener("click", () => {
        state.seeds = state.seeds.filter((x) => x.id !== s.id);
        renderSeeds();
        (els.seedList.querySelector("button") || els.q).focus();
        runSearch();
      });
      li.appendChild(rm);
      els.seedList.appendChild(li);
    });
    els.seeds.hidden = state.seeds.length === 0;
  }

  function excludeArtist(name, { focusResults = true } = {}) {
    const artist = (name || "").trim();
    if (!artist || state.excludedArtists.includes(artist)) return;
    state.excludedArtists.push(artist);
    renderExcluded();
    if (focusResults) els.resultsTitle.focus();
    runSearch();
  }

  function renderExcluded() {
    els.excluded.replaceChildren();
    state.excludedArtists.forEach((a) => {
      const li = el("li", { className: "chip", "data-artist": a });
      li.appendChild(el("span", {}, a));
      const rm = el("button", { type: "button", "aria-label": `Stop excluding ${a}` }, "×");
      rm.addEventListener("click", () => {
        state.excludedArtists = state.excludedArtists.filter((x) => x !== a);
        renderExcluded();
        (els.excluded.querySelector("button") || els.excludeInput).focus();
        runSearch();
      });
      li.appendChild(rm);
      els.excluded.appendChild(li);
    });
  }

  // ------------------------------------------------------------------ mood map
  const toX = (v) => PLOT.x + ((clamp(v, -1, 1) + 1) / 2) * PLOT.size;
  const toY = (a) => PLOT.y + (1 - (clamp(a, -1, 1) + 1) / 2) * PLOT.size;
  const fromX = (x) => clamp(((x - PLOT.x) / PLOT.size) * 2 - 1, -1, 1);
  const fromY = (y) => clamp((1 - (y - PLOT.y) / PLOT.size) * 2 - 1, -1, 1);

  const layers = {};

  function buildMap() {
    const m = els.map;
    m.replaceChildren();
    m.appendChild(svg("title", {}, "Mood map"));
    layers.density = svg("g", { class: "density" });
    const frame = svg("rect", { class: "frame", x: PLOT.x, y: PLOT.y, width: PLOT.size, height: PLOT.size });
    const axes = svg("g", { class: "axes", "aria-hidden": "true" });
    const mid = PLOT.size / 2;
    axes.append(
      svg("line", { x1: PLOT.x + mid, y1: PLOT.y, x2: PLOT.x + mid, y2: PLOT.y + PLOT.size }),
      svg("line", { x1: PLOT.x, y1: PLOT.y + mid, x2: PLOT.x + PLOT.size, y2: PLOT.y + mid }),
    );
    const labels = svg("g", { class: "labels", "aria-hidden": "true" });
    const bottom = PLOT.y + PLOT.size;
    labels.append(
      svg("text", { x: PLOT.x, y: bottom + 14, "text-anchor": "start" }, "−1"),
      svg("text", { x: PLOT.x + PLOT.size, y: bottom + 14, "text-anchor": "end" }, "+1"),
      svg("text", { x: PLOT.x + mid, y: bottom + 28, "text-anchor": "middle", class: "axis-title" }, "valence: unpleasant → pleasant"),
      svg("text", { x: PLOT.x - 6, y: PLOT.y + 10, "text-anchor": "end" }, "+1"),
      svg("text", { x: PLOT.x - 6, y: bottom, "text-anchor": "end" }, "−1"),
      svg("text", {
        x: 14, y: PLOT.y + mid, "text-anchor": "middle", class: "axis-title",
        transform: `rotate(-90 14 ${PLOT.y + mid})`,
      }, "arousal: calm → energetic"),
    );
    const quads = svg("g", { class: "quadrants", "aria-hidden": "true" });
    quads.append(
      svg("text", { x: PLOT.x + 6, y: PLOT.y + 16 }, "tense"),
      svg("text", { x: PLOT.x + PLOT.size - 6, y: PLOT.y + 16, "text-anchor": "end" }, "excited"),
      svg("text", { x: PLOT.x + 6, y: bottom - 8 }, "sad"),
      svg("text", { x: PLOT.x + PLOT.size - 6, y: bottom - 8, "text-anchor": "end" }, "relaxed"),
    );
    layers.points = svg("g", { class: "points" });
    layers.detected = svg("circle", { class: "detected", r: 5, visibility: "hidden", "aria-hidden": "true" });
    layers.marker = svg("g", {
      class: "marker", tabindex: 0, role: "slider", "aria-label": "Target mood",
      "aria-valuemin": -1, "aria-valuemax": 1, "aria-valuenow": 0,
      "aria-valuetext": "no target yet", "aria-describedby": "map-hint",
    });
    layers.marker.append(svg("circle", { class: "marker-halo", r: 14 }), svg("circle", { class: "marker-ring", r: 8 }));
    m.append(layers.density, frame, axes, quads, labels, layers.points, layers.detected, layers.marker);
    renderMarker();
  }

  async function loadDensity() {
    try {
      const resp = await fetch("/mood-map", { headers: { accept: "application/json" } });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const d = await resp.json();
      drawDensity(d);
    } catch (err) {
      els.readout.textContent = `Mood map unavailable: ${err.message}`;
    }
  }

  function drawDensity(d) {
    const g = layers.density;
    g.replaceChildren();
    const cell = PLOT.size / d.bins;
    const logMax = Math.log1p(d.max_count || 1);
    const frag = document.createDocumentFragment();
    d.counts.forEach((row, ai) => {
      row.forEach((c, vi) => {
        if (!c) return;
        const r = svg("rect", {
          x: (PLOT.x + vi * cell).toFixed(2), y: (PLOT.y + PLOT.size - (ai + 1) * cell).toFixed(2),
          width: cell.toFixed(2), height: cell.toFixed(2),
          "fill-opacity": (0.12 + 0.88 * (Math.log1p(c) / logMax)).toFixed(3),
        });
        frag.appendChild(r);
      });
    });
    g.appendChild(frag);
    g.setAttribute("data-tracks-with-mood", d.tracks_with_mood);
    els.map.setAttribute(
      "aria-label",
      `Mood map of ${d.tracks_with_mood} of ${d.tracks} tracks: valence (left unpleasant, right pleasant) by arousal (bottom calm, top energetic)`,
    );
  }

  function markerPosition() {
    if (state.target) return state.target;
    if (state.detected) return state.detected;
    return null;
  }

  function renderMarker() {
    const d = state.detected;
    if (d) {
      layers.detected.setAttribute("cx", toX(d.valence));
      layers.detected.setAttribute("cy", toY(d.arousal));
      layers.detected.setAttribute("visibility", state.target ? "visible" : "hidden");
    }
    const p = markerPosition() || { valence: 0, arousal: 0 };
    layers.marker.setAttribute("transform", `translate(${toX(p.valence).toFixed(2)} ${toY(p.arousal).toFixed(2)})`);
    layers.marker.classList.toggle("is-target", Boolean(state.target));
    layers.marker.classList.toggle("is-idle", !state.target && !d);
    layers.marker.setAttribute("aria-valuenow", p.valence.toFixed(2));
    const desc = `valence ${fmt(p.valence)}, arousal ${fmt(p.arousal)} (${moodWords(p.valence, p.arousal)})`;
    layers.marker.setAttribute("aria-valuetext", desc);
    let text;
    if (state.target) {
      text = `Target mood: ${desc}.`;
      if (d) text += ` Detected: ${moodWords(d.valence, d.arousal)}.`;
    } else if (d) {
      text = `Detected mood: ${desc}, confidence ${d.confidence.toFixed(2)}.`;
    } else {
      text = "Search to see the query's mood.";
    }
    els.readout.textContent = text;
    els.resetTarget.disabled = !state.target;
  }

  function renderPoints() {
    const g = layers.points;
    g.replaceChildren();
    state.results.forEach((t, i) => {
      const m = t.mood || {};
      if (m.valence === null || m.valence === undefined || m.arousal === null || m.arousal === undefined) return;
      const c = svg("circle", {
        class: "point", r: 4, cx: toX(m.valence).toFixed(2), cy: toY(m.arousal).toFixed(2),
        "data-point-for": t.track_id, fill: moodColour(m.valence, m.arousal),
      });
      const by = t.artist ? ` — ${t.artist}` : "";
      c.appendChild(svg("title", {}, `${i + 1}. ${displayTitle(t)}${by}`));
      c.addEventListener("click", (ev) => {
        ev.stopPropagation();
        const item = els.results.children[i];
        if (item) {
          item.scrollIntoView({ block: "nearest", behavior: "smooth" });
          const focusable = item.querySelector("a, button:not([disabled])");
          if (focusable) focusable.focus();
        }
      });
      g.appendChild(c);
    });
  }

  function setTarget(valence, arousal, { search = true } = {}) {
    state.target = { valence: Math.round(clamp(valence, -1, 1) * 100) / 100, arousal: Math.round(clamp(arousal, -1, 1) * 100) / 100 };
    renderMarker();
    if (search) scheduleSearch(search === "now" ? 0 : DEBOUNCE_MS);
  }

  function clearTarget() {
    state.target = null;
    renderMarker();
    scheduleSearch(0);
  }

  function svgPoint(ev) {
    const pt = els.map.createSVGPoint();
    pt.x = ev.clientX;
    pt.y = ev.clientY;
    const ctm = els.map.getScreenCTM();
    return ctm ? pt.matrixTransform(ctm.inverse()) : { x: 0, y: 0 };
  }

  function wireMap() {
    let dragging = false;
    els.map.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      const p = svgPoint(ev);
      if (p.x < PLOT.x || p.x > PLOT.x + PLOT.size || p.y < PLOT.y || p.y > PLOT.y + PLOT.size) return;
      dragging = true;
      els.map.setPointerCapture(ev.pointerId);
      layers.marker.focus({ preventScroll: true });
      setTarget(fromX(p.x), fromY(p.y), { search: false });
      ev.preventDefault();
    });
    els.map.addEventListener("pointermove", (ev) => {
      if (!dragging) return;
      const p = svgPoint(ev);
      setTarget(fromX(p.x), fromY(p.y), { search: false });
    });
    const end = (ev) => {
      if (!dragging) return;
      dragging = false;
      if (els.map.hasPointerCapture(ev.pointerId)) els.map.releasePointerCapture(ev.pointerId);
      scheduleSearch(0);
    };
    els.map.addEventListener("pointerup", end);
    els.map.addEventListener("pointercancel", end);

    layers.marker.addEventListener("keydown", (ev) => {
      const step = ev.shiftKey ? KEY_BIG_STEP : KEY_STEP;
      const p = markerPosition() || { valence: 0, arousal: 0 };
      const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (moves[ev.key]) {
        const [dv, da] = moves[ev.key];
        setTarget(p.valence + dv, p.arousal + da);
        ev.preventDefault();
      } else if (ev.key === "Escape" || ev.key === "Home") {
        if (state.target) clearTarget();
        ev.preventDefault();
      } else if (ev.key === "Enter") {
        scheduleSearch(0);
        ev.preventDefault();
      }
    });
    els.resetTarget.addEventListener("click", () => {
      clearTarget();
      layers.marker.focus();
    });
  }

  // ------------------------------------------------------------------ wiring
  function wire() {
    els.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      runSearch();
    });
    els.q.addEventListener("input", () => scheduleSearch());
    els.minYear.addEventListener("input", () => scheduleSearch(400));
    els.maxYear.addEventListener("input", () => scheduleSearch(400));
    els.genreList.addEventListener("change", () => scheduleSearch(0));
    els.diversity.addEventListener("input", () => {
      els.diversityValue.textContent = Number(els.diversity.value).toFixed(2);
      scheduleSearch();
    });
    const addExcluded = () => {
      excludeArtist(els.excludeInput.value, { focusResults: false });
      els.excludeInput.value = "";
    };
    els.excludeAdd.addEventListener("click", addExcluded);
    els.excludeInput.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        addExcluded();
      }
    });
    els.clearSeeds.addEventListener("click", () => {
      state.seeds = [];
      renderSeeds();
      els.q.focus();
      runSearch();
    });
  }

  // On a phone the filters start folded so the results are not pushed far down.
  if (window.matchMedia("(max-width: 859px)").matches) $("filters").open = false;
  buildMap();
  wireMap();
  wire();
  loadDensity();
  if (els.q.value.trim()) runSearch();
})();
