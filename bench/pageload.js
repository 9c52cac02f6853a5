/*
 * bench/pageload.js - how long the dashboard's pages take to load, and
 * the API answers behind them, on a big database served by
 * `natscope serve --db FILE` (the history benchmark's, or one made by
 * build/histgen): Debian's Chromium driven by playwright-core from
 * web/ui/node_modules.
 *
 *   node bench/pageload.js [--base http://127.0.0.1:19748] [--runs 5]
 *        [--at TIME] [--chromium /usr/bin/chromium]
 *
 * It picks the moment (--at, default: 2 minutes before the status'
 * as_of), the gateway with the most ports then, and that gateway's top
 * host, and loads each page --runs times in one browser (its files
 * cached as a returning user's are): the overview at that moment, the
 * overview over the day and the 30 days before it (every figure a peak),
 * the gateway page at it and over the hour before it, the host page, the
 * incidents list, the port map and the diagnosis (these two need the
 * mapping log and live tables: a database without them answers 404,
 * reported as such).  A page counts as loaded when it is drawn and no
 * request is pending.  Then every API URL the pages asked for is timed
 * alone, --runs times, over keep-alive HTTP.  The overview counts as
 * loaded once its rows are refreshed and every sparkline (the 50 most
 * pressed rows) is drawn; the first is given too.  Prints the medians (and
 * the page's own API requests) as text, and as JSON with --json.
 */
'use strict';

const http = require('http');
const path = require('path');
const modules = path.join(__dirname, '..', 'web', 'ui', 'node_modules');
const { chromium } = require(path.join(modules, 'playwright-core'));

function args() {
	const a = { base: 'http://127.0.0.1:19748', runs: 5, at: null,
		    chromium: '/usr/bin/chromium', json: false };
	const v = process.argv.slice(2);
	for (let i = 0; i < v.length; i++) {
		const k = v[i].replace(/^--/, '');
		if (k === 'json')
			a.json = true;
		else if (k in a)
			a[k] = k === 'runs' ? parseInt(v[++i], 10) : v[++i];
		else
			throw new Error('unknown option ' + v[i]);
	}
	return a;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/* GET url: {status, ms, bytes, body} */
function get(url) {
	return new Promise((resolve, reject) => {
		const t0 = process.hrtime.bigint();
		http.get(url, { agent: agent,
				headers: { Accept: 'application/json' } }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const body = Buffer.concat(chunks);
				resolve({ status: res.statusCode, bytes: body.length,
					  ms: Number(process.hrtime.bigint() - t0) / 1e6,
					  body: body });
			});
		}).on('error', reject);
	});
}

function median(xs) {
	const s = xs.slice().sort((x, y) => x - y);
	return s.length ? s[Math.floor((s.length - 1) / 2)] : null;
}

function iso(ms) {
	return new Date(ms).toISOString();
}

(async () => {
	const a = args();
	const status = JSON.parse((await get(a.base + '/api/v1/status')).body);
	const at = a.at || iso(Date.parse(status.as_of) - 120000);
	const gws = JSON.parse((await get(a.base + '/api/v1/gateways?at=' +
					  encodeURIComponent(at))).body);
	if (!Array.isArray(gws.gateways) || !gws.gateways.length)
		throw new Error('no gateway at ' + at + ': ' + JSON.stringify(gws)
				.slice(0, 300));
	const g = gws.gateways.slice().sort((x, y) =>
		y.ports_in_use - x.ports_in_use)[0];
	const gp = encodeURIComponent(g.public_ip);
	const hosts = JSON.parse((await get(a.base + '/api/v1/gateways/' + gp +
		'/hosts?proto=' + g.proto + '&limit=1&at=' +
		encodeURIComponent(at))).body);
	const host = hosts.hosts && hosts.hosts[0] ? hosts.hosts[0].ip : null;
	const from = iso(Date.parse(at) - 3600000);
	const q = (o) => '?' + new URLSearchParams(o).toString();
	const pages = [
		['overview (at)', '/' + q({ at: at }), 'overview'],
		['overview (24 h range)', '/' + q({
			from: iso(Date.parse(at) - 86400000), to: at }), 'range'],
		['overview (30 d range)', '/' + q({
			from: iso(Date.parse(at) - 30 * 86400000), to: at }),
		 'range'],
		['gateway (at)', '/gateway/' + gp + q({ proto: g.proto, at: at })],
		['gateway (1 h range)', '/gateway/' + gp +
		 q({ proto: g.proto, from: from, to: at })],
		['host (1 h range)', host ? '/host/' + encodeURIComponent(host) +
		 q({ from: from, to: at }) : null],
		['incidents (24 h)', '/incidents' + q({
			from: iso(Date.parse(at) - 86400000), to: at })],
		['port map (at)', '/gateway/' + gp + '/ports' +
		 q({ proto: g.proto, at: at })],
		['diagnosis (live)', '/gateway/' + gp + '/diagnosis' +
		 q({ proto: g.proto })]
	].filter((p) => p[1]);

	const browser = await chromium.launch({ executablePath: a.chromium,
		args: ['--no-sandbox', '--disable-gpu', '--no-first-run',
		       '--disable-background-networking', '--disable-sync'] });
	const context = await browser.newContext({
		viewport: { width: 1280, height: 900 } });
	const page = await context.newPage();
	const apis = new Set(), errors = [];
	page.on('request', (r) => {
		if (r.url().indexOf('/api/v1/') >= 0)
			apis.add(r.url());
	});
	page.on('pageerror', (e) => errors.push(String(e)));
	const result = { base: a.base, at: at, gateway: g.public_ip + ' ' +
			 g.proto, host: host, runs: a.runs, pages: [], api: [],
			 errors: errors };

	for (const [name, url, kind] of pages) {
		const times = [], firsts = [];
		let shown = null;
		for (let i = 0; i < a.runs; i++) {
			const t0 = Date.now();
			await page.goto(a.base + url, { waitUntil: 'load' });
			if (kind === 'overview' || kind === 'range') {
				/* a range's rows are the server's: there at load */
				if (kind === 'overview')
					await page.waitForFunction(() => (document
						.getElementById('live') || {}).textContent
						.startsWith('refreshed'), null,
						{ timeout: 60000 });
				firsts.push(Date.now() - t0); /* rows, before sparklines */
				await page.waitForFunction(() => document
					.querySelectorAll('#overview td.spark canvas')
					.length >= Math.min(50, document.querySelectorAll(
						'#overview tbody tr[data-ip]').length),
					null, { timeout: 60000 });
			} else {
				await page.waitForFunction(() => {
					const m = document.getElementById('page');
					return m && m.getAttribute('data-drawn') &&
						window.natscopePending() === 0;
				}, null, { timeout: 60000 });
			}
			times.push(Date.now() - t0);
			shown = await page.evaluate(() => Array.from(
				document.querySelectorAll('main .error'))
				.map((e) => e.textContent).join('; '));
		}
		result.pages.push({ page: name, url: url, median_ms: median(times),
				    max_ms: Math.max.apply(null, times),
				    rows_ms: firsts.length ? median(firsts) : null,
				    error: shown || null });
	}
	await browser.close();

	/* by endpoint: the path with its addresses as {ip}, and the names
	 * of its parameters (the 50 sparklines' series are one line) */
	const groups = {};
	for (const url of Array.from(apis).sort()) {
		const u = new URL(url);
		const key = u.pathname.replace(/\/[0-9a-f.:]+(?=\/|$)/g, '/{ip}') +
			'?' + Array.from(u.searchParams.keys()).sort().join('&');
		const g = groups[key] = groups[key] || { endpoint: key, urls: 0,
			times: [], bytes: [], status: {} };
		g.urls++;
		for (let i = 0; i < a.runs; i++) {
			const r = await get(url);
			g.times.push(r.ms);
			g.bytes.push(r.bytes);
			g.status[r.status] = (g.status[r.status] || 0) + 1;
		}
	}
	for (const g of Object.values(groups))
		result.api.push({ endpoint: g.endpoint, urls: g.urls,
				  status: Object.keys(g.status).join('/'),
				  bytes: median(g.bytes),
				  median_ms: Math.round(median(g.times) * 10) / 10,
				  max_ms: Math.round(Math.max.apply(null, g.times) * 10) /
					  10 });
	agent.destroy();

	if (a.json) {
		process.stdout.write(JSON.stringify(result, null, 1) + '\n');
		return;
	}
	console.log('pages of ' + a.base + ' at ' + at + ', gateway ' +
		    result.gateway + ', host ' + host + ', ' + a.runs +
		    ' runs each (median / max ms, load to drawn)');
	for (const p of result.pages)
		console.log('  ' + p.page.padEnd(22) + String(p.median_ms)
			    .padStart(7) + ' /' + String(p.max_ms).padStart(6) +
			    (p.rows_ms !== null ? '   (rows refreshed: ' + p.rows_ms +
			     ' ms; then every sparkline drawn)' : '') +
			    (p.error ? '   (shows: ' + p.error.slice(0, 90) + ')' :
			     ''));
	console.log('API answers the pages asked for, each URL alone (median / ' +
		    'max ms over every URL of the endpoint, status, median ' +
		    'bytes, URLs)');
	for (const r of result.api)
		console.log('  ' + String(r.median_ms).padStart(7) + ' /' +
			    String(r.max_ms).padStart(7) + '  ' +
			    r.status.padEnd(7) + String(r.bytes).padStart(8) +
			    '  x' + String(r.urls).padEnd(3) + ' ' + r.endpoint);
	if (errors.length)
		console.log('page errors: ' + errors.join('; '));
})().catch((e) => {
	process.stderr.write('pageload.js: ' + (e.stack || e) + '\n');
	process.exit(1);
});
