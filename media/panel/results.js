// What a run shows: its progress and latent preview, the result with its actions, the history
// gallery, and the banner above the form.
// @ts-check
'use strict';

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
