// The tunespace explorer: a page over the JSON API, routed by the URL's hash (#/, #/track/ID, #/user/ID, #/map).
// Plain DOM code with no build step; text from the catalogue is always set with textContent, never as HTML.
"use strict";

const EXAMPLES = {
  en: ["a slow Irish air on the fiddle", "a fast reel in D major", "a march played on the flute"],
  de: ["ein langsames Lied auf der Geige", "ein schneller Tanz in Dur", "ein Marsch für Flöte"],
  zh: ["小提琴演奏的慢速爱尔兰曲调", "D大调的快速里尔舞曲", "长笛演奏的进行曲"],
};
const PALETTE = ["#1f77b4", "#e4572e", "#2ca02c", "#9467bd", "#f2a541", "#17becf", "#d62785", "#8c564b",
  "#7f7f00", "#4a6fe3", "#bcbd22", "#5f9e6e"];
const OTHER_COLOUR = "#b8bec9";

let health = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// Ids may hold slashes and any other character: every part of a path is percent-encoded.
const enc = (id) => encodeURIComponent(id);
const trackHref = (id) => `#/track/${enc(id)}`;
const userHref = (id) => `#/user/${enc(id)}`;

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function view(...children) {
  const main = document.getElementById("view");
  main.replaceChildren(...children.flat());
  window.scrollTo(0, 0);
  return main;
}

function showError(error) {
  return el("p", { class: "error", role: "alert", text: error.message || String(error) });
}

function tagChips(tags) {
  return el("div", { class: "tags" },
    Object.entries(tags).map(([key, value]) => el("span", { class: "tag" }, key !== value ? el("b", { text: key }) : null,
      value)));
}

function player(track) {
  if (!track.audio_url) return el("p", { class: "empty", text: "no audio file" });
  return el("audio", { controls: true, preload: "metadata", src: track.audio_url, "data-track": track.id });
}

function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// One result: rank, title and collection, tags, player, links; the score and a bar scaled to the best score.
function resultCard(item, rank, best) {
  const { track, score } = item;
  const width = best > 0 ? Math.max(4, Math.round(100 * Math.max(score, 0) / best)) : 0;
  return el("article", { class: "card result", "data-track": track.id },
    el("div", { class: "rank", text: `${rank}.` }),
    el("div", { class: "body" },
      el("a", { class: "title", href: trackHref(track.id), text: track.title }),
      el("div", { class: "collection" }, [track.collection, durationText(track.duration)].filter(Boolean).join(" · ")),
      tagChips(track.tags),
      player(track),
      el("div", { class: "actions" },
        el("a", { href: trackHref(track.id), text: track.has_score ? "score and details" : "details" }),
        el("a", { href: `#/?like=${enc(track.id)}`, text: "more like this" }))),
    el("div", { class: "side" },
      el("div", { class: "score-value", title: "score: higher is a better match", text: score.toFixed(3) }),
      el("div", { class: "score-bar" }, el("span", { style: `width:${width}%` }))));
}

function resultList(items) {
  if (!items.length) return el("p", { class: "empty", text: "Nothing found." });
  const best = Math.max(...items.map((i) => i.score));
  return el("div", { class: "results" }, items.map((item, i) => resultCard(item, i + 1, best)));
}

// --- search ---------------------------------------------------------------------------------------------------

async function searchView(params) {
  const q = params.get("q") || "";
  const like = params.get("like");
  const lang = params.get("lang") || "en";
  const textOn = health && health.text_search;
  const input = el("input", { type: "search", name: "q", value: q, placeholder: "describe a tune, e.g. a slow air on the fiddle",
    "aria-label": "search text", disabled: !textOn });
  const select = el("select", { name: "lang", "aria-label": "language", disabled: !textOn },
    [["en", "English"], ["de", "Deutsch"], ["zh", "中文"]].map(([code, name]) =>
      el("option", { value: code, selected: code === lang,
        text: textOn && !health.languages.includes(code) ? `${name} (not trained)` : name })));
  const form = el("form", { class: "search-form", role: "search", onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/?${new URLSearchParams({ q: input.value, lang: select.value })}`;
  } }, input, select, el("button", { type: "submit", disabled: !textOn, text: "Search" }));
  const examples = el("div", { class: "examples" }, "Try: ",
    (EXAMPLES[lang] || EXAMPLES.en).map((text) => el("a", { href: `#/?${new URLSearchParams({ q: text, lang })}`, text })));
  const results = el("section", { id: "results" });
  const header = [el("h1", { text: "Find tunes" }),
    el("p", { class: "sub", text: `Search ${health ? health.tracks : ""} tunes by what they sound like, in English, German or Chinese.` })];
  if (!textOn) {
    header.push(el("p", { class: "note", text: "Text search is off: this server was started without an HTCL run " +
      "(--run). Open the map or a track and search by example with “more like this”." }));
  }
  if (textOn && !health.languages.includes(lang)) {
    header.push(el("p", { class: "note", text: `The text tower was trained on captions in ${health.languages.join(", ") || "no language"}; ` +
      "a query in another language is searched anyway, but may match poorly." }));
  }
  view(header, form, textOn ? examples : null, results);
  if (!q && !like) return;
  results.append(el("p", { class: "empty", text: "searching…" }));
  try {
    const body = await api("/search", like ? { like, k: 20 } : { q, lang, k: 20 });
    const title = like ? "Tunes like " : `Results for “${q}”`;
    const heading = el("h2", {}, title);
    if (like) heading.append(el("a", { href: trackHref(like), text: like }));
    results.replaceChildren(heading, resultList(body.results));
  } catch (error) {
    results.replaceChildren(showError(error));
  }
}

// --- track ----------------------------------------------------------------------------------------------------

const FACTS = ["collection_name", "tonic", "mode", "meter", "tempo_bpm", "instrument", "dance_type",
  "genre", "region", "country", "composer", "artist", "album", "duration"];

async function trackView(id) {
  view(el("p", { class: "empty", text: "loading…" }));
  let track, similar;
  try {
    [track, similar] = await Promise.all([api(`/tracks/${enc(id)}`), api(`/tracks/${enc(id)}/similar`, { k: 8 })]);
  } catch (error) {
    view(el("h1", { text: "Track" }), showError(error));
    return;
  }
  const facts = el("table", { class: "facts" },
    FACTS.filter((key) => track.metadata[key] !== undefined).map((key) =>
      el("tr", {}, el("th", { text: key === "collection_name" ? "collection" : key.replace(/_/g, " ") }),
        el("td", { text: key === "duration" ? durationText(track.metadata[key]) : String(track.metadata[key]) }))));
  const score = el("div", { id: "score", "aria-label": "score" });
  const groupsMax = Math.max(1, ...track.listener_groups.map((g) => g.listeners));
  view(
    el("div", { class: "track-head" },
      el("div", {},
        el("h1", { text: track.title }),
        el("p", { class: "sub" }, [track.collection, track.id].filter(Boolean).join(" · ")),
        tagChips(track.tags),
        el("div", { style: "margin-top:0.8rem" }, player(track))),
      el("div", { class: "panel" }, facts)),
    el("h2", { text: "Score" }),
    track.abc ? score : el("p", { class: "empty", text: "This track has no score." }),
    track.abc ? el("details", { class: "abc-source" }, el("summary", { text: "ABC notation" }), el("pre", { text: track.abc }))
      : null,
    el("h2", { text: "Similar tunes" }),
    resultList(similar.results),
    el("h2", { text: `Who plays it (${track.listeners} listener${track.listeners === 1 ? "" : "s"})` }),
    el("div", { class: "two" },
      el("section", {},
        el("h3", { text: "Listener groups (their favourite)" }),
        track.listener_groups.length
          ? el("div", { class: "groups" }, track.listener_groups.map((g) =>
            el("div", { class: "group" },
              el("span", { class: "label" }, el("b", { text: `${g.attribute.replace(/_/g, " ")}: ` }), g.value),
              el("span", { class: "bar" }, el("span", { style: `width:${Math.round(100 * g.listeners / groupsMax)}%` })),
              el("span", { class: "n", text: g.listeners }))))
          : el("p", { class: "empty", text: "No listener groups for this catalogue." })),
      el("section", {},
        el("h3", { text: "Top listeners (sessions)" }),
        track.top_listeners.length
          ? el("div", { class: "listeners" }, track.top_listeners.map((l) =>
            el("a", { href: userHref(l.user_id), title: `${l.sessions} sessions` }, `${l.user_id} (${l.sessions})`)))
          : el("p", { class: "empty", text: "Nobody has played it yet." }))));
  if (track.abc && window.ABCJS) {
    window.ABCJS.renderAbc("score", track.abc, { responsive: "resize", add_classes: true, paddingtop: 10 });
  }
}

// --- listener -------------------------------------------------------------------------------------------------

async function userView(id) {
  view(el("p", { class: "empty", text: "loading…" }));
  let body;
  try {
    body = await api(`/users/${enc(id)}/recommendations`, { k: 15, history: 30 });
  } catch (error) {
    view(el("h1", { text: `Listener ${id}` }), showError(error));
    return;
  }
  const history = el("table", { class: "history" },
    el("thead", {}, el("tr", {}, el("th", { text: "Track" }), el("th", { text: "Tags" }),
      el("th", { text: "Plays" }), el("th", { text: "Last played" }))),
    el("tbody", {}, body.history.map((h) => el("tr", {},
      el("td", {}, el("a", { href: trackHref(h.track.id), text: h.track.title }),
        el("div", { class: "collection", text: h.track.collection || "" })),
      el("td", {}, tagChips(h.track.tags)),
      el("td", { class: "num", text: h.plays }),
      el("td", { text: new Date(h.last_played).toLocaleDateString() })))));
  view(
    el("h1", { text: `Listener ${body.user_id}` }),
    el("p", { class: "sub", text: `${body.history_tracks} tracks in the history · recommendations from ${body.source}` }),
    el("h2", { text: "Recommended" }),
    resultList(body.recommendations),
    el("h2", { text: `History (most played${body.history.length < body.history_tracks ? `, first ${body.history.length}` : ""})` }),
    history);
}

// --- map ------------------------------------------------------------------------------------------------------

async function mapView(params) {
  view(el("p", { class: "empty", text: "loading…" }));
  let body;
  try {
    body = await api("/map", { colour: params.get("colour") });
  } catch (error) {
    view(el("h1", { text: "Map" }), showError(error));
    return;
  }
  const colours = new Map(body.values.slice(0, PALETTE.length).map((v, i) => [v, PALETTE[i]]));
  const colourOf = (value) => colours.get(value) || OTHER_COLOUR;
  const select = el("select", { "aria-label": "colour by", onchange: () => { location.hash = `#/map?colour=${enc(select.value)}`; } },
    body.colour_keys.map((key) => el("option", { value: key, selected: key === body.colour, text: key })));
  const size = 640, pad = 18;
  const svg = svgEl("svg", { id: "map-svg", viewBox: `0 0 ${size} ${size}`, role: "img",
    "aria-label": "the catalogue in two dimensions" });
  const hover = el("div", { class: "hover-title", text: "Point at a tune to see its name; click to open it." });
  const radius = body.points.length > 2000 ? 2.5 : body.points.length > 300 ? 4 : 6;
  for (const p of body.points) {
    const circle = svgEl("circle", { cx: (pad + (p.x + 1) / 2 * (size - 2 * pad)).toFixed(1),
      cy: (pad + (1 - p.y) / 2 * (size - 2 * pad)).toFixed(1), r: radius, fill: colourOf(p.value), "data-id": p.id });
    const title = svgEl("title");
    title.textContent = `${p.title}${p.value ? ` (${p.value})` : ""}`;
    circle.append(title);
    circle.addEventListener("mouseenter", () => { hover.textContent = title.textContent; });
    circle.addEventListener("click", () => { location.hash = trackHref(p.id); });
    svg.append(circle);
  }
  const legend = el("div", { class: "legend" },
    el("strong", { text: body.colour || "no colour key" }),
    body.values.slice(0, PALETTE.length).map((v) => el("div", {}, el("span", { class: "swatch", style: `background:${colourOf(v)}` }), v)),
    body.values.length > PALETTE.length || body.points.some((p) => p.value === null)
      ? el("div", {}, el("span", { class: "swatch", style: `background:${OTHER_COLOUR}` }), "other or none") : null);
  view(
    el("h1", { text: "Map of the catalogue" }),
    el("p", { class: "sub", text: `${body.points.length} tunes placed by the first two principal components of their embeddings: neighbours sound alike.` }),
    el("div", { class: "map-controls" }, el("label", { text: "Colour by" }), select),
    hover,
    el("div", { class: "map-wrap" }, svg, legend));
}

// --- routing --------------------------------------------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const section = path.startsWith("/map") ? "map" : path.startsWith("/track/") || path.startsWith("/user/") ? "" : "search";
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === section));
  if (path.startsWith("/track/")) return trackView(decodeURIComponent(path.slice("/track/".length)));
  if (path.startsWith("/user/")) return userView(decodeURIComponent(path.slice("/user/".length)));
  if (path.startsWith("/map")) return mapView(params);
  return searchView(params);
}

async function start() {
  document.getElementById("listener-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("listener-id").value.trim();
    if (id) location.hash = userHref(id);
  });
  try {
    health = await api("/health");
    document.getElementById("status").textContent =
      `${health.tracks} tracks · ${health.index.kind} index of ${health.index.dim}-d embeddings` +
      (health.recommender ? ` · recommender ${health.recommender}` : "");
  } catch (error) {
    document.getElementById("status").textContent = `server unreachable: ${error.message}`;
  }
  window.addEventListener("hashchange", route);
  route();
}

document.addEventListener("DOMContentLoaded", start);
