/*
 * web/ui/dash.js - enhances the overview page natscope renders (which
 * works without it, see web/overview.c):
 *
 *  - every data-refresh seconds it reads /api/v1/status and
 *    /api/v1/gateways and redraws the header and the rows as overview.c
 *    draws them (same order, same figures, same colours);
 *  - each row gets a sparkline of its last hour of ports in use (the
 *    peak of each period), drawn by uPlot from /api/v1/series;
 *  - with data-at on <body> (the page shows a past moment, "/?at=") it
 *    reads /api/v1/gateways?at= once and does not refresh;
 *  - with data-from and data-to (a range, "/?from=&to=": every column a
 *    peak, as overview.c renders it) it leaves the rows alone and draws
 *    each sparkline over the range;
 *  - it draws the data-limit most pressed rows, as overview.c does.
 *
 * Everything from the API enters the page through textContent or
 * setAttribute, never as markup.  Requests go to this origin only.
 */
(function () {
	'use strict';

	var table = document.getElementById('overview');
	var header = document.getElementById('health');
	if (!table || !header || !window.fetch)
		return;

	var body = document.body;
	var warn = parseFloat(body.getAttribute('data-warn')) || 0.7;
	var critical = parseFloat(body.getAttribute('data-critical')) || 0.9;
	var refreshMs = Math.max(2, parseInt(body.getAttribute('data-refresh'),
					     10) || 5) * 1000;
	var SPARK_MS = 60000;  /* a row's series is read again after this */
	var SPARK_ROWS = 50;   /* rows with a sparkline: the most pressed */
	var sparks = {};       /* "ip proto" -> {box, plot, at} */
	var at = body.getAttribute('data-at'); /* a past moment, or null */
	var from = body.getAttribute('data-from'); /* a range, or null */
	var to = body.getAttribute('data-to');
	/* the rows shown, the most pressed (overview.c's limit) */
	var limit = parseInt(body.getAttribute('data-limit'), 10) || 100;
	var live = document.createElement('p');

	live.id = 'live';
	live.setAttribute('aria-live', 'polite');
	header.appendChild(live);

	/* ---- the figures, as overview.c computes them ---- */

	function num(v) {
		return typeof v === 'number' ? v : 0;
	}

	function ratio(part, whole) {
		return whole > 0 ? part / whole : 0;
	}

	function level(r) {
		return r >= critical ? 'crit' : r >= warn ? 'warn' : 'ok';
	}

	function pct(r) {
		return (r * 100).toFixed(1) + ' %';
	}

	function destination(d) {
		var ip = String(d.ip);
		var text = ip.indexOf(':') >= 0 ? '[' + ip + ']' : ip;

		text += ':' + num(d.port);
		if (num(d.zone) !== 0)
			text += ' zone ' + d.zone;
		return text;
	}

	/* a bucket's mappings now, or its peak in a period of history */
	function bucketMappings(d) {
		return num(d.mappings !== undefined ? d.mappings : d.peak);
	}

	function row(g) {
		var d = g.worst_destination && typeof g.worst_destination ===
			'object' ? g.worst_destination : null;
		var ports = ratio(num(g.ports_in_use), num(g.port_space));
		var bucket = d ? ratio(bucketMappings(d), num(d.capacity)) : 0;

		return { g: g, d: d, ports: ports, bucket: bucket,
			 pressure: Math.max(ports, bucket) };
	}

	function byPressure(a, b) {
		if (a.pressure !== b.pressure)
			return a.pressure > b.pressure ? -1 : 1;
		if (a.g.public_ip !== b.g.public_ip)
			return a.g.public_ip < b.g.public_ip ? -1 : 1;
		return a.g.proto < b.g.proto ? -1 : a.g.proto > b.g.proto ? 1 : 0;
	}

	/* ---- building elements ---- */

	function el(tag, attrs, kids) {
		var e = document.createElement(tag);
		var k;

		for (k in attrs || {})
			e.setAttribute(k, attrs[k]);
		(kids || []).forEach(function (c) {
			e.appendChild(typeof c === 'string' ?
				      document.createTextNode(c) : c);
		});
		return e;
	}

	function value(k, v) {
		return el('span', { 'data-k': k }, [String(v)]);
	}

	function meter(v, max) {
		return el('meter', { min: 0, max: max, low: max * warn,
				     high: max * critical, optimum: 0,
				     value: v });
	}

	function rowElement(r) {
		var g = r.g, d = r.d, states = g.states;
		var mappings = num(g.mappings);
		var tw = states && typeof states === 'object' && mappings > 0 ?
			pct(num(states.time_wait) / mappings) : '\u2014';
		var worst = d ?
			el('td', { 'class': 'bar lvl-' + level(r.bucket),
				   'data-label': 'worst destination' }, [
				el('span', { 'class': 'dst', 'data-k': 'worst' },
				   [destination(d)]), ' ',
				meter(bucketMappings(d), num(d.capacity)), ' ',
				value('worst_mappings', bucketMappings(d)), ' of ',
				value('worst_capacity', num(d.capacity)), ' ',
				el('span', { 'class': 'pct' }, [pct(r.bucket)])]) :
			el('td', { 'class': 'bar',
				   'data-label': 'worst destination' },
			   [value('worst', 'none')]);

		return el('tr', { 'class': 'lvl-' + level(r.pressure),
				  'data-ip': g.public_ip,
				  'data-proto': g.proto }, [
			el('th', { scope: 'row', 'class': 'ip' }, [
				el('a', { href: '/gateway/' +
					  encodeURIComponent(g.public_ip) + '?' +
					  new URLSearchParams(at ? { proto: g.proto,
						  at: at } : { proto: g.proto }) },
				   [String(g.public_ip)])]),
			el('td', { 'class': 'proto', 'data-label': 'proto' },
			   [String(g.proto)]),
			el('td', { 'class': 'num', 'data-label': 'pressure',
				   'data-k': 'pressure' }, [pct(r.pressure)]),
			el('td', { 'class': 'bar lvl-' + level(r.ports),
				   'data-label': 'ports in use' }, [
				meter(num(g.ports_in_use), num(g.port_space)), ' ',
				value('ports_in_use', num(g.ports_in_use)), ' of ',
				value('port_space', num(g.port_space)), ' ',
				el('span', { 'class': 'pct' }, [pct(r.ports)])]),
			worst,
			el('td', { 'class': 'num', 'data-label': 'hosts',
				   'data-k': 'hosts' }, [String(num(g.hosts))]),
			el('td', { 'class': 'num', 'data-label': 'mappings',
				   'data-k': 'mappings' }, [String(mappings)]),
			el('td', { 'class': 'num', 'data-label': 'TIME_WAIT',
				   'data-k': 'time_wait' }, [tw]),
			el('td', { 'class': 'spark', 'data-label': 'last hour' })
		]);
	}

	function healthLevel(state, complete) {
		if (!state || state === 'db-error')
			return 'crit';
		if (!complete || state === 'starting' || state === 'resyncing')
			return 'warn';
		return state === 'stopped' ? 'info' : 'ok';
	}

	function item(name, dd) {
		return el('div', {}, [el('dt', {}, [name]), dd]);
	}

	function counter(ct, key) {
		var v = ct[key];

		return [value(key, typeof v === 'number' ? v : 'unknown'),
			' ' + key];
	}

	function coverage(cov) {
		var dd = el('dd', { 'data-k': 'coverage' });
		var gaps = Array.isArray(cov.gaps) ? cov.gaps : [];

		if (cov.complete === true) {
			dd.textContent = 'complete';
			return dd;
		}
		dd.appendChild(el('strong', {}, ['NOT COMPLETE']));
		dd.appendChild(document.createTextNode(
			': the figures may be off' + (gaps.length ? ' (' +
			gaps.map(function (gap) {
				return gap.reason + ' gap from ' + gap.start +
					(gap.end ? ' to ' + gap.end : ', open') +
					(num(gap.events_lost) > 0 ? ', ' +
					 gap.events_lost + ' events lost' : '');
			}).join('; ') + ')' : '')));
		return dd;
	}

	function drawHeader(status, gws) {
		var cov = gws.coverage || {};
		var ct = status.conntrack;
		var dl = el('dl', {}, [
			item('showing', header.querySelector('[data-k="showing"]')),
			item('state', el('dd', { 'data-k': 'state' },
					 [String(status.state || 'unknown')])),
			item('follow', el('dd', { 'data-k': 'follow' },
					  [String(cov.follow || '')])),
			item('as of', el('dd', {}, [
				el('time', { 'data-k': 'as_of' },
				   [String(gws.as_of || '')])])),
			item('coverage', coverage(cov)),
			item('kernel', el('dd', {}, ct && typeof ct === 'object' ?
				counter(ct, 'insert_failed').concat([', '],
					counter(ct, 'drop')) :
				['no kernel counters (not a live run)'])),
			item('thresholds', el('dd', {}, [
				'warn ' + Math.round(warn * 100) + ' %, critical ' +
				Math.round(critical * 100) + ' %']))
		]);

		if (typeof status.note === 'string')
			dl.appendChild(item('note', el('dd', { 'data-k': 'note' },
						       [status.note])));
		header.className = 'health lvl-' +
			healthLevel(status.state, cov.complete === true);
		header.replaceChild(dl, header.querySelector('dl'));
	}

	function drawRows(gws) {
		var rows = (Array.isArray(gws.gateways) ? gws.gateways : [])
			.map(row).sort(byPressure);
		var tbody = el('tbody');

		rows.slice(0, limit).forEach(function (r) {
			tbody.appendChild(rowElement(r));
		});
		if (!rows.length)
			tbody.appendChild(el('tr', { 'class': 'empty' }, [
				el('td', { colspan: 9 },
				   ['no public IP has a mapping'])]));
		table.replaceChild(tbody, table.tBodies[0]);
		table.querySelector('[data-k="count"]').textContent =
			String(rows.length);
		return rows.slice(0, limit);
	}

	/* ---- sparklines ---- */

	function sparkData(doc) {
		var xs = [], ys = [];

		(Array.isArray(doc.points) ? doc.points : []).forEach(function (p) {
			xs.push(Date.parse(p.ts) / 1000);
			ys.push(num(p.ports_peak));
		});
		return [xs, ys];
	}

	function sparkOptions(box) {
		return {
			width: 100, height: 30,
			legend: { show: false }, cursor: { show: false },
			select: { show: false },
			scales: { x: { time: true },
				  y: { range: function (u, lo, hi) {
					  return [0, Math.max(hi * 1.15, 1)];
				  } } },
			axes: [{ show: false }, { show: false }],
			series: [{}, { stroke: '#2f6fb0', width: 1,
				       fill: 'rgba(47, 111, 176, 0.15)',
				       points: { show: false } }]
		};
	}

	/* The hour before the figures' time (as_of: now for a live run, the
	 * capture's time for a copied or imported database), or the page's
	 * range. */
	function loadSpark(key, g, asOf) {
		var s = sparks[key];
		var end = (Date.parse(asOf) || Date.now()) / 1000 + 1;
		var url = '/api/v1/series?public_ip=' +
			encodeURIComponent(g.public_ip) + '&proto=' +
			encodeURIComponent(g.proto) + (from && to ?
			'&from=' + encodeURIComponent(from) + '&to=' +
			encodeURIComponent(to) : '&from=' + (end - 3600).toFixed(3) +
			'&to=' + end.toFixed(3));

		s.at = Date.now();
		return fetch(url, { headers: { Accept: 'application/json' } })
			.then(function (res) {
				if (res.status === 401)
					toLogin();
				if (!res.ok)
					throw new Error('series: HTTP ' + res.status);
				return res.json();
			}).then(function (doc) {
				var data = sparkData(doc);

				s.box.setAttribute('title', 'ports in use, peak per ' +
					'period, ' + (from ? 'the range' : 'last hour') +
					' (' + data[0].length + ' points)');
				if (s.plot)
					s.plot.setData(data);
				else if (window.uPlot)
					s.plot = new window.uPlot(sparkOptions(),
								  data, s.box);
			}).catch(function () {
				s.box.setAttribute('title', 'no history yet');
			});
	}

	function drawSparks(rows, asOf) {
		var seen = {};

		rows.slice(0, SPARK_ROWS).forEach(function (r, i) {
			var key = r.g.public_ip + ' ' + r.g.proto;
			var cell = table.tBodies[0].rows[i].cells[8];
			var s = sparks[key];

			seen[key] = true;
			if (!s) {
				s = sparks[key] = { box: el('div', {
					'class': 'sparkbox' }), plot: null, at: 0 };
			}
			cell.appendChild(s.box);
			if (Date.now() - s.at >= SPARK_MS)
				loadSpark(key, r.g, asOf);
		});
		Object.keys(sparks).forEach(function (key) {
			if (!seen[key]) {
				if (sparks[key].plot)
					sparks[key].plot.destroy();
				delete sparks[key];
			}
		});
	}

	/* ---- refreshing ---- */

	/* The login cookie expired (or the token changed): the form, which
	 * comes back here. */
	function toLogin() {
		location.assign('/login?next=' + encodeURIComponent(
			location.pathname + location.search));
	}

	function getJSON(path) {
		return fetch(path, { headers: { Accept: 'application/json' } })
			.then(function (res) {
				if (res.status === 401)
					toLogin();
				return res.json().then(function (doc) {
					if (!res.ok)
						throw new Error(doc.error ||
								'HTTP ' + res.status);
					return doc;
				});
			});
	}

	function refresh() {
		Promise.all([getJSON('/api/v1/status'),
			     getJSON('/api/v1/gateways' + (at ? '?at=' +
				     encodeURIComponent(at) : ''))])
			.then(function (docs) {
				drawHeader(docs[0], docs[1]);
				drawSparks(drawRows(docs[1]), docs[1].as_of);
				live.className = '';
				live.textContent = at ? 'refreshed once: the ' +
					'past does not change' : 'refreshed ' +
					new Date().toLocaleTimeString() +
					', every ' + refreshMs / 1000 + ' s';
			}).catch(function (e) {
				live.className = 'stale';
				live.textContent = 'not refreshed: ' + e.message +
					' (the figures above may be old)';
			}).then(function () {
				if (!at)
					setTimeout(refresh, refreshMs);
			});
	}

	/* A range: the rows are the server's (peaks); only the sparklines. */
	function rangeSparks() {
		var rows = Array.prototype.map.call(
			table.querySelectorAll('tbody tr[data-ip]'), function (tr) {
				return { g: { public_ip: tr.getAttribute('data-ip'),
					      proto: tr.getAttribute('data-proto') } };
			});
		drawSparks(rows, to);
		live.textContent = 'a range: the past does not change';
	}

	if (from && to)
		rangeSparks();
	else
		refresh();
}());
