// strictproxy console: live traffic, findings, the HSTS store and the CA, from the admin API
// of the same origin. Plain JavaScript, no library. Everything that came from traffic is put
// in the page with textContent, never as HTML: URLs and headers are the network's words.
"use strict";

const MAX_ROWS = 1000;          // rows kept in the page (the server's ring holds as many)
const $ = (id) => document.getElementById(id);

const state = {
  records: [],                  // newest last; at most MAX_ROWS
  byId: new Map(),
  pending: [],                  // arrived, not yet drawn
  paused: false,
  selected: null,
  lastId: 0,
  skipped: 0,
  frame: 0,
  view: "traffic",
  hstsOffset: 0,
  hstsLimit: 25,
};

// ---------- small helpers ----------
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}
function time(ts) { const d = new Date(ts); return isNaN(d) ? ts : d.toLocaleTimeString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0"); }
function bytes(n) { return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB"; }
function ms(n) { return n < 1000 ? n.toFixed(1) + " ms" : (n / 1000).toFixed(2) + " s"; }
function hostOf(url) { try { return new URL(url.includes("://") ? url : "https://" + url).hostname; } catch { return url; } }
function ipOf(client) { const i = client.lastIndexOf(":"); return i > 0 ? client.slice(0, i) : client; }
function header(pairs, name) { for (const [k, v] of pairs || []) if (k.toLowerCase() === name) return v; return null; }
function fixOf(detail) { const i = detail.indexOf(" → "); return i < 0 ? ["", detail] : [detail.slice(0, i), detail.slice(i + 3)]; }
function left(sec) {
  if (sec <= 0) return "expired";
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60);
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min ${Math.floor(sec % 60)} s`;
}
function expiry(entry) {
  if (entry.expires_at == null) return ["never (preload)", "—"];
  const d = new Date(entry.expires_at * 1000);
  return [d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"), left(entry.expires_at - Date.now() / 1000)];
}
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null; try { json = JSON.parse(text); } catch { /* not JSON */ }
  if (!r.ok) throw new Error((json && json.error) || `${r.status} ${r.statusText}`);
  return json;
}

// ---------- traffic ----------
function matches(r) {
  const text = $("f-text").value.trim().toLowerCase();
  if (text && !(r.url.toLowerCase().includes(text) || r.method.toLowerCase() === text || r.client.includes(text))) return false;
  const cls = $("f-status").value;
  if (cls !== "" && String(Math.floor(r.status / 100)) !== cls) return false;
  const action = $("f-action").value;
  if (action && r.action !== action) return false;
  const kind = $("f-finding").value;
  if (kind === "*" && !(r.findings && r.findings.length)) return false;
  if (kind && kind !== "*" && !(r.findings || []).some((f) => f.kind === kind)) return false;
  return true;
}

function row(r) {
  const cls = "s" + Math.floor(r.status / 100);
  const cell = (cls, props, ...children) => el("div", Object.assign({ role: "cell", class: cls }, props), ...children);
  return el("div", { class: "tr", role: "row", tabindex: "0", "data-id": String(r.id), "aria-selected": String(state.selected === r.id) },
    cell("c-time", { text: time(r.ts) }),
    cell("c-client", { text: r.client }),
    cell("c-method", { text: r.method }),
    cell("c-url", { text: r.url, title: r.url }),
    cell("c-status status " + cls, { text: r.status ? String(r.status) : "—" }),
    cell("c-action", null, el("span", { class: "badge a-" + r.action, text: r.action })),
    cell("c-dur", { text: ms(r.duration_ms) }),
    cell("c-bytes", { text: bytes(r.response_bytes), title: `request ${r.request_bytes} B, response ${r.response_bytes} B` }),
    cell("c-find", null, ...(r.findings || []).map((f) => el("span", { class: "badge finding", text: f.kind, title: f.detail }))));
}

function add(records) {
  for (const r of records) {
    if (state.byId.has(r.id)) continue;
    state.records.push(r);
    state.byId.set(r.id, r);
    state.lastId = Math.max(state.lastId, r.id);
    state.pending.push(r);
  }
  while (state.records.length > MAX_ROWS) state.byId.delete(state.records.shift().id);
  if (state.pending.length > MAX_ROWS) state.pending.splice(0, state.pending.length - MAX_ROWS);
  if (state.paused) status(); else schedule();
}

// Drawing happens in batches, whatever the event rate: at most every DRAW_EVERY ms, in an
// animation frame, and at most DRAW_MAX rows a frame (a big backlog is spread over the next
// frames), so the page never stalls for long and a row still shows within a second of its
// exchange's end. A 1,000-row table's layout is the expensive part: one per batch, not per row.
const DRAW_EVERY = 100;
const DRAW_MAX = 50;
let lastDraw = 0;
let generation = 0;             // bumps on every full redraw; a stale chunked fill stops
function schedule(now) {
  if (state.frame || state.paused) return;
  const wait = now ? 0 : Math.max(0, lastDraw + DRAW_EVERY - performance.now());
  state.frame = setTimeout(() => requestAnimationFrame(draw), wait);
}
function trim(tbody) {
  let excess = tbody.childElementCount - MAX_ROWS;
  while (excess-- > 0) tbody.lastElementChild.remove();
  // Rows whose record left the page's history.
  while (tbody.lastElementChild && !state.byId.has(Number(tbody.lastElementChild.dataset.id))) tbody.lastElementChild.remove();
}
function draw() {
  state.frame = 0;
  lastDraw = performance.now();
  const tbody = $("rows");
  // Oldest first: each chunk goes on top of the previous one, so the newest ends on top.
  const batch = state.pending.splice(0, DRAW_MAX).filter((r) => state.byId.has(r.id) && matches(r));
  if (batch.length) {
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(row(batch[i]));
    tbody.prepend(frag);
    trim(tbody);
  }
  status();
  if (state.pending.length) schedule(true);
}
// A full rebuild (filters, resume, clear): the newest rows at once, the rest appended in
// chunks over the next frames.
function redraw() {
  if (state.frame) { clearTimeout(state.frame); state.frame = 0; }
  const gen = ++generation;
  const list = [];
  for (let i = state.records.length - 1; i >= 0 && list.length < MAX_ROWS; i--) if (matches(state.records[i])) list.push(state.records[i]);
  state.pending = [];
  const tbody = $("rows");
  let at = 0;
  const chunk = () => {
    if (gen !== generation) return;
    const frag = document.createDocumentFragment();
    for (const end = Math.min(at + DRAW_MAX, list.length); at < end; at++) frag.append(row(list[at]));
    if (at <= DRAW_MAX) tbody.replaceChildren(frag); else tbody.append(frag);
    status();
    if (at < list.length) requestAnimationFrame(chunk);
  };
  chunk();
}
function status() {
  const shown = $("rows").childElementCount;
  $("shown").textContent = `${shown} shown of ${state.records.length}` + (state.skipped ? ` · ${state.skipped} skipped (too fast)` : "");
  $("empty").hidden = shown > 0;
  const live = $("live");
  if (state.paused) { live.className = "live paused"; live.textContent = `paused (${state.pending.length} new)`; }
}

// ---------- detail ----------
function headersTable(pairs) {
  if (!pairs || !pairs.length) return el("p", { class: "muted", text: "none recorded" });
  return el("table", { class: "headers" }, el("tbody", null, ...pairs.map(([k, v]) =>
    el("tr", null, el("td", { text: k }), el("td", null, v === "[redacted]"
      ? el("span", { class: "badge redacted", text: "[redacted]", title: "masked: set redact_credentials = false to show" })
      : v)))));
}

// The redirect chain an exchange belongs to: same client address, each step's Location
// (resolved against its URL) being the next step's URL.
function nextOf(r) {
  const loc = r.status >= 300 && r.status < 400 ? header(r.response_headers, "location") : null;
  if (!loc) return null;
  let target; try { target = new URL(loc, r.url).href; } catch { return null; }
  const ip = ipOf(r.client);
  return state.records.find((x) => x.id > r.id && ipOf(x.client) === ip && (x.url === target || x.url + "/" === target || x.url === target + "/")) || null;
}
function chainOf(r) {
  const before = [];
  let cur = r;
  for (let guard = 0; guard < 20; guard++) {
    const prev = state.records.find((x) => x.id < cur.id && nextOf(x) === cur);
    if (!prev) break;
    before.unshift(prev); cur = prev;
  }
  const chain = [...before, r];
  cur = r;
  for (let guard = 0; guard < 20; guard++) { const n = nextOf(cur); if (!n || chain.includes(n)) break; chain.push(n); cur = n; }
  return chain;
}

function openDetail(id, focus) {
  const r = state.byId.get(id);
  if (!r) return;
  state.selected = id;
  for (const tr of $("rows").querySelectorAll('[aria-selected="true"]')) tr.setAttribute("aria-selected", "false");
  const tr = $("rows").querySelector(`[data-id="${id}"]`);
  if (tr) tr.setAttribute("aria-selected", "true");
  const d = $("detail");
  const findings = (r.findings || []).map((f) => {
    const [what, fix] = fixOf(f.detail);
    return el("div", { class: "finding-box" }, el("span", { class: "badge finding", text: f.kind }), " ", what,
      el("div", { class: "fix" }, el("b", { text: "Fix: " }), fix));
  });
  const chain = chainOf(r);
  d.replaceChildren(...[
    el("button", { class: "close", type: "button", text: "Close ✕", "aria-label": "Close the detail", onclick: closeDetail }),
    el("h2", null, `${r.method} `, el("span", { class: "mono", text: r.url })),
    el("dl", { class: "kv" },
      el("dt", { text: "Status" }), el("dd", { class: "status s" + Math.floor(r.status / 100), text: String(r.status) + (r.rewritten_from ? ` (rewritten from ${r.rewritten_from})` : "") }),
      el("dt", { text: "Action" }), el("dd", null, el("span", { class: "badge a-" + r.action, text: r.action })),
      el("dt", { text: "Client" }), el("dd", { class: "mono", text: r.client }),
      el("dt", { text: "Server" }), el("dd", { class: "mono", text: r.server_ip || "—" }),
      el("dt", { text: "Protocol" }), el("dd", { text: r.http_version || "—" }),
      el("dt", { text: "Started" }), el("dd", { text: new Date(r.ts).toISOString() }),
      el("dt", { text: "Duration" }), el("dd", { text: ms(r.duration_ms) }),
      el("dt", { text: "Bytes" }), el("dd", { text: `request ${bytes(r.request_bytes)}, response ${bytes(r.response_bytes)}` }),
      el("dt", { text: "Exchange" }), el("dd", { text: "#" + r.id }),
      r.sts ? el("dt", { text: "STS" }) : null, r.sts ? el("dd", { class: "mono", text: r.sts }) : null),
    findings.length ? el("h3", { text: "Findings" }) : null, ...findings,
    chain.length > 1 ? el("h3", { text: "Redirect chain" }) : null,
    chain.length > 1 ? el("ol", { class: "chain" }, ...chain.map((c) => el("li", { class: c === r ? "here" : "" },
      el("button", { class: "link", type: "button", text: `${c.status} ${c.method} ${c.url}`, onclick: () => openDetail(c.id, true) })))) : null,
    el("h3", { text: "Request headers" }), headersTable(r.request_headers),
    el("h3", { text: "Response headers" }), headersTable(r.response_headers)].filter((c) => c != null));
  d.hidden = false;
  d.parentElement.classList.add("has-detail");
  if (focus) d.focus();
}
function closeDetail() {
  const id = state.selected;
  state.selected = null;
  $("detail").hidden = true;
  $("detail").parentElement.classList.remove("has-detail");
  const tr = $("rows").querySelector(`[data-id="${id}"]`);
  if (tr) { tr.setAttribute("aria-selected", "false"); tr.focus(); }
}

function wireTraffic() {
  const rows = $("rows");
  rows.addEventListener("click", (e) => { const tr = e.target.closest('[role="row"]'); if (tr) openDetail(Number(tr.dataset.id)); });
  rows.addEventListener("keydown", (e) => {
    const tr = e.target.closest('[role="row"]'); if (!tr) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openDetail(Number(tr.dataset.id), true); }
    else if (e.key === "ArrowDown" && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
    else if (e.key === "ArrowUp" && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("detail").hidden) closeDetail(); });
  for (const id of ["f-text", "f-status", "f-action", "f-finding"]) $(id).addEventListener("input", redraw);
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").setAttribute("aria-pressed", String(state.paused));
    if (state.paused) status(); else { live(true); redraw(); }
  });
  $("clear").addEventListener("click", () => {
    state.records = []; state.byId.clear(); state.pending = []; state.skipped = 0;
    $("detail").hidden = true; $("detail").parentElement.classList.remove("has-detail"); state.selected = null; redraw();
  });
}

function live(on) {
  if (state.paused) return status();
  const l = $("live");
  l.className = "live " + (on ? "on" : "off");
  l.textContent = on ? "live" : "disconnected, retrying…";
}

async function connect() {
  try { add((await api("GET", `/exchanges?limit=${MAX_ROWS}`)).reverse()); } catch (e) { live(false); }
  const es = new EventSource(`/events?after=${state.lastId}`);
  es.addEventListener("open", () => live(true));
  es.addEventListener("error", () => live(false));
  es.addEventListener("exchange", (e) => { try { add([JSON.parse(e.data)]); } catch { /* ignore a bad line */ } });
  es.addEventListener("lagged", (e) => { try { state.skipped += JSON.parse(e.data).skipped; } catch { /* */ } status(); });
}

// ---------- tabs ----------
function show(view) {
  state.view = view;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.id === "tab-" + view;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  if (view === "hsts") loadList();
  if (view === "findings") loadFindings();
  if (view === "ca") loadCa();
  if (view === "traffic") redraw();
}
function wireTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => show(tab.id.slice(4)));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus(); show(next.id.slice(4));
    });
  });
}

// ---------- HSTS ----------
function entryFacts(entry, host) {
  const [date, remaining] = expiry(entry);
  return el("dl", { class: "kv" },
    el("dt", { text: "Deciding entry" }), el("dd", { class: "mono", text: entry.domain + (host && entry.domain !== host ? "  (a superdomain's entry)" : "") }),
    el("dt", { text: "Source" }), el("dd", { text: entry.source }),
    el("dt", { text: "includeSubDomains" }), el("dd", { text: entry.include_subdomains ? "yes" : "no" }),
    el("dt", { text: "Expires" }), el("dd", { text: date }),
    el("dt", { text: "Time left" }), el("dd", { text: remaining }));
}
async function query(host) {
  const out = $("q-result");
  try {
    const s = await api("GET", "/hsts/" + encodeURIComponent(host));
    const parts = [el("p", { class: "result" }, el("span", { class: s.enforced ? "yes" : "no", id: "q-enforced", text: s.enforced ? "Enforced" : "Not enforced" }), " for ", el("code", { text: s.host }))];
    if (s.exempt || s.exemption) parts.push(el("p", { class: "notice", text: "Exempted by the operator: " + (s.exempt || s.exemption) }));
    if (s.entry) {
      parts.push(entryFacts(s.entry, s.host));
      if (s.entry.source !== "preload") parts.push(el("p", null, el("button", { type: "button", class: "danger", text: `Delete ${s.entry.domain}`, onclick: () => remove(s.entry.domain, () => query(host)) })));
    } else parts.push(el("p", { class: "muted", text: "No learned, manual or preload entry covers this host: plain HTTP to it is forwarded as is." }));
    out.replaceChildren(...parts);
  } catch (e) { out.replaceChildren(el("p", { class: "no", text: e.message })); }
}
async function remove(domain, then) {
  try { await api("DELETE", "/hsts/" + encodeURIComponent(domain)); } catch (e) { alert(e.message); }
  loadList(); if (then) then();
}
async function loadList() {
  const q = $("l-q").value.trim();
  try {
    const p = await api("GET", `/hsts?q=${encodeURIComponent(q)}&offset=${state.hstsOffset}&limit=${state.hstsLimit}`);
    $("l-rows").replaceChildren(...p.entries.map((e) => {
      const [date, remaining] = expiry(e);
      return el("tr", null, el("td", { class: "mono", text: e.domain }), el("td", { text: e.source }),
        el("td", { text: e.include_subdomains ? "yes" : "no" }), el("td", { text: date }), el("td", { text: remaining }),
        el("td", null, el("button", { type: "button", class: "danger", text: "Delete", "aria-label": "Delete " + e.domain, onclick: () => remove(e.domain) })));
    }));
    const end = Math.min(p.offset + p.entries.length, p.total);
    $("l-info").textContent = p.total ? `${p.offset + 1}–${end} of ${p.total}` : "no entries" + (q ? " match" : "");
    $("l-prev").disabled = p.offset === 0;
    $("l-next").disabled = end >= p.total;
    $("l-counts").textContent = `learned ${p.counts.learned} · manual ${p.counts.manual} · preload ${p.counts.preload} (preload entries are counted, not listed)`;
  } catch (e) { $("l-info").textContent = e.message; }
}
function wireHsts() {
  $("hsts-query").addEventListener("submit", (e) => { e.preventDefault(); query($("q-host").value.trim()); });
  $("hsts-add").addEventListener("submit", async (e) => {
    e.preventDefault();
    const domain = $("a-domain").value.trim();
    try {
      const entry = await api("PUT", "/hsts/" + encodeURIComponent(domain), { include_subdomains: $("a-subs").checked, max_age: Number($("a-maxage").value) });
      $("a-result").replaceChildren(el("p", { class: "yes", id: "a-ok", text: `Added ${entry.domain}` }));
      loadList();
    } catch (err) { $("a-result").replaceChildren(el("p", { class: "no", text: err.message })); }
  });
  let timer = 0;
  $("l-q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { state.hstsOffset = 0; loadList(); }, 200); });
  $("hsts-search").addEventListener("submit", (e) => e.preventDefault());
  $("l-prev").addEventListener("click", () => { state.hstsOffset = Math.max(0, state.hstsOffset - state.hstsLimit); loadList(); });
  $("l-next").addEventListener("click", () => { state.hstsOffset += state.hstsLimit; loadList(); });
}

// ---------- findings ----------
function goTo(id) {
  show("traffic");
  for (const sel of ["f-status", "f-action", "f-finding"]) $(sel).value = "";
  $("f-text").value = "";
  redraw();
  openDetail(id, true);
}
async function loadFindings() {
  try {
    const s = await api("GET", "/findings");
    const latest = new Map();
    for (const t of s.by_host) if (!latest.has(t.kind)) latest.set(t.kind, t.detail);
    $("k-rows").replaceChildren(...Object.entries(s.by_kind).map(([kind, n]) => {
      const [, fix] = fixOf(latest.get(kind) || "");
      return el("tr", null, el("td", null, el("span", { class: "badge finding", text: kind })), el("td", { text: String(n) }), el("td", { text: fix }));
    }));
    $("h-rows").replaceChildren(...s.by_host.map((t) => {
      const [what, fix] = fixOf(t.detail);
      return el("tr", null, el("td", null, el("span", { class: "badge finding", text: t.kind })), el("td", { class: "mono", text: t.host }),
        el("td", { text: String(t.count) }), el("td", null, what, el("div", null, el("b", { text: "Fix: " }), fix)),
        el("td", null, ...t.exchanges.slice().reverse().map((id) => state.byId.has(id)
          ? el("button", { type: "button", class: "link", text: "#" + id, onclick: () => goTo(id) })
          : el("span", { class: "muted", text: "#" + id + " ", title: "no longer in the console's history" }))));
    }));
    $("h-empty").hidden = s.by_host.length > 0;
    const total = Object.values(s.by_kind).reduce((a, b) => a + b, 0);
    $("findings-total").textContent = total ? String(total) : "";
  } catch { /* the next refresh tries again */ }
}

// ---------- CA ----------
async function loadCa() {
  try {
    const ca = await api("GET", "/ca");
    $("ca-fp").textContent = ca.sha256;
    $("ca-intro").textContent = ca.intro;
    $("ca-steps").replaceChildren(...ca.platforms.flatMap((p) => [el("h3", { text: p.name }), ...p.steps.map((s) => s.command
      ? el("pre", { text: s.command })
      : el("p", null, ...s.text.split("`").map((part, i) => i % 2 ? el("code", { text: part }) : part)))]));
  } catch (e) { $("ca-intro").textContent = e.message; }
}

document.addEventListener("DOMContentLoaded", () => {
  wireTabs(); wireTraffic(); wireHsts();
  connect();
  loadFindings();
  // The findings badge and panel, and the HSTS list's time left, stay current.
  setInterval(() => { if (state.view === "findings" || document.visibilityState === "visible") loadFindings(); }, 2000);
  setInterval(() => { if (state.view === "hsts") loadList(); }, 10000);
});
