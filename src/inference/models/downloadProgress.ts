// A download's progress for the user: bytes over all files, speed over the last seconds and the
// time left, at most every progressIntervalMs.

import type { DownloadItem, DownloadProgress } from '../../shared/models';
import type { DownloadOptions } from './download';

export class ProgressTracker {
  private readonly totals: (number | undefined)[];
  private readonly bytes: number[];
  private readonly done: boolean[];
  private transferred = 0;
  private samples: { t: number; n: number }[] = [];
  private lastEmit = -Infinity;
  private current: string;
  private readonly interval: number;
  private readonly windowMs = 5000;

  constructor(
    private readonly items: DownloadItem[],
    private readonly opts: DownloadOptions,
  ) {
    this.totals = items.map((i) => i.size);
    this.bytes = items.map(() => 0);
    this.done = items.map(() => false);
    this.current = items[0]?.path ?? '';
    this.interval = opts.progressIntervalMs ?? 250;
  }

  setTotal(i: number, size: number | undefined): void {
    this.totals[i] = size;
  }

  setBytes(i: number, n: number): void {
    this.bytes[i] = n;
  }

  add(i: number, n: number, file: string): void {
    this.bytes[i] += n;
    this.transferred += n;
    this.current = file;
    this.emit(false);
  }

  fileDone(i: number): void {
    this.done[i] = true;
    if (this.totals[i] === undefined) this.totals[i] = this.bytes[i];
    this.emit(false);
  }

  emit(force: boolean): void {
    if (!this.opts.onProgress) return;
    const now = performance.now();
    const last = this.samples[this.samples.length - 1];
    if (!last || now - last.t >= 100) this.samples.push({ t: now, n: this.transferred });
    while (this.samples.length > 2 && now - this.samples[1].t >= this.windowMs) this.samples.shift();
    if (!force && now - this.lastEmit < this.interval) return;
    this.lastEmit = now;
    const bytes = this.bytes.reduce((a, b) => a + b, 0);
    const total = this.totals.reduce<number>((a, t, i) => a + Math.max(t ?? 0, this.bytes[i]), 0);
    const oldest = this.samples[0];
    const dt = (now - oldest.t) / 1000;
    const bytesPerSecond = dt >= 0.2 ? (this.transferred - oldest.n) / dt : 0;
    const p: DownloadProgress = {
      file: this.current,
      files: this.items.length,
      filesDone: this.done.filter(Boolean).length,
      bytes,
      total,
      bytesPerSecond: Math.round(bytesPerSecond),
    };
    const unknown = this.totals.some((t) => t === undefined);
    if (!unknown && bytesPerSecond > 0) p.etaSeconds = Math.max(0, Math.round((total - bytes) / bytesPerSecond));
    else if (!unknown && bytes >= total) p.etaSeconds = 0;
    try {
      this.opts.onProgress(p);
    } catch {
      // a failing listener must not break the download
    }
  }
}
