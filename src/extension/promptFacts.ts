// The prompt checks of `.flux` files (CLIP's 77-token cut, T5's cut, a prompt T5 cannot read) for a
// prompt typed anywhere else: the palette's prompt box and the panel say the same facts.

import * as path from 'node:path';
import { Configuration } from './configuration';
import { checkPrompt, loadEncoders, PromptEncoders } from './fluxFile/promptCheck';
import { promptIssueMessage } from './messages';

/** The tokenizers of the configured model, else the bundled demo model's (the same FLUX.1 ones). */
export function encodersFor(config: Configuration, extensionPath: string): Promise<PromptEncoders> {
  return loadEncoders(config.settings.model.path || undefined, path.join(extensionPath, 'models', 'demo'));
}

/** What the text encoders will make of `prompt`, as sentences; none when all is well or the tokenizers cannot load. */
export async function promptFacts(prompt: string, config: Configuration, extensionPath: string): Promise<string[]> {
  if (!prompt.trim()) return [];
  try {
    const enc = await encodersFor(config, extensionPath);
    return checkPrompt(prompt, enc).map((i) => promptIssueMessage(i, prompt));
  } catch {
    return []; // the .flux diagnostics log why; a prompt box has nowhere to say it
  }
}
