// A pipeline's LoRAs: files read once and kept by (path, mtime, size) with their hash, checked
// before anything loads; the DiT takes them as branches built into its session, keyed by the cached
// file id so that strengths and removals are feeds (FluxTransformer.setLoras), CLIP as merged
// weights (formats/loraText.ts, its session rebuilt only when its LoRA set or strengths change).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { GenerateHooks, UserError } from '../../shared/api';
import { ImageMetadata, Lora } from '../../shared/params';
import { addnetHash, LoraFile, readLora } from '../formats/lora';
import { DitLora, ditLora } from '../formats/loraDit';
import { clipDeltas, MergedTensors } from '../formats/loraText';
import { TensorSource } from '../formats/safetensors';
import { ditLinearShapes } from '../graphs/dit';
import { FluxTransformer } from '../graphs/fluxTransformer';
import { WeightedBranches } from '../graphs/ditLora';
import { openComponent } from '../formats/layouts/components';
import { DitConfig } from '../formats/layouts/configs';
import { LinearShapes } from '../formats/loraDit';
import { TextEncoderRuntimeOptions } from '../graphs/clip';

/** Key fragments of Stable Diffusion UNet layers (diffusers' and the original naming), for the message on a LoRA for SD 1.x/2.x/SDXL. */
const SD_UNET = /(^|[._])(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)[._]/;

type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

interface Cached {
  /** path, size and mtime: a changed file is read again. */
  id: string;
  file: LoraFile;
  /** addnetHash, 64 hex digits. */
  hash: string;
  /** The file mapped onto the pipeline's DiT. */
  dit?: DitLora;
}

/** One job's LoRAs, read and checked. */
export interface ActiveLoras {
  entries: Array<{ cached: Cached; strength: number }>;
  /** Identifies the CLIP's merged weights ('' when no LoRA has CLIP layers): a change rebuilds the CLIP and keys the prompt-embedding cache. */
  clipKey: string;
  /** For ImageMetadata.loras (no path: a PNG should not carry the user's folders). */
  metadata: NonNullable<ImageMetadata['loras']>;
  /** What of each file does not apply (a job's notes, once however many passes it runs). */
  notes: string[];
}

export class PipelineLoras {
  private readonly files = new Map<string, Cached>();
  private clip: ActiveLoras | undefined;
  /** The last job's LoRAs: a DiT loaded for it is built with their branches (no rebuild in applyToDit). */
  private wanted: ActiveLoras['entries'] = [];
  private lastDit?: { on: FluxTransformer; key: string };
  private ditShapes?: { config: DitConfig; shapes: LinearShapes };

  /** `transformer`: the DiT checkpoint, whose header gives the Linears' shapes before it loads. */
  constructor(private readonly log: Log, private readonly transformer: string) {}

  /**
   * Reads (or finds cached) every LoRA of a job and maps it onto the DiT's Linears: missing,
   * unreadable and unsupported files and LoRAs for another model are UserErrors here, before any
   * model loads.
   */
  resolve(loras: ReadonlyArray<Required<Lora>>): ActiveLoras {
    const entries = loras.map((l) => ({ cached: this.read(path.resolve(l.path)), strength: l.strength }));
    if (entries.length) {
      this.ditShapes ??= this.readDitShapes();
      for (const e of entries) {
        const lora = (e.cached.dit ??= ditLora(e.cached.file, this.ditShapes.config, this.ditShapes.shapes));
        const f = e.cached.file;
        const t5 = f.pairs.filter((p) => p.target === 't5');
        // DiT keys of which none applies mean another model's LoRA, even where its CLIP part fits
        // (SD and SDXL LoRAs carry a CLIP-L part named like FLUX's): only a CLIP-only file passes.
        if (!lora.branches.size && (lora.skipped.length || !f.pairs.some((p) => p.target === 'clip'))) {
          throw new UserError(lora.skipped.length
            ? `The LoRA ${f.path} changes no layer of this model: none of its ${lora.skipped.length} DiT keys (e.g. ${lora.skipped.slice(0, 3).join(', ')}) names a layer of this FLUX transformer${lora.skipped.some((k) => SD_UNET.test(k)) ? '; they are Stable Diffusion UNet layers (down_blocks, mid_block, up_blocks): this LoRA is for SD 1.x/2.x or SDXL, not FLUX' : ''}.`
            : `The LoRA ${f.path} holds only T5 text-encoder layers (${t5.length}), which MajicFLUX does not apply: it would change nothing.`);
        }
      }
    }
    this.wanted = entries;
    const notes = entries.flatMap((e) => this.notApplied(e.cached));
    const withClip = entries.filter((e) => e.cached.file.pairs.some((p) => p.target === 'clip') && e.strength !== 0);
    return {
      entries,
      clipKey: withClip.map((e) => `${e.cached.id}@${e.strength}`).join('\n'),
      metadata: entries.map((e) => ({ name: e.cached.file.name, strength: e.strength, hash: e.cached.hash.slice(0, 12) })),
      notes,
    };
  }

  /** The note for the keys of a file that do not apply to the DiT (none when all do), logged with every key. */
  private notApplied({ file: f, dit: lora }: Cached): string[] {
    const skipped = lora?.skipped ?? [];
    const t5 = f.pairs.filter((p) => p.target === 't5').map((p) => p.key);
    const all = [...skipped, ...t5, ...f.unknownKeys];
    if (!all.length) return [];
    const why = [skipped.length && `${skipped.length} DiT keys match no layer of this model`, t5.length && `${t5.length} T5 keys (LoRA on T5 is not supported)`, f.unknownKeys.length && `${f.unknownKeys.length} keys are not LoRA pairs`].filter(Boolean).join(', ');
    const note = `LoRA ${f.name}: applied to ${lora?.branches.size ?? 0} DiT layers; not applied: ${why} (${all.slice(0, 3).join(', ')}${all.length > 3 ? ', …' : ''})`;
    this.log('warn', `${note}: ${all.join(', ')}`);
    return [note];
  }

  private readDitShapes(): { config: DitConfig; shapes: LinearShapes } {
    const c = openComponent(this.transformer, 'dit');
    try {
      return { config: c.config, shapes: ditLinearShapes(c.weights, c.config) };
    } finally {
      c.close();
    }
  }

  private read(file: string): Cached {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      throw new UserError(`LoRA file not found: ${file}`);
    }
    if (!st.isFile()) throw new UserError(`The LoRA ${file} is not a file: give the path of a .safetensors LoRA`);
    const id = `${file}|${st.size}|${st.mtimeMs}`;
    const have = this.files.get(file);
    if (have?.id === id) return have;
    const t0 = performance.now();
    const c: Cached = { id, file: readLora(file), hash: addnetHash(file) };
    this.files.set(file, c);
    const count = (t: string) => c.file.pairs.filter((p) => p.target === t).length;
    this.log('info', `LoRA ${c.file.name}: read in ${((performance.now() - t0) / 1000).toFixed(2)} s: ${count('dit')} DiT pairs, ${count('clip')} CLIP pairs, ${count('t5')} T5 pairs, hash ${c.hash.slice(0, 12)}`);
    return c;
  }

  /** Whether the loaded CLIP (built for the last call's set) must be rebuilt for this job; remembers the job's set. */
  clipChanged(active: ActiveLoras): boolean {
    const changed = (this.clip?.clipKey ?? '') !== active.clipKey;
    this.clip = active;
    return changed;
  }

  /** ClipEncoder.load options for the set remembered by clipChanged: merged weights inlined (none without CLIP LoRAs). */
  clipOptions(warn: (note: string) => void): Partial<TextEncoderRuntimeOptions> {
    const active = this.clip;
    if (!active?.clipKey) return {};
    const adapt = (src: TensorSource) => {
      const on = active.entries.map((e) => ({ file: e.cached.file, strength: e.strength }));
      const { deltas, applied, skipped } = clipDeltas(on, src);
      for (const [file, n] of applied) this.log('info', `LoRA ${path.basename(file)}: merged ${n} pairs into the CLIP text encoder`);
      for (const [file, keys] of skipped) {
        const note = `LoRA ${path.basename(file)}: ${keys.length} CLIP keys match no layer of this text encoder and were skipped (${keys.slice(0, 3).join(', ')}${keys.length > 3 ? ', …' : ''})`;
        warn(note);
        this.log('warn', `${note}: ${keys.join(', ')}`);
      }
      return new MergedTensors(src, deltas);
    };
    return { adapt, inlineLimit: Number.MAX_SAFE_INTEGER };
  }

  /** FluxTransformer.load's `loras` for a DiT loaded for the last resolved job (none without a LoRA on the DiT). */
  ditLoadLoras(): WeightedBranches[] {
    return this.wanted.flatMap((e) => (e.cached.dit ? [{ branches: e.cached.dit.branches, strength: e.strength, id: e.cached.id }] : []));
  }

  /** Applies the job's LoRAs (mapped by resolve) to the DiT: branches, nothing reloaded once the DiT has them. */
  async applyToDit(dit: FluxTransformer, active: ActiveLoras, onLoad?: GenerateHooks['onLoad']): Promise<void> {
    const on = active.entries.flatMap((entry) => (entry.cached.dit ? [{ entry, lora: entry.cached.dit }] : []));
    const key = active.entries.map((e) => `${e.cached.id}@${e.strength}`).join('\n');
    if (this.lastDit?.on === dit && this.lastDit.key === key) return;
    if (!key && !dit.hasLoraBranches) return;
    const t0 = performance.now();
    const builds = dit.sessionBuilds;
    const loras = on.map(({ entry, lora }) => ({ branches: lora.branches, strength: entry.strength, id: entry.cached.id }));
    // A rebuild takes about a load's time: said, so that the job does not look stuck at step 0.
    const rebuilds = dit.rebuildsFor(loras);
    if (rebuilds) onLoad?.('dit', 'lora');
    await dit.setLoras(loras);
    if (rebuilds) onLoad?.('dit', 'loaded');
    this.lastDit = { on: dit, key };
    const t = dit.loadTimings;
    // Where a rebuild's time goes (graph with the factors, then the session: the weights uploaded again).
    const how = dit.sessionBuilds > builds ? `session rebuilt with their branches${t ? `: graph ${t.build.toFixed(2)} s, session ${t.session.toFixed(2)} s` : ''}` : 'strengths only';
    this.log('info', `LoRAs on the DiT: ${active.metadata.map((m) => `${m.name}:${m.strength}`).join(', ') || 'none'} (${how}, ${((performance.now() - t0) / 1000).toFixed(2)} s)`);
  }
}
