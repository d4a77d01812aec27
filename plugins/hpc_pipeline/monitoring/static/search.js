// The status page's transcript search: the box calls api/search (same origin, the Airflow
// login cookie rides along), lists the matches per day with their highlighted snippets, and
// opens a clip's transcript with its segment timings. Everything from the DB reaches the DOM
// through textContent (highlights are <mark> elements built here), never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const search = { after: null, params: null, words: [] };
  window.audioSearch = search;

  function el(tag, text, attrs = {}) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }
  const clock = (s) => {
    const m = Math.floor(s / 60);
    return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
  };

  async function getJson(path) {
    const resp = await fetch(path, {
      credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.status === 401) { window.location.reload(); throw new Error("login expired"); }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${resp.status}`);
    }
    return body;
  }

  // The words a hit's snippet highlighted mark the same words in the transcript's segments.
  function marked(text, words) {
    const out = document.createDocumentFragment();
    if (!words.length) { out.append(text); return out; }
    const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    const re = new RegExp(`(${escaped.join("|")})`, "gi");
    text.split(re).forEach((piece, i) => out.append(i % 2 ? el("mark", piece) : piece));
    return out;
  }

  function dayGroup(day) {
    let group = $("search-results").querySelector(`.search-day[data-day="${day}"]`);
    if (!group) {
      group = el("div", null, { class: "search-day", "data-day": day });
      group.append(el("h3", day), el("ul"));
      $("search-results").append(group);
    }
    return group;
  }

  async function openTranscript(hit) {
    const path = hit.clip_id.split("/").map(encodeURIComponent).join("/");
    const t = await getJson(`api/clips/${path}/transcript`);
    $("transcript-panel").hidden = false;
    $("transcript-panel").dataset.clip = t.clip_id;
    $("transcript-clip").textContent = t.clip_id;
    $("transcript-meta").textContent =
      `${t.language || ""} · ${t.model || ""} · ${t.word_count} words`;
    const words = [...new Set(hit.snippet.filter((p) => p.match).map((p) => p.text.toLowerCase()))];
    $("transcript-segments").tBodies[0].replaceChildren(...t.segments.map((s) => {
      const tr = el("tr");
      const td = el("td");
      td.append(marked(String(s.text || "").trim(), words));
      tr.append(el("td", clock(s.start)), el("td", clock(s.end)), td);
      return tr;
    }));
    $("transcript-panel").scrollIntoView({ block: "nearest" });
  }

  function showHit(hit) {
    const li = el("li");
    const link = el("a", hit.clip_id, { class: "clip", href: "#" });
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      openTranscript(hit).catch(showError);
    });
    const snippet = el("span", null, { class: "snippet" });
    hit.snippet.forEach((p) => snippet.append(p.match ? el("mark", p.text) : p.text));
    li.append(link, " — ", snippet);
    const group = dayGroup(hit.day);
    group.querySelector("ul").append(li);
    const shown = group.querySelectorAll("li").length;
    group.querySelector("h3").textContent = `${hit.day} · ${shown} shown`;
  }

  function showError(err) {
    $("search-error").hidden = false;
    $("search-error").textContent = String(err.message || err);
  }

  // order=rank ranks the newest max_ranked matches of the dates: say which were ranked.
  function rankingNote(r) {
    if (!r) return "";
    if (r.all_matches) return ` · best first among all ${r.ranked} matches`;
    return ` · best first among the newest ${r.max_ranked} matches (back to ${r.oldest_day});`
      + " set the dates to rank older ones";
  }

  async function run(reset) {
    $("search-error").hidden = true;
    $("search-results").dataset.state = "loading";
    if (reset) {
      const params = new URLSearchParams({
        q: $("search-q").value, order: $("search-order").value, limit: "50" });
      if ($("search-start").value) params.set("start", $("search-start").value);
      if ($("search-end").value) params.set("end", $("search-end").value);
      search.params = params;
      search.after = null;
      $("search-results").replaceChildren();
      $("transcript-panel").hidden = true;
    }
    const params = new URLSearchParams(search.params);
    if (search.after) params.set("after", search.after);
    try {
      const page = await getJson(`api/search?${params}`);
      page.hits.forEach(showHit);
      search.after = page.next_after;
      $("search-more").hidden = !page.next_after;
      const shown = $("search-results").querySelectorAll("li").length;
      const more = page.next_after ? " (more)" : "";
      $("search-info").textContent = `${shown} matches shown${more} · query: ${page.tsquery}`
        + rankingNote(page.ranking);
    } catch (err) {
      $("search-more").hidden = true;
      $("search-info").textContent = "";
      showError(err);
    }
    $("search-results").dataset.state = "done";
  }

  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); run(true); });
  $("search-more").addEventListener("click", () => run(false));
})();
