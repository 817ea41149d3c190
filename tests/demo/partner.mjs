// A stand-in for a partner's web application, for the demo (README command
// 1) and the browser test.  It is not part of finxd: it shows how a partner
// uses it.  "Connect your bank" makes a widget link server-side (POST
// /v1/links with the partner's API key, which never reaches the browser),
// sends the browser to the link's start_url (finxd -> finX widget ->
// finxd /callback), and /return then lists the accounts and the latest
// transactions read over /v1.  Node.js only: node:http and fetch.
//
// Webhooks: with a secret set, POST /webhooks takes finxd's deliveries
// (FINXD_WEBHOOK_URL), verifies each with the Standard Webhooks reference
// library (npm `standardwebhooks`, installed in tests/webhooks by `npm
// ci`), answers 204 (400 when it does not verify), and the pages list the
// last ones as they come (webhooks.js polls /webhooks.json every second):
// type, time, verified.  Without a secret there is no webhook route and
// no npm package is needed.
//
// Environment:
//   PARTNER_LISTEN        host:port to listen on (127.0.0.1:8090)
//   PARTNER_PUBLIC_URL    base URL browsers reach this app at
//                         (http://<PARTNER_LISTEN>); return_url is this + /return
//   FINXD_URL             finxd base URL (http://127.0.0.1:8080)
//   PARTNER_API_KEY_FILE  file holding the finxd API key (or PARTNER_API_KEY)
//   PARTNER_WAIT_MS       how long /return waits for the first pull (10000)
//   PARTNER_WEBHOOK_SECRET_FILE  file holding the webhook secret, whsec_...
//                         (or PARTNER_WEBHOOK_SECRET); unset: no webhooks
import http from "node:http";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const listen = process.env.PARTNER_LISTEN || "127.0.0.1:8090";
const sep = listen.lastIndexOf(":");
const host = listen.slice(0, sep).replace(/^\[|\]$/g, "");
const port = Number(listen.slice(sep + 1));
const publicUrl = (process.env.PARTNER_PUBLIC_URL || `http://${listen}`)
  .replace(/\/+$/, "");
const finxdUrl = (process.env.FINXD_URL || "http://127.0.0.1:8080")
  .replace(/\/+$/, "");
const waitMs = Number(process.env.PARTNER_WAIT_MS || 10000);
const apiKey = process.env.PARTNER_API_KEY_FILE
  ? readFileSync(process.env.PARTNER_API_KEY_FILE, "utf8").trim()
  : (process.env.PARTNER_API_KEY || "").trim();
if (!apiKey) {
  console.error("partner: set PARTNER_API_KEY_FILE (or PARTNER_API_KEY)");
  process.exit(2);
}

const webhookSecret = process.env.PARTNER_WEBHOOK_SECRET_FILE
  ? readFileSync(process.env.PARTNER_WEBHOOK_SECRET_FILE, "utf8").trim()
  : (process.env.PARTNER_WEBHOOK_SECRET || "").trim();
// The verifier: the reference library from tests/webhooks' node_modules.
let verifier = null;
if (webhookSecret) {
  const require = createRequire(new URL("../webhooks/package.json", import.meta.url));
  const { Webhook } = require("standardwebhooks");
  verifier = new Webhook(webhookSecret);
}
// The last deliveries, newest first: { id, type, time, received_at, verified }.
const received = [];
const RECEIVED_MAX = 50;

// link_id -> user_id for links this app opened: /return only shows data
// for a link it made itself.
const links = new Map();

const esc = (v) =>
  String(v ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One call to finxd's /v1; resolves to { status, json }.
async function api(method, path, body) {
  const res = await fetch(finxdUrl + path, {
    method,
    headers: {
      Authorization: `Bearer ${apiKey}`,
      ...(body ? { "Content-Type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(15000),
  });
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  return { status: res.status, json };
}

function page(res, status, title, body, extraHead = "") {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} - Partner Bank Demo</title>${extraHead}
<style>
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
button { font-size: 1.1rem; padding: .6rem 1.2rem; cursor: pointer; }
.note { color: #666; font-size: .9rem; } .err { color: #a00; }
</style></head>
<body><h1>${esc(title)}</h1>
${body}
${webhooksSection()}
<p class="note">A demo partner app: the bank connection is handled by finxd.</p>
</body></html>
`;
  res.writeHead(status, {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    // No form-action: the POST to /connect redirects on to finxd and the widget.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'",
    "Referrer-Policy": "no-referrer",
  });
  res.end(html);
}

function webhooksSection() {
  if (!verifier) return "";
  return `<h2>Webhooks received</h2>
<p class="note">finxd's deliveries to this app, verified with the Standard Webhooks library.</p>
<table id="webhooks"><thead><tr><th>Type</th><th>Time</th><th>Verified</th></tr></thead>
<tbody></tbody></table>
<script src="/webhooks.js"></script>`;
}

// The browser's side: poll /webhooks.json every second and list them.
const webhooksJs = `"use strict";
(function () {
  const body = document.querySelector("#webhooks tbody");
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  async function poll() {
    try {
      const r = await fetch("/webhooks.json", { cache: "no-store" });
      const list = (await r.json()).webhooks;
      body.replaceChildren(...list.map(function (w) {
        const tr = document.createElement("tr");
        tr.className = "webhook";
        tr.dataset.type = w.type || "";
        tr.dataset.verified = String(w.verified);
        cell(tr, w.type || "(unreadable)");
        cell(tr, w.time || w.received_at);
        cell(tr, w.verified ? "yes" : "NO", "verified");
        return tr;
      }));
    } catch (e) {
      /* the next poll tries again */
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
`;

async function webhook(req, res) {
  let body = "";
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 65536) throw new Error("webhook too large");
  }
  let verified = false;
  let event = null;
  try {
    event = verifier.verify(body, req.headers);
    verified = true;
  } catch {
    try {
      event = JSON.parse(body); // shown as not verified
    } catch {
      event = null;
    }
  }
  received.unshift({
    id: String(req.headers["webhook-id"] || ""),
    type: typeof event?.type === "string" ? event.type : null,
    time: typeof event?.timestamp === "string" ? event.timestamp : null,
    received_at: new Date().toISOString(),
    verified,
  });
  received.length = Math.min(received.length, RECEIVED_MAX);
  res.writeHead(verified ? 204 : 400);
  res.end();
}

function home(res) {
  const user = "user-" + randomBytes(4).toString("hex");
  page(res, 200, "Connect your bank", `
<p>Let us read your accounts and transactions through finX.</p>
<form method="post" action="/connect">
<p><label>Your user id at the partner: <input name="user_id" id="user_id" value="${esc(user)}" maxlength="255"></label></p>
<button id="connect" type="submit">Connect your bank</button>
</form>`);
}

async function readForm(req) {
  let data = "";
  for await (const chunk of req) {
    data += chunk;
    if (data.length > 4096) throw new Error("form too large");
  }
  return new URLSearchParams(data);
}

async function connect(req, res) {
  const form = await readForm(req);
  const user = (form.get("user_id") || "").trim();
  if (!user) return page(res, 400, "Connect your bank", `<p class="err">A user id is needed.</p><p><a href="/">Back</a></p>`);
  const r = await api("POST", "/v1/links", {
    user_id: user,
    return_url: `${publicUrl}/return`,
    language: "en",
  });
  if (r.status !== 201 || !r.json?.start_url) {
    const msg = r.json?.error?.message || `finxd answered ${r.status}`;
    return page(res, 502, "Connect your bank", `<p class="err">Could not open the bank widget: ${esc(msg)}</p><p><a href="/">Back</a></p>`);
  }
  links.set(r.json.link_id, user);
  res.writeHead(303, { Location: r.json.start_url, "Cache-Control": "no-store" });
  res.end();
}

// Wait (bounded) until the first pull stored the user's accounts.
async function waitForAccounts(user) {
  const deadline = Date.now() + waitMs;
  const path = `/v1/users/${encodeURIComponent(user)}/accounts`;
  for (;;) {
    const r = await api("GET", path);
    if (r.status === 200 && r.json?.accounts?.length) return r.json.accounts;
    if (Date.now() >= deadline) return [];
    await sleep(300);
  }
}

function money(m) {
  if (!m || m.amount == null) return "";
  return `${esc(m.amount)} ${esc(m.currency)}`;
}

function accountsTable(accounts) {
  const rows = accounts.map((a) => `<tr class="account">
<td>${esc(a.name)}</td><td>${esc(a.iban)}</td><td>${esc(a.type)}</td>
<td class="num balance">${money(a.balance)}</td></tr>`).join("\n");
  return `<h2>Accounts</h2>
<table id="accounts"><thead><tr><th>Account</th><th>IBAN</th><th>Type</th><th>Balance</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

function txnsTable(txns, names) {
  const rows = txns.map((t) => `<tr class="transaction">
<td>${esc((t.booking_date || t.value_date || "").slice(0, 10))}</td><td>${esc(names.get(t.account_id))}</td>
<td>${esc(t.counterparty?.name)}</td><td>${esc(t.purpose)}</td>
<td class="num">${money(t)}</td><td>${t.booked ? "booked" : "pending"}</td></tr>`).join("\n");
  return `<h2>Latest transactions</h2>
<table id="transactions"><thead><tr><th>Date</th><th>Account</th><th>Counterparty</th><th>Purpose</th><th>Amount</th><th></th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

async function back(url, res) {
  const linkId = url.searchParams.get("link_id") || "";
  const user = links.get(linkId);
  if (!user) return page(res, 400, "Unknown link", `<p class="err">This page only shows links opened here.</p><p><a href="/">Start again</a></p>`);
  const link = await api("GET", `/v1/links/${encodeURIComponent(linkId)}`);
  const status = link.json?.status || url.searchParams.get("status");
  if (status !== "connected") {
    const reason = link.json?.reason || url.searchParams.get("reason") || "";
    return page(res, 200, "Bank not connected", `<p id="status">Status: <b>${esc(status)}</b>${reason ? ` (${esc(reason)})` : ""}</p><p><a href="/">Try again</a></p>`);
  }
  const accounts = await waitForAccounts(user);
  if (!accounts.length) {
    return page(res, 200, "Your bank is connected", `<p id="status">Connected. Waiting for the first data pull...</p>`,
      `\n<meta http-equiv="refresh" content="2">`);
  }
  const t = await api("GET", `/v1/users/${encodeURIComponent(user)}/transactions?limit=10`);
  const names = new Map(accounts.map((a) => [a.account_id, a.name]));
  const txns = t.status === 200 ? t.json?.transactions || [] : [];
  page(res, 200, "Your bank is connected", `<p id="status">Connected as <b>${esc(user)}</b>
(connection ${esc(link.json.connection_id)}).</p>
${accountsTable(accounts)}
${txnsTable(txns, names)}
<p><a href="/">Connect another bank</a></p>`);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, publicUrl);
  try {
    if (req.method === "GET" && url.pathname === "/") return home(res);
    if (req.method === "POST" && url.pathname === "/connect") return await connect(req, res);
    if (req.method === "GET" && url.pathname === "/return") return await back(url, res);
    if (verifier && req.method === "POST" && url.pathname === "/webhooks") return await webhook(req, res);
    if (verifier && req.method === "GET" && url.pathname === "/webhooks.json") {
      res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
      return res.end(JSON.stringify({ webhooks: received }));
    }
    if (verifier && req.method === "GET" && url.pathname === "/webhooks.js") {
      res.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "no-store" });
      return res.end(webhooksJs);
    }
    if (req.method === "GET" && url.pathname === "/healthz") {
      res.writeHead(200, { "Content-Type": "text/plain" });
      return res.end("ok\n");
    }
    page(res, 404, "Not found", `<p><a href="/">Home</a></p>`);
  } catch (e) {
    console.error(`partner: ${req.method} ${url.pathname}: ${e.message}`);
    if (!res.headersSent) page(res, 502, "Something went wrong", `<p class="err">${esc(e.message)}</p><p><a href="/">Home</a></p>`);
  }
});

server.listen(port, host, () => {
  console.error(`partner: listening on ${publicUrl} (finxd ${finxdUrl}); webhooks ${verifier ? "at /webhooks" : "off"}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
