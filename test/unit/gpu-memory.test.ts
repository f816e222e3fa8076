// GPU memory whichever vendor (system/gpuMemory.ts): what weights `auto`, the VAE's tiles and the
// model report plan on when the user has not set gpuMemory. Fakes stand in for nvidia-smi, the
// amdgpu sysfs files and `reg`, in the formats those write.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { amdgpuMemory, gpuMemory, parseNvidiaSmi, parseRegistryAdapters, usableGpuMemory } from '../../src/inference/system/gpuMemory';
import { machineInfo } from '../../src/inference/models/check';
import { tempDir } from '../helpers/writeSafetensors';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

const REG_SIZES = `
HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Class\\{4d36e968-e325-11ce-bfc1-08002be10318}\\0000
    HardwareInformation.qwMemorySize    REG_BINARY    0000000800000000

HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Class\\{4d36e968-e325-11ce-bfc1-08002be10318}\\0001
    HardwareInformation.qwMemorySize    REG_QWORD    0x400000000

End of search: 2 match(es) found.
`;
const REG_NAMES = `
HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Class\\{4d36e968-e325-11ce-bfc1-08002be10318}\\0000
    DriverDesc    REG_SZ    Intel(R) UHD Graphics 770

HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Class\\{4d36e968-e325-11ce-bfc1-08002be10318}\\0001
    DriverDesc    REG_SZ    AMD Radeon RX 7800 XT

End of search: 2 match(es) found.
`;

describe('GPU memory, whichever vendor (system/gpuMemory.ts)', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => (t = tempDir('mf-gpumem-')));
  afterEach(() => t.cleanup());

  const script = (name: string, body: string) => {
    const file = path.join(t.dir, name);
    fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return file;
  };
  /** A DRM class folder: an APU's small carve-out, a discrete AMD card, a connector entry. */
  const drm = () => {
    const root = path.join(t.dir, 'drm');
    const card = (name: string, files: Record<string, string>) => {
      fs.mkdirSync(path.join(root, name, 'device'), { recursive: true });
      for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(root, name, 'device', f), `${v}\n`);
    };
    card('card0', { mem_info_vram_total: String(512 * MiB), mem_info_vram_used: String(100 * MiB) });
    card('card1', { mem_info_vram_total: String(16 * GiB), mem_info_vram_used: String(2 * GiB), product_name: 'AMD Radeon RX 7800 XT' });
    card('card1-DP-1', { mem_info_vram_total: String(64 * GiB) });
    return root;
  };

  it('nvidia-smi: the first GPU, total and free (MiB); a line without numbers is no GPU', () => {
    assert.deepEqual(parseNvidiaSmi('NVIDIA H100 80GB HBM3, 81559, 80000\nNVIDIA A100, 40960, 40000\n'), { name: 'NVIDIA H100 80GB HBM3', total: 81559 * MiB, free: 80000 * MiB, source: 'nvidia-smi' });
    assert.deepEqual(parseNvidiaSmi('NVIDIA GeForce RTX 3060, 12288'), { name: 'NVIDIA GeForce RTX 3060', total: 12 * GiB, source: 'nvidia-smi' });
    assert.equal(parseNvidiaSmi('No devices were found'), undefined);
    assert.equal(parseNvidiaSmi(''), undefined);
  });

  it('amdgpu (Linux): the discrete card with the most VRAM, free = total − used, named from product_name; connectors ignored', () => {
    assert.deepEqual(amdgpuMemory(drm()), { name: 'AMD Radeon RX 7800 XT', total: 16 * GiB, free: 14 * GiB, source: 'amdgpu' });
    assert.equal(amdgpuMemory(path.join(t.dir, 'no-drm')), undefined);
  });

  it('amdgpu: an APU alone counts its GTT with its small VRAM carve-out (Vulkan allocates from both)', () => {
    const root = path.join(t.dir, 'apu');
    fs.mkdirSync(path.join(root, 'card0', 'device'), { recursive: true });
    const files = { mem_info_vram_total: 512 * MiB, mem_info_vram_used: 100 * MiB, mem_info_gtt_total: 15 * GiB, mem_info_gtt_used: 1 * GiB };
    for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(root, 'card0', 'device', f), `${v}\n`);
    assert.deepEqual(amdgpuMemory(root), { name: 'AMD GPU (card0)', total: 512 * MiB + 15 * GiB, free: 412 * MiB + 14 * GiB, source: 'amdgpu' });
  });

  it('Windows registry: the adapter with the most memory (REG_QWORD or 8-byte REG_BINARY), named by DriverDesc; total only', () => {
    assert.deepEqual(parseRegistryAdapters(REG_SIZES, REG_NAMES), { name: 'AMD Radeon RX 7800 XT', total: 16 * GiB, source: 'windows registry' });
    assert.deepEqual(parseRegistryAdapters(REG_SIZES.replace('0x400000000', '0x1'), undefined), { total: 128 * MiB, source: 'windows registry' }, 'the REG_BINARY one (00 00 00 08 …: 128 MiB, little-endian)');
    assert.equal(parseRegistryAdapters('ERROR: The system was unable to find the specified registry key or value.', REG_NAMES), undefined);
  });

  it('the sources in order: nvidia-smi, else the platform\'s own; Apple silicon plans on ⅔ of RAM; nothing found is undefined', async () => {
    const absent = path.join(t.dir, 'absent');
    assert.equal((await gpuMemory({ nvidiaSmi: script('nvidia-smi', 'echo "NVIDIA L4, 23034, 22000"'), drmRoot: drm() }))?.source, 'nvidia-smi');
    assert.deepEqual(await gpuMemory({ nvidiaSmi: absent, platform: 'linux', drmRoot: drm() }), { name: 'AMD Radeon RX 7800 XT', total: 16 * GiB, free: 14 * GiB, source: 'amdgpu' });
    const reg = script('reg', `case "$*" in *qwMemorySize*) cat <<'X'\n${REG_SIZES}\nX\n;; *) cat <<'X'\n${REG_NAMES}\nX\n;; esac`);
    assert.deepEqual(await gpuMemory({ nvidiaSmi: absent, platform: 'win32', reg }), { name: 'AMD Radeon RX 7800 XT', total: 16 * GiB, source: 'windows registry' });
    // Only the integrated adapter (128 MiB dedicated): it shares up to half of RAM besides.
    const regIntegrated = script('reg-igpu', `case "$*" in *qwMemorySize*) cat <<'X'\n${REG_SIZES.replace(/\n[^\n]*\\0001\n[^\n]*\n/, '\n')}\nX\n;; *) cat <<'X'\n${REG_NAMES}\nX\n;; esac`);
    assert.deepEqual(await gpuMemory({ nvidiaSmi: absent, platform: 'win32', reg: regIntegrated, totalRam: 32 * GiB }), { name: 'Intel(R) UHD Graphics 770', total: 128 * MiB + 16 * GiB, source: 'windows registry' });
    assert.deepEqual(await gpuMemory({ nvidiaSmi: absent, platform: 'darwin', arch: 'arm64', totalRam: 24 * GiB }), { name: 'Apple silicon (unified memory)', total: 16 * GiB, source: 'unified memory' });
    assert.equal(await gpuMemory({ nvidiaSmi: absent, platform: 'darwin', arch: 'x64' }), undefined);
    assert.equal(await gpuMemory({ nvidiaSmi: absent, platform: 'linux', drmRoot: absent }), undefined);
  });

  it('what a job plans on: the free figure where there is one, else 90 % of the total', () => {
    assert.equal(usableGpuMemory({ total: 16 * GiB, free: 14 * GiB, source: 'amdgpu' }), 14 * GiB);
    assert.equal(usableGpuMemory({ total: 10 * GiB, source: 'windows registry' }), 9 * GiB);
    assert.equal(usableGpuMemory(undefined), undefined);
  });

  it('the model report names an AMD card found through sysfs (no nvidia-smi)', async () => {
    const m = await machineInfo({ nvidiaSmi: path.join(t.dir, 'absent'), gpu: { platform: 'linux', drmRoot: drm() } });
    assert.equal(m.gpuName, 'AMD Radeon RX 7800 XT');
    assert.equal(m.gpuMemory, 16 * GiB);
  });
});
