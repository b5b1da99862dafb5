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
function fallbackCategory(reply) {
  const cls = reply.code ? Math.floor(reply.code / 100) : 0;
  if (cls === 2 || cls === 3) return "success";
  if (reply.status) {
    if (reply.status[1] === 7) {
      const byText = categoryByText(reply.text);
      return byText === "spam-related" || byText === "relaying-issues" || byText === "virus-related" ? byText : "policy-related";
    }
    const byStatus = categoryByStatus(reply.status[1], reply.status[2]);
    if (byStatus !== "other") return byStatus;
  }
  return categoryByText(reply.text);
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
  [/spam|blocklist|blacklist|block list|black list|spamhaus|junk|\bRBL\b|reputation/i, "spam-related"],
  [/relay(?:ing)? (?:access )?(?:denied|not permitted|not allowed)|not permitted to relay|unable to relay/i, "relaying-issues"],
  [/quota|mailbox (?:is )?full|insufficient (?:storage|space)|over ?quota/i, "quota-issues"],
  [/(?:user|mailbox|recipient|address)\b[^\n]*\b(?:unknown|not found|does not exist|doesn't exist|no such|invalid|unavailable)|no such (?:user|mailbox|recipient)|unknown (?:user|recipient|mailbox)/i, "bad-mailbox"],
  [/(?:domain|host)\b[^\n]*\b(?:not found|does not exist|unknown)|no mx|unrouteable|unroutable/i, "bad-domain"],
  [/inactive|disabled|suspended|deactivated/i, "inactive-mailbox"],
  [/timed? ?out|connection (?:refused|reset|dropped|closed)|lost connection/i, "bad-connection"],
  [/expired|too long in queue/i, "message-expired"],
  [/sender (?:address )?(?:rejected|invalid|denied)|invalid sender|spf|dkim|dmarc|authenticat/i, "policy-related"],
  [/message (?:size|too (?:big|large))|content|attachment/i, "content-related"],
  [/policy|rate limit|too many|deferred|temporarily (?:rejected|deferred)|try again later|throttl/i, "policy-related"],
  [/syntax|command not recognized|unrecognized command|protocol/i, "protocol-errors"]
];
function categoryByText(text) {
  for (const [pattern, category] of TEXT_CATEGORIES) if (pattern.test(text)) return category;
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
function ruleReaction(rule, reply) {
  const reaction = {
    category: rule.category ?? fallbackCategory(reply),
    disposition: rule.disposition ?? fallbackDisposition(reply),
    actions: rule.actions,
    rule: { file: rule.loc.file, line: rule.loc.line }
  };
  if (rule.trigger) reaction.trigger = { count: rule.trigger.count, withinSeconds: rule.trigger.withinSeconds, id: rule.id };
  return reaction;
}
function fallbackReaction(reply) {
  return { category: fallbackCategory(reply), disposition: fallbackDisposition(reply), actions: [] };
}
function retryDelayFor(reaction, curve, attempt, expireSeconds) {
  if (reaction) {
    if (reaction.category === "success" || reaction.disposition === "hard") return null;
    for (const a of reaction.actions) if (a.type === "bounce") return null;
    for (const a of reaction.actions) {
      if (a.type === "retry" && a.afterSeconds !== null) {
        if (!Number.isInteger(attempt) || attempt < 1 || curve && curve.attempts !== null && attempt >= curve.attempts) return null;
        return a.afterSeconds * 1e3;
      }
    }
  }
  if (!curve) return null;
  return curveDelay(curve, attempt, expireSeconds);
}

// compiler/policy-artifact.js
var META = Object.freeze({ "name": "test", "version": "1.2.0", "hash": "e8fb7b8cd56e32e4868bb3f719619a57c9a5aafc1d78e281c8ce95f80e2fa180", "abi": 1 });
var ROUTE_IDS = ["default", "provider:acme", "domain:special.acme-mail.example"];
var ROUTE_INDEX = new Map(ROUTE_IDS.map((id, i) => [id, i]));
function routeTable(groups) {
  const map = /* @__PURE__ */ new Map();
  for (const [i, ...names] of groups) for (const name of names) map.set(name, ROUTE_IDS[i]);
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
function cached(cache, exact, suffix, name) {
  let hit = cache.get(name);
  if (hit === void 0) {
    hit = lookup(exact, suffix, normalizeDomain(name)) ?? NONE;
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(name, hit);
  }
  return hit;
}
function route(domain, mxHosts) {
  const byDomain = cached(domainCache, EXACT, SUFFIX, domain);
  if (byDomain !== NONE) return byDomain;
  if (mxHosts && mxHosts.length > 0) {
    let chosen;
    for (let i = 0; i < mxHosts.length; i++) {
      const id = cached(hostCache, MX_EXACT, MX_SUFFIX, mxHosts[i]);
      if (id === NONE || chosen !== void 0 && id !== chosen) return "default";
      chosen = id;
    }
    return chosen;
  }
  return "default";
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
var RULES = [null, { "id": 1, "loc": { "file": "sample.policy", "line": 18, "column": 3 }, "category": null, "disposition": "throttle", "actions": [{ "type": "backoff", "durationSeconds": 900, "overrides": { "connections": [{ "max": 1, "scope": "destination/source" }] } }], "trigger": { "count": 2, "withinSeconds": 600 } }, { "id": 2, "loc": { "file": "sample.policy", "line": 24, "column": 3 }, "category": null, "disposition": "soft", "actions": [{ "type": "retry", "afterSeconds": 120 }], "trigger": null }];
function test0(p, phase) {
  return p.status !== null && (p.status[0] === 5 && p.status[1] === 1 && p.status[2] === 1);
}
var REACTION0 = deepFreeze({ "category": "bad-mailbox", "disposition": "hard", "actions": [{ "type": "bounce", "category": "bad-mailbox" }], "rule": { "file": "sample.policy", "line": 7 } });
function react0() {
  return REACTION0;
}
var RE1_0 = new RegExp("too many connections", "i");
function test1(p, phase) {
  return p.code === 421 && (phase === void 0 || phase === "connect") && (lower(p).includes("too many connections") && RE1_0.test(p.text));
}
function react1(p) {
  return ruleOutcome(1, p);
}
function test2(p, phase) {
  return p.code >= 400 && p.code < 500 && lower(p).includes("mailbox busy");
}
function react2(p) {
  return ruleOutcome(2, p);
}
function chain0(p, phase) {
  switch (p.code === 0 ? 0 : p.code / 100 | 0) {
    case 4:
      if (test0(p, phase)) return react0(p);
      break;
    case 5:
      if (test0(p, phase)) return react0(p);
      break;
    case 0:
      if (test0(p, phase)) return react0(p);
      break;
  }
  return fallback(p);
}
function chain1(p, phase) {
  switch (p.code === 0 ? 0 : p.code / 100 | 0) {
    case 4:
      if (test1(p, phase)) return react1(p);
      if (test2(p, phase)) return react2(p);
      if (test0(p, phase)) return react0(p);
      break;
    case 5:
      if (test0(p, phase)) return react0(p);
      break;
    case 0:
      if (test0(p, phase)) return react0(p);
      break;
  }
  return fallback(p);
}
var CHAINS = [chain0, chain1];
var CHAIN_OF_ROUTE = [0, 1, 1];
var P = { code: 0, status: null, text: "", lower: void 0 };
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
  return shared(-1, fallbackReaction(p));
}
function ruleOutcome(id, p) {
  return shared(id, ruleReaction(RULES[id], p));
}
function react(routeId, reply, phase) {
  parseReplyInto(P, STATUS, reply);
  P.lower = void 0;
  return CHAINS[CHAIN_OF_ROUTE[ROUTE_INDEX.get(routeId) ?? 0]](P, phase);
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
