// The panel's webview script (media/panel.js) in a stand-in DOM: the form's limits are the ones the
// host sends with `init` (params.ts's), not numbers of its own.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { initMessage } from '../../src/extension/panel/protocol';
import { DEFAULTS, LIMITS } from '../../src/shared/params';

const SCRIPT = fs.readFileSync(path.join(__dirname, '..', '..', 'media', 'panel.js'), 'utf8');
const STRINGS = { outOfRange: 'from {0} to {1}', notMultiple: 'multiples of {0}: try {1} × {2}' };

/** Just enough of an element for panel.js: properties it sets are read back by the test. */
function element(): Record<string, any> {
  const classes = new Set<string>();
  return {
    value: '',
    hidden: false,
    disabled: false,
    checked: false,
    textContent: '',
    dataset: {},
    style: {},
    options: [],
    classList: { toggle: (c: string, on: boolean) => (on ? classes.add(c) : classes.delete(c)), contains: (c: string) => classes.has(c) },
    addEventListener: () => undefined,
    replaceChildren: () => undefined,
    focus: () => undefined,
  };
}

function loadPanel() {
  const els = new Map<string, Record<string, any>>();
  const byId = (id: string) => {
    if (!els.has(id)) els.set(id, id === 'strings' ? { textContent: JSON.stringify(STRINGS) } : element());
    return els.get(id)!;
  };
  let onMessage: (e: { data: unknown }) => void = () => undefined;
  const posted: unknown[] = [];
  vm.runInNewContext(SCRIPT, {
    acquireVsCodeApi: () => ({ getState: () => undefined, setState: () => undefined, postMessage: (m: unknown) => posted.push(m) }),
    document: { getElementById: byId, createElement: element },
    window: { addEventListener: (_: string, f: typeof onMessage) => (onMessage = f) },
    crypto: { getRandomValues: (a: Uint32Array) => a.fill(7) },
    setTimeout: () => 0,
    clearTimeout: () => undefined,
  });
  return { el: byId, receive: (data: unknown) => onMessage({ data }), posted };
}

describe('extension: the panel script takes its limits from the host', () => {
  const defaults = { prompt: '', seed: DEFAULTS.seed, steps: DEFAULTS.steps, width: DEFAULTS.width, height: DEFAULTS.height, guidance: DEFAULTS.guidance };
  const init = (form?: object) => initMessage({ defaults, form: form as never, history: [], demo: false, trusted: true, model: 'demo' });

  it("sets the inputs' min, max and step from the init message", () => {
    const { el, receive, posted } = loadPanel();
    assert.deepEqual(JSON.parse(JSON.stringify(posted)), [{ type: 'ready' }]);
    receive(init());
    for (const side of ['width', 'height']) {
      assert.deepEqual([el(side).min, el(side).max, el(side).step], [String(LIMITS.side.min), String(LIMITS.side.max), String(LIMITS.side.multiple)], side);
    }
    assert.deepEqual([el('steps').min, el('steps').max], [String(LIMITS.steps.min), String(LIMITS.steps.max)]);
    assert.deepEqual([el('guidance').min, el('guidance').max], [String(LIMITS.guidance.min), String(LIMITS.guidance.max)]);
    assert.equal(el('width').value, String(DEFAULTS.width));
    assert.equal(el('sizeError').hidden, true);
  });

  it('refuses a size past the limits it was sent, naming them, and offers the nearest multiples', () => {
    const { el, receive } = loadPanel();
    receive(init({ prompt: 'a cat', width: LIMITS.side.max + LIMITS.side.multiple, height: LIMITS.side.max }));
    assert.equal(el('sizeError').hidden, false);
    assert.equal(el('sizeError').textContent, `from ${LIMITS.side.min} to ${LIMITS.side.max}`);
    assert.equal(el('generate').disabled, true);

    const other = loadPanel();
    other.receive(init({ prompt: 'a cat', width: 1000, height: 512 }));
    assert.equal(other.el('sizeError').textContent, `multiples of ${LIMITS.side.multiple}: try 1008 × 512`);
    assert.equal(other.el('generate').disabled, true);

    const fine = loadPanel();
    fine.receive(init({ prompt: 'a cat', width: LIMITS.side.max, height: LIMITS.side.min }));
    assert.equal(fine.el('sizeError').hidden, true);
    assert.equal(fine.el('generate').disabled, false);
  });

  it('shows the host\'s notes on the prompt under it, only while the prompt is the one they are about (issue 15 item 11)', () => {
    const { el, receive } = loadPanel();
    receive(init({ prompt: 'a very long prompt' }));
    const note = 'CLIP reads only the first 77 tokens of this 90-token prompt; it ignores everything from "word7…" on.';
    receive({ type: 'promptNotes', prompt: 'a very long prompt', notes: [note] });
    assert.equal(el('promptNotes').textContent, note);
    assert.equal(el('promptNotes').hidden, false);
    receive({ type: 'promptNotes', prompt: 'what the prompt was before', notes: [note] });
    assert.equal(el('promptNotes').hidden, true, 'a note on text since changed is not shown');
    receive({ type: 'promptNotes', prompt: 'a very long prompt', notes: [] });
    assert.equal(el('promptNotes').hidden, true);
  });
});
