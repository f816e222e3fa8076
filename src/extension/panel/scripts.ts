// The panel's webview scripts (media/panel/), in the order the page loads them. They are classic
// scripts, each allowed by the page's CSP nonce: their top-level names share one scope, so a file
// may use what an earlier one declares (state.js first, main.js, which starts the panel, last).
// Classic scripts rather than ES modules: a module's imports would be fetched across origins from
// the webview's resource host, and the plain-Node unit test runs these files as they are.
// Pure: no vscode import (the unit test loads the same list).

export const PANEL_SCRIPTS = ['state.js', 'form.js', 'inputs.js', 'results.js', 'main.js'] as const;
