// compiler/artifact-lib.ts
var isDigit = (c) => c >= 48 && c <= 57;
function isSpace(c) {
  return c === 32 || c >= 9 && c <= 13 || c === 160 || c === 5760 || c >= 8192 && c <= 8202 || c === 8232 || c === 8233 || c === 8239 || c === 8287 || c === 12288 || c === 65279;
}
function parseReplyInto(target, scratch, text) {
  target.text = text;
  target.code = 0;
  target.status = null;
  const n = text.length;
  const c0 = n > 0 ? text.charCodeAt(0) : 0;
  if (n < 3 || c0 < 50 || c0 > 53 || !isDigit(text.charCodeAt(1)) || !isDigit(text.charCodeAt(2))) return;
  if (n > 3) {
    const sep = text.charCodeAt(3);
    if (sep !== 32 && sep !== 45) return;
  }
  target.code = (c0 - 48) * 100 + (text.charCodeAt(1) - 48) * 10 + (text.charCodeAt(2) - 48);
  let i = 4;
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  const cls = i < n ? text.charCodeAt(i) - 48 : -1;
  if (cls !== 2 && cls !== 4 && cls !== 5 || text.charCodeAt(i + 1) !== 46) return;
  i += 2;
  let subject = 0;
  let digits = 0;
  while (i < n && isDigit(text.charCodeAt(i))) {
    subject = subject * 10 + text.charCodeAt(i) - 48;
    i++;
    digits++;
  }
  if (digits < 1 || digits > 3 || text.charCodeAt(i) !== 46) return;
  i++;
  let detail = 0;
  digits = 0;
  while (i < n && isDigit(text.charCodeAt(i))) {
    detail = detail * 10 + text.charCodeAt(i) - 48;
    i++;
    digits++;
  }
  if (digits < 1 || digits > 3) return;
  if (text.charCodeAt(i) === 46 && isDigit(text.charCodeAt(i + 1))) return;
  scratch[0] = cls;
  scratch[1] = subject;
  scratch[2] = detail;
  target.status = scratch;
}
function fallbackCategory(reply, byText = categoryByText) {
  const cls = reply.code ? Math.floor(reply.code / 100) : 0;
  if (cls === 2 || cls === 3) return "success";
  if (reply.status) {
    if (reply.status[1] === 7) {
      const category = byText(reply);
      return category === "spam-related" || category === "relaying-issues" || category === "virus-related" ? category : "policy-related";
    }
    if (reply.status[1] === 4 && reply.status[2] === 1) {
      const category = byText(reply);
      return category === "other" ? "no-answer-from-host" : category;
    }
    const byStatus = categoryByStatus(reply.status[1], reply.status[2]);
    if (byStatus !== "other") return byStatus;
  }
  return byText(reply);
}
function categoryByStatus(subject, detail) {
  switch (subject) {
    case 1:
      if (detail === 2 || detail === 10) return "bad-domain";
      if (detail === 7 || detail === 8) return "invalid-sender";
      if (detail === 6) return "inactive-mailbox";
      return "bad-mailbox";
    case 2:
      if (detail === 1) return "inactive-mailbox";
      if (detail === 2) return "quota-issues";
      if (detail === 3) return "content-related";
      return "other";
    case 3:
      if (detail === 1) return "quota-issues";
      if (detail === 4) return "content-related";
      return "other";
    case 4:
      if (detail === 1) return "no-answer-from-host";
      if (detail === 2) return "bad-connection";
      if (detail === 3 || detail === 4 || detail === 6) return "routing-errors";
      if (detail === 7) return "message-expired";
      return "other";
    case 5:
      return "protocol-errors";
    case 6:
      return "content-related";
    case 7:
      return "policy-related";
    default:
      return "other";
  }
}
var TEXT_CATEGORIES = [
  [/virus|malware|infected/i, "virus-related"],
  [/gr[ae]y-?list/i, "policy-related"],
  [/spam|blocklist|blacklist|block list|black list|spamhaus|junk|\b(?:RBL|DNSBL)\b|reputation|unsolicited|\bUCE\b|realtime blackhole|open (?:relay|proxy)|\bblocked\b/i, "spam-related"],
  [/too many (?:bad|invalid|unknown|illegal|unavailable|non-?existent) (?:users?|mailboxes|recipients?|rcpts?|addresses|addressees)/i, "policy-related"],
  [/quota|mailbox (?:is )?full|insufficient (?:storage|space)|over ?quota|\bstorage\b/i, "quota-issues"],
  [/sender (?:e-?mail )?(?:address )?(?:rejected|invalid|denied|unknown)|invalid sender|domain of sender/i, "invalid-sender"],
  [/\b(?:user|mailbox|recipient|rcpt|local part|address|account|mail drop|addressee)(?: \S+){0,2}? (?:is |has been |was )?(?:currently |temporarily |permanently )?(?:disabled|expired|inactive|deactivated|suspended|locked|closed|frozen|not activated)\b|no longer (?:active|in use)/i, "inactive-mailbox"],
  [/(?:no such|bad|invalid|unknown|illegal|unavailable|non-?existent) (?:local )?(?:user|mailbox|recipient|rcpt|local[- ]part|address|account|mail ?drop|addressee|e-?mail address)|\b(?:user|mailbox|recipient|rcpt|local[- ]part|address|account|mail ?drop|addressee)\b[^\n]{0,80}?\b(?:unknown|not found|not known|not (?:a )?valid|not here|not exists?|does not exist|doesn't exist|no such|invalid|illegal|unavailable)|not our customer|badrcptto|no longer (?:valid|available)|have an? \S+ account|no mailbox here/i, "bad-mailbox"],
  [/(?:domain|host)\b[^\n]{0,80}?\b(?:not found|does not exist|unknown)|domain (?:retired|bad|invalid|illegal|unavailable|no longer in use)|no mx|unrouteable|unroutable/i, "bad-domain"],
  [/\brelay(?:ing)?\b(?!=)/i, "relaying-issues"],
  [/inactive|disabled|suspended|deactivated/i, "inactive-mailbox"],
  [/timed? ?out|connection (?:refused|reset|dropped|closed)|lost connection/i, "bad-connection"],
  [/expired|too long in queue/i, "message-expired"],
  [/spf|dkim|dmarc|authenticat/i, "policy-related"],
  [/message (?:size|too (?:big|large))|content|attachment/i, "content-related"],
  [/policy|rate limit|too many|deferred|temporarily (?:rejected|deferred)|try again later|throttl|denied|prohibit|rejected|refused|not allowed|banned|suspicious activity/i, "policy-related"],
  [/syntax|command not recognized|unrecognized command|protocol|bad sequence/i, "protocol-errors"]
];
function categoryByText(reply) {
  for (const [pattern, category] of TEXT_CATEGORIES) if (pattern.test(reply.text)) return category;
  return "other";
}
function fallbackDisposition(reply) {
  const cls = reply.code ? Math.floor(reply.code / 100) : 0;
  if (cls === 2 || cls === 3) return null;
  return cls === 5 ? "hard" : "soft";
}
function curveDelay(curve, attempt, expireSeconds = curve.expireSeconds) {
  if (!Number.isInteger(attempt) || attempt < 1) return null;
  if (curve.attempts !== null && attempt >= curve.attempts) return null;
  let total = 0;
  let delay = 0;
  for (let n = 1; n <= attempt; n++) {
    const d = stepSeconds(curve, n);
    if (d === null) return null;
    delay = d;
    total += d;
    if (expireSeconds !== null && total > expireSeconds) return null;
    if (n > curve.steps.length && curve.repeat !== null && n < attempt) {
      const remaining = attempt - n;
      total += remaining * curve.repeat;
      if (expireSeconds !== null && total > expireSeconds) return null;
      return curve.repeat * 1e3;
    }
    if (n > curve.steps.length && curve.exponential !== null && curve.exponential.capSeconds !== null && d >= curve.exponential.capSeconds && n < attempt) {
      const remaining = attempt - n;
      total += remaining * d;
      if (expireSeconds !== null && total > expireSeconds) return null;
      return d * 1e3;
    }
  }
  return delay * 1e3;
}
function stepSeconds(curve, n) {
  if (n <= curve.steps.length) return curve.steps[n - 1];
  if (curve.repeat !== null) return curve.repeat;
  const e = curve.exponential;
  if (e !== null) {
    const k = n - curve.steps.length - 1;
    const raw = e.initialSeconds * Math.pow(e.factor, k);
    return e.capSeconds !== null ? Math.min(raw, e.capSeconds) : raw;
  }
  return null;
}
function planLimit(plan, ageDays) {
  if (!Number.isFinite(ageDays) || ageDays < 0) return plan.kind === "schedule" ? plan.perDay[0] ?? Infinity : Math.floor(plan.startPerDay);
  const day = Math.floor(ageDays);
  if (plan.kind === "schedule") return day < plan.perDay.length ? plan.perDay[day] : Infinity;
  const value = Math.floor(plan.startPerDay * Math.pow(plan.factor, day));
  if (plan.capPerDay !== null && value >= plan.capPerDay) return Infinity;
  return Number.isFinite(value) ? value : Infinity;
}
function normalizeDomain(domain) {
  const lower2 = domain.toLowerCase();
  return lower2.endsWith(".") ? lower2.slice(0, -1) : lower2;
}
var stripLoc = (list) => list.map(({ loc: _loc, ...rest }) => rest);
function composeSettings(routeId, base, tables, sourceName, tenantName) {
  const source = sourceName !== void 0 ? tables.sources[sourceName] : void 0;
  const tenant = tenantName !== void 0 ? tables.tenants[tenantName] : void 0;
  const parts = [tables.global];
  if (source) parts.push(source.limits);
  if (tenant) parts.push(tenant.limits);
  const order = { global: 0, source: 1, tenant: 2, destination: 3, "destination/source": 4, "destination/tenant": 5 };
  const join = (pick, own) => stripLoc([...parts.flatMap(pick), ...own].sort((a, b) => order[a.scope] - order[b.scope]));
  return {
    route: routeId,
    connections: join((l) => l.connections, base.connections),
    connectRate: join((l) => l.connectRate, base.connectRate),
    messageRate: join((l) => l.messageRate, base.messageRate),
    dataRate: join((l) => l.dataRate, base.dataRate),
    messagesPerConnection: base.messagesPerConnection,
    recipientsPerTransaction: base.recipientsPerTransaction,
    tls: base.tls,
    retry: base.retry,
    retryJitter: tables.retryCurves[base.retry]?.jitter ?? 0,
    expireSeconds: base.expireSeconds,
    source: source ? {
      name: source.name,
      address: source.address,
      ehlo: source.ehlo,
      warmup: source.warmup ? { ramp: source.warmup.ramp, since: source.warmup.since, overflowPool: tables.warmups[source.warmup.ramp]?.overflowPool ?? null } : null
    } : null,
    tenant: tenant ? { name: tenant.name, pool: tenant.pool } : null
  };
}
function ruleReaction(rule, reply, byText) {
  const reaction = {
    category: rule.category ?? fallbackCategory(reply, byText),
    disposition: rule.disposition ?? fallbackDisposition(reply),
    actions: rule.actions,
    rule: { file: rule.loc.file, line: rule.loc.line }
  };
  if (rule.trigger) reaction.trigger = { count: rule.trigger.count, withinSeconds: rule.trigger.withinSeconds, id: rule.id };
  return reaction;
}
function fallbackReaction(reply, byText) {
  return { category: fallbackCategory(reply, byText), disposition: fallbackDisposition(reply), actions: [] };
}
function retryDelayFor(reaction, curve, attempt, expireSeconds) {
  if (reaction) {
    if (reaction.category === "success" || reaction.disposition === "hard") return null;
    for (const a of reaction.actions) if (a.type === "bounce") return null;
    for (const a of reaction.actions) {
      if (a.type !== "retry") continue;
      if (a.attempts !== void 0 && attempt >= a.attempts) return null;
      if (a.afterSeconds !== null) {
        if (!Number.isInteger(attempt) || attempt < 1 || curve && curve.attempts !== null && attempt >= curve.attempts) return null;
        return a.afterSeconds * 1e3;
      }
    }
  }
  if (!curve) return null;
  return curveDelay(curve, attempt, expireSeconds);
}
var SCAN_PREFIX = 8;
var SCAN_CLASSES = 32;
function scanClass(c, used) {
  if (c >= 65 && c <= 90) c += 32;
  if (!used.has(c)) return 0;
  if (c >= 97 && c <= 122) return c - 96;
  if (c >= 48 && c <= 57) return 27;
  if (c === 32) return 28;
  return 29 + c % 3;
}
function literalScanner(literals, groups) {
  const keys = literals.map(([text, group]) => [text.slice(0, SCAN_PREFIX), group]);
  const used = /* @__PURE__ */ new Set();
  for (const [text] of keys) for (let i = 0; i < text.length; i++) used.add(text.charCodeAt(i));
  const ascii = new Int32Array(128);
  for (let c = 0; c < 128; c++) ascii[c] = scanClass(c, used);
  const children = [/* @__PURE__ */ new Map()];
  const own = [[]];
  for (const [text, group] of keys) {
    let s = 0;
    for (let i = 0; i < text.length; i++) {
      const k = scanClass(text.charCodeAt(i), used);
      let next = children[s].get(k);
      if (next === void 0) {
        next = children.length;
        children.push(/* @__PURE__ */ new Map());
        own.push([]);
        children[s].set(k, next);
      }
      s = next;
    }
    own[s].push(group);
  }
  const states = children.length;
  const width = SCAN_CLASSES;
  const delta = new Int32Array(states * width);
  const fail = new Int32Array(states);
  const outputs = own.map((o) => [...o]);
  const queue = [];
  for (const [k, next] of children[0]) {
    delta[k] = next;
    queue.push(next);
  }
  for (let q = 0; q < queue.length; q++) {
    const s = queue[q];
    outputs[s] = [.../* @__PURE__ */ new Set([...outputs[s], ...outputs[fail[s]]])];
    for (let k = 0; k < width; k++) {
      const next = children[s].get(k);
      if (next === void 0) delta[s * width + k] = delta[fail[s] * width + k];
      else {
        fail[next] = delta[fail[s] * width + k];
        delta[s * width + k] = next;
        queue.push(next);
      }
    }
  }
  const offsets = new Int32Array(states + 1);
  for (let s = 0; s < states; s++) offsets[s + 1] = offsets[s] + outputs[s].length;
  const found = Int32Array.from(outputs.flat());
  for (let i = 0; i < delta.length; i++) {
    const t = delta[i];
    delta[i] = outputs[t].length > 0 ? ~(t * width) : t * width;
  }
  const seen = new Int32Array(groups);
  const mark = (s, stamp) => {
    const state = s / width;
    for (let j = offsets[state]; j < offsets[state + 1]; j++) seen[found[j]] = stamp;
  };
  const run = (text, stamp, lowered) => {
    let s = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      let k;
      if (c < 128) k = ascii[c];
      else if (lowered) k = scanClass(c, used);
      else return run(text.toLowerCase(), stamp, true);
      const t = delta[s + k];
      if (t >= 0) s = t;
      else mark(s = ~t, stamp);
    }
  };
  const scanner = {
    seen,
    stamp: 0,
    scan(text) {
      if (scanner.stamp === 2147483647) {
        seen.fill(0);
        scanner.stamp = 0;
      }
      run(text, ++scanner.stamp, false);
    }
  };
  return scanner;
}

// compiler/policy-artifact.js
var META = Object.freeze({ "name": "test", "version": "1.2.0", "hash": "e8fb7b8cd56e32e4868bb3f719619a57c9a5aafc1d78e281c8ce95f80e2fa180", "abi": 1 });
var ROUTE_IDS = ["default", "provider:acme", "domain:special.acme-mail.example"];
var ROUTE_INDEX = new Map(ROUTE_IDS.map((id, i) => [id, i]));
function routeTable(groups) {
  const map = /* @__PURE__ */ new Map();
  for (const group of groups) {
    const id = ROUTE_IDS[group[0]];
    for (let k = 1; k < group.length; k++) map.set(group[k], id);
  }
  return map;
}
var EXACT = routeTable([[1, "acme-mail.example", "acme.example"], [2, "special.acme-mail.example"]]);
var SUFFIX = routeTable([[1, "acme-mail.example"]]);
var MX_EXACT = routeTable([]);
var MX_SUFFIX = routeTable([[1, "mx.acme.example"]]);
function lookup(exact, suffix, name) {
  const hit = exact.get(name);
  if (hit !== void 0) return hit;
  for (let i = name.indexOf("."); i !== -1; i = name.indexOf(".", i + 1)) {
    const parent = suffix.get(name.slice(i + 1));
    if (parent !== void 0) return parent;
  }
  return void 0;
}
var CACHE_LIMIT = 65536;
var domainCache = /* @__PURE__ */ new Map();
var hostCache = /* @__PURE__ */ new Map();
var NONE = "";
function remember(cache, name, value) {
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(name, value);
}
function cached(cache, exact, suffix, name) {
  let hit = cache.get(name);
  if (hit === void 0) {
    hit = lookup(exact, suffix, normalizeDomain(name)) ?? NONE;
    remember(cache, name, hit);
  }
  return hit;
}
function rollup(mxHosts) {
  let chosen;
  for (let i = 0; i < mxHosts.length; i++) {
    const id = cached(hostCache, MX_EXACT, MX_SUFFIX, mxHosts[i]);
    if (id === NONE || chosen !== void 0 && id !== chosen) return "default";
    chosen = id;
  }
  return chosen;
}
function sameHosts(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function route(domain, mxHosts) {
  let hit = domainCache.get(domain);
  if (hit === void 0) {
    hit = lookup(EXACT, SUFFIX, normalizeDomain(domain)) ?? NONE;
    remember(domainCache, domain, hit);
  }
  if (typeof hit === "string" && hit !== NONE) return hit;
  if (!mxHosts || mxHosts.length === 0) return "default";
  if (typeof hit !== "string" && sameHosts(hit.hosts, mxHosts)) return hit.id;
  const id = rollup(mxHosts);
  remember(domainCache, domain, { hosts: Array.from(mxHosts), id });
  return id;
}
var BASE = [{ "connections": [{ "max": 5, "scope": "destination/source" }], "connectRate": [], "messageRate": [], "dataRate": [], "messagesPerConnection": null, "recipientsPerTransaction": 100, "tls": "opportunistic", "retry": "standard", "expireSeconds": 259200 }, { "connections": [{ "max": 5, "scope": "destination/source" }], "connectRate": [], "messageRate": [{ "count": 100, "perSeconds": 60, "scope": "destination/source" }], "dataRate": [{ "count": 10485760, "perSeconds": 60, "scope": "destination" }], "messagesPerConnection": null, "recipientsPerTransaction": 100, "tls": "opportunistic", "retry": "standard", "expireSeconds": 259200 }, { "connections": [{ "max": 5, "scope": "destination/source" }], "connectRate": [], "messageRate": [{ "count": 100, "perSeconds": 60, "scope": "destination/source" }], "dataRate": [{ "count": 10485760, "perSeconds": 60, "scope": "destination" }], "messagesPerConnection": null, "recipientsPerTransaction": 100, "tls": "required", "retry": "standard", "expireSeconds": 259200 }];
var TABLES = { "global": { "connections": [], "connectRate": [], "messageRate": [], "dataRate": [] }, "sources": { "ip1": { "name": "ip1", "loc": { "file": "sample.policy", "line": 42, "column": 1 }, "address": "192.0.2.10", "ehlo": "mta1.example.com", "warmup": null, "limits": { "connections": [], "connectRate": [], "messageRate": [], "dataRate": [] } }, "ip2": { "name": "ip2", "loc": { "file": "sample.policy", "line": 46, "column": 1 }, "address": "192.0.2.11", "ehlo": "mta2.example.com", "warmup": { "ramp": "fresh", "since": "2026-11-20" }, "limits": { "connections": [], "connectRate": [], "messageRate": [{ "count": 1e3, "perSeconds": 3600, "scope": "source", "loc": { "file": "sample.policy", "line": 50, "column": 3 } }], "dataRate": [] } } }, "tenants": { "shop": { "name": "shop", "loc": { "file": "sample.policy", "line": 55, "column": 1 }, "pool": "warm", "limits": { "connections": [], "connectRate": [], "messageRate": [{ "count": 5e3, "perSeconds": 3600, "scope": "tenant", "loc": { "file": "sample.policy", "line": 57, "column": 3 } }], "dataRate": [] } } }, "warmups": { "fresh": { "overflowPool": "warm" } }, "retryCurves": { "bulk": { "jitter": 0.15 }, "patient": { "jitter": 0.1 }, "petrel-builtin": { "jitter": 0.1 }, "standard": { "jitter": 0.1 }, "transactional": { "jitter": 0.05 } } };
var CURVES = { "bulk": { "name": "bulk", "loc": { "file": "petrel:stdlib/retry.policy", "line": 24, "column": 1 }, "steps": [900, 1800, 3600], "repeat": 7200, "exponential": null, "jitter": 0.15, "expireSeconds": 172800, "attempts": null }, "patient": { "name": "patient", "loc": { "file": "petrel:stdlib/retry.policy", "line": 47, "column": 1 }, "steps": [600, 1800], "repeat": null, "exponential": { "initialSeconds": 3600, "factor": 2, "capSeconds": 28800 }, "jitter": 0.1, "expireSeconds": 432e3, "attempts": null }, "petrel-builtin": { "name": "petrel-builtin", "loc": { "file": "sample.policy", "line": 4, "column": 1 }, "steps": [300, 900, 1800, 3600], "repeat": 7200, "exponential": null, "jitter": 0.1, "expireSeconds": null, "attempts": null }, "standard": { "name": "standard", "loc": { "file": "petrel:stdlib/retry.policy", "line": 15, "column": 1 }, "steps": [300, 600, 1200, 2400], "repeat": 3600, "exponential": null, "jitter": 0.1, "expireSeconds": 259200, "attempts": null }, "transactional": { "name": "transactional", "loc": { "file": "petrel:stdlib/retry.policy", "line": 36, "column": 1 }, "steps": [60, 120, 300, 600], "repeat": 1800, "exponential": null, "jitter": 0.05, "expireSeconds": 43200, "attempts": null } };
var WARMUPS = { "fresh": { "plan": { "kind": "schedule", "perDay": [100, 500, 2e3] }, "routes": { "provider:acme": { "kind": "growth", "startPerDay": 50, "factor": 2, "capPerDay": 1e3 } } } };
var settingsCache = /* @__PURE__ */ new Map();
function settings(routeId, source, tenant) {
  const i = ROUTE_INDEX.get(routeId) ?? 0;
  const key = i + "\0" + (source ?? "") + "\0" + (tenant ?? "");
  let hit = settingsCache.get(key);
  if (hit === void 0) {
    hit = deepFreeze(composeSettings(ROUTE_IDS[i], BASE[i], TABLES, source, tenant));
    if (settingsCache.size < 1e4) settingsCache.set(key, hit);
  }
  return hit;
}
function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
var LITERALS = [["virus", 0], ["malware", 0], ["infected", 0], ["list", 1], ["spam", 2], ["blocklist", 2], ["blacklist", 2], ["block list", 2], ["black list", 2], ["spamhaus", 2], ["junk", 2], ["rbl", 2], ["dnsbl", 2], ["reputation", 2], ["unsolicited", 2], ["uce", 2], ["realtime blackhole", 2], ["open ", 2], ["blocked", 2], ["too many ", 3], ["quota", 4], ["mailbox ", 4], ["insufficient ", 4], ["storage", 4], ["sender ", 5], ["invalid sender", 5], ["domain of sender", 5], ["disabled", 6], ["expired", 6], ["inactive", 6], ["deactivated", 6], ["suspended", 6], ["locked", 6], ["closed", 6], ["frozen", 6], ["not activated", 6], ["no longer ", 6], ["user", 7], ["mailbox", 7], ["recipient", 7], ["rcpt", 7], ["local", 7], ["address", 7], ["account", 7], ["mail", 7], ["addressee", 7], ["mail address", 7], ["unknown", 7], ["not found", 7], ["not known", 7], ["valid", 7], ["not here", 7], ["not exist", 7], ["does not exist", 7], ["doesn't exist", 7], ["no such", 7], ["invalid", 7], ["illegal", 7], ["unavailable", 7], ["not our customer", 7], ["badrcptto", 7], ["no longer ", 7], [" account", 7], ["no mailbox here", 7], ["not found", 8], ["does not exist", 8], ["unknown", 8], ["domain ", 8], ["no mx", 8], ["unrouteable", 8], ["unroutable", 8], ["relay", 9], ["inactive", 10], ["disabled", 10], ["suspended", 10], ["deactivated", 10], ["time", 11], ["connection ", 11], ["lost connection", 11], ["expired", 12], ["too long in queue", 12], ["spf", 13], ["dkim", 13], ["dmarc", 13], ["authenticat", 13], ["message ", 14], ["content", 14], ["attachment", 14], ["policy", 15], ["rate limit", 15], ["too many", 15], ["deferred", 15], ["temporarily ", 15], ["try again later", 15], ["throttl", 15], ["denied", 15], ["prohibit", 15], ["rejected", 15], ["refused", 15], ["not allowed", 15], ["banned", 15], ["suspicious activity", 15], ["syntax", 16], ["command not recognized", 16], ["unrecognized command", 16], ["protocol", 16], ["bad sequence", 16], ["too many connections", 17], ["mailbox busy", 18]];
var FALLBACK_GROUPS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
var SCANNER;
var SEEN;
function scan(p) {
  if (SCANNER === void 0) {
    SCANNER = literalScanner(LITERALS, 19);
    SEEN = SCANNER.seen;
  }
  if (!p.scanned) {
    SCANNER.scan(p.text);
    p.scanned = true;
  }
  return SCANNER.stamp;
}
function categoryByScan(p) {
  const stamp = scan(p);
  for (let i = 0; i < TEXT_CATEGORIES.length; i++) {
    const g = FALLBACK_GROUPS[i];
    if ((g < 0 || SEEN[g] === stamp) && TEXT_CATEGORIES[i][0].test(p.text)) return TEXT_CATEGORIES[i][1];
  }
  return "other";
}
var RULE_TEXT = [
  '[0,null,[5,1,1],0,null,{"category":"bad-mailbox","disposition":"hard","actions":[{"type":"bounce","category":"bad-mailbox"}],"rule":{"file":"sample.policy","line":7}}]',
  '[1,[421,422],null,1,[[17,"too many connections","i",0]],null,{"id":1,"loc":{"file":"sample.policy","line":18,"column":3},"category":null,"disposition":"throttle","actions":[{"type":"backoff","durationSeconds":900,"overrides":{"connections":[{"max":1,"scope":"destination/source"}]}}],"trigger":{"count":2,"withinSeconds":600}}]',
  '[2,[400,500],null,0,[[18,"mailbox busy"]],null,{"id":2,"loc":{"file":"sample.policy","line":24,"column":3},"category":null,"disposition":"soft","actions":[{"type":"retry","afterSeconds":120}],"trigger":null}]'
];
var RULE_ROWS = new Array(RULE_TEXT.length);
function ruleRow(id) {
  const row = JSON.parse(RULE_TEXT[id]);
  if (row[5] !== null) deepFreeze(row[5]);
  return RULE_ROWS[id] = row;
}
var REGEX = [];
var PHASE_BITS = /* @__PURE__ */ new Map([["connect", 1], ["ehlo", 2], ["mail", 4], ["rcpt", 8], ["data", 16]]);
function firstMatch(list, p, phaseBits) {
  let stamp = -1;
  for (let i = 0; i < list.length; i += 2) {
    const gate = list[i + 1];
    if (gate >= 0) {
      if (stamp < 0) stamp = scan(p);
      if (SEEN[gate] !== stamp) continue;
    }
    const row = RULE_ROWS[list[i]] ?? ruleRow(list[i]);
    if (row[1] !== null && !inRanges(row[1], p.code)) continue;
    if (row[2] !== null && !statusMatches(row[2], p.status)) continue;
    if (row[3] !== 0 && (row[3] & phaseBits) === 0) continue;
    if (row[4] !== null && !textMatches(row[4], p)) continue;
    return row;
  }
  return null;
}
function inRanges(ranges, code) {
  for (let i = 0; i < ranges.length; i += 2) if (code >= ranges[i] && code < ranges[i + 1]) return true;
  return false;
}
function statusMatches(statuses, status) {
  if (status === null) return false;
  for (let i = 0; i < statuses.length; i += 3) {
    if (statuses[i] === status[0] && (statuses[i + 1] < 0 || statuses[i + 1] === status[1]) && (statuses[i + 2] < 0 || statuses[i + 2] === status[2])) return true;
  }
  return false;
}
function textMatches(texts, p) {
  const stamp = scan(p);
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i];
    if (t[0] >= 0 && SEEN[t[0]] !== stamp) continue;
    if (t.length === 2 ? lower(p).includes(t[1]) : (REGEX[t[3]] ??= new RegExp(t[1], t[2])).test(p.text)) return true;
  }
  return false;
}
var CHAINS = [[[0, -1], [], [], [], [0, -1], [0, -1]], [[0, -1], [], [], [], [1, 17, 2, 18, 0, -1], [0, -1]]];
var CHAIN_OF_ROUTE = [0, 1, 1];
var P = { code: 0, status: null, text: "", scanned: false, lower: void 0 };
var STATUS = [0, 0, 0];
function lower(p) {
  return p.lower === void 0 ? p.lower = p.text.toLowerCase() : p.lower;
}
var outcomes = /* @__PURE__ */ new Map();
var OUTCOME_INDEX = { success: 1, "bad-mailbox": 2, "bad-domain": 3, "bad-connection": 4, "content-related": 5, "inactive-mailbox": 6, "invalid-sender": 7, "message-expired": 8, "no-answer-from-host": 9, "policy-related": 10, "protocol-errors": 11, "quota-issues": 12, "relaying-issues": 13, "routing-errors": 14, "spam-related": 15, "virus-related": 16, other: 17, hard: 1, soft: 2, throttle: 3, block: 4 };
function shared(id, r) {
  const key = ((id + 1) * 32 + OUTCOME_INDEX[r.category]) * 8 + (r.disposition === null ? 0 : OUTCOME_INDEX[r.disposition]);
  let hit = outcomes.get(key);
  if (hit === void 0) {
    hit = deepFreeze(r);
    outcomes.set(key, hit);
  }
  return hit;
}
function fallback(p) {
  return shared(-1, fallbackReaction(p, categoryByScan));
}
function ruleOutcome(id, p) {
  return shared(id, ruleReaction(RULE_ROWS[id][6], p, categoryByScan));
}
function react(routeId, reply, phase) {
  parseReplyInto(P, STATUS, reply);
  P.scanned = false;
  P.lower = void 0;
  const chain = CHAIN_OF_ROUTE[ROUTE_INDEX.get(routeId) ?? 0];
  const cls = P.code === 0 ? 0 : P.code / 100 | 0;
  const rule = firstMatch(CHAINS[chain][cls], P, phase === void 0 ? -1 : PHASE_BITS.get(phase) ?? 0);
  if (rule === null) return fallback(P);
  return rule[5] !== null ? rule[5] : ruleOutcome(rule[0], P);
}
var RETRY_TABLE = new Array(BASE.length);
function retryTable(i) {
  const b = BASE[i];
  const curve = CURVES[b.retry];
  return RETRY_TABLE[i] = curve === void 0 ? [] : Array.from({ length: 64 }, (_, n) => n === 0 ? null : curveDelay(curve, n, b.expireSeconds));
}
function retryDelay(routeId, attempt, reply, curve) {
  const i = ROUTE_INDEX.get(routeId) ?? 0;
  if (reply === void 0 && curve === void 0 && attempt >= 1 && attempt < 64 && Number.isInteger(attempt)) return (RETRY_TABLE[i] ?? retryTable(i))[attempt] ?? null;
  const reaction = reply === void 0 ? void 0 : react(ROUTE_IDS[i], reply);
  return retryDelayFor(reaction, CURVES[curve ?? BASE[i].retry], attempt, BASE[i].expireSeconds);
}
function warmupLimit(ramp, routeId, ageDays) {
  const w = WARMUPS[ramp];
  if (w === void 0) return Infinity;
  const plan = w.routes[ROUTE_IDS[ROUTE_INDEX.get(routeId) ?? 0]] ?? w.plan;
  return plan === null ? Infinity : planLimit(plan, ageDays);
}
var policy_artifact_default = Object.freeze({ meta: META, route, settings, react, retryDelay, warmupLimit });
export {
  policy_artifact_default as default
};
//# sourceMappingURL=policy-e8fb7b8cd56e32e4.mjs.map
