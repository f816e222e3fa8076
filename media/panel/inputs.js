// The panel's input widgets: the LoRA list and picker, and the input image (thumbnail, Choose…,
// Remove, and drops from the Explorer or the desktop).
// @ts-check
'use strict';

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

// ---- events --------------------------------------------------------------------------------

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
