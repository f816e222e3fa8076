// One client of the server: the NDJSON connection it speaks over (lines in, messages out, an end
// reported once) and the session state the server keeps for it (handshake, token, heartbeat).

import { encodeMessage, LineSplitter, MAX_LINE_BYTES } from '../../shared/ndjson';
import type { ServerMessage } from '../../shared/protocol';

export interface Sink {
  /** false: the data is held in memory until the peer reads (a stream's backpressure). */
  write(data: string, cb?: (err?: Error | null) => void): unknown;
  end?(cb?: () => void): unknown;
  /** 'drain': what was held has been handed to the OS. */
  once?(event: 'drain', listener: () => void): unknown;
  /** Drops what is held and closes, for a peer that reads nothing. */
  destroy?(): unknown;
}

/** How long a close waits for a peer to read what it was sent before the connection is dropped. */
const CLOSE_FLUSH_MS = 5_000;

export class Connection {
  /** No more sends. */
  private closed = false;
  /** onEnd has run. */
  private ended = false;
  /** Reading stopped until the peer reads our replies. */
  private held = false;
  readonly splitter: LineSplitter;

  constructor(
    private readonly input: NodeJS.ReadableStream,
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
    const taken = this.sink.write(encodeMessage(msg), (err) => {
      if (err) this.finish();
    });
    if (taken === false) this.holdInput();
  }

  /**
   * The peer sends requests faster than it reads the replies: stop reading its requests until they
   * drain. Otherwise every reply to a peer that never reads stays in this process's memory.
   */
  private holdInput(): void {
    if (this.held || !this.sink.once) return;
    this.held = true;
    this.input.pause();
    this.sink.once('drain', () => {
      this.held = false;
      if (!this.ended) this.input.resume();
    });
  }

  /** Resolves once everything sent so far has been handed to the OS. */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.sink.write('', () => resolve()));
  }

  /** Flushes, ends the output and reports the end (once); a peer that reads nothing is dropped after CLOSE_FLUSH_MS. */
  async close(): Promise<void> {
    const ended = (async () => {
      await this.flush();
      this.closed = true;
      await new Promise<void>((resolve) => (this.sink.end ? this.sink.end(() => resolve()) : resolve()));
      return true;
    })();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_FLUSH_MS)));
    const inTime = await Promise.race([ended, late]);
    clearTimeout(timer);
    this.closed = true;
    if (!inTime) this.sink.destroy?.();
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
