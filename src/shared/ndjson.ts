// NDJSON framing: one JSON message a line, over a pipe or a TCP socket. Both ends split the same
// way and refuse the same overlong lines; what a line may hold is protocol.ts's business.

import { errorText } from './api';
import type { Request, ServerMessage } from './protocol';

/** Longest line either side accepts (a done event with the image inline is the largest message). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

const utf8 = new TextEncoder();

/** One message as a line. JSON.stringify escapes control characters, so the line holds no raw newline. */
export function encodeMessage(msg: Request | ServerMessage): string {
  return JSON.stringify(msg) + '\n';
}

/**
 * Splits a byte (or text) stream into lines. Chunks may end anywhere, also inside a multi-byte
 * character: splitting happens on bytes (0x0A never occurs inside a UTF-8 sequence) and each whole
 * line is decoded once. A line longer than `maxLineBytes` is dropped up to its newline and
 * reported through `onOverflow`, so a peer cannot make the other side buffer without bound.
 * Trailing `\r` is removed; blank lines are skipped.
 */
export class LineSplitter {
  private parts: Uint8Array[] = [];
  private size = 0;
  private discarding = false;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: (bytes: number) => void = () => undefined,
    /** May be changed between chunks (e.g. raised once a TCP peer has authenticated). */
    public maxLineBytes = MAX_LINE_BYTES,
  ) {}

  push(chunk: Uint8Array | string): void {
    const buf = typeof chunk === 'string' ? utf8.encode(chunk) : chunk;
    let start = 0;
    while (start <= buf.length) {
      const nl = buf.indexOf(10, start);
      const end = nl < 0 ? buf.length : nl;
      this.append(buf.subarray(start, end), nl < 0);
      if (nl < 0) return;
      this.finishLine();
      start = nl + 1;
    }
  }

  /** End of stream: a last line without a newline still counts. */
  end(): void {
    if (this.size > 0 || this.discarding) this.finishLine();
  }

  private append(piece: Uint8Array, partial: boolean): void {
    if (this.discarding || piece.length === 0) return;
    if (this.size + piece.length > this.maxLineBytes) {
      this.discarding = true;
      const dropped = this.size + piece.length;
      this.parts = [];
      this.size = 0;
      this.onOverflow(dropped);
      return;
    }
    // The stream may reuse its buffer after we return: keep a copy of an unfinished piece.
    this.parts.push(partial ? piece.slice() : piece);
    this.size += piece.length;
  }

  private finishLine(): void {
    if (this.discarding) {
      this.discarding = false;
      return;
    }
    const bytes = this.parts.length === 1 ? this.parts[0] : concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    let line = this.decoder.decode(bytes);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() !== '') this.onLine(line);
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** JSON.parse that reports instead of throwing. */
export function parseJsonLine(line: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(line) };
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
}
