// The vm-proxy inspector: a page over the admin API (/admin/api/...). No build step and no
// dependency. Conversation text is untrusted: it is only ever set as text, never as HTML.
"use strict";

const TURNS_PER_PAGE = 200;
const POSITIONS_PER_PAGE = 100;
const PAGE_ID = /^\[((?:msg|seg|claim|img)_\d+)\]/;
const state = { key: sessionStorage.getItem("vm-admin-key") || "", conv: null, cursor: null,
  turnsFrom: null, timeline: null, pagesFrom: 0 };

const $ = (id) => document.getElementById(id);

// Bidirectional overrides and isolates in stored text would reorder what follows them
// on the page: they are shown as their code points instead.
const BIDI = /[\u202a-\u202e\u2066-\u2069]/g;
const shown = (text) =>
  String(text).replace(BIDI, (c) => `<U+${c.codePointAt(0).toString(16).toUpperCase()}>`);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "onclick") node.addEventListener("click", value);
    else if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(shown(child)));
  }
  return node;
}

function status(text) { $("status").textContent = text; }

async function api(path) {
  const reply = await fetch("/admin/api/" + path, {
    headers: { authorization: "Bearer " + state.key },
  });
  const body = await reply.json();
  if (!reply.ok) {
    const message = (body.error && body.error.message) || reply.statusText;
    status(message);
    throw new Error(message);
  }
  return body;
}

function conversationPath(rest) {
  const conv = state.conv;
  const sep = rest.includes("?") ? "&" : "?";
  return `conversations/${encodeURIComponent(conv.id)}${rest}${sep}tenant=${encodeURIComponent(conv.tenant)}`;
}

// -- conversations -----------------------------------------------------------------------

async function loadConversations(reset) {
  if (reset) { state.cursor = null; $("conversations").replaceChildren(); }
  const params = new URLSearchParams({ limit: "50" });
  const session = $("session").value.trim();
  if (session) params.set("session", session);
  if (state.cursor) params.set("before", state.cursor);
  const page = await api("conversations?" + params);
  for (const conv of page.data) {
    const item = el("li", { "data-id": conv.id, onclick: () => openConversation(conv) },
      el("div", {}, conv.session || conv.id),
      el("div", { class: "meta" }, `${conv.turns} turns · ${conv.pages} pages · ` +
        `${conv.tokens.toLocaleString()} tokens · ${conv.last_used}`));
    $("conversations").append(item);
  }
  state.cursor = page.next;
  $("more-conversations").hidden = !page.next;
  status(`${$("conversations").children.length} conversation(s)`);
}

async function openConversation(conv) {
  state.conv = conv;
  for (const li of $("conversations").children) {
    li.classList.toggle("active", li.dataset.id === conv.id);
  }
  const info = await api(conversationPath(""));
  $("conv-head").replaceChildren(
    el("h2", {}, info.session ? `${info.session} (${info.id})` : info.id),
    el("div", { class: "meta" }, `tenant ${info.tenant} · ${info.turns} turns · ` +
      `${info.messages} messages · ${info.pages} pages · ${info.tokens.toLocaleString()} ` +
      `tokens of full history · last used ${info.last_used}` +
      (info.parent ? ` · forked from ${info.parent} at message ${info.fork_at}` : "")));
  $("conversation").hidden = false;
  state.pagesFrom = 0;
  showTab("timeline");
  await loadTimeline(null);
}

// -- the timeline of turns -------------------------------------------------------------------

async function loadTimeline(from) {
  const params = new URLSearchParams({ limit: String(TURNS_PER_PAGE) });
  if (from !== null) params.set("from", String(from));
  const page = await api(conversationPath("/turns?" + params));
  state.timeline = page;
  $("turns-range").textContent = `turns ${page.from}–${Math.min(page.to, page.turns)} of ${page.turns}` +
    ` (${page.data.length} with memory)`;
  $("turns-prev").disabled = page.previous === null;
  $("turns-next").disabled = page.next === null;
  drawTimeline(page.data);
}

function drawTimeline(turns) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 1000, height = 200, slot = width / Math.max(turns.length, 1);
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...turns.map((t) => t.full || 0), ...turns.map((t) => t.sent || 0));
  turns.forEach((t, i) => {
    const x = i * slot, w = Math.max(1, slot * 0.8);
    const full = document.createElementNS(ns, "rect");
    const fullHeight = (height * (t.full || 0)) / top;
    full.setAttribute("x", x); full.setAttribute("y", height - fullHeight);
    full.setAttribute("width", w); full.setAttribute("height", fullHeight);
    full.setAttribute("fill", "none"); full.setAttribute("stroke", "#999");
    const sent = document.createElementNS(ns, "rect");
    const sentHeight = (height * (t.sent || 0)) / top;
    sent.setAttribute("x", x); sent.setAttribute("y", height - sentHeight);
    sent.setAttribute("width", w); sent.setAttribute("height", Math.max(sentHeight, 1));
    sent.setAttribute("fill", "#36c"); sent.setAttribute("class", "turn");
    sent.setAttribute("data-turn", t.turn); sent.setAttribute("data-request", t.request);
    const title = document.createElementNS(ns, "title");
    title.textContent = `turn ${t.turn}: ${t.sent} tokens sent of ${t.full} · ${t.faults} ` +
      `fault(s) · ${t.searches} search(es) · pages by level ${JSON.stringify(t.mapped)}`;
    sent.append(title);
    // The whole slot answers a click: a turn that sent little is still easy to hit.
    const hit = document.createElementNS(ns, "rect");
    hit.setAttribute("x", x); hit.setAttribute("y", 0); hit.setAttribute("width", slot);
    hit.setAttribute("height", height + 20); hit.setAttribute("fill", "transparent");
    hit.setAttribute("class", "turn"); hit.setAttribute("data-turn", t.turn);
    hit.append(title.cloneNode(true));
    for (const node of [full, sent, hit]) {
      node.addEventListener("click", () => openTurn(t.turn, t.request));
    }
    svg.append(full, sent, hit);
    if (t.faults > 0) {
      // One mark under a turn that faulted, larger the more it faulted.
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", x + w / 2); dot.setAttribute("cy", height + 8);
      dot.setAttribute("r", Math.min(2 + t.faults, slot / 2, 8)); dot.setAttribute("fill", "#d33");
      svg.insertBefore(dot, hit);
    }
  });
  $("timeline").replaceChildren(svg);
}

// -- one turn --------------------------------------------------------------------------------

async function openTurn(turn, request) {
  const replay = await api(conversationPath(`/turns/${turn}?request=${request || 0}`));
  showTab("turn");
  const check = replay.check || {};
  const badge = check.same === true ? el("span", { class: "badge same" }, "rebuilt: the same bytes as sent")
    : check.same === false ? el("span", { class: "badge differs" }, "rebuilt, differs: " + check.differences.join("; "))
    : el("span", { class: "badge unknown" }, check.note || "not rebuilt");
  $("turn-head").replaceChildren(el("h2", { id: "turn-title" }, `Turn ${replay.turn}` +
    (replay.requests > 1 ? ` (request ${replay.request + 1} of ${replay.requests})` : "")), badge);
  $("turn-facts").replaceChildren(facts(replay));
  $("context").replaceChildren(...contextOf(replay));
  status(`turn ${replay.turn}`);
}

function table(caption, rows) {
  return el("table", {}, el("caption", {}, caption),
    ...rows.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", {}, value ?? "–"))));
}

function facts(replay) {
  const tokens = replay.tokens || {};
  const levels = replay.mapped_levels || {};
  const box = el("div", { class: "facts" },
    table("Prompt tokens", [["rules + system", tokens.rules], ["tools", tokens.tools],
      ["framing", tokens.framing], ["leading manifest", tokens.manifest],
      ["window (verbatim)", tokens.window], ["recalled block", tokens.block],
      ["first prompt", tokens.prompt], ["reply reserve", tokens.reply],
      ["sent, whole turn", tokens.sent], ["full history", tokens.full]]),
    table("Pages", [["pinned (verbatim)", (replay.pinned || []).length],
      ["level 0", levels["0"]], ["level 1", levels["1"]], ["excerpts", levels.excerpts],
      ["level 2", levels["2"]], ["level 3", levels["3"]],
      ["named in manifest", (replay.more || []).length], ["omitted", replay.omitted]]));
  const calls = el("div", {}, el("strong", {}, "Faults: "),
    (replay.faults || []).map((f) => `${f.id} at level ${f.level}`).join(", ") || "none",
    el("br"), el("strong", {}, "Searches: "),
    (replay.searches || []).map((s) => `“${s.query}” → ${(s.hits || []).join(", ")}`).join("; ") || "none");
  box.append(calls);
  return box;
}

function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => (typeof part.text === "string" ? part.text : JSON.stringify(part))).join("\n");
  }
  return content === null || content === undefined ? "" : JSON.stringify(content, null, 1);
}

function contextOf(replay) {
  const body = replay.upstream_request;
  if (!body) return [el("p", {}, "No prompt to show: " + ((replay.check || {}).note || ""))];
  const levels = new Map((replay.mapped || []).map((m) => [m.id, m.level]));
  const items = body.messages || body.input || [];
  return items.map((message, index) => {
    const role = message.role || message.type || "item";
    const text = message.content !== undefined ? contentText(message.content)
      : JSON.stringify(message, null, 1);
    const extra = message.tool_calls ? "\n" + JSON.stringify(message.tool_calls) : "";
    const pre = el("pre", { class: "content" });
    const lines = (text + extra).split("\n");
    lines.forEach((line, i) => {
      const match = PAGE_ID.exec(line);
      const level = match && levels.has(match[1]) ? levels.get(match[1]) : null;
      pre.append(el("span", { class: "line", "data-level": level, "data-page": match ? match[1] : null }, line));
      if (i < lines.length - 1) pre.append("\n");
    });
    return el("div", { class: "message", "data-index": index },
      el("div", { class: "role" }, `${index}: ${role}${message.name ? " (" + message.name + ")" : ""}`), pre);
  });
}

// -- pages, search, branches -----------------------------------------------------------------

async function loadPages(from) {
  const page = await api(conversationPath(`/pages?from=${from}&limit=${POSITIONS_PER_PAGE}`));
  state.pagesFrom = from;
  $("pages-range").textContent = `messages ${page.from}–${page.to - 1} of ${page.length}`;
  $("pages-prev").disabled = from === 0;
  $("pages-next").disabled = page.next === null;
  $("pages").tBodies[0].replaceChildren(...page.data.map((p) => el("tr", { onclick: () => openPage(p.id) },
    el("td", {}, p.id), el("td", {}, p.type), el("td", {}, p.speaker || p.role),
    el("td", {}, p.said || ""), el("td", {}, p.tokens.join("/")), el("td", {}, p.hint))));
}

async function openPage(id) {
  const page = await api(conversationPath(`/pages/${encodeURIComponent(id)}`));
  $("page-body").replaceChildren(el("h3", {}, `${page.id} · ${page.type} · ${page.speaker || page.role}`),
    el("div", { class: "meta" }, `position ${page.position} · turn ${page.turn}` +
      (page.said ? ` · said ${page.said}` : "") + ` · on ${page.provenance.conversation}`),
    el("p", {}, el("em", {}, "hint: "), page.hint),
    ...page.levels.map((l) => el("div", {}, el("h4", {}, `level ${l.level} (${l.tokens} tokens)`),
      el("pre", { "data-level": l.level }, l.text))));
  $("page-view").hidden = false;
}

async function search(query) {
  const found = await api(conversationPath(`/search?q=${encodeURIComponent(query)}&limit=8`));
  $("results").replaceChildren(...found.results.map((r) => el("li", { onclick: () => openPage(r.id) },
    el("strong", {}, r.id), " ", r.hint)));
  if (!found.results.length) $("results").append(el("li", {}, "no pages match"));
}

async function loadTree() {
  const tree = await api(conversationPath("/tree"));
  const children = new Map();
  for (const node of tree.data) {
    const list = children.get(node.parent) || [];
    list.push(node);
    children.set(node.parent, list);
  }
  const branch = (node) => el("li", {},
    el("span", { class: node.on_path ? "on-path" : null }, `${node.id}` +
      (node.fork_at !== null ? ` (from message ${node.fork_at})` : "") +
      ` · ${node.messages} messages` + (node.sessions.length ? ` · ${node.sessions.join(", ")}` : "")),
    el("ul", {}, ...(children.get(node.id) || []).map(branch)));
  $("tree").replaceChildren(...tree.data.filter((n) => n.id === tree.root).map(branch));
}

function showTab(name) {
  for (const button of document.querySelectorAll(".tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== "tab-" + name;
}

// -- wiring ----------------------------------------------------------------------------------

function guard(action) {
  return (event) => {
    if (event && event.preventDefault) event.preventDefault();
    action(event).catch((error) => status(String(error.message || error)));
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = state.key;
  $("login").addEventListener("submit", guard(async () => {
    state.key = $("key").value.trim();
    sessionStorage.setItem("vm-admin-key", state.key);
    await loadConversations(true);
  }));
  $("filter").addEventListener("submit", guard(() => loadConversations(true)));
  $("more-conversations").addEventListener("click", guard(() => loadConversations(false)));
  $("turns-prev").addEventListener("click", guard(() => loadTimeline(state.timeline.previous)));
  $("turns-next").addEventListener("click", guard(() => loadTimeline(state.timeline.next)));
  $("pages-prev").addEventListener("click", guard(() => loadPages(Math.max(0, state.pagesFrom - POSITIONS_PER_PAGE))));
  $("pages-next").addEventListener("click", guard(() => loadPages(state.pagesFrom + POSITIONS_PER_PAGE)));
  $("search-form").addEventListener("submit", guard(() => search($("query").value)));
  $("page-close").addEventListener("click", () => { $("page-view").hidden = true; });
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", guard(async () => {
      showTab(button.dataset.tab);
      if (button.dataset.tab === "pages") await loadPages(state.pagesFrom);
      if (button.dataset.tab === "tree") await loadTree();
    }));
  }
  if (state.key) guard(() => loadConversations(true))();
});
