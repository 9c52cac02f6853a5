/*
 * pages.js - loads every dashboard page of natscope (web/ui/pages.js) in
 * Debian's Chromium, driven by playwright-core from web/ui/node_modules,
 * and reports what a person sees; test_pages.py runs it inside the
 * namespace natscope listens in and judges the report.
 *
 *   node pages.js '{"base": "http://127.0.0.1:19720", "shots": DIR,
 *                   "chromium": "/usr/bin/chromium", "gateway": IP,
 *                   "proto": "tcp", "host": IP, "incident": ID,
 *                   "at": RFC3339, "lookup": {"ip":, "port":, "proto":},
 *                   "port": P}'
 *
 * Prints one JSON object: per page ("overview", "gateway", "gateway_at",
 * "ports", "diagnosis", "host", "incidents", "incident", "lookup"): the
 * URL, every table (rows of data-k -> text), every fact, the links, and
 * for the port map the colour of each held port read from the canvas
 * with the legend, the details shown for cfg.port by the pointer and by
 * the keyboard; and for all of them the console messages, page errors,
 * failed requests and every URL requested.  Screenshots go to
 * DIR/pages-NAME.png (and -phone.png).  Exits 2 when Chromium cannot be
 * started.
 */
'use strict';

const path = require('path');
const { launch, watch } = require('./chromium');

const cfg = JSON.parse(process.argv[2]);
const out = { console: [], errors: [], failed: [], requests: [], pages: {},
	      timings: {} };

/* What a page shows, read from the DOM. */
function readPage() {
	const tables = {};
	for (const t of document.querySelectorAll('table.data')) {
		tables[t.id] = Array.from(t.tBodies[0].rows)
			.filter((tr) => !tr.classList.contains('empty'))
			.map((tr) => {
				const r = {};
				for (const td of tr.cells)
					if (td.getAttribute('data-k'))
						r[td.getAttribute('data-k')] =
							td.textContent;
				const link = tr.querySelector('a');
				if (link)
					r._href = link.getAttribute('href');
				return r;
			});
	}
	const facts = {};
	for (const e of document.querySelectorAll('main [data-k]'))
		if (!e.closest('table'))
			facts[e.getAttribute('data-k')] = e.textContent;
	const links = {};
	for (const e of document.querySelectorAll('main a[id]'))
		links[e.id] = e.getAttribute('href');
	const err = Array.from(document.querySelectorAll('main .error'))
		.map((e) => e.textContent);
	return { url: location.pathname + location.search, title: document.title,
		 h1: (document.querySelector('h1.title') || {}).textContent,
		 tables: tables, facts: facts, links: links, errors: err,
		 charts: document.querySelectorAll('main .chart canvas').length,
		 marks: Array.from(document.querySelectorAll('#marks li'))
			 .map((li) => li.textContent),
		 live: (document.getElementById('live') || {}).textContent,
		 width: document.documentElement.scrollWidth };
}

/* The port map as drawn: every port whose cell is not free (or outside
 * the chosen bucket), with the legend's colours. */
function readMap() {
	const c = document.getElementById('portmap');
	const px = c.getContext('2d').getImageData(0, 0, 256, 256).data;
	const hex = (i) => '#' + [px[i], px[i + 1], px[i + 2]].map(
		(v) => v.toString(16).padStart(2, '0')).join('');
	const legend = Array.from(document.querySelectorAll('#legend li'))
		.map((li) => ({ ip: li.getAttribute('data-ip'),
				colour: li.getAttribute('data-colour') }));
	const pale = new Set(legend.filter((l) => !l.ip).slice(-2)
		.map((l) => l.colour));
	const held = {};
	for (let p = 0; p < 65536; p++) {
		const h = hex(p * 4);
		if (!pale.has(h))
			held[p] = h;
	}
	return { held: held, legend: legend };
}

/* Waits until the page is drawn (n times) and its requests are done. */
async function drawn(page, n) {
	await page.waitForFunction((k) => {
		const m = document.getElementById('page');
		return m && parseInt(m.getAttribute('data-drawn') || '0', 10) >= k &&
			window.natscopePending && window.natscopePending() === 0;
	}, n || 1, { timeout: 20000 });
	await page.waitForTimeout(150); /* charts are drawn after a tick */
}

async function visit(page, name, url, extra) {
	const t0 = Date.now();
	await page.goto(cfg.base + url, { waitUntil: 'load' });
	if (name !== 'overview')
		await drawn(page);
	else
		await page.waitForFunction(() => (document.getElementById('live') ||
			{}).textContent.startsWith('refreshed'), null,
			{ timeout: 20000 });
	out.timings[name] = Date.now() - t0;
	const r = await page.evaluate(readPage);
	if (extra)
		await extra(r);
	await page.screenshot({ path: path.join(cfg.shots, 'pages-' + name +
						 '.png'), fullPage: true });
	out.pages[name] = r;
	return r;
}

(async () => {
	const browser = await launch(cfg.chromium);

	try {
		const context = await browser.newContext({
			viewport: { width: 1280, height: 900 } });
		const page = await context.newPage();
		watch(page, out);

		const gw = encodeURIComponent(cfg.gateway), proto = cfg.proto;

		/* the overview's row links to the gateway page */
		await visit(page, 'overview', '/');
		const rowLink = 'a[href="/gateway/' + gw + '?proto=' + proto + '"]';
		await page.click('#overview ' + rowLink);
		await page.waitForURL('**/gateway/**');
		await drawn(page);
		out.pages.overview.followed = await page.evaluate(
			() => location.pathname + location.search);

		await visit(page, 'gateway', '/gateway/' + gw + '?proto=' + proto);

		/* the time picker: a past moment */
		await page.selectOption('#pick-mode', 'at');
		await page.fill('#pick-at', cfg.at);
		await Promise.all([page.waitForURL('**at=**'),
				   page.click('#picker button[type=submit]')]);
		await drawn(page);
		out.pages.gateway_at = await page.evaluate(readPage);
		await page.screenshot({ path: path.join(cfg.shots,
			'pages-gateway-at.png'), fullPage: true });
		/* and its link to the port map keeps the moment */
		await Promise.all([page.waitForURL('**/ports?**'),
				   page.click('#link-ports')]);
		await drawn(page);
		out.pages.gateway_at.followed = await page.evaluate(
			() => location.pathname + location.search);
		/* back to live from the picker */
		await Promise.all([page.waitForURL((u) => !/at=/.test(u.search)),
				   page.selectOption('#pick-mode', 'live')]);
		await drawn(page);
		out.pages.gateway_at.back = await page.evaluate(
			() => location.pathname + location.search);
		/* a range on the gateway page: the last 15 minutes */
		await page.goto(cfg.base + '/gateway/' + gw + '?proto=' + proto);
		await drawn(page);
		await Promise.all([page.waitForURL('**from=**'),
				   page.click('#picker button[data-minutes="15"]')]);
		await drawn(page);
		out.pages.gateway_range = await page.evaluate(readPage);

		await visit(page, 'ports', '/gateway/' + gw + '/ports?proto=' +
			    proto, async (r) => {
			r.map = await page.evaluate(readMap);
			/* the pointer on cfg.port's cell */
			const box = await page.locator('#portmap').boundingBox();
			const p = cfg.port;
			await page.mouse.move(box.x + ((p & 255) + 0.5) * box.width / 256,
					      box.y + ((p >> 8) + 0.5) * box.height / 256);
			await page.waitForSelector('#port-holders', { timeout: 10000 });
			const readHover = () => ({
				head: document.querySelector('#port-detail .port')
					.textContent,
				rows: Array.from(document.querySelectorAll(
					'#port-holders tbody tr')).map((tr) =>
					Array.from(tr.cells).map((td) => td.textContent)) });
			r.hover = await page.evaluate(readHover);
			/* and on cfg.port_tw's (a TIME_WAIT mapping), once its
			 * holders table is there */
			const hoverOn = async (q) => {
				await page.mouse.move(
					box.x + ((q & 255) + 0.5) * box.width / 256,
					box.y + ((q >> 8) + 0.5) * box.height / 256);
				await page.waitForFunction((port) => {
					const c = document.querySelector(
						'#port-holders caption');
					return c && c.textContent.indexOf(':' + port +
									  ' ') >= 0;
				}, q, { timeout: 10000 });
			};
			if (cfg.port_tw !== undefined) {
				await hoverOn(cfg.port_tw);
				r.hover_tw = await page.evaluate(readHover);
				await hoverOn(p); /* back, for the keyboard */
			}
			/* the keyboard: one cell to the right */
			await page.mouse.move(0, 0);
			await page.focus('#portmap');
			await page.keyboard.press('ArrowRight');
			r.key = await page.evaluate(() =>
				document.querySelector('#port-detail .port').textContent);
			/* one bucket against its range */
			if (cfg.dst) {
				await page.selectOption('#dst', { index: 1 });
				await page.waitForTimeout(200);
				r.dst = await page.evaluate(readMap);
				r.dst_url = await page.evaluate(
					() => location.pathname + location.search);
			}
		});
		await page.setViewportSize({ width: 390, height: 844 });
		await page.waitForTimeout(300);
		out.pages.ports.phone_width = await page.evaluate(
			() => document.documentElement.scrollWidth);
		await page.screenshot({ path: path.join(cfg.shots,
			'pages-ports-phone.png'), fullPage: true });
		await page.setViewportSize({ width: 1280, height: 900 });

		await visit(page, 'diagnosis', '/gateway/' + gw + '/diagnosis?proto=' +
			    proto);
		await visit(page, 'host', '/host/' + encodeURIComponent(cfg.host));
		await page.setViewportSize({ width: 390, height: 844 });
		await page.waitForTimeout(300);
		out.pages.host.phone_width = await page.evaluate(
			() => document.documentElement.scrollWidth);
		await page.setViewportSize({ width: 1280, height: 900 });
		await visit(page, 'incidents', '/incidents');
		if (cfg.incident !== undefined && cfg.incident !== null) {
			await visit(page, 'incident', '/incidents/' + cfg.incident);
			await Promise.all([page.waitForURL('**/gateway/**'),
					   page.click('main nav.links a >> nth=0')]);
			await drawn(page);
			out.pages.incident.followed = await page.evaluate(
				() => location.pathname + location.search);
		}

		/* the reverse lookup, typed into its form */
		await visit(page, 'lookup', '/lookup');
		await page.fill('#lk-ip', cfg.lookup.ip);
		await page.fill('#lk-port', String(cfg.lookup.port));
		await page.selectOption('#lk-proto', cfg.lookup.proto);
		await Promise.all([page.waitForURL('**/lookup?**'),
				   page.click('#lookup button')]);
		await drawn(page);
		out.pages.lookup = await page.evaluate(readPage);
		await page.screenshot({ path: path.join(cfg.shots,
			'pages-lookup.png'), fullPage: true });
		await context.close();
		process.stdout.write(JSON.stringify(out) + '\n');
	} finally {
		await browser.close();
	}
})().catch((e) => {
	process.stderr.write('pages.js: ' + (e.stack || e) + '\n');
	process.stderr.write(JSON.stringify(out).slice(0, 4000) + '\n');
	process.exit(1);
});
