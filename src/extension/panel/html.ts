// The panel's HTML: static markup with localized labels, a strict Content-Security-Policy, and the
// scripts (scripts.ts) allowed by a per-load nonce. The inputs' min/max/step come with the `init` message
// (params.ts's limits), so no limit is written here.

import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { HIRES_UPSCALERS } from '../../shared/params';
import { PANEL_SCRIPTS } from './scripts';

const t = vscode.l10n.t;

export const SIZE_PRESETS: [number, number][] = [
  [1024, 1024],
  [1152, 896],
  [896, 1152],
  [1216, 832],
  [832, 1216],
  [1344, 768],
  [768, 1344],
  [768, 768],
  [512, 512],
  [256, 256],
];

/** The hires pass's upscalers (params.ts's), as the form names them. */
const UPSCALER_LABELS: Record<(typeof HIRES_UPSCALERS)[number], () => string> = {
  image: () => t('Image (Lanczos)'),
  latent: () => t('Latent (faster, softer)'),
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Strings the script shows; JSON inside a non-executable script block. */
function strings(): Record<string, string> {
  return {
    generate: t('Generate'),
    cancel: t('Cancel'),
    waiting: t('Waiting for the server…'),
    done: t('Done'),
    failed: t('Failed: {0}'),
    cancelled: t('Cancelled'),
    notMultiple: t('Width and height must be multiples of {0} (FLUX works on {0}-pixel patches): try {1} × {2}.'),
    outOfRange: t('Width and height must be from {0} to {1}.'),
    promptEmpty: t('Write a prompt first.'),
    open: t('Open'),
    copyPrompt: t('Copy prompt'),
    rerun: t('Re-run'),
    reveal: t('Reveal'),
    use: t('Use these parameters'),
    noHistory: t('No images yet in this workspace.'),
    custom: t('Custom'),
    demo: t('Demo model (random weights): images are coloured noise. Set majicflux.model.path for real images.'),
    untrusted: t('This workspace is not trusted: nothing runs until you trust it.'),
    seedTitle: t('Seed {0}, {1} steps, {2} × {3}, guidance {4}'),
    vary: t('Vary this image'),
    outside: t('{0} must be a number from {1} to {2}.'),
    outsideWhole: t('{0} must be a whole number from {1} to {2}.'),
    trueCfgScale: t('True CFG scale'),
    loraStrength: t('Strength of {0}'),
    strength: t('Strength'),
    hiresScale: t('Hires scale'),
    hiresStrength: t('Hires strength'),
    hiresSteps: t('Hires steps'),
    remove: t('Remove'),
    noLoras: t('No LoRA files found: put .safetensors LoRAs in the workspace or set majicflux.loras.folder.'),
    pickLora: t('Choose a LoRA…'),
    tooManyLoras: t('At most {0} LoRAs apply to one image.'),
    noImage: t('No input image: the image is made from noise. Drop one here (hold Shift) or choose one.'),
    loraTitle: t('{0} ({1}) in {2}'),
    dropNotImage: t('{0} is not a PNG, JPEG or WebP image; only those can be the input image.'),
    dropTooLarge: t('{0} is larger than {1}, the most a dropped image may be: use Choose… to pick it instead.'),
  };
}

export function panelHtml(webview: vscode.Webview, extensionUri: vscode.Uri): string {
  const nonce = randomBytes(16).toString('base64');
  const media = (f: string) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', f)).toString();
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data:`,
    `style-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
    `font-src ${webview.cspSource}`,
  ].join('; ');
  const presets = SIZE_PRESETS.map(([w, h]) => `<option value="${w}x${h}">${w} × ${h}</option>`).join('');
  const upscalers = HIRES_UPSCALERS.map((u) => `<option value="${u}">${escapeHtml(UPSCALER_LABELS[u]())}</option>`).join('');
  const json = JSON.stringify(strings()).replace(/</g, '\\u003c');
  const e = (s: string) => escapeHtml(s);
  return `<!DOCTYPE html>
<html lang="${e(vscode.env.language)}">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${media('panel.css')}" rel="stylesheet">
<title>MajicFLUX</title>
</head>
<body>
<div id="banner" class="banner" hidden></div>
<form id="form" novalidate>
  <label for="prompt">${e(t('Prompt'))}</label>
  <textarea id="prompt" rows="4" placeholder="${e(t('a lighthouse on a cliff at dawn, oil painting'))}" spellcheck="true"></textarea>
  <p id="promptNotes" class="notes" role="status" hidden></p>
  <div class="row">
    <div class="field">
      <label for="seed">${e(t('Seed'))}</label>
      <div class="inline">
        <input id="seed" type="number" step="1">
        <button type="button" id="dice" class="icon" title="${e(t('New random seed'))}" aria-label="${e(t('New random seed'))}"><svg viewBox="0 0 16 16" aria-hidden="true"><path d="M3 1h10a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V3a2 2 0 0 1 2-2zm0 1.2a.8.8 0 0 0-.8.8v10c0 .44.36.8.8.8h10a.8.8 0 0 0 .8-.8V3a.8.8 0 0 0-.8-.8H3zM4.8 3.6a1.2 1.2 0 1 1 0 2.4 1.2 1.2 0 0 1 0-2.4zm6.4 0a1.2 1.2 0 1 1 0 2.4 1.2 1.2 0 0 1 0-2.4zM8 6.8a1.2 1.2 0 1 1 0 2.4 1.2 1.2 0 0 1 0-2.4zM4.8 10a1.2 1.2 0 1 1 0 2.4 1.2 1.2 0 0 1 0-2.4zm6.4 0a1.2 1.2 0 1 1 0 2.4 1.2 1.2 0 0 1 0-2.4z"/></svg></button>
        <label class="check" title="${e(t('Keep this seed for the next images'))}"><input id="lock" type="checkbox"> <svg viewBox="0 0 16 16" aria-hidden="true"><path d="M5 7V5a3 3 0 0 1 6 0v2h1a1 1 0 0 1 1 1v6a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1h1zm1.2 0h3.6V5a1.8 1.8 0 0 0-3.6 0v2z"/></svg> ${e(t('Lock'))}</label>
      </div>
    </div>
    <div class="field">
      <label for="steps">${e(t('Steps'))}</label>
      <input id="steps" type="number" step="1">
    </div>
    <div class="field">
      <label for="guidance">${e(t('Guidance'))}</label>
      <input id="guidance" type="number" step="0.1">
    </div>
  </div>
  <div class="row">
    <div class="field">
      <label for="preset">${e(t('Size'))}</label>
      <select id="preset">${presets}<option value="custom">${e(t('Custom'))}</option></select>
    </div>
    <div class="field">
      <label for="width">${e(t('Width'))}</label>
      <input id="width" type="number">
    </div>
    <div class="field">
      <label for="height">${e(t('Height'))}</label>
      <input id="height" type="number">
    </div>
  </div>
  <div id="sizeError" class="error" role="alert" hidden></div>
  <fieldset id="negativeSection">
    <legend>${e(t('Negative prompt'))}</legend>
    <textarea id="negativePrompt" rows="2" aria-label="${e(t('Negative prompt'))}" placeholder="${e(t('what the image should not show, e.g. blurry, text, watermark'))}" spellcheck="true"></textarea>
    <div class="row">
      <div class="field">
        <label for="trueCfgScale">${e(t('True CFG scale'))}</label>
        <input id="trueCfgScale" type="number" step="0.1">
      </div>
      <span class="hint">${e(t('1 is off. Above 1 the negative prompt applies and each step runs the model twice.'))}</span>
    </div>
    <p id="negativeUnused" class="notes" role="status" hidden>${e(t('Not used while the true CFG scale is 1: raise it above 1, or clear the negative prompt.'))}</p>
  </fieldset>
  <fieldset id="loraSection">
    <legend>${e(t('LoRA'))}</legend>
    <div class="inline">
      <select id="loraPick" aria-label="${e(t('LoRA file'))}"></select>
      <button type="button" id="loraAdd" class="secondary small">${e(t('Add'))}</button>
      <button type="button" id="loraRefresh" class="icon" title="${e(t('Look for LoRA files again'))}" aria-label="${e(t('Look for LoRA files again'))}"><svg viewBox="0 0 16 16" aria-hidden="true"><path d="M13.5 2v4h-4l1.6-1.6A4.5 4.5 0 1 0 12.4 9h1.3a5.8 5.8 0 1 1-1.7-5.5L13.5 2z"/></svg></button>
    </div>
    <p id="loraEmpty" class="hint" hidden></p>
    <ul id="loraList" class="loras"></ul>
  </fieldset>
  <fieldset id="imageSection">
    <legend>${e(t('Input image'))}</legend>
    <div id="dropZone" class="drop">
      <img id="imageThumb" class="thumb" alt="${e(t('Input image'))}" hidden>
      <span id="imageName" class="hint"></span>
      <button type="button" id="imagePick" class="secondary small">${e(t('Choose…'))}</button>
      <button type="button" id="imageClear" class="secondary small" hidden>${e(t('Remove'))}</button>
    </div>
    <p id="imageError" class="error" role="alert" hidden></p>
    <div class="row">
      <div class="field">
        <label for="strength">${e(t('Strength'))}</label>
        <input id="strength" type="number" step="0.05">
      </div>
      <div class="field">
        <label for="imageFit">${e(t('Fit'))}</label>
        <select id="imageFit"><option value="crop">${e(t('Crop to the size'))}</option><option value="stretch">${e(t('Stretch to the size'))}</option></select>
      </div>
      <span class="hint">${e(t('Strength 1 repaints everything; lower keeps more of the image.'))}</span>
    </div>
  </fieldset>
  <fieldset id="hiresSection">
    <legend><label class="check"><input id="hires" type="checkbox"> ${e(t('Hires pass'))}</label></legend>
    <div class="row">
      <div class="field">
        <label for="hiresScale">${e(t('Scale'))}</label>
        <input id="hiresScale" type="number" step="0.05">
      </div>
      <div class="field">
        <label for="hiresStrength">${e(t('Strength'))}</label>
        <input id="hiresStrength" type="number" step="0.05">
      </div>
      <div class="field">
        <label for="hiresSteps">${e(t('Steps'))}</label>
        <input id="hiresSteps" type="number" step="1" placeholder="${e(t('as Steps'))}" title="${e(t('Empty: as many steps as the first pass'))}">
      </div>
      <div class="field">
        <label for="hiresUpscale">${e(t('Upscaler'))}</label>
        <select id="hiresUpscale">${upscalers}</select>
      </div>
      <span class="hint">${e(t('Generates, upscales, then repaints the details at the larger size.'))}</span>
    </div>
  </fieldset>
  <div id="fieldError" class="error" role="alert" hidden></div>
  <div class="row buttons">
    <button type="submit" id="generate">${e(t('Generate'))}</button>
    <button type="button" id="cancel" class="secondary" disabled>${e(t('Cancel'))}</button>
    <span class="hint">${e(t('Ctrl+Enter in the prompt generates'))}</span>
  </div>
</form>
<section id="progressSection" aria-live="polite">
  <div class="progress"><div id="bar"></div></div>
  <div id="status" class="status"></div>
</section>
<section id="resultSection" hidden>
  <img id="preview" class="result" alt="${e(t('Latent preview'))}" hidden>
  <img id="result" class="result" alt="${e(t('Generated image'))}" hidden>
  <div id="resultActions" class="actions" hidden></div>
</section>
<h2>${e(t('History'))}</h2>
<section id="gallery" class="gallery"></section>
<script type="application/json" id="strings">${json}</script>
${PANEL_SCRIPTS.map((f) => `<script nonce="${nonce}" src="${media(`panel/${f}`)}"></script>`).join('\n')}
</body>
</html>`;
}
