// The panel's form: reading and writing its fields, the limits the host sends, checking the values
// against them, and saving the form as it is typed.
// @ts-check
'use strict';

function readForm() {
  return {
    prompt: el.prompt.value,
    // An empty field means "draw one" (Number('') would be seed 0).
    seed: el.seed.value.trim() === '' ? -1 : Number(el.seed.value),
    lock: !!el.lock.checked,
    steps: Number(el.steps.value),
    guidance: Number(el.guidance.value),
    width: Number(el.width.value),
    height: Number(el.height.value),
    negativePrompt: el.negativePrompt.value,
    trueCfgScale: Number(el.trueCfgScale.value),
    loras: state.chosen.map((/** @type {any} */ l) => ({ path: l.path, strength: l.strength })),
    strength: Number(el.strength.value),
    imageFit: el.imageFit.value,
    hires: !!el.hires.checked,
    hiresScale: Number(el.hiresScale.value),
    hiresStrength: Number(el.hiresStrength.value),
    // Empty: the first pass's steps (params.ts's default), so it is left out.
    hiresSteps: el.hiresSteps.value.trim() === '' ? undefined : Number(el.hiresSteps.value),
    hiresUpscale: el.hiresUpscale.value,
  };
}

function writeForm(/** @type {any} */ f) {
  if (f.prompt !== undefined) el.prompt.value = f.prompt;
  if (f.seed !== undefined) el.seed.value = String(f.seed < 0 ? randomSeed() : f.seed);
  if (f.lock !== undefined) el.lock.checked = !!f.lock;
  if (f.steps !== undefined) el.steps.value = String(f.steps);
  if (f.guidance !== undefined) el.guidance.value = String(f.guidance);
  if (f.width !== undefined) el.width.value = String(f.width);
  if (f.height !== undefined) el.height.value = String(f.height);
  if (f.negativePrompt !== undefined) el.negativePrompt.value = f.negativePrompt;
  for (const k of ['trueCfgScale', 'strength', 'hiresScale', 'hiresStrength']) if (f[k] !== undefined) el[k].value = String(f[k]);
  if (f.imageFit !== undefined) el.imageFit.value = f.imageFit;
  if (f.hiresSteps !== undefined) el.hiresSteps.value = String(f.hiresSteps);
  if (f.hiresUpscale !== undefined) el.hiresUpscale.value = f.hiresUpscale;
  if (f.hires !== undefined) el.hires.checked = typeof f.hires === 'object' ? true : !!f.hires;
  // A prefill's hires pass comes as { scale, strength, upscale, steps? } (no steps: the first pass's).
  if (f.hires && typeof f.hires === 'object') {
    el.hiresScale.value = String(f.hires.scale);
    el.hiresStrength.value = String(f.hires.strength);
    el.hiresUpscale.value = f.hires.upscale;
    el.hiresSteps.value = f.hires.steps === undefined ? '' : String(f.hires.steps);
  }
  if (Array.isArray(f.loras)) {
    state.chosen = f.loras.map((/** @type {any} */ l) => ({ path: l.path, strength: l.strength ?? loraDefault() }));
    renderLoras();
  }
  syncPreset();
  validateSize();
  validateFields();
}

/** Fields the form may lack (a form saved before they existed): their defaults. */
function fillMissing(/** @type {any} */ d) {
  if (!d) return;
  for (const k of ['trueCfgScale', 'strength', 'hiresScale', 'hiresStrength']) if (el[k].value === '') el[k].value = String(d[k]);
  if (!el.imageFit.value) el.imageFit.value = d.imageFit;
  if (!el.hiresUpscale.value) el.hiresUpscale.value = d.hiresUpscale;
}

function syncPreset() {
  const v = `${el.width.value}x${el.height.value}`;
  el.preset.value = [...el.preset.options].some((/** @type {HTMLOptionElement} */ o) => o.value === v) ? v : 'custom';
}

/** Width and height within the host's limits (sent with `init`; the host checks again). Returns the problem text or ''. */
function sizeProblem() {
  const side = state.limits && state.limits.side;
  if (!side) return '';
  const w = Number(el.width.value);
  const h = Number(el.height.value);
  const inRange = (/** @type {number} */ n) => Number.isInteger(n) && n >= side.min && n <= side.max;
  if (!inRange(w) || !inRange(h)) return fmt(S.outOfRange, side.min, side.max);
  const m = side.multiple;
  if (w % m || h % m) return fmt(S.notMultiple, m, Math.round(w / m) * m, Math.round(h / m) * m);
  return '';
}

/** The inputs' min/max/step from the host's limits, so the browser's spinners stay inside them. */
function applyLimits() {
  const l = state.limits;
  if (!l) return;
  /** @type {[any, {min: number, max: number}, number | undefined][]} */
  const inputs = [[el.seed, l.seed, 1], [el.steps, l.steps, 1], [el.guidance, l.guidance, undefined], [el.width, l.side, l.side.multiple], [el.height, l.side, l.side.multiple]];
  if (l.trueCfgScale) inputs.push([el.trueCfgScale, l.trueCfgScale, undefined], [el.strength, l.strength, undefined], [el.hiresScale, l.hiresScale, undefined], [el.hiresStrength, l.strength, undefined], [el.hiresSteps, l.steps, 1]);
  for (const [input, range, step] of inputs) {
    input.min = String(range.min);
    input.max = String(range.max);
    if (step !== undefined) input.step = String(step);
  }
}

/** The issue-13 numbers within the host's limits: the problem text or ''. Only the fields in use are checked. */
function fieldProblem() {
  const l = state.limits;
  if (!l || !l.trueCfgScale) return '';
  const out = (/** @type {string} */ name, /** @type {string} */ value, /** @type {{min: number, max: number}} */ r, whole = false) => {
    const n = Number(value);
    return value.trim() === '' || !Number.isFinite(n) || n < r.min || n > r.max || (whole && !Number.isInteger(n)) ? fmt(whole ? S.outsideWhole : S.outside, name, r.min, r.max) : '';
  };
  /** @type {string[]} */
  const problems = [out(S.trueCfgScale, el.trueCfgScale.value, l.trueCfgScale)];
  if (state.image) problems.push(out(S.strength, el.strength.value, l.strength));
  if (el.hires.checked) {
    problems.push(out(S.hiresScale, el.hiresScale.value, l.hiresScale), out(S.hiresStrength, el.hiresStrength.value, l.strength));
    // Empty is allowed: the first pass's steps.
    if (el.hiresSteps.value.trim() !== '') problems.push(out(S.hiresSteps, el.hiresSteps.value, l.steps, true));
  }
  for (const c of state.chosen) problems.push(out(fmt(S.loraStrength, loraName(c.path)), String(c.strength), l.loraStrength));
  if (state.chosen.length > l.loras.max) problems.push(fmt(S.tooManyLoras, l.loras.max));
  return problems.find((p) => p) || '';
}

function validateFields() {
  // The hires fields apply only with the pass on.
  el.hiresScale.disabled = el.hiresStrength.disabled = el.hiresSteps.disabled = el.hiresUpscale.disabled = !el.hires.checked;
  const p = fieldProblem();
  el.fieldError.textContent = p;
  el.fieldError.hidden = !p;
  updateButtons();
  return !p;
}

function validateSize() {
  const p = sizeProblem();
  el.sizeError.textContent = p;
  el.sizeError.hidden = !p;
  el.width.classList.toggle('invalid', !!p);
  el.height.classList.toggle('invalid', !!p);
  updateButtons();
  return !p;
}

function updateButtons() {
  el.generate.disabled = !!sizeProblem() || !!fieldProblem() || busy();
  el.cancel.disabled = !busy();
}

/** A negative prompt with true CFG off does nothing: said beside it, before a run rather than after. */
function showNegativeUse() {
  el.negativeUnused.hidden = !(el.negativePrompt.value.trim() && Number(el.trueCfgScale.value) <= 1);
}

let saveTimer = 0;
function onFormChange() {
  showNegativeUse();
  state.form = readForm();
  save();
  // Also with the host, so the form outlives closing the panel.
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => vscode.postMessage({ type: 'saveForm', form: state.form }), 300);
}
