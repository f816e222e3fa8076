// Diagnostics for .flux files: the parser's problems at once, then what the tokenizers say about each
// prompt (CLIP's 77-token cut, a prompt T5 cannot read) when they have loaded.

import * as vscode from 'vscode';
import { Configuration } from '../configuration';
import { fluxProblemMessage, missingInputMessage, promptIssueMessage } from '../messages';
import { fluxFolder, isFlux, loraFolder, parsed, promptRange, toRange } from './documents';
import { foundOnLine, missingOnLine } from './inputs';
import { inputImageProblem, loraProblem } from '../panel/inputs';
import { FluxProblem, promptPosition } from './parser';
import { encodersFor } from '../promptFacts';
import { checkPrompt, PromptEncoders } from './promptCheck';

const SOURCE = 'MajicFLUX';
const DEBOUNCE_MS = 250;

const SEVERITY: Record<FluxProblem['severity'], vscode.DiagnosticSeverity> = {
  error: vscode.DiagnosticSeverity.Error,
  warning: vscode.DiagnosticSeverity.Warning,
  info: vscode.DiagnosticSeverity.Information,
};

export class FluxDiagnostics implements vscode.Disposable {
  private readonly collection = vscode.languages.createDiagnosticCollection('majicflux');
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly extensionPath: string, private readonly config: Configuration, private readonly log: vscode.LogOutputChannel) {
    this.subs.push(
      vscode.workspace.onDidOpenTextDocument((d) => this.schedule(d, 0)),
      vscode.workspace.onDidChangeTextDocument((e) => this.schedule(e.document, DEBOUNCE_MS)),
      vscode.workspace.onDidCloseTextDocument((d) => this.collection.delete(d.uri)),
      config.onDidChange(() => vscode.workspace.textDocuments.forEach((d) => this.schedule(d, 0))),
    );
    for (const d of vscode.workspace.textDocuments) this.schedule(d, 0);
  }

  private schedule(document: vscode.TextDocument, delay: number): void {
    if (!isFlux(document)) return;
    const key = document.uri.toString();
    clearTimeout(this.timers.get(key));
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        void this.update(document);
      }, delay),
    );
  }

  /** Computes and publishes the diagnostics of one document (also awaited by tests). */
  async update(document: vscode.TextDocument): Promise<vscode.Diagnostic[]> {
    const version = document.version;
    const doc = parsed(document);
    const out: vscode.Diagnostic[] = doc.problems.map((p) => {
      const d = new vscode.Diagnostic(toRange(p.span), fluxProblemMessage(p), SEVERITY[p.severity]);
      d.source = SOURCE;
      d.code = p.code;
      return d;
    });
    // Files named by image: and lora: lines (relative paths resolved as a run would).
    const dir = fluxFolder(document);
    const loras = loraFolder();
    const params = [...doc.defaults.params, ...doc.blocks.flatMap((b) => b.params)];
    for (const p of params) {
      for (const m of missingOnLine(p, dir, loras)) {
        const d = new vscode.Diagnostic(toRange(p.valueSpan), missingInputMessage(m), vscode.DiagnosticSeverity.Error);
        d.source = SOURCE;
        d.code = 'missingFile';
        out.push(d);
      }
    }
    this.collection.set(document.uri, out);

    // Files that are there but cannot be used (no image, a damaged header, a checkpoint given as a
    // LoRA): what a run would refuse, on its line.
    for (const p of params) {
      for (const f of foundOnLine(p, dir, loras)) {
        const problem = f.key === 'image' ? await inputImageProblem(f.file) : await loraProblem(f.file);
        if (!problem) continue;
        const d = new vscode.Diagnostic(toRange(p.valueSpan), problem, vscode.DiagnosticSeverity.Error);
        d.source = SOURCE;
        d.code = 'unusableFile';
        out.push(d);
      }
    }
    if (document.isClosed || document.version !== version) return out;
    this.collection.set(document.uri, out);

    let enc: PromptEncoders;
    try {
      enc = await encodersFor(this.config, this.extensionPath);
    } catch (err) {
      this.log.warn(`prompt checks unavailable: ${(err as Error).message}`);
      return out;
    }
    if (document.isClosed || document.version !== version) return out;
    for (const block of doc.blocks) {
      for (const issue of checkPrompt(block.prompt, enc)) {
        const whole = promptRange(block);
        // For a cut: underline from where the encoder stops reading to the end of the prompt.
        const cut = issue.code === 't5Unreadable' ? undefined : promptPosition(block, issue.cutOffset);
        const range = cut ? new vscode.Range(cut.line, cut.character, whole.end.line, whole.end.character) : whole;
        const d = new vscode.Diagnostic(range, promptIssueMessage(issue, block.prompt), vscode.DiagnosticSeverity.Warning);
        d.source = SOURCE;
        d.code = issue.code;
        out.push(d);
      }
    }
    this.collection.set(document.uri, out);
    return out;
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.collection.dispose();
    for (const s of this.subs) s.dispose();
  }
}
