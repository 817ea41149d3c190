// A webhook receiver for the tests: verifies every request with the
// Standard Webhooks reference library (npm `standardwebhooks`, pinned in
// package-lock.json), never with finxd's code, and appends one JSON line
// per request to a log:
//   {"id", "verified", "type", "status", "aborted", "path", "at_ms"}
// status is what it answered; aborted is true when the sender had hung up
// before the answer (a timeout, or a killed finxd), so the sender never
// saw it.
//
//   WEBHOOK_SECRET=whsec_... node receiver.mjs PORT LOGFILE
//
// Listens on 127.0.0.1:PORT.  The secret comes from the environment (not
// argv: ps shows argv).  Control: POST /_control with JSON
//   {"mode": "ok" | "fail" | "slow", "for_ms": N, "slow_ms": N}
// ok answers 200 when the signature verifies and 400 when not; fail
// answers 500 to everything; slow sleeps slow_ms (default 4000) and then
// answers like ok.  With for_ms the mode goes back to ok after that long.
// GET /_control answers the mode and the number of requests taken.
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

const [port, logFile] = process.argv.slice(2);
const secret = process.env.WEBHOOK_SECRET;
if (!port || !logFile || !secret) {
  console.error('usage: WEBHOOK_SECRET=whsec_... node receiver.mjs PORT LOGFILE');
  process.exit(2);
}
const wh = new Webhook(secret);
const state = { mode: 'ok', slowMs: 4000, requests: 0, until: 0 };

function mode() {
  if (state.until && Date.now() >= state.until) {
    state.mode = 'ok';
    state.until = 0;
  }
  return state.mode;
}

function verify(body, headers) {
  try {
    wh.verify(body, headers);
    return true;
  } catch {
    return false;
  }
}

function typeOf(body) {
  try {
    return JSON.parse(body).type ?? null;
  } catch {
    return null;
  }
}

function control(req, res, body) {
  if (req.method === 'POST') {
    let c;
    try {
      c = JSON.parse(body);
    } catch {
      c = {};
    }
    if (!['ok', 'fail', 'slow'].includes(c.mode)) {
      res.writeHead(400).end('mode: ok, fail or slow\n');
      return;
    }
    state.mode = c.mode;
    state.slowMs = Number(c.slow_ms) || 4000;
    state.until = Number(c.for_ms) ? Date.now() + Number(c.for_ms) : 0;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ mode: mode(), requests: state.requests }));
}

function hook(req, res, body) {
  const m = mode();
  const line = {
    id: req.headers['webhook-id'] ?? null,
    verified: verify(body, req.headers),
    type: typeOf(body),
    path: req.url,
  };
  let gone = false;
  res.on('close', () => {
    if (!res.writableFinished) gone = true;
  });
  state.requests++;
  const reply = () => {
    line.status = m === 'fail' ? 500 : line.verified ? 200 : 400;
    line.aborted = gone || req.socket.destroyed;
    line.at_ms = Date.now();
    appendFileSync(logFile, JSON.stringify(line) + '\n');
    if (!line.aborted) res.writeHead(line.status).end();
  };
  if (m === 'slow') setTimeout(reply, state.slowMs);
  else reply();
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (req.url.startsWith('/_control')) control(req, res, body);
      else if (req.method === 'POST') hook(req, res, body);
      else res.writeHead(404).end();
    });
  })
  .listen(Number(port), '127.0.0.1', () => {
    console.error(`receiver: listening on 127.0.0.1:${port}`);
  });
