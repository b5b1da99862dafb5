/**
 * Raw wire clients for the fuzz suite: an SMTP client that sends exactly the bytes it is
 * given (no escaping, no checks) and reads replies, and a raw HTTP/1.1 request writer.
 * Every wait is bounded; a client never throws for what the server does — it reports it.
 */
import { connect, type Socket } from 'node:net';

/** One SMTP reply: its code (the last line's) and all its text. */
export interface Reply {
  code: number;
  text: string;
}

/** An SMTP connection that reads complete replies (multi-line aware) as they arrive. */
export class RawSmtp {
  private buffer = '';
  private readonly replies: Reply[] = [];
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      this.parse();
      this.waiter?.();
    });
    const gone = () => {
      this.closed = true;
      this.waiter?.();
    };
    socket.on('close', gone);
    socket.on('error', gone);
  }

  static open(port: number, localAddress = '127.0.0.1', ms = 5_000): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1', localAddress });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection to 127.0.0.1:${port} in ${ms} ms`));
      }, ms);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawSmtp(socket));
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  private parse(): void {
    let lines: string[] = [];
    for (;;) {
      const end = this.buffer.indexOf('\n');
      if (end === -1) return;
      const line = this.buffer.slice(0, end).replace(/\r$/, '');
      this.buffer = this.buffer.slice(end + 1);
      lines.push(line);
      if (!/^\d{3}-/.test(line)) {
        this.replies.push({ code: Number(line.slice(0, 3)) || 0, text: lines.join('\n') });
        lines = [];
      }
    }
  }

  /** The next reply, or undefined if none came within `ms` or the connection closed first. */
  async reply(ms = 3_000): Promise<Reply | undefined> {
    const end = Date.now() + ms;
    while (this.replies.length === 0 && !this.closed && Date.now() < end) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, end - Date.now()));
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.replies.shift();
  }

  /** Writes bytes as they are (nothing if the connection is gone). */
  write(data: string | Uint8Array): void {
    if (!this.closed && !this.socket.destroyed) this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /**
   * Sends one command line and waits for its reply. A line with CR or LF inside is several
   * commands to the server: their further replies are waited for briefly and dropped, so
   * the next command reads its own reply.
   */
  async command(line: string, ms?: number): Promise<Reply | undefined> {
    this.write(`${line}\r\n`);
    const first = await this.reply(ms);
    if (/[\r\n]/.test(line)) await this.drain();
    return first;
  }

  /** Drops every reply that arrives within `ms` (after raw bytes of unknown effect). */
  async drain(ms = 200): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    this.replies.length = 0;
  }

  quit(): Promise<void> {
    this.write('QUIT\r\n');
    return this.closedWithin(2_000);
  }
  /** Half-close: we send FIN and stop writing; the server decides what happens next. */
  halfClose(): Promise<void> {
    this.socket.end();
    return this.closedWithin(2_000);
  }
  /** A TCP reset (SO_LINGER 0), as a crashing client or a middlebox sends. */
  reset(): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy();
    this.closed = true;
  }

  private async closedWithin(ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!this.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    this.socket.destroy();
  }
}

/** How a raw HTTP request ends. */
export type HttpEnding = 'complete' | 'truncate-end' | 'truncate-reset';

/**
 * Sends `head` (request line and headers, without the blank line) and `body` as raw bytes
 * and returns the response's status code, or 0 when none came (closed, reset, timeout).
 * `declaredLength` may lie about the body; `ending` may cut it short.
 */
export function rawHttp(port: number, head: string, body: Uint8Array, options: { declaredLength?: number; ending?: HttpEnding; ms?: number } = {}): Promise<{ status: number; body: string }> {
  const ending = options.ending ?? 'complete';
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let answer = '';
    const timer = setTimeout(() => finish(), options.ms ?? 3_000);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1];
      resolve({ status: status ? Number(status) : 0, body: answer.slice(answer.indexOf('\r\n\r\n') + 4) });
    };
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.on('close', finish);
    socket.on('error', finish);
    socket.once('connect', () => {
      const length = options.declaredLength ?? body.length;
      socket.write(Buffer.from(`${head}\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`, 'latin1'));
      if (ending === 'complete') return void socket.write(body);
      socket.write(body.subarray(0, Math.floor(body.length / 2)));
      if (ending === 'truncate-end') socket.end();
      else socket.resetAndDestroy();
    });
  });
}
