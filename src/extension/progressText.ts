// The words for a job's progress (progress.ts): a sentence for the notification and the panel, a
// short form for the status bar.

import * as vscode from 'vscode';
import type { ComponentName } from '../shared/api';
import type { JobProgress } from './progress';

const PART: Record<ComponentName, string> = { clip: 'CLIP', t5: 'T5', dit: 'DiT', vae: 'VAE' };
const t = vscode.l10n.t;

/** The sentence for the notification and the panel ("Preparing weights (first use, DiT)… 30 %"). */
export function progressText(p: JobProgress): string {
  if (p.loading) {
    const part = PART[p.loading.component];
    if (p.loading.preparing) return p.loading.percent !== undefined ? t('Preparing weights (first use, {0})… {1} %', part, p.loading.percent) : t('Preparing weights (first use, {0})…', part);
    if (p.loading.lora) return t('Applying LoRAs (building the {0} again)…', part);
    return t('Loading the model ({0})…', part);
  }
  switch (p.phase) {
    case 'waiting': return t('Waiting for the server…');
    case 'queued': return t('Queued…');
    case 'starting': return t('Starting…');
    case 'text': return t('Encoding the prompt…');
    case 'encode': return t('Encoding the image…');
    case 'denoise': return t('Step {0}/{1}', p.step ?? 0, p.steps ?? 0);
    case 'decode': return t('Decoding the image…');
    case 'save': return t('Saving…');
  }
}

/** The status bar's short form ("step 3/28", "preparing DiT weights 30 %"). */
export function statusText(p: JobProgress, model: string): string {
  if (p.loading) {
    const part = PART[p.loading.component];
    if (p.loading.preparing) return p.loading.percent !== undefined ? t('preparing {0} weights {1} %', part, p.loading.percent) : t('preparing {0} weights', part);
    if (p.loading.lora) return t('applying LoRAs ({0})', part);
    return t('loading {0} ({1})', model, part);
  }
  switch (p.phase) {
    case 'waiting': return t('waiting for the server');
    case 'queued': return t('queued');
    case 'starting': return t('starting');
    case 'text': return t('encoding the prompt');
    case 'encode': return t('encoding the image');
    case 'denoise': return t('step {0}/{1}', p.step ?? 0, p.steps ?? 0);
    case 'decode': return t('decoding');
    case 'save': return t('saving');
  }
}
