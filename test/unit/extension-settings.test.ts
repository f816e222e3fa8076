import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { DEFAULTS, expandPath, modelSpec, serverKey, serverSettings, usesDemoModel, validateSettings, withSearchPaths } from '../../src/extension/settings';

const from = (values: Record<string, unknown>) => (key: string) => values[key];

describe('extension: settings validation', () => {
  it('gives the defaults for nothing set, with no problems', () => {
    const { settings, problems } = validateSettings(from({}));
    assert.deepEqual(problems, []);
    assert.deepEqual(settings, DEFAULTS);
    assert.ok(usesDemoModel(settings));
    assert.deepEqual(modelSpec(settings), {});
  });

  it('accepts good values', () => {
    const ws = '/home/u/project';
    const { settings, problems } = validateSettings(
      from({
        'model.path': '${workspaceFolder}/models/FLUX.1-dev',
        'model.transformer': '~/models/majicflus_v134.safetensors',
        weights: 'fp16',
        memory: 'sequential',
        memoryBudgetGB: 12,
        executionProvider: 'cuda',
        executionProviderPerStage: { t5: 'cpu', dit: 'cuda' },
        'output.folder': 'out',
        'output.fileName': '{date}/{seed}.png',
        'defaults.steps': 20,
        'defaults.width': 768,
        'defaults.height': 1344,
        'defaults.guidance': 4,
        'defaults.seed': 7,
        'server.idleShutdownMinutes': 0,
        'server.remoteHost': '127.0.0.1',
        'server.remotePort': 9000,
      }),
      { workspaceFolder: ws, home: '/home/u', exists: () => true },
    );
    assert.deepEqual(problems, []);
    assert.equal(settings.model.path, path.normalize('/home/u/project/models/FLUX.1-dev'));
    assert.equal(settings.model.transformer, path.normalize('/home/u/models/majicflus_v134.safetensors'));
    assert.deepEqual(serverSettings(settings), {
      model: { dir: settings.model.path, transformer: settings.model.transformer },
      weights: 'fp16',
      ep: 'cuda',
      memory: 'sequential',
      stageEp: { t5: 'cpu', dit: 'cuda' },
      memoryBudget: 12 * 2 ** 30,
    });
    assert.equal(settings.defaults.width, 768);
    assert.equal(settings.server.remotePort, 9000);
  });

  it('weight cache: the folder (~ and ${workspaceFolder} expanded) and the GiB limit reach the server as cacheDir and cacheMaxBytes; unset, neither is sent', () => {
    const ws = '/home/u/project';
    const { settings, problems } = validateSettings(from({ 'weightCache.folder': '~/big-disk/flux-cache', 'weightCache.maxGB': 40 }), { workspaceFolder: ws, home: '/home/u', exists: () => true });
    assert.deepEqual(problems, []);
    const s = serverSettings(settings);
    assert.equal(s.cacheDir, path.normalize('/home/u/big-disk/flux-cache'));
    assert.equal(s.cacheMaxBytes, 40 * 2 ** 30);
    const none = serverSettings(validateSettings(from({}), { workspaceFolder: ws, home: '/home/u' }).settings);
    assert.ok(!('cacheDir' in none) && !('cacheMaxBytes' in none));
    const bad = validateSettings(from({ 'weightCache.maxGB': -3 }), { workspaceFolder: ws, home: '/home/u' });
    assert.equal(bad.settings.weightCache.maxGB, 0);
    assert.deepEqual(bad.problems.map((p) => p.key), ['majicflux.weightCache.maxGB']);
  });

  it('reports each bad value with its key and falls back to the default', () => {
    const { settings, problems } = validateSettings(
      from({
        'model.path': 'models/missing',
        weights: 'int5',
        memory: 42,
        executionProviderPerStage: { unet: 'cpu', t5: 'tpu' },
        'output.fileName': '{seed}.jpg',
        'defaults.steps': 0,
        'defaults.width': 1000,
        'defaults.height': 'big',
        'defaults.guidance': -1,
        'defaults.seed': 1.5,
        'server.remoteHost': 'bad host!',
        'server.remotePort': 70000,
      }),
      { workspaceFolder: '/ws', exists: () => false },
    );
    assert.deepEqual(
      problems.map((p) => [p.key, p.code]),
      [
        ['majicflux.executionProviderPerStage', 'badStageKey'],
        ['majicflux.executionProviderPerStage', 'notOneOf'],
        ['majicflux.output.fileName', 'badTemplate'],
        ['majicflux.server.remoteHost', 'remoteHost'],
        ['majicflux.model.path', 'pathMissing'],
        ['majicflux.weights', 'notOneOf'],
        ['majicflux.memory', 'notOneOf'],
        ['majicflux.defaults.steps', 'outOfRange'],
        ['majicflux.defaults.width', 'notMultipleOf16'],
        ['majicflux.defaults.height', 'wrongType'],
        ['majicflux.defaults.guidance', 'outOfRange'],
        ['majicflux.defaults.seed', 'wrongType'],
        ['majicflux.server.remotePort', 'outOfRange'],
      ],
    );
    assert.equal(problems.find((p) => p.code === 'pathMissing')!.args.path, path.normalize('/ws/models/missing'));
    assert.equal(settings.weights, DEFAULTS.weights);
    assert.equal(settings.output.fileName, DEFAULTS.output.fileName);
    assert.deepEqual(settings.defaults, DEFAULTS.defaults);
    assert.equal(settings.server.remoteHost, '');
  });

  it('a negative prompt over the limit is reported as too long (was: "expected a string"), and a file where a folder belongs as a file', () => {
    const files = new Set([path.normalize('/ws/notes.txt'), path.normalize('/home/u/cache.bin')]);
    const { settings, problems } = validateSettings(
      from({
        'defaults.negativePrompt': 'blurry, '.repeat(3000),
        'loras.folder': 'notes.txt',
        'weightCache.folder': '~/cache.bin',
        'models.downloadFolder': '/ws/notes.txt',
        'models.searchPaths': ['/ws/notes.txt', '/ws/models'],
      }),
      { workspaceFolder: '/ws', home: '/home/u', exists: () => true, isFile: (p) => files.has(p) },
    );
    assert.deepEqual(
      problems.map((p) => [p.key, p.code, p.args]),
      [
        ['majicflux.weightCache.folder', 'notAFolder', { path: path.normalize('/home/u/cache.bin') }],
        ['majicflux.defaults.negativePrompt', 'tooLong', { length: 24000, max: 20000 }],
        ['majicflux.loras.folder', 'notAFolder', { path: path.normalize('/ws/notes.txt') }],
        ['majicflux.models.searchPaths', 'notAFolder', { path: path.normalize('/ws/notes.txt') }],
        ['majicflux.models.downloadFolder', 'notAFolder', { path: path.normalize('/ws/notes.txt') }],
      ],
    );
    assert.equal(settings.defaults.negativePrompt, '');
  });

  it('a relative path with no folder open is reported and not used (was: taken from the extension host\'s working folder), ~ still works', () => {
    const { settings, problems } = validateSettings(
      from({ 'model.path': 'models/flux-dev', 'loras.folder': './loras', 'weightCache.folder': 'cache', 'models.downloadFolder': '~/models', 'models.searchPaths': ['more', '/abs/models'] }),
      { home: '/home/u', exists: () => true },
    );
    assert.deepEqual(
      problems.map((p) => [p.key, p.code, p.args.value]),
      [
        ['majicflux.model.path', 'relativeNoFolder', 'models/flux-dev'],
        ['majicflux.weightCache.folder', 'relativeNoFolder', 'cache'],
        ['majicflux.loras.folder', 'relativeNoFolder', './loras'],
        ['majicflux.models.searchPaths', 'relativeNoFolder', 'more'],
      ],
    );
    assert.deepEqual([settings.model.path, settings.loras.folder, settings.weightCache.folder, settings.models.downloadFolder, settings.models.searchPaths], ['', '', '', path.normalize('/home/u/models'), [path.normalize('/abs/models')]]);
    // No relative path reaches the server; the run is refused on the model's problem (modelProblem.modelPathProblem), not given the demo model.
  });

  it('output.openResult: beside by default, active or none when asked, anything else reported (issue 15 item 5)', () => {
    assert.equal(validateSettings(from({})).settings.output.openResult, 'beside');
    assert.equal(validateSettings(from({ 'output.openResult': 'none' })).settings.output.openResult, 'none');
    const bad = validateSettings(from({ 'output.openResult': 'left' }));
    assert.equal(bad.settings.output.openResult, 'beside');
    assert.deepEqual(bad.problems.map((p) => [p.key, p.code]), [['majicflux.output.openResult', 'notOneOf']]);
  });

  it('Add Search Path keeps what models.searchPaths holds, even of the wrong type, and adds each folder once', () => {
    assert.deepEqual(withSearchPaths(undefined, ['/m/a', '/m/a']), ['/m/a']);
    assert.deepEqual(withSearchPaths(['/m/a', '/m/b'], ['/m/b', '/m/c']), ['/m/a', '/m/b', '/m/c']);
    // A string where a list belongs (was: spread into ['/', 'm', '/', 'x', …] and written back to settings.json).
    assert.deepEqual(withSearchPaths('/m/x', ['/m/c']), ['/m/x', '/m/c']);
    assert.deepEqual(withSearchPaths(['/m/a', 5, null], ['/m/c']), ['/m/a', '/m/c']);
    assert.deepEqual(withSearchPaths({ a: 1 }, ['/m/c']), ['/m/c']);
  });

  it('expands paths', () => {
    const ctx = { workspaceFolder: '/ws', home: '/h' };
    assert.equal(expandPath('', ctx), '');
    assert.equal(expandPath('~', ctx), path.normalize('/h'));
    assert.equal(expandPath('${userHome}/m', ctx), path.normalize('/h/m'));
    assert.equal(expandPath('rel/m', ctx), path.normalize('/ws/rel/m'));
    assert.equal(expandPath('/abs/m', ctx), path.normalize('/abs/m'));
  });

  it('changes the server key only for settings the server cares about', () => {
    const a = validateSettings(from({})).settings;
    const b = validateSettings(from({ 'defaults.steps': 4, 'output.folder': 'x' })).settings;
    const c = validateSettings(from({ weights: 'fp16' })).settings;
    assert.equal(serverKey(a), serverKey(b));
    assert.notEqual(serverKey(a), serverKey(c));
  });
});
