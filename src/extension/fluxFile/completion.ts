// Completion in .flux files: parameter keys with their ranges, a key's fixed choices, and the
// image/LoRA files a value may name (completionItems.ts decides what; this file says it in VS Code).

import * as vscode from 'vscode';
import { fluxFolder, loraFolder } from './documents';
import { completionContext, fileChoices, keyChoices, keyRange } from './completionItems';
import { PARAM_KEYS } from './parser';

const t = vscode.l10n.t;

export class FluxCompletion implements vscode.CompletionItemProvider {
  static readonly triggers = [':', ' '];

  provideCompletionItems(document: vscode.TextDocument, position: vscode.Position): vscode.CompletionItem[] {
    const c = completionContext(document.lineAt(position.line).text.slice(0, position.character));
    if (!c) return [];
    if (c.kind === 'key') {
      return PARAM_KEYS.map((key) => {
        const item = new vscode.CompletionItem(key, vscode.CompletionItemKind.Property);
        item.insertText = `${key}: `;
        const r = keyRange(key);
        if (r) item.detail = t('{0} to {1}, default {2}', r[0], r[1], r[2]);
        const choices = keyChoices(key);
        if (choices) item.detail = choices.join(' | ');
        return item;
      });
    }
    const choices = keyChoices(c.key);
    if (choices) return choices.map((x) => new vscode.CompletionItem(x, vscode.CompletionItemKind.EnumMember));
    const files = fileChoices(c.key, fluxFolder(document), loraFolder());
    return files.map((f) => new vscode.CompletionItem(f, vscode.CompletionItemKind.File));
  }
}
