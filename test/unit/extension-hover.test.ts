import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { imageHoverMarkdown, THUMBNAIL_WIDTH } from '../../src/extension/fluxFile/hoverMarkdown';
import type { ImageMetadata } from '../../src/shared/params';

const ROOT = path.join(__dirname, '..', '..');
const t = (m: string, ...a: (string | number)[]) => m.replace(/\{(\d+)\}/g, (_, i: string) => String(a[Number(i)]));
const params: ImageMetadata = { prompt: 'a fox', seed: 42, steps: 4, width: 512, height: 512, guidance: 3.5, shift: 'dynamic', t5MaxLength: 512, model: 'flux-tiny', weights: 'fp8', sampler: 'euler', software: 'MajicFLUX 0.1.0' };

describe('extension: the .flux hover and the glyphs of lenses and the status bar (issue 15 item 12)', () => {
  it('puts the parameter table above a small thumbnail', () => {
    const md = imageHoverMarkdown({ file: '/ws/generated/fox.png', params, created: 0 }, 2, t);
    const table = md.indexOf('| seed | 42 |');
    const image = md.indexOf('![');
    assert.ok(table >= 0, md);
    assert.ok(image > table, `the thumbnail comes after the table:\n${md}`);
    assert.match(md, /\| size \| 512 × 512 \|/);
    assert.match(md, /2 images/);
    assert.match(md.slice(image), new RegExp(`^!\\[fox\\\\\\.png\\]\\(file:///ws/generated/fox\\.png\\|width=${THUMBNAIL_WIDTH}\\)`));
    assert.ok(THUMBNAIL_WIDTH <= 160, 'small enough that the table above it shows without scrolling');
  });

  it('uses codicons, not emoji, in CodeLens and status bar texts (no emoji font on many machines)', () => {
    const pictograph = /\p{Extended_Pictographic}/u;
    const en = JSON.parse(fs.readFileSync(path.join(ROOT, 'l10n', 'bundle.l10n.json'), 'utf8')) as Record<string, string>;
    const zh = JSON.parse(fs.readFileSync(path.join(ROOT, 'l10n', 'bundle.l10n.zh-cn.json'), 'utf8')) as Record<string, string>;
    let checked = 0;
    for (const f of ['src/extension/fluxFile/codeLens.ts', 'src/extension/statusBar.ts']) {
      const src = fs.readFileSync(path.join(ROOT, f), 'utf8');
      const code = src.replace(/^\s*\/\/.*$/gm, '');
      assert.ok(!pictograph.test(code), `${f}: ${code.match(pictograph)?.[0]}`);
      for (const m of src.matchAll(/\bt\(\s*'((?:[^'\\]|\\.)*)'/g)) {
        checked++;
        for (const s of [m[1], en[m[1]], zh[m[1]]]) assert.ok(s !== undefined && !pictograph.test(s), `${f}: "${m[1]}" → "${s}"`);
      }
    }
    assert.ok(checked > 10, `${checked} strings checked`);
    assert.ok(en['$(play) Generate'] && en['$(file-media) 1 image'], 'the lens glyphs are codicons');
  });
});

describe('extension: the .flux hover shows what issue 13 adds, only when used', () => {
  it('lists true CFG with its negative prompt, LoRAs, the input image with its strength and the hires pass', () => {
    const made: ImageMetadata = { ...params, negativePrompt: 'blurry', trueCfgScale: 4, loras: [{ name: 'film-grain', strength: 0.8 }], image: 'start.png', strength: 0.5, hires: { scale: 2, strength: 0.45, steps: 10, upscale: 'image', width: 1024, height: 1024 } };
    const md = imageHoverMarkdown({ file: '/ws/generated/fox.png', params: made, created: 0 }, 1, t);
    assert.match(md, /\| true CFG \| 4 \|\n\| negative prompt \| blurry \|/);
    assert.match(md, /\| LoRAs \| film\\-grain 0\\\.8 \|/);
    assert.match(md, /\| input image \| start\\\.png at strength 0\\\.5 \|/);
    assert.match(md, /\| hires pass \| ×2, strength 0\\\.45, 10 steps \|/);
    const plain = imageHoverMarkdown({ file: '/ws/generated/fox.png', params, created: 0 }, 1, t);
    assert.doesNotMatch(plain, /true CFG|LoRAs|input image|hires pass/);
  });
});
