// User-facing text for the codes that the pure modules (parser, settings, prompt checks) report.
// Kept in one place so every string goes through vscode.l10n.t.

import * as vscode from 'vscode';
import { type FluxProblem, PARAM_KEYS } from './fluxFile/parser';
import type { MissingInput } from './fluxFile/inputs';
import { ignoredStart, type PromptIssue } from './fluxFile/promptCheck';
import type { SettingProblem } from './settings';
import { LIMITS } from '../shared/params';

const t = vscode.l10n.t;

function templateReason(args: Record<string, string | number>): string {
  switch (args.reason) {
    case 'empty': return t('the name is empty');
    case 'unknownField': return t('"{0}" is not a placeholder; use {date}, {time}, {seed}, {slug}, {steps}, {width}, {height}, {guidance}, {index} or {model}', `{${String(args.field)}}`);
    case 'unclosedBrace': return t('a brace is not closed');
    case 'absolute': return t('it must be a relative path');
    case 'parent': return t('it must not leave the folder (no "..")');
    case 'extension': return t('it must end in .png');
    case 'badCharacter': return t('"{0}" is not allowed in file names', String(args.char));
    default: return String(args.reason);
  }
}

export function fluxProblemMessage(p: FluxProblem): string {
  const a = p.args;
  switch (p.code) {
    case 'unknownKey':
      return a.suggestion
        ? t('Unknown parameter "{0}". Did you mean "{1}"? (A line starting with a word and a colon is a parameter; start it with \\ to keep it as prompt text.)', String(a.key), String(a.suggestion))
        : t('Unknown parameter "{0}". Parameters are {1}. (A line starting with a word and a colon is a parameter; start it with \\ to keep it as prompt text.)', String(a.key), PARAM_KEYS.join(', '));
    case 'duplicateKey':
      return t('"{0}" is set again on line {1}; the last value wins.', String(a.key), Number(a.line));
    case 'emptyValue':
      return t('"{0}" has no value.', String(a.key));
    case 'notInteger':
      return t('{0} must be a whole number from {1} to {2}, not "{3}".', String(a.key), Number(a.min), Number(a.max), String(a.value));
    case 'notNumber':
      return t('{0} must be a number from {1} to {2}, not "{3}".', String(a.key), Number(a.min), Number(a.max), String(a.value));
    case 'outOfRange':
      return t('{0} must be from {1} to {2}; {3} is outside that.', String(a.key), Number(a.min), Number(a.max), String(a.value));
    case 'notMultipleOf16':
      return t('{0} must be a multiple of {3} (FLUX works on {3}-pixel patches): try {1} or {2}.', String(a.key), Number(a.lower), Number(a.upper), LIMITS.side.multiple);
    case 'badSeed':
      return t('seed must be a whole number from 0 to {0}, or "random"; not "{1}".', Number(a.max), String(a.value));
    case 'badOut':
      return t('out "{0}" cannot be used: {1}.', String(a.value), templateReason(a));
    case 'notOneOf':
      return t('{0} must be one of {1}, not "{2}".', String(a.key), String(a.allowed), String(a.value));
    case 'tooLong':
      return t('{0} is longer than {1} characters.', String(a.key), Number(a.max));
    case 'negativeWithoutCfg':
      return t('The negative prompt works through true CFG, which is off: add "cfg: 4" (any value above 1; each step then runs the model twice). Without it the negative prompt changes nothing.');
    case 'loraWithoutFile':
      return t('"{0}" names no LoRA file: write the file before the strength, e.g. "lora: style.safetensors:0.8".', String(a.value));
    case 'imageOptionWithoutImage':
      return t('"{0}" applies to image-to-image, and this block has no input image: add "image: FILE" or remove it. Without an image it changes nothing.', String(a.key));
    case 'loraTagInPrompt':
      return t('{0} is an A1111 LoRA tag, which MajicFLUX does not read (the model would get it as words): remove it and add a line "lora: {1}".', String(a.value), String(a.suggestion));
    case 'tooManyLoras':
      return t('At most {0} LoRAs apply to one image.', Number(a.max));
    case 'refusedTogether':
      return t('A run would refuse these values together: {0}.', String(a.value));
    case 'orphanParams':
      return t('These parameters belong to no prompt: blank lines separate blocks. Remove the blank line above to apply them to the prompt before, or move them to the top of the file to make them defaults.');
  }
}

/** An `image:` or `lora:` file a .flux block names that is not there, with every path looked at. */
export function missingInputMessage(m: MissingInput): string {
  return m.key === 'image'
    ? t('Image "{0}" not found (looked for {1}). Paths are relative to the .flux file\'s folder.', m.file, m.tried.join(', '))
    : t('LoRA "{0}" not found (looked for {1}). Name it relative to the .flux file\'s folder or to the LoRA folder (setting majicflux.loras.folder).', m.file, m.tried.join(', '));
}

export function promptIssueMessage(i: PromptIssue, prompt: string): string {
  switch (i.code) {
    case 'clipTruncated':
      return t('CLIP reads only the first {0} tokens of this {1}-token prompt; it ignores everything from "{2}" on (T5 still reads it). Put what matters most first.', i.max, i.tokens, ignoredStart(prompt, i.cutOffset));
    case 't5Truncated':
      return t('T5 reads only the first {0} tokens of this {1}-token prompt; it ignores everything from "{2}" on.', i.max, i.tokens, ignoredStart(prompt, i.cutOffset));
    case 't5Unreadable':
      return t('T5, the text encoder FLUX relies on most, cannot read {0}% of this prompt (unknown tokens; FLUX.1 understands English best). Write the prompt in English for the image to follow it.', i.percent);
  }
}

export function settingProblemMessage(p: SettingProblem): string {
  const a = p.args;
  switch (p.code) {
    case 'wrongType':
      return t('{0}: expected a {1}; using the default.', p.key, String(a.expected));
    case 'notOneOf':
      return t('{0}: "{1}" is not one of {2}; using the default.', p.key, String(a.value), String(a.allowed));
    case 'outOfRange':
      return t('{0}: {1} is outside {2}–{3}; using the default.', p.key, Number(a.value), Number(a.min), Number(a.max));
    case 'notMultipleOf16':
      return t('{0}: {1} is not a multiple of {2}; using the default.', p.key, Number(a.value), LIMITS.side.multiple);
    case 'pathMissing':
      return t('{0}: {1} does not exist.', p.key, String(a.path));
    case 'badTemplate':
      return t('{0}: "{1}" cannot be used: {2}. Using {date}-{seed}-{slug}.png.', p.key, String(a.value), templateReason(a));
    case 'badStageKey':
      return t('{0}: "{1}" is not a stage; stages are {2}.', p.key, String(a.stage), String(a.allowed));
    case 'remoteHost':
      return t('{0}: "{1}" is not a host name or address.', p.key, String(a.value));
    case 'tooLong':
      return t('{0}: {1} characters, over the {2} that are read; using the default.', p.key, Number(a.length), Number(a.max));
    case 'relativeNoFolder':
      return t('{0}: "{1}" is a relative path, and no folder is open to start it from: give an absolute path (~ works).', p.key, String(a.value));
    case 'notAFolder':
      return t('{0}: {1} is a file, not a folder.', p.key, String(a.path));
    case 'badUrl':
      return t('{0}: "{1}" is not an http(s) address such as https://hf-mirror.com; using the official hub.', p.key, String(a.value));
  }
}
