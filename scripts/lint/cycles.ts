// Fails when src/ has an import cycle (part of `npm run lint`). In a cycle one module runs while
// another is half-initialised (its exports still undefined), and the layers stop being layers.
// Counts every static import and `export … from` that can load a module at run time: `import type`
// (and imports whose every name is `type`) are erased by the compiler and load nothing, and lazy
// require() and import() run after every module has loaded.
//   npx tsx scripts/lint/cycles.ts [folder, default src]
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

/** Every .ts file under `dir`, absolute. */
function tsFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** `import type …`, `export type … from`, or every name marked `type`: erased, loads nothing. */
function typeOnly(st: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(st)) {
    const c = st.exportClause;
    return st.isTypeOnly || (c !== undefined && ts.isNamedExports(c) && c.elements.length > 0 && c.elements.every((e) => e.isTypeOnly));
  }
  const c = st.importClause;
  if (!c) return false; // import './x': loaded for its effects
  if (c.isTypeOnly) return true;
  const named = c.namedBindings;
  return c.name === undefined && named !== undefined && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
}

/** The relative modules a file loads statically, as absolute paths of files in `known`. */
function staticImports(file: string, text: string, known: Set<string>): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: string[] = [];
  for (const st of sf.statements) {
    if (!ts.isImportDeclaration(st) && !ts.isExportDeclaration(st)) continue;
    const m = st.moduleSpecifier;
    if (!m || !ts.isStringLiteral(m) || !m.text.startsWith('.') || typeOnly(st)) continue;
    const base = path.resolve(path.dirname(file), m.text);
    const hit = [base, `${base}.ts`, path.join(base, 'index.ts')].find((c) => known.has(c));
    if (hit) out.push(hit);
  }
  return out;
}

/**
 * The cycles of an import graph (file → files it loads), each as its files in order with the first
 * repeated at the end. Not every cycle of a tangle is listed, but a graph with any cycle gets one.
 */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const onPath = new Set<string>();
  const done = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (n: string): void => {
    onPath.add(n);
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (onPath.has(m)) cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (!done.has(m)) visit(m);
    }
    stack.pop();
    onPath.delete(n);
    done.add(n);
  };
  for (const n of [...graph.keys()].sort()) if (!done.has(n)) visit(n);
  return cycles;
}

/** The import graph of the .ts files under `dir`, keyed by posix path relative to `dir`'s parent. */
export function importGraph(dir: string): Map<string, string[]> {
  const files = tsFiles(dir);
  const known = new Set(files);
  const rel = (f: string) => path.relative(path.dirname(dir), f).split(path.sep).join('/');
  return new Map(files.map((f) => [rel(f), staticImports(f, fs.readFileSync(f, 'utf8'), known).map(rel)]));
}

if (require.main === module) {
  const cycles = findCycles(importGraph(path.resolve(process.argv[2] ?? 'src')));
  for (const c of cycles) console.error(`import cycle: ${c.join(' → ')}`);
  if (cycles.length > 0) process.exitCode = 1;
}
