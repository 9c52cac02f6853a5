/*
 * chromium.js - what the browser tests (browser.js, pages.js, login.js)
 * share: Debian's Chromium started through playwright-core from
 * web/ui/node_modules (no browser download), and a page's console
 * messages, errors, failed requests and requested URLs recorded into a
 * report for the Python test to judge.
 */
'use strict';

const path = require('path');
const modules = path.join(__dirname, '..', '..', 'web', 'ui', 'node_modules');
const { chromium } = require(path.join(modules, 'playwright-core'));

/* Starts Chromium at executable; exits 2 (the tests' "cannot start")
 * when it does not start. */
async function launch(executable) {
	try {
		return await chromium.launch({
			executablePath: executable,
			args: ['--no-sandbox', '--disable-gpu', '--disable-quic',
			       '--no-first-run', '--disable-background-networking',
			       '--disable-component-update', '--disable-sync'] });
	} catch (e) {
		process.stderr.write('cannot start ' + executable + ': ' + e +
				     '\n');
		process.exit(2);
	}
}

/* Records into out.console, out.errors, out.failed and out.requests
 * (arrays it creates when missing) what page does. */
function watch(page, out) {
	for (const k of ['console', 'errors', 'failed', 'requests'])
		out[k] = out[k] || [];
	page.on('console', (m) => out.console.push({
		type: m.type(), text: m.text(), url: m.location().url }));
	page.on('pageerror', (e) => out.errors.push(String(e)));
	page.on('requestfailed', (r) => out.failed.push(
		r.url() + ' ' + (r.failure() ? r.failure().errorText : '')));
	page.on('request', (r) => out.requests.push(r.url()));
	return out;
}

module.exports = { launch, watch };
