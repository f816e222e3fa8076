import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSchedulerConfig } from '../../src/inference/pipeline/schedulerConfig';
import { ClipTokenizer, T5Tokenizer, TokenizerFileError } from '../../src/inference/formats/tokenizers';

const FIXTURES = path.join(__dirname, '..', 'fixtures');

interface GoldenCase { prompt: string; clip_ids: number[]; t5_ids: number[] }
const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'flux-tiny', 'cases', 'tokenizers.json'), 'utf8')) as {
  clip_max_length: number;
  t5_max_length: number;
  cases: GoldenCase[];
};

const BOS = 49406;
const EOS = 49407;
const T5_EOS = 1;
const label = (c: GoldenCase) => JSON.stringify(c.prompt.length > 40 ? c.prompt.slice(0, 40) + '…' : c.prompt);

/** Text ids (no specials) of a golden CLIP row: between BOS and the EOS that precedes the padding. */
function clipTextIds(ids: number[]): number[] {
  let end = ids.length;
  while (end > 1 && ids[end - 1] === EOS) end--;
  return ids.slice(1, end);
}
/** Text ids (no </s>) of a golden T5 row. */
function t5TextIds(ids: number[]): number[] {
  let end = ids.length;
  while (end > 0 && ids[end - 1] === 0) end--;
  return ids.slice(0, end - 1);
}
function padded(real: number[], maxLength: number, pad: number): number[] {
  return [...real, ...new Array<number>(maxLength - real.length).fill(pad)];
}

const folders = [
  ['flux-tiny/models', path.join(FIXTURES, 'flux-tiny', 'models')],
  ['FLUX.1-dev', path.join(FIXTURES, 'FLUX.1-dev')],
] as const;

for (const [name, root] of folders) {
  describe(`tokenizers from ${name}/tokenizer{,_2}`, () => {
    let clip: ClipTokenizer;
    let t5: T5Tokenizer;
    before(async () => {
      let t = performance.now();
      clip = await ClipTokenizer.fromFolder(path.join(root, 'tokenizer'));
      const clipMs = performance.now() - t;
      t = performance.now();
      t5 = await T5Tokenizer.fromFolder(path.join(root, 'tokenizer_2'));
      const t5Ms = performance.now() - t;
      console.log(`      load: CLIP ${clipMs.toFixed(0)} ms, T5 ${t5Ms.toFixed(0)} ms`);
      assert.ok(clipMs < 5000 && t5Ms < 5000, 'tokenizer loading should take well under a few seconds');
    });

    it('golden file has the expected shape', () => {
      assert.equal(golden.clip_max_length, 77);
      assert.equal(golden.t5_max_length, 512);
      assert.equal(golden.cases.length, 15);
    });

    golden.cases.forEach((c, i) => {
      it(`CLIP case ${i} ${label(c)}`, () => {
        const r = clip.encode(c.prompt, golden.clip_max_length);
        assert.deepEqual(Array.from(r.ids), c.clip_ids);
        const text = clipTextIds(c.clip_ids);
        assert.equal(r.length, text.length + 2);
        assert.equal(r.ids[0], BOS);
        assert.equal(r.ids[r.length - 1], EOS);
        assert.equal(r.truncated, r.untruncatedLength > 77);
        if (!r.truncated) {
          assert.equal(r.untruncatedLength, r.length);
          assert.equal(r.truncatedText, undefined);
        }
        assert.equal(r.unknownCount, 0);
      });

      it(`T5 case ${i} ${label(c)}`, () => {
        const r = t5.encode(c.prompt, golden.t5_max_length);
        assert.deepEqual(Array.from(r.ids), c.t5_ids);
        const text = t5TextIds(c.t5_ids);
        assert.equal(r.length, text.length + 1);
        assert.equal(r.untruncatedLength, r.length);
        assert.equal(r.truncated, false);
        assert.equal(r.unknownCount, text.filter((id) => id === 2).length);
        assert.equal(r.unknownRatio, text.length ? r.unknownCount / text.length : 0);
      });

      it(`T5 case ${i} at maxLength 256 and 64 agrees with the golden ids truncated`, () => {
        const text = t5TextIds(c.t5_ids);
        for (const max of [256, 64]) {
          const keep = text.slice(0, max - 1);
          const r = t5.encode(c.prompt, max);
          assert.deepEqual(Array.from(r.ids), padded([...keep, T5_EOS], max, 0), `maxLength ${max}`);
          assert.equal(r.length, keep.length + 1);
          assert.equal(r.untruncatedLength, text.length + 1);
          assert.equal(r.truncated, text.length > max - 1);
        }
      });

      it(`CLIP case ${i} at maxLength 16 agrees with the golden ids truncated`, () => {
        const keep = clipTextIds(c.clip_ids).slice(0, 14);
        const r = clip.encode(c.prompt, 16);
        assert.deepEqual(Array.from(r.ids), padded([BOS, ...keep, EOS], 16, EOS));
      });
    });

    it('a prompt over 77 CLIP tokens is truncated with the cut-off text reported', () => {
      const prompt = golden.cases.find((c) => c.prompt.startsWith('very long prompt'))!.prompt;
      const r = clip.encode(prompt);
      assert.equal(r.truncated, true);
      assert.equal(r.length, 77);
      assert.equal(r.untruncatedLength, 2 + prompt.split(' ').length); // one token per word
      assert.ok(r.truncatedText && r.truncatedText.length > 0);
      assert.ok(prompt.endsWith(r.truncatedText));
      // 75 text tokens = 25 × "very long prompt": the cut is at the 26th repetition.
      const cutAt = prompt.length - r.truncatedText.length;
      assert.equal(cutAt, 25 * 'very long prompt '.length);
    });

    it('T5 truncation reports the cut-off text too', () => {
      const prompt = golden.cases.find((c) => c.prompt.startsWith('very long prompt'))!.prompt;
      const r = t5.encode(prompt, 64);
      assert.equal(r.truncated, true);
      assert.equal(r.ids[63], T5_EOS);
      assert.equal(prompt.length - r.truncatedText!.length, 21 * 'very long prompt '.length);
      assert.equal(t5.encode(prompt).truncatedText, undefined);
    });

    it('a Chinese prompt is mostly unknown to T5, an English one not at all', () => {
      const zh = t5.encode('一只戴着宇航员头盔的橘猫');
      assert.ok(zh.unknownRatio >= 0.5, `unknownRatio ${zh.unknownRatio}`);
      assert.ok(t5.encode('赛博朋克风格的未来城市街道，雨夜，蓝色和粉色的霓虹灯光').unknownRatio >= 0.4);
      const en = t5.encode('a photo of a cat');
      assert.equal(en.unknownCount, 0);
      assert.equal(en.unknownRatio, 0);
      assert.equal(t5.encode('').unknownRatio, 0);
    });

    it('rejects a maxLength that leaves no room for text', () => {
      assert.throws(() => clip.encode('a', 2), RangeError);
      assert.throws(() => t5.encode('a', 1), RangeError);
      assert.throws(() => t5.encode('a', 3.5), RangeError);
    });
  });
}

describe('tokenizer loading errors', () => {
  let tmp: string;
  const real = path.join(FIXTURES, 'FLUX.1-dev');
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-tok-')); });
  afterEach(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

  async function rejects(p: Promise<unknown>, ...parts: string[]): Promise<void> {
    await assert.rejects(p, (e: Error) => {
      assert.ok(e instanceof TokenizerFileError, `${e.name}: ${e.message}`);
      for (const part of parts) assert.ok(e.message.includes(part), `"${e.message}" should mention "${part}"`);
      return true;
    });
  }

  it('names a missing folder', async () => {
    const dir = path.join(tmp, 'nope');
    await rejects(ClipTokenizer.fromFolder(dir), dir, 'not found', 'vocab.json and merges.txt');
    await rejects(T5Tokenizer.fromFolder(dir), dir, 'not found', 'tokenizer.json');
  });

  it('names a missing vocab.json or merges.txt', async () => {
    await rejects(ClipTokenizer.fromFolder(tmp), path.join(tmp, 'vocab.json'), 'missing', 'expected the FLUX.1-dev tokenizer/ folder with vocab.json and merges.txt');
    fs.copyFileSync(path.join(real, 'tokenizer', 'vocab.json'), path.join(tmp, 'vocab.json'));
    await rejects(ClipTokenizer.fromFolder(tmp), path.join(tmp, 'merges.txt'), 'missing');
  });

  it('names a vocab.json that is not valid JSON or not a vocabulary', async () => {
    fs.copyFileSync(path.join(real, 'tokenizer', 'merges.txt'), path.join(tmp, 'merges.txt'));
    fs.writeFileSync(path.join(tmp, 'vocab.json'), '{"a": 1, ');
    await rejects(ClipTokenizer.fromFolder(tmp), path.join(tmp, 'vocab.json'), 'invalid JSON');
    fs.writeFileSync(path.join(tmp, 'vocab.json'), '["a"]');
    await rejects(ClipTokenizer.fromFolder(tmp), path.join(tmp, 'vocab.json'), 'not a vocabulary');
    fs.writeFileSync(path.join(tmp, 'vocab.json'), '{"a": 0}');
    await rejects(ClipTokenizer.fromFolder(tmp), path.join(tmp, 'vocab.json'), '<|startoftext|>');
  });

  it('names a malformed merges.txt', async () => {
    fs.copyFileSync(path.join(real, 'tokenizer', 'vocab.json'), path.join(tmp, 'vocab.json'));
    fs.writeFileSync(path.join(tmp, 'merges.txt'), '#version: 0.2\ni n\nthree parts here\n');
    await rejects(ClipTokenizer.fromFolder(tmp), path.join(tmp, 'merges.txt'), 'line 3');
  });

  it('refuses a FIFO under a tokenizer file\'s name at once, and a scheduler config that is one (never waits for a writer)', async function () {
    if (process.platform === 'win32') this.skip(); // no FIFOs by path there
    fs.copyFileSync(path.join(real, 'tokenizer', 'merges.txt'), path.join(tmp, 'merges.txt'));
    execFileSync('mkfifo', [path.join(tmp, 'vocab.json'), path.join(tmp, 'tokenizer.json'), path.join(tmp, 'scheduler_config.json')]);
    const t0 = Date.now();
    await rejects(ClipTokenizer.fromFolder(tmp), path.join(tmp, 'vocab.json'), 'FIFO');
    await rejects(T5Tokenizer.fromFolder(tmp), path.join(tmp, 'tokenizer.json'), 'FIFO');
    await assert.rejects(readSchedulerConfig(tmp), /scheduler_config\.json: is a FIFO/);
    assert.ok(Date.now() - t0 < 2000, 'refused without waiting');
  });

  it('names a missing or broken tokenizer.json', async () => {
    const file = path.join(tmp, 'tokenizer.json');
    await rejects(T5Tokenizer.fromFolder(tmp), file, 'missing', 'tokenizer_2/ folder with tokenizer.json');
    fs.writeFileSync(file, '{"model": ');
    await rejects(T5Tokenizer.fromFolder(tmp), file, 'invalid JSON');
    fs.writeFileSync(file, '{"model": {}}');
    await rejects(T5Tokenizer.fromFolder(tmp), file, 'not a tokenizers model file');
  });
});
