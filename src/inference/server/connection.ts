// One client of the server: the NDJSON connection it speaks over (lines in, messages out, an end
// reported once) and the session state the server keeps for it (handshake, token, heartbeat).

import { encodeMessage, LineSplitter, MAX_LINE_BYTES } from '../../shared/ndjson';
import type { ServerMessage } from '../../shared/protocol';

export interface Sink {
  write(data: string, cb?: (err?: Error | null) => void): unknown;
  end?(cb?: () => void): unknown;
}

export class Connection {
  /** No more sends. */
  private closed = false;
  /** onEnd has run. */
  private ended = false;
  readonly splitter: LineSplitter;

  constructor(
    input: NodeJS.ReadableStream,
    private readonly sink: Sink,
    onLine: (line: string) => void,
    onOverflow: (bytes: number) => void,
    private readonly onEnd: () => void,
    maxLine = MAX_LINE_BYTES,
  ) {
    this.splitter = new LineSplitter(onLine, onOverflow, maxLine);
    input.on('data', (chunk: Buffer | string) => {
      if (!this.ended) this.splitter.push(chunk);
    });
    input.on('end', () => {
      if (!this.ended) this.splitter.end();
      this.finish();
    });
    input.on('close', () => this.finish());
    input.on('error', () => this.finish());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(msg: ServerMessage): void {
    if (this.closed) return;
    this.sink.write(encodeMessage(msg), (err) => {
      if (err) this.finish();
    });
  }

  /** Resolves once everything sent so far has been handed to the OS. */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.sink.write('', () => resolve()));
  }

  /** Flushes, ends the output and reports the end (once). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    await new Promise<void>((resolve) => (this.sink.end ? this.sink.end(() => resolve()) : resolve()));
    this.finish();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.closed = true;
    this.onEnd();
  }
}

export type Transport = 'stdio' | 'fd' | 'tcp';

export class Session {
  hello = false;
  /** Sent a wrong token: waits out its back-off, then is closed; nothing it sends is read. */
  rejected = false;
  /** Asked for shutdown: takes no more requests. */
  closing = false;
  heartbeat?: NodeJS.Timeout;
  helloTimer?: NodeJS.Timeout;
  constructor(
    readonly conn: Connection,
    readonly transport: Transport,
    /** The peer's address (TCP): wrong tokens from it are answered ever more slowly. */
    readonly peer?: string,
  ) {}
  send(msg: ServerMessage): void {
    this.conn.send(msg);
  }
}
