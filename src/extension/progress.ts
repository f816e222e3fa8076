// Where a job stands, as the notification, the status bar and the panel show it: one computation,
// so the three say the same thing. The stages come in one order (waiting, queued, starting,
// encoding the prompt, step k/n, decoding, saving) and never go back, except to waiting when the
// server stopped while the job was queued and it is submitted again; loading a model part
// (with first-use weight preparation and its percentage) is shown inside the stage that needs it.
// Pure (no vscode); progressText.ts words it.

import type { ComponentName } from '../shared/api';
import { stepsToRun } from '../shared/params';
import type { Job } from './jobs';

export const PHASES = ['waiting', 'queued', 'starting', 'text', 'encode', 'denoise', 'decode', 'save'] as const;
export type Phase = (typeof PHASES)[number];

export interface JobProgress {
  phase: Phase;
  /** A part being loaded now; `percent` while preparing its weights (first use); `lora`: the DiT built again with a new LoRA. */
  loading?: { component: ComponentName; preparing: boolean; percent?: number; lora?: true };
  /** Denoising step done so far (0 before the first) and of how many. */
  step?: number;
  steps?: number;
  /** 0–1 of this job, for progress bars: the denoising steps, then 1 from decoding on. */
  fraction: number;
}

/** An active job's progress (undefined for a finished one). */
export function jobProgress(j: Job): JobProgress | undefined {
  if (j.state === 'done' || j.state === 'failed' || j.state === 'cancelled') return undefined;
  const loading = j.loading && {
    component: j.loading.component,
    preparing: j.loading.phase === 'prepare',
    ...(j.loading.phase === 'lora' ? { lora: true as const } : {}),
    ...(j.loading.phase === 'prepare' && j.loading.fraction !== undefined ? { percent: Math.floor(j.loading.fraction * 100) } : {}),
  };
  if (j.state === 'pending') return { phase: 'waiting', fraction: 0 };
  if (j.state === 'queued') return { phase: 'queued', fraction: 0 };
  switch (j.stage) {
    case undefined:
    case 'load':
      return { phase: 'starting', loading, fraction: 0 };
    case 'text':
      return { phase: 'text', loading, fraction: 0 };
    case 'encode':
    case 'denoise': {
      // `encode` comes before the steps (an input image) or between two passes (hires): the steps so far count.
      // Before the first step event: the steps the job will run (image-to-image runs a share of them).
      const steps = j.steps ?? stepsToRun(j.request.params);
      const step = j.step ?? 0;
      return { phase: j.stage, loading, step, steps, fraction: steps ? step / steps : 0 };
    }
    default:
      return { phase: j.stage, loading, fraction: 1 };
  }
}
