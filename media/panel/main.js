// The panel's last script: the form's events, the messages from the host, and the first render.
// @ts-check
'use strict';

el.form.addEventListener('submit', (/** @type {Event} */ e) => {
  e.preventDefault();
  if (!validateSize() || !validateFields() || busy()) return;
  const f = readForm();
  if (!f.prompt.trim()) {
    el.status.textContent = S.promptEmpty;
    el.prompt.focus();
    return;
  }
  // Lock ticked (typing a seed ticks it): that seed. Unticked: a new one, shown in the field so
  // the image's seed can be read and locked afterwards.
  if (!f.lock || !Number.isInteger(f.seed) || f.seed < 0) {
    f.seed = randomSeed();
    el.seed.value = String(f.seed);
  }
  state.form = f;
  vscode.postMessage({ type: 'saveForm', form: f });
  state.job = { state: 'pending', queued: 0 };
  // The previous image and its buttons belong to the previous run.
  state.lastResultId = undefined;
  el.preview.hidden = true;
  save();
  renderJob();
  /** @type {Record<string, unknown>} */
  const params = { prompt: f.prompt, seed: f.seed, steps: f.steps, width: f.width, height: f.height, guidance: f.guidance, trueCfgScale: f.trueCfgScale };
  if (f.negativePrompt.trim()) params.negativePrompt = f.negativePrompt;
  if (f.loras.length) params.loras = f.loras;
  if (state.image) Object.assign(params, { image: state.image.path, strength: f.strength, imageFit: f.imageFit });
  if (f.hires) params.hires = { scale: f.hiresScale, strength: f.hiresStrength, upscale: f.hiresUpscale, ...(f.hiresSteps === undefined ? {} : { steps: f.hiresSteps }) };
  vscode.postMessage({ type: 'generate', params });
});
el.cancel.addEventListener('click', () => vscode.postMessage({ type: 'cancel' }));
el.dice.addEventListener('click', () => {
  // The seed shown is the one the next image uses.
  el.seed.value = String(randomSeed());
  el.lock.checked = true;
  onFormChange();
});
// Typing a seed means "use this seed": it stays until the user unlocks it or rolls the dice.
el.seed.addEventListener('input', () => {
  el.lock.checked = el.seed.value.trim() !== '';
});
el.prompt.addEventListener('keydown', (/** @type {KeyboardEvent} */ e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    el.form.requestSubmit();
  }
});
el.preset.addEventListener('change', () => {
  if (el.preset.value !== 'custom') {
    const [w, h] = el.preset.value.split('x');
    el.width.value = w;
    el.height.value = h;
  }
  validateSize();
  onFormChange();
});
for (const input of [el.width, el.height]) {
  input.addEventListener('input', () => {
    syncPreset();
    validateSize();
    onFormChange();
  });
}
for (const input of [el.prompt, el.seed, el.lock, el.steps, el.guidance, el.negativePrompt, el.imageFit]) input.addEventListener('input', onFormChange);
for (const input of [el.trueCfgScale, el.strength, el.hires, el.hiresScale, el.hiresStrength, el.hiresSteps]) {
  input.addEventListener('input', () => {
    validateFields();
    onFormChange();
  });
}
el.imageFit.addEventListener('change', onFormChange);
el.hiresUpscale.addEventListener('change', onFormChange);

window.addEventListener('message', (/** @type {MessageEvent} */ event) => {
  const m = event.data;
  if (!m || typeof m !== 'object') return;
  switch (m.type) {
    case 'init':
      state.history = m.history;
      state.limits = m.limits;
      state.defaults = m.defaults;
      state.image = m.image;
      applyLimits();
      if (!state.form && m.form) {
        writeForm(m.form);
        state.form = readForm();
      } else if (!state.form) writeForm({ ...m.defaults, seed: m.defaults.seed, lock: m.defaults.seed >= 0 });
      fillMissing(m.defaults);
      showNegativeUse();
      renderLoras();
      renderImage();
      validateSize();
      // A job we were following may have finished while the panel was hidden.
      state.job = m.job || (busy() ? undefined : state.job);
      banner(!m.trusted ? S.untrusted : m.demo ? S.demo : '');
      renderGallery();
      renderJob();
      save();
      break;
    case 'job':
      state.job = m.job;
      renderJob();
      save();
      break;
    case 'history':
      state.history = m.items;
      renderGallery();
      renderResult();
      save();
      break;
    case 'promptNotes':
      // Only for the prompt as it is now: a note on text since changed would mislead.
      el.promptNotes.textContent = m.prompt === el.prompt.value ? m.notes.join('\n') : '';
      el.promptNotes.hidden = !el.promptNotes.textContent;
      break;
    case 'loras':
      state.loras = m.items;
      renderLoras();
      save();
      break;
    case 'inputImage':
      state.image = m.image;
      imageError('');
      if (m.vary) {
        el.strength.value = String(m.vary.strength);
        if (m.vary.width !== undefined) el.width.value = String(m.vary.width);
        if (m.vary.height !== undefined) el.height.value = String(m.vary.height);
        syncPreset();
        validateSize();
      }
      renderImage();
      onFormChange();
      if (m.vary) el.prompt.focus();
      break;
    case 'prefill':
      writeForm({ ...m.params, lock: m.params.seed !== undefined });
      onFormChange();
      el.prompt.focus();
      break;
  }
});

applyLimits();
if (state.form) writeForm(state.form);
renderLoras();
renderImage();
renderGallery();
renderJob();
vscode.postMessage({ type: 'ready' });
