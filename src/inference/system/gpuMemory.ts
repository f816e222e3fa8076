// How much memory the GPU has, whichever vendor made it. The weight format `auto` picks, whether
// the VAE runs in tiles, and the model report's "fits your GPU" all plan on it; WebGPU itself
// tells nothing of memory. Sources, first that answers:
//   NVIDIA          nvidia-smi: name, total and free (what other programs hold is already out)
//   AMD, Linux      the amdgpu driver's sysfs counters: mem_info_vram_total / _used (free = the
//                   difference; an APU's small carve-out plus its GTT, system memory it maps)
//   Windows         the display adapters' registry entries (HardwareInformation.qwMemorySize, any
//                   vendor): total only; an integrated GPU's carve-out plus the half of RAM it may share
//   Apple silicon   unified memory: the share of RAM Metal lets the GPU keep resident (≈ 2/3)
// The card with the most memory is taken: WebGPU asks for the high-performance adapter, the
// discrete card where an integrated one sits beside it.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface GpuMemory {
  name?: string;
  /** Bytes. */
  total: number;
  /** Bytes free now, where the source says. */
  free?: number;
  source: 'nvidia-smi' | 'amdgpu' | 'windows registry' | 'unified memory';
}

/** Where to look (tests point these at fakes). */
export interface GpuProbe {
  nvidiaSmi?: string;
  /** The DRM class folder (Linux). */
  drmRoot?: string;
  /** The `reg` command (Windows). */
  reg?: string;
  platform?: NodeJS.Platform;
  arch?: string;
  totalRam?: number;
  timeoutMs?: number;
}

/** Metal's recommended working set on Apple silicon is about this share of RAM. */
const UNIFIED_SHARE = 2 / 3;
/** Where only the total is known: the share a job plans on (the desktop and other programs hold some). */
const TOTAL_SHARE = 0.9;

export async function gpuMemory(probe: GpuProbe = {}): Promise<GpuMemory | undefined> {
  const platform = probe.platform ?? process.platform;
  const nvidia = parseNvidiaSmi(await run(probe.nvidiaSmi ?? 'nvidia-smi', ['--query-gpu=name,memory.total,memory.free', '--format=csv,noheader,nounits'], probe.timeoutMs));
  if (nvidia) return nvidia;
  if (platform === 'linux') return amdgpuMemory(probe.drmRoot ?? '/sys/class/drm');
  if (platform === 'win32') {
    const key = 'HKLM\\SYSTEM\\CurrentControlSet\\Control\\Class\\{4d36e968-e325-11ce-bfc1-08002be10318}';
    const reg = probe.reg ?? 'reg';
    const [sizes, names] = await Promise.all([run(reg, ['query', key, '/s', '/v', 'HardwareInformation.qwMemorySize'], probe.timeoutMs), run(reg, ['query', key, '/s', '/v', 'DriverDesc'], probe.timeoutMs)]);
    const adapter = parseRegistryAdapters(sizes, names);
    // An integrated GPU's dedicated memory is a small carve-out; Windows lets it share up to half of RAM besides.
    return adapter && adapter.total < CARVE_OUT ? { ...adapter, total: adapter.total + Math.round((probe.totalRam ?? os.totalmem()) / 2) } : adapter;
  }
  if (platform === 'darwin' && (probe.arch ?? process.arch) === 'arm64') {
    return { name: 'Apple silicon (unified memory)', total: Math.round((probe.totalRam ?? os.totalmem()) * UNIFIED_SHARE), source: 'unified memory' };
  }
  return undefined;
}

/** What a job plans on: the user's figure (gpuMemory setting), else what the GPU says (usableGpuMemory). */
export async function plannedGpuMemory(setting: number | undefined, probe?: GpuProbe): Promise<number | undefined> {
  return setting ?? usableGpuMemory(await gpuMemory(probe));
}

/** The bytes a job may plan on: free where known, else most of the total; undefined without a GPU found. */
export function usableGpuMemory(g: GpuMemory | undefined): number | undefined {
  if (!g) return undefined;
  return g.free ?? Math.round(g.total * TOTAL_SHARE);
}

/** The first GPU of `nvidia-smi --query-gpu=name,memory.total[,memory.free] --format=csv,noheader,nounits` (MiB). */
export function parseNvidiaSmi(out: string | undefined): GpuMemory | undefined {
  const first = out?.split(/\r?\n/).find((l) => l.trim());
  if (!first) return undefined;
  const fields = first.split(',').map((f) => f.trim());
  const [total, free] = fields.slice(1).map(Number);
  if (!(fields.length >= 2 && total > 0)) return undefined;
  return { name: fields[0], total: Math.round(total * 2 ** 20), ...(Number.isFinite(free) ? { free: Math.round(free * 2 ** 20) } : {}), source: 'nvidia-smi' };
}

/** Below this much VRAM an amdgpu device is an APU's carve-out: its GPU also allocates from system memory (GTT). */
const CARVE_OUT = 2 * 2 ** 30;

/**
 * AMD GPUs on Linux: `<drm>/card<N>/device/mem_info_vram_total` and `_used` (bytes, written by
 * amdgpu). A discrete card (the most VRAM) before an APU; an APU counts its GTT too
 * (`mem_info_gtt_*`), where Vulkan puts what its small carve-out does not hold.
 */
export function amdgpuMemory(drmRoot: string): GpuMemory | undefined {
  let cards: string[];
  try {
    cards = fs.readdirSync(drmRoot).filter((c) => /^card\d+$/.test(c));
  } catch {
    return undefined;
  }
  const found = cards.flatMap((card) => {
    const device = path.join(drmRoot, card, 'device');
    const vram = readNumber(path.join(device, 'mem_info_vram_total'));
    if (!vram) return [];
    const vramUsed = readNumber(path.join(device, 'mem_info_vram_used'));
    const apu = vram < CARVE_OUT;
    const gtt = apu ? readNumber(path.join(device, 'mem_info_gtt_total')) ?? 0 : 0;
    const gttUsed = apu ? readNumber(path.join(device, 'mem_info_gtt_used')) ?? 0 : 0;
    let name: string | undefined;
    try {
      name = fs.readFileSync(path.join(device, 'product_name'), 'utf8').trim() || undefined;
    } catch {
      // older kernels and most consumer cards have no product_name
    }
    const total = vram + gtt;
    const used = vramUsed === undefined ? undefined : vramUsed + gttUsed;
    return [{ vram, apu, gpu: { name: name ?? `AMD GPU (${card})`, total, ...(used !== undefined && used <= total ? { free: total - used } : {}), source: 'amdgpu' as const } }];
  });
  found.sort((a, b) => Number(a.apu) - Number(b.apu) || b.vram - a.vram);
  return found[0]?.gpu;
}

/**
 * The adapter with the most memory from `reg query <display class> /s /v HardwareInformation.qwMemorySize`
 * (REG_QWORD, or REG_BINARY little-endian on older drivers), named from the same query for DriverDesc.
 */
export function parseRegistryAdapters(sizes: string | undefined, names: string | undefined): GpuMemory | undefined {
  const byKey = (out: string | undefined, value: string) => {
    const found = new Map<string, string>();
    let key = '';
    for (const line of (out ?? '').split(/\r?\n/)) {
      if (/^HKEY_/i.test(line)) key = line.trim();
      const m = new RegExp(`^\\s+${value.replace(/\./g, '\\.')}\\s+(REG_\\w+)\\s+(.*)$`).exec(line);
      if (m && key) found.set(key, `${m[1]} ${m[2].trim()}`);
    }
    return found;
  };
  const desc = byKey(names, 'DriverDesc');
  let best: GpuMemory | undefined;
  for (const [key, typed] of byKey(sizes, 'HardwareInformation.qwMemorySize')) {
    const [type, data] = [typed.slice(0, typed.indexOf(' ')), typed.slice(typed.indexOf(' ') + 1)];
    const bytes = type === 'REG_QWORD' && /^0x[0-9a-f]+$/i.test(data) ? Number(BigInt(data)) : type === 'REG_BINARY' && /^([0-9a-f]{2}){8}$/i.test(data) ? Number(Buffer.from(data, 'hex').readBigUInt64LE(0)) : NaN;
    if (!(bytes > 0) || (best && best.total >= bytes)) continue;
    const name = desc.get(key)?.replace(/^REG_SZ /, '');
    best = { ...(name ? { name } : {}), total: bytes, source: 'windows registry' };
  }
  return best;
}

function readNumber(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

function run(command: string, args: string[], timeoutMs = 3000): Promise<string | undefined> {
  return new Promise((resolve) => {
    try {
      execFile(command, args, { timeout: timeoutMs, windowsHide: true, encoding: 'utf8' }, (err, stdout) => resolve(err ? undefined : stdout));
    } catch {
      resolve(undefined);
    }
  });
}
