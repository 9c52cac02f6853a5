/*
 * browser.js - loads natscope's dashboard in Debian's Chromium, driven by
 * playwright-core from web/ui/node_modules (no browser download), and
 * reports what a person would see: test_dashboard.py runs it (inside the
 * namespace natscope listens in) and judges the report.
 *
 *   node browser.js '{"base": "http://127.0.0.1:19701", "shots": DIR,
 *                     "name": "live", "chromium": "/usr/bin/chromium"}'
 *
 * Prints one JSON object: for the page with script ("js") and without
 * ("nojs"): the header's values, every row's values and classes, the
 * console messages, page errors, failed requests, every URL requested,
 * the sparklines drawn.  Screenshots (desktop, phone, no script) go to
 * DIR/NAME-*.png.  Exits 2 when Chromium cannot be started.
 */
'use strict';

const path = require('path');
const { launch, watch } = require('./chromium');

const cfg = JSON.parse(process.argv[2]);

/* What the page shows, read from the DOM the way the tests name it
 * (data-k marks every figure, in overview.c and dash.js alike). */
function readPage() {
	const text = (root, k) => {
		const e = root.querySelector('[data-k="' + k + '"]');
		return e ? e.textContent : null;
	};
	const header = document.getElementById('health');
	const rows = Array.from(document.querySelectorAll(
		'#overview tbody tr[data-ip]')).map((tr) => {
		const r = { ip: tr.getAttribute('data-ip'),
			    proto: tr.getAttribute('data-proto'),
			    cls: tr.className,
			    shown_ip: tr.querySelector('th.ip').textContent,
			    spark: !!tr.querySelector('td.spark canvas') };
		for (const k of ['pressure', 'ports_in_use', 'port_space', 'worst',
				 'worst_mappings', 'worst_capacity', 'hosts',
				 'mappings', 'time_wait'])
			r[k] = text(tr, k);
		return r;
	});
	const h = {};
	for (const k of ['state', 'follow', 'as_of', 'coverage',
			 'insert_failed', 'drop', 'note'])
		h[k] = text(header, k);
	h.cls = header.className;
	h.count = text(document, 'count');
	const live = document.getElementById('live');
	return { header: h, rows: rows, live: live ? live.textContent : null,
		 csp_meta: !!document.querySelector('meta[http-equiv]'),
		 title: document.title };
}

async function visit(browser, js, name) {
	const context = await browser.newContext({ javaScriptEnabled: js,
		viewport: { width: 1280, height: 800 } });
	const page = await context.newPage();
	const out = watch(page, {});

	const res = await page.goto(cfg.base + '/', { waitUntil: 'load' });
	out.status = res.status();
	out.headers = res.headers();
	if (js) {
		/* the first refresh from the API, then a sparkline per row */
		await page.waitForFunction(() => {
			const live = document.getElementById('live');
			return live && live.textContent.startsWith('refreshed');
		}, null, { timeout: 20000 });
		await page.waitForFunction(() => {
			const rows = document.querySelectorAll(
				'#overview tbody tr[data-ip]');
			const drawn = document.querySelectorAll(
				'#overview tbody td.spark canvas');
			return rows.length > 0 && drawn.length >= Math.min(
				rows.length, 50);
		}, null, { timeout: 20000 });
	}
	out.page = await page.evaluate(readPage);
	await page.screenshot({ path: path.join(cfg.shots, name + '-' +
		(js ? 'desktop' : 'nojs') + '.png'), fullPage: true });
	if (js) {
		await page.setViewportSize({ width: 390, height: 844 });
		await page.waitForTimeout(300);
		out.phone_width = await page.evaluate(
			() => document.documentElement.scrollWidth);
		await page.screenshot({ path: path.join(cfg.shots, name +
			'-phone.png'), fullPage: true });
	}
	await context.close();
	return out;
}

(async () => {
	const browser = await launch(cfg.chromium);

	try {
		const report = { js: await visit(browser, true, cfg.name),
				 nojs: await visit(browser, false, cfg.name) };
		process.stdout.write(JSON.stringify(report) + '\n');
	} finally {
		await browser.close();
	}
})().catch((e) => {
	process.stderr.write('browser.js: ' + (e.stack || e) + '\n');
	process.exit(1);
});
