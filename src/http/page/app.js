// seatgate admin page. Plain JS, no dependencies. The bearer token lives in sessionStorage
// and travels only in the Authorization header, never in a URL.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const S = { tenant: "", connector: "", guild: "", servers: [], connectors: [], guilds: new Map(), channels: new Map(), roles: new Map(), q: "" };

// Error codes as sentences an admin can act on (the same codes as the API and the logs).
const SENTENCES = {
  mirror_payload_rejected: "Discord refused this message as it was; it was not retried.",
  mirror_delivery_timeout: "The delivery took too long; it was retried until its attempts ran out.",
  mirror_delivery_panicked: "The delivery failed inside the service; it was retried until its attempts ran out.",
  seat_limit_exceeded: "More people can see the mirrored channels than this server pays for; mirroring is paused until members leave or the limit is raised.",
  seat_check_pending: "The seat count is not current yet; mirroring waits for a fresh count.",
  seat_snapshot_missing: "This server has not been counted yet. Press Refresh count.",
  seat_audit_failed: "Counting the seats failed repeatedly (the bot may have lost access to the server); mirroring is paused until a count succeeds.",
  bot_not_in_guild: "The bot is not in this server, or cannot see it: invite it (or give it back its access); it is tried again every minute.",
  channel_not_in_guild: "That channel is not in the server named.",
  channel_unknown: "Discord knows no such channel the bot can see.",
  source_guild_not_granted: "That source server is not granted to this tenant; ask the operator.",
  mapping_loop: "A mapping cannot post into its own source channel.",
  mirror_disabled: "The connector or mapping is switched off; its messages wait until it is enabled.",
  seat_override_block: "An operator has paused this server by override.",
  mirror_job_expired: "Messages waited longer than the maximum age and were dropped.",
  seat_limit_required: "Enter a seat limit.",
  seat_limit_invalid: "The seat limit must be a whole number, 0 or more.",
  guild_id_invalid: "That guild id is not a Discord id.",
  snowflake_invalid: "A role or channel id is not a Discord id.",
  auth_required: "Enter a token.",
  auth_invalid: "That token is not valid (revoked or mistyped).",
  not_found: "Not found (or not yours).",
};
// A stored error is `code` or `code: cause`; the sentence is the code's, the cause follows.
function sentence(text, fallback) {
  const [code, ...rest] = String(text).split(": ");
  const said = SENTENCES[code] || fallback || code;
  return rest.length ? `${said} (${rest.join(": ")})` : said;
}

// `warnings` of a saved config: accepted, but the bot cannot post where it was told to.
function warningText(warnings) {
  return "Warning: " + warnings.map((w) => w.message).join(" ");
}

function notice(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.hidden = !text;
  n.className = isError ? "notice error" : "notice";
}

function token() { return sessionStorage.getItem("seatgate.token") || ""; }

// Requests in flight, exposed as <body data-busy="N"> so tests (and styles) can tell when
// the page has settled.
let busy = 0;
function setBusy(delta) { busy += delta; document.body.dataset.busy = String(busy); }

async function api(method, path, body) {
  setBusy(1);
  try { return await apiCall(method, path, body); } finally { setBusy(-1); }
}

async function apiCall(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  if (res.status !== 204) { try { data = await res.json(); } catch (_) { data = null; } }
  if (!res.ok) {
    const code = data && data.error ? data.error.code : "http_" + res.status;
    const message = data && data.error ? data.error.message : res.statusText;
    const err = new Error(sentence(code, message));
    err.code = code; err.status = res.status; err.apiMessage = message;
    throw err;
  }
  return data;
}

const enc = encodeURIComponent;
const base = () => `/api/v1/tenants/${enc(S.tenant)}/connectors`;
const serverPath = () => `${base()}/${enc(S.connector)}/servers/${enc(S.guild)}`;

function option(select, value, label) {
  const o = document.createElement("option");
  o.value = value; o.textContent = label;
  select.appendChild(o);
}

// The guilds this tenant uses (every guild the bot is in, for the operator), by name.
async function loadGuilds() {
  let list = { items: [] };
  try { list = await api("GET", `/api/v1/tenants/${enc(S.tenant)}/guilds`); } catch (_) { /* ids only */ }
  S.guilds = new Map(list.items.map((g) => [g.id, g]));
}

function guildName(id) {
  const g = S.guilds.get(id);
  return g && g.name ? g.name : id;
}

// Discord's look for a server without an icon (the page loads nothing from Discord's CDN):
// the initials of its name.
function guildBadge(id) {
  const b = document.createElement("span");
  b.className = "guild-icon";
  const name = guildName(id);
  b.textContent = name === id ? "?" : name.split(/\s+/).map((w) => w[0] || "").join("").slice(0, 3);
  b.setAttribute("aria-hidden", "true");
  return b;
}

function copyButton(id, what) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "copy";
  b.title = `Copy the ${what} id ${id}`;
  b.dataset.copy = id;
  b.textContent = id;
  b.addEventListener("click", () => copyText(id));
  return b;
}

async function copyText(text) {
  try { await navigator.clipboard.writeText(text); notice(`Copied ${text}.`); } catch (_) { notice(`Copy: ${text}`); }
}

// Channels and roles of a guild the bot sees, for the pickers (empty when it is not there).
async function guildLists(id) {
  if (!id) return { channels: [], roles: [] };
  const t = `/api/v1/tenants/${enc(S.tenant)}/guilds/${enc(id)}`;
  let channels = [], roles = [];
  try { channels = (await api("GET", t + "/channels")).items; } catch (_) { /* typed ids only */ }
  try { roles = (await api("GET", t + "/roles")).items; } catch (_) { /* typed ids only */ }
  S.channels.set(id, channels);
  S.roles.set(id, roles);
  return { channels, roles };
}

// Channels a message can be posted in: text, announcement, threads.
const POSTABLE = new Set([0, 5, 10, 11, 12]);

function channelLabel(c, all, webhook) {
  const parent = all.find((p) => p.id === c.parent_id);
  const thread = c.type >= 10 && c.type <= 12 && parent;
  const name = thread ? `#${parent.name} › ${c.name}` : `#${c.name}`;
  const can = webhook ? c.webhook_can_post : c.bot_can_post;
  return can ? name : `${name} (bot cannot post)`;
}

function channelName(guild, id) {
  const c = (S.channels.get(guild) || []).find((x) => x.id === id);
  return c ? "#" + c.name : id;
}

function fillChannelSelect(sel, channels, value, opts) {
  sel.replaceChildren();
  if (opts.none) option(sel, "", opts.none);
  for (const c of channels) if (POSTABLE.has(c.type)) option(sel, c.id, channelLabel(c, channels, opts.webhook));
  if (value && ![...sel.options].some((o) => o.value === value)) option(sel, value, value);
  sel.value = value || (opts.none || !sel.options.length ? "" : sel.options[0].value);
}

function fillRoleSelect(sel, roles, value) {
  sel.replaceChildren();
  option(sel, "", "(none)");
  for (const r of roles) {
    if (r.id === S.guild) continue; // @everyone holds no tier
    option(sel, r.id, r.name);
    if (r.color) sel.lastChild.style.color = "#" + r.color.toString(16).padStart(6, "0");
  }
  if (value && ![...sel.options].some((o) => o.value === value)) option(sel, value, value);
  sel.value = value || "";
}

async function loadConnectors() {
  const list = await api("GET", base());
  S.connectors = list.items;
  await loadGuilds();
  const sel = $("connector");
  sel.replaceChildren();
  for (const c of list.items) option(sel, c.connector_id, `${c.name} (${c.connector_id})`);
  if (!list.items.length) { notice("This tenant has no connectors yet."); return; }
  if (!list.items.some((c) => c.connector_id === S.connector)) S.connector = list.items[0].connector_id;
  sel.value = S.connector;
  await loadServers();
}

async function loadServers() {
  const list = await api("GET", `${base()}/${enc(S.connector)}/servers`);
  S.servers = list.items;
  const chips = $("chips");
  chips.replaceChildren();
  const sel = $("guild");
  sel.replaceChildren();
  for (const s of list.items) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#/c/${enc(S.connector)}/g/${s.guild_id}`;
    a.dataset.guild = s.guild_id;
    const name = document.createElement("span");
    name.className = "guild-name";
    name.append(guildBadge(s.guild_id), " ", guildName(s.guild_id));
    const chip = document.createElement("span");
    chip.className = "chip " + s.seat_status;
    chip.dataset.status = s.seat_status;
    chip.id = "chip-" + s.guild_id;
    chip.textContent = s.seat_status;
    a.append(name, chip);
    // Opening a server's panel also refreshes every chip of the workspace.
    a.addEventListener("click", (e) => {
      e.preventDefault();
      guarded(async () => { S.guild = s.guild_id; location.hash = `#/c/${enc(S.connector)}/g/${s.guild_id}`; await loadServers(); });
    });
    li.appendChild(a);
    chips.appendChild(li);
    option(sel, s.guild_id, guildName(s.guild_id));
  }
  // Guilds the bot is in that no mapping or config names yet (offered to the operator).
  for (const g of S.guilds.values()) {
    if (!list.items.some((s) => s.guild_id === g.id) && !g.uses.includes("source")) option(sel, g.id, `${guildName(g.id)} (not set up)`);
  }
  if (!S.guild && list.items.length) S.guild = list.items[0].guild_id;
  if (!S.guild) { sel.prepend(new Option("choose a server…", "")); sel.value = ""; }
  if (S.guild) { if (![...sel.options].some((o) => o.value === S.guild)) option(sel, S.guild, S.guild); sel.value = S.guild; await loadPanel(); }
}

async function selectGuild(id) {
  S.guild = id;
  $("guild").value = id;
  location.hash = `#/c/${enc(S.connector)}/g/${id}`;
  await loadPanel();
}

function fillForm(cfg) {
  S.configured = !!cfg;
  $("seat_limit").value = cfg ? cfg.seat_limit : "";
  $("enforcement_mode").value = cfg ? cfg.enforcement_mode : "off";
  $("override").value = cfg ? cfg.override : "none";
  $("stale_grace").checked = cfg ? cfg.stale_grace : false;
  const roles = S.roles.get(S.guild) || [];
  for (const f of ["basic_role_id", "advanced_role_id", "pro_role_id"]) fillRoleSelect($(f), roles, cfg && cfg[f] ? cfg[f] : "");
  fillChannelSelect($("notify_channel_id"), S.channels.get(S.guild) || [], cfg && cfg.notify_channel_id ? cfg.notify_channel_id : "", { none: "(none: no notices)" });
  checkNotify();
}

// A warning beside a picked channel the bot cannot post in (saving is still allowed).
function checkNotify() {
  const c = (S.channels.get(S.guild) || []).find((x) => x.id === $("notify_channel_id").value);
  const w = $("notify-warning");
  w.hidden = !(c && !c.bot_can_post);
  w.textContent = w.hidden ? "" : `The bot cannot post in #${c.name}: notices will not arrive until it may view and send messages there.`;
}

function checkMapping() {
  const webhook = $("map-mode").value === "webhook";
  const c = (S.channels.get(S.guild) || []).find((x) => x.id === $("map-target").value);
  const w = $("map-warning");
  const can = c && (webhook ? c.webhook_can_post : c.bot_can_post);
  w.hidden = !c || can;
  w.textContent = w.hidden ? "" : `The bot cannot post in #${c.name} ${webhook ? "through a webhook (it needs Manage Webhooks there)" : "(it needs View Channel and Send Messages there)"}.`;
}

function connectorSource() {
  const c = S.connectors.find((x) => x.connector_id === S.connector);
  return c ? c.source_guild_id : "";
}

async function loadMappings() {
  const ul = $("mappings");
  let list = { items: [] };
  try { list = await api("GET", `${base()}/${enc(S.connector)}/mappings`); } catch (e) { ul.textContent = e.message; return; }
  const source = connectorSource();
  if (source && !S.channels.has(source)) await guildLists(source);
  fillChannelSelect($("map-source"), S.channels.get(source) || [], $("map-source").value, { webhook: false });
  for (const o of $("map-source").options) o.textContent = o.textContent.replace(" (bot cannot post)", "");
  fillChannelSelect($("map-target"), S.channels.get(S.guild) || [], $("map-target").value, { webhook: $("map-mode").value === "webhook" });
  checkMapping();
  ul.replaceChildren();
  const here = list.items.filter((m) => m.target_guild_id === S.guild);
  if (!here.length) { const li = document.createElement("li"); li.textContent = "none yet"; ul.appendChild(li); }
  for (const m of here) {
    const li = document.createElement("li");
    li.dataset.mapping = String(m.mapping_id);
    li.textContent = `${channelName(source, m.source_channel_id)} → ${channelName(S.guild, m.target_channel_id)} (${m.delivery_mode === "webhook" ? "webhook" : "as the bot"}${m.enabled ? "" : ", disabled"})`;
    if (m.broken) { const b = document.createElement("span"); b.className = "broken"; b.textContent = " " + sentence(m.broken_code); li.appendChild(b); }
    ul.appendChild(li);
  }
}

async function loadPanel() {
  $("panel-guild-name").textContent = guildName(S.guild) === S.guild ? "" : guildName(S.guild);
  $("panel-guild").textContent = S.guild;
  $("panel-guild-copy").hidden = !S.guild;
  await guildLists(S.guild);
  await loadMappings();
  let cfg = null;
  try { cfg = await api("GET", serverPath()); } catch (e) { if (e.status !== 404) throw e; }
  fillForm(cfg);
  if (cfg && cfg.warnings && cfg.warnings.length) notice(warningText(cfg.warnings), false);
  let snap = null;
  try { snap = await api("GET", serverPath() + "/snapshot"); } catch (e) { if (e.code !== "seat_snapshot_missing" && e.status !== 404) throw e; }
  renderSnapshot(snap, cfg);
  let events = { items: [] };
  try { events = await api("GET", serverPath() + "/events?limit=200"); } catch (_) { /* shown empty */ }
  renderPlot(events.items, snap, cfg);
  await loadMembers(cfg);
  await loadFailed();
}

function renderSnapshot(snap, cfg) {
  const limit = snap ? snap.seat_limit : cfg ? cfg.seat_limit : 0;
  // A server never counted yet has a snapshot only to say how far its first count has got.
  const counted = snap && snap.checked_at > 0;
  const used = counted ? snap.seats_used : null;
  const counting = snap && snap.counting;
  const progress = counting
    ? `counting members (${counting.members_counted.toLocaleString()}` +
      (counting.member_count !== null ? ` of ${counting.member_count.toLocaleString()})` : ")")
    : "";
  $("snap-seats").textContent = counted ? `${used} of ${limit}` + (progress ? `; ${progress}` : "") : progress || "not counted yet";
  $("snap-status").textContent = snap ? snap.status + (snap.is_over_limit ? ", over the limit" : "") : "-";
  $("snap-checked").textContent = snap ? new Date(snap.checked_at).toLocaleString() : "-";
  $("snap-tiers").textContent = snap ? `bronze ${snap.tiers.basic}, silver ${snap.tiers.advanced}, gold ${snap.tiers.pro}` : "-";
  $("snap-error").textContent = snap ? (snap.last_error ? sentence(snap.last_error) : "none") : sentence("seat_snapshot_missing");
  drawGauge(used, limit);
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawGauge(used, limit) {
  const g = $("gauge");
  g.replaceChildren();
  const arc = (frac, color, w) => {
    const a = Math.PI * (1 - Math.min(Math.max(frac, 0), 1));
    const x = 100 + 80 * Math.cos(a), y = 100 - 80 * Math.sin(a);
    return el("path", { d: `M 20 100 A 80 80 0 0 1 ${x.toFixed(2)} ${y.toFixed(2)}`, fill: "none", stroke: color, "stroke-width": w, "stroke-linecap": "round" });
  };
  g.appendChild(arc(1, "#d0d7de", 14));
  if (used !== null) {
    const frac = limit > 0 ? used / limit : used > 0 ? 1 : 0;
    g.appendChild(arc(frac, used > limit ? "#cf222e" : "#1a7f37", 14));
  }
  g.appendChild(el("text", { x: 100, y: 92, "text-anchor": "middle", "font-size": 22, "font-weight": 700, id: "gauge-text" }, used === null ? "?" : `${used}/${limit}`));
}

// Seats used over time from the pause/resume history plus the current snapshot, with the
// limit as a line; a pause is the over transition, a resume the under one.
function renderPlot(events, snap, cfg) {
  const p = $("plot");
  p.replaceChildren();
  const pts = events.slice().reverse().map((e) => ({ t: e.at, used: e.seats_used, limit: e.seat_limit, to: e.to_state }));
  if (snap) pts.push({ t: snap.checked_at, used: snap.seats_used, limit: snap.seat_limit, to: null });
  const W = 600, H = 200, L = 40, R = 10, T = 10, B = 25;
  p.appendChild(el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fff", stroke: "#d0d7de" }));
  if (!pts.length) { p.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#656d76" }, "no history yet")); return; }
  const t0 = Math.min(...pts.map((x) => x.t)), t1 = Math.max(...pts.map((x) => x.t), t0 + 1);
  const limitNow = snap ? snap.seat_limit : cfg ? cfg.seat_limit : 0;
  const ymax = Math.max(1, limitNow, ...pts.map((x) => Math.max(x.used, x.limit))) * 1.15;
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const Y = (v) => H - B - (v / ymax) * (H - T - B);
  let d = "", prev = null;
  for (const x of pts) { d += prev === null ? `M ${X(x.t)} ${Y(x.used)}` : ` H ${X(x.t)} V ${Y(x.used)}`; prev = x; }
  let ld = "", lprev = null;
  for (const x of pts) { ld += lprev === null ? `M ${X(x.t)} ${Y(x.limit)}` : ` H ${X(x.t)} V ${Y(x.limit)}`; lprev = x; }
  p.appendChild(el("path", { d: ld, fill: "none", stroke: "#cf222e", "stroke-dasharray": "5 4", "stroke-width": 1.5 }));
  p.appendChild(el("path", { d, fill: "none", stroke: "#0969da", "stroke-width": 2 }));
  for (const x of pts) {
    if (x.to === "over") p.appendChild(el("text", { x: X(x.t), y: Y(x.used) - 6, "text-anchor": "middle", fill: "#cf222e", class: "mark-pause" }, "\u25B2"));
    if (x.to === "under") p.appendChild(el("text", { x: X(x.t), y: Y(x.used) + 16, "text-anchor": "middle", fill: "#1a7f37", class: "mark-resume" }, "\u25BC"));
  }
  p.appendChild(el("text", { x: L - 5, y: Y(0), "text-anchor": "end", "font-size": 10 }, "0"));
  p.appendChild(el("text", { x: L - 5, y: Y(limitNow) + 4, "text-anchor": "end", "font-size": 10 }, String(limitNow)));
  p.appendChild(el("text", { x: L, y: H - 8, "font-size": 10 }, new Date(t0).toLocaleTimeString()));
  p.appendChild(el("text", { x: W - R, y: H - 8, "text-anchor": "end", "font-size": 10 }, new Date(t1).toLocaleTimeString()));
}

const TIER_LABEL = { basic: "bronze", advanced: "silver", pro: "gold" };

// "3 members see #signals through role subscriber".
function reasonSentence(r) {
  const n = r.members.toLocaleString();
  const who = r.members === 1 ? `${n} member sees` : `${n} members see`;
  const channel = "#" + (r.channel_name || r.channel_id);
  const role = r.role_name || r.role_id;
  const how = {
    owner: "as the server's owner",
    administrator: `through ADMINISTRATOR of role ${role}`,
    everyone: "because @everyone may view it",
    role: `through role ${role}`,
    role_overwrite: `through role ${role}`,
    member_overwrite: "through an overwrite for them on the channel",
  }[r.via] || r.via;
  return `${who} ${channel} ${how}`;
}

async function loadMembers(cfg) {
  const box = $("members");
  box.dataset.total = "";
  if (!cfg) { box.textContent = "Save a config to count this server's members."; return; }
  try {
    const q = S.q ? "&q=" + enc(S.q) : "";
    const page = await api("GET", serverPath() + "/seats?limit=100" + q);
    box.replaceChildren();
    const head = document.createElement("p");
    head.id = "members-total";
    const shown = page.items.length;
    const of = page.matched !== null && page.matched !== undefined ? page.matched : page.total;
    head.textContent = `${page.total} counted` +
      (S.q ? `; ${of} match "${S.q}"` : "") +
      (shown < of ? `, first ${shown} shown` : "") +
      (page.complete ? "" : " (partial: a recount is running)");
    box.dataset.total = String(page.total);
    // Why they hold seats, all counted members grouped: which role or overwrite to change.
    const why = document.createElement("ul");
    why.id = "members-why";
    for (const r of page.reasons_summary || []) {
      const li = document.createElement("li");
      li.textContent = reasonSentence(r);
      why.appendChild(li);
    }
    const ul = document.createElement("ul");
    for (const m of page.items) {
      const li = document.createElement("li");
      li.className = "member";
      li.dataset.user = m.user_id;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = m.display_name || m.username || "(name unknown)";
      li.appendChild(name);
      if (m.username && m.username !== m.display_name) {
        const handle = document.createElement("span");
        handle.className = "handle";
        handle.textContent = " @" + m.username;
        li.appendChild(handle);
      }
      li.append(" ", copyButton(m.user_id, "user"));
      if (m.tiers.length) {
        const t = document.createElement("span");
        t.className = "tier " + m.tier;
        t.textContent = m.tiers.map((x) => TIER_LABEL[x] || x).join(", ");
        li.append(" ", t);
      }
      ul.appendChild(li);
    }
    box.append(head, why, ul);
  } catch (e) {
    box.textContent = e.code === "seat_check_pending" ? "Not counted live yet: " + sentence(e.code) : e.message;
  }
}

// The CSV export needs the bearer header, so it is fetched and handed over as a file.
async function exportMembers() {
  setBusy(1);
  try {
    const res = await fetch(serverPath() + "/seats/export", { headers: { Authorization: "Bearer " + token() } });
    if (!res.ok) { let code = "http_" + res.status; try { code = (await res.json()).error.code; } catch (_) { /* code stays */ } throw new Error(sentence(code)); }
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url; a.download = `seats-${S.guild}.csv`;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } finally { setBusy(-1); }
}

// Jobs that ended failed, with Discord's word on each: why a message did not arrive here.
async function loadFailed() {
  const box = $("failed");
  let page = { items: [] };
  try { page = await api("GET", serverPath() + "/failed-jobs?limit=20"); } catch (e) { box.textContent = e.message; return; }
  if (!page.items.length) { box.textContent = "none"; return; }
  const ul = document.createElement("ul");
  for (const j of page.items) {
    const li = document.createElement("li");
    li.dataset.job = String(j.id);
    const when = document.createElement("span");
    when.className = "mono";
    when.textContent = new Date(j.failed_at).toISOString().replace("T", " ").slice(0, 19);
    li.append(when, ` ${j.kind} of message ${j.source_message_id} after ${j.attempts} attempt(s): `);
    const why = document.createElement("span");
    why.className = "error";
    why.textContent = j.last_error ? sentence(j.last_error) : "no error recorded";
    li.appendChild(why);
    ul.appendChild(li);
  }
  box.replaceChildren(ul);
}

// Live view: every few seconds, while connected and idle, the chips, the readout, the plot
// and the member list follow the service (the form is left alone, so typing is not undone).
const LIVE_MS = 2000;
let liveTimer = null;

// The ban guard, for an operator's token (a tenant's gets 403 and sees nothing of it).
let notOperator = false;
async function showBanGuard() {
  if (notOperator) return;
  let e = null;
  try { e = await apiCall("GET", "/api/v1/enforcement"); } catch (err) { if (err.status === 401 || err.status === 403) notOperator = true; }
  const g = e && e.discord_invalid_requests;
  const el = $("ban-guard");
  el.hidden = !(g && g.slowed);
  if (g && g.slowed) {
    el.textContent = `Discord answered ${g.last_10_min} requests with 401/403/429 in the last 10 minutes ` +
      `(it bans the IP at ${g.discord_limit}): requests are slowed to 5 a second until the count falls under ${g.slow_down_at}.`;
  }
}

// Which process runs which gateway shard, for an operator's token.
async function showShards() {
  if (notOperator) return;
  let r = null;
  try { r = await apiCall("GET", "/api/v1/shards"); } catch (err) { if (err.status === 401 || err.status === 403) notOperator = true; }
  const card = $("shards-card");
  card.hidden = !r;
  if (!r) return;
  $("shards-answered").textContent = (r.leased ? "Shared through leases; " : "One process runs every shard; ") +
    `answered by ${r.answered_by}.`;
  const body = $("shards").querySelector("tbody");
  body.replaceChildren();
  for (const s of r.shards) {
    const tr = document.createElement("tr");
    tr.dataset.shard = String(s.shard_id);
    const cells = [
      `${s.shard_id} of ${s.shard_total}`,
      s.holder ? s.holder + (s.this_process ? " (this process)" : "") : "free: being taken",
      s.holder && r.leased ? `epoch ${s.epoch}, expires in ${Math.ceil(s.expires_in_ms / 1000)} s unless renewed` : "",
    ];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function refreshLive() {
  if (!S.tenant || busy > 0 || document.hidden) return;
  await showBanGuard();
  await showShards();
  if (!S.connector) return;
  const list = await api("GET", `${base()}/${enc(S.connector)}/servers`);
  S.servers = list.items;
  for (const s of list.items) {
    const chip = $("chip-" + s.guild_id);
    if (!chip) continue;
    chip.className = "chip " + s.seat_status;
    chip.dataset.status = s.seat_status;
    chip.textContent = s.seat_status;
  }
  if (!S.guild) return;
  const server = list.items.find((s) => s.guild_id === S.guild);
  const cfg = server ? server.config : null;
  const snap = server ? server.snapshot : null;
  renderSnapshot(snap, cfg);
  let events = { items: [] };
  try { events = await api("GET", serverPath() + "/events?limit=200"); } catch (_) { /* shown empty */ }
  renderPlot(events.items, snap, cfg);
  await loadMembers(cfg);
  await loadFailed();
}

function startLive() {
  if (liveTimer === null) liveTimer = setInterval(() => { refreshLive().catch(() => {}); }, LIVE_MS);
}

function readForm() {
  const v = $("seat_limit").value.trim();
  const body = {
    seat_limit: v === "" ? null : Number(v),
    enforcement_mode: $("enforcement_mode").value,
    override: $("override").value,
    stale_grace: $("stale_grace").checked,
  };
  for (const f of ["basic_role_id", "advanced_role_id", "pro_role_id", "notify_channel_id"]) body[f] = $(f).value.trim();
  return body;
}

async function guarded(fn) {
  try { await fn(); } catch (e) { notice(e.message, true); }
}

function init() {
  $("tenant").value = sessionStorage.getItem("seatgate.tenant") || "";
  $("token").value = token();
  const m = location.hash.match(/^#\/c\/([^/]+)\/g\/(\d+)$/);
  if (m) { S.connector = decodeURIComponent(m[1]); S.guild = m[2]; }
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    S.tenant = $("tenant").value.trim();
    sessionStorage.setItem("seatgate.tenant", S.tenant);
    sessionStorage.setItem("seatgate.token", $("token").value.trim());
    notOperator = false;
    guarded(async () => { notice(""); await loadConnectors(); notice("Connected."); startLive(); });
  });
  $("forget").addEventListener("click", () => { sessionStorage.removeItem("seatgate.token"); $("token").value = ""; notice("Token forgotten."); });
  $("connector").addEventListener("change", () => guarded(async () => { S.connector = $("connector").value; S.guild = ""; await loadServers(); }));
  $("guild").addEventListener("change", () => guarded(async () => { if ($("guild").value) await selectGuild($("guild").value); }));
  $("guild-new").addEventListener("change", () => guarded(async () => {
    const id = $("guild-new").value.trim();
    if (!/^\d{1,20}$/.test(id)) { notice(sentence("guild_id_invalid"), true); return; }
    option($("guild"), id, id);
    await selectGuild(id);
  }));
  $("panel-guild-copy").addEventListener("click", () => copyText(S.guild));
  $("notify_channel_id").addEventListener("change", checkNotify);
  $("map-target").addEventListener("change", checkMapping);
  $("map-mode").addEventListener("change", () => {
    fillChannelSelect($("map-target"), S.channels.get(S.guild) || [], $("map-target").value, { webhook: $("map-mode").value === "webhook" });
    checkMapping();
  });
  $("mapping-form").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(async () => {
      const body = { source_channel_id: $("map-source").value, target_guild_id: S.guild, target_channel_id: $("map-target").value, delivery_mode: $("map-mode").value };
      const saved = await api("POST", `${base()}/${enc(S.connector)}/mappings`, body);
      await loadGuilds();
      await loadServers();
      const warned = saved && saved.warnings && saved.warnings.length;
      notice(`Mapping added: ${channelName(connectorSource(), body.source_channel_id)} → ${channelName(S.guild, body.target_channel_id)}.` + (warned ? " " + warningText(saved.warnings) : ""), false);
    });
  });
  $("members-search").addEventListener("submit", (e) => {
    e.preventDefault();
    S.q = $("members-q").value.trim();
    guarded(async () => {
      const server = S.servers.find((x) => x.guild_id === S.guild);
      await loadMembers(server ? server.config : null);
    });
  });
  $("members-export").addEventListener("click", () => guarded(exportMembers));
  $("config").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(async () => {
      // A new config is written whole (PUT); an existing one changes only what the form
      // holds (PATCH), so a field the page does not show is never reset.
      const saved = await api(S.configured ? "PATCH" : "PUT", serverPath(), readForm());
      await loadGuilds();
      await loadServers();
      const warned = saved && saved.warnings && saved.warnings.length;
      notice(warned ? "Saved. " + warningText(saved.warnings) : "Saved. A recount was requested.", false);
    });
  });
  $("clear").addEventListener("click", () => guarded(async () => {
    if (!window.confirm(`Clear the seat config of ${S.guild}? Mirroring into it is no longer enforced; its pause/resume history is kept.`)) return;
    await api("DELETE", serverPath());
    notice("Config cleared for " + S.guild + ".");
    await loadServers();
    fillForm(null);
  }));
  $("refresh").addEventListener("click", () => guarded(async () => {
    const r = await api("POST", serverPath() + "/audit");
    notice(`Recount requested (job ${r.job_id}${r.deduped ? ", already queued" : ""}).`);
    await loadServers();
  }));
  if (token() && sessionStorage.getItem("seatgate.tenant")) {
    S.tenant = sessionStorage.getItem("seatgate.tenant");
    guarded(async () => { await loadConnectors(); startLive(); });
  }
}

document.addEventListener("DOMContentLoaded", init);
