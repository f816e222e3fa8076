// Quick fixes for .flux diagnostics: "did you mean", "keep as prompt text", "round to a multiple of 16".

import * as vscode from 'vscode';
import { parsed } from './documents';

const t = vscode.l10n.t;

export class FluxCodeActions implements vscode.CodeActionProvider {
  static readonly kinds = [vscode.CodeActionKind.QuickFix];

  provideCodeActions(document: vscode.TextDocument, _range: vscode.Range, context: vscode.CodeActionContext): vscode.CodeAction[] {
    const actions: vscode.CodeAction[] = [];
    const doc = parsed(document);
    for (const d of context.diagnostics) {
      if (d.source !== 'MajicFLUX') continue;
      const problem = doc.problems.find((p) => p.code === d.code && p.span.start.line === d.range.start.line && p.span.start.character === d.range.start.character);
      if (!problem) continue;
      if (problem.code === 'unknownKey') {
        if (problem.args.suggestion) {
          const fix = new vscode.CodeAction(t('Change to "{0}"', String(problem.args.suggestion)), vscode.CodeActionKind.QuickFix);
          fix.edit = new vscode.WorkspaceEdit();
          fix.edit.replace(document.uri, d.range, String(problem.args.suggestion));
          fix.diagnostics = [d];
          fix.isPreferred = true;
          actions.push(fix);
        }
        const keep = new vscode.CodeAction(t('Keep this line as prompt text'), vscode.CodeActionKind.QuickFix);
        keep.edit = new vscode.WorkspaceEdit();
        keep.edit.insert(document.uri, d.range.start, '\\');
        keep.diagnostics = [d];
        actions.push(keep);
      } else if (problem.code === 'notMultipleOf16' && problem.args.suggestion) {
        const fix = new vscode.CodeAction(t('Change to {0}', String(problem.args.suggestion)), vscode.CodeActionKind.QuickFix);
        fix.edit = new vscode.WorkspaceEdit();
        fix.edit.replace(document.uri, d.range, String(problem.args.suggestion));
        fix.diagnostics = [d];
        fix.isPreferred = true;
        actions.push(fix);
      }
    }
    return actions;
  }
}
