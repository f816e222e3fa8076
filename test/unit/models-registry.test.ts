import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../../src/shared/api';
import { LIMITS } from '../../src/shared/params';
import { loadRegistry, modelForDitFile, modelForRepo, partsOf, planDownload, RegistryError, registryModel, validateRegistry } from '../../src/inference/models/registry';
import { PART_ROLES, Registry } from '../../src/shared/models';
import { tempDir } from '../helpers/writeSafetensors';

const REGISTRY_FILE = path.join(__dirname, '..', '..', 'models', 'registry.json');
const DEST = path.resolve('/models-root');

describe('model registry (models/registry.json)', () => {
  it('loads, bundled and from the file, with flux1-dev, flux1-schnell and majicflus-v1', () => {
    const reg = loadRegistry();
    assert.equal(reg.version, 1);
    assert.deepEqual(reg.models.map((m) => m.id), ['flux1-dev', 'flux1-schnell', 'majicflus-v1']);
    assert.deepEqual(loadRegistry(REGISTRY_FILE), reg, 'the bundled copy is the file');
  });

  it("every model's parts cover the six roles once, and each file path is inside its repository", () => {
    const reg = loadRegistry();
    for (const m of reg.models) {
      assert.deepEqual(m.parts.map((p) => p.role).sort(), [...PART_ROLES].sort(), m.id);
      const parts = partsOf(m, reg);
      assert.deepEqual(parts.map((p) => p.role), [...PART_ROLES], `${m.id}: partsOf gives PART_ROLES order`);
      for (const p of parts) for (const f of p.files) assert.ok(!f.path.startsWith('/') && !f.path.includes('..'), `${m.id} ${f.path}`);
    }
  });

  it('knows the sources: FLUX.1-dev gated on Hugging Face with its licence page, ungated on ModelScope', () => {
    const dev = registryModel('flux1-dev');
    assert.deepEqual(dev.sources, [
      { hub: 'huggingface', repo: 'black-forest-labs/FLUX.1-dev', gated: true, licenceUrl: 'https://huggingface.co/black-forest-labs/FLUX.1-dev' },
      { hub: 'modelscope', repo: 'black-forest-labs/FLUX.1-dev' },
    ]);
    const schnell = registryModel('flux1-schnell');
    assert.equal(schnell.sources[0].gated, undefined);
    assert.deepEqual(schnell.defaults, { steps: 4, guidance: 0, t5MaxLength: 256 });
    const majic = registryModel('majicflus-v1');
    assert.deepEqual(majic.sources, [{ hub: 'modelscope', repo: 'MAILAND/majicflus_v1' }]);
    const parts = partsOf(majic);
    assert.equal(parts.find((p) => p.role === 'dit')!.owner.id, 'majicflus-v1');
    for (const r of ['clip', 't5', 'vae', 'tokenizer', 'tokenizer2'] as const) assert.equal(parts.find((p) => p.role === r)!.owner.id, 'flux1-dev', r);
  });

  it("lists the single-file DiT and ae.safetensors, not diffusers' duplicate transformer/ and vae/ folders", () => {
    for (const id of ['flux1-dev', 'flux1-schnell']) {
      const files = registryModel(id).parts.flatMap((p) => p.files.map((f) => f.path));
      assert.ok(files.includes(`${id}.safetensors`), id);
      assert.ok(files.includes('ae.safetensors'));
      assert.ok(!files.some((f) => f.startsWith('transformer/') || f.startsWith('vae/')), `${id}: ${files.join(', ')}`);
      // tokenizer_2 as test/fixtures/FLUX.1-dev has it: no spiece.model (our T5 tokenizer reads tokenizer.json)
      assert.deepEqual(registryModel(id).parts.find((p) => p.role === 'tokenizer2')!.files.map((f) => f.path).sort(), ['tokenizer_2/special_tokens_map.json', 'tokenizer_2/tokenizer.json', 'tokenizer_2/tokenizer_config.json']);
    }
    const fixtures = path.join(__dirname, '..', 'fixtures', 'FLUX.1-dev');
    for (const role of ['tokenizer', 'tokenizer2'] as const) {
      for (const f of registryModel('flux1-dev').parts.find((p) => p.role === role)!.files) assert.ok(fs.existsSync(path.join(fixtures, f.path)), `${f.path} is a real FLUX.1-dev file`);
    }
  });

  it('identifies models by repository (ModelScope ___ for dots) and by DiT file name', () => {
    assert.equal(modelForRepo('black-forest-labs/FLUX___1-dev')?.id, 'flux1-dev');
    assert.equal(modelForRepo('Black-Forest-Labs/flux.1-SCHNELL')?.id, 'flux1-schnell');
    assert.equal(modelForRepo('someone/else'), undefined);
    assert.equal(modelForDitFile('majicflus_v134.safetensors')?.id, 'majicflus-v1');
    assert.equal(modelForDitFile('flux1-dev.safetensors')?.id, 'flux1-dev');
    assert.equal(modelForDitFile('ae.safetensors'), undefined);
  });

  describe('planDownload', () => {
    it('flux1-dev from Hugging Face (default): every file into <dest>/black-forest-labs/FLUX.1-dev/', () => {
      const plan = planDownload({ model: 'flux1-dev', dest: DEST });
      const dir = path.join(DEST, 'black-forest-labs', 'FLUX.1-dev');
      assert.deepEqual(plan.repos, [registryModel('flux1-dev').sources[0]]);
      assert.ok(plan.items.every((i) => i.repo.hub === 'huggingface' && i.repo.repo === 'black-forest-labs/FLUX.1-dev' && i.repo.gated === true));
      assert.deepEqual(plan.items.map((i) => i.path), [
        'flux1-dev.safetensors', 'scheduler/scheduler_config.json',
        'text_encoder/config.json', 'text_encoder/model.safetensors',
        'text_encoder_2/config.json', 'text_encoder_2/model.safetensors.index.json', 'text_encoder_2/model-00001-of-00002.safetensors', 'text_encoder_2/model-00002-of-00002.safetensors',
        'ae.safetensors',
        'tokenizer/vocab.json', 'tokenizer/merges.txt', 'tokenizer/special_tokens_map.json', 'tokenizer/tokenizer_config.json',
        'tokenizer_2/tokenizer.json', 'tokenizer_2/special_tokens_map.json', 'tokenizer_2/tokenizer_config.json',
      ]);
      for (const i of plan.items) assert.equal(i.dest, path.join(dir, ...i.path.split('/')));
      assert.equal(plan.items.find((i) => i.path === 'ae.safetensors')!.dest, path.join(DEST, 'black-forest-labs', 'FLUX.1-dev', 'ae.safetensors'));
      assert.deepEqual(plan.spec, { dir, name: 'FLUX.1-dev' }, 'the DiT in the folder is found there, as discovery finds it');
      assert.ok(plan.items.every((i) => i.size === undefined && i.sha256 === undefined), 'sizes and checksums come from the hub listing');
    });

    it('flux1-dev from ModelScope: same local layout, the ModelScope repository', () => {
      const plan = planDownload({ model: 'flux1-dev', hub: 'modelscope', dest: DEST });
      assert.deepEqual(plan.repos, [{ hub: 'modelscope', repo: 'black-forest-labs/FLUX.1-dev' }]);
      assert.equal(plan.items.find((i) => i.path === 'flux1-dev.safetensors')!.dest, path.join(DEST, 'black-forest-labs', 'FLUX.1-dev', 'flux1-dev.safetensors'));
    });

    it('flux1-schnell: its own repository and DiT file', () => {
      const plan = planDownload({ model: 'flux1-schnell', dest: DEST, parts: ['dit'] });
      const dir = path.join(DEST, 'black-forest-labs', 'FLUX.1-schnell');
      assert.deepEqual(plan.items.map((i) => [i.repo.hub, i.repo.repo, i.path, i.dest]), [
        ['huggingface', 'black-forest-labs/FLUX.1-schnell', 'flux1-schnell.safetensors', path.join(dir, 'flux1-schnell.safetensors')],
        ['huggingface', 'black-forest-labs/FLUX.1-schnell', 'scheduler/scheduler_config.json', path.join(dir, 'scheduler', 'scheduler_config.json')],
      ]);
      assert.deepEqual(plan.spec, { dir, name: 'FLUX.1-schnell' });
    });

    it("majicflus-v1: the DiT from MAILAND/majicflus_v1, the other parts from FLUX.1-dev's repository on the same hub", () => {
      const plan = planDownload({ model: 'majicflus-v1', dest: DEST });
      const base = path.join(DEST, 'black-forest-labs', 'FLUX.1-dev');
      const dit = path.join(DEST, 'MAILAND', 'majicflus_v1', 'majicflus_v134.safetensors');
      assert.deepEqual(plan.repos, [{ hub: 'modelscope', repo: 'MAILAND/majicflus_v1' }, { hub: 'modelscope', repo: 'black-forest-labs/FLUX.1-dev' }]);
      assert.equal(plan.items[0].dest, dit);
      assert.ok(plan.items.slice(1).every((i) => i.repo.repo === 'black-forest-labs/FLUX.1-dev' && i.repo.hub === 'modelscope' && i.dest.startsWith(base + path.sep)));
      assert.ok(!plan.items.some((i) => i.path === 'flux1-dev.safetensors'), "FLUX.1-dev's own DiT is not fetched");
      assert.deepEqual(plan.spec, { dir: base, transformer: dit, name: 'majicflus v1' });
    });

    it("falls back to the base model's first source when the requested hub does not host it", () => {
      const reg = structuredClone(loadRegistry()) as Registry;
      // A fine-tune on Hugging Face whose base is only on ModelScope.
      reg.models.find((m) => m.id === 'flux1-dev')!.sources = [{ hub: 'modelscope', repo: 'black-forest-labs/FLUX.1-dev' }];
      reg.models.find((m) => m.id === 'majicflus-v1')!.sources = [{ hub: 'huggingface', repo: 'someone/majicflus' }];
      const plan = planDownload({ model: 'majicflus-v1', hub: 'huggingface', dest: DEST }, validateRegistry(reg));
      assert.deepEqual(plan.repos.map((r) => `${r.hub}:${r.repo}`), ['huggingface:someone/majicflus', 'modelscope:black-forest-labs/FLUX.1-dev']);
      assert.equal(plan.spec.transformer, path.join(DEST, 'someone', 'majicflus', 'majicflus_v134.safetensors'));
    });

    it('only the requested parts (and can exclude parts already present)', () => {
      const plan = planDownload({ model: 'majicflus-v1', dest: DEST, parts: ['t5', 'tokenizer2'] });
      assert.deepEqual(plan.items.map((i) => i.path), [
        'text_encoder_2/config.json', 'text_encoder_2/model.safetensors.index.json', 'text_encoder_2/model-00001-of-00002.safetensors', 'text_encoder_2/model-00002-of-00002.safetensors',
        'tokenizer_2/tokenizer.json', 'tokenizer_2/special_tokens_map.json', 'tokenizer_2/tokenizer_config.json',
      ]);
      assert.deepEqual(plan.repos, [{ hub: 'modelscope', repo: 'black-forest-labs/FLUX.1-dev' }]);
      assert.equal(plan.spec.transformer, path.join(DEST, 'MAILAND', 'majicflus_v1', 'majicflus_v134.safetensors'), 'the spec names the whole model');
      const rest = planDownload({ model: 'flux1-dev', dest: DEST }, loadRegistry(), { exclude: ['dit', 't5'] });
      assert.ok(!rest.items.some((i) => i.path.endsWith('.safetensors') && (i.path.startsWith('flux1') || i.path.startsWith('text_encoder_2/'))));
    });

    it('errors: unknown model, a hub that does not offer it, unknown part', () => {
      assert.throws(() => planDownload({ model: 'flux2-max', dest: DEST }), (e: Error) => e instanceof UserError && /Unknown model "flux2-max".*flux1-dev, flux1-schnell, majicflus-v1/.test(e.message));
      assert.throws(() => planDownload({ model: 'majicflus-v1', hub: 'huggingface', dest: DEST }), (e: Error) => e instanceof UserError && /majicflus v1 is not offered on Hugging Face; download it from ModelScope/.test(e.message));
      assert.throws(() => planDownload({ model: 'flux1-dev', dest: DEST, parts: ['unet' as never] }), /Unknown part "unet"/);
      assert.throws(() => registryModel('nope'), UserError);
    });
  });

  describe('validation', () => {
    const bad = (mutate: (r: Record<string, any>) => void, pattern: RegExp) => {
      const r = structuredClone(loadRegistry()) as unknown as Record<string, any>;
      mutate(r);
      assert.throws(() => validateRegistry(r, 'test.json'), (e: Error) => e instanceof RegistryError && e.message.startsWith('test.json: ') && pattern.test(e.message), pattern.source);
    };

    it('says what is wrong and where', () => {
      bad((r) => (r.version = 2), /version: must be 1/);
      bad((r) => (r.models = []), /models: must be a non-empty list/);
      bad((r) => (r.models[1].id = 'flux1-dev'), /model "flux1-dev": the id is used twice/);
      bad((r) => (r.models[0].sources[0].hub = 'civitai'), /sources\[0\]\.hub: must be one of huggingface, modelscope/);
      bad((r) => (r.models[0].sources[0].repo = 'no-slash'), /sources\[0\]\.repo: must be "owner\/name"/);
      bad((r) => r.models[0].parts.pop(), /parts: lacks tokenizer2/);
      bad((r) => (r.models[0].parts[1].files[0].path = '../ae.safetensors'), /files\[0\]\.path: must be a relative path/);
      bad((r) => (r.models[2].parts[1].from = 'flux3'), /from: no model "flux3"/);
      bad((r) => (r.models[0].parts[0].files[0].sha256 = 'abc'), /sha256: must be 64 lower-case hex digits/);
      bad((r) => (r.models[0].id = 'Flux Dev'), /^test\.json: models\[0\]\.id: must be lower-case letters/);
      bad((r) => (r.models[0].name = ' '), /^test\.json: model "flux1-dev"\.name: must be a non-empty string/);
      bad((r) => (r.models = {}), /^test\.json: models: must be a non-empty list/);
      bad((r) => (r.models[0].sources.push({ ...r.models[0].sources[0] })), /model "flux1-dev"\.sources\[2\]\.hub: huggingface is listed twice/);
    });

    it("holds a model's defaults to params.ts's limits, and to the three fields it knows", () => {
      bad((r) => (r.models[1].defaults.steps = -1), /model "flux1-schnell"\.defaults\.steps: steps must be a whole number from 1 to 200, got -1/);
      bad((r) => (r.models[1].defaults.steps = LIMITS.steps.max + 1), /defaults\.steps: steps must be a whole number from 1 to 200/);
      bad((r) => (r.models[1].defaults.t5MaxLength = 1), /defaults\.t5MaxLength: T5 max length must be a whole number from 2 to 512/);
      bad((r) => (r.models[1].defaults.sampler = 'euler'), /defaults\.sampler: is not a field \(the fields are steps, guidance, t5MaxLength\)/);
      const r = structuredClone(loadRegistry());
      r.models[1].defaults = { steps: LIMITS.steps.max, guidance: LIMITS.guidance.max, t5MaxLength: LIMITS.t5MaxLength.max };
      assert.deepEqual(validateRegistry(r).models[1].defaults, r.models[1].defaults);
    });

    it('a registry file that is not JSON or cannot be read', () => {
      const t = tempDir();
      try {
        const f = path.join(t.dir, 'r.json');
        fs.writeFileSync(f, '{ "version": 1, ');
        assert.throws(() => loadRegistry(f), (e: Error) => e instanceof RegistryError && e.message.includes(f) && /not valid JSON/.test(e.message));
        assert.throws(() => loadRegistry(path.join(t.dir, 'none.json')), /cannot read: ENOENT/);
      } finally {
        t.cleanup();
      }
    });
  });
});
