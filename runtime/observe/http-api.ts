/**
 * The runtime's HTTP API: status, metrics, operator pauses, source enable and disable and
 * message submission, the operator's dashboard (dashboard/routes.ts), plus the routes of
 * the parts around the runtime (the policy control API of hot reload).
 * It owns the HTTP server, its limits and its answer helpers; who may call what is
 * http-access.ts's decision, made before any body is read.
 *
 * INVARIANT: every request ends in an answer or a closed socket — a malformed request,
 * an aborted or slow body, a failing handler — and none of them stops the process.
 */
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { takeControlHeaders, checkSubmission, composeSubmission, SubmissionRefused, type ReceivedFrom } from '../intake/index.ts';
import { accessCheck, type Access, type AccessOptions } from './http-access.ts';
import { SpoolError } from '../spool/index.ts';
import type { SourceRequest } from '../decide/operator-sources.ts';
import { dashboard, type DashboardDeps } from './dashboard/routes.ts';

/** What an extra HTTP route gets besides the request: the runtime's answer helpers. */
export interface HttpHelpers {
  send(res: ServerResponse, code: number, body: unknown, headers?: Record<string, string>): void;
  /** The access check (http-access.ts) for a route of this kind; answers 401/403 itself and returns false then. */
  admit(req: IncomingMessage, res: ServerResponse, access: Access): boolean;
  /** Reads a JSON body (`Content-Type: application/json`) of at most `maxBytes`; answers 415/400/413 itself and resolves undefined then (or when the client went away). */
  readJson(req: IncomingMessage, res: ServerResponse, maxBytes?: number): Promise<unknown>;
}
export type HttpRoutes = (req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers) => boolean;

/** Where the API listens and who may call it (see http-access.ts). */
export interface HttpApiOptions extends AccessOptions {
  host: string;
  port: number;
}

/** What the API answers with: the runtime's state and actions. */
export interface HttpApiRuntime {
  status(): unknown;
  registry: Registry;
  /** Pauses (`on`) or resumes one `queue:Q`, `source:S` or `tenant:T`; returns every pause now. */
  setPaused(key: string, on: boolean): string[];
  /** An operator's enable or disable of a source, on one queue or (no `route`) everywhere; returns what the API answers. */
  setSource(request: SourceRequest): { status: number; body: unknown };
  /** Spools a message; resolves with its id once durable. */
  acceptMessage(envelope: { from: string; to: string[] }, message: Buffer, values: { tenant?: string; pool?: string; campaign?: string }, from?: ReceivedFrom): Promise<string>;
  stopping(): boolean;
  /** The largest submission body. */
  maxBodyBytes: number;
  /** Called for every request the API's own routes do not answer; returns true when it answered. */
  routes?: HttpRoutes | undefined;
  /** What the dashboard reads besides the status: kept policy versions, the message search, logins. */
  dashboard?: Omit<DashboardDeps, 'status'> | undefined;
}

/** Bounds on what one client may make the server hold or wait for. */
const LIMITS = { maxHeaderSize: 16 * 1024, headersTimeoutMs: 10_000, requestTimeoutMs: 120_000, keepAliveTimeoutMs: 5_000, maxRequestsPerSocket: 1000 };
/** A pause names a queue, source or tenant: printable, and short. */
const PAUSE_NAME = /^[\x21-\x7e]{1,256}$/;
/** The largest body of a source enable or disable: `{"source": …, "route": …}`. */
const SOURCE_BODY_BYTES = 4096;

const send = (res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}) => {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(code, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

const isJson = (type: string | undefined) => /^application\/json\s*(?:;|$)/i.test(type ?? '');

/**
 * Reads a JSON body of at most `maxBytes`. A declared or actual size over it answers 413
 * and closes the connection without keeping the rest; a client that goes away resolves
 * undefined with no answer.
 */
function readJson(req: IncomingMessage, res: ServerResponse, maxBytes = 1024 * 1024): Promise<unknown> {
  return new Promise((resolve) => {
    const refuse = (code: number, error: string) => {
      send(res, code, { error }, { connection: 'close' });
      req.resume();
      resolve(undefined);
    };
    if (!isJson(req.headers['content-type'])) return refuse(415, 'send the body as `Content-Type: application/json`');
    if (Number(req.headers['content-length'] ?? 0) > maxBytes) return refuse(413, `body larger than ${maxBytes} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= maxBytes) return void chunks.push(c);
      req.off('data', onData);
      chunks.length = 0;
      refuse(413, `body larger than ${maxBytes} bytes`);
    };
    req.on('data', onData);
    req.once('error', () => resolve(undefined));
    req.once('close', () => {
      if (!req.complete) resolve(undefined);
    });
    req.once('end', () => {
      if (size > maxBytes) return;
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch {
        send(res, 400, { error: 'body is not JSON' });
        resolve(undefined);
      }
    });
  });
}

/** `{ "source": NAME, "route"?: QUEUE }`, each 1 to 256 printable characters, nothing else; or what is wrong with it. */
function checkSourceRequest(body: unknown): { source: string; route?: string } | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'send a JSON object: `{"source": NAME, "route": QUEUE}` (route optional)';
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).find((k) => k !== 'source' && k !== 'route');
  if (unknown !== undefined) return `unknown field \`${unknown.slice(0, 64)}\`: give \`source\` and, optionally, \`route\``;
  for (const k of ['source', 'route'] as const) {
    const v = fields[k];
    if (v === undefined && k === 'route') continue;
    if (typeof v !== 'string' || !PAUSE_NAME.test(v)) return `\`${k}\` must be 1 to 256 printable characters without spaces`;
  }
  return { source: fields.source as string, ...(typeof fields.route === 'string' ? { route: fields.route } : {}) };
}

/** Answers a request the parser could not read (bad syntax, headers too large, too slow), then closes. */
function onClientError(err: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable || (err.code === 'ECONNRESET' && socket.bytesWritten > 0)) return void socket.destroy();
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** Starts the HTTP API server; resolves once it listens. */
export async function startHttpApi(options: HttpApiOptions, runtime: HttpApiRuntime): Promise<HttpServer> {
  const check = accessCheck(options);
  const board = dashboard({ ...runtime.dashboard, status: () => runtime.status() });
  const admit = (req: IncomingMessage, res: ServerResponse, access: Access) => {
    const verdict = check(req, access);
    // Refused for want of a key (a cross-origin request is 403 before that): a dashboard login's session may admit it.
    if (!verdict.ok && !(verdict.status === 401 && board.admitsSession(req, access))) return send(res, verdict.status, { error: verdict.error }), false;
    return true;
  };
  const helpers: HttpHelpers = { send, admit, readJson };
  const routes = (req: IncomingMessage, res: ServerResponse) => {
    const url = (req.url ?? '').split('?')[0];
    if (url === '/api/v1/status') return get(req, res, 'read', () => send(res, 200, runtime.status()));
    if (url === '/metrics') return get(req, res, 'metrics', () => metrics(res));
    const control = /^\/api\/v1\/(pause|resume)$/.exec(url ?? '');
    if (control) return post(req, res, (body) => pause(res, body, control[1] === 'pause'));
    const sources = /^\/api\/v1\/sources\/(enable|disable)$/.exec(url ?? '');
    if (sources) return post(req, res, (body) => source(res, body, sources[1] === 'enable'), SOURCE_BODY_BYTES);
    if (url === '/api/v1/messages') {
      if (runtime.stopping() && req.method === 'POST') return send(res, 503, { error: 'shutting down; try again later' }, { 'retry-after': '30' });
      return post(req, res, (body) => submit(req, res, body), runtime.maxBodyBytes);
    }
    if (board.routes(req, res, helpers)) return;
    if (runtime.routes?.(req, res, helpers)) return;
    send(res, 404, { error: 'not found' });
  };
  const get = (req: IncomingMessage, res: ServerResponse, access: Access, answer: () => void) => {
    if (req.method !== 'GET') return send(res, 405, { error: 'use GET' });
    if (admit(req, res, access)) answer();
  };
  const post = (req: IncomingMessage, res: ServerResponse, answer: (body: unknown) => void, maxBytes?: number) => {
    if (req.method !== 'POST') return send(res, 405, { error: 'use POST' });
    if (!admit(req, res, 'write')) return;
    void readJson(req, res, maxBytes).then((body) => {
      if (body !== undefined) answer(body);
    });
  };
  const metrics = (res: ServerResponse) =>
    runtime.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': runtime.registry.contentType });
        res.end(text);
      },
      (e: Error) => send(res, 500, { error: e.message }),
    );
  const pause = (res: ServerResponse, parsed: unknown, on: boolean) => {
    const body = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { queue?: unknown; source?: unknown; tenant?: unknown };
    const given = (['queue', 'source', 'tenant'] as const).filter((k) => typeof body[k] === 'string');
    if (given.length !== 1 || Object.keys(body).length !== 1) return send(res, 400, { error: 'give exactly one of `queue`, `source` or `tenant`' });
    const name = body[given[0]!] as string;
    if (!PAUSE_NAME.test(name)) return send(res, 400, { error: `\`${given[0]}\` must be 1 to 256 printable characters without spaces` });
    send(res, 200, { paused: runtime.setPaused(`${given[0]}:${name}`, on) });
  };
  const source = (res: ServerResponse, parsed: unknown, enable: boolean) => {
    const checked = checkSourceRequest(parsed);
    if (typeof checked === 'string') return send(res, 400, { error: checked });
    const answer = runtime.setSource({ enable, ...checked });
    send(res, answer.status, answer.body);
  };
  const submit = (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    const checked = checkSubmission(body);
    if (!checked.ok) return send(res, 400, { error: checked.error });
    const request = checked.request;
    composeSubmission(request)
      .then((raw) => {
        const taken = takeControlHeaders(raw);
        const values = { ...taken.values, ...(request.tenant ? { tenant: request.tenant } : {}), ...(request.pool ? { pool: request.pool } : {}), ...(request.campaign ? { campaign: request.campaign } : {}) };
        const address = req.socket.remoteAddress;
        return runtime.acceptMessage({ from: request.from, to: request.to }, taken.message, values, { protocol: 'HTTP', ...(address ? { address } : {}) });
      })
      .then(
        (id) => send(res, 202, { id }),
        (e: Error) => (e instanceof SubmissionRefused ? send(res, 422, { error: e.message }) : send(res, 503, { error: `not accepted: ${e.message}` }, { 'retry-after': e instanceof SpoolError && e.code === 'no-space' ? '300' : '30' })),
      );
  };

  const http: HttpServer = createServer({ maxHeaderSize: LIMITS.maxHeaderSize }, (req, res) => {
    try {
      routes(req, res);
    } catch (e) {
      send(res, 500, { error: `internal error: ${(e as Error).message}` });
    }
  });
  http.headersTimeout = LIMITS.headersTimeoutMs;
  http.requestTimeout = LIMITS.requestTimeoutMs;
  http.keepAliveTimeout = LIMITS.keepAliveTimeoutMs;
  http.maxRequestsPerSocket = LIMITS.maxRequestsPerSocket;
  http.on('clientError', onClientError);
  http.once('close', () => board.close());
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, options.host, () => resolve());
  });
  return http;
}
