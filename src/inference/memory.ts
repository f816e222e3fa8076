// Process memory readings: current and peak resident set size over a stretch of work.

import * as fs from 'node:fs';
import * as os from 'node:os';

/** Current RSS in bytes (from /proc on Linux: cheaper and includes file-backed mapped pages). */
export function currentRss(): number {
  if (process.platform === 'linux') {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
      if (m) return Number(m[1]) * 1024;
    } catch {
      // fall through
    }
  }
  return process.memoryUsage.rss();
}

/** Lifetime peak RSS of the process, bytes. */
export function lifetimePeakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/**
 * Samples RSS every `intervalMs` while work runs. Native work (a session run) blocks no timer
 * in Node, since onnxruntime runs off the main thread, so the samples see its peaks.
 */
export class RssSampler {
  private peak = currentRss();
  private readonly timer: NodeJS.Timeout;

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
    return this.peak;
  }
}

export function totalMemory(): number {
  return os.totalmem();
}

export function availableMemory(): number {
  if (process.platform === 'linux') {
    try {
      const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
      if (m) return Number(m[1]) * 1024;
    } catch {
      // fall through
    }
  }
  return os.freemem();
}

export function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
