import * as assert from 'node:assert/strict';
import { blockAtLine, effectiveValues, parseFlux, promptPosition, promptSpansFrom, suggestKey } from '../../src/extension/fluxFile/parser';

const codes = (text: string) => parseFlux(text).problems.map((p) => p.code);

describe('extension: .flux parser', () => {
  it('reads blocks separated by blank lines, with parameters and comments', () => {
    const doc = parseFlux(
      [
        '# my prompts',
        'steps: 20',
        'width: 512',
        '',
        'a lighthouse on a cliff at dawn,',
        '  oil painting',
        'seed: 42',
        'count: 2',
        '',
        '# second',
        'a cat astronaut',
        'seed: random',
        'out: cats/{seed}.png',
      ].join('\n'),
    );
    assert.deepEqual(doc.problems, []);
    assert.deepEqual(doc.defaults.values, { steps: 20, width: 512 });
    assert.equal(doc.blocks.length, 2);
    const [a, b] = doc.blocks;
    assert.equal(a.prompt, 'a lighthouse on a cliff at dawn, oil painting');
    assert.deepEqual(a.values, { seed: 42, count: 2 });
    assert.deepEqual(a.span, { start: { line: 4, character: 0 }, end: { line: 7, character: 8 } });
    assert.equal(b.prompt, 'a cat astronaut');
    assert.deepEqual(b.values, { seed: 'random', out: 'cats/{seed}.png' });
    assert.equal(b.span.start.line, 9, 'a comment right above a prompt belongs to its block');
    assert.deepEqual(effectiveValues(doc, a, { steps: 28, height: 1024 }), { steps: 20, height: 1024, width: 512, seed: 42, count: 2 });
    assert.equal(blockAtLine(doc, 6), a);
    assert.equal(blockAtLine(doc, 8), undefined);
  });

  it('handles CRLF, separators, escapes, URLs and trailing comments', () => {
    const doc = parseFlux('---\r\n\\note: this is prompt\r\nhttp://example.com style\r\nsteps: 4   # fast\r\n---\r\n\\# not a comment\r\n');
    assert.deepEqual(doc.problems, []);
    assert.equal(doc.blocks.length, 2);
    assert.equal(doc.blocks[0].prompt, 'note: this is prompt http://example.com style');
    assert.deepEqual(doc.blocks[0].values, { steps: 4 });
    assert.equal(doc.blocks[0].pieces[0].character, 1);
    assert.equal(doc.blocks[1].prompt, '# not a comment');
  });

  it('maps prompt offsets back to document positions', () => {
    const doc = parseFlux('  first line\n\\  second line\n');
    const b = doc.blocks[0];
    assert.equal(b.prompt, 'first line second line');
    assert.deepEqual(promptPosition(b, 0), { line: 0, character: 2 });
    assert.deepEqual(promptPosition(b, 6), { line: 0, character: 8 });
    assert.deepEqual(promptPosition(b, 11), { line: 1, character: 3 });
    assert.deepEqual(promptSpansFrom(b, 6), [
      { start: { line: 0, character: 8 }, end: { line: 0, character: 12 } },
      { start: { line: 1, character: 3 }, end: { line: 1, character: 14 } },
    ]);
  });

  it('reports unknown keys with a suggestion, and duplicates', () => {
    const doc = parseFlux('a cat\nsed: 4\nscale: 3\nstyle: watercolor\nsteps: 4\nsteps: 5');
    const unknown = doc.problems.filter((p) => p.code === 'unknownKey');
    assert.deepEqual(unknown.map((p) => [p.args.key, p.args.suggestion]), [['sed', 'seed'], ['scale', 'guidance'], ['style', undefined]]);
    assert.deepEqual(unknown[0].span, { start: { line: 1, character: 0 }, end: { line: 1, character: 3 } });
    assert.ok(doc.problems.some((p) => p.code === 'duplicateKey' && p.severity === 'warning'));
    assert.equal(doc.blocks[0].values.steps, 5, 'the last one wins');
    assert.equal(suggestKey('Height'), 'height');
    assert.equal(suggestKey('lora'), 'lora');
    assert.equal(suggestKey('lorax'), 'lora');
    for (const k of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) assert.equal(suggestKey(k), undefined, `${k} is no key and no alias`);
  });

  it('reports bad values with positions and fixes', () => {
    const doc = parseFlux(['a cat', 'seed: -5', 'steps: 2.5', 'width: 1000', 'height: 8000', 'guidance: lots', 'count: 0', 'out: /etc/x.png'].join('\n'));
    assert.deepEqual(
      doc.problems.map((p) => p.code),
      ['badSeed', 'notInteger', 'notMultipleOf16', 'outOfRange', 'notNumber', 'outOfRange', 'badOut'],
    );
    const m16 = doc.problems.find((p) => p.code === 'notMultipleOf16')!;
    assert.equal(m16.args.suggestion, '1008');
    assert.deepEqual(m16.span, { start: { line: 3, character: 7 }, end: { line: 3, character: 11 } });
    assert.equal(doc.problems.find((p) => p.code === 'badOut')!.args.reason, 'absolute');
    assert.deepEqual(doc.blocks[0].values, {}, 'invalid values are left out');
    assert.deepEqual(codes('x\nsteps:'), ['emptyValue']);
  });

  it('validates out templates', () => {
    assert.deepEqual(codes('x\nout: ../up/{seed}.png'), ['badOut']);
    assert.equal(parseFlux('x\nout: {nope}.png').problems[0].args.field, 'nope');
    assert.equal(parseFlux('x\nout: a.jpg').problems[0].args.reason, 'extension');
    assert.deepEqual(codes('x\nout: sub/{date}-{index}.png'), []);
  });

  it('warns about parameters that belong to no prompt', () => {
    const doc = parseFlux('a cat\n\nseed: 1\n');
    assert.deepEqual(doc.problems.map((p) => p.code), ['orphanParams']);
    assert.deepEqual(doc.blocks[0].values, {});
  });

  it('keeps non-ASCII prompts and fullwidth colons as prompt text', () => {
    const doc = parseFlux('风格：水彩, 一只猫\nseed: 7');
    assert.deepEqual(doc.problems, []);
    assert.equal(doc.blocks[0].prompt, '风格：水彩, 一只猫');
  });

  it('an empty or comment-only file has no blocks', () => {
    for (const t of ['', '\n\n', '# only\n# comments', '---\n---']) {
      const d = parseFlux(t);
      assert.equal(d.blocks.length, 0);
      assert.deepEqual(d.problems, []);
    }
  });

  it('never throws on fuzzed garbage, and every position is inside the text', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const alphabet = ['a', 'Z', ' ', '\t', '\n', '\r', '\r\n', ':', '#', '\\', '-', '---', '{', '}', 'seed', 'steps', 'width', 'out', '0', '9', '.', '/', '..', 'é', '猫', '😀', '\u0000', '\ud800', 'random', '1e999', '-1', 'NaN'];
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(rnd() * 80);
      let text = '';
      for (let j = 0; j < len; j++) text += alphabet[Math.floor(rnd() * alphabet.length)];
      const doc = parseFlux(text);
      const lines = text.split(/\r\n|\r|\n/);
      const inside = (p: { line: number; character: number }) => p.line >= 0 && p.line < lines.length && p.character >= 0 && p.character <= lines[p.line].length;
      for (const pr of doc.problems) assert.ok(inside(pr.span.start) && inside(pr.span.end), `problem span outside text: ${JSON.stringify(text)}`);
      for (const b of doc.blocks) {
        assert.ok(b.prompt.length > 0);
        for (const piece of b.pieces) assert.equal(lines[piece.line].substr(piece.character, piece.text.length), piece.text);
        for (let o = 0; o <= b.prompt.length; o += 7) assert.ok(inside(promptPosition(b, o)));
      }
    }
    // Not even a non-string sneaking in from JavaScript.
    for (const v of [undefined, null, 42, {}]) assert.doesNotThrow(() => parseFlux(v as unknown as string));
  });
});
