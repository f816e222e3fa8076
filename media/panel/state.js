// MajicFLUX generation panel (webview side), first of its scripts: what the others share — the
// VS Code API, the page's strings and elements, and the state kept across hiding the panel.
// The scripts are classic scripts loaded in order under the panel's CSP nonce (html.ts
// PANEL_SCRIPTS), so their top-level names are one scope: no modules, no inline handlers, no eval.
// They talk to the extension host only through the declared messages (src/extension/panel/protocol.ts).
// @ts-check
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
  promptNotes: $('promptNotes'), negativePrompt: $('negativePrompt'), trueCfgScale: $('trueCfgScale'), negativeUnused: $('negativeUnused'),
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

const loraDefault = () => (state.defaults ? state.defaults.loraStrength : 1);
const baseName = (/** @type {string} */ p) => p.split(/[\\/]/).pop() || p;
const loraName = (/** @type {string} */ p) => baseName(p).replace(/\.safetensors$/i, '');

const busy = () => !!state.job && ['pending', 'queued', 'running'].includes(state.job.state);
