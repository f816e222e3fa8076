// The extension's side of models: check report → Markdown and summary, download progress text,
// found models → tree nodes and settings, registry → choices, settings → DownloadRequest, failure
// codes → actions, the token kept out of logs; and ServerClient's models/check/download against
// a scripted server (progress, done, failure codes, cancel, a crash mid-download).

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DownloadProgress, FoundModel, MachineInfo, ModelCheckReport, PartCheck, Registry } from '../../src/shared/models';
import type { DownloadEvent } from '../../src/shared/protocol';
import {
  actionLabel,
  actionsFor,
  defaultDownloadFolder,
  describeRequest,
  downloadRequest,
  failureMessage,
  hubHost,
  modelChoices,
  parseRegistry,
  redact,
  usesMirror,
} from '../../src/extension/modelDownload';
import { demoMarkdown, formatDuration, mdCell, progressText, reportMarkdown, reportSummary, Translate } from '../../src/extension/modelReport';
import { isInUse, machineDescription, modelNode, partNode, sameSpec, settingsUpdates, sortModels, unsettableParts } from '../../src/extension/modelTree';
import bundledRegistry from '../../models/registry.json';
import { ServerClient } from '../../src/extension/serverClient';
import { DownloadFailedError } from '../../src/extension/serverErrors';
import { DEFAULTS, Settings, validateSettings } from '../../src/extension/settings';

const t: Translate = (m, ...a) => m.replace(/\{(\d+)\}/g, (_, i: string) => String(a[Number(i)]));
const GiB = 2 ** 30;

const machine: MachineInfo = { platform: 'linux', arch: 'x64', cpus: 16, totalMemory: 32 * GiB, freeMemory: 20 * GiB };

function part(role: PartCheck['role'], status: PartCheck['status'], extra: Partial<PartCheck> = {}): PartCheck {
  return { role, status, ...(status === 'missing' ? {} : { path: `/m/FLUX.1-dev/${role}`, bytes: GiB, dtypes: { BF16: 10, F32: 2 }, layout: 'bfl-dit', params: 12e9 }), ...extra };
}

function found(over: Partial<FoundModel> = {}): FoundModel {
  const parts = over.parts ?? (['dit', 'clip', 't5', 'vae', 'tokenizer', 'tokenizer2'] as const).map((r) => part(r, 'present'));
  return {
    id: 'flux1-dev',
    name: 'FLUX.1-dev',
    where: 'huggingface-cache',
    root: '/m/FLUX.1-dev',
    parts,
    complete: parts.every((p) => p.status === 'present'),
    spec: { dir: '/m/FLUX.1-dev' },
    ...over,
  };
}

function report(model: FoundModel, gpu = false): ModelCheckReport {
  const est = (weights: 'fp8' | 'fp16', mode: 'sequential' | 'resident', peak: number, fitsRam: boolean) => ({
    weights,
    mode,
    width: 1024,
    height: 1024,
    components: { clip: 0.25 * GiB, t5: 9.1 * GiB, dit: weights === 'fp8' ? 11.1 * GiB : 22.2 * GiB, vae: 0.16 * GiB },
    peak,
    fitsRam,
    ...(gpu ? { fitsGpu: weights === 'fp8' } : {}),
  });
  return {
    model,
    machine: gpu ? { ...machine, gpuMemory: 24 * GiB, gpuName: 'RTX 4090' } : machine,
    estimates: [est('fp8', 'sequential', 12.9 * GiB, true), est('fp8', 'resident', 21.5 * GiB, true), est('fp16', 'resident', 33 * GiB, false)],
    advice: ['fp8 + sequential: peak ≈ 12.9 GiB — fits your 32.0 GiB of RAM', 'fp16 + resident needs ≈ 33.0 GiB: more than this machine has'],
  };
}

function settings(models: Partial<Settings['models']> = {}): Settings {
  return { ...DEFAULTS, models: { ...DEFAULTS.models, ...models } };
}

describe('extension: model check report', () => {
  it('lists every part with its status, the memory table with what fits, and the advice', () => {
    const m = found({
      parts: [part('dit', 'present'), part('clip', 'present'), part('t5', 'missing', { message: 'text_encoder_2/ is not there' }), part('vae', 'wrong-dtype', { message: 'F64 weights' }), part('tokenizer', 'corrupt', { message: 'vocab.json is not JSON' }), part('tokenizer2', 'present')],
    });
    const md = reportMarkdown(report(m), t);
    assert.match(md, /^# MajicFLUX model check/);
    assert.match(md, /## ⚠️ FLUX\.1-dev — incomplete/);
    assert.match(md, /\| DiT \(transformer\) \| ✅ present \| `\/m\/FLUX\.1-dev\/dit` \| bfl-dit · BF16 ×10, F32 ×2 \| 12\.0 B \| 1\.00 GiB \|/);
    assert.match(md, /\| T5 text encoder \| ❌ missing — text\\_encoder\\_2\/ is not there \| — \|/);
    assert.match(md, /\| VAE \| ⚠️ wrong dtype — F64 weights \|/);
    assert.match(md, /\| CLIP tokenizer \| 💥 corrupt — vocab\.json is not JSON \|/);
    assert.match(md, /Missing or unusable: T5 text encoder \(missing\), VAE \(wrong dtype\), CLIP tokenizer \(corrupt\)\./);
    assert.match(md, /## Memory at 1024×1024/);
    assert.match(md, /\| fp8 \| sequential \| 256\.0 MiB \| 9\.10 GiB \| 11\.1 GiB \| 163\.8 MiB \| \*\*12\.9 GiB\*\* \| ✅ yes \|$/m);
    assert.match(md, /\| fp16 \| resident \| .* \| \*\*33\.0 GiB\*\* \| ❌ no \|$/m);
    assert.doesNotMatch(md, /fits GPU/, 'no GPU column when the GPU memory is unknown');
    assert.match(md, /## What fits this machine\n\n- fp8 \+ sequential: peak ≈ 12\.9 GiB — fits your 32\.0 GiB of RAM\n- fp16 \+ resident/);
    assert.match(md, /"majicflux\.model\.path": "\/m\/FLUX\.1-dev"/);
    assert.match(md, /\*\*This machine:\*\* linux-x64, 16 CPU threads, 32\.0 GiB RAM \(20\.0 GiB free\)/);
  });

  it('adds a GPU column and the GPU when the server knows it, and marks verified checksums', () => {
    const m = found({ parts: [part('dit', 'present', { sha256: 'ab'.repeat(32), verified: 'match' }), part('clip', 'present', { verified: 'mismatch' })] });
    const md = reportMarkdown(report({ ...m, complete: true }, true), t);
    assert.match(md, /fits GPU \|/);
    assert.match(md, /\| \*\*12\.9 GiB\*\* \| ✅ yes \| ✅ yes \|$/m);
    assert.match(md, /\| \*\*33\.0 GiB\*\* \| ❌ no \| ❌ no \|$/m);
    assert.match(md, /GPU: RTX 4090 24\.0 GiB/);
    assert.match(md, /✅ present · sha256 matches/);
    assert.match(md, /sha256 DOES NOT MATCH/);
  });

  it('keeps table cells and code spans intact whatever a path holds', () => {
    const m = found({ root: '/m/a|b`c', parts: [part('dit', 'present', { path: '/m/a|b`c/x.safetensors' })] });
    const md = reportMarkdown(report(m), t);
    const row = md.split('\n').find((l) => l.startsWith('| DiT'))!;
    assert.equal(row.split(/(?<!\\)\|/).length - 2, 6, row);
    assert.match(md, /``\/m\/a\|b`c``/);
    assert.equal(mdCell('a|b*c_d'), 'a\\|b\\*c\\_d');
  });

  it('sums it up in one sentence from the first advice, or names what is missing', () => {
    assert.equal(reportSummary(report(found()), t), 'Model FLUX.1-dev is complete. fp8 + sequential: peak ≈ 12.9 GiB — fits your 32.0 GiB of RAM');
    assert.equal(reportSummary({ ...report(found()), advice: [] }, t), 'Model FLUX.1-dev is complete.');
    const m = found({ parts: [part('dit', 'present'), part('t5', 'missing')] });
    assert.equal(reportSummary(report(m), t), 'Model FLUX.1-dev is incomplete: T5 text encoder (missing).');
  });

  it('a folder that is not there is said once, not as six missing parts (issue 15 item 4)', () => {
    const gone = 'model folder not found: /models/no-such-model';
    const roles = ['dit', 'clip', 't5', 'vae', 'tokenizer', 'tokenizer2'] as const;
    const m = found({ name: 'no-such-model', complete: false, parts: roles.map((r) => part(r, 'missing', { message: gone })) });
    assert.equal(reportSummary(report(m), t), `Model no-such-model cannot be used: ${gone}.`);
    // Different reasons are still listed part by part.
    const mixed = found({ complete: false, parts: [part('dit', 'missing', { message: 'no DiT' }), part('t5', 'missing', { message: 'no T5' })] });
    assert.match(reportSummary(report(mixed), t), /is incomplete: DiT \(transformer\) \(missing\), T5 text encoder \(missing\)/);
  });

  it('explains the demo model and what FLUX.1-dev needs on this machine', () => {
    const md = demoMarkdown({ ...machine, totalMemory: 16 * GiB }, t);
    assert.match(md, /## Demo model/);
    assert.match(md, /sequential mode/);
    assert.match(demoMarkdown({ ...machine, totalMemory: 64 * GiB }, t), /enough memory to keep FLUX\.1-dev fp8 resident/);
    assert.match(demoMarkdown({ ...machine, totalMemory: 8 * GiB }, t), /less memory than FLUX\.1-dev fp8 needs/);
  });
});

describe('extension: download progress text', () => {
  const p = (over: Partial<DownloadProgress> = {}): DownloadProgress => ({
    file: 'black-forest-labs/FLUX.1-dev/flux1-dev.safetensors',
    files: 12,
    filesDone: 2,
    bytes: 12.5 * GiB,
    total: 31.5 * GiB,
    bytesPerSecond: 85.3 * 2 ** 20,
    etaSeconds: 228,
    ...over,
  });

  it('shows percent, GiB done of total, speed, time left and the current file', () => {
    const r = progressText(p(), t);
    assert.equal(r.percent, 39);
    assert.equal(r.message, '39% · 12.5 GiB of 31.5 GiB · 85.3 MiB/s · 4 min left · file 3 of 12: flux1-dev.safetensors');
  });

  it('leaves out what is not known yet', () => {
    assert.equal(progressText(p({ total: 0, bytesPerSecond: 0, etaSeconds: undefined, file: '', files: 0 }), t).message, '12.5 GiB');
    assert.equal(progressText(p({ total: 0 }), t).percent, undefined);
    assert.equal(progressText(p({ files: 1, filesDone: 0, file: 'ae.safetensors', etaSeconds: undefined }), t).message, '39% · 12.5 GiB of 31.5 GiB · 85.3 MiB/s · ae.safetensors');
    assert.equal(progressText(p({ bytes: 31.5 * GiB, etaSeconds: 0 }), t).message.includes('left'), false);
  });

  it('formats durations for people (sizes: bytes.test.ts)', () => {
    assert.equal(formatDuration(45, t), '45 s');
    assert.equal(formatDuration(89, t), '89 s');
    assert.equal(formatDuration(12 * 60 + 10, t), '12 min');
    assert.equal(formatDuration(2 * 3600 + 5 * 60, t), '2 h 05 min');
  });
});

describe('extension: models view nodes', () => {
  it('maps a found model to a node: status icon, where, size, in use, menus', () => {
    const m = found();
    const n = modelNode(m, { dir: '/m/FLUX.1-dev/' }, t);
    assert.equal(n.label, 'FLUX.1-dev');
    assert.equal(n.icon, 'pass-filled');
    assert.equal(n.contextValue, 'majicflux.model.complete.inUse');
    assert.equal(n.description, 'in use · Hugging Face cache · 6.00 GiB');
    assert.ok(n.collapsible);
    assert.match(n.tooltip, /`\/m\/FLUX\.1-dev`/);
    assert.match(n.tooltip, /This is the model in use/);
    const other = modelNode(found({ parts: [part('dit', 'present'), part('t5', 'missing')] }), {}, t);
    assert.equal(other.icon, 'warning');
    assert.equal(other.contextValue, 'majicflux.model.incomplete');
    assert.match(other.description!, /^incomplete · /);
    assert.match(other.tooltip, /Missing or unusable: T5 text encoder \(missing\)/);
    assert.equal(modelNode(found({ parts: [part('dit', 'corrupt')] }), {}, t).icon, 'error');
    // Two models in one folder (its transformer/ and a single-file DiT) differ by the DiT file.
    const single = modelNode(found({ spec: { dir: '/m/FLUX.1-dev', transformer: '/m/FLUX.1-dev/flux1-dev.safetensors' } }), {}, t);
    assert.equal(single.description, 'Hugging Face cache · flux1-dev.safetensors · 6.00 GiB');
    assert.match(single.tooltip, /DiT: `\/m\/FLUX\.1-dev\/flux1-dev\.safetensors`/);
    assert.notEqual(single.id, n.id);
  });

  it('maps each part to a node with an icon per status and a tooltip with path, dtypes and size', () => {
    const m = found();
    const icons = (['present', 'missing', 'wrong-dtype', 'corrupt'] as const).map((s) => {
      const n = partNode(m, part('t5', s, { message: s === 'present' ? undefined : `it is ${s}` }), t);
      return [n.icon, n.color, n.contextValue];
    });
    assert.deepEqual(icons, [
      ['pass', 'testing.iconPassed', 'majicflux.modelPart.file'],
      ['circle-slash', 'list.errorForeground', 'majicflux.modelPart'],
      ['warning', 'list.warningForeground', 'majicflux.modelPart.file'],
      ['error', 'list.errorForeground', 'majicflux.modelPart.file'],
    ]);
    const n = partNode(m, part('dit', 'present'), t);
    assert.equal(n.label, 'DiT (transformer)');
    assert.equal(n.description, 'bfl-dit · BF16 ×10, F32 ×2 · 1.00 GiB');
    assert.match(n.tooltip, /`\/m\/FLUX\.1-dev\/dit`/);
    assert.match(n.tooltip, /dtypes: BF16 ×10, F32 ×2/);
    assert.match(n.tooltip, /size: 1\.00 GiB/);
    assert.match(n.tooltip, /parameters: 12\.0 B/);
    assert.equal(partNode(m, part('vae', 'wrong-dtype', { message: 'F64 weights' }), t).description, 'wrong dtype: F64 weights');
    assert.notEqual(partNode(m, part('dit', 'present'), t).id, partNode(found({ spec: { dir: '/m/FLUX.1-dev', transformer: '/x.safetensors' } }), part('dit', 'present'), t).id);
  });

  it('sorts complete models first, then the one in use; describes the machine', () => {
    const a = found({ name: 'B complete', root: '/b' });
    const b = found({ name: 'A incomplete', root: '/a', complete: false });
    const c = found({ name: 'C in use', root: '/c', spec: { dir: '/c' } });
    assert.deepEqual(sortModels([b, a, c], { dir: '/c' }).map((m) => m.name), ['C in use', 'B complete', 'A incomplete']);
    const file = found({ spec: { dir: '/b', transformer: '/b/x.safetensors' }, name: 'B complete', root: '/b' });
    assert.deepEqual(sortModels([file, a], {}).map((m) => m.spec.transformer), [undefined, '/b/x.safetensors']);
    assert.ok(sameSpec({ dir: '/c/' }, { dir: '/c' }));
    assert.ok(!sameSpec({ dir: '/c', transformer: '/t' }, { dir: '/c' }));
    // A download's spec names its DiT file; the same folder found on disk may use it without naming it.
    const dl = found({ root: '/d', spec: { dir: '/d' }, parts: [part('dit', 'present', { path: '/d/flux1-schnell.safetensors' })] });
    assert.ok(isInUse(dl, { dir: '/d', transformer: '/d/flux1-schnell.safetensors' }));
    assert.ok(!isInUse(dl, { dir: '/d', transformer: '/d/other.safetensors' }));
    assert.ok(!isInUse(found({ root: '/d', spec: { dir: '/d', transformer: '/d/x.safetensors' } }), { dir: '/d' }));
    assert.ok(!isInUse(dl, { dir: '/e', transformer: '/d/flux1-schnell.safetensors' }));
    assert.equal(machineDescription(machine, t), '32.0 GiB RAM');
    assert.equal(machineDescription({ ...machine, gpuMemory: 24 * GiB, gpuName: 'RTX 4090' }, t), '32.0 GiB RAM · RTX 4090 24.0 GiB');
  });
});

describe('extension: Use This Model (settings written)', () => {
  const inspect = (values: Record<string, { globalValue?: unknown; workspaceValue?: unknown }>) => (k: string) => values[k];

  it('writes the spec into the workspace, blanking user-level parts the spec does not set', () => {
    const u = settingsUpdates({ dir: '/m/dev', transformer: '/m/majicflus.safetensors' }, 'workspace', inspect({ 'model.vae': { globalValue: '/old/ae.safetensors' } }));
    assert.deepEqual(u, [
      { key: 'model.path', target: 'workspace', value: '/m/dev' },
      { key: 'model.transformer', target: 'workspace', value: '/m/majicflus.safetensors' },
      { key: 'model.vae', target: 'workspace', value: '' },
      { key: 'model.textEncoder', target: 'workspace', value: undefined },
      { key: 'model.textEncoder2', target: 'workspace', value: undefined },
    ]);
  });

  it('writes the user settings and removes workspace values that would win over them', () => {
    const u = settingsUpdates({ dir: '/m/dev' }, 'global', inspect({ 'model.path': { workspaceValue: '/ws/model' }, 'model.transformer': { globalValue: '/x' } }));
    assert.deepEqual(u, [
      { key: 'model.path', target: 'global', value: '/m/dev' },
      { key: 'model.path', target: 'workspace', value: undefined },
      { key: 'model.transformer', target: 'global', value: undefined },
      { key: 'model.vae', target: 'global', value: undefined },
      { key: 'model.textEncoder', target: 'global', value: undefined },
      { key: 'model.textEncoder2', target: 'global', value: undefined },
    ]);
  });

  it('says which tokenizers no setting can hold', () => {
    assert.deepEqual(unsettableParts({ dir: '/m/dev', tokenizer: '/m/dev/tokenizer', tokenizer2: '/m/dev/tokenizer_2/' }), []);
    assert.deepEqual(unsettableParts({ dir: '/m/dev', tokenizer: '/other/tokenizer' }), ['/other/tokenizer']);
  });
});

describe('extension: model settings', () => {
  it('validates search paths and hub mirrors', () => {
    const { settings: s, problems } = validateSettings(
      (k) =>
        ({
          'models.searchPaths': ['~/models', 'rel', '~/models'],
          'models.downloadFolder': '${userHome}/big-disk',
          'models.huggingfaceEndpoint': 'https://hf-mirror.com/',
          'models.modelscopeEndpoint': 'ftp://example.com',
        })[k],
      { workspaceFolder: '/ws', home: '/h', exists: (p) => p !== path.normalize('/ws/rel') },
    );
    assert.deepEqual(s.models.searchPaths, [path.normalize('/h/models'), path.normalize('/ws/rel')]);
    assert.equal(s.models.downloadFolder, path.normalize('/h/big-disk'));
    assert.equal(s.models.huggingfaceEndpoint, 'https://hf-mirror.com');
    assert.equal(s.models.modelscopeEndpoint, '');
    assert.deepEqual(problems.map((p) => [p.key, p.code]), [
      ['majicflux.models.searchPaths', 'pathMissing'],
      ['majicflux.models.modelscopeEndpoint', 'badUrl'],
    ]);
    const wrong = validateSettings((k) => (k === 'models.searchPaths' ? 'not-an-array' : k === 'models.huggingfaceEndpoint' ? 'https://user:pw@evil.example' : undefined));
    assert.deepEqual(wrong.problems.map((p) => p.code), ['wrongType', 'badUrl']);
    assert.deepEqual(wrong.settings.models.searchPaths, []);
  });
});

const REGISTRY: Registry = {
  version: 1,
  models: [
    {
      id: 'flux1-dev',
      name: 'FLUX.1 [dev]',
      description: 'The reference model.',
      sources: [
        { hub: 'huggingface', repo: 'black-forest-labs/FLUX.1-dev', gated: true, licenceUrl: 'https://huggingface.co/black-forest-labs/FLUX.1-dev' },
        { hub: 'modelscope', repo: 'black-forest-labs/FLUX.1-dev' },
      ],
      parts: [
        { role: 'dit', files: [{ path: 'flux1-dev.safetensors', size: 23_802_932_552 }] },
        { role: 't5', files: [{ path: 'text_encoder_2/model-00001-of-00002.safetensors', size: 4_994_582_224 }, { path: 'text_encoder_2/model-00002-of-00002.safetensors', size: 4_530_066_360 }] },
      ],
    },
    {
      id: 'flux1-schnell',
      name: 'FLUX.1 [schnell]',
      description: 'Four steps.',
      sources: [{ hub: 'huggingface', repo: 'black-forest-labs/FLUX.1-schnell' }],
      parts: [{ role: 'dit', files: [{ path: 'flux1-schnell.safetensors', size: 23_782_506_688 }] }],
      defaults: { steps: 4, guidance: 0 },
    },
    {
      id: 'majicflus-v1',
      name: 'majicflus v1',
      description: 'A fine-tune.',
      sources: [{ hub: 'modelscope', repo: 'MAILAND/majicflus_v1' }, { hub: 'huggingface', repo: 'someone/majicflus_v1' }],
      parts: [
        { role: 'dit', files: [{ path: 'majicflus_v134.safetensors' }] },
        { role: 't5', from: 'flux1-dev', files: [{ path: 'text_encoder_2/model-00001-of-00002.safetensors', size: 4_994_582_224 }] },
      ],
    },
  ],
};

describe('extension: registry → download choices', () => {
  it('reads the registry with the schema the server uses, naming the field that is wrong', () => {
    assert.deepEqual(parseRegistry(JSON.parse(JSON.stringify(REGISTRY))).models.map((m) => m.id), ['flux1-dev', 'flux1-schnell', 'majicflus-v1']);
    assert.ok(modelChoices(parseRegistry(bundledRegistry)).length >= 3, 'the registry shipped with the extension');
    const model = { id: 'x', name: 'X', description: 'x', sources: [{ hub: 'huggingface', repo: 'a/b' }], parts: [{ role: 'dit', files: [{ path: 'x' }] }] };
    assert.throws(() => parseRegistry({ version: 1, models: [{ ...model, sources: [{ hub: 'github', repo: 'a/b' }] }] }), /^Error: models\/registry\.json: models\.0\.sources\.0\.hub: must be one of huggingface, modelscope/);
    assert.throws(() => parseRegistry({}), /^Error: models\/registry\.json: (version|models): /);
    // A licence page is opened in the browser: only an https:// one is taken.
    assert.throws(() => parseRegistry({ version: 1, models: [{ ...model, sources: [{ hub: 'huggingface', repo: 'a/b', licenceUrl: 'javascript:alert(1)' }] }] }), /sources\.0\.licenceUrl: must be an https:\/\/ URL/);
    assert.throws(() => parseRegistry({ version: 1, models: [{ ...model, parts: [{ role: 'dit', files: [{ path: 'x', size: -1 }] }] }] }), /files\.0\.size: must be a whole number of bytes/);
  });

  it('gives sizes, hubs, and which hubs need a login (also through parts from another model)', () => {
    const [dev, schnell, majic] = modelChoices(REGISTRY);
    assert.equal(dev.bytes, 23_802_932_552 + 4_994_582_224 + 4_530_066_360);
    assert.ok(dev.sizeKnown);
    assert.deepEqual(dev.hubs.map((h) => [h.hub, h.needsLogin, h.licenceUrl]), [
      ['huggingface', true, 'https://huggingface.co/black-forest-labs/FLUX.1-dev'],
      ['modelscope', false, undefined],
    ]);
    assert.deepEqual(schnell.hubs.map((h) => h.needsLogin), [false]);
    assert.deepEqual(schnell.defaults, { steps: 4, guidance: 0 });
    assert.equal(majic.sizeKnown, false);
    assert.deepEqual(majic.hubs.map((h) => [h.hub, h.needsLogin, h.repos]), [
      ['modelscope', false, ['MAILAND/majicflus_v1', 'black-forest-labs/FLUX.1-dev']],
      ['huggingface', true, ['someone/majicflus_v1', 'black-forest-labs/FLUX.1-dev']],
    ]);
    assert.equal(majic.hubs[1].licenceUrl, 'https://huggingface.co/black-forest-labs/FLUX.1-dev');
  });
});

describe('extension: DownloadRequest from the settings', () => {
  const storage = path.normalize('/home/u/.config/Code/User/globalStorage/majicflux.majicflux');

  it('downloads into <globalStorage>/models unless a folder is set or chosen', () => {
    assert.equal(defaultDownloadFolder(settings(), storage), path.join(storage, 'models'));
    assert.equal(defaultDownloadFolder(settings({ downloadFolder: '/big' }), storage), '/big');
    assert.deepEqual(downloadRequest({ model: 'flux1-schnell', hub: 'huggingface' }, settings(), storage), { model: 'flux1-schnell', hub: 'huggingface', dest: path.join(storage, 'models') });
    assert.equal(downloadRequest({ model: 'flux1-dev', hub: 'modelscope', dest: '/chosen' }, settings({ downloadFolder: '/big' }), storage).dest, '/chosen');
    assert.equal(downloadRequest({ model: 'flux1-dev', hub: 'modelscope', dest: '/chosen', remote: true }, settings(), storage).dest, '.', 'a serve-mode server takes dest relative to its --models-dir');
  });

  it('passes the hub mirrors as endpoints, and the token only to Hugging Face', () => {
    const s = settings({ huggingfaceEndpoint: 'https://hf-mirror.com', modelscopeEndpoint: 'https://ms.example.cn' });
    const r = downloadRequest({ model: 'flux1-dev', hub: 'huggingface', token: 'hf_abcdefghijklmnopqrstuvwxyz0123' }, s, storage);
    assert.deepEqual(r.endpoints, { huggingface: 'https://hf-mirror.com', modelscope: 'https://ms.example.cn' });
    assert.equal(r.token, 'hf_abcdefghijklmnopqrstuvwxyz0123');
    assert.equal(downloadRequest({ model: 'flux1-dev', hub: 'modelscope', token: 'hf_x' }, s, storage).token, undefined);
    assert.equal(downloadRequest({ model: 'flux1-dev', hub: 'huggingface' }, settings({ modelscopeEndpoint: 'https://ms.example.cn' }), storage).endpoints?.huggingface, undefined);
    assert.ok(usesMirror('huggingface', s));
    assert.equal(hubHost('huggingface', s), 'hf-mirror.com');
    assert.ok(!usesMirror('huggingface', settings()));
    assert.equal(hubHost('modelscope', settings()), 'modelscope.cn');
  });

  it('never puts the token in a log line', () => {
    const token = 'hf_SECRETsecretSECRETsecret1234567';
    const r = downloadRequest({ model: 'flux1-dev', hub: 'huggingface', token }, settings({ huggingfaceEndpoint: 'https://hf-mirror.com' }), storage);
    const line = describeRequest(r);
    assert.ok(!line.includes(token), line);
    assert.ok(!line.includes('SECRET'), line);
    assert.match(line, /^download flux1-dev from huggingface into .* via huggingface=https:\/\/hf-mirror\.com; token: yes$/);
    assert.match(describeRequest({ ...r, token: undefined }), /token: no$/);
    // Text from elsewhere (a server message, an error detail) is scrubbed before it is logged or shown.
    assert.equal(redact(`401 for Bearer ${token} at huggingface.co`, [token]), '401 for Bearer *** at huggingface.co');
    assert.equal(redact('Authorization: Bearer hf_abcdefghijklmnopqrstuvwxyz', []), 'Authorization: Bearer hf_***');
    assert.equal(redact('nothing secret', [undefined, '']), 'nothing secret');
  });
});

describe('extension: download failures → actions', () => {
  it('offers what fits each error code', () => {
    const labels = (c: Parameters<typeof actionsFor>[0]) => actionsFor(c).map((a) => actionLabel(a, t));
    assert.deepEqual(labels('auth-required'), ['Set Token', 'Open Licence Page']);
    assert.deepEqual(labels('forbidden'), ['Set Token', 'Open Licence Page']);
    assert.deepEqual(labels('network'), ['Retry', 'Show Log']);
    assert.deepEqual(labels('stopped'), ['Retry', 'Show Log']);
    assert.deepEqual(labels('checksum'), ['Show Log', 'Retry']);
    assert.deepEqual(labels('disk-full'), ['Choose Another Folder']);
    assert.deepEqual(labels('not-found'), ['Retry', 'Show Log']);
    assert.deepEqual(labels('http'), ['Retry', 'Show Log']);
    assert.deepEqual(labels('cancelled'), []);
    assert.match(failureMessage('network', 'Connection reset.', t), /Retry resumes where it stopped/);
    assert.match(failureMessage('cancelled', '', t), /partial files are kept/);
    assert.equal(failureMessage('forbidden', 'Accept the licence first.', t), 'Download failed: Accept the licence first.');
  });
});

// ---- ServerClient against a scripted server -------------------------------------------------------

/** A stand-in for dist/server.js: hello, models, check, and downloads whose outcome the model id picks. */
const FAKE_SERVER = String.raw`
const net = require('node:net');
const sock = new net.Socket({ fd: 3, readable: true, writable: true });
const send = (m) => sock.write(JSON.stringify(m) + '\n');
const running = new Map();
let buf = '';
let n = 0;
const progress = (downloadId, bytes) => send({ type: 'event', event: 'download-progress', downloadId, progress: { file: 'a/b/x.safetensors', files: 2, filesDone: 0, bytes, total: 100, bytesPerSecond: 10, etaSeconds: (100 - bytes) / 10 } });
sock.on('data', (c) => {
  buf += c;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const req = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (req.type === 'hello') send({ id: req.id, type: 'hello', protocol: 1, version: 'fake', pid: process.pid, platform: 'test', heartbeatMs: 1000 });
    else if (req.type === 'models') send({ id: req.id, type: 'models', found: [], machine: { platform: 'test', arch: 'x', cpus: 1, totalMemory: 1, freeMemory: 1 }, });
    else if (req.type === 'check') setTimeout(() => send({ id: req.id, type: 'error', code: 'failed', message: 'no such folder: ' + JSON.stringify(req.model) + ' verify=' + !!req.verify }), 50);
    else if (req.type === 'shutdown') { send({ id: req.id, type: 'ok' }); setTimeout(() => process.exit(0), 10); }
    else if (req.type === 'cancel') {
      const d = running.get(req.jobId);
      if (!d) { send({ id: req.id, type: 'error', code: 'unknown-job', message: 'no' }); continue; }
      send({ id: req.id, type: 'cancel', jobId: req.jobId, state: 'cancelling' });
      clearInterval(d);
      running.delete(req.jobId);
      send({ type: 'event', event: 'download-failed', downloadId: req.jobId, code: 'cancelled', message: 'Cancelled.' });
    } else if (req.type === 'download') {
      const id = 'download-' + ++n;
      const what = req.download.model;
      send({ id: req.id, type: 'download', downloadId: id });
      progress(id, 10);
      if (what === 'ok') { progress(id, 100); send({ type: 'event', event: 'download-done', downloadId: id, result: { spec: { dir: req.download.dest + '/a/b' }, files: [{ path: req.download.dest + '/a/b/x.safetensors', bytes: 100, sha256: 'ab', resumedFrom: 10 }] } }); }
      else if (what === 'forbidden') send({ type: 'event', event: 'download-failed', downloadId: id, code: 'forbidden', message: 'Accept the licence first.' });
      else if (what === 'crash') setTimeout(() => { process.stderr.write('[t] error: out of memory\n'); process.exit(3); }, 50);
      else running.set(id, setInterval(() => progress(id, 20), 20));
    }
  }
});
sock.on('end', () => process.exit(0));
`;

describe('extension: ServerClient models, check and download', function () {
  this.timeout(30_000);
  let dir: string;
  let client: ServerClient;
  const logged: string[] = [];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-fake-server-'));
    fs.writeFileSync(path.join(dir, 'server.js'), FAKE_SERVER);
  });
  beforeEach(() => {
    const log = (m: string) => void logged.push(m);
    client = new ServerClient({ serverPath: path.join(dir, 'server.js'), nodePath: process.execPath, logger: { debug: log, info: log, warn: log, error: log }, backoff: { initialMs: 1 } });
  });
  afterEach(() => client.dispose());
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds models and passes check options; a check error is a ServerError with the message', async () => {
    const r = await client.models({ searchPaths: ['/x'] });
    assert.deepEqual(r.found, []);
    await assert.rejects(client.check({ model: { dir: '/nope' }, verify: true }), /no such folder: \{"dir":"\/nope"\} verify=true/);
  });

  it('reports progress, then resolves done with the result', async () => {
    const events: DownloadEvent[] = [];
    const h = await client.download({ model: 'ok', dest: '/d', token: 'hf_tokentokentokentokentoken' }, (e) => events.push(e));
    assert.equal(h.downloadId, 'download-1');
    const result = await h.done;
    assert.deepEqual(result.spec, { dir: '/d/a/b' });
    assert.deepEqual(events.map((e) => e.event), ['download-progress', 'download-progress', 'download-done']);
    assert.deepEqual(client.activeDownloads, []);
    assert.ok(!logged.some((l) => l.includes('hf_tokentoken')), 'the client logs no request body');
  });

  it('rejects done with the server\'s code and message', async () => {
    const h = await client.download({ model: 'forbidden', dest: '/d' });
    const err = await h.done.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof DownloadFailedError);
    assert.equal(err.code, 'forbidden');
    assert.equal(err.message, 'Accept the licence first.');
  });

  it('cancels a download through cancel(downloadId): done rejects with code cancelled', async () => {
    const h = await client.download({ model: 'slow', dest: '/d' });
    assert.deepEqual(client.activeDownloads, [h.downloadId]);
    assert.equal(await client.cancel(h.downloadId), 'cancelling');
    const err = await h.done.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof DownloadFailedError && err.code === 'cancelled');
    assert.equal(await client.cancel(h.downloadId), 'gone');
  });

  it('a server crash mid-download rejects done with a clear message: partial files kept, download again to resume', async () => {
    const events: DownloadEvent[] = [];
    const h = await client.download({ model: 'crash', dest: '/d' }, (e) => events.push(e));
    const err = await h.done.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof DownloadFailedError);
    assert.equal(err.code, 'stopped');
    assert.match(err.message, /stopped unexpectedly \(exit code 3\) while downloading \(download-1\)/);
    assert.match(err.message, /partial files are kept: download the model again to resume/);
    assert.match(err.detail ?? '', /out of memory/);
    assert.equal(events.at(-1)?.event, 'download-failed');
    // The next request starts a new server.
    assert.deepEqual((await client.models()).found, []);
  });

  it('dispose during a download rejects it as cancelled', async () => {
    const h = await client.download({ model: 'slow', dest: '/d' });
    await client.dispose();
    const err = await h.done.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof DownloadFailedError && err.code === 'cancelled', String(err));
    assert.match((err as Error).message, /partial files are kept/);
  });
});
