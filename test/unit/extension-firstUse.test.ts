// Issue 15 item 10: what a first-time user sees around models and menus.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasModel, viewDescription } from '../../src/extension/modelTree';
import type { FoundModel, MachineInfo } from '../../src/shared/models';

const ROOT = path.join(__dirname, '..', '..');
const json = (f: string) => JSON.parse(fs.readFileSync(path.join(ROOT, f), 'utf8')) as Record<string, unknown>;
const t = (m: string, ...a: (string | number | boolean)[]) => m.replace(/\{(\d+)\}/g, (_, i: string) => String(a[Number(i)]));
const machine: MachineInfo = { platform: 'linux', arch: 'x64', cpus: 2, totalMemory: 16 * 2 ** 30, freeMemory: 8 * 2 ** 30 };
const model = (complete: boolean) => ({ id: 'custom', name: 'm', where: 'workspace', root: '/m', parts: [], complete, spec: { dir: '/m' } }) as unknown as FoundModel;

interface Contributes {
  walkthroughs: { steps: { id: string; completionEvents: string[] }[] }[];
  commands: { command: string; title: string; category?: string }[];
  menus: Record<string, { command: string; when?: string }[]>;
}

describe('extension: first use — the walkthrough, the Models view, the context menu, the display language (issue 15 items 10, 13)', () => {
  const contributes = (json('package.json') as { contributes: Contributes }).contributes;

  it('ticks "Get a model" only when there is a model, not when Find Models ran and found none', () => {
    const step = contributes.walkthroughs[0].steps.find((s) => s.id === 'getModel')!;
    assert.deepEqual(step.completionEvents, ['onContext:majicflux.models.hasModel']);
    assert.equal(hasModel([], true), false, 'a search that found nothing');
    assert.equal(hasModel([model(false)], true), false, 'only an incomplete model');
    assert.equal(hasModel([model(true)], true), true);
    assert.equal(hasModel(undefined, false), true, 'a model configured');
  });

  it('the Models view says the demo model is in use when it is', () => {
    assert.equal(viewDescription(undefined, true, t), 'in use: the demo model (random weights)');
    assert.equal(viewDescription(machine, true, t), 'in use: the demo model (random weights) · 16.0 GiB RAM');
    assert.equal(viewDescription(machine, false, t), '16.0 GiB RAM');
    assert.equal(viewDescription(undefined, false, t), undefined);
  });

  it('names MajicFLUX in every editor context-menu entry (menus show no category), in English and Chinese', () => {
    const entries = contributes.menus['editor/context'];
    assert.ok(entries.length >= 1);
    for (const nls of ['package.nls.json', 'package.nls.zh-cn.json']) {
      const strings = json(nls) as Record<string, string>;
      for (const e of entries) {
        const cmd = contributes.commands.find((c) => c.command === e.command)!;
        const title = strings[cmd.title.replace(/^%|%$/g, '')];
        assert.match(title, /MajicFLUX/, `${nls}: ${e.command} shows "${title}"`);
      }
    }
    // The menu's twin stays out of the palette, where the original (with its category) is.
    assert.ok(contributes.menus.commandPalette.some((m) => m.command === 'majicflux.generateFromSelectionMenu' && m.when === 'false'));
  });

  it('README and the walkthrough say the extension follows VS Code\'s display language (the language pack), not --locale alone (item 13)', () => {
    const walkthrough = contributes.walkthroughs[0].steps.map((st) => (st as { media?: { markdown?: string } }).media?.markdown).filter((m): m is string => !!m);
    const texts = { README: fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'), walkthrough: walkthrough.map((m) => fs.readFileSync(path.join(ROOT, m), 'utf8')).join('\n') };
    for (const [name, text] of Object.entries(texts)) {
      assert.match(text, /Configure Display Language/, name);
      assert.match(text, /Language Pack/, name);
      assert.match(text, /--locale/, name);
      assert.match(text, /语言包/, `${name}: said in Chinese too`);
    }
  });
});
