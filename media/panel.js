// MajicFLUX generation panel (webview side). Runs under a strict CSP: no inline handlers, no eval.
// Talks to the extension host only through the declared messages (src/extension/panel/protocol.ts).
// @ts-check
(function () {
  'use strict';
  // eslint-disable-next-line no-undef
  const vscode = acquireVsCodeApi();
  /** @type {Record<string, string>} */
  const S = JSON.parse(document.getElementById('strings')?.textContent || '{}');
  const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
  const fmt = (/** @type {string} */ s, /** @type {any[]} */ ...a) => s.replace(/\{(\d+)\}/g, (m, i) => (a[+i] !== undefined ? String(a[+i]) : m));

  const el = {
    form: $('form'), prompt: $('prompt'), seed: $('seed'), dice: $('dice'), lock: $('lock'), steps: $('steps'),
    guidance: $('guidance'), preset: $('preset'), width: $('width'), height: $('height'), sizeError: $('sizeError'),
    generate: $('generate'), cancel: $('cancel'), bar: $('bar'), status: $('status'), banner: $('banner'),
    promptNotes: $('promptNotes'),
    resultSection: $('resultSection'), preview: $('preview'), result: $('result'), resultActions: $('resultActions'), gallery: $('gallery'),
  };

  /** Persistent state: the form, the last result and job view. Restored when the panel is shown again. */
  const state = Object.assign(
    { form: undefined, job: undefined, history: [], lastResultId: undefined, limits: undefined },
    vscode.getState() || {},
  );
  const save = () => vscode.setState(state);

  const randomSeed = () => {
    const a = new Uint32Array(1);
    crypto.getRandomValues(a);
    return a[0];
  };

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
    syncPreset();
    validateSize();
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
    for (const [input, range, step] of inputs) {
      input.min = String(range.min);
      input.max = String(range.max);
      if (step !== undefined) input.step = String(step);
    }
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

  const busy = () => !!state.job && ['pending', 'queued', 'running'].includes(state.job.state);

  function updateButtons() {
    el.generate.disabled = !!sizeProblem() || busy();
    el.cancel.disabled = !busy();
  }

  let saveTimer = 0;
  function onFormChange() {
    state.form = readForm();
    save();
    // Also with the host, so the form outlives closing the panel.
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => vscode.postMessage({ type: 'saveForm', form: state.form }), 300);
  }

  function renderJob() {
    const j = state.job;
    let text = '';
    let frac = 0;
    if (j) {
      switch (j.state) {
        case 'pending':
        case 'queued':
        case 'running':
          // The host's words (progress.ts), the same as the notification's and the status bar's.
          text = j.label || S.waiting;
          frac = j.fraction || 0;
          break;
        case 'done': text = S.done; frac = 1; break;
        case 'failed': text = fmt(S.failed, j.error || ''); break;
        case 'cancelled': text = S.cancelled; break;
      }
      // A run that ended without an image leaves no image of an earlier run under its status.
      if (j.state === 'failed' || j.state === 'cancelled') state.lastResultId = undefined;
    }
    el.status.textContent = text;
    el.status.dataset.state = j ? j.state : '';
    el.bar.style.width = `${Math.round(frac * 100)}%`;
    if (j && j.preview && busy()) {
      el.preview.src = j.preview;
      el.preview.hidden = false;
      el.result.hidden = true;
      el.resultSection.hidden = false;
    }
    if (j && j.state === 'done' && j.resultId) state.lastResultId = j.resultId;
    renderResult();
    updateButtons();
  }

  function renderResult() {
    const item = state.history.find((/** @type {any} */ h) => h.id === state.lastResultId);
    if (!item || busy()) {
      // Running: only this run's preview, once it has one. Idle without a result: nothing.
      el.resultActions.hidden = true;
      el.result.hidden = true;
      if (!busy()) el.preview.hidden = true;
      el.resultSection.hidden = el.preview.hidden;
      return;
    }
    el.result.src = item.src;
    el.result.title = fmt(S.seedTitle, item.seed, item.steps, item.width, item.height, item.guidance);
    el.result.hidden = false;
    el.preview.hidden = true;
    el.resultSection.hidden = false;
    el.resultActions.hidden = false;
    el.resultActions.replaceChildren(...actionButtons(item));
  }

  function actionButtons(/** @type {any} */ item) {
    /** @type {[string, string][]} */
    const actions = [['open', S.open], ['copyPrompt', S.copyPrompt], ['rerun', S.rerun], ['reveal', S.reveal]];
    const buttons = actions.map(([action, label]) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'secondary small';
      b.textContent = label;
      b.dataset.action = action;
      b.addEventListener('click', (e) => {
        e.stopPropagation();
        vscode.postMessage({ type: 'history', action, id: item.id });
      });
      return b;
    });
    const use = document.createElement('button');
    use.type = 'button';
    use.className = 'secondary small';
    use.textContent = S.use;
    use.dataset.action = 'use';
    use.addEventListener('click', (e) => {
      e.stopPropagation();
      writeForm({ prompt: item.prompt, seed: item.seed, steps: item.steps, width: item.width, height: item.height, guidance: item.guidance, lock: true });
      onFormChange();
      el.prompt.focus();
    });
    return [...buttons, use];
  }

  function renderGallery() {
    const items = state.history;
    if (!items.length) {
      const p = document.createElement('p');
      p.className = 'empty';
      p.textContent = S.noHistory;
      el.gallery.replaceChildren(p);
      return;
    }
    el.gallery.replaceChildren(
      ...items.map((/** @type {any} */ item) => {
        const fig = document.createElement('figure');
        fig.className = 'card';
        fig.dataset.id = item.id;
        const img = document.createElement('img');
        img.src = item.src;
        img.alt = item.prompt;
        img.loading = 'lazy';
        img.tabIndex = 0;
        img.title = `${item.prompt}\n${fmt(S.seedTitle, item.seed, item.steps, item.width, item.height, item.guidance)}`;
        const open = () => vscode.postMessage({ type: 'history', action: 'open', id: item.id });
        img.addEventListener('click', open);
        img.addEventListener('keydown', (e) => {
          if (e.key === 'Enter') open();
        });
        const cap = document.createElement('figcaption');
        cap.textContent = item.prompt;
        const actions = document.createElement('div');
        actions.className = 'actions';
        actions.replaceChildren(...actionButtons(item));
        fig.replaceChildren(img, cap, actions);
        return fig;
      }),
    );
  }

  function banner(/** @type {string} */ text) {
    el.banner.textContent = text;
    el.banner.hidden = !text;
  }

  // ---- events --------------------------------------------------------------------------------

  el.form.addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    if (!validateSize() || busy()) return;
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
    vscode.postMessage({
      type: 'generate',
      params: { prompt: f.prompt, seed: f.seed, steps: f.steps, width: f.width, height: f.height, guidance: f.guidance },
    });
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
  for (const input of [el.prompt, el.seed, el.lock, el.steps, el.guidance]) input.addEventListener('input', onFormChange);

  window.addEventListener('message', (/** @type {MessageEvent} */ event) => {
    const m = event.data;
    if (!m || typeof m !== 'object') return;
    switch (m.type) {
      case 'init':
        state.history = m.history;
        state.limits = m.limits;
        applyLimits();
        if (!state.form && m.form) {
          writeForm(m.form);
          state.form = readForm();
        } else if (!state.form) writeForm({ ...m.defaults, seed: m.defaults.seed, lock: m.defaults.seed >= 0 });
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
      case 'prefill':
        writeForm({ ...m.params, lock: m.params.seed !== undefined });
        onFormChange();
        el.prompt.focus();
        break;
    }
  });

  applyLimits();
  if (state.form) writeForm(state.form);
  renderGallery();
  renderJob();
  vscode.postMessage({ type: 'ready' });
})();
