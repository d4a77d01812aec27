// The status page: fetches the monitoring API (same origin, the Airflow login cookie rides
// along) and draws with ECharts. Every value from the DB reaches the DOM through
// textContent, never as HTML. window.audioStatus exposes the charts and data (tests read it).
"use strict";
(() => {
  const STATUS = {
    not_run: { code: 0, color: "#cbd2d9", label: "not run" },
    incomplete: { code: 1, color: "#c62828", label: "incomplete" },
    partial: { code: 2, color: "#f9a825", label: "partial" },
    complete: { code: 3, color: "#2e7d32", label: "complete" },
  };
  const STEPS = ["master", "transfer", "audio"];
  const state = { days: [], charts: {}, day: null, clipAfter: null, timings: {} };
  window.audioStatus = state;

  const $ = (id) => document.getElementById(id);
  function el(tag, text, attrs = {}) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }
  function row(cells) {
    const tr = el("tr");
    cells.forEach((c) => tr.append(c instanceof Node ? wrapCell(c) : el("td", c ?? "")));
    return tr;
  }
  function wrapCell(node) { const td = el("td"); td.append(node); return td; }
  const num = (v, digits = 1) => (v === null || v === undefined ? "" : Number(v).toFixed(digits));
  function duration(s) {
    if (s === null || s === undefined) return "";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h} h ${m} m` : m ? `${m} m ${sec} s` : `${sec} s`;
  }

  async function api(path, pending) {
    const resp = await (pending
      || fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }));
    if (resp.status === 401) { window.location.reload(); throw new Error("login expired"); }
    if (!resp.ok) {
      const err = new Error(`${path}: HTTP ${resp.status}`);
      err.status = resp.status;
      throw err;
    }
    return resp.json();
  }
  function showError(err) { $("error").hidden = false; $("error").textContent = String(err.message || err); }

  function draw(name, option) {
    const node = $(`chart-${name}`);
    const chart = state.charts[name] || echarts.init(node, null, { renderer: "canvas" });
    chart.setOption({ animation: false, ...option }, true);   // an ops page: draw at once
    node.dataset.days = String(state.days.length);
    node.dataset.series = String(option.series.length);
    state.charts[name] = chart;
    chart.off("click");
    chart.on("click", (p) => selectDay(Array.isArray(p.data) ? p.data[0] : p.name));
  }

  const axis = () => ({ type: "category", data: state.days.map((d) => d.day) });
  const base = (extra) => ({ grid: { left: 48, right: 16, top: 52, bottom: 28 },
    tooltip: { trigger: "axis" }, legend: { top: 0, type: "scroll" }, xAxis: axis(), ...extra });

  function drawCharts(range) {
    const days = state.days;
    const byDay = Object.fromEntries(days.map((d) => [d.day, d]));
    draw("calendar", {
      tooltip: { formatter: (p) => {
        const d = byDay[p.data[0]];
        return d.status === "not_run" ? `${d.day}: not run`
          : `${d.day}: ${d.status}<br>ok ${d.clips_ok}, failed ${d.clips_failed}, missing ${d.clips_missing}`;
      } },
      visualMap: { type: "piecewise", orient: "horizontal", left: "center", bottom: 0, dimension: 1,
        pieces: Object.values(STATUS).map((s) => ({ value: s.code, label: s.label, color: s.color })) },
      calendar: { range: [range.start, range.end], cellSize: ["auto", 16], top: 24, left: 36, right: 12,
        dayLabel: { firstDay: 1, nameMap: "en" }, yearLabel: { show: false }, splitLine: { show: false } },
      series: [{ type: "heatmap", coordinateSystem: "calendar",
        data: days.map((d) => [d.day, STATUS[d.status].code]) }],
    });
    const reasons = [...new Set(days.flatMap((d) => Object.keys(d.failed_by_reason || {})))].sort();
    const recorded = (d, v) => (d.status === "not_run" ? null : v);
    draw("clips", base({ yAxis: { type: "value", name: "clips" }, series: [
      { name: "ok", type: "bar", stack: "clips", color: STATUS.complete.color,
        data: days.map((d) => recorded(d, d.clips_ok)) },
      ...reasons.map((r) => ({ name: `failed: ${r}`, type: "bar", stack: "clips",
        data: days.map((d) => recorded(d, (d.failed_by_reason || {})[r] || 0)) })),
      { name: "missing", type: "bar", stack: "clips", color: STATUS.not_run.color,
        data: days.map((d) => recorded(d, d.clips_missing)) },
    ] }));
    draw("hours", base({ yAxis: { type: "value", name: "hours" }, series: [
      { name: "audio hours", type: "bar", data: days.map((d) => recorded(d, d.audio_seconds / 3600)) },
      { name: "GPU hours", type: "bar", data: days.map((d) => recorded(d, d.gpu_seconds / 3600)) },
    ] }));
    draw("throughput", base({ yAxis: { type: "value", name: "audio s / GPU s" }, series: [
      { name: "throughput", type: "line", connectNulls: false, showSymbol: true, showAllSymbol: true,
        data: days.map((d) => (d.gpu_seconds ? d.audio_seconds / d.gpu_seconds : null)) },
    ] }));
    draw("queue", base({ yAxis: { type: "value", name: "minutes" }, series: STEPS.map((step) => ({
      name: step, type: "line", connectNulls: false, showSymbol: true, showAllSymbol: true,
      data: days.map((d) => (d.queue_wait_s[step] === undefined ? null : d.queue_wait_s[step] / 60)),
    })) }));
  }

  async function loadHealth() {
    try {
      const h = await api("api/health?window=7");
      const missing = h.days_missing.length, notComplete = h.days_not_complete.length;
      $("health").textContent = `results DB ok · last complete day: ${h.last_complete_day || "none"}`
        + ` · last 7 days: ${missing} not run, ${notComplete} not complete`;
    } catch (err) {
      $("health").textContent = "results DB unreachable";
    }
  }

  async function selectDay(day) {
    if (!day) return;
    state.day = day;
    const url = new URL(window.location.href);
    url.searchParams.set("day", day);
    window.history.replaceState(null, "", url);
    const panel = $("day-panel");
    panel.hidden = false;
    $("day-title").textContent = day;
    let d;
    try {
      d = await api(`api/days/${day}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      $("day-status").textContent = "not run";
      $("day-status").style.background = STATUS.not_run.color;
      $("day-counts").replaceChildren(row(["This day was never recorded."]));
      $("day-jobs").tBodies[0].replaceChildren();
      $("day-nodes").tBodies[0].replaceChildren();
      $("day-clips").tBodies[0].replaceChildren();
      $("clip-total").textContent = "";
      panel.dataset.day = day;
      return;
    }
    $("day-status").textContent = d.status;
    $("day-status").style.background = STATUS[d.status].color;
    const reasons = Object.entries(d.failed_by_reason).map(([k, v]) => `${k}: ${v}`).join(", ");
    const kv = [["listed", d.clips_listed], ["planned", d.clips_planned], ["skipped (done before)", d.clips_skipped],
      ["ok", d.clips_ok], ["failed", d.clips_failed], ["failed by reason", reasons || "none"],
      ["missing", d.clips_missing], ["audio hours", num(d.audio_seconds / 3600, 3)],
      ["GPU hours", num(d.gpu_seconds / 3600, 3)], ["real-time factor", num(d.real_time_factor, 2)],
      ["throughput (audio s / GPU s)", num(d.throughput, 2)], ["DAG run", d.dag_run_id]];
    $("day-counts").replaceChildren(...kv.map(([k, v]) => { const tr = el("tr"); tr.append(el("th", k), el("td", v)); return tr; }));
    $("day-jobs").tBodies[0].replaceChildren(...d.jobs.map((j) => row([j.step, j.job_id,
      j.array_index < 0 ? "" : j.array_index, j.state, j.exit_code, j.node, j.submitted_at, j.started_at,
      duration(j.queue_wait_s), duration(j.elapsed_s)])));
    $("day-nodes").tBodies[0].replaceChildren(...d.nodes.map((n) => row([n.node, n.array_indices,
      n.array_indices_failed, n.clips, n.clips_failed])));
    const kind = $("clip-kind");
    kind.replaceChildren(el("option", "any reason", { value: "" }),
      ...Object.keys(d.failed_by_reason).sort().map((k) => el("option", k, { value: k })));
    panel.dataset.day = day;
    await loadClips(true);
  }

  async function loadClips(reset) {
    if (reset) { state.clipAfter = null; $("day-clips").tBodies[0].replaceChildren(); }
    const params = new URLSearchParams({ limit: "100" });
    const status = $("clip-status").value, kind = $("clip-kind").value;
    if (status) params.set("status", status);
    if (kind) params.set("error_kind", kind);
    if (state.clipAfter) params.set("after", state.clipAfter);
    const page = await api(`api/days/${state.day}/clips?${params}`);
    $("clip-total").textContent = `${page.total} clips`;
    const body = $("day-clips").tBodies[0];
    for (const c of page.clips) {
      let detail = c.error || "";
      if (c.status === "ok") {
        detail = el("a", "show transcript", { class: "clip" });
        detail.addEventListener("click", async () => {
          const t = await api(`api/clips/${c.clip_id.split("/").map(encodeURIComponent).join("/")}/transcript`);
          const td = el("td", t.text, { class: "text" });
          detail.parentElement.replaceWith(td);
        });
      }
      body.append(row([c.clip_id, c.status, c.error_kind, detail, num(c.duration_s), c.node]));
    }
    state.clipAfter = page.next_after;
    $("clip-more").hidden = !page.next_after;
  }

  async function main() {
    $("clip-status").addEventListener("change", () => loadClips(true).catch(showError));
    $("clip-kind").addEventListener("change", () => loadClips(true).catch(showError));
    $("clip-more").addEventListener("click", () => loadClips(false).catch(showError));
    window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.resize()));
    loadHealth();
    const list = await api("api/days", window.audioDaysRequest);  // started in <head>
    state.timings.daysLoaded = performance.now();
    state.days = list.days;
    $("range").textContent = `${list.start} – ${list.end}`;
    drawCharts(list);
    state.timings.chartsDrawn = performance.now();
    document.body.dataset.ready = "1";
    const asked = new URLSearchParams(window.location.search).get("day");
    if (asked && /^\d{4}-\d{2}-\d{2}$/.test(asked)) await selectDay(asked);
  }
  main().catch(showError);
})();
