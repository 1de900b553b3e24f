// hacluster status page: polls /api/status every second and redraws in place (no reload).
// All judgement (node state, holders, queue totals) is done by the server's view model; this file
// only lays it out. Text from ZooKeeper becomes text nodes only (no HTML parsing of data).
"use strict";

const POLL_MS = 1000;
const FETCH_TIMEOUT_MS = 4000;
const TOKEN_KEY = "hacluster.http.web.token";
const ARM_MS = 6000; // a switchover button asks for a second click within this time

const ui = {
  view: null,          // last /api/status answer
  fetchedAt: 0,        // performance.now() of that answer
  failing: 0,          // consecutive failed polls
  targets: {},         // role -> chosen target ("" = best candidate)
  armed: {},           // role -> performance.now() when the first click came
  msgs: {},            // role -> {kind, text}
  pending: {},         // role -> {from, to, at} after a 202, until the holder changes
};

// ------------------------------------------------------------------ tiny DOM helpers

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

// Make `cur` look like `next` while keeping the nodes that did not change (an open <select>
// stays open, the page does not flicker).
function morph(cur, next) {
  if (cur.nodeType !== next.nodeType || cur.nodeName !== next.nodeName) {
    cur.replaceWith(next);
    return;
  }
  if (cur.nodeType === Node.TEXT_NODE) {
    if (cur.nodeValue !== next.nodeValue) cur.nodeValue = next.nodeValue;
    return;
  }
  if (cur.nodeType !== Node.ELEMENT_NODE) return;
  for (const a of Array.from(cur.attributes)) if (!next.hasAttribute(a.name)) cur.removeAttribute(a.name);
  for (const a of Array.from(next.attributes)) if (cur.getAttribute(a.name) !== a.value) cur.setAttribute(a.name, a.value);
  const cc = Array.from(cur.childNodes), nc = Array.from(next.childNodes);
  for (let i = 0; i < nc.length; i++) {
    if (i < cc.length) morph(cc[i], nc[i]);
    else cur.appendChild(nc[i]);
  }
  for (let i = nc.length; i < cc.length; i++) cur.removeChild(cc[i]);
}

// ------------------------------------------------------------------ formatting

function fmtAge(s) {
  if (s === null || s === undefined) return "–";
  if (s < 10) return s.toFixed(2) + " s";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.floor(s / 60) + " min " + String(Math.round(s % 60)).padStart(2, "0") + " s";
  if (s < 172800) return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

function fmtTime(epoch) {
  const d = new Date(epoch * 1000);
  const today = new Date();
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return d.toDateString() === today.toDateString() ? t : d.toLocaleDateString() + " " + t;
}

const STATE_TEXT = {
  healthy: "healthy", unhealthy: "unhealthy", demote: "demoted", down: "no agent", stale: "agent silent",
};

// ------------------------------------------------------------------ drawing

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function roleCard(v, r) {
  const writable = v.can_write && token();
  const holder = r.holder;
  const lines = [];
  lines.push(h("div", { class: "role-head" },
    h("span", { class: "role-name" }, r.name),
    r.vips.length ? h("span", { class: "vips" }, "VIP ", r.vips.join("  ")) : null));
  if (holder) {
    lines.push(h("div", { class: "holder-line" },
      h("span", { class: "holder-label" }, "held by"),
      h("span", { class: "holder", "data-holder": holder }, holder)));
    lines.push(h("div", { class: "lease" },
      h("span", {}, "term ", h("b", {}, String(r.term))),
      h("span", {}, "lease renewed ", h("b", { class: "lease-age" }, fmtAge(r.lease_age_s)), " ago"),
      r.held_for_s !== null ? h("span", {}, "holding for ", h("b", {}, fmtAge(r.held_for_s))) : null));
  } else {
    lines.push(h("div", { class: "holder-line none" },
      h("span", { class: "holder-label" }, "held by"),
      h("span", { class: "holder", "data-holder": "" }, "nobody"),
      r.handoff_to ? h("span", { class: "handoff" }, "handing over to " + r.handoff_to) : null));
  }
  if (r.request) {
    const q = r.request;
    lines.push(h("div", { class: "request" }, "pending ", q.kind, " to ", q.to || "(best candidate)",
      " by ", q.by, ", ", fmtAge(q.age_s), " ago",
      q.not_before ? ", scheduled at " + new Date(q.not_before * 1000).toLocaleString() : ""));
  }
  for (const b of r.bans || []) lines.push(h("div", { class: "ban" }, "ban: ", b));
  if (writable) {
    const choices = r.candidates.filter(n => n !== holder);
    if (ui.targets[r.name] && !choices.includes(ui.targets[r.name])) {
      // the chosen target left the list (it became the holder): back to "best candidate", disarmed
      delete ui.targets[r.name];
      delete ui.armed[r.name];
    }
    const armedAt = ui.armed[r.name];
    const armed = armedAt && performance.now() - armedAt < ARM_MS;
    const target = ui.targets[r.name] || "";
    const options = [h("option", { value: "" }, "best candidate")];
    for (const n of choices) options.push(h("option", { value: n }, n));
    lines.push(h("div", { class: "switch" },
      h("select", { "data-target-for": r.name, "aria-label": "switchover target for " + r.name }, options),
      h("button", {
        type: "button", class: armed ? "btn-switch armed" : "btn-switch", "data-action": "switchover",
        "data-role": r.name, disabled: !holder || !!ui.pending[r.name],
      }, armed ? "Confirm: move " + r.name + " to " + (target || "best candidate") : "Switch over…")));
  }
  const m = ui.msgs[r.name];
  if (m) lines.push(h("div", { class: "msg msg-" + m.kind, "data-msg-for": r.name }, m.text));
  return h("div", { class: holder ? "role" : "role role-free", "data-role": r.name }, lines);
}

function meter(pct, severity) {
  const w = Math.max(0, Math.min(100, pct || 0));
  return h("span", { class: "meter sev-" + (severity || "ok") },
    h("span", { class: "meter-fill", "data-w": Math.round(w / 5) * 5 }));
}

function queueRow(q, big) {
  if (!q) return null;
  const total = q.total === null ? "?" : q.total;
  const parts = Object.entries(q.counts).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n);
  const sev = q.total > 0 ? (q.severity === "ok" ? "busy" : q.severity) : q.severity;
  // the busiest destinations (the qshape rows) and why mail waits: what an operator asks first
  const dests = q.shape && q.shape.rows.length ? q.shape.rows.slice(0, 3).map(r => r[0] + " " + r[1]).join(" · ") : "";
  const reason = q.top_deferral_reasons && q.top_deferral_reasons.length ? q.top_deferral_reasons[0] : null;
  if (big) {
    return h("div", { class: "bigq sev-" + sev, "data-queue": total },
      h("span", { class: "bigq-n" }, String(total)),
      h("span", { class: "bigq-l" }, total === 1 ? "message queued" : "messages queued",
        parts.length ? h("small", {}, parts.join(" · ")) : null,
        q.oldest_age_s ? h("small", {}, "oldest " + fmtAge(q.oldest_age_s)) : null,
        q.growing ? h("small", { class: "growing" }, "▲ growing") : null,
        dests ? h("small", { "data-dests": "" }, "to " + dests) : null,
        reason ? h("small", { class: "reason", "data-reason": "" }, "deferred: " + reason[0]) : null));
  }
  return h("div", { class: "row sev-" + sev },
    h("span", { class: "k" }, "queue"),
    h("span", { class: "v", "data-queue": total }, String(total),
      parts.length ? " (" + parts.join(" · ") + ")" : "",
      q.growing ? h("span", { class: "growing" }, " ▲ growing") : null));
}

function raidRow(r) {
  if (!r) return null;
  const text = r.arrays.length
    ? r.arrays.map(a => a.name + " " + a.state + (a.progress_pct !== null ? " " + a.progress_pct.toFixed(1) + "%" : "")).join(", ")
    : "no arrays";
  // the lab's stand-in for /proc/mdstat (no md driver there): say so, never pass it off as a disk
  return h("div", { class: "row sev-" + r.severity },
    h("span", { class: "k" }, "RAID"), h("span", { class: "v", "data-raid": r.severity }, text,
      r.simulated ? h("small", { class: "simulated", "data-simulated": "" }, " (simulated)") : null));
}

function spoolRow(s) {
  if (!s) return null;
  let text;
  if (s.writable === false) text = s.read_only ? "read-only!" : "not writable!";
  else if (s.free_pct !== null) text = s.free_pct.toFixed(0) + "% free";
  else text = s.detail || "?";
  return h("div", { class: "row sev-" + s.severity },
    h("span", { class: "k" }, "spool"),
    h("span", { class: "v", "data-spool": s.severity }, s.free_pct !== null ? meter(100 - s.free_pct, s.severity) : null, text));
}

function nodeCard(v, n) {
  const classes = ["node", "state-" + n.state];
  if (n.holds.length) classes.push("holding");
  const badges = [];
  if (n.mx_preference !== null) badges.push(h("span", { class: "badge mx", title: "MX preference" }, "MX " + n.mx_preference));
  for (const r of n.holds) badges.push(h("span", { class: "badge held", title: "holds role " + r }, "★ " + r));
  if (n.standby) badges.push(h("span", { class: "badge standby", title: n.standby }, "STANDBY"));
  if (n.drift) badges.push(h("span", { class: "badge drift", title: n.drift }, "CONFIG DRIFT"));
  // failsafe (docs/safety.md): this agent's own word over its API, not ZooKeeper's
  const fs = v.failsafe && v.failsafe.nodes ? v.failsafe.nodes[n.name] : null;
  if (fs && fs.answered) {
    for (const r of fs.on_failsafe) badges.push(h("span", { class: "badge failsafe", "data-failsafe-holds": r,
      title: "holds " + r + " on its peers' confirmations alone (ZooKeeper unreachable)" }, "ON FAILSAFE: " + r));
    for (const p of fs.promises) badges.push(h("span", { class: "badge promise", "data-promise": p.role,
      title: "promised " + p.holder + " (term " + p.term + ") not to acquire " + p.role + " for " + fmtAge(p.remaining_s) },
      "PROMISED " + p.role + " → " + p.holder));
    if (fs.enabled !== v.failsafe.enabled) badges.push(h("span", { class: "badge drift",
      title: "this agent runs with failsafe " + (fs.enabled ? "on" : "off") + ", the spec says " + (v.failsafe.enabled ? "on" : "off") },
      "FAILSAFE " + (fs.enabled ? "ON" : "OFF") + " HERE"));
  }
  const checks = n.checks.filter(c => !["queue", "raid", "spool"].includes(c.name)).map(c =>
    h("span", { class: "chip sev-" + c.severity, title: c.detail || "" }, c.name));
  return h("article", { class: classes.join(" "), "data-node": n.name, "data-state": n.state },
    h("header", {},
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "name" }, n.name),
      badges),
    h("div", { class: "meta" }, n.address, " · prio ", String(n.priority), n.penalty ? " (−" + n.penalty + ")" : ""),
    n.heartbeat_age_s !== null ? h("div", { class: "meta" }, "heartbeat " + fmtAge(n.heartbeat_age_s) + " ago") : null,
    h("div", { class: "state-text" }, STATE_TEXT[n.state] || n.state,
      n.holds.length ? h("span", { class: "role-note" }, " — active") : (n.tier !== "relay" && n.state === "healthy" ? h("span", { class: "role-note" }, " — standby") : null)),
    n.tier === "fallback" ? queueRow(n.queue, true) : queueRow(n.queue, false),
    raidRow(n.raid),
    spoolRow(n.spool),
    checks.length ? h("div", { class: "chips" }, checks) : null,
    n.drift ? h("div", { class: "drift", "data-drift": n.name }, n.drift) : null,
    n.reasons.length ? h("ul", { class: "reasons" }, n.reasons.map(r => h("li", {}, r))) : null);
}

const TIER_NOTES = {
  relay: "MX hosts: mail enters here, lowest preference first",
  fallback: "collects what the relays cannot deliver, retries it",
  store: "mailboxes: one active host behind the VIP",
};

function tierSection(v, t) {
  const nodes = t.nodes.map(n => nodeCard(v, v.nodes[n]));
  const roles = t.roles.map(r => roleCard(v, v.roles[r]));
  return h("section", { class: "tier tier-" + t.tier, "data-tier": t.tier },
    h("h2", {}, t.title, h("span", { class: "sub" }, TIER_NOTES[t.tier] || "")),
    h("div", { class: "tier-body" },
      roles.length ? h("div", { class: "roles" }, roles) : null,
      h("div", { class: "nodes" }, nodes)));
}

function historyList(v) {
  if (!v.history.length) return h("p", { class: "empty" }, "No transitions recorded yet.");
  return h("ol", { class: "history" }, v.history.map(it =>
    h("li", { class: "ev-" + (it.event || "").split("-")[0] },
      h("time", {}, it.at ? fmtTime(it.at) : "?"),
      h("span", { class: "ev" }, it.event || "?"),
      it.role ? h("span", { class: "ev-role" }, it.role) : null,
      h("span", { class: "ev-node" }, it.node || "?"),
      it.extra ? h("span", { class: "ev-extra" }, it.extra) : null)));
}

function summary(v) {
  const items = Object.values(v.roles).map(r =>
    h("div", { class: r.holder ? "sum" : "sum sum-bad", "data-sum-role": r.name },
      h("span", { class: "sum-k" }, r.name),
      h("span", { class: "sum-v" }, r.holder || "no holder")));
  const fbNodes = Object.values(v.nodes).filter(n => n.tier === "fallback" && n.queue);
  if (fbNodes.length) {
    items.push(h("div", { class: v.fallback_queue > 0 ? "sum sum-warn" : "sum" },
      h("span", { class: "sum-k" }, "FallbackMX queue"), h("span", { class: "sum-v" }, String(v.fallback_queue))));
  }
  if (v.failsafe) {
    const on = v.failsafe.holding.length;
    items.push(h("div", { class: on ? "sum sum-warn" : "sum", "data-sum": "failsafe" },
      h("span", { class: "sum-k" }, "failsafe"),
      h("span", { class: "sum-v" }, !v.failsafe.enabled ? "off" : on ? "on · holding on failsafe" : "on")));
  }
  const states = Object.values(v.nodes).map(n => n.state);
  const bad = states.filter(s => s !== "healthy").length;
  items.push(h("div", { class: bad ? "sum sum-warn" : "sum" },
    h("span", { class: "sum-k" }, "nodes"),
    h("span", { class: "sum-v" }, (states.length - bad) + "/" + states.length + " healthy")));
  return h("div", { class: "summary" }, items);
}

function page(v) {
  const flow = [];
  v.tiers.forEach((t, i) => {
    if (i > 0) flow.push(h("div", { class: "flow", "aria-hidden": "true" }, "▼"));
    flow.push(tierSection(v, t));
  });
  return h("main", { id: "app" },
    summary(v),
    h("div", { class: "layout" },
      h("div", { class: "tiers" }, flow),
      h("aside", { class: "side" }, h("h2", {}, "Last transitions"), historyList(v))));
}

function banners(v) {
  const out = [];
  if (v.maintenance) out.push(h("div", { class: "banner banner-maint", "data-banner": "maintenance" },
    "MAINTENANCE — automatic placement and switchover are paused (hacluster maintenance off)"));
  for (const f of (v.failsafe && v.failsafe.holding) || []) out.push(h("div", { class: "banner banner-failsafe", "data-banner": "failsafe" },
    "FAILSAFE — " + f.role + " held by " + f.node + " (term " + f.term + ") on its peers' confirmations alone: " +
    "ZooKeeper does not answer it; valid " + fmtAge(f.remaining_s) + " more, renewed every loop while every peer promises"));
  if (v.error) out.push(h("div", { class: "banner banner-err", "data-banner": "error" },
    v.error + (v.age_s !== null ? " — showing data from " + fmtAge(v.age_s) + " ago" : "")));
  if (ui.failing >= 2) out.push(h("div", { class: "banner banner-err", "data-banner": "offline" },
    "The status server does not answer; retrying every second."));
  return h("div", { id: "banners" }, out);
}

function draw() {
  const v = ui.view;
  const live = document.getElementById("live");
  if (ui.failing >= 2) {
    live.className = "live live-bad";
    live.textContent = "disconnected";
  } else if (v && v.error) {
    live.className = "live live-warn";
    live.textContent = "ZooKeeper unreachable";
  } else if (v) {
    live.className = "live live-ok";
    live.textContent = "live · " + fmtTime(v.served_at);
  }
  morph(document.getElementById("banners"), banners(v || {}));
  if (!v) return;
  document.getElementById("cluster").textContent = v.cluster;
  document.title = "hacluster " + v.cluster + Object.values(v.roles).map(r => " · " + r.name + "@" + (r.holder || "none")).join("");
  document.getElementById("readonly").hidden = !!v.can_write;
  document.getElementById("unlock").hidden = !v.can_write || !!token();
  document.getElementById("authed").hidden = !v.can_write || !token();
  morph(document.getElementById("app"), page(v));
  // the select shows exactly the target the button names (morphing options can shift its index)
  for (const sel of document.querySelectorAll("select[data-target-for]")) {
    const want = ui.targets[sel.dataset.targetFor] || "";
    if (sel.value !== want) sel.value = want;
  }
}

// ------------------------------------------------------------------ data

async function getJSON(url, opts) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const resp = await fetch(url, Object.assign({ cache: "no-store", signal: ctl.signal }, opts || {}));
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    return { status: resp.status, body };
  } finally {
    clearTimeout(timer);
  }
}

function settlePending(v) {
  for (const [role, p] of Object.entries(ui.pending)) {
    const r = v.roles[role];
    if (!r) { delete ui.pending[role]; continue; }
    if (r.holder && r.holder !== p.from) {
      const secs = ((performance.now() - p.at) / 1000).toFixed(1);
      ui.msgs[role] = { kind: "ok", text: role + ": " + (p.from || "nobody") + " → " + r.holder + " (" + secs + " s)" };
      delete ui.pending[role];
      delete ui.targets[role];
    } else if (performance.now() - p.at > 30000) {
      ui.msgs[role] = { kind: "err", text: "no new holder after 30 s; see the transitions" };
      delete ui.pending[role];
    }
  }
}

async function poll() {
  try {
    const { status, body } = await getJSON("/api/status");
    if (status !== 200 || !body) throw new Error("HTTP " + status);
    ui.view = body;
    ui.failing = 0;
    settlePending(body);
  } catch (e) {
    ui.failing += 1;
  }
  draw();
  setTimeout(poll, POLL_MS);
}

async function switchover(role) {
  const target = ui.targets[role] || "";
  const from = ui.view && ui.view.roles[role] ? ui.view.roles[role].holder : null;
  ui.msgs[role] = { kind: "info", text: "requesting switchover of " + role + " to " + (target || "the best candidate") + "…" };
  draw();
  let res;
  try {
    res = await getJSON("/api/switchover", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token() },
      body: JSON.stringify({ role: role, to: target || null }),
    });
  } catch (e) {
    ui.msgs[role] = { kind: "err", text: "the status server did not answer: " + e };
    draw();
    return;
  }
  if (res.status === 202) {
    ui.pending[role] = { from: from, to: target, at: performance.now() };
    ui.msgs[role] = { kind: "info", text: "switchover requested; waiting for the new holder…" };
  } else {
    if (res.status === 401 || res.status === 403) sessionStorage.removeItem(TOKEN_KEY);
    ui.msgs[role] = { kind: "err", text: (res.body && res.body.error) || ("refused (HTTP " + res.status + ")") };
  }
  draw();
}

// ------------------------------------------------------------------ events

document.addEventListener("change", (e) => {
  const sel = e.target.closest("select[data-target-for]");
  if (sel) {
    ui.targets[sel.dataset.targetFor] = sel.value;
    delete ui.armed[sel.dataset.targetFor];
    draw();
  }
});

document.addEventListener("click", (e) => {
  const btn = e.target.closest("button[data-action=switchover]");
  if (!btn || btn.disabled) return;
  const role = btn.dataset.role;
  const armedAt = ui.armed[role];
  if (armedAt && performance.now() - armedAt < ARM_MS) {
    delete ui.armed[role];
    switchover(role);
  } else {
    ui.armed[role] = performance.now();
    delete ui.msgs[role];
    draw();
  }
});

async function unlock() {
  const input = document.getElementById("token");
  const msg = document.getElementById("auth-msg");
  const tok = input.value.trim();
  if (!tok) { msg.textContent = "enter the token"; return; }
  const res = await getJSON("/api/auth", { headers: { "Authorization": "Bearer " + tok } }).catch(() => null);
  if (res && res.status === 200) {
    sessionStorage.setItem(TOKEN_KEY, tok);
    input.value = "";
    msg.textContent = "";
  } else {
    msg.textContent = res && res.body && res.body.error ? res.body.error : "the server did not answer";
  }
  draw();
}

document.getElementById("unlock-btn").addEventListener("click", unlock);
document.getElementById("token").addEventListener("keydown", (e) => { if (e.key === "Enter") unlock(); });
document.getElementById("lock-btn").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); draw(); });

poll();
