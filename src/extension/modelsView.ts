// The Models view (majicflux.models): the last Find Models result as a tree, models then their
// parts, with the model in use marked. One tree provider per contribution; the commands that fill
// it are models.ts's.

import * as vscode from 'vscode';
import type { FoundModel, MachineInfo, PartCheck } from '../shared/models';
import { Configuration } from './configuration';
import { hasModel, modelNode, partNode, sortModels, TreeNodeData, viewDescription } from './modelTree';
import { modelSpec, usesDemoModel } from './settings';

const t = vscode.l10n.t;

export const MODELS_VIEW = 'majicflux.models';
const SEARCHED_CONTEXT = 'majicflux.models.searched';
/** Completes the walkthrough's "Get a model" step: only a model that is there does (not a search that found none). */
const HAS_MODEL_CONTEXT = 'majicflux.models.hasModel';

/** A node of the view; also what the view's context-menu commands receive. */
export type ModelNode = { kind: 'model'; model: FoundModel } | { kind: 'part'; model: FoundModel; part: PartCheck };

export class ModelsView implements vscode.TreeDataProvider<ModelNode>, vscode.Disposable {
  private foundValue: FoundModel[] | undefined;
  private machine: MachineInfo | undefined;
  private downloaded = false;
  private readonly emitter = new vscode.EventEmitter<ModelNode | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  readonly view: vscode.TreeView<ModelNode>;
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly config: Configuration) {
    this.view = vscode.window.createTreeView(MODELS_VIEW, { treeDataProvider: this, showCollapseAll: true });
    // The "in use" mark follows the settings.
    this.subs.push(
      this.view,
      this.emitter,
      config.onDidChange(() => {
        this.emitter.fire(undefined);
        this.updateHeader();
      }),
    );
    void vscode.commands.executeCommand('setContext', SEARCHED_CONTEXT, false);
    this.updateHeader();
  }

  /** A real model is configured, found complete, or was just downloaded. */
  get hasModel(): boolean {
    return this.downloaded || hasModel(this.foundValue, usesDemoModel(this.config.settings));
  }

  /** A download finished and verified: the walkthrough's "Get a model" is done. */
  markDownloaded(): void {
    this.downloaded = true;
    this.updateHeader();
  }

  private updateHeader(): void {
    this.view.description = viewDescription(this.machine, usesDemoModel(this.config.settings), t);
    void vscode.commands.executeCommand('setContext', HAS_MODEL_CONTEXT, this.hasModel);
  }

  /** The last search's models (undefined before the first search). */
  get found(): FoundModel[] | undefined {
    return this.foundValue;
  }

  set(found: FoundModel[], machine: MachineInfo): void {
    this.foundValue = found;
    this.machine = machine;
    this.updateHeader();
    void vscode.commands.executeCommand('setContext', SEARCHED_CONTEXT, true);
    this.emitter.fire(undefined);
  }

  getChildren(node?: ModelNode): ModelNode[] {
    if (!node) return sortModels(this.foundValue ?? [], modelSpec(this.config.settings)).map((model) => ({ kind: 'model', model }));
    if (node.kind === 'model') return node.model.parts.map((part) => ({ kind: 'part', model: node.model, part }));
    return [];
  }

  getTreeItem(node: ModelNode): vscode.TreeItem {
    return toTreeItem(node.kind === 'model' ? modelNode(node.model, modelSpec(this.config.settings), t) : partNode(node.model, node.part, t));
  }

  getParent(node: ModelNode): ModelNode | undefined {
    return node.kind === 'part' ? { kind: 'model', model: node.model } : undefined;
  }

  /** For tests: the nodes as shown. */
  snapshot(): { model: TreeNodeData; parts: TreeNodeData[] }[] {
    const current = modelSpec(this.config.settings);
    return sortModels(this.foundValue ?? [], current).map((m) => ({ model: modelNode(m, current, t), parts: m.parts.map((p) => partNode(m, p, t)) }));
  }

  dispose(): void {
    for (const s of this.subs) s.dispose();
  }
}

function toTreeItem(n: TreeNodeData): vscode.TreeItem {
  const item = new vscode.TreeItem(n.label, n.collapsible ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
  item.id = n.id;
  item.description = n.description;
  const tip = new vscode.MarkdownString(n.tooltip);
  tip.supportThemeIcons = false;
  item.tooltip = tip;
  item.iconPath = new vscode.ThemeIcon(n.icon, n.color ? new vscode.ThemeColor(n.color) : undefined);
  item.contextValue = n.contextValue;
  return item;
}
