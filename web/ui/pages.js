/*
 * web/ui/pages.js - the dashboard's pages other than the overview, drawn
 * into the shell natscope serves (web_page_shell: <main id="page"
 * data-page=NAME>) from the API:
 *
 *   /gateway/IP?proto=          series (peaks, stacked by top hosts,
 *                               incidents and gaps on the time axis),
 *                               hosts, destinations, TCP states
 *   /gateway/IP/ports?proto=&dst=   the port map (portmap.js)
 *   /gateway/IP/diagnosis?proto=    the playbook's advice
 *   /host/IP                    one internal host's gateways and
 *                               destinations
 *   /incidents, /incidents/ID   the list and one incident's moment
 *   /lookup?public_ip=&port=&proto=  who held a public port
 *
 * The URL holds the whole state, so a link pasted elsewhere shows the
 * same thing: no time parameter is live (redrawn every data-refresh
 * seconds), at= a past moment, from= and to= a range.  The time picker
 * in the bar writes them.  Everything from the API enters the page
 * through textContent or setAttribute, never as markup; every request
 * goes to this origin.
 */
(function () {
	'use strict';

	var main = document.getElementById('page');
	var picker = document.getElementById('picker');
	var liveLine = document.getElementById('live');
	if (!main || !window.fetch || !window.URLSearchParams)
		return;

	var body = document.body;
	var warn = parseFloat(body.getAttribute('data-warn')) || 0.7;
	var critical = parseFloat(body.getAttribute('data-critical')) || 0.9;
	var refreshMs = Math.max(2, parseInt(body.getAttribute('data-refresh'),
					     10) || 5) * 1000;
	var kind = main.getAttribute('data-page');
	var query = new URLSearchParams(location.search);
	var segs = location.pathname.split('/');
	var seg = segs.length > 2 ? decodeURIComponent(segs[2]) : '';
	var PROTOS = ['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp',
		      'icmpv6'];
	var plots = [];	/* uPlot instances of the current drawing */
	var pending = 0; /* requests under way (the tests wait for 0) */

	/* ---- time: live, a moment, a range ---- */

	/* ms since the epoch of a time as the API takes it (RFC 3339 or
	 * unix seconds); NaN when it is neither */
	function ms(text) {
		if (typeof text !== 'string' || text === '')
			return NaN;
		if (/^\d+(\.\d+)?$/.test(text))
			return parseFloat(text) * 1000;
		return Date.parse(text);
	}

	function iso(t) {
		return new Date(t).toISOString();
	}

	var time = (function () {
		var at = query.get('at'), from = query.get('from'),
			to = query.get('to');

		if (from || to)
			return { mode: 'range', from: from || '', to: to || '' };
		if (at)
			return { mode: 'at', at: at };
		return { mode: 'live' };
	}());

	/* The time parameters of the current state, for links and the API
	 * (range: to defaults to now, from to an hour before to). */
	function timeParams(t) {
		t = t || time;
		if (t.mode === 'at')
			return { at: t.at };
		if (t.mode === 'range') {
			var p = {};

			if (t.from)
				p.from = t.from;
			if (t.to)
				p.to = t.to;
			return p;
		}
		return {};
	}

	/* [from, to] in ms for a chart around the state: live the last
	 * hour, a moment the hour before it and 10 minutes after, a range
	 * itself. */
	function span() {
		var now = Date.now(), to, from;

		if (time.mode === 'at') {
			to = Math.min(ms(time.at) + 600000, now);
			from = ms(time.at) - 3600000;
		} else if (time.mode === 'range') {
			to = time.to ? ms(time.to) : now;
			from = time.from ? ms(time.from) : to - 3600000;
		} else {
			to = now;
			from = now - 3600000;
		}
		return [from, to];
	}

	/* The moment a table answers for: now (null), the moment, or a
	 * range's end. */
	function moment() {
		if (time.mode === 'at')
			return time.at;
		if (time.mode === 'range' && time.to)
			return time.to;
		return null;
	}

	/* A URL on this origin: path + params (empty values dropped). */
	function href(path, params) {
		var q = new URLSearchParams(), k;

		for (k in params || {})
			if (params[k] !== undefined && params[k] !== null &&
			    params[k] !== '')
				q.append(k, String(params[k]));
		q = q.toString();
		return path + (q ? '?' + q : '');
	}

	function withTime(params, t) {
		var p = {}, k, tp = timeParams(t);

		for (k in params || {})
			p[k] = params[k];
		for (k in tp)
			p[k] = tp[k];
		return p;
	}

	/* ---- elements ---- */

	function el(tag, attrs, kids) {
		var e = document.createElement(tag), k;

		for (k in attrs || {})
			if (attrs[k] !== undefined && attrs[k] !== null)
				e.setAttribute(k, attrs[k]);
		(kids || []).forEach(function (c) {
			if (c === null || c === undefined)
				return;
			e.appendChild(typeof c === 'object' ? c :
				      document.createTextNode(String(c)));
		});
		return e;
	}

	function a(path, text, attrs) {
		attrs = attrs || {};
		attrs.href = path;
		return el('a', attrs, [text]);
	}

	function num(v) {
		return typeof v === 'number' && isFinite(v) ? v : 0;
	}

	function pct(r) {
		return (r * 100).toFixed(1) + ' %';
	}

	function rate(v) {
		return typeof v === 'number' ? v.toFixed(1) + '/s' : '\u2014';
	}

	function level(r) {
		return r >= critical ? 'crit' : r >= warn ? 'warn' : 'ok';
	}

	function hostPort(ip, port) {
		ip = String(ip);
		return (ip.indexOf(':') >= 0 ? '[' + ip + ']' : ip) +
			(port === undefined || port === null ? '' : ':' + port);
	}

	function dest(d) {
		if (!d || typeof d !== 'object')
			return 'none';
		return hostPort(d.ip, num(d.port)) +
			(num(d.zone) ? ' zone ' + d.zone : '');
	}

	function value(k, v) {
		return el('span', { 'data-k': k }, [String(v)]);
	}

	function meter(v, max) {
		return el('meter', { min: 0, max: max > 0 ? max : 1,
				     low: max * warn, high: max * critical,
				     optimum: 0, value: v });
	}

	/* A definition list of [name, value node or text, data-k] items. */
	function facts(items) {
		return el('dl', { 'class': 'facts' }, items.map(function (it) {
			return el('div', {}, [el('dt', {}, [it[0]]),
				el('dd', it[2] ? { 'data-k': it[2] } : {},
				   [it[1]])]);
		}));
	}

	/* A table: cols [{h: heading, k: data-k, num: bool, v: fn(row)
	 * -> node or text}], rows. */
	function table(id, caption, cols, rows, empty) {
		var thead = el('thead', {}, [el('tr', {}, cols.map(function (c) {
			return el('th', { scope: 'col' }, [c.h]);
		}))]);
		var tbody = el('tbody', {}, rows.map(function (r) {
			return el('tr', {}, cols.map(function (c) {
				var v = c.v(r);

				return el('td', { 'class': c.num ? 'num' : null,
						  'data-label': c.h,
						  'data-k': c.k }, [v]);
			}));
		}));

		if (!rows.length)
			tbody.appendChild(el('tr', { 'class': 'empty' }, [
				el('td', { colspan: cols.length },
				   [empty || 'none'])]));
		return el('div', { 'class': 'scroll' }, [
			el('table', { id: id, 'class': 'data' }, [
				el('caption', {}, [caption]), thead, tbody])]);
	}

	function section(title, kids, id) {
		return el('section', { id: id }, [el('h2', {}, [title])]
			  .concat(kids));
	}

	function note(text, cls) {
		return el('p', { 'class': cls || 'note' }, [text]);
	}

	function failure(e) {
		return el('p', { 'class': 'error', role: 'alert' },
			  [String(e && e.message ? e.message : e)]);
	}

	function coverageNote(cov) {
		if (!cov || cov.complete === true)
			return null;
		var gaps = Array.isArray(cov.gaps) ? cov.gaps : [];

		return el('p', { 'class': 'warning', 'data-k': 'coverage' }, [
			el('strong', {}, ['NOT COMPLETE']),
			': the figures may be off' + (gaps.length ? ' (' +
			gaps.map(function (g) {
				return g.reason + ' gap from ' + g.start +
					(g.end ? ' to ' + g.end : ', open');
			}).join('; ') + ')' : '')]);
	}

	/* ---- the API ---- */

	/* The login cookie expired (or the token changed): the form, which
	 * comes back here. */
	function toLogin() {
		location.assign('/login?next=' + encodeURIComponent(
			location.pathname + location.search));
	}

	function getJSON(path) {
		pending++;
		return fetch(path, { headers: { Accept: 'application/json' } })
			.then(function (res) {
				if (res.status === 401)
					toLogin();
				return res.json().then(function (doc) {
					if (!res.ok) {
						var e = new Error(doc.error ||
							'HTTP ' + res.status);
						e.status = res.status;
						throw e;
					}
					return doc;
				});
			}).finally(function () {
				pending--;
			});
	}

	/* getJSON, or null when the answer is an error (shown by the
	 * caller as the error's text). */
	function maybe(path) {
		return getJSON(path).catch(function (e) { return e; });
	}

	function isErr(v) {
		return v instanceof Error;
	}

	/* ---- the time picker ---- */

	function drawPicker() {
		var modes = [['live', 'live'], ['at', 'a moment'],
			     ['range', 'a range']];
		var sel = el('select', { name: 'mode', id: 'pick-mode',
					 'aria-label': 'time' },
			     modes.map(function (m) {
				     return el('option', { value: m[0] }, [m[1]]);
			     }));
		var atIn = el('input', { type: 'text', name: 'at', id: 'pick-at',
					 size: 24, placeholder: 'RFC 3339 or unix s',
					 'aria-label': 'moment' });
		var fromIn = el('input', { type: 'text', name: 'from',
					   id: 'pick-from', size: 24,
					   placeholder: 'from', 'aria-label': 'from' });
		var toIn = el('input', { type: 'text', name: 'to', id: 'pick-to',
					 size: 24, placeholder: 'to (now)',
					 'aria-label': 'to' });
		var quick = el('span', { 'class': 'quick' }, [
			[15, '15m'], [60, '1h'], [360, '6h'], [1440, '24h']
		].map(function (q) {
			var b = el('button', { type: 'button',
					       'data-minutes': q[0] }, ['last ' + q[1]]);

			b.addEventListener('click', function () {
				var now = Date.now();

				go({ mode: 'range', from: iso(now - q[0] * 60000),
				     to: iso(now) });
			});
			return b;
		}));
		var form = el('form', { id: 'picker', 'class': 'picker' }, [
			sel, ' ', el('span', { 'class': 'pick-at' }, [atIn]),
			el('span', { 'class': 'pick-range' }, [fromIn, ' \u2013 ',
							       toIn]),
			' ', el('button', { type: 'submit' }, ['show']), ' ',
			quick]);

		function show() {
			form.setAttribute('data-mode', sel.value);
		}
		sel.value = time.mode;
		atIn.value = time.mode === 'at' ? time.at : moment() || '';
		fromIn.value = time.mode === 'range' ? time.from : '';
		toIn.value = time.mode === 'range' ? time.to : '';
		if (time.mode === 'live') {
			atIn.value = iso(Date.now() - 300000);
			fromIn.value = iso(Date.now() - 3600000);
		}
		show();
		sel.addEventListener('change', function () {
			show();
			if (sel.value === 'live')
				go({ mode: 'live' });
		});
		form.addEventListener('submit', function (ev) {
			ev.preventDefault();
			var t = { mode: sel.value, at: atIn.value.trim(),
				  from: fromIn.value.trim(), to: toIn.value.trim() };
			var bad = t.mode === 'at' ? isNaN(ms(t.at)) :
				t.mode === 'range' ? (isNaN(ms(t.from)) ||
					(t.to && isNaN(ms(t.to)))) : false;

			if (bad) {
				liveLine.className = 'stale';
				liveLine.textContent = 'not a time: RFC 3339 ' +
					'(2026-12-02T14:02:00Z) or unix seconds';
				return;
			}
			go(t);
		});
		picker.parentNode.replaceChild(form, picker);
		picker = form;
	}

	/* Navigates to the same page in time state t (a new history entry,
	 * so Back returns to the previous state). */
	function go(t) {
		var p = {}, k;

		query.forEach(function (v, key) {
			if (key !== 'at' && key !== 'from' && key !== 'to')
				p[key] = v;
		});
		var tp = timeParams(t);

		for (k in tp)
			p[k] = tp[k];
		location.assign(href(location.pathname, p));
	}

	/* ---- charts ---- */

	var COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e',
		       '#17becf', '#e377c2', '#8c564b', '#bcbd22', '#393b79'];

	function chartWidth(box) {
		return Math.max(280, Math.min(1100, (box.clientWidth ||
			main.clientWidth || 800) - 10));
	}

	/* Shades [start, end] stretches (ms) on the chart: marks = [{from,
	 * to, cls}] with cls 'gap' (grey), 'crit', 'warn' (incidents),
	 * 'at' (the chosen moment, a line). */
	function markHook(marks) {
		var fill = { gap: 'rgba(110, 110, 110, 0.25)',
			     crit: 'rgba(179, 38, 30, 0.18)',
			     warn: 'rgba(154, 103, 0, 0.18)',
			     at: 'rgba(29, 35, 48, 0.9)' };

		return function (u) {
			var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;

			ctx.save();
			marks.forEach(function (m) {
				var x0 = u.valToPos(m.from / 1000, 'x', true);
				var x1 = u.valToPos(m.to / 1000, 'x', true);

				x0 = Math.max(x0, u.bbox.left);
				x1 = Math.min(x1, u.bbox.left + u.bbox.width);
				if (x1 < x0)
					return;
				ctx.fillStyle = fill[m.cls] || fill.gap;
				ctx.fillRect(x0, top, Math.max(x1 - x0,
							       m.cls === 'at' ? 2 : 1), h);
			});
			ctx.restore();
		};
	}

	function plot(box, opts, data) {
		if (!window.uPlot) {
			box.appendChild(note('(the chart library did not load)'));
			return;
		}
		plots.push(new window.uPlot(opts, data, box));
	}

	/* The gateway's series: ports in use (peak per period) and its
	 * worst bucket's fill (peak), then its top hosts stacked. */
	function seriesCharts(doc, marks) {
		var pts = Array.isArray(doc.points) ? doc.points : [];
		var xs = [], ports = [], fill = [];
		var box1 = el('div', { 'class': 'chart', id: 'chart-ports',
				       role: 'img',
				       'aria-label': 'ports in use and the worst ' +
				       'bucket over time' });
		var box2 = el('div', { 'class': 'chart', id: 'chart-hosts',
				       role: 'img',
				       'aria-label': 'top hosts over time, stacked' });
		var out = [box1];
		var s = span();
		/* both charts over the range asked for, whatever was observed */
		var xr = function () { return [s[0] / 1000, s[1] / 1000]; };
		var yr = function (u, lo, hi) {
			return [0, Math.max(1, (hi || 0) * 1.1)];
		};

		pts.forEach(function (p) {
			xs.push(ms(p.ts) / 1000);
			ports.push(num(p.ports_peak));
			fill.push(p.worst && p.worst.capacity > 0 ?
				  100 * p.worst.peak / p.worst.capacity : 0);
		});
		setTimeout(function () {
			plot(box1, {
				width: chartWidth(main), height: 220,
				scales: { x: { time: true, range: xr }, y: { range: yr },
					  pct: { range: [0, 100] } },
				axes: [{}, { label: 'ports', size: 60 },
				       { scale: 'pct', side: 1, label: '% of bucket',
					 grid: { show: false } }],
				series: [{}, { label: 'ports in use (peak)',
					       stroke: '#2f6fb0', width: 1.5,
					       fill: 'rgba(47, 111, 176, 0.12)' },
					 { label: 'worst bucket (peak %)', scale: 'pct',
					   stroke: '#b3261e', width: 1.5,
					   value: function (u, v) {
						   return v === null ? '\u2014' :
							   v.toFixed(1) + ' %';
					   } }],
				hooks: { drawClear: [markHook(marks)] }
			}, [xs, ports, fill]);
		}, 0);

		/* stacked: each host's peak mappings per recorded period,
		 * drawn as running sums, the largest sum first */
		var hosts = (Array.isArray(doc.top_hosts) ? doc.top_hosts : [])
			.filter(function (h) { return Array.isArray(h.series); });
		if (hosts.length) {
			var tsSet = {}, hxs, own = [], sums = [];

			hosts.forEach(function (h) {
				h.series.forEach(function (p) { tsSet[p[0]] = 1; });
			});
			hxs = Object.keys(tsSet).map(Number).sort(function (x, y) {
				return x - y;
			});
			/* each value holds for its period: the last one too */
			var step = doc.recorded && doc.recorded.resolution === 'hour' ?
				3600 : 60;
			var tail = hxs[hxs.length - 1] + step;
			hosts.forEach(function (h, i) {
				var byTs = {};

				h.series.forEach(function (p) { byTs[p[0]] = p[1]; });
				own.push(hxs.map(function (x) {
					return byTs[x] === undefined ? 0 : byTs[x];
				}));
				own[i].push(own[i][own[i].length - 1]);
				sums.push(own[i].map(function (v, j) {
					return v + (i ? sums[i - 1][j] : 0);
				}));
			});
			var series = [{}], data = [hxs.concat([tail])];
			var stepped = window.uPlot && window.uPlot.paths &&
				window.uPlot.paths.stepped ?
				window.uPlot.paths.stepped({ align: 1 }) : undefined;

			for (var i = hosts.length - 1; i >= 0; i--) {
				(function (i) {
					var c = COLOURS[i % COLOURS.length];

					series.push({ label: String(hosts[i].ip), stroke: c,
						      width: 1, fill: c + '59', paths: stepped,
						      points: { show: false },
						      value: function (u, v, si, idx) {
							      return idx === null ? '\u2014' :
								      String(own[i][idx]);
						      } });
					data.push(sums[i]);
				}(i));
			}
			setTimeout(function () {
				plot(box2, {
					width: chartWidth(main), height: 200,
					scales: { x: { time: true, range: xr },
						  y: { range: yr } },
					axes: [{}, { label: 'mappings (peak)', size: 60 }],
					series: series,
					hooks: { drawClear: [markHook(marks)] }
				}, data);
			}, 0);
			out.push(el('h3', {}, ['Top hosts, stacked (peak mappings ' +
				'per ' + (doc.recorded && doc.recorded.resolution ||
					  'period') + ')']));
			out.push(box2);
		}
		return out;
	}

	/* Incidents of one gateway and the stretches with no figures, as
	 * marks and as a list a person (or a screen reader) can read. */
	function timeMarks(series, incidents, ip, proto) {
		var marks = [], items = [], cov = series.coverage || {};
		var s = span();

		(cov.unobserved || []).forEach(function (u) {
			marks.push({ from: ms(u.start), to: ms(u.end), cls: 'gap' });
			items.push(el('li', { 'class': 'gap' }, ['nothing observed ' +
				u.start + ' \u2013 ' + u.end]));
		});
		(cov.gaps || []).forEach(function (g) {
			marks.push({ from: ms(g.start), to: g.end ? ms(g.end) : s[1],
				     cls: 'gap' });
			items.push(el('li', { 'class': 'gap' }, [g.reason + ' gap ' +
				g.start + ' \u2013 ' + (g.end || 'open')]));
		});
		(incidents || []).filter(function (inc) {
			return inc.public_ip === ip && inc.proto === proto;
		}).forEach(function (inc) {
			var cls = inc.severity === 'critical' ? 'crit' : 'warn';

			marks.push({ from: ms(inc.opened), to: inc.closed ?
				     ms(inc.closed) : s[1], cls: cls });
			items.push(el('li', { 'class': 'lvl-' + cls }, [
				a('/incidents/' + inc.id, 'incident ' + inc.id),
				' ' + inc.severity + ' ' + inc.kind +
				(inc.destination ? ' ' + dest(inc.destination) : '') +
				', ' + inc.opened + ' \u2013 ' +
				(inc.closed || 'open') + ', peak ' +
				inc.peak_mappings + ' (' + pct(num(inc.peak_ratio)) +
				')']));
		});
		if (time.mode === 'at')
			marks.push({ from: ms(time.at), to: ms(time.at), cls: 'at' });
		return { marks: marks, list: items.length ?
			 el('ul', { id: 'marks', 'class': 'marks' }, items) :
			 note('no incident and no gap in this range') };
	}

	/* ---- the pages ---- */

	function protoOf() {
		var p = query.get('proto') || 'tcp';

		return PROTOS.indexOf(p) >= 0 ? p : 'tcp';
	}

	function gwLinks(ip, proto) {
		var base = '/gateway/' + encodeURIComponent(ip);

		return el('nav', { 'class': 'links', 'aria-label': 'this gateway' },
			  [a(href(base, withTime({ proto: proto })), 'gateway',
			     { id: 'link-gateway' }), ' \u00b7 ',
			   a(href(base + '/ports', withTime({ proto: proto })),
			     'port map', { id: 'link-ports' }), ' \u00b7 ',
			   a(href(base + '/diagnosis', withTime({ proto: proto })),
			     'diagnosis', { id: 'link-diagnosis' }), ' \u00b7 ',
			   a(href('/', time.mode === 'at' ? { at: time.at } : {}),
			     'overview', { id: 'link-overview' })]);
	}

	function title(text) {
		document.title = 'natscope: ' + text;
		return el('h1', { 'class': 'title' }, [text]);
	}

	function statesTable(id, states, mappings) {
		var rows = Object.keys(states || {}).map(function (k) {
			return { k: k, n: num(states[k]) };
		});

		return table(id, 'TCP states of the ' + mappings +
			     ' mappings (every state holds its port)', [
			{ h: 'state', v: function (r) { return r.k; } },
			{ h: 'mappings', num: true, k: 'state-mappings',
			  v: function (r) { return String(r.n); } },
			{ h: 'share', num: true, v: function (r) {
				return el('span', {}, [el('meter', { min: 0,
					max: mappings > 0 ? mappings : 1, value: r.n }), ' ',
					pct(mappings > 0 ? r.n / mappings : 0)]);
			} }], rows);
	}

	function gatewaySummary(g, past) {
		var d = g.worst_destination;
		var dm = d ? (d.mappings !== undefined ? d.mappings : d.peak) : 0;
		var items = [
			['ports in use', el('span', {}, [
				meter(num(g.ports_in_use), num(g.port_space)), ' ',
				value('ports_in_use', num(g.ports_in_use)), ' of ',
				value('port_space', num(g.port_space)), ' (' +
				pct(num(g.ports_in_use) / (num(g.port_space) || 1)) +
				')'])],
			['mappings', value('mappings', num(g.mappings))],
			['hosts', value('hosts', num(g.hosts))],
			['destinations', value('destinations',
					       num(g.destinations))],
			['worst bucket', d ? el('span', {}, [
				value('worst', dest(d)), ' ',
				meter(dm, num(d.capacity)), ' ',
				value('worst_mappings', dm), ' of ',
				value('worst_capacity', num(d.capacity)),
				' (' + pct(dm / (num(d.capacity) || 1)) + ')']) :
			 value('worst', 'none')]
		];

		if (past) {
			items.push(['peak ports in period',
				    value('ports_peak', num(g.ports_peak))]);
			items.push(['new mappings', value('new_per_second',
							  rate(g.new_per_second))]);
		}
		return facts(items);
	}

	function hostCols(rates) {
		var cols = [
			{ h: 'host', k: 'host', v: function (h) {
				return a(href('/host/' + encodeURIComponent(h.ip),
					      withTime({})), String(h.ip));
			} },
			{ h: 'kind', v: function (h) { return String(h.kind); } },
			{ h: 'ports', num: true, k: 'ports', v: function (h) {
				return String(num(h.ports_in_use !== undefined ?
						  h.ports_in_use : h.ports_in_use_max));
			} },
			{ h: 'mappings', num: true, k: 'mappings', v: function (h) {
				return String(num(h.mappings !== undefined ?
						  h.mappings : h.mappings_peak));
			} }];

		if (rates)
			cols.push({ h: 'new/s', num: true, k: 'rate',
				    v: function (h) { return rate(h.new_per_second); } });
		return cols;
	}

	function destCols(ip, proto, doc) {
		return [
			{ h: 'destination', k: 'destination', v: function (d) {
				var i = doc.destinations.indexOf(d);

				return a(href('/gateway/' + encodeURIComponent(ip) +
					      '/ports', withTime({ proto: proto,
								   dst: dest(d) })),
					 dest(d), { 'data-i': i });
			} },
			{ h: 'mappings', num: true, k: 'mappings', v: function (d) {
				return String(num(d.mappings !== undefined ?
						  d.mappings : d.mappings_peak));
			} },
			{ h: 'capacity', num: true, k: 'capacity',
			  v: function (d) { return String(num(d.capacity)); } },
			{ h: 'fill', num: true, v: function (d) {
				var m = num(d.mappings !== undefined ? d.mappings :
					    d.mappings_peak);

				return el('span', {}, [meter(m, num(d.capacity)), ' ',
					pct(m / (num(d.capacity) || 1))]);
			} },
			{ h: 'new/s', num: true, k: 'rate',
			  v: function (d) { return rate(d.new_per_second); } }];
	}

	function limitOf() {
		var l = parseInt(query.get('limit'), 10);

		return l >= 1 && l <= 10000 ? l : 50;
	}

	function moreLink(total, shown, limit) {
		if (total <= shown || limit >= 10000)
			return null;
		var p = {};

		query.forEach(function (v, k) { p[k] = v; });
		p.limit = Math.min(10000, limit * 4);
		return el('p', {}, [String(shown) + ' of ' + total + ' shown: ',
			a(href(location.pathname, p), 'show ' + p.limit,
			  { 'class': 'more' })]);
	}

	/* A range's tables are at its last observed period (its end may
	 * be past what history holds). */
	function lastPoint(series) {
		var pts = isErr(series) ? [] : series.points || [];

		return pts.length ? pts[pts.length - 1].ts : null;
	}

	function pageGateway() {
		var ip = seg, proto = protoOf(), s = span(), limit = limitOf();
		var base = '/api/v1/gateways/' + encodeURIComponent(ip);
		var seriesReq = maybe('/api/v1/series?public_ip=' +
			encodeURIComponent(ip) + '&proto=' + proto + '&from=' +
			(s[0] / 1000).toFixed(3) + '&to=' + (s[1] / 1000).toFixed(3));
		var ready = time.mode === 'range' ? seriesReq.then(lastPoint) :
			Promise.resolve(moment());

		return ready.then(function (at) {
			var atq = at ? '&at=' + encodeURIComponent(at) : '';

			return Promise.all([
				maybe(at ? '/api/v1/gateways?at=' +
				      encodeURIComponent(at) : '/api/v1/gateways'),
				seriesReq,
				maybe('/api/v1/incidents?from=' + (s[0] / 1000).toFixed(3) +
				      '&to=' + (s[1] / 1000).toFixed(3)),
				maybe(base + '/hosts?proto=' + proto + '&limit=' + limit +
				      atq),
				maybe(base + '/destinations?proto=' + proto + '&limit=' +
				      limit + atq),
				at]);
		}).then(function (r) {
			var at = r[5];
			var out = [title('Gateway ' + hostPort(ip) + ' ' + proto),
				   gwLinks(ip, proto)];
			var g = null;

			if (isErr(r[0])) {
				out.push(failure(r[0]));
			} else {
				(r[0].gateways || []).forEach(function (x) {
					if (x.public_ip === ip && x.proto === proto)
						g = x;
				});
				out.push(note((at ? 'at ' + at + ': the ' +
					       r[0].resolution + ' period ' +
					       (r[0].period ? r[0].period.start + ' \u2013 ' +
						r[0].period.end : '') : 'live') +
					      ', as of ' + r[0].as_of, 'asof'));
				out.push(coverageNote(r[0].coverage));
				out.push(g ? gatewaySummary(g, !!at) :
					 failure('no mappings for ' + ip + ' ' + proto +
						 (at ? ' at ' + at : ' now')));
			}
			var sec = [];

			if (isErr(r[1])) {
				sec.push(failure(r[1]));
			} else {
				var m = timeMarks(r[1], isErr(r[2]) ? [] :
						  r[2].incidents, ip, proto);

				sec.push(note(r[1].resolution + ' periods, ' +
					      r[1].from + ' \u2013 ' + r[1].to));
				sec = sec.concat(seriesCharts(r[1], m.marks));
				sec.push(el('h3', {}, ['Incidents and gaps']));
				sec.push(m.list);
				if (Array.isArray(r[1].top_hosts))
					sec.push(table('range-hosts', 'Top hosts over ' +
						'the chart\u2019s range, with their rates (by ' +
						'peak; history keeps each period\u2019s top hosts)',
						hostCols(true), r[1].top_hosts));
			}
			out.push(section('Over time', sec, 'over-time'));

			var hs = [];

			if (isErr(r[3])) {
				hs.push(failure(r[3]));
			} else {
				hs.push(table('hosts', (at ? 'at ' + at : 'now') + ': ' +
					      r[3].hosts.length + ' of ' + r[3].total +
					      ' hosts, most mappings first', hostCols(!!at),
					      r[3].hosts));
				hs.push(moreLink(r[3].total, r[3].hosts.length, limit));
			}
			out.push(section('Hosts', hs, 'hosts-section'));

			var ds = [];

			if (isErr(r[4])) {
				ds.push(failure(r[4]));
			} else {
				ds.push(table('destinations', (at ? 'at ' + at : 'now') +
					      ': ' + r[4].destinations.length + ' of ' +
					      r[4].total + ' destination buckets',
					      destCols(ip, proto, r[4]),
					      r[4].destinations));
				ds.push(moreLink(r[4].total, r[4].destinations.length,
						 limit));
			}
			out.push(section('Destinations', ds, 'dests-section'));
			if (g && g.states)
				out.push(section('TCP states', [statesTable('states',
					g.states, num(g.mappings))], 'states-section'));
			return out;
		});
	}

	/* -- the port map -- */

	var mapState = { port: -1, timer: null };

	function pagePorts() {
		var ip = seg, proto = protoOf(), at = moment();
		var path = '/api/v1/gateways/' + encodeURIComponent(ip) +
			'/ports?proto=' + proto + (at ? '&at=' +
			encodeURIComponent(at) : '');

		return getJSON(path).then(function (doc) {
			var PM = window.NatscopePortmap;
			var canvas = el('canvas', { id: 'portmap', tabindex: 0,
				'aria-label': 'the 65,536 ports of ' + ip + ', 256 ' +
				'per row; arrow keys move, the details follow' });
			var pm = PM.create(canvas);
			var dsts = doc.destinations || [];
			var want = query.get('dst'), dst = -1;
			var sel = el('select', { id: 'dst', 'aria-label':
						 'destination bucket' },
				     [el('option', { value: '-1' }, ['every destination'])]
				     .concat(dsts.map(function (d, i) {
					     return el('option', { value: String(i) },
						       [dest(d) + ' (' + d.mappings + ' of ' +
							d.capacity + ', range ' +
							(d.range || []).join('-') + ')']);
				     })));
			var detail = el('div', { id: 'port-detail',
						 'aria-live': 'polite' },
					[note('hover, tap or focus the map and use ' +
					      'the arrow keys: a port\u2019s holders')]);

			dsts.forEach(function (d, i) {
				if (dest(d) === want)
					dst = i;
			});
			sel.value = String(dst);
			pm.draw(doc, dst);
			sel.addEventListener('change', function () {
				var p = {};

				query.forEach(function (v, k) { p[k] = v; });
				dst = parseInt(sel.value, 10);
				if (dst >= 0)
					p.dst = dest(dsts[dst]);
				else
					delete p.dst;
				history.replaceState(null, '', href(location.pathname,
								    p));
				query = new URLSearchParams(location.search);
				pm.draw(doc, dst);
				if (mapState.port >= 0)
					showPort(pm, doc, ip, proto, mapState.port, detail);
			});

			function pick(p) {
				if (p < 0 || p > 65535)
					return;
				mapState.port = p;
				canvas.setAttribute('aria-valuetext', 'port ' + p);
				showPort(pm, doc, ip, proto, p, detail);
			}
			canvas.addEventListener('mousemove', function (ev) {
				pick(pm.portAt(ev.clientX, ev.clientY));
			});
			canvas.addEventListener('click', function (ev) {
				pick(pm.portAt(ev.clientX, ev.clientY));
			});
			canvas.addEventListener('keydown', function (ev) {
				var p = mapState.port < 0 ? 0 : mapState.port;
				var step = { ArrowLeft: -1, ArrowRight: 1,
					     ArrowUp: -256, ArrowDown: 256 }[ev.key];

				if (step === undefined)
					return;
				ev.preventDefault();
				pick(Math.min(65535, Math.max(0, p + step)));
			});

			var legend = el('ul', { id: 'legend', 'class': 'legend' },
				(doc.hosts || []).slice(0, PM.palette.length)
				.map(function (h, i) {
					return el('li', { 'data-ip': h.ip,
							  'data-colour': PM.colourOf(i) }, [
						el('span', { 'class': 'swatch c' + i }),
						a(href('/host/' + encodeURIComponent(h.ip),
						       withTime({})), String(h.ip)),
						' ' + h.kind + ', ' + h.ports + ' ports']);
				}));
			var rest = (doc.hosts || []).length - PM.palette.length;

			if (rest > 0)
				legend.appendChild(el('li', { 'data-colour': PM.other },
					[el('span', { 'class': 'swatch other' }),
					 String(rest) + ' other hosts']));
			legend.appendChild(el('li', { 'data-colour': PM.free }, [
				el('span', { 'class': 'swatch free' }), 'free']));
			legend.appendChild(el('li', { 'data-colour': PM.outside }, [
				el('span', { 'class': 'swatch outside' }),
				'outside the chosen bucket\u2019s range']));

			var out = [title('Port map of ' + hostPort(ip) + ' ' + proto),
				   gwLinks(ip, proto),
				   note((doc.live ? 'live' : 'at ' + doc.at) +
					', as of ' + doc.as_of + (doc.log ?
					'; the mapping log holds ' + doc.log.from +
					' \u2013 ' + doc.log.to : ''), 'asof'),
				   coverageNote(doc.coverage)];

			if (doc.uncertain)
				out.push(el('ul', { 'class': 'warning', id: 'reasons' },
					(doc.reasons || []).map(function (r) {
						return el('li', {}, [String(r)]);
					})));
			out.push(facts([
				['ports in use', el('span', {}, [
					value('ports_in_use', doc.ports_in_use), ' of ' +
					doc.port_space])],
				['mappings', value('mappings', doc.mappings)],
				['shared ports', value('shared_ports',
						       doc.shared_ports)],
				['held by several hosts', value('multi_host_ports',
					doc.multi_host_ports)],
				['start unknown', value('start_unknown',
							doc.start_unknown)]].concat(
				doc.states ? [['TCP states', value('states',
					Object.keys(doc.states).map(function (k) {
						return k + ' ' + doc.states[k];
					}).concat(doc.state_unknown ? ['not known ' +
						doc.state_unknown] : []).join(', ') ||
					'none')]] : [])));
			out.push(el('p', {}, [el('label', { 'for': 'dst' },
						 ['show ']), sel]));
			out.push(el('div', { 'class': 'mapwrap' }, [
				el('div', { 'class': 'mapbox' }, [canvas,
					el('p', { 'class': 'axis' }, ['row = port / 256, ' +
					  'column = port % 256; port 0 top left'])]),
				el('div', { 'class': 'mapside' }, [legend, detail])]));
			if (mapState.port >= 0)
				setTimeout(function () {
					showPort(pm, doc, ip, proto, mapState.port, detail);
				}, 0);
			return out;
		}, function (e) {
			return [title('Port map of ' + hostPort(ip) + ' ' + proto),
				gwLinks(ip, proto), failure(e)];
		});
	}

	/* The details of port p: its holders from the map at once (with
	 * their TCP state), then the mapping log's (internal ip:port, TCP
	 * state and since when, start, end) from the lookup. */
	function showPort(pm, doc, ip, proto, p, box) {
		var holders = pm.holders(p);
		var head = el('p', { 'class': 'port' }, [
			el('strong', { 'data-k': 'port' }, ['port ' + p]), ' ',
			holders.length ? holders.map(function (h) {
				return String(h.host.ip) + ' \u2192 ' +
					dest(h.destination) +
					(h.state === undefined ? '' : ' (' +
					 (h.state === null ? 'state not known' :
					  h.state) + ')');
			}).join('; ') : 'free']);

		box.textContent = '';
		box.appendChild(head);
		clearTimeout(mapState.timer);
		if (!holders.length)
			return;
		mapState.timer = setTimeout(function () {
			/* the map's own moment, live too (its last write):
			 * the holders and their states as the map shows them */
			var at = doc.at;

			getJSON('/api/v1/lookup?public_ip=' + encodeURIComponent(ip) +
				'&port=' + p + '&proto=' + proto + (at ? '&at=' +
				encodeURIComponent(at) : '')).then(function (lk) {
				if (mapState.port !== p)
					return;
				box.appendChild(holdersTable(lk, 'port-holders'));
			}, function (e) {
				box.appendChild(failure(e));
			});
		}, 150);
	}

	/* A TCP holder's state at the lookup's moment: "NAME since TIME",
	 * "(not exact)" or "not known"; the why goes to the "sure" column
	 * (stateWhy), which has the room. */
	function stateText(h) {
		if (typeof h.state === 'string')
			return h.state + ' since ' + String(h.state_since) +
				(h.state_exact === true ? '' : ' (not exact)');
		return 'not known';
	}

	function stateWhy(lk, h) {
		return lk.proto === 'tcp' && h.state_exact !== true &&
			h.state_note ? 'state: ' + h.state_note : null;
	}

	function holdersTable(lk, id) {
		var state = lk.proto === 'tcp' ? [{ h: 'state', k: 'state',
			v: function (h) { return stateText(h); } }] : [];

		return table(id, 'who held ' + hostPort(lk.public_ip, lk.port) +
			     ' ' + lk.proto + ' at ' + lk.at +
			     (lk.uncertain ? ' (uncertain: ' +
			      (lk.reasons || []).join('; ') + ')' : ''), [
			{ h: 'internal', k: 'internal', v: function (h) {
				return a(href('/host/' + encodeURIComponent(
					h.internal.ip), { at: lk.at }),
					hostPort(h.internal.ip, h.internal.port));
			} },
			{ h: 'kind', v: function (h) { return String(h.kind); } },
			{ h: 'destination', k: 'destination', v: function (h) {
				return dest({ ip: h.destination.ip,
					      port: h.destination.port, zone: h.zone });
			} }].concat(state, [
			{ h: 'since', k: 'start', v: function (h) {
				return String(h.start) + (h.start_known ? '' :
					' (first seen by a dump)');
			} },
			{ h: 'until', k: 'end', v: function (h) {
				return h.end ? String(h.end) : 'open';
			} },
			{ h: 'sure', v: function (h) {
				var why = stateWhy(lk, h);

				return (h.uncertain ? 'no: ' +
					(h.reasons || []).join('; ') : 'yes') +
					(why ? '; ' + why : '');
			} }]), lk.holders || [], 'nobody held it then');
	}

	/* -- diagnosis -- */

	function pageDiagnosis() {
		var ip = seg, proto = protoOf();

		return getJSON('/api/v1/gateways/' + encodeURIComponent(ip) +
			       '/diagnosis?proto=' + proto).then(function (d) {
			var pr = d.port_range || {}, tw = d.time_wait_timeout || {};
			var gw = d.gateway || {};
			var out = [title('Diagnosis of ' + hostPort(ip) + ' ' + proto),
				   gwLinks(ip, proto),
				   note('from the live figures as of ' + d.as_of +
					(time.mode !== 'live' ? ' (the diagnosis is ' +
					 'always of now; the time picker does not ' +
					 'apply)' : ''), 'asof')];

			(d.warnings || []).forEach(function (w) {
				out.push(el('p', { 'class': 'warning', role: 'note',
						   'data-k': 'warning' }, [String(w)]));
			});
			out.push(facts([
				['mappings', value('mappings', num(gw.mappings))],
				['ports in use', value('ports_in_use',
						       num(gw.ports_in_use))],
				['TIME_WAIT', el('span', {}, [
					value('time_wait', gw.time_wait === null ||
					      gw.time_wait === undefined ? '\u2014' :
					      gw.time_wait),
					gw.time_wait_share !== null &&
					gw.time_wait_share !== undefined ?
					' (' + pct(gw.time_wait_share) + ')' : ''])],
				['TIME_WAIT timeout', tw.known ? tw.seconds + ' s' :
				 'unknown'],
				['tcp_tw_reuse', tw.tcp_tw_reuse === null ||
				 tw.tcp_tw_reuse === undefined ? 'unknown' :
				 String(tw.tcp_tw_reuse)]]));

			var ranges = [];

			if (pr.this_host)
				ranges.push({ os: 'this host (ip_local_port_range)',
					      lo: pr.this_host.lo, hi: pr.this_host.hi,
					      ports: pr.this_host.ports });
			(pr.os_defaults || []).forEach(function (r) { ranges.push(r); });
			out.push(section('Port ranges', [table('ranges', pr.note ||
				'port ranges', [
				{ h: 'whose', v: function (r) { return String(r.os); } },
				{ h: 'from', num: true, v: function (r) { return String(r.lo); } },
				{ h: 'to', num: true, v: function (r) { return String(r.hi); } },
				{ h: 'ports', num: true, k: 'ports',
				  v: function (r) { return String(r.ports); } }],
				ranges)], 'ranges-section'));

			out.push(section('Buckets: ' + (tw.arithmetic || ''), [
				table('buckets', 'the busiest destination buckets', [
					{ h: 'destination', k: 'destination', v: function (b) {
						return dest(b.destination);
					} },
					{ h: 'mappings', num: true, k: 'mappings',
					  v: function (b) { return String(b.mappings); } },
					{ h: 'capacity', num: true, k: 'capacity',
					  v: function (b) { return String(b.capacity); } },
					{ h: 'fill', num: true, v: function (b) {
						return pct(num(b.fill));
					} },
					{ h: 'new/s', num: true, k: 'rate',
					  v: function (b) { return rate(b.new_per_second); } },
					{ h: '\u00d7 TIME_WAIT s = ports held', num: true,
					  k: 'time_wait_ports', v: function (b) {
						return b.time_wait_ports === null ? '\u2014' :
							b.new_per_second.toFixed(1) + ' \u00d7 ' +
							tw.seconds + ' = ' + b.time_wait_ports +
							' (' + pct(num(b.time_wait_fill)) + ')';
					} },
					{ h: 'verdict', k: 'verdict', v: function (b) {
						return el('span', { 'class': 'verdict v-' +
							String(b.verdict).replace(/\W/g, '')
							}, [String(b.verdict)]);
					} }], d.buckets || [])], 'buckets-section'));

			out.push(section('Remedies, safest first', [
				el('ol', { id: 'remedies', 'class': 'remedies' },
				   (d.remedies || []).map(function (r) {
					   return el('li', { 'data-id': r.id,
							     'class': r.fits ? 'fits' : 'nofit' }, [
						   el('strong', {}, [String(r.action)]),
						   el('span', { 'class': 'fit', 'data-k': 'fits' },
						      [r.fits ? ' fits here' : ' not needed here']),
						   r.because ? el('p', { 'data-k': 'because' },
								  ['because ' + r.because]) : null,
						   el('p', {}, [String(r.detail || '')]),
						   el('p', { 'class': 'muted' }, ['trade-off: ' +
							   String(r.tradeoff || '')])]);
				   }))], 'remedies-section'));
			return out;
		}, function (e) {
			return [title('Diagnosis of ' + hostPort(ip) + ' ' + proto),
				gwLinks(ip, proto), failure(e)];
		});
	}

	/* -- a host -- */

	/* The host over time: its own points in the series of each public
	 * IP it used (the first HOST_GATEWAYS of them), one line each. */
	var HOST_GATEWAYS = 6;

	function hostChart(ip, gws, s) {
		var box = el('div', { 'class': 'chart', id: 'chart-host', role: 'img',
				      'aria-label': 'this host\u2019s peak mappings ' +
				      'per public IP over time' });

		Promise.all(gws.slice(0, HOST_GATEWAYS).map(function (g) {
			return maybe('/api/v1/series?public_ip=' +
				encodeURIComponent(g.public_ip) + '&proto=' + g.proto +
				'&limit=1000&from=' + (s[0] / 1000).toFixed(3) + '&to=' +
				(s[1] / 1000).toFixed(3)).then(function (doc) {
				var mine = isErr(doc) ? null : (doc.top_hosts || [])
					.filter(function (x) { return x.ip === ip; })[0];

				return { label: hostPort(g.public_ip) + ' ' + g.proto,
					 points: mine && mine.series || [] };
			});
		})).then(function (lines) {
			var xsSet = {}, xs, data, series = [{}];

			lines.forEach(function (l) {
				l.points.forEach(function (p) { xsSet[p[0]] = 1; });
			});
			xs = Object.keys(xsSet).map(Number).sort(function (x, y) {
				return x - y;
			});
			data = [xs];
			lines.forEach(function (l, i) {
				var by = {};

				l.points.forEach(function (p) { by[p[0]] = p[1]; });
				data.push(xs.map(function (x) {
					return by[x] === undefined ? null : by[x];
				}));
				series.push({ label: l.label, stroke: COLOURS[i %
					COLOURS.length], width: 1.5, spanGaps: false });
			});
			if (!xs.length) {
				box.appendChild(note('no period of this range recorded ' +
						     'this host among the top ones'));
				return;
			}
			plot(box, { width: chartWidth(main), height: 200,
				    scales: { x: { time: true, range: function () {
					    return [s[0] / 1000, s[1] / 1000]; } },
					      y: { range: function (u, lo, hi) {
						      return [0, Math.max(1, hi * 1.1)]; } } },
				    axes: [{}, { label: 'mappings (peak)', size: 60 }],
				    series: series }, data);
		});
		return box;
	}

	function pageHost() {
		var ip = seg, s = span();

		return getJSON('/api/v1/hosts/' + encodeURIComponent(ip) +
			       '?from=' + (s[0] / 1000).toFixed(3) + '&to=' +
			       (s[1] / 1000).toFixed(3)).then(function (h) {
			var live = h.live || {};
			var gwLink = function (g) {
				return a(href('/gateway/' + encodeURIComponent(
					g.public_ip), withTime({ proto: g.proto })),
					hostPort(g.public_ip) + ' ' + g.proto);
			};
			var out = [title('Host ' + hostPort(ip)),
				   note('range ' + h.from + ' \u2013 ' + h.to + ', ' +
					(h.resolution || '') + ' periods', 'asof'),
				   coverageNote(h.coverage)];

			out.push(section('Public IPs it uses now', [
				table('host-live', 'live, as of ' + live.as_of, [
					{ h: 'gateway', k: 'gateway', v: gwLink },
					{ h: 'kind', v: function (g) { return String(g.kind); } },
					{ h: 'ports', num: true, k: 'ports',
					  v: function (g) { return String(g.ports_in_use); } },
					{ h: 'mappings', num: true, k: 'mappings',
					  v: function (g) { return String(g.mappings); } }],
					live.gateways || [], 'none now')], 'live-section'));
			out.push(section('Over time', [hostChart(ip,
				h.gateways || [], s)], 'host-time'));
			out.push(section('Public IPs over the range', [
				table('host-gateways', (h.recorded && h.recorded.note) ||
				      'from history', [
					{ h: 'gateway', k: 'gateway', v: gwLink },
					{ h: 'first seen', v: function (g) {
						return String(g.first_seen); } },
					{ h: 'last seen', v: function (g) {
						return String(g.last_seen); } },
					{ h: 'peak mappings', num: true, k: 'mappings',
					  v: function (g) { return String(g.mappings_peak); } },
					{ h: 'ports (max)', num: true, k: 'ports',
					  v: function (g) { return String(g.ports_in_use_max); } },
					{ h: 'new/s', num: true, k: 'rate',
					  v: function (g) { return rate(g.new_per_second); } }],
					h.gateways || [], 'not among the top hosts of any ' +
					'period in this range')], 'hist-section'));
			var dc = h.destinations_coverage || {};

			out.push(section('Destinations', [
				dc.complete === false ? el('p', { 'class': 'warning' }, [
					'not complete: ' + (dc.reasons || []).join('; ')]) :
				null,
				table('host-dests', 'from the mapping log: every ' +
				      'mapping in the range', [
					{ h: 'via', v: function (d) {
						return a(href('/gateway/' + encodeURIComponent(
							d.public_ip) + '/ports', withTime({
								proto: d.proto,
								dst: dest({ ip: d.destination.ip,
									    port: d.destination.port,
									    zone: d.zone }) })),
							hostPort(d.public_ip) + ' ' + d.proto);
					} },
					{ h: 'destination', k: 'destination', v: function (d) {
						return dest({ ip: d.destination.ip,
							      port: d.destination.port,
							      zone: d.zone });
					} },
					{ h: 'mappings', num: true, k: 'mappings',
					  v: function (d) { return String(d.mappings); } },
					{ h: 'peak ports', num: true, k: 'ports',
					  v: function (d) { return String(d.ports_peak); } },
					{ h: 'new/s', num: true, k: 'rate',
					  v: function (d) { return rate(d.new_per_second); } },
					{ h: 'open', num: true,
					  v: function (d) { return String(d.open_at_last_write); } }],
					h.destinations || [])], 'dest-section'));
			return out;
		}, function (e) {
			return [title('Host ' + hostPort(ip)), failure(e)];
		});
	}

	/* -- incidents -- */

	function incidentGwLink(inc, t, text) {
		return a(href('/gateway/' + encodeURIComponent(inc.public_ip),
			      withTime({ proto: inc.proto }, t)), text);
	}

	function pageIncidents() {
		var s = span();

		if (time.mode === 'live')
			s = [Date.now() - 86400000, Date.now()];
		return getJSON('/api/v1/incidents?from=' + (s[0] / 1000).toFixed(3) +
			       '&to=' + (s[1] / 1000).toFixed(3) + '&limit=1000')
			.then(function (doc) {
			return [title('Incidents'),
				note(doc.from + ' \u2013 ' + doc.to + ': ' + doc.total +
				     ' incidents', 'asof'),
				coverageNote(doc.coverage),
				table('incidents', 'newest first', [
					{ h: 'id', k: 'id', v: function (i) {
						return a('/incidents/' + i.id, '#' + i.id);
					} },
					{ h: 'severity', k: 'severity', v: function (i) {
						return el('span', { 'class': 'sev-' + (i.severity ===
							'critical' ? 'crit' : 'warn') },
							[String(i.severity)]);
					} },
					{ h: 'what', v: function (i) { return String(i.kind); } },
					{ h: 'gateway', k: 'gateway', v: function (i) {
						return incidentGwLink(i, { mode: 'at',
							at: i.peak_at }, hostPort(i.public_ip) + ' ' +
							i.proto);
					} },
					{ h: 'destination', v: function (i) {
						return i.destination ? dest(i.destination) : 'all';
					} },
					{ h: 'opened', v: function (i) { return String(i.opened); } },
					{ h: 'closed', v: function (i) {
						return i.closed ? String(i.closed) : 'open'; } },
					{ h: 'peak', num: true, k: 'peak', v: function (i) {
						return String(i.peak_mappings) + ' of ' + i.capacity +
							' (' + pct(num(i.peak_ratio)) + ')';
					} },
					{ h: 'insert_failed', num: true, v: function (i) {
						return String(num(i.insert_failed)); } }],
					doc.incidents || [], 'no incident in this range')];
		});
	}

	function detailSection(name, det) {
		if (!det || typeof det !== 'object')
			return null;
		var kids = [note('at ' + det.at)];

		kids.push(table(name + '-buckets', 'saturated buckets', [
			{ h: 'bucket', v: function (b) {
				return hostPort(b.public_ip) + ' ' + b.proto + ' \u2192 ' +
					dest(b);
			} },
			{ h: 'peak', num: true, k: 'peak',
			  v: function (b) { return String(b.peak); } },
			{ h: 'capacity', num: true,
			  v: function (b) { return String(b.capacity); } },
			{ h: 'new/s', num: true, v: function (b) {
				return rate(b.new_per_second); } }],
			det.saturated_buckets || []));
		kids.push(table(name + '-hosts', 'top hosts', [
			{ h: 'host', k: 'host', v: function (h) {
				return a(href('/host/' + encodeURIComponent(h.ip),
					      { at: det.at }), String(h.ip));
			} },
			{ h: 'via', v: function (h) {
				return hostPort(h.public_ip) + ' ' + h.proto; } },
			{ h: 'peak', num: true, k: 'peak',
			  v: function (h) { return String(h.peak); } },
			{ h: 'ports', num: true,
			  v: function (h) { return String(h.ports_in_use); } },
			{ h: 'new/s', num: true, v: function (h) {
				return rate(h.new_per_second); } }],
			det.top_hosts || []));
		if (det.tcp_states)
			kids.push(statesTable(name + '-states', det.tcp_states,
				Object.keys(
				det.tcp_states).reduce(function (s, k) {
				return k === 'time_wait_peak' ? s :
					s + num(det.tcp_states[k]);
			}, 0)));
		if (det.sysctl)
			kids.push(facts(Object.keys(det.sysctl).map(function (k) {
				var v = det.sysctl[k];

				return [k, Array.isArray(v) ? v.join('-') :
					v === null ? 'unknown' : String(v)];
			})));
		return section(name === 'peak' ? 'At its peak' : 'When it opened',
			       kids, name + '-section');
	}

	function pageIncident() {
		return getJSON('/api/v1/incidents/' + encodeURIComponent(seg))
			.then(function (i) {
			var open = ms(i.opened), close = i.closed ? ms(i.closed) :
				Date.now();
			var around = { mode: 'range', from: iso(open - 600000),
				       to: iso(Math.min(Date.now(), close + 600000)) };

			return [title('Incident ' + i.id + ': ' + i.severity + ' ' +
				      i.kind + ' ' + hostPort(i.public_ip) + ' ' +
				      i.proto),
				el('nav', { 'class': 'links' }, [
					incidentGwLink(i, { mode: 'at', at: i.peak_at },
						       'the gateway at its peak'), ' \u00b7 ',
					incidentGwLink(i, around, 'the gateway around it'),
					' \u00b7 ',
					a(href('/gateway/' + encodeURIComponent(i.public_ip) +
					       '/ports', { proto: i.proto, at: i.peak_at,
							   dst: i.destination ?
							   dest(i.destination) : null }),
					  'the port map at its peak', { id: 'link-ports' }),
					' \u00b7 ', a('/incidents', 'all incidents')]),
				coverageNote(i.coverage),
				facts([
					['destination', i.destination ? dest(i.destination) :
					 'the whole gateway'],
					['opened', value('opened', i.opened)],
					['closed', value('closed', i.closed || 'open')],
					['duration', num(i.duration_seconds).toFixed(1) + ' s'],
					['peak at', value('peak_at', i.peak_at)],
					['peak', el('span', {}, [
						value('peak_mappings', i.peak_mappings), ' of ',
						value('capacity', i.capacity),
						' (' + pct(num(i.peak_ratio)) + ')'])],
					['kernel', 'insert_failed ' + num(i.insert_failed) +
					 ', drop ' + num(i.drop) + ', early_drop ' +
					 num(i.early_drop)]]),
				detailSection('peak', i.peak_detail),
				detailSection('opened', i.opened_detail)];
		}, function (e) {
			return [title('Incident ' + seg), failure(e)];
		});
	}

	/* -- reverse lookup -- */

	function pageLookup() {
		var ipIn = el('input', { id: 'lk-ip', name: 'public_ip',
					 required: 'required', size: 22,
					 placeholder: '203.0.113.1' });
		var portIn = el('input', { id: 'lk-port', name: 'port',
					   required: 'required', size: 6,
					   inputmode: 'numeric', placeholder: '40123' });
		var protoSel = el('select', { id: 'lk-proto', name: 'proto' },
				  PROTOS.map(function (p) {
					  return el('option', { value: p }, [p]);
				  }));
		var form = el('form', { id: 'lookup', 'class': 'lookup' }, [
			el('label', {}, ['public IP ', ipIn]), ' ',
			el('label', {}, ['port ', portIn]), ' ',
			el('label', {}, ['proto ', protoSel]), ' ',
			el('button', { type: 'submit' }, ['who held it?'])]);
		var out = [title('Reverse lookup'),
			   note('public ip:port (at the time the picker says: live ' +
				'is now) \u2192 who held it, from the mapping log'),
			   form];
		var ip = query.get('public_ip'), port = query.get('port');

		ipIn.value = ip || '';
		portIn.value = port || '';
		protoSel.value = protoOf();
		form.addEventListener('submit', function (ev) {
			ev.preventDefault();
			location.assign(href('/lookup', withTime({
				public_ip: ipIn.value.trim(), port: portIn.value.trim(),
				proto: protoSel.value })));
		});
		if (!ip || !port)
			return Promise.resolve(out);
		var at = moment();

		return getJSON('/api/v1/lookup?public_ip=' + encodeURIComponent(ip) +
			       '&port=' + encodeURIComponent(port) + '&proto=' +
			       protoOf() + (at ? '&at=' + encodeURIComponent(at) : ''))
			.then(function (lk) {
			out.push(holdersTable(lk, 'holders'));
			if (lk.uncertain)
				out.push(el('ul', { 'class': 'warning' },
					(lk.reasons || []).map(function (r) {
						return el('li', {}, [String(r)]);
					})));
			out.push(el('p', {}, [a(href('/gateway/' +
				encodeURIComponent(ip) + '/ports', { proto: protoOf(),
				at: lk.at }), 'the port map of ' + ip + ' then')]));
			return out;
		}, function (e) {
			out.push(failure(e));
			return out;
		});
	}

	/* ---- drawing, refreshing ---- */

	var pages = { gateway: pageGateway, ports: pagePorts,
		      diagnosis: pageDiagnosis, host: pageHost,
		      incidents: pageIncidents, incident: pageIncident,
		      lookup: pageLookup };

	function describe() {
		if (time.mode === 'at')
			return 'the past: ' + time.at;
		if (time.mode === 'range')
			return 'the range ' + (time.from || 'an hour before') +
				' \u2013 ' + (time.to || 'now');
		return 'live';
	}

	/* Whether the page is redrawn: live, and not a page of one fixed
	 * thing (an incident, a lookup's answer). */
	function refreshing() {
		return time.mode === 'live' && kind !== 'lookup' &&
			kind !== 'incident';
	}

	/* Draws the page; live, again every refreshMs (the port map only
	 * when the pointer is not on it, so that its details stay). */
	function draw() {
		var fn = pages[kind];

		if (!fn)
			return;
		main.setAttribute('aria-busy', 'true');
		fn().then(function (nodes) {
			var focused = document.activeElement &&
				document.activeElement.id;

			plots.forEach(function (p) { p.destroy(); });
			plots = [];
			main.textContent = '';
			nodes.forEach(function (n) {
				if (n)
					main.appendChild(n);
			});
			if (focused && document.getElementById(focused))
				document.getElementById(focused).focus();
			liveLine.className = '';
			liveLine.textContent = describe() + (refreshing() ?
				', refreshed ' + new Date().toLocaleTimeString() +
				', every ' + refreshMs / 1000 + ' s' : '');
		}).catch(function (e) {
			liveLine.className = 'stale';
			liveLine.textContent = 'not drawn: ' + e.message;
			main.appendChild(failure(e));
		}).then(function () {
			main.setAttribute('aria-busy', 'false');
			main.setAttribute('data-drawn', String(
				(parseInt(main.getAttribute('data-drawn'), 10) || 0) + 1));
			if (refreshing())
				setTimeout(function again() {
					if (kind === 'ports' && document.querySelector(
						'#portmap:hover, #portmap:focus'))
						setTimeout(again, refreshMs);
					else
						draw();
				}, refreshMs);
		});
	}

	window.natscopePending = function () { return pending; };
	drawPicker();
	draw();
}());
