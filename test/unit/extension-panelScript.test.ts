// The panel's webview scripts (media/panel/, loaded in html.ts's order) in a stand-in DOM: the form's limits are the ones the
// host sends with `init` (params.ts's), not numbers of its own.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { initMessage, PANEL_DEFAULTS, PANEL_LIMITS } from '../../src/extension/panel/protocol';
import { PANEL_SCRIPTS } from '../../src/extension/panel/scripts';
import { DEFAULTS, LIMITS } from '../../src/shared/params';

const SCRIPTS = PANEL_SCRIPTS.map((f) => ({ f, code: fs.readFileSync(path.join(__dirname, '..', '..', 'media', 'panel', f), 'utf8') }));
const STRINGS = {
  outOfRange: 'from {0} to {1}',
  notMultiple: 'multiples of {0}: try {1} × {2}',
  cancelled: 'Cancelled',
  seedTitle: 'seed {0}',
  denoise: 'Step {0} of {1}',
  outside: '{0}: {1} to {2}',
  trueCfgScale: 'cfg',
  strength: 'strength',
  hiresScale: 'hires scale',
  hiresStrength: 'hires strength',
  hiresSteps: 'hires steps',
  outsideWhole: '{0}: whole {1} to {2}',
  loraStrength: 'strength of {0}',
  tooManyLoras: 'at most {0}',
  noImage: 'no image',
  pickLora: 'pick',
  noLoras: 'none found',
  loraTitle: '{0} {1} {2}',
  remove: 'Remove',
  dropNotImage: '{0}: not an image',
  dropTooLarge: '{0} over {1}',
  vary: 'Vary',
};

/** Just enough of an element for the panel's scripts: properties it sets are read back by the test. */
function element(): Record<string, any> {
  const classes = new Set<string>();
  const listeners: Record<string, ((e: unknown) => void)[]> = {};
  return {
    /** Runs the element's listeners for `type`, as the browser would. */
    fire: (type: string, e: object = {}) => {
      for (const l of listeners[type] ?? []) l({ preventDefault: () => undefined, stopPropagation: () => undefined, ...e });
    },
    value: '',
    hidden: false,
    disabled: false,
    checked: false,
    textContent: '',
    dataset: {},
    style: {},
    options: [],
    classList: { toggle: (c: string, on: boolean) => (on ? classes.add(c) : classes.delete(c)), contains: (c: string) => classes.has(c) },
    addEventListener: (type: string, l: (e: unknown) => void) => (listeners[type] ??= []).push(l),
    replaceChildren: () => undefined,
    setAttribute: () => undefined,
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
  // One context for all the files, as one page: their top-level names are one scope.
  const context = vm.createContext({
    acquireVsCodeApi: () => ({ getState: () => undefined, setState: () => undefined, postMessage: (m: unknown) => posted.push(m) }),
    document: { getElementById: byId, createElement: element },
    window: { addEventListener: (_: string, f: typeof onMessage) => (onMessage = f) },
    crypto: { getRandomValues: (a: Uint32Array) => a.fill(7) },
    setTimeout: () => 0,
    clearTimeout: () => undefined,
  });
  for (const { f, code } of SCRIPTS) vm.runInContext(code, context, { filename: f });
  return { el: byId, receive: (data: unknown) => onMessage({ data }), posted };
}

describe('extension: the panel script takes its limits from the host', () => {
  const defaults = { prompt: '', seed: DEFAULTS.seed, steps: DEFAULTS.steps, width: DEFAULTS.width, height: DEFAULTS.height, guidance: DEFAULTS.guidance, negativePrompt: '', trueCfgScale: DEFAULTS.trueCfgScale, ...PANEL_DEFAULTS };
  const init = (form?: object) => initMessage({ defaults, form: form as never, history: [], demo: false, trusted: true, model: 'demo' });

  it('a negative prompt with true CFG at 1 is marked unused beside it, as the form changes and when a saved form comes back', () => {
    const { el, receive } = loadPanel();
    receive(init({ ...defaults, negativePrompt: 'blurry', trueCfgScale: 1 }));
    assert.equal(el('negativeUnused').hidden, false, 'restored: negative prompt, CFG 1');
    el('trueCfgScale').value = '3.5';
    el('trueCfgScale').fire('input');
    assert.equal(el('negativeUnused').hidden, true, 'CFG on');
    el('trueCfgScale').value = '1';
    el('trueCfgScale').fire('input');
    assert.equal(el('negativeUnused').hidden, false);
    el('negativePrompt').value = '  ';
    el('negativePrompt').fire('input');
    assert.equal(el('negativeUnused').hidden, true, 'no negative prompt: nothing to say');
  });

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

describe('extension: the panel script keeps a typed seed and clears a cancelled run (issue 15 items 1 and 7)', () => {
  const defaults = { prompt: '', seed: -1, steps: DEFAULTS.steps, width: 512, height: 512, guidance: DEFAULTS.guidance, negativePrompt: '', trueCfgScale: DEFAULTS.trueCfgScale, ...PANEL_DEFAULTS };
  const item = { id: 'x', src: 'img.png', name: 'img.png', prompt: 'a cat', seed: 5, steps: 4, width: 512, height: 512, guidance: 3.5, model: 'm', created: 0 };
  const generated = (posted: unknown[]) => posted.filter((m): m is { type: 'generate'; params: { seed: number } } => (m as { type: string }).type === 'generate');

  it('a typed seed is the one sent, and stays in the field', () => {
    const { el, receive, posted } = loadPanel();
    receive(initMessage({ defaults, history: [], demo: false, trusted: true, model: 'demo' }));
    assert.equal(el('lock').checked, false, 'the default seed is random');
    el('prompt').value = 'a cat';
    el('seed').value = '1234';
    el('seed').fire('input');
    assert.equal(el('lock').checked, true, 'typing a seed locks it');
    el('form').fire('submit');
    assert.equal(generated(posted).at(-1)?.params.seed, 1234);
    assert.equal(el('seed').value, '1234');
  });

  it('unlocked, each Generate draws a seed and shows it; the dice gives a new one that is then used', () => {
    const { el, receive, posted } = loadPanel();
    receive(initMessage({ defaults, history: [], demo: false, trusted: true, model: 'demo' }));
    el('prompt').value = 'a cat';
    el('seed').value = '1234';
    el('form').fire('submit');
    const sent = generated(posted).at(-1)!.params.seed;
    assert.notEqual(sent, 1234);
    assert.equal(el('seed').value, String(sent), 'the field shows the seed used');
    receive({ type: 'job', job: { state: 'done', queued: 0 } });
    el('seed').value = '';
    el('dice').fire('click');
    assert.equal(el('lock').checked, true);
    const rolled = Number(el('seed').value);
    el('form').fire('submit');
    assert.equal(generated(posted).at(-1)!.params.seed, rolled);
  });

  it('after a cancel, and at the start of the next run, the previous image and its buttons are gone', () => {
    const { el, receive } = loadPanel();
    receive(initMessage({ defaults, history: [item], demo: false, trusted: true, model: 'demo', job: { state: 'done', queued: 0, resultId: 'x' } }));
    assert.equal(el('result').hidden, false, 'the last image is shown');
    assert.equal(el('resultActions').hidden, false);
    el('prompt').value = 'a dog';
    el('form').fire('submit');
    assert.equal(el('resultSection').hidden, true, 'a new run starts without the old image');
    receive({ type: 'job', job: { state: 'running', stage: 'denoise', step: 1, steps: 8, queued: 0 } });
    receive({ type: 'job', job: { state: 'cancelled', queued: 0 } });
    assert.equal(el('status').textContent, 'Cancelled');
    assert.equal(el('resultSection').hidden, true, 'no earlier image under "Cancelled"');
    assert.equal(el('resultActions').hidden, true);
  });

  it('a refused Generate (untrusted, no folder) goes back to idle instead of saying "Cancelled"', () => {
    const { el, receive } = loadPanel();
    receive(initMessage({ defaults, history: [], demo: false, trusted: false, model: 'demo' }));
    el('prompt').value = 'a dog';
    el('form').fire('submit');
    receive({ type: 'job' });
    assert.equal(el('status').textContent, '');
    assert.equal(el('generate').disabled, false);
  });
});

describe("extension: the panel script's issue-13 controls", () => {
  const defaults = { prompt: '', seed: 7, steps: 8, width: 512, height: 512, guidance: DEFAULTS.guidance, negativePrompt: '', trueCfgScale: DEFAULTS.trueCfgScale, ...PANEL_DEFAULTS };
  const start = () => {
    const p = loadPanel();
    p.receive(initMessage({ defaults, history: [], demo: false, trusted: true, model: 'demo' }));
    p.receive({ type: 'loras', items: [{ path: '/l/ink.safetensors', name: 'ink', size: '144 MB', where: 'loras' }] });
    p.el('prompt').value = 'a cat';
    return p;
  };
  // Through JSON, as postMessage would: objects made in the script's realm compare as plain data.
  const lastGenerate = (posted: unknown[]) => (JSON.parse(JSON.stringify(posted.filter((m) => (m as { type: string }).type === 'generate').at(-1) ?? null)) as { params: Record<string, unknown> } | null)?.params;

  it('sends only what is set: no LoRA, image or hires pass unless chosen, the true CFG scale always', () => {
    const { el, posted } = start();
    el('form').fire('submit');
    const p = lastGenerate(posted)!;
    assert.deepEqual(Object.keys(p).sort(), ['guidance', 'height', 'prompt', 'seed', 'steps', 'trueCfgScale', 'width']);
    assert.equal(p.trueCfgScale, DEFAULTS.trueCfgScale);
  });

  it('a LoRA picked and added reaches the request with the default strength, once; a changed strength follows', () => {
    const { el, posted } = start();
    el('loraPick').value = '/l/ink.safetensors';
    el('loraAdd').fire('click');
    el('loraPick').value = '/l/ink.safetensors';
    el('loraAdd').fire('click');
    el('negativePrompt').value = 'blurry';
    el('trueCfgScale').value = '2.5';
    el('form').fire('submit');
    const p = lastGenerate(posted)!;
    assert.deepEqual(p.loras, [{ path: '/l/ink.safetensors', strength: DEFAULTS.loraStrength }]);
    assert.equal(p.negativePrompt, 'blurry');
    assert.equal(p.trueCfgScale, 2.5);
    const saved = posted.filter((m) => (m as { type: string }).type === 'saveForm').at(-1) as { form: { loras: unknown } };
    assert.deepEqual(JSON.parse(JSON.stringify(saved.form.loras)), [{ path: '/l/ink.safetensors', strength: DEFAULTS.loraStrength }], 'the form keeps the LoRA');
  });

  it('"vary this image" sets the input image, the default strength and the size, and focuses the prompt; Generate sends them', () => {
    const { el, receive, posted } = start();
    let focused = false;
    el('prompt').focus = () => (focused = true);
    el('strength').value = '0.9';
    receive({ type: 'inputImage', image: { path: '/p/cat.png', name: 'cat.png', src: 'https://x/cat.png' }, vary: { strength: DEFAULTS.strength, width: 768, height: 512 } });
    assert.equal(focused, true);
    assert.equal(el('imageThumb').hidden, false);
    assert.equal(el('imageThumb').src, 'https://x/cat.png');
    assert.equal(el('imageName').textContent, 'cat.png');
    el('form').fire('submit');
    const p = lastGenerate(posted)!;
    assert.deepEqual([p.image, p.strength, p.imageFit, p.width, p.height], ['/p/cat.png', DEFAULTS.strength, DEFAULTS.imageFit, 768, 512]);
    // Removed on the host: the next request has no image.
    receive({ type: 'job', job: { state: 'done', queued: 0 } });
    receive({ type: 'inputImage' });
    assert.equal(el('imageThumb').hidden, true);
    el('form').fire('submit');
    assert.equal(lastGenerate(posted)!.image, undefined);
  });

  it('the hires pass is sent when ticked; a value out of range names the field and its limits and disables Generate', () => {
    const { el, receive, posted } = start();
    assert.equal(el('hiresScale').disabled, true, 'off: its fields are disabled');
    el('hires').checked = true;
    el('hires').fire('input');
    assert.equal(el('hiresScale').disabled, false);
    el('form').fire('submit');
    assert.deepEqual(lastGenerate(posted)!.hires, { scale: DEFAULTS.hiresScale, strength: DEFAULTS.hiresStrength, upscale: DEFAULTS.hiresUpscale }, "no steps: the first pass's");
    receive({ type: 'job', job: { state: 'done', queued: 0 } });
    el('hiresScale').value = String(LIMITS.hiresScale.max + 1);
    el('hiresScale').fire('input');
    assert.equal(el('fieldError').hidden, false);
    assert.equal(el('fieldError').textContent, `hires scale: ${LIMITS.hiresScale.min} to ${LIMITS.hiresScale.max}`);
    assert.equal(el('generate').disabled, true);
    el('hires').checked = false;
    el('hires').fire('input');
    assert.equal(el('generate').disabled, false, 'an unused field does not block');
    el('trueCfgScale').value = '0.5';
    el('trueCfgScale').fire('input');
    assert.equal(el('fieldError').textContent, `cfg: ${LIMITS.trueCfgScale.min} to ${LIMITS.trueCfgScale.max}`);
  });

  it('the hires steps and upscaler reach the request and the saved form; steps out of range or fractional are refused by name', () => {
    const { el, receive, posted } = start();
    el('hires').checked = true;
    el('hires').fire('input');
    assert.deepEqual([el('hiresSteps').disabled, el('hiresUpscale').disabled], [false, false]);
    assert.deepEqual([el('hiresSteps').min, el('hiresSteps').max, el('hiresSteps').step], [String(LIMITS.steps.min), String(LIMITS.steps.max), '1']);
    assert.equal(el('hiresUpscale').value, DEFAULTS.hiresUpscale, "params.ts's default");
    el('hiresSteps').value = '12';
    el('hiresSteps').fire('input');
    el('hiresUpscale').value = 'latent';
    el('hiresUpscale').fire('change');
    el('form').fire('submit');
    assert.deepEqual(lastGenerate(posted)!.hires, { scale: DEFAULTS.hiresScale, strength: DEFAULTS.hiresStrength, upscale: 'latent', steps: 12 });
    const saved = JSON.parse(JSON.stringify(posted.filter((m) => (m as { type: string }).type === 'saveForm').at(-1))) as { form: Record<string, unknown> };
    assert.deepEqual([saved.form.hiresSteps, saved.form.hiresUpscale], [12, 'latent']);
    receive({ type: 'job', job: { state: 'done', queued: 0 } });
    el('hiresSteps').value = '2.5';
    el('hiresSteps').fire('input');
    assert.equal(el('fieldError').textContent, `hires steps: whole ${LIMITS.steps.min} to ${LIMITS.steps.max}`);
    assert.equal(el('generate').disabled, true);
    el('hiresSteps').value = String(LIMITS.steps.max + 1);
    el('hiresSteps').fire('input');
    assert.equal(el('generate').disabled, true);
  });

  it('a saved form and a re-run prefill bring back the hires steps and upscaler', () => {
    const p = loadPanel();
    p.receive(initMessage({ defaults, form: { prompt: 'a', hires: true, hiresSteps: 9, hiresUpscale: 'latent' }, history: [], demo: false, trusted: true, model: 'demo' }));
    assert.deepEqual([p.el('hires').checked, p.el('hiresSteps').value, p.el('hiresUpscale').value], [true, '9', 'latent']);
    p.receive({ type: 'prefill', params: { prompt: 'b', hires: { scale: 1.5, strength: 0.3, upscale: 'image' } } });
    assert.deepEqual([p.el('hiresScale').value, p.el('hiresStrength').value, p.el('hiresSteps').value, p.el('hiresUpscale').value], ['1.5', '0.3', '', 'image'], 'no recorded steps: the first pass\'s');
    p.receive({ type: 'prefill', params: { prompt: 'c', hires: { scale: 2, strength: 0.5, upscale: 'latent', steps: 20 } } });
    assert.deepEqual([p.el('hiresSteps').value, p.el('hiresUpscale').value], ['20', 'latent']);
  });

  describe('a drop on the input image', () => {
    const dataTransfer = (data: Record<string, string>, files: object[] = []) => ({ getData: (t: string) => data[t] ?? '', files });
    const file = (name: string, type: string, bytes: Uint8Array, size = bytes.length) => ({ name, type, size, arrayBuffer: async () => bytes.slice().buffer });
    const dropped = (posted: unknown[]) => posted.filter((m) => ['dropImage', 'dropImageBytes'].includes((m as { type: string }).type));

    it("from the desktop: the file's bytes and name are sent", async () => {
      const { el, posted } = start();
      const bytes = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
      el('dropZone').fire('drop', { dataTransfer: dataTransfer({ 'text/uri-list': 'file:///client/cat.png' }, [file('cat.png', 'image/png', bytes)]) });
      await new Promise((r) => setImmediate(r));
      const sent = dropped(posted) as { type: string; name: string; bytes: Uint8Array }[];
      assert.equal(sent.length, 1);
      assert.deepEqual([sent[0].type, sent[0].name, [...sent[0].bytes]], ['dropImageBytes', 'cat.png', [...bytes]], "the bytes, not the client's path");
      assert.equal(el('imageError').hidden, true);
    });

    it('from the Explorer: its URI, as before', async () => {
      const { el, posted } = start();
      el('dropZone').fire('drop', { dataTransfer: dataTransfer({ 'application/vnd.code.uri-list': 'file:///ws/cat.png' }, [file('cat.png', 'image/png', new Uint8Array(4))]) });
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(JSON.parse(JSON.stringify(dropped(posted))), [{ type: 'dropImage', uri: 'file:///ws/cat.png' }]);
    });

    it('another type or a file past the limit is refused in the panel, naming it, before any byte is sent', async () => {
      const { el, receive, posted } = start();
      let read = false;
      const unread = (name: string, type: string, size: number) => ({ name, type, size, arrayBuffer: async () => ((read = true), new ArrayBuffer(0)) });
      el('dropZone').fire('drop', { dataTransfer: dataTransfer({}, [unread('anim.gif', 'image/gif', 10)]) });
      assert.equal(el('imageError').hidden, false);
      assert.equal(el('imageError').textContent, 'anim.gif: not an image');
      const max = PANEL_LIMITS.droppedImage;
      el('dropZone').fire('drop', { dataTransfer: dataTransfer({}, [unread('huge.png', 'image/png', max.maxBytes + 1)]) });
      assert.equal(el('imageError').textContent, `huge.png over ${max.max}`);
      await new Promise((r) => setImmediate(r));
      assert.equal(read, false);
      assert.deepEqual(dropped(posted), []);
      // The next image set clears the word.
      receive({ type: 'inputImage', image: { path: '/p/cat.png', name: 'cat.png', src: 'https://x/cat.png' } });
      assert.equal(el('imageError').hidden, true);
    });
  });
});
