// Parsed .flux documents, cached per version, shared by the diagnostics, CodeLens, hover and commands.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { expandPath } from '../settings';
import { LORA_FOLDER_SETTING } from './inputs';
import { FluxBlock, FluxDocument, parseFlux, Span } from './parser';

export const FLUX_LANGUAGE = 'flux';

const cache = new WeakMap<vscode.TextDocument, { version: number; doc: FluxDocument }>();

export function parsed(document: vscode.TextDocument): FluxDocument {
  const hit = cache.get(document);
  if (hit && hit.version === document.version) return hit.doc;
  const doc = parseFlux(document.getText());
  cache.set(document, { version: document.version, doc });
  return doc;
}

export function toRange(s: Span): vscode.Range {
  return new vscode.Range(s.start.line, s.start.character, s.end.line, s.end.character);
}

/** The span of a block's prompt text (first to last prompt line). */
export function promptRange(block: FluxBlock): vscode.Range {
  const first = block.pieces[0];
  const last = block.pieces[block.pieces.length - 1];
  return new vscode.Range(first.line, first.character, last.line, last.character + last.text.length);
}

/** The file a block's images are recorded under: its path, or the untitled document's URI. */
export function fluxFileKey(document: vscode.TextDocument): string {
  return document.uri.scheme === 'file' ? document.uri.fsPath : document.uri.toString();
}

export function isFlux(document: vscode.TextDocument): boolean {
  return document.languageId === FLUX_LANGUAGE;
}

/** Where a .flux file's relative paths start: its folder, or the first workspace folder for an untitled one. */
export function fluxFolder(document: vscode.TextDocument): string | undefined {
  return document.uri.scheme === 'file' ? path.dirname(document.uri.fsPath) : vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

/**
 * The LoRA folder setting (majicflux.loras.folder), absolute, expanded as the panel's picker reads it
 * (`~`, `${workspaceFolder}`; a relative one from the first workspace folder). A value that is not a
 * string is no folder here (the settings check reports it) rather than an error in every .flux feature.
 */
export function loraFolder(): string | undefined {
  const f = vscode.workspace.getConfiguration('majicflux').get<unknown>(LORA_FOLDER_SETTING);
  if (typeof f !== 'string') return undefined;
  const p = expandPath(f, { workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath });
  return p && path.isAbsolute(p) ? p : undefined;
}
