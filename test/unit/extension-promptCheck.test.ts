import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkPrompt, loadEncoders } from '../../src/extension/fluxFile/promptCheck';
import { parseFlux, promptSpansFrom } from '../../src/extension/fluxFile/parser';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { ignoredStart, promptNote } from '../../src/inference/formats/promptCheck';

const MODELS = path.join(__dirname, '..', 'fixtures', 'flux-tiny', 'models');

describe('extension: prompt checks with the real FLUX.1 tokenizers', () => {
  it('tokenizes an unchanged prompt once: re-checking a file of thousands of blocks after each edit costs only the edited ones', async () => {
    const real = await loadEncoders(MODELS, MODELS);
    const calls: string[] = [];
    const enc = { clip: (t: string) => (calls.push(`clip ${t}`), real.clip(t)), t5: (t: string) => (calls.push(`t5 ${t}`), real.t5(t)) };
    const long = Array.from({ length: 90 }, (_, i) => `word${i % 10}`).join(' ');
    const first = checkPrompt(long, enc);
    assert.equal(first[0]?.code, 'clipTruncated');
    assert.deepEqual(checkPrompt(long, enc), first, 'the same issues');
    assert.deepEqual(checkPrompt('a cat', enc), []);
    assert.deepEqual(calls, [`clip ${long}`, `t5 ${long}`, 'clip a cat', 't5 a cat']);
    // Another T5 length is another check.
    checkPrompt('a cat', enc, 256);
    assert.equal(calls.length, 6);
  });

  it('says nothing about a short English prompt', async () => {
    const enc = await loadEncoders(MODELS, MODELS);
    assert.deepEqual(checkPrompt('a lighthouse on a cliff at dawn, oil painting', enc), []);
  });

  it('finds where CLIP cuts a long prompt, mapped back into the .flux file', async () => {
    const enc = await loadEncoders(MODELS, MODELS);
    const words = Array.from({ length: 90 }, (_, i) => `word${i % 10}`);
    const text = `${words.slice(0, 45).join(' ')}\n${words.slice(45).join(' ')}\nseed: 1\n`;
    const block = parseFlux(text).blocks[0];
    const issues = checkPrompt(block.prompt, enc);
    assert.equal(issues.length, 1);
    const clip = issues[0];
    assert.equal(clip.code, 'clipTruncated');
    if (clip.code !== 'clipTruncated') return;
    assert.ok(clip.tokens > 77);
    assert.ok(clip.cutOffset > 0 && clip.cutOffset < block.prompt.length);
    // The cut falls on a word boundary; the tokens before it fit in 77.
    assert.ok(enc.clip(block.prompt.slice(0, clip.cutOffset)).untruncatedLength <= 77);
    const spans = promptSpansFrom(block, clip.cutOffset);
    assert.ok(spans.length >= 1);
    assert.equal(spans[spans.length - 1].end.line, 1);
  });

  it('on a long one-line prompt, covers the whole ignored part and names in words where it starts (issue 15 item 8)', async () => {
    const enc = await loadEncoders(MODELS, MODELS);
    const words = Array.from({ length: 120 }, (_, i) => `word${i}`);
    const block = parseFlux(`${words.join(' ')}\nseed: 1\n`).blocks[0];
    const [clip] = checkPrompt(block.prompt, enc);
    assert.equal(clip.code, 'clipTruncated');
    if (clip.code !== 'clipTruncated') return;
    const spans = promptSpansFrom(block, clip.cutOffset);
    assert.equal(spans.length, 1);
    assert.equal(spans[0].start.character, clip.cutOffset);
    assert.equal(spans[0].end.character, block.prompt.length, 'underlined to the end of the prompt');
    // The words: the ignored part's first ones, which the encoder did not read.
    const first = block.prompt.slice(clip.cutOffset).trim().split(' ')[0];
    assert.match(first, /^word\d+$/);
    assert.equal(ignoredStart(block.prompt, clip.cutOffset), `${block.prompt.slice(clip.cutOffset).trim().split(' ').slice(0, 4).join(' ')}…`);
    assert.ok(enc.clip(block.prompt.slice(0, clip.cutOffset)).untruncatedLength <= 77);
    assert.equal(promptNote(clip, block.prompt), `CLIP reads only the first 77 tokens; it ignores everything from "${ignoredStart(block.prompt, clip.cutOffset)}" on`);
  });

  it('ignoredStart: a few words, shortened, with an ellipsis only when something is left out', () => {
    assert.equal(ignoredStart('a b c', 2), 'b c');
    assert.equal(ignoredStart('one two three four five six', 0), 'one two three four…');
    assert.equal(ignoredStart(`x ${'y'.repeat(60)}`, 2), `${'y'.repeat(40)}…`);
  });

  it('flags a prompt T5 cannot read (Chinese) and not an English one with one odd word', async () => {
    const enc = await loadEncoders(undefined, MODELS);
    const zh = checkPrompt('一只猫坐在窗边，油画风格', enc);
    assert.equal(zh.length, 1);
    assert.equal(zh[0].code, 't5Unreadable');
    assert.deepEqual(checkPrompt('a cat named 小明 sitting by the window, oil painting, warm light', enc), []);
  });

  it('falls back to the bundled tokenizers when the model folder has none', async () => {
    const enc = await loadEncoders('/nonexistent/model', MODELS);
    assert.equal(enc.clip('a cat').truncated, false);
  });

  it('the editor and the pipeline draw the unreadable-T5 line in the same place: exactly 30 % unknown is flagged by both, just under by neither', async function () {
    this.timeout(120_000);
    const enc = await loadEncoders(undefined, MODELS);
    const atBoundary = 'cat dog bird sun 猫 狗 鸟';
    const under = 'cat dog bird sun moon 猫 狗 鸟';
    // The prompts are what the test says they are (3 of 10 tokens unknown; 3 of 11).
    assert.equal(enc.t5(atBoundary).unknownRatio, 0.3);
    assert.ok(enc.t5(under).unknownRatio < 0.3);
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-prompt-'));
    const pipeline = await FluxPipeline.create({ dir: MODELS, transformer: path.join(MODELS, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir });
    try {
      for (const [prompt, flagged] of [[atBoundary, true], [under, false]] as const) {
        const editor = checkPrompt(prompt, enc).some((i) => i.code === 't5Unreadable');
        const { notes } = await pipeline.generate({ prompt, width: 64, height: 64, steps: 1, seed: 1 });
        const note = notes.some((n) => n.startsWith('T5 could not read'));
        assert.deepEqual([editor, note], [flagged, flagged], `${prompt}: editor ${editor}, pipeline ${note}; notes: ${notes.join(' | ')}`);
      }
    } finally {
      await pipeline.release();
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});
