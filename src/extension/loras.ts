// Finds the LoRA files the panel offers and re-runs look up: the majicflux.loras.folder setting's
// folder (with its subfolders) and the workspace (findFiles, which honours files.exclude).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { LoraFile, loraList, isSafetensors, MODEL_FOLDER_MARKS } from './loraFiles';
import type { Settings } from './settings';

/** Enough for any real collection; a folder with more is probably not a LoRA folder. */
const MAX_FILES = 2000;

async function inFolder(folder: string, log: vscode.LogOutputChannel): Promise<string[]> {
  try {
    const names = await fs.promises.readdir(folder, { recursive: true });
    return names.filter(isSafetensors).slice(0, MAX_FILES).map((n) => path.join(folder, n));
  } catch (err) {
    log.warn(`LoRA folder ${folder}: ${(err as Error).message}`);
    return [];
  }
}

async function inWorkspace(): Promise<string[]> {
  if (!vscode.workspace.workspaceFolders?.length) return [];
  const uris = await vscode.workspace.findFiles('**/*.safetensors', '**/node_modules/**', MAX_FILES);
  return uris.filter((u) => u.scheme === 'file').map((u) => u.fsPath);
}

/** The LoRA files of the LoRA folder and the workspace, without the configured model's files. */
export async function findLoras(s: Settings, log: vscode.LogOutputChannel): Promise<LoraFile[]> {
  const files = [...(s.loras.folder ? await inFolder(s.loras.folder, log) : []), ...(await inWorkspace())];
  const sized = await Promise.all(
    files.map(async (f) => {
      try {
        const st = await fs.promises.stat(f);
        return st.isFile() ? { path: f, size: st.size } : undefined;
      } catch {
        return undefined;
      }
    }),
  );
  const m = s.model;
  const modelFolder = new Map<string, boolean>();
  const isModelFolder = (dir: string) => {
    if (!modelFolder.has(dir)) modelFolder.set(dir, MODEL_FOLDER_MARKS.some((n) => fs.existsSync(path.join(dir, n))));
    return modelFolder.get(dir)!;
  };
  return loraList(
    sized.filter((x): x is { path: string; size: number } => !!x),
    { files: [m.transformer, m.vae, m.textEncoder, m.textEncoder2], folders: [m.path], isModelFolder },
  );
}
