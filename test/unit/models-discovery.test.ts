import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hfCacheDir, hfSnapshot, modelscopeCacheDirs } from '../../src/inference/models/candidates';
import { discoverModels, DiscoverOptions } from '../../src/inference/models/discovery';
import { checkSpecParts } from '../../src/inference/models/partChecks';
import type { FoundModel, PartRole } from '../../src/shared/models';
import { openTensors } from '../../src/inference/formats/safetensors';
import { GOLDEN_MODELS } from '../helpers/golden';
import { tempDir, TestTensors, writeSafetensors } from '../helpers/writeSafetensors';

const FLUX_DEV_REF = path.join(__dirname, '..', 'fixtures', 'FLUX.1-dev');
const G = (...p: string[]) => path.join(GOLDEN_MODELS, ...p);

/** Every file of the golden tiny model a FLUX.1-dev-style folder needs, as [path in the folder, source]. */
function baseFiles(opts: { dit?: string | false; t5?: boolean } = {}): [string, string][] {
  const files: [string, string][] = [
    ['ae.safetensors', G('ae.safetensors')],
    ['ae.config.json', G('ae.config.json')],
    ['text_encoder/config.json', G('text_encoder', 'config.json')],
    ['text_encoder/model.safetensors', G('text_encoder', 'model.safetensors')],
    // the real FLUX.1-dev tokenizers (the tiny model's are the same files)
    ...['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json'].map((f): [string, string] => [`tokenizer/${f}`, path.join(FLUX_DEV_REF, 'tokenizer', f)]),
    ...['tokenizer.json', 'special_tokens_map.json', 'tokenizer_config.json'].map((f): [string, string] => [`tokenizer_2/${f}`, path.join(FLUX_DEV_REF, 'tokenizer_2', f)]),
    ['scheduler/scheduler_config.json', path.join(FLUX_DEV_REF, 'scheduler', 'scheduler_config.json')],
  ];
  if (opts.t5 !== false) {
    for (const f of fs.readdirSync(G('text_encoder_2'))) files.push([`text_encoder_2/${f}`, G('text_encoder_2', f)]);
  }
  if (opts.dit !== false) files.push(...ditFiles(opts.dit ?? 'flux1-dev.safetensors'));
  return files;
}

/** The tiny BFL single-file DiT under another name, with its config sidecar renamed alike. */
function ditFiles(name: string): [string, string][] {
  return [
    [name, G('flux-tiny.safetensors')],
    [name.replace(/\.safetensors$/, '.config.json'), G('flux-tiny.config.json')],
  ];
}

/** Symlinks (cheap) or copies (when the test damages them) of the files into dir. */
function place(dir: string, files: [string, string][], copy = false): string {
  for (const [rel, src] of files) {
    const dst = path.join(dir, ...rel.split('/'));
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    if (copy) fs.copyFileSync(src, dst);
    else fs.symlinkSync(src, dst);
  }
  return dir;
}

/** A Hugging Face cache repository: blobs named by sha256, snapshots linking into them, refs/main. */
function hfRepo(cache: string, repo: string, snapshots: { commit: string; files: [string, string][]; incomplete?: string[] }[], main?: string): string {
  const root = path.join(cache, `models--${repo.replace('/', '--')}`);
  const blobs = path.join(root, 'blobs');
  fs.mkdirSync(blobs, { recursive: true });
  for (const s of snapshots) {
    const snap = path.join(root, 'snapshots', s.commit);
    for (const [rel, src] of s.files) {
      const data = fs.readFileSync(src);
      const hash = createHash('sha256').update(data).digest('hex');
      const incomplete = s.incomplete?.includes(rel);
      const blob = path.join(blobs, incomplete ? `${hash}.incomplete` : hash);
      if (!fs.existsSync(blob)) fs.writeFileSync(blob, incomplete ? data.subarray(0, data.length >> 1) : data);
      const link = path.join(snap, ...rel.split('/'));
      fs.mkdirSync(path.dirname(link), { recursive: true });
      fs.symlinkSync(path.relative(path.dirname(link), blob), link);
    }
  }
  if (main) {
    fs.mkdirSync(path.join(root, 'refs'), { recursive: true });
    fs.writeFileSync(path.join(root, 'refs', 'main'), main);
  }
  return root;
}

const part = (m: FoundModel, role: PartRole) => m.parts.find((p) => p.role === role)!;
/** Sorted by id (discovery keeps the order it walks folders in). */
const byId = (found: FoundModel[]) => [...found].sort((a, b) => a.id.localeCompare(b.id));
const statuses = (m: FoundModel) => Object.fromEntries(m.parts.map((p) => [p.role, p.status]));
const ALL_PRESENT = { dit: 'present', clip: 'present', t5: 'present', vae: 'present', tokenizer: 'present', tokenizer2: 'present' };

describe('model discovery', function () {
  let t: { dir: string; cleanup: () => void };
  /** Options that look nowhere but where the test says (no real caches of this machine). */
  let isolated: (o: DiscoverOptions) => DiscoverOptions;
  beforeEach(() => {
    t = tempDir('majicflux-discovery-');
    const home = path.join(t.dir, 'home');
    fs.mkdirSync(home);
    isolated = (o) => ({ env: {}, home, ...o });
  });
  afterEach(() => t.cleanup());

  it('cache locations: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub; MODELSCOPE_CACHE or ~/.cache/modelscope/hub, each with the models/ level', () => {
    assert.equal(hfCacheDir({ HF_HUB_CACHE: '/a', HF_HOME: '/b' }, '/h'), '/a');
    assert.equal(hfCacheDir({ HF_HOME: '/b' }, '/h'), path.join('/b', 'hub'));
    assert.equal(hfCacheDir({}, '/h'), path.join('/h', '.cache', 'huggingface', 'hub'));
    assert.deepEqual(modelscopeCacheDirs({}, '/h'), [path.join('/h', '.cache', 'modelscope', 'hub'), path.join('/h', '.cache', 'modelscope', 'hub', 'models')]);
    assert.deepEqual(modelscopeCacheDirs({ MODELSCOPE_CACHE: '/m' }, '/h'), ['/m', path.join('/m', 'models'), path.join('/m', 'hub'), path.join('/m', 'hub', 'models')]);
  });

  it('Hugging Face cache: the refs/main snapshot (not the stale one), files linked into blobs/, identified by repository', () => {
    const cache = path.join(t.dir, 'hf');
    const repoDir = hfRepo(cache, 'black-forest-labs/FLUX.1-dev', [
      // stale: an older commit whose DiT never finished downloading
      { commit: 'a'.repeat(40), files: baseFiles(), incomplete: ['flux1-dev.safetensors'] },
      { commit: 'b'.repeat(40), files: baseFiles() },
    ], 'b'.repeat(40));
    // the stale snapshot is the newer folder on disk: only refs/main picks the right one
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(repoDir, 'snapshots', 'a'.repeat(40)), later, later);
    const found = discoverModels(isolated({ env: { HF_HUB_CACHE: cache } }));
    assert.equal(found.length, 1, JSON.stringify(found, null, 1));
    const m = found[0];
    assert.equal(m.id, 'flux1-dev');
    assert.equal(m.name, 'FLUX.1-dev');
    assert.equal(m.where, 'huggingface-cache');
    assert.equal(m.root, path.join(repoDir, 'snapshots', 'b'.repeat(40)));
    assert.deepEqual(statuses(m), ALL_PRESENT);
    assert.equal(m.complete, true);
    assert.deepEqual(m.spec, { dir: m.root, name: 'FLUX.1-dev' });
    assert.equal(part(m, 'dit').layout, 'bfl-dit');
    assert.equal(part(m, 't5').layout, 'hf-t5');
    assert.deepEqual(part(m, 'vae').dtypes, { F32: 240 });
    assert.ok(fs.realpathSync(part(m, 'dit').path!).startsWith(path.join(fs.realpathSync(repoDir), 'blobs')));
    // Without refs/main, the newest snapshot (the stale one here): its DiT is an .incomplete blob: missing, not corrupt.
    fs.rmSync(path.join(repoDir, 'refs'), { recursive: true });
    assert.equal(hfSnapshot(repoDir), path.join(repoDir, 'snapshots', 'a'.repeat(40)));
    const stale = discoverModels(isolated({ env: { HF_HOME: path.dirname(cache) + '/unused', HF_HUB_CACHE: cache } }))[0];
    assert.equal(part(stale, 'dit').status, 'missing');
    assert.match(part(stale, 'dit').message!, /download has not finished/);
    assert.equal(stale.complete, false);
  });

  it('ModelScope cache, both layouts, FLUX___1-dev read as FLUX.1-dev; majicflus from its own repo paired with it', () => {
    const ms = path.join(t.dir, 'ms');
    // newer layout: <cache>/models/<owner>/<name>, dots written ___
    place(path.join(ms, 'models', 'black-forest-labs', 'FLUX___1-dev'), baseFiles({ dit: false }));
    // older layout: <cache>/<owner>/<name>
    place(path.join(ms, 'MAILAND', 'majicflus_v1'), ditFiles('majicflus_v134.safetensors'));
    const found = byId(discoverModels(isolated({ env: { MODELSCOPE_CACHE: ms } })));
    assert.deepEqual(found.map((m) => [m.id, m.where]), [['flux1-dev', 'modelscope-cache'], ['majicflus-v1', 'modelscope-cache']]);
    const [base, majic] = found;
    assert.equal(base.root, path.join(ms, 'models', 'black-forest-labs', 'FLUX___1-dev'));
    assert.equal(base.complete, false, 'this FLUX.1-dev has no DiT (as the majicflus app downloads it)');
    assert.deepEqual(statuses(base), { ...ALL_PRESENT, dit: 'missing' });
    const dit = path.join(ms, 'MAILAND', 'majicflus_v1', 'majicflus_v134.safetensors');
    assert.equal(majic.root, dit);
    assert.equal(majic.name, 'majicflus v1');
    assert.deepEqual(statuses(majic), ALL_PRESENT);
    assert.equal(majic.complete, true);
    assert.deepEqual(majic.spec, { dir: base.root, transformer: dit, name: 'majicflus v1' });
    // the default location: ~/.cache/modelscope/hub
    const home = path.join(t.dir, 'home2');
    place(path.join(home, '.cache', 'modelscope', 'hub', 'black-forest-labs', 'FLUX___1-schnell'), baseFiles({ dit: 'flux1-schnell.safetensors' }));
    const byDefault = discoverModels({ env: {}, home });
    assert.deepEqual(byDefault.map((m) => [m.id, m.complete]), [['flux1-schnell', true]]);
  });

  it("a workspace's models/ in our download layout: the fine-tune DiT is paired with the FLUX.1-dev base", () => {
    const ws = path.join(t.dir, 'ws');
    const baseDir = place(path.join(ws, 'models', 'black-forest-labs', 'FLUX.1-dev'), baseFiles({ dit: false }));
    place(path.join(ws, 'models', 'MAILAND', 'majicflus_v1'), ditFiles('majicflus_v134.safetensors'));
    const found = byId(discoverModels(isolated({ workspaceFolders: [ws] })));
    assert.deepEqual(found.map((m) => [m.id, m.where, m.complete]), [['flux1-dev', 'workspace', false], ['majicflus-v1', 'workspace', true]]);
    const majic = found[1];
    assert.deepEqual(majic.spec, { dir: baseDir, transformer: path.join(ws, 'models', 'MAILAND', 'majicflus_v1', 'majicflus_v134.safetensors'), name: 'majicflus v1' });
    assert.equal(part(majic, 'clip').path, path.join(baseDir, 'text_encoder'));
    assert.equal(part(majic, 'dit').layout, 'bfl-dit');
    // a FLUX.1-dev-style folder directly in models/ and the global storage's models/ (our layout)
    const ws2 = path.join(t.dir, 'ws2');
    place(path.join(ws2, 'models'), baseFiles());
    const gs = path.join(t.dir, 'global');
    place(path.join(gs, 'models', 'black-forest-labs', 'FLUX.1-schnell'), baseFiles({ dit: 'flux1-schnell.safetensors' }));
    const more = discoverModels(isolated({ workspaceFolders: [ws2], globalStorage: gs }));
    assert.deepEqual(more.map((m) => [m.id, m.where, m.complete, m.root]), [
      ['flux1-dev', 'workspace', true, path.join(ws2, 'models')],
      ['flux1-schnell', 'global-storage', true, path.join(gs, 'models', 'black-forest-labs', 'FLUX.1-schnell')],
    ]);
  });

  it('a lone DiT with no base anywhere is incomplete, naming the missing roles', () => {
    const dir = place(path.join(t.dir, 'search', 'majicflus'), ditFiles('majicflus_v134.safetensors'));
    const found = discoverModels(isolated({ searchPaths: [path.join(t.dir, 'search')] }));
    assert.equal(found.length, 1);
    const m = found[0];
    assert.equal(m.id, 'majicflus-v1');
    assert.equal(m.where, 'search-path');
    assert.equal(m.complete, false);
    assert.deepEqual(statuses(m), { dit: 'present', clip: 'missing', t5: 'missing', vae: 'missing', tokenizer: 'missing', tokenizer2: 'missing' });
    assert.match(part(m, 't5').message!, /flux1-dev's T5 text encoder/);
    assert.deepEqual(m.spec, { transformer: path.join(dir, 'majicflus_v134.safetensors'), name: 'majicflus v1' });
  });

  it('the configured model comes first, as given, and the same folder found again is listed once', () => {
    const dir = place(path.join(t.dir, 'models', 'my-flux'), baseFiles({ dit: 'my-finetune.safetensors' }));
    const linked = path.join(t.dir, 'linked');
    fs.symlinkSync(path.join(t.dir, 'models'), linked);
    const found = discoverModels(isolated({ configured: { dir }, searchPaths: [path.join(t.dir, 'models'), linked] }));
    assert.equal(found.length, 1, found.map((m) => `${m.where} ${m.root}`).join('\n'));
    assert.equal(found[0].where, 'configured');
    assert.equal(found[0].id, 'custom');
    assert.equal(found[0].name, 'my-flux');
    assert.deepEqual(found[0].spec, { dir, name: 'my-flux' });
    assert.equal(found[0].complete, true);
  });

  it('a truncated DiT is corrupt, with the reader\'s message; garbage too', () => {
    const dir = place(path.join(t.dir, 'models', 'FLUX.1-dev'), baseFiles({ dit: false }));
    place(dir, ditFiles('flux1-dev.safetensors'), true);
    const dit = path.join(dir, 'flux1-dev.safetensors');
    fs.truncateSync(dit, Math.floor(fs.statSync(dit).size * 0.6));
    const [m] = discoverModels(isolated({ searchPaths: [path.join(t.dir, 'models')] }));
    assert.equal(m.id, 'flux1-dev');
    assert.equal(part(m, 'dit').status, 'corrupt');
    assert.equal(part(m, 'dit').path, dit);
    assert.match(part(m, 'dit').message!, /truncated/);
    assert.equal(m.complete, false);
    assert.deepEqual(statuses(m), { ...ALL_PRESENT, dit: 'corrupt' });
    fs.writeFileSync(dit, Buffer.from('not a safetensors file at all, just text'));
    const [g] = discoverModels(isolated({ searchPaths: [path.join(t.dir, 'models')] }));
    assert.equal(part(g, 'dit').status, 'corrupt');
    assert.match(part(g, 'dit').message!, /not a safetensors file/);
  });

  it('a missing T5 is missing, and a corrupt shard of it corrupt', () => {
    const dir = place(path.join(t.dir, 'm'), baseFiles({ t5: false }));
    const [m] = discoverModels(isolated({ searchPaths: [dir] }));
    assert.equal(part(m, 't5').status, 'missing');
    assert.match(part(m, 't5').message!, /T5 text encoder/);
    assert.equal(part(m, 't5').path, undefined);
    assert.deepEqual(statuses(m), { ...ALL_PRESENT, t5: 'missing' });
    // a shard listed in the index but absent: missing, naming it
    place(dir, [['text_encoder_2/model.safetensors.index.json', G('text_encoder_2', 'model.safetensors.index.json')], ['text_encoder_2/config.json', G('text_encoder_2', 'config.json')]]);
    const [n] = discoverModels(isolated({ searchPaths: [dir] }));
    assert.equal(part(n, 't5').status, 'missing');
    assert.match(part(n, 't5').message!, /model-00001-of-00002\.safetensors, model-00002-of-00002\.safetensors not found/);
    // present but broken: corrupt
    const shard = G('text_encoder_2', 'model-00002-of-00002.safetensors');
    place(dir, [['text_encoder_2/model-00001-of-00002.safetensors', G('text_encoder_2', 'model-00001-of-00002.safetensors')], ['text_encoder_2/model-00002-of-00002.safetensors', shard]], true);
    fs.truncateSync(path.join(dir, 'text_encoder_2', 'model-00002-of-00002.safetensors'), 100);
    const [o] = discoverModels(isolated({ searchPaths: [dir] }));
    assert.equal(part(o, 't5').status, 'corrupt');
    assert.match(part(o, 't5').message!, /model-00002-of-00002\.safetensors/);
  });

  it('a U8-packed (bitsandbytes nf4-style) DiT is wrong-dtype', () => {
    const dir = place(path.join(t.dir, 'models', 'nf4'), baseFiles({ dit: false }));
    const src = openTensors(G('flux-tiny.safetensors'));
    const tensors: TestTensors = {};
    for (const n of src.names()) {
      const { shape, dtype } = src.info(n);
      if (shape.length === 2) {
        const count = shape[0] * shape[1];
        tensors[n] = { dtype: 'U8', shape: [count / 2, 1] };
        tensors[`${n}.absmax`] = { dtype: 'F32', shape: [Math.ceil(count / 64)] };
      } else tensors[n] = { dtype, shape };
    }
    src.close();
    writeSafetensors(path.join(dir, 'flux1-dev-bnb-nf4.safetensors'), tensors);
    const [m] = discoverModels(isolated({ searchPaths: [path.join(t.dir, 'models')] }));
    assert.equal(part(m, 'dit').status, 'wrong-dtype');
    assert.match(part(m, 'dit').message!, /U8: a packed quantization/);
    assert.ok(part(m, 'dit').dtypes!.U8 > 0);
    assert.equal(m.complete, false);
    // alone in its folder it is still found (a lone DiT) and still wrong-dtype
    fs.mkdirSync(path.join(t.dir, 'solo'));
    fs.renameSync(path.join(dir, 'flux1-dev-bnb-nf4.safetensors'), path.join(t.dir, 'solo', 'x.safetensors'));
    const [s] = discoverModels(isolated({ searchPaths: [path.join(t.dir, 'solo')] }));
    assert.equal(part(s, 'dit').status, 'wrong-dtype');
  });

  it('a folder with several root DiTs gives one model each; a fine-tune dropped into a FLUX.1-dev folder is its own model', () => {
    const dir = place(path.join(t.dir, 'models', 'FLUX.1-dev'), baseFiles());
    // copied: two names linking to one file are one model
    place(dir, ditFiles('majicflus_v134.safetensors'), true);
    const found = discoverModels(isolated({ searchPaths: [path.join(t.dir, 'models')] }));
    assert.deepEqual(found.map((m) => [m.id, m.spec.transformer, m.complete]), [
      ['flux1-dev', path.join(dir, 'flux1-dev.safetensors'), true],
      ['majicflus-v1', path.join(dir, 'majicflus_v134.safetensors'), true],
    ]);
    assert.ok(found.every((m) => m.spec.dir === dir));
  });

  it('two models of one name in one folder (a DiT file and a transformer/ folder) are told apart by their DiT', () => {
    // The golden folder holds flux-tiny.safetensors and transformer/, both named after the folder.
    const found = discoverModels(isolated({ searchPaths: [path.dirname(G('flux-tiny.safetensors'))] }));
    const names = found.map((m) => m.name).sort();
    assert.deepEqual(names, ['flux-tiny (flux-tiny.safetensors)', 'flux-tiny (transformer/)', 'flux-tiny-fp8']);
    assert.ok(found.every((m) => m.spec.name === undefined || !m.spec.name.includes('(')), 'the metadata name stays the model\'s');
  });

  it('walks a bounded depth, skips hidden folders, and never throws for a bad folder', () => {
    const root = path.join(t.dir, 'deep');
    place(path.join(root, 'a', 'b', 'c'), baseFiles()); // depth 3: found
    place(path.join(root, 'a', 'b', 'c', 'd', 'e'), baseFiles()); // below a model folder: not walked
    place(path.join(root, 'x', 'y', 'z', 'w'), baseFiles()); // depth 4: not found
    place(path.join(root, '.hidden', 'm'), baseFiles());
    fs.symlinkSync(path.join(t.dir, 'nowhere'), path.join(root, 'dangling'));
    fs.mkdirSync(path.join(root, 'badindex', 'text_encoder_2'), { recursive: true });
    fs.writeFileSync(path.join(root, 'badindex', 'text_encoder_2', 'model.safetensors.index.json'), '{ not json');
    fs.writeFileSync(path.join(root, 'badindex', 'ae.safetensors'), 'garbage');
    const started = Date.now();
    const found = discoverModels(isolated({ searchPaths: [root, path.join(t.dir, 'does-not-exist')] }));
    assert.ok(Date.now() - started < 10_000);
    assert.deepEqual(found.map((m) => path.relative(root, m.root)).sort(), ['a/b/c', 'badindex']);
    const bad = found.find((m) => m.root.endsWith('badindex'))!;
    assert.equal(part(bad, 't5').status, 'corrupt');
    assert.equal(part(bad, 'vae').status, 'corrupt');
    assert.equal(discoverModels(isolated({ searchPaths: [root], maxDepth: 4 })).length, 3);
  });

  it('walks on below a model folder into folders that are not its parts (ComfyUI: models/vae beside models/unet)', () => {
    const models = path.join(t.dir, 'ComfyUI', 'models');
    place(models, [['vae/ae.safetensors', G('ae.safetensors')], ['vae/config.json', G('ae.config.json')], ...ditFiles('unet/flux1-dev.safetensors')]);
    const found = byId(discoverModels(isolated({ searchPaths: [path.join(t.dir, 'ComfyUI')] })));
    assert.deepEqual(found.map((m) => [m.id, m.root]), [['custom', models], ['flux1-dev', path.join(models, 'unet', 'flux1-dev.safetensors')]]);
    const dev = found[1];
    assert.deepEqual(dev.spec, { dir: models, transformer: path.join(models, 'unet', 'flux1-dev.safetensors'), name: 'FLUX.1-dev' });
    assert.deepEqual(statuses(dev), { dit: 'present', clip: 'missing', t5: 'missing', vae: 'present', tokenizer: 'missing', tokenizer2: 'missing' });
  });

  it("notes weights in another dtype than the registry's (an fp8 copy of FLUX.1-dev's DiT): usable, so present", () => {
    const dir = place(path.join(t.dir, 'models', 'FLUX.1-dev'), [...baseFiles({ dit: false }), ['flux1-dev.safetensors', G('flux-tiny-fp8.safetensors')], ['flux1-dev.config.json', G('flux-tiny-fp8.config.json')]]);
    const [m] = discoverModels(isolated({ searchPaths: [dir] }));
    assert.equal(m.id, 'flux1-dev');
    assert.equal(part(m, 'dit').status, 'present');
    assert.match(part(m, 'dit').message!, /published as BF16; this copy holds F8_E4M3 \(a converted variant/);
    assert.equal(part(m, 'vae').message, undefined, 'the VAE is F32 as published');
    assert.equal(m.complete, true);
  });

  it('checkSpecParts: overrides win over the folder; a file given for the wrong role is missing', () => {
    const dir = place(path.join(t.dir, 'm'), baseFiles());
    const parts = checkSpecParts({ dir, transformer: G('flux-tiny-fp8.safetensors'), vae: G('flux-tiny.safetensors') });
    const dit = parts.find((p) => p.role === 'dit')!;
    assert.equal(dit.path, G('flux-tiny-fp8.safetensors'));
    assert.equal(dit.status, 'present');
    assert.ok(dit.dtypes!.F8_E4M3 > 0);
    const vae = parts.find((p) => p.role === 'vae')!;
    assert.equal(vae.status, 'missing');
    assert.match(vae.message!, /holds no VAE/);
  });
});
