// What 'vscode' resolves to in src/inference/ and src/shared/ (src/tsconfig.json "paths"): they
// run outside VS Code, in the CLI and the inference server process. Reaching this file means a
// module there imports vscode; the error below is how `npm run typecheck` says so.
const vscodeIsNotAvailableInSrcInferenceOrSrcShared: never = 'move the code that needs vscode to src/extension/';
export default vscodeIsNotAvailableInSrcInferenceOrSrcShared;
