// edgefleet dashboard: plain JavaScript, no framework, nothing loaded from anywhere but this server.
//
// Safety rule of this file: every value from the cluster reaches the page as text (textContent, title, or an
// attribute value set through the DOM); nothing is ever parsed as HTML. The server's Content-Security-Policy
// forbids inline scripts and styles on top of that.
"use strict";

(function () {
  const STATES = ["stable", "canary", "other", "installing", "rolledBack", "failed", "offline", "idle"];
  const LABELS = {
    stable: "stable", canary: "canary", other: "other revision", installing: "installing",
    rolledBack: "rolled back", failed: "failed", offline: "offline", idle: "idle",
  };
  const CHART_STATES = ["stable", "canary", "other", "installing", "rolledBack", "failed", "offline"];
  const SVG = "http://www.w3.org/2000/svg";
  const byName = new Intl.Collator(undefined, { numeric: true });

  const view = {
    meta: null,
    fleet: null,
    deployments: [],
    tiles: new Map(),
    chart: { deployment: null, points: [] },
    device: null,
    expandedAll: false,
  };
  const want = { lines: new Set(), auto: true, all: false, device: null, deployment: null };
  const dom = { sites: new Map(), lines: new Map(), tiles: new Map() };
  let source = null;
  let lastMessageAt = 0;
  let snapshots = 0;
  let updates = 0;

  // --- DOM helpers: text only -------------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function $(id) {
    return document.getElementById(id);
  }

  function swatch(state) {
    return el("span", "swatch st-" + state);
  }

  function ago(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function short(revision) {
    return revision || "–";
  }

  function kv(pairs) {
    const dl = el("dl", "kv");
    for (const [key, value] of pairs) {
      if (value === undefined || value === null || value === "") continue;
      dl.appendChild(el("dt", null, key));
      dl.appendChild(el("dd", null, value));
    }
    return dl;
  }

  // --- the stream -------------------------------------------------------------------------------------------------

  function streamUrl() {
    const params = new URLSearchParams();
    params.set("lines", want.all ? "*" : want.auto ? "auto" : Array.from(want.lines).join(","));
    if (want.device) params.set("device", want.device);
    if (want.deployment) params.set("deployment", want.deployment);
    return "/api/stream?" + params.toString();
  }

  function connect() {
    if (source) source.close();
    setLive("connecting", "connecting…");
    source = new EventSource(streamUrl());
    source.addEventListener("snapshot", (event) => {
      const data = JSON.parse(event.data);
      snapshots += 1;
      applySnapshot(data);
      document.body.dataset.snapshots = String(snapshots);
      if (!document.body.dataset.ready) {
        document.body.dataset.ready = "1";
        performance.mark("edgefleet-first-render");
      }
    });
    source.addEventListener("update", (event) => {
      updates += 1;
      applyUpdate(JSON.parse(event.data));
      document.body.dataset.updates = String(updates);
    });
    source.onerror = () => setLive("lost", "reconnecting…");
  }

  function setLive(state, text) {
    const live = $("live");
    live.dataset.state = state;
    $("live-text").textContent = text;
  }

  function touched(meta) {
    lastMessageAt = Date.now();
    if (meta) view.meta = meta;
    setLive("live", "live");
  }

  function applySnapshot(data) {
    touched(data.meta);
    view.fleet = data.fleet;
    view.deployments = data.deployments || [];
    view.chart = data.chart || { deployment: null, points: [] };
    view.device = data.device;
    view.expandedAll = Boolean(data.expandedAll);
    view.tiles = new Map();
    for (const t of data.tiles || []) view.tiles.set(t.id, t);
    for (const node of dom.tiles.values()) node.remove();
    dom.tiles.clear();
    renderAll();
  }

  function applyUpdate(data) {
    touched(data.meta);
    if (data.fleet) {
      view.fleet = data.fleet;
      renderFleet();
    }
    for (const id of data.removed || []) {
      view.tiles.delete(id);
      const node = dom.tiles.get(id);
      if (node) node.remove();
      dom.tiles.delete(id);
    }
    for (const t of data.tiles || []) {
      view.tiles.set(t.id, t);
      placeTile(t);
    }
    if (data.chart) {
      view.chart = data.chart;
      renderChart();
    }
    if (data.deployments || data.chart) {
      if (data.deployments) view.deployments = data.deployments;
      renderDeployments();
      renderEvents();
    }
    if (data.points && data.points.deployment === view.chart.deployment) {
      view.chart.points = view.chart.points.concat(data.points.points);
      if (view.chart.points.length > 4000) view.chart.points = view.chart.points.slice(-4000);
      renderChart();
    }
    if (data.device) {
      view.device = data.device;
      renderDevice();
    }
  }

  // --- header -----------------------------------------------------------------------------------------------------

  function renderHeader() {
    const meta = view.meta || {};
    $("scope").textContent = meta.title || "";
    const totals = $("totals");
    clear(totals);
    if (!view.fleet) return;
    const add = (n, label) => {
      const span = el("span");
      span.appendChild(el("b", null, n));
      span.appendChild(document.createTextNode(label));
      totals.appendChild(span);
    };
    const c = view.fleet.counts;
    add(view.fleet.total, "devices");
    add(view.deployments.length, view.deployments.length === 1 ? "rollout" : "rollouts");
    add(c.offline, "offline");
    add(c.rolledBack + c.failed, "rolled back or failed");
    const synced = meta.synced || {};
    if (synced.leases === false) add("?", "reachability unknown (Leases not readable)");
  }

  // --- deployments ------------------------------------------------------------------------------------------------

  function renderDeployments() {
    const list = $("deployment-list");
    clear(list);
    if (!view.deployments.length) {
      list.appendChild(el("div", "empty", "No ModelDeployments in this scope."));
      return;
    }
    for (const d of view.deployments) {
      const card = el("button", "card");
      card.type = "button";
      card.dataset.id = d.id;
      if (d.id === view.chart.deployment) card.classList.add("selected");
      card.title = "show the convergence chart and events of " + d.name;
      card.addEventListener("click", () => {
        want.deployment = d.id;
        connect();
      });
      const head = el("div", "card-head");
      head.appendChild(el("span", "card-name", d.name));
      head.appendChild(el("span", "card-model", d.model + " " + d.version));
      if (view.meta && (view.meta.namespaces === null || (view.meta.namespaces || []).length > 1)) {
        head.appendChild(el("span", "hint", d.namespace));
      }
      head.appendChild(el("span", "phase p-" + (d.phase || "none"), d.phase || "Pending"));
      card.appendChild(head);

      const steps = el("div", "steps");
      for (const s of d.steps) {
        const pill = el("span", "step " + s.state, (s.index + 1) + ". " + s.description);
        pill.title = "step " + (s.index + 1) + ": " + s.description + " (" + s.state + ")";
        steps.appendChild(pill);
      }
      card.appendChild(steps);

      const revs = el("dl", "revs");
      const rev = (k, v) => {
        if (!v) return;
        revs.appendChild(el("dt", null, k));
        const dd = el("dd", null, v);
        dd.title = v;
        revs.appendChild(dd);
      };
      rev("stable", d.stableRevision);
      rev("canary", d.canaryRevision);
      rev("aborted", d.abortedRevision);
      if (d.stepStartedAt && d.canaryRevision) rev("step", "started " + ago(d.stepStartedAt));
      card.appendChild(revs);

      const counts = el("div", "counts");
      const n = d.devices || {};
      for (const [k, label] of [["targeted", "targeted"], ["updated", "updated"], ["healthy", "healthy"], ["failed", "failed"]]) {
        const span = el("span");
        span.appendChild(el("b", null, n[k] || 0));
        span.appendChild(document.createTextNode(" " + label));
        counts.appendChild(span);
      }
      card.appendChild(counts);

      const conditions = el("div", "conditions");
      for (const c of d.conditions || []) {
        const bad = (c.type === "Ready" && c.status === "False" && d.phase !== "Progressing") || (c.type === "Stalled" && c.status === "True");
        const good = c.type === "Ready" && c.status === "True";
        const kind = bad ? " bad" : good ? " good" : c.status === "True" ? " true" : "";
        const pill = el("span", "condition" + kind, c.type + " " + c.status + " · " + c.reason);
        pill.title = c.type + "=" + c.status + " " + c.reason + (c.message ? ": " + c.message : "") + (c.lastTransitionTime ? " (since " + clock(c.lastTransitionTime) + ")" : "");
        conditions.appendChild(pill);
      }
      if (conditions.childNodes.length) card.appendChild(conditions);

      const ready = d.ready;
      const failure = d.rolloutFailure || d.compileFailure;
      const text = ready ? ready.reason + ": " + (ready.message || "") : "not reconciled yet";
      const message = el("div", "message" + (failure || (ready && ready.status === "False" && d.phase !== "Progressing") ? " bad" : ""), text);
      message.title = text;
      card.appendChild(message);
      list.appendChild(card);
    }
  }

  // --- the fleet map ----------------------------------------------------------------------------------------------

  function renderLegend() {
    const legend = $("legend");
    clear(legend);
    const counts = view.fleet ? view.fleet.counts : {};
    for (const state of STATES) {
      if ((state === "idle" || state === "other") && !counts[state]) continue;
      const item = el("span");
      item.appendChild(swatch(state));
      item.appendChild(document.createTextNode(LABELS[state] + " " + (counts[state] || 0)));
      item.dataset.state = state;
      legend.appendChild(item);
    }
    const ring = el("span");
    ring.appendChild(el("span", "swatch st-stable was-rb"));
    ring.appendChild(document.createTextNode("rolled back earlier"));
    ring.title = "the device rolled the canary back on its own (seen by this dashboard); it runs stable again";
    legend.appendChild(ring);
  }

  function fillBar(bar, counts, total) {
    clear(bar);
    for (const state of STATES) {
      const n = counts[state] || 0;
      if (!n) continue;
      const seg = el("span", "st-" + state);
      seg.style.width = (100 * n / Math.max(total, 1)) + "%"; // CSSOM, not a style attribute: allowed by the CSP
      seg.title = n + " " + LABELS[state];
      bar.appendChild(seg);
    }
  }

  function lineSummaryText(line) {
    const parts = [];
    for (const state of STATES) {
      if (line.counts[state]) parts.push(line.counts[state] + " " + LABELS[state]);
    }
    return parts.join(", ");
  }

  function lineShown(key) {
    return view.expandedAll || want.lines.has(key);
  }

  function toggleLine(key) {
    if (view.expandedAll) return;
    want.auto = false;
    if (want.lines.has(key)) want.lines.delete(key);
    else want.lines.add(key);
    connect();
  }

  function renderFleet() {
    renderHeader();
    renderLegend();
    const sites = $("sites");
    if (!view.fleet) return;
    sites.classList.toggle("roomy", view.fleet.total <= 300);
    if (!view.fleet.total) {
      clear(sites);
      dom.sites.clear();
      dom.lines.clear();
      sites.appendChild(el("div", "empty", "No EdgeDevices in this scope yet."));
      return;
    }
    const seenSites = new Set();
    const seenLines = new Set();
    for (const site of view.fleet.sites) {
      seenSites.add(site.site);
      let s = dom.sites.get(site.site);
      if (!s) {
        const node = el("section", "site");
        node.dataset.site = site.site;
        const head = el("div", "site-head");
        const name = el("span", "site-name", site.site || "(no site label)");
        const total = el("span", "site-total");
        head.appendChild(name);
        head.appendChild(total);
        node.appendChild(head);
        const body = el("div", "site-lines");
        node.appendChild(body);
        s = { node, total, body };
        dom.sites.set(site.site, s);
      }
      s.total.textContent = site.total + " devices · " + lineSummaryText(site);
      sites.appendChild(s.node); // keeps the server's order
      for (const line of site.lines) {
        seenLines.add(line.key);
        let l = dom.lines.get(line.key);
        if (!l) {
          const node = el("div", "line");
          node.dataset.line = line.key;
          const head = el("button", "line-head");
          head.type = "button";
          const caret = el("span", "caret");
          const name = el("span", "line-name", line.line || "(no line label)");
          const count = el("span", "line-count");
          const bar = el("div", "bar");
          head.appendChild(caret);
          head.appendChild(name);
          head.appendChild(count);
          head.appendChild(bar);
          head.addEventListener("click", () => toggleLine(line.key));
          const tiles = el("div", "tiles");
          node.appendChild(head);
          node.appendChild(tiles);
          l = { node, head, caret, count, bar, tiles };
          dom.lines.set(line.key, l);
        }
        l.count.textContent = line.total + (line.total === 1 ? " device" : " devices");
        l.head.title = lineSummaryText(line) + (view.expandedAll ? "" : lineShown(line.key) ? " (click to fold)" : " (click to show the devices)");
        fillBar(l.bar, line.counts, line.total);
        const shown = lineShown(line.key);
        l.tiles.hidden = !shown;
        l.caret.textContent = view.expandedAll ? "" : shown ? "▾" : "▸";
        s.body.appendChild(l.node);
      }
    }
    for (const [key, s] of dom.sites) {
      if (!seenSites.has(key)) {
        s.node.remove();
        dom.sites.delete(key);
      }
    }
    for (const [key, l] of dom.lines) {
      if (!seenLines.has(key)) {
        l.node.remove();
        dom.lines.delete(key);
      }
    }
    for (const node of sites.querySelectorAll(".empty")) node.remove();
  }

  function tileTitle(t) {
    return t.n + " · " + LABELS[t.st] + (t.v ? " · " + t.v : "") + "\n" + t.r + (t.rb ? "\n" + t.rb : "");
  }

  function placeTile(t, bulk) {
    const key = t.s + "/" + t.l;
    const line = dom.lines.get(key);
    let node = dom.tiles.get(t.id);
    if (!node) {
      node = el("button", "tile");
      node.type = "button";
      node.dataset.id = t.id;
      node.addEventListener("click", () => openDevice(t.id));
      dom.tiles.set(t.id, node);
    }
    node.className = "tile st-" + t.st + (t.rb ? " was-rb" : "") + (want.device === t.id ? " open" : "");
    node.dataset.state = t.st;
    node.dataset.name = t.n;
    node.title = tileTitle(t);
    node.setAttribute("aria-label", t.n + ": " + LABELS[t.st]);
    if (!line) return; // its line arrives with the next count update
    if (bulk) return; // renderTiles appends them in order
    if (node.parentNode !== line.tiles) {
      // keep names in natural order within a line
      let before = null;
      for (const other of line.tiles.children) {
        if (byName.compare(other.dataset.name, t.n) > 0) {
          before = other;
          break;
        }
      }
      line.tiles.insertBefore(node, before);
    }
  }

  function renderTiles() {
    // a snapshot may carry thousands of tiles: build them, then append each line's in one sorted pass
    const perLine = new Map();
    for (const t of view.tiles.values()) {
      placeTile(t, true);
      const key = t.s + "/" + t.l;
      if (!perLine.has(key)) perLine.set(key, []);
      perLine.get(key).push(t);
    }
    for (const [key, tiles] of perLine) {
      const line = dom.lines.get(key);
      if (!line) continue;
      tiles.sort((a, b) => byName.compare(a.n, b.n));
      const fragment = document.createDocumentFragment();
      for (const t of tiles) fragment.appendChild(dom.tiles.get(t.id));
      line.tiles.appendChild(fragment);
    }
  }

  // --- chart ------------------------------------------------------------------------------------------------------

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function renderChart() {
    const chart = $("chart");
    clear(chart);
    const d = view.deployments.find((x) => x.id === view.chart.deployment);
    $("chart-title").textContent = d ? d.name + " · " + d.model + " " + d.version : "";
    const points = view.chart.points;
    // user units = CSS pixels, so text keeps its shape at any width
    const W = Math.max(chart.clientWidth || 560, 200), H = 240, L = 34, R = 8, T = 12, B = 22;
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    if (!points.length) {
      chart.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, "no rollout data yet"));
      return;
    }
    const t0 = Date.parse(points[0].t);
    const t1 = Math.max(Date.now(), Date.parse(points[points.length - 1].t) + 1000);
    const total = (p) => CHART_STATES.reduce((a, s) => a + (p.counts[s] || 0), 0);
    const ymax = Math.max(1, ...points.map(total));
    const x = (t) => L + (W - L - R) * (t - t0) / Math.max(t1 - t0, 1);
    const y = (v) => H - B - (H - T - B) * v / ymax;
    for (const frac of [0, 0.5, 1]) {
      const v = Math.round(ymax * frac);
      chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      chart.appendChild(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end", class: "axis" }, v));
    }
    const minutes = (t1 - t0) / 60000;
    chart.appendChild(svg("text", { x: L, y: H - 6, class: "axis" }, clock(points[0].t)));
    chart.appendChild(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "axis" },
      "now (" + (minutes < 2 ? Math.round(minutes * 60) + " s" : Math.round(minutes) + " min") + ")"));
    // stacked step areas: each state's band from the cumulative sum below it to the sum including it
    const base = points.map(() => 0);
    for (const state of CHART_STATES) {
      if (!points.some((p) => p.counts[state])) continue;
      const top = points.map((p, i) => base[i] + (p.counts[state] || 0));
      let upper = "";
      let lower = "";
      for (let i = 0; i < points.length; i++) {
        const xa = x(Date.parse(points[i].t));
        const xb = i + 1 < points.length ? x(Date.parse(points[i + 1].t)) : x(t1);
        upper += (i ? " L" : "M") + xa.toFixed(1) + " " + y(top[i]).toFixed(1) + " L" + xb.toFixed(1) + " " + y(top[i]).toFixed(1);
        lower = " L" + xb.toFixed(1) + " " + y(base[i]).toFixed(1) + " L" + xa.toFixed(1) + " " + y(base[i]).toFixed(1) + lower;
      }
      chart.appendChild(svg("path", { d: upper + lower + " Z", class: "area-" + state }));
      for (let i = 0; i < points.length; i++) base[i] = top[i];
    }
    // step changes; a label too close to the previous one is left out (the line stays)
    let labelled = -Infinity;
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1], b = points[i];
      if (a.step === b.step && a.canary === b.canary) continue;
      const xm = x(Date.parse(b.t));
      chart.appendChild(svg("line", { x1: xm, x2: xm, y1: T, y2: H - B, class: "marker" }));
      if (xm - labelled < 44 || xm > W - R - 30) continue;
      const label = b.canary === null ? "done" : "step " + (b.step + 1);
      chart.appendChild(svg("text", { x: xm + 3, y: T + 9, class: "marker-label" }, label));
      labelled = xm;
    }
    const legend = $("chart-legend");
    clear(legend);
    const last = points[points.length - 1];
    for (const state of CHART_STATES) {
      if (!last.counts[state] && !points.some((p) => p.counts[state])) continue;
      const item = el("span");
      item.appendChild(swatch(state));
      item.appendChild(document.createTextNode(LABELS[state] + " " + (last.counts[state] || 0)));
      legend.appendChild(item);
    }
  }

  function renderEvents() {
    const list = $("events");
    clear(list);
    const d = view.deployments.find((x) => x.id === view.chart.deployment);
    $("events-title").textContent = d ? d.name : "";
    const events = d ? d.events : [];
    if (!events.length) {
      list.appendChild(el("li", "empty", "No events."));
      return;
    }
    for (const e of events) {
      const li = el("li", e.type);
      const when = el("span", "when", ago(e.time));
      when.title = e.time || "";
      li.appendChild(when);
      li.appendChild(el("span", "reason", e.reason + (e.count > 1 ? " ×" + e.count : "")));
      li.appendChild(el("span", "text", e.message));
      list.appendChild(li);
    }
  }

  // --- device page ------------------------------------------------------------------------------------------------

  function openDevice(id) {
    if (want.device === id) return;
    want.device = id;
    history.replaceState(null, "", "#device=" + encodeURIComponent(id));
    view.device = null;
    renderDevice();
    connect();
  }

  function closeDevice() {
    want.device = null;
    view.device = null;
    history.replaceState(null, "", location.pathname + location.search);
    renderDevice();
    connect();
  }

  function health(h) {
    if (!h) return null;
    return kv([
      ["verdict", h.verdict],
      ["samples", h.samples],
      ["errors", h.errors],
      ["non-finite", h.nonFinite],
      ["latency p50", h.latencyP50Ms !== undefined ? h.latencyP50Ms + " ms" : null],
      ["latency p95", h.latencyP95Ms !== undefined ? h.latencyP95Ms + " ms" : null],
      ["reason", h.reason],
      ["evaluated", h.evaluatedAt ? clock(h.evaluatedAt) + " (" + ago(h.evaluatedAt) + ")" : null],
    ]);
  }

  function renderDevice() {
    const drawer = $("device");
    for (const node of dom.tiles.values()) node.classList.toggle("open", node.dataset.id === want.device);
    if (!want.device) {
      drawer.hidden = true;
      return;
    }
    drawer.hidden = false;
    const d = view.device;
    const body = $("device-body");
    const scrolled = body.scrollTop; // an update redraws the page in place: keep the reader where they were
    clear(body);
    const [namespace, name] = want.device.split("/");
    $("device-name").textContent = name;
    if (!d) {
      $("device-where").textContent = namespace;
      body.appendChild(el("div", "empty", "loading…"));
      return;
    }
    if (d.missing) {
      $("device-where").textContent = namespace;
      body.appendChild(el("div", "empty", "This EdgeDevice does not exist (any more)."));
      return;
    }
    $("device-where").textContent = [d.namespace, d.site || "(no site)", d.line || "(no line)", d.hardware].filter(Boolean).join(" · ");
    const pill = el("div", "state-pill");
    pill.appendChild(swatch(d.state));
    pill.appendChild(document.createTextNode(LABELS[d.state]));
    body.appendChild(pill);
    const reason = el("div", "reason-box", d.reason);
    reason.id = "device-reason";
    body.appendChild(reason);
    if (d.note) body.appendChild(el("div", "reason-box note", d.note));

    const r = d.reachability || {};
    body.appendChild(el("h3", null, "Reachability"));
    body.appendChild(kv([
      ["state", r.online === true ? "online" : r.online === false ? "offline" : "unknown"],
      ["why", r.online === true ? null : r.reason],
      ["last heartbeat", r.lastSeen ? clock(r.lastSeen) + " (" + ago(r.lastSeen) + ")" : "never"],
      ["Lease duration", r.durationSeconds ? r.durationSeconds + " s" : null],
      ["holder", r.holder],
    ]));

    body.appendChild(el("h3", null, "Models"));
    if (!d.models.length) body.appendChild(el("div", "empty", "No model desired or reported."));
    for (const m of d.models) {
      const box = el("div", "model");
      const head = el("div", "model-head");
      head.appendChild(swatch(m.state));
      head.appendChild(el("span", null, m.name));
      head.appendChild(el("span", "hint", (LABELS[m.state] || m.state) + (m.deployment ? " · " + m.deployment : "")));
      box.appendChild(head);
      box.appendChild(el("div", "hint", m.reason));
      const want_ = m.desired || {};
      const rep = m.report || {};
      box.appendChild(kv([
        ["desired", want_.version ? want_.version + " (" + short(want_.revision) + ")" : "nothing"],
        ["precision", want_.artifact ? want_.artifact.precision + ", " + want_.artifact.sizeBytes + " bytes" : null],
        ["install state", rep.state],
        ["active", rep.activeVersion ? rep.activeVersion + " (" + short(rep.activeRevision) + ")" : null],
        ["previous", rep.previousVersion],
        ["message", rep.message],
        ["since", rep.lastTransitionTime ? clock(rep.lastTransitionTime) + " (" + ago(rep.lastTransitionTime) + ")" : null],
      ]));
      const h = health(rep.health);
      if (h) {
        box.appendChild(el("h3", null, "Last health summary"));
        box.appendChild(h);
      }
      body.appendChild(box);
    }

    body.appendChild(el("h3", null, "Transitions seen by this dashboard"));
    const hist = el("ol", "history");
    for (const t of d.transitions || []) {
      const li = el("li");
      const when = el("span", null, clock(t.t));
      when.title = t.t;
      li.appendChild(when);
      const st = el("span", "state-pill");
      st.appendChild(swatch(t.state));
      st.appendChild(document.createTextNode(LABELS[t.state] || t.state));
      li.appendChild(st);
      li.appendChild(el("span", "text", t.reason));
      hist.appendChild(li);
    }
    body.appendChild(hist);

    if (d.conditions && d.conditions.length) {
      body.appendChild(el("h3", null, "Conditions"));
      body.appendChild(kv(d.conditions.map((c) => [c.type, c.status + " " + c.reason + (c.message ? ": " + c.message : "")])));
    }
    body.appendChild(el("h3", null, "Labels"));
    body.appendChild(kv(Object.entries(d.labels || {})));
    if (Object.keys(d.annotations || {}).length) {
      body.appendChild(el("h3", null, "Annotations"));
      body.appendChild(kv(Object.entries(d.annotations)));
    }
    const cap = d.capabilities;
    body.appendChild(el("h3", null, "Agent"));
    body.appendChild(kv([
      ["agent version", d.agentVersion],
      ["observed generation", d.observedGeneration],
      ["arch", cap && cap.arch],
      ["CPUs", cap && cap.cpuCount],
      ["CPU flags", cap && (cap.cpuFlags || []).join(" ")],
      ["memory", cap && cap.memoryBytes ? Math.round(cap.memoryBytes / 1048576) + " MiB" : null],
      ["onnxruntime", cap && cap.onnxruntimeVersion],
      ["providers", cap && (cap.executionProviders || []).join(", ")],
    ]));
    body.scrollTop = scrolled;
  }

  // --- everything -------------------------------------------------------------------------------------------------

  function renderAll() {
    renderFleet();
    renderTiles();
    renderDeployments();
    renderChart();
    renderEvents();
    renderDevice();
  }

  function tick() {
    if (lastMessageAt && $("live").dataset.state === "live") {
      const seconds = (Date.now() - lastMessageAt) / 1000;
      $("live-text").textContent = "live · last change " + (seconds < 1 ? "just now" : Math.round(seconds) + " s ago");
    }
    if (view.chart.points.length) renderChart();
  }

  function start() {
    // ?lines=* shows every tile whatever the fleet's size; ?lines=site/line,... opens those lines
    const lines = new URLSearchParams(location.search).get("lines");
    if (lines !== null) {
      want.auto = false;
      if (lines === "*") want.all = true;
      else for (const key of lines.split(",")) if (key) want.lines.add(key);
    }
    const match = /^#device=(.+)$/.exec(location.hash);
    if (match) {
      try {
        want.device = decodeURIComponent(match[1]);
      } catch (e) {
        want.device = null; // a mangled link: open the map without a device
      }
    }
    $("device-close").addEventListener("click", closeDevice);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && want.device) closeDevice();
    });
    connect();
    setInterval(tick, 2000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
