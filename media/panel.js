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
    promptNotes: $('promptNotes'), negativePrompt: $('negativePrompt'), trueCfgScale: $('trueCfgScale'),
    loraPick: $('loraPick'), loraAdd: $('loraAdd'), loraRefresh: $('loraRefresh'), loraEmpty: $('loraEmpty'), loraList: $('loraList'),
    dropZone: $('dropZone'), imageError: $('imageError'), imageThumb: $('imageThumb'), imageName: $('imageName'), imagePick: $('imagePick'), imageClear: $('imageClear'),
    strength: $('strength'), imageFit: $('imageFit'), hires: $('hires'), hiresScale: $('hiresScale'), hiresStrength: $('hiresStrength'),
    hiresSteps: $('hiresSteps'), hiresUpscale: $('hiresUpscale'),
    fieldError: $('fieldError'),
    resultSection: $('resultSection'), preview: $('preview'), result: $('result'), resultActions: $('resultActions'), gallery: $('gallery'),
  };

  /** Persistent state: the form, the last result and job view. Restored when the panel is shown again. */
  const state = Object.assign(
    // loras: the files the picker offers; chosen: the LoRAs on the next image ({ path, strength });
    // image: the host's input image ({ path, name, src }), shown, and sent back with Generate.
    { form: undefined, job: undefined, history: [], lastResultId: undefined, limits: undefined, defaults: undefined, loras: [], chosen: [], image: undefined },
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

  const loraDefault = () => (state.defaults ? state.defaults.loraStrength : 1);
  const baseName = (/** @type {string} */ p) => p.split(/[\\/]/).pop() || p;
  const loraName = (/** @type {string} */ p) => baseName(p).replace(/\.safetensors$/i, '');

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

  function renderLoras() {
    const available = state.loras;
    const pick = document.createElement('option');
    pick.value = '';
    pick.textContent = S.pickLora;
    el.loraPick.replaceChildren(
      pick,
      ...available.map((/** @type {any} */ l) => {
        const o = document.createElement('option');
        o.value = l.path;
        o.textContent = `${l.name} (${l.size})`;
        o.title = fmt(S.loraTitle, l.name, l.size, l.where);
        return o;
      }),
    );
    el.loraEmpty.textContent = S.noLoras;
    el.loraEmpty.hidden = available.length > 0;
    const l = state.limits;
    el.loraList.replaceChildren(
      ...state.chosen.map((/** @type {any} */ c, /** @type {number} */ i) => {
        const li = document.createElement('li');
        li.dataset.path = c.path;
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = loraName(c.path);
        name.title = c.path;
        const input = document.createElement('input');
        input.type = 'number';
        input.step = '0.05';
        input.className = 'loraStrength';
        if (l && l.loraStrength) {
          input.min = String(l.loraStrength.min);
          input.max = String(l.loraStrength.max);
        }
        input.value = String(c.strength);
        input.setAttribute('aria-label', fmt(S.loraStrength, loraName(c.path)));
        input.addEventListener('input', () => {
          c.strength = input.value.trim() === '' ? NaN : Number(input.value);
          validateFields();
          onFormChange();
        });
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'secondary small';
        remove.textContent = S.remove;
        remove.dataset.action = 'removeLora';
        remove.addEventListener('click', () => {
          state.chosen.splice(i, 1);
          renderLoras();
          validateFields();
          onFormChange();
        });
        li.replaceChildren(name, input, remove);
        return li;
      }),
    );
    el.loraAdd.disabled = !!l && state.chosen.length >= l.loras.max;
  }

  function renderImage() {
    const img = state.image;
    el.imageThumb.hidden = !img;
    if (img) {
      el.imageThumb.src = img.src;
      el.imageThumb.title = img.path;
    }
    el.imageName.textContent = img ? img.name : S.noImage;
    el.imageClear.hidden = !img;
    el.strength.disabled = !img;
    el.imageFit.disabled = !img;
    validateFields();
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
    el.generate.disabled = !!sizeProblem() || !!fieldProblem() || busy();
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
    const actions = [['open', S.open], ['copyPrompt', S.copyPrompt], ['rerun', S.rerun], ['vary', S.vary], ['reveal', S.reveal]];
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
  el.loraAdd.addEventListener('click', () => {
    const p = el.loraPick.value;
    const max = state.limits ? state.limits.loras.max : Infinity;
    if (!p || state.chosen.some((/** @type {any} */ c) => c.path === p) || state.chosen.length >= max) return;
    state.chosen.push({ path: p, strength: loraDefault() });
    el.loraPick.value = '';
    renderLoras();
    validateFields();
    onFormChange();
  });
  el.loraRefresh.addEventListener('click', () => vscode.postMessage({ type: 'listLoras' }));
  el.imagePick.addEventListener('click', () => vscode.postMessage({ type: 'pickImage' }));
  el.imageClear.addEventListener('click', () => vscode.postMessage({ type: 'clearImage' }));
  // VS Code hands a webview files dragged from the Explorer (Shift held) as a uri-list: the host
  // reads the file where it is. A file from the desktop or a file manager comes as a File with no
  // path the host could read (and the host may be remote): its bytes are sent, once checked here.
  el.dropZone.addEventListener('dragover', (/** @type {DragEvent} */ e) => {
    e.preventDefault();
    el.dropZone.classList.toggle('over', true);
  });
  el.dropZone.addEventListener('dragleave', () => el.dropZone.classList.toggle('over', false));
  el.dropZone.addEventListener('drop', (/** @type {DragEvent} */ e) => {
    e.preventDefault();
    el.dropZone.classList.toggle('over', false);
    const dt = e.dataTransfer;
    if (!dt) return;
    const explorer = dt.getData('application/vnd.code.uri-list');
    const file = dt.files && dt.files[0];
    if (!explorer && file) return void dropFile(file);
    const list = explorer || dt.getData('text/uri-list');
    const uri = list.split(/\r?\n/).map((x) => x.trim()).find((x) => x && !x.startsWith('#'));
    if (uri) vscode.postMessage({ type: 'dropImage', uri });
  });

  /** A dropped File: refused here, before any byte is sent, unless its type and size are ones the host takes. */
  function dropFile(/** @type {File} */ file) {
    const d = state.limits && state.limits.droppedImage;
    if (!d) return;
    const problem = !d.types.includes(file.type) ? fmt(S.dropNotImage, file.name) : file.size > d.maxBytes ? fmt(S.dropTooLarge, file.name, d.max) : '';
    imageError(problem);
    if (!problem) void file.arrayBuffer().then((b) => vscode.postMessage({ type: 'dropImageBytes', name: file.name, bytes: new Uint8Array(b) }));
  }

  function imageError(/** @type {string} */ text) {
    el.imageError.textContent = text;
    el.imageError.hidden = !text;
  }

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
})();
