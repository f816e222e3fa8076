// The images generated in this workspace, newest first, kept in workspaceState. The panel and the
// CodeLens refer to them by id: a webview never names a file path.

import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import type { ImageMetadata } from '../shared/params';
import { Emitter } from './jobs';

export interface HistoryEntry {
  id: string;
  /** Absolute path on the workspace's machine. */
  file: string;
  params: ImageMetadata;
  created: number;
  seconds?: number;
  fluxFile?: string;
  blockKey?: string;
}

/** The part of vscode.Memento this needs. */
export interface Store {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void> | Promise<void>;
}

const KEY = 'majicflux.history';
export const MAX_HISTORY = 500;

/** Identifies a .flux block across edits that move it: its prompt text. */
export function blockKey(prompt: string): string {
  return createHash('sha256').update(prompt.replace(/\s+/g, ' ').trim()).digest('hex').slice(0, 16);
}

export class History {
  private entries: HistoryEntry[];
  private readonly changed = new Emitter<void>();
  readonly onDidChange = this.changed.event;

  constructor(private readonly store: Store, private readonly exists: (p: string) => boolean = fs.existsSync) {
    const saved = store.get<unknown>(KEY);
    this.entries = Array.isArray(saved) ? saved.filter(isEntry) : [];
  }

  add(e: Omit<HistoryEntry, 'id' | 'created'> & { created?: number }): HistoryEntry {
    const entry: HistoryEntry = { id: randomUUID(), created: Date.now(), ...e };
    this.entries = [entry, ...this.entries.filter((x) => x.file !== entry.file)].slice(0, MAX_HISTORY);
    this.save();
    return entry;
  }

  /** Entries whose file still exists, newest first; drops the others. */
  list(): HistoryEntry[] {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => this.exists(e.file));
    if (this.entries.length !== before) this.save();
    return [...this.entries];
  }

  get(id: string): HistoryEntry | undefined {
    return this.entries.find((e) => e.id === id);
  }

  byFile(file: string): HistoryEntry | undefined {
    return this.entries.find((e) => e.file === file);
  }

  /** Images of one .flux block, newest first. */
  forBlock(fluxFile: string, key: string): HistoryEntry[] {
    return this.entries.filter((e) => e.fluxFile === fluxFile && e.blockKey === key && this.exists(e.file));
  }

  /** The input images the entries were made from, as recorded (no file is looked at: the dropped-image pruning reads this). */
  inputImages(): string[] {
    return this.entries.flatMap((e) => (e.params.image ? [e.params.image] : []));
  }

  remove(id: string): void {
    this.entries = this.entries.filter((e) => e.id !== id);
    this.save();
  }

  private save(): void {
    void Promise.resolve(this.store.update(KEY, this.entries)).catch(() => undefined);
    this.changed.fire();
  }

  dispose(): void {
    this.changed.dispose();
  }
}

function isEntry(v: unknown): v is HistoryEntry {
  if (!v || typeof v !== 'object') return false;
  const e = v as Partial<HistoryEntry>;
  return typeof e.id === 'string' && typeof e.file === 'string' && typeof e.created === 'number' && !!e.params && typeof e.params === 'object' && typeof e.params.prompt === 'string';
}
