import * as assert from 'node:assert/strict';
import { checkTemplate, renderTemplate, slugify, TemplateValues, withPngExtension } from '../../src/shared/fileName';

const values = (over: Partial<TemplateValues> = {}): TemplateValues => ({
  date: new Date(2026, 10, 5, 9, 7, 3),
  seed: 42,
  prompt: 'A lighthouse on a cliff at dawn, oil painting!',
  steps: 28,
  width: 1024,
  height: 768,
  guidance: 3.5,
  index: 1,
  model: 'FLUX.1-dev',
  ...over,
});

describe('extension: file-name template', () => {
  it('renders the default template', () => {
    assert.equal(renderTemplate('{date}-{seed}-{slug}.png', values()), '2026-11-05-42-a-lighthouse-on-a-cliff-at-dawn-oil-painting.png');
  });

  it('renders every field and sub-folders', () => {
    assert.equal(
      renderTemplate('{model}/{date}_{time}/{seed}-{steps}-{width}x{height}-g{guidance}-{index}.png', values({ index: 3 })),
      'flux-1-dev/2026-11-05_090703/42-28-1024x768-g3.5-3.png',
    );
  });

  it('slugs: any script, short, never empty', () => {
    assert.equal(slugify('一只猫，坐在窗边'), '一只猫-坐在窗边');
    assert.equal(slugify('  !!! ?? '), 'image');
    assert.equal(slugify('Crème Brûlée'), 'crème-brûlée');
    const long = slugify('word '.repeat(50));
    assert.ok(long.length <= 48 && !long.endsWith('-'));
    assert.equal(slugify('x'.repeat(100)).length, 48);
  });

  it('always gives a safe relative .png path, whatever the template', () => {
    for (const t of ['', '   ', '/abs/{seed}', 'C:\\x\\{seed}', '../../{seed}.png', '{nope}', 'a:b*c?.png', '{seed}.jpg', '..', '{', '}}{{']) {
      const out = renderTemplate(t, values());
      assert.ok(out.endsWith('.png'), `${t} → ${out}`);
      assert.ok(!out.startsWith('/') && !/^[A-Za-z]:/.test(out), `${t} → ${out}`);
      assert.ok(!out.split('/').includes('..'), `${t} → ${out}`);
      assert.ok(!/[<>:"|?*\\]/.test(out), `${t} → ${out}`);
    }
  });

  it('names Windows can create: no device names (CON, NUL, COM1, …), no trailing dots or spaces', () => {
    assert.equal(renderTemplate('{slug}.png', values({ prompt: 'Con' })), '_con.png');
    assert.equal(renderTemplate('{slug}/{seed}.png', values({ prompt: 'nul' })), '_nul/42.png');
    assert.equal(renderTemplate('{model}/{seed}.png', values({ model: 'COM1' })), '_com1/42.png');
    assert.equal(renderTemplate('out. /{seed}.png', values()), 'out/42.png');
    assert.equal(renderTemplate('aux.txt/{seed}', values()), '_aux.txt/42.png');
    assert.equal(renderTemplate('console/{seed}.png', values()), 'console/42.png', 'only whole device names');
  });

  it('checks templates with reasons', () => {
    assert.deepEqual(checkTemplate('{date}-{seed}-{slug}.png'), []);
    assert.deepEqual(checkTemplate('sub/{index}.PNG'), []);
    assert.deepEqual(checkTemplate(''), [{ kind: 'empty' }]);
    assert.deepEqual(checkTemplate('{seeds}.png'), [{ kind: 'unknownField', field: 'seeds' }]);
    assert.deepEqual(checkTemplate('{seed.png'), [{ kind: 'unclosedBrace' }]);
    assert.deepEqual(checkTemplate('/tmp/{seed}.png'), [{ kind: 'absolute' }]);
    assert.deepEqual(checkTemplate('../{seed}.png'), [{ kind: 'parent' }]);
    assert.deepEqual(checkTemplate('{seed}.jpg'), [{ kind: 'extension', ext: 'jpg' }]);
    assert.deepEqual(checkTemplate('{seed}'), [{ kind: 'extension', ext: '' }]);
    assert.deepEqual(checkTemplate('a?{seed}.png'), [{ kind: 'badCharacter', char: '?' }]);
  });
});

describe('withPngExtension (a name typed in the save dialog)', () => {
  it('adds .png unless the name ends in it in any case: X.PNG is not saved as X.PNG.png', () => {
    assert.equal(withPngExtension('/home/me/cat'), '/home/me/cat.png');
    assert.equal(withPngExtension('/home/me/cat.PNG'), '/home/me/cat.PNG');
    assert.equal(withPngExtension('/home/me/cat.Png'), '/home/me/cat.Png');
    assert.equal(withPngExtension('/home/me/cat.png'), '/home/me/cat.png');
    assert.equal(withPngExtension('/home/me/cat.png.jpg'), '/home/me/cat.png.jpg.png');
  });
});
