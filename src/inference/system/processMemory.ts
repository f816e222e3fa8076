// Process memory readings: current and peak resident set size over a stretch of work.

import * as fs from 'node:fs';
import * as os from 'node:os';

/** A `<field>: N kB` line of a /proc file, in bytes; undefined off Linux or when it cannot be read. */
function procBytes(file: string, field: string): number | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(file, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Current RSS in bytes (from /proc on Linux: cheaper and includes file-backed mapped pages). */
export function currentRss(): number {
  return procBytes('/proc/self/status', 'VmRSS') ?? process.memoryUsage.rss();
}

let peakSeen = 0;

/** Lifetime peak RSS of the process, bytes (also across the resets RssSampler makes). */
export function lifetimePeakRss(): number {
  return Math.max(peakSeen, process.resourceUsage().maxRSS * 1024, currentRss());
}

function readHighWaterMark(): number | undefined {
  return procBytes('/proc/self/status', 'VmHWM');
}

/** Linux lets a process reset its RSS high-water mark (clear_refs "5"); elsewhere this is false. */
function resetHighWaterMark(): boolean {
  if (process.platform !== 'linux') return false;
  try {
    peakSeen = Math.max(peakSeen, readHighWaterMark() ?? 0);
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Peak RSS over a stretch of work. onnxruntime's `run` blocks the JS thread, so timers alone miss
 * the peaks inside a run: on Linux the kernel's high-water mark is reset at the start and read at
 * the end; elsewhere a timer samples between runs (a lower bound).
 */
export class RssSampler {
  private peak = currentRss();
  private readonly timer: NodeJS.Timeout;
  private readonly kernelPeak = resetHighWaterMark();

  constructor(intervalMs = 25) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number {
    const r = currentRss();
    if (r > this.peak) this.peak = r;
    return r;
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    if (this.kernelPeak) this.peak = Math.max(this.peak, readHighWaterMark() ?? 0);
    peakSeen = Math.max(peakSeen, this.peak);
    return this.peak;
  }
}

export function totalMemory(): number {
  return os.totalmem();
}

export function availableMemory(): number {
  return procBytes('/proc/meminfo', 'MemAvailable') ?? os.freemem();
}
