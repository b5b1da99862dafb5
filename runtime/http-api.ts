/**
 * The runtime's HTTP API: status, metrics, operator pauses and message submission, plus
 * the routes of the parts around the runtime (the policy control API of hot reload).
 * It owns the HTTP server and its answer helpers; the runtime gives it what it answers with.
 */
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { takeControlHeaders } from './headers.ts';
import { checkSubmission, composeSubmission } from './http-submission.ts';

/** What an extra HTTP route gets besides the request: the runtime's answer helpers. */
export interface HttpHelpers {
  send(res: ServerResponse, code: number, body: unknown): void;
  /** The same check the pause and submission endpoints make (API key, else client network). */
  authorized(req: IncomingMessage): boolean;
  /** Reads a JSON body of at most `maxBytes`; answers 400/413 itself and resolves undefined then. */
  readJson(req: IncomingMessage, res: ServerResponse, maxBytes?: number): Promise<unknown>;
}
export type HttpRoutes = (req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers) => boolean;

/** Where the API listens and who may call it. */
export interface HttpApiOptions {
  host: string;
  port: number;
  /** With any, mutating calls need one (`Authorization: Bearer KEY` or `X-Api-Key`); without, only client networks may call. */
  apiKeys?: string[];
}

/** What the API answers with: the runtime's state and actions. */
export interface HttpApiRuntime {
  status(): unknown;
  registry: Registry;
  /** Pauses (`on`) or resumes one `queue:Q`, `source:S` or `tenant:T`; returns every pause now. */
  setPaused(key: string, on: boolean): string[];
  /** Spools a message; resolves with its id once durable. */
  acceptMessage(envelope: { from: string; to: string[] }, message: Buffer, values: { tenant?: string; pool?: string; campaign?: string }): Promise<string>;
  stopping(): boolean;
  fromClientNetwork(address: string | undefined): boolean;
  /** The largest submission body. */
  maxBodyBytes: number;
  /** Called for every request the API's own routes do not answer; returns true when it answered. */
  routes?: HttpRoutes | undefined;
}

/** Starts the HTTP API server; resolves once it listens. */
export async function startHttpApi(options: HttpApiOptions, runtime: HttpApiRuntime): Promise<HttpServer> {
  const send = (res: ServerResponse, code: number, body: unknown) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const apiKeys = new Set(options.apiKeys ?? []);
  /** With API keys configured, a request must carry one; without, only client networks may call. */
  const authorized = (req: IncomingMessage) => {
    if (apiKeys.size === 0) return runtime.fromClientNetwork(req.socket.remoteAddress);
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const key = bearer ?? (req.headers['x-api-key'] as string | undefined);
    return key !== undefined && apiKeys.has(key);
  };
  const readJson = (req: IncomingMessage, res: ServerResponse, maxBytes = 1024 * 1024): Promise<unknown> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= maxBytes) chunks.push(c);
      });
      req.on('end', () => {
        if (size > maxBytes) {
          send(res, 413, { error: `body larger than ${maxBytes} bytes` });
          return resolve(undefined);
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
        } catch {
          send(res, 400, { error: 'body is not JSON' });
          resolve(undefined);
        }
      });
    });
  const helpers: HttpHelpers = { send, authorized, readJson };
  const http: HttpServer = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/api/v1/status') return send(res, 200, runtime.status());
    if (req.method === 'GET' && req.url === '/metrics') {
      runtime.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': runtime.registry.contentType });
          res.end(text);
        },
        (e: Error) => send(res, 500, { error: e.message }),
      );
      return;
    }
    const control = /^\/api\/v1\/(pause|resume)$/.exec(req.url ?? '');
    if (control) {
      if (req.method !== 'POST') return send(res, 405, { error: 'use POST' });
      if (!authorized(req)) return send(res, 401, { error: 'missing or unknown API key' });
      void readJson(req, res).then((parsed) => {
        if (parsed === undefined) return;
        const body = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { queue?: unknown; source?: unknown; tenant?: unknown };
        const given = (['queue', 'source', 'tenant'] as const).filter((k) => typeof body[k] === 'string');
        if (given.length !== 1 || Object.keys(body).length !== 1) return send(res, 400, { error: 'give exactly one of `queue`, `source` or `tenant`' });
        const key = `${given[0]}:${body[given[0]!] as string}`;
        send(res, 200, { paused: runtime.setPaused(key, control[1] === 'pause') });
      });
      return;
    }
    if (req.url === '/api/v1/messages') {
      if (req.method !== 'POST') return send(res, 405, { error: 'use POST' });
      if (!authorized(req)) return send(res, 401, { error: 'missing or unknown API key' });
      if (runtime.stopping()) return send(res, 503, { error: 'shutting down; try again later' });
      void readJson(req, res, runtime.maxBodyBytes).then((body) => {
        if (body === undefined) return;
        const checked = checkSubmission(body);
        if (!checked.ok) return send(res, 400, { error: checked.error });
        const request = checked.request;
        composeSubmission(request)
          .then((raw) => {
            const taken = takeControlHeaders(raw);
            const values = { ...taken.values, ...(request.tenant ? { tenant: request.tenant } : {}), ...(request.pool ? { pool: request.pool } : {}), ...(request.campaign ? { campaign: request.campaign } : {}) };
            return runtime.acceptMessage({ from: request.from, to: request.to }, taken.message, values);
          })
          .then(
            (id) => send(res, 202, { id }),
            (e: Error) => send(res, 503, { error: `not accepted: ${e.message}` }),
          );
      });
      return;
    }
    if (runtime.routes?.(req, res, helpers)) return;
    send(res, 404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, options.host, () => resolve());
  });
  return http;
}
