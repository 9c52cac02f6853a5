/*
 * login.js - a person with a bearer-token-protected natscope in Chromium
 * (playwright-core from web/ui/node_modules, Debian's chromium): the
 * steps of the login cookie (web/auth.c), reported for test_login.py to
 * judge.
 *
 *   node login.js '{"base": "http://127.0.0.1:P", "other": "http://localhost:Q",
 *                   "chromium": "/usr/bin/chromium", "token": T,
 *                   "page": "/gateway/203.0.113.1?proto=tcp",
 *                   "host": "/host/198.51.100.5", "shots": DIR}'
 *
 * 1. opens cfg.page: the login form (status, title, the hidden "next");
 * 2. types a wrong token: where it lands and the error shown;
 * 3. types the token: where it lands, and the page as drawn (its title,
 *    its figures) once its API requests are done;
 * 4. on another site (cfg.other: as Grafana's drill-down link), clicks a
 *    link to cfg.host: whether the page opens without the form;
 * 5. /logout, then cfg.page again: the form.
 * Prints one JSON object with every step and the console messages, page
 * errors, failed requests and URLs requested.  Exits 2 when Chromium
 * cannot be started.
 */
'use strict';

const path = require('path');
const { launch, watch } = require('./chromium');

const cfg = JSON.parse(process.argv[2]);
const out = { console: [], errors: [], failed: [], requests: [], steps: {} };

function form() {
	const next = document.querySelector('form input[name=next]');
	const err = document.getElementById('login-error');
	return { url: location.pathname + location.search, title: document.title,
		 form: !!document.querySelector('form[action="/login"]'),
		 next: next ? next.value : null,
		 error: err ? err.textContent : null };
}

async function drawn(page) {
	await page.waitForFunction(() => {
		const m = document.getElementById('page');
		return m && parseInt(m.getAttribute('data-drawn') || '0', 10) >= 1 &&
			window.natscopePending && window.natscopePending() === 0;
	}, null, { timeout: 20000 });
}

async function pageFacts(page) {
	return page.evaluate(() => {
		const facts = {};
		for (const e of document.querySelectorAll('main [data-k]'))
			if (!e.closest('table'))
				facts[e.getAttribute('data-k')] = e.textContent;
		return { url: location.pathname + location.search,
			 h1: (document.querySelector('h1.title') || {}).textContent,
			 facts: facts,
			 errors: Array.from(document.querySelectorAll('main .error'))
				 .map((e) => e.textContent),
			 form: !!document.querySelector('form[action="/login"]') };
	});
}

(async () => {
	const browser = await launch(cfg.chromium);

	try {
		const context = await browser.newContext({
			viewport: { width: 1280, height: 900 } });
		const page = await context.newPage();
		watch(page, out);

		const first = await page.goto(cfg.base + cfg.page);
		out.steps.asked = Object.assign(await page.evaluate(form),
						{ status: first.status() });
		await page.screenshot({ path: path.join(cfg.shots,
							'login-form.png') });

		await page.fill('#token', cfg.token + 'x');
		await Promise.all([page.waitForNavigation(),
				   page.click('form button[type=submit]')]);
		out.steps.wrong = await page.evaluate(form);

		await page.fill('#token', cfg.token);
		await Promise.all([page.waitForNavigation(),
				   page.click('form button[type=submit]')]);
		await drawn(page);
		out.steps.right = await pageFacts(page);
		out.steps.cookies = (await context.cookies()).map((c) => ({
			name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite,
			value_is_token: c.value === cfg.token }));
		await page.screenshot({ path: path.join(cfg.shots,
							'login-after.png') });

		/* another site links to a page of this natscope */
		await page.goto(cfg.other + '/links.html');
		await Promise.all([page.waitForNavigation(),
				   page.click('#drill')]);
		await drawn(page).catch(() => {});
		out.steps.linked = await pageFacts(page);

		await page.goto(cfg.base + '/logout');
		out.steps.logout = await page.evaluate(form);
		await page.goto(cfg.base + cfg.page);
		out.steps.after_logout = await page.evaluate(form);
	} catch (e) {
		out.errors.push('login.js: ' + (e.stack || e));
	} finally {
		await browser.close();
	}
	process.stdout.write(JSON.stringify(out) + '\n');
})();
