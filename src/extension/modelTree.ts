// The Models view's content and "Use This Model": found models → tree nodes (label, icon,
// tooltip, context value), and a model spec → the settings to write. Pure (no vscode): the view
// (models.ts) turns nodes into TreeItems.

import type { ModelSpec } from '../shared/api';
import { formatBytes } from '../shared/bytes';
import type { FoundModel, MachineInfo, PartCheck, PartStatus } from '../shared/models';
import { dtypeSummary, formatParams, mdCode, partProblems, roleLabel, statusLabel, Translate, variantOf, whereLabel } from './modelReport';

export interface TreeNodeData {
  id: string;
  label: string;
  description?: string;
  /** Markdown. */
  tooltip: string;
  /** A codicon id, and a theme colour id for it. */
  icon: string;
  color?: string;
  /** For menus: `majicflux.model.complete|incomplete[.inUse]`, `majicflux.modelPart[.file]`. */
  contextValue: string;
  collapsible: boolean;
  /** File or folder to reveal. */
  path?: string;
}

export const PART_ICON: Record<PartStatus, { icon: string; color: string }> = {
  present: { icon: 'pass', color: 'testing.iconPassed' },
  missing: { icon: 'circle-slash', color: 'list.errorForeground' },
  'wrong-dtype': { icon: 'warning', color: 'list.warningForeground' },
  corrupt: { icon: 'error', color: 'list.errorForeground' },
};

const SPEC_KEYS = ['dir', 'transformer', 'vae', 'textEncoder', 'textEncoder2'] as const;

const norm = (p: string | undefined) => (p ?? '').replace(/[\\/]+$/, '');

/** Whether two specs name the same parts (same dir and overrides). */
export function sameSpec(a: ModelSpec, b: ModelSpec): boolean {
  return SPEC_KEYS.every((k) => norm(a[k]) === norm(b[k]));
}

const ROLE_OF: Record<(typeof SPEC_KEYS)[number], PartCheck['role'] | undefined> = { dir: undefined, transformer: 'dit', vae: 'vae', textEncoder: 'clip', textEncoder2: 't5' };

/**
 * Whether the settings select this found model: the same spec, or the same folder with overrides
 * that name the very files the model uses (a download's spec names its single-file DiT; the same
 * folder found on disk may not).
 */
export function isInUse(m: FoundModel, current: ModelSpec): boolean {
  if (sameSpec(m.spec, current)) return true;
  if (norm(m.spec.dir) !== norm(current.dir)) return false;
  return SPEC_KEYS.every((k) => {
    const cur = norm(current[k]);
    const mine = norm(m.spec[k]);
    if (cur === mine) return true;
    const role = ROLE_OF[k];
    const used = role ? norm(m.parts.find((p) => p.role === role)?.path) : '';
    return !mine && cur !== '' && cur === used;
  });
}

export function modelNode(m: FoundModel, current: ModelSpec, t: Translate): TreeNodeData {
  const inUse = isInUse(m, current);
  const corrupt = m.parts.some((p) => p.status === 'corrupt');
  const bytes = m.parts.reduce((a, p) => a + (p.bytes ?? 0), 0);
  const desc = [m.complete ? '' : t('incomplete'), inUse ? t('in use') : '', whereLabel(m.where, t), variantOf(m.spec), bytes ? formatBytes(bytes) : ''].filter(Boolean);
  const tip = [`**${m.name}**${m.id !== 'custom' ? ` (${m.id})` : ''}`, '', `${mdCode(m.root)}`, '', whereLabel(m.where, t)];
  if (m.spec.transformer) tip.push('', `DiT: ${mdCode(m.spec.transformer)}`);
  if (inUse) tip.push('', t('This is the model in use.'));
  tip.push('', m.complete ? t('Every part is present and usable.') : t('Missing or unusable: {0}.', partProblems(m, t).join(', ')));
  const icon = m.complete ? { icon: 'pass-filled', color: 'testing.iconPassed' } : corrupt ? PART_ICON.corrupt : PART_ICON['wrong-dtype'];
  return {
    id: `model:${m.root}:${JSON.stringify(m.spec)}`,
    label: m.name,
    description: desc.join(' · '),
    tooltip: tip.join('\n'),
    ...icon,
    contextValue: `majicflux.model.${m.complete ? 'complete' : 'incomplete'}${inUse ? '.inUse' : ''}`,
    collapsible: true,
    path: m.root,
  };
}

export function partNode(m: FoundModel, p: PartCheck, t: Translate): TreeNodeData {
  const facts = [p.layout, dtypeSummary(p.dtypes), p.bytes !== undefined ? formatBytes(p.bytes) : ''].filter(Boolean).join(' · ');
  const tip = [`**${roleLabel(p.role, t)}**: ${statusLabel(p.status, t)}`];
  if (p.message) tip.push('', p.message);
  if (p.path) tip.push('', mdCode(p.path));
  if (p.layout) tip.push('', `${t('layout')}: ${p.layout}`);
  if (p.dtypes) tip.push('', `${t('dtypes')}: ${dtypeSummary(p.dtypes)}`);
  if (p.params !== undefined) tip.push('', `${t('parameters')}: ${formatParams(p.params)}`);
  if (p.bytes !== undefined) tip.push('', `${t('size')}: ${formatBytes(p.bytes)}`);
  if (p.sha256) tip.push('', `sha256: ${mdCode(p.sha256)}${p.verified ? ` (${p.verified === 'match' ? t('matches') : p.verified === 'mismatch' ? t('DOES NOT MATCH') : t('recorded')})` : ''}`);
  return {
    id: `part:${m.root}:${JSON.stringify(m.spec)}:${p.role}`,
    label: roleLabel(p.role, t),
    description: p.status === 'present' ? facts : [statusLabel(p.status, t), p.message ?? ''].filter(Boolean).join(': '),
    tooltip: tip.join('\n'),
    ...PART_ICON[p.status],
    contextValue: p.path ? 'majicflux.modelPart.file' : 'majicflux.modelPart',
    collapsible: false,
    path: p.path,
  };
}

/** The view's description: what this machine has. */
export function machineDescription(m: MachineInfo, t: Translate): string {
  const gpu = m.gpuMemory ? ` · ${m.gpuName ? `${m.gpuName} ` : ''}${formatBytes(m.gpuMemory)}` : '';
  return t('{0} RAM', formatBytes(m.totalMemory)) + gpu;
}

/**
 * The view's header: the demo model when it is in use (the status bar then says "MajicFLUX demo",
 * and an empty list would read as "no model"), then the machine once searched.
 */
export function viewDescription(machine: MachineInfo | undefined, demo: boolean, t: Translate): string | undefined {
  const parts = [demo ? t('in use: the demo model (random weights)') : '', machine ? machineDescription(machine, t) : ''].filter(Boolean);
  return parts.length ? parts.join(' · ') : undefined;
}

/** Whether the user has a real model: one configured, or a complete one found (the walkthrough's "Get a model"). */
export function hasModel(found: FoundModel[] | undefined, demo: boolean): boolean {
  return !demo || (found ?? []).some((m) => m.complete);
}

/** Complete models first, then the one in use, then by name. */
export function sortModels(found: FoundModel[], current: ModelSpec): FoundModel[] {
  return [...found].sort(
    (a, b) =>
      Number(b.complete) - Number(a.complete) ||
      Number(isInUse(b, current)) - Number(isInUse(a, current)) ||
      a.name.localeCompare(b.name) ||
      a.root.localeCompare(b.root) ||
      Number(!!a.spec.transformer) - Number(!!b.spec.transformer),
  );
}

// ---- "Use This Model": spec → settings --------------------------------------------------------

export type SettingsTarget = 'workspace' | 'global';

/** The `majicflux.model.*` keys (relative to `majicflux`) and the spec field each one holds. */
export const MODEL_SETTING_KEYS: readonly [string, (typeof SPEC_KEYS)[number]][] = [
  ['model.path', 'dir'],
  ['model.transformer', 'transformer'],
  ['model.vae', 'vae'],
  ['model.textEncoder', 'textEncoder'],
  ['model.textEncoder2', 'textEncoder2'],
];

export interface SettingUpdate {
  key: string;
  target: SettingsTarget;
  /** undefined removes the value from that target. */
  value: string | undefined;
}

/**
 * The writes that make `spec` the effective model. In the workspace: the spec's values, and ''
 * for a key the user settings set but the spec does not (so no stray override survives). In the
 * user settings: the spec's values, and the workspace's own model values removed (they would win).
 */
export function settingsUpdates(
  spec: ModelSpec,
  target: SettingsTarget,
  inspect: (key: string) => { globalValue?: unknown; workspaceValue?: unknown } | undefined,
): SettingUpdate[] {
  const out: SettingUpdate[] = [];
  for (const [key, field] of MODEL_SETTING_KEYS) {
    const value = spec[field] || undefined;
    const info = inspect(key) ?? {};
    if (target === 'workspace') {
      const elsewhere = typeof info.globalValue === 'string' && info.globalValue !== '';
      out.push({ key, target, value: value ?? (elsewhere ? '' : undefined) });
    } else {
      out.push({ key, target, value });
      if (info.workspaceValue !== undefined) out.push({ key, target: 'workspace', value: undefined });
    }
  }
  return out;
}

/** Spec fields no setting can hold (tokenizers found apart from the model folder): said when using the model. */
export function unsettableParts(spec: ModelSpec): string[] {
  const out: string[] = [];
  const dir = norm(spec.dir);
  const inside = (p: string | undefined, sub: string) => !p || (dir && norm(p) === `${dir}/${sub}`) || (dir && norm(p) === `${dir}\\${sub}`);
  if (!inside(spec.tokenizer, 'tokenizer')) out.push(spec.tokenizer!);
  if (!inside(spec.tokenizer2, 'tokenizer_2')) out.push(spec.tokenizer2!);
  return out;
}
