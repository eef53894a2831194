// jpki-sim dashboard: one panel per served card, the live APDU trace, the controls.
// No build step, no dependency, nothing from the network but this service.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  if (params.get("token")) {
    sessionStorage.setItem("jpki-sim-token", params.get("token"));
    // keep the token out of the address bar (screenshots, shared links)
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem("jpki-sim-token") || "";
  const MAX_TRACE_ROWS = 500;
  const DAY = 86400000;

  // ------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k === "text") e.textContent = v;
      else if (k === "style") e.style.cssText = v;  // CSSOM: allowed by the page's CSP
      else if (k === "onclick") e.addEventListener("click", v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function say(text, bad) {
    const m = document.getElementById("message");
    m.textContent = text;
    m.className = bad ? "bad show" : "show";
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { m.className = ""; }, bad ? 8000 : 2500);
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(doc.error || r.status + " " + r.statusText);
    return doc;
  }

  async function act(method, path, body, done) {
    try {
      await api(method, path, body);
      say(done || "done");
    } catch (e) {
      say(e.message, true);
    }
    refresh();
  }

  const day = (s) => (s ? new Date(s + "T00:00:00Z").getTime() : null);

  // ------------------------------------------------------------ a certificate's life as a bar

  function validityBar(name, cert, today) {
    if (!cert || !cert.present) {
      return el("div", { class: "cert absent", "data-cert": name },
        el("span", { class: "cert-name", text: name }), " no certificate");
    }
    const start = day(cert.not_before);
    const end = day(cert.expires);
    const opens = day(cert.renewal_opens);
    const grace = day(cert.grace_ends);
    const now = day(today);
    const lo = Math.min(start, now) - 30 * DAY;
    const hi = Math.max(grace || end, now) + 30 * DAY;
    const pct = (t) => (100 * (t - lo) / (hi - lo)).toFixed(2) + "%";
    const span = (cls, a, b, title) => el("div", {
      class: "seg " + cls, title,
      style: `left:${pct(a)};width:calc(${pct(b)} - ${pct(a)})`,
    });
    const state = cert.revoked ? "revoked" : cert.expired ? "expired" : "valid";
    const bar = el("div", { class: "bar" },
      span("valid", start, opens, "valid " + cert.not_before + " to " + cert.expires),
      span("renewal", opens, end + DAY, "renewal window from " + cert.renewal_opens),
      grace ? span("grace", end + DAY, grace + DAY, "health-insurance grace to " + cert.grace_ends) : null,
      el("div", { class: "today", style: `left:${pct(now)}`, title: "status date " + today }));
    return el("div", { class: "cert " + state, "data-cert": name, "data-state": state },
      el("div", { class: "cert-head" },
        el("span", { class: "cert-name", text: name }),
        el("span", { class: "badge " + state, text: state }),
        el("span", { class: "dates", text: `${cert.not_before} → ${cert.expires}` +
          (cert.serial ? `  serial ${cert.serial}` : "") })),
      bar,
      el("div", { class: "legend" },
        el("span", { class: "key valid" }), "valid ",
        el("span", { class: "key renewal" }), "renewal from " + cert.renewal_opens + " ",
        grace ? [el("span", { class: "key grace" }), "grace to " + cert.grace_ends] : null));
  }

  // ------------------------------------------------------------ one card

  function pinRow(n, name, pin) {
    const base = `/api/cards/${n}/pins/${name}`;
    const dots = [];
    for (let i = 0; i < pin.max_tries; i++) {
      dots.push(el("span", { class: "dot" + (pin.set && i < pin.tries_left ? " on" : "") }));
    }
    const tries = el("select", { "aria-label": name + " tries", "data-role": "tries-select" });
    for (let i = 0; i <= pin.max_tries; i++) tries.append(el("option", { value: i, text: i }));
    tries.value = pin.set ? pin.tries_left : 0;
    return el("tr", { "data-pin": name },
      el("th", { text: name }),
      el("td", { class: "tries", "data-role": "tries",
        text: pin.set ? `${pin.tries_left}/${pin.max_tries}` : "not set" }),
      el("td", {}, dots),
      el("td", { class: pin.blocked ? "blocked" : "", text: pin.blocked ? "BLOCKED" : "" }),
      el("td", {},
        el("button", { type: "button", "data-action": "block", disabled: !pin.set,
          onclick: () => act("POST", base + "/block", {}, name + " PIN blocked") }, "block"),
        el("button", { type: "button", "data-action": "unblock", disabled: !pin.set,
          onclick: () => act("POST", base + "/unblock", {}, name + " PIN unblocked") }, "unblock"),
        tries,
        el("button", { type: "button", "data-action": "set-tries", disabled: !pin.set,
          onclick: () => act("POST", base + "/tries", { tries: Number(tries.value) },
            name + " tries set") }, "set tries")));
  }

  function faultsBox(n, f) {
    const base = `/api/cards/${n}/faults`;
    const ms = el("input", { type: "number", min: 0, value: f.delay ? f.delay.ms : 500, size: 6,
      "aria-label": "delay ms" });
    const dIns = el("input", { type: "text", placeholder: "INS e.g. 20,2A (all)", size: 14,
      value: f.delay && f.delay.ins ? f.delay.ins.join(",") : "", "aria-label": "delay INS" });
    const sw = el("input", { type: "text", value: f.sw ? f.sw.sw : "6F00", size: 5,
      "aria-label": "forced SW" });
    const count = el("input", { type: "number", min: 1, value: f.sw ? f.sw.count : 1, size: 4,
      "aria-label": "forced SW count" });
    const ins = (text) => (text.trim() ? text.split(/[ ,]+/).filter(Boolean) : null);
    const now = [];
    if (f.delay) now.push(`delay ${f.delay.ms} ms` + (f.delay.ins ? ` (INS ${f.delay.ins})` : ""));
    if (f.sw) now.push(`SW ${f.sw.sw} × ${f.sw.count}` + (f.sw.ins ? ` (INS ${f.sw.ins})` : ""));
    if (f.mute) now.push("mute");
    if (f.tear) now.push(`tear × ${f.tear.count}` + (f.tear.ins ? ` (INS ${f.tear.ins})` : ""));
    return el("div", { class: "faults" },
      el("h3", {}, "Faults ", el("span", { class: "now", "data-role": "faults-now",
        text: now.length ? now.join(", ") : "none" })),
      el("div", { class: "row" }, "delay ", ms, " ms for ", dIns,
        el("button", { type: "button", "data-action": "delay",
          onclick: () => act("POST", base, { delay: { ms: Number(ms.value), ins: ins(dIns.value) } },
            "delay set") }, "set")),
      el("div", { class: "row" }, "answer SW ", sw, " to the next ", count, " commands ",
        el("button", { type: "button", "data-action": "force-sw",
          onclick: () => act("POST", base, { sw: { sw: sw.value, count: Number(count.value) } },
            "forced SW set") }, "set")),
      el("div", { class: "row" },
        el("button", { type: "button", "data-action": "mute",
          onclick: () => act("POST", base, { mute: !f.mute }, f.mute ? "unmuted" : "muted") },
          f.mute ? "unmute" : "mute the card"),
        el("button", { type: "button", "data-action": "tear",
          onclick: () => act("POST", base, { tear: { count: 1, ins: ["20"] } },
            "the next VERIFY is torn") }, "tear the next VERIFY"),
        el("button", { type: "button", "data-action": "clear-faults",
          onclick: () => act("DELETE", base, undefined, "faults cleared") }, "clear all")));
  }

  function panel(c) {
    const n = c.index;
    const base = `/api/cards/${n}`;
    const jpki = c.certificates !== undefined;
    const pins = el("table", { class: "pins" });
    for (const [name, pin] of Object.entries(c.pins)) pins.append(pinRow(n, name, pin));
    const revoked = (c.revoked || []).map((r) =>
      el("li", { text: `${r.which} ${r.serial} revoked ${r.revoked_at.slice(0, 10)} (${r.reason})` }));
    return el("article", { class: "card", "data-card": n },
      el("div", { class: "card-head" },
        el("h2", { text: `Card ${n}` }),
        el("span", { class: "badge " + (c.present ? "on" : "off"), "data-role": "presence",
          text: c.present ? "in the reader" : "removed" }),
        el("span", { class: "badge " + (c.powered ? "on" : "off"),
          text: c.powered ? "powered" : "unpowered" }),
        el("span", { class: "reader", text: (c.reader || c.vpcd || "") })),
      el("div", { class: "body" },
        el("div", { class: "face", "data-role": "face" },
          c.face_image ? el("img", { src: c.face_image + "&token=" + encodeURIComponent(token),
            alt: "card face", "data-role": "face-image" })
            : el("span", { text: "card face" })),
        el("div", { class: "facts" },
          jpki ? el("div", { class: "holder" },
            el("strong", { text: c.holder.name }),
            ` born ${c.holder.birthdate}, card ${c.card.issued} → ${c.card.expires}`) : null,
          el("div", { class: "meta", text: `${c.profile} · ${c.file || "in memory"} · ATR ${c.atr}` +
            ` · ${c.apdus ?? 0} APDUs` }),
          jpki ? validityBar("auth", c.certificates.auth, c.as_of) : null,
          jpki ? validityBar("sign", c.certificates.sign, c.as_of) : null,
          jpki && c.health_insurance ? el("div", { class: "meta",
            text: `health insurance: ${c.health_insurance.state}` }) : null)),
      el("h3", { text: "PINs" }), pins,
      revoked.length ? el("div", {}, el("h3", { text: "Revoked" }), el("ul", { class: "revoked" }, revoked)) : null,
      el("div", { class: "actions" },
        c.present
          ? el("button", { type: "button", "data-action": "remove",
            onclick: () => act("POST", base + "/remove", {}, "card removed") }, "remove")
          : el("button", { type: "button", "data-action": "insert",
            onclick: () => act("POST", base + "/insert", {}, "card inserted") }, "insert"),
        el("button", { type: "button", "data-action": "power-cycle",
          onclick: () => act("POST", base + "/power-cycle", {}, "power cycled") }, "power-cycle"),
        jpki ? [
          el("button", { type: "button", "data-action": "expire",
            onclick: () => act("POST", base + "/expire", { what: "certificates" },
              "certificates expired") }, "expire certificates"),
          el("button", { type: "button", "data-action": "renew",
            onclick: () => act("POST", base + "/renew", {}, "renewed") }, "renew"),
          el("button", { type: "button", "data-action": "revoke-auth",
            onclick: () => act("POST", base + "/revoke", { which: "auth", reason: "keyCompromise" },
              "auth certificate revoked") }, "revoke auth"),
        ] : null),
      faultsBox(n, c.faults));
  }

  // ------------------------------------------------------------ refreshing

  let refreshing = null;
  let again = false;

  async function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      try {
        const [cards, clock] = await Promise.all([api("GET", "/api/cards"), api("GET", "/api/clock")]);
        const box = document.getElementById("cards");
        box.replaceChildren(...cards.map(panel));
        document.getElementById("status-date").textContent =
          clock.today + (clock.fixed ? " (fixed)" : " (real)");
        document.body.dataset.ready = "1";
      } catch (e) {
        say(e.message, true);
      }
    })();
    await refreshing;
    refreshing = null;
    if (again) { again = false; refresh(); }
  }

  let soon = null;
  function refreshSoon() {
    if (soon) return;
    soon = setTimeout(() => { soon = null; refresh(); }, 300);
  }

  // ------------------------------------------------------------ the live trace

  function traceRow(e) {
    const sw = e.sw || "";
    const cls = e.type !== "apdu" ? "event" : sw === "9000" || sw.startsWith("61") ? "ok" : "err";
    return el("tr", { class: "trace-row " + cls, "data-type": e.type, "data-sw": sw,
      "data-command": e.command || "" },
      el("td", { text: e.time.slice(11, 23) }),
      el("td", { text: e.card }),
      el("td", { class: "hex", text: e.command ? (e.command.length > 40 ? e.command.slice(0, 40) + "…" : e.command) : "" }),
      el("td", { text: e.what || "" }),
      el("td", { class: "sw", text: sw }),
      el("td", { text: e.ms !== undefined && e.ms !== null ? e.ms.toFixed(2) : "" }),
      el("td", { class: "note", text: e.type === "apdu" ? e.note || "" : "" }));
  }

  function connect() {
    const status = document.getElementById("connection");
    const body = document.querySelector("#trace tbody");
    const src = new EventSource("/api/stream?token=" + encodeURIComponent(token));
    const seen = new Set();
    src.onopen = () => { status.textContent = "live"; status.className = "badge on"; };
    src.onerror = () => { status.textContent = "reconnecting…"; status.className = "badge off"; };
    src.addEventListener("trace", (msg) => {
      if (seen.has(msg.lastEventId)) return;
      seen.add(msg.lastEventId);
      const e = JSON.parse(msg.data);
      body.prepend(traceRow(e));
      while (body.rows.length > MAX_TRACE_ROWS) body.deleteRow(body.rows.length - 1);
      if (e.type !== "apdu" || (e.command && ["20", "24", "2C"].includes(e.command.slice(2, 4)))) {
        refreshSoon();
      }
    });
  }

  // ------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("date-set").addEventListener("click", () => {
      const v = document.getElementById("date-input").value;
      if (v) act("PUT", "/api/clock", { date: v }, "status date " + v);
    });
    document.getElementById("date-real").addEventListener("click",
      () => act("PUT", "/api/clock", { date: null }, "real date"));
    document.getElementById("trace-clear").addEventListener("click",
      () => document.querySelector("#trace tbody").replaceChildren());
    refresh();
    connect();
    setInterval(refresh, 5000);
  });
})();
