// Issue 16 item 6: the "re-run from this image" reader against hostile PNGs — quadratic infotext,
// zlib bombs in zTXt/iTXt, huge files, FIFOs and devices named .png.

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { insertChunks, iTXtChunk, parseA1111Parameters, pngChunk, readPngParameters, readPngTextChunks } from '../../src/inference/formats/png';
import { tempDir } from '../helpers/writeSafetensors';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A PNG skeleton (IHDR, the given chunks, one empty IDAT, IEND): enough for the text reader. */
function png(chunks: Buffer[]): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const base = Buffer.concat([SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(4))), pngChunk('IEND', Buffer.alloc(0))]);
  return insertChunks(base, chunks);
}

/** A zTXt chunk whose text inflates to `bytes` zero bytes (a zlib bomb: about 1000:1). */
function bombChunk(keyword: string, bytes: number): Buffer {
  return pngChunk('zTXt', Buffer.concat([Buffer.from(`${keyword}\0\0`, 'latin1'), zlib.deflateSync(Buffer.alloc(bytes), { level: 9 })]));
}

/** Runs `code` in a child process with the PNG reader as `png`, so a reader that blocks or explodes cannot take the suite down. */
function runIsolated(code: string, timeoutMs = 15000): { stdout: string; stderr: string; timedOut: boolean } {
  const reader = JSON.stringify(path.resolve(__dirname, '../../src/inference/formats/png'));
  const r = spawnSync(process.execPath, ['--max-old-space-size=512', '-r', 'tsx/cjs', '-e', `const png = require(${reader});\n${code}`], { encoding: 'utf8', timeout: timeoutMs });
  return { stdout: r.stdout, stderr: r.stderr, timedOut: r.error !== undefined || r.signal !== null };
}

function timed<T>(fn: () => T): { value: T; ms: number } {
  const t0 = process.hrtime.bigint();
  const value = fn();
  return { value, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

describe('png: hostile files for the re-run reader (issue 16)', function () {
  this.timeout(60000);
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('png-hostile-');
  });
  after(() => tmp.cleanup());
  const at = (name: string) => path.join(tmp.dir, name);

  it('parses 200,000-character infotext in linear time, whatever its shape', () => {
    const n = 200_000;
    const shapes: Record<string, string> = {
      'one long word run, no colon': 'a '.repeat(n / 2),
      'word run ending in a colon-less comma list': `${'ab-c/d '.repeat(n / 7)},x`,
      'an unclosed quoted value': `Steps: "${'\\"x'.repeat(n / 3)}`,
      'many short fields': 'Ab: 1, '.repeat(n / 7),
      'a key then a huge value': `Steps: ${'x'.repeat(n)}, Seed: 1, Size: 8x8`,
      'many lines': 'p\n'.repeat(n / 2) + 'Steps: 1, Seed: 2, Size: 16x16',
    };
    for (const [what, text] of Object.entries(shapes)) {
      const { ms } = timed(() => parseA1111Parameters(text));
      assert.ok(ms < 300, `${what}: ${ms.toFixed(0)} ms`);
    }
    // Still a parser: the last case gives its fields and prompt.
    const p = parseA1111Parameters(shapes['many lines']);
    assert.equal(p.steps, 1);
    assert.equal(p.seed, 2);
    assert.equal(p.width, 16);
    assert.equal(p.prompt, 'p\n'.repeat(n / 2).slice(0, -1));
  });

  it('inflates each text chunk only up to a bound, and all of them together up to another', () => {
    // 8 chunks of 32 MiB: 256 MiB of text from a file of about 256 KB.
    const file = png([iTXtChunk('parameters', 'a cat\nSteps: 4, Seed: 7, Size: 16x16'), ...Array.from({ length: 8 }, (_, i) => bombChunk(`bomb${i}`, 32 * 2 ** 20))]);
    assert.ok(file.length < 1_000_000);
    const { value: chunks, ms } = timed(() => readPngTextChunks(file));
    assert.deepEqual(chunks.map((c) => c.keyword), ['parameters'], 'the bombs are skipped, the real chunk kept');
    assert.ok(ms < 3000, `${ms.toFixed(0)} ms`);
  });

  it('still reads a large legitimate compressed chunk (a 1 MB ComfyUI-style workflow)', () => {
    const workflow = JSON.stringify({ nodes: Array.from({ length: 16_000 }, (_, i) => ({ id: i, type: 'KSampler', widgets_values: [i, 'euler', 'simple'] })) });
    assert.ok(workflow.length > 1_000_000);
    const file = png([iTXtChunk('workflow', workflow, { compress: true })]);
    assert.equal(readPngTextChunks(file)[0].text, workflow);
  });

  it('keeps text chunks named like Object.prototype members as text, without touching the prototype', async () => {
    const file = png([pngChunk('tEXt', Buffer.from('constructor\0made by x', 'latin1')), pngChunk('tEXt', Buffer.from('__proto__\0{"polluted":1}', 'latin1'))]);
    const r = await readPngParameters(file);
    assert.equal(r.text.constructor, 'made by x');
    assert.equal(r.text.__proto__, '{"polluted":1}');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(r.params, undefined);
  });

  it('reads only the head of a huge file (text chunks come before the image data)', async () => {
    const file = at('huge.png');
    fs.writeFileSync(file, png([iTXtChunk('parameters', 'a dog\nSteps: 4, Seed: 9, Size: 16x16')]));
    fs.truncateSync(file, 2 ** 30); // 1 GiB, sparse
    global.gc?.();
    const before = process.memoryUsage().rss;
    const r = await readPngParameters(file);
    const grew = process.memoryUsage().rss - before;
    assert.equal(r.params?.seed, 9);
    assert.ok(grew < 200 * 2 ** 20, `RSS grew by ${(grew / 2 ** 20).toFixed(0)} MiB`);
  });

  it('refuses a FIFO or a device named .png with a clean error, without blocking', function () {
    if (process.platform === 'win32' || !fs.existsSync('/dev/zero')) this.skip();
    const fifo = at('pipe.png');
    spawnSync('mkfifo', [fifo]);
    const zero = at('zero.png');
    fs.symlinkSync('/dev/zero', zero);
    const r = runIsolated(`
      (async () => {
        for (const f of [${JSON.stringify(fifo)}, ${JSON.stringify(zero)}]) {
          try { await png.readPngParameters(f); console.log('read'); } catch (e) { console.log(e.name + ': ' + e.message); }
        }
      })();`);
    assert.equal(r.timedOut, false, `the reader blocked or ran away: ${r.stderr.slice(-500)}`);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      `PngReadError: ${fifo}: is a FIFO (named pipe), not a regular file`,
      `PngReadError: ${zero}: is a character device, not a regular file`,
    ]);
  });

  it('reads parameters without loading sharp (the extension host stays light)', () => {
    const file = at('light.png');
    fs.writeFileSync(file, png([iTXtChunk('parameters', 'a cat\nSteps: 4, Seed: 7, Size: 16x16')]));
    const reader = JSON.stringify(path.resolve(__dirname, '../../src/inference/formats/pngText'));
    const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', `
      require(${reader}).readPngParameters(${JSON.stringify(file)}).then((p) => {
        console.log(p.params.seed, Object.keys(require.cache).some((k) => /[\\\\/]sharp[\\\\/]/.test(k)));
      });`], { encoding: 'utf8', timeout: 15000 });
    assert.equal(r.stdout.trim(), '7 false', r.stderr);
  });
});
